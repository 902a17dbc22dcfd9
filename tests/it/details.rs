//! Package details, end to end: real quilt3 pushes to LocalStack's S3, the real worker reading
//! the manifests, revision pointers and README it finds there, and the emails it sends.
//!
//! The routes here use a template of the test's own (`facts`, written by [`DetailsStack::new`])
//! whose text part prints one `key=value` line per fact of the template data (`package`,
//! `changes`), so each test asserts on exactly what templates are given, whatever the product's
//! default template says. Expected changes are compared with what quilt3 itself reports for the
//! same two revisions (`previous.diff(current)`, from `scripts/quilt_packages.py push --diff`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::proxy::{Faults, S3Error, SesProxy};
use crate::support::quilt::{Pushed, QuiltBucket, Revision};
use crate::support::{eventually, free_port, sdk_config, StackOptions, TestStack, Worker};

const WITHIN: Duration = Duration::from_secs(60);

/// The test template's text part: one `key=value` line per fact (lists: one line per item).
const FACTS_TEXT: &str = r#"route={{route}}
top_hash={{top_hash}}
{{#if package}}
details=present
message={{package.message}}
files={{package.files}}
bytes={{package.bytes}}
error={{package.error}}
readme={{#if package.readme}}yes{{else}}no{{/if}}
{{#each package.user_meta}}
meta.{{@key}}={{this}}
{{/each}}
{{#each package.top_level}}
top_level={{name}}:{{files}}
{{/each}}
{{else}}
details=null
{{/if}}
{{#if changes}}
changes=present
previous={{changes.previous_top_hash}}
unchanged={{changes.unchanged}}
changes_error={{changes.error}}
{{#unless changes.error}}
added={{changes.added.count}}
removed={{changes.removed.count}}
modified={{changes.modified.count}}
{{#each changes.added.paths}}
added_path={{this}}
{{/each}}
{{#each changes.removed.paths}}
removed_path={{this}}
{{/each}}
{{#each changes.modified.paths}}
modified_path={{this}}
{{/each}}
{{#each changes.user_meta.added}}
meta_added={{this}}
{{/each}}
{{#each changes.user_meta.removed}}
meta_removed={{this}}
{{/each}}
{{#each changes.user_meta.changed}}
meta_changed={{this}}
{{/each}}
{{/unless}}
{{else}}
changes=null
{{/if}}
"#;

const FACTS_HTML: &str = r#"<p class="message">{{#if package}}{{package.message}}{{/if}}</p>
<p class="changes">{{#if changes}}Changes since {{changes.previous_top_hash}}{{else}}The first revision of the package{{/if}}</p>
{{#if package}}{{#if package.error}}<p class="error">{{package.error}}</p>{{/if}}{{/if}}
"#;

const FACTS_SUBJECT: &str = "{{handle}} @ {{short_hash}}";

/// One email as the facts template wrote it.
#[derive(Debug)]
struct Facts {
    subject: String,
    html: String,
    text: String,
    fields: BTreeMap<String, Vec<String>>,
}

impl Facts {
    fn parse(email: &Value) -> Self {
        let text = email["body"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=') {
                fields
                    .entry(key.trim().to_owned())
                    .or_default()
                    .push(value.to_owned());
            }
        }
        Self {
            subject: email["subject"].as_str().unwrap_or_default().to_owned(),
            html: email["body"]["html"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            text,
            fields,
        }
    }

    /// The single value of `key`; panics, showing the email, when it is absent or repeated.
    fn one(&self, key: &str) -> &str {
        match self.fields.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("{key}: expected one value, got {other:?} in\n{}", self.text),
        }
    }

    /// Every value of `key`, sorted (none: empty).
    fn all(&self, key: &str) -> Vec<String> {
        let mut values = self.fields.get(key).cloned().unwrap_or_default();
        values.sort();
        values
    }
}

/// A [`TestStack`] plus a Quilt bucket of the name its rule passes, and the facts template.
struct DetailsStack {
    stack: TestStack,
    quilt: Arc<QuiltBucket>,
    templates: PathBuf,
}

impl DetailsStack {
    async fn new(options: StackOptions) -> Self {
        let stack = TestStack::spawn(options).await;
        let (endpoint, name) = (stack.endpoints.aws.clone(), stack.bucket.clone());
        let quilt =
            tokio::task::spawn_blocking(move || QuiltBucket::create_named(&endpoint, &name))
                .await
                .expect("join");
        let templates = stack.dir.path().join("templates");
        let facts = templates.join("facts");
        std::fs::create_dir_all(&facts).expect("templates dir");
        for (part, source) in [
            ("subject", FACTS_SUBJECT),
            ("html", FACTS_HTML),
            ("text", FACTS_TEXT),
        ] {
            std::fs::write(facts.join(format!("{part}.hbs")), source).expect("write template");
        }
        Self {
            stack,
            quilt: Arc::new(quilt),
            templates,
        }
    }

    /// Pushes one revision with quilt3 (off the test's runtime threads).
    async fn push(&self, package: &str, revision: Revision) -> Pushed {
        let (quilt, package) = (Arc::clone(&self.quilt), package.to_owned());
        tokio::task::spawn_blocking(move || quilt.push(&package, revision))
            .await
            .expect("join")
    }

    /// A route of this stack's bucket using the facts template; `options` are more TOML keys
    /// of the route (`package_pattern = …`, `skip_unchanged = false`).
    fn route(&self, name: &str, options: &str) -> String {
        let pattern = json!({
            "source": ["com.quiltdata"],
            "detail-type": ["package-revision"],
            "detail": {"bucket": [self.stack.bucket]},
        });
        format!(
            "[[routes]]\nname = \"{name}\"\ntemplate = \"facts\"\nto = [\"{}\"]\npattern = '''{pattern}'''\n{options}\n",
            self.stack.recipient
        )
    }

    /// Starts the worker with `routes` and the facts templates; `env` adds `QUILT_NOTIFY__…`
    /// overrides (the S3 endpoint of a proxy, manifest limits).
    fn start(&self, routes: &str, extra: &str, env: &[(&str, String)]) -> Worker {
        let config = self.stack.config(&self.stack.endpoints.ses, routes, extra);
        let mut env = env.to_vec();
        env.push((
            "QUILT_NOTIFY__TEMPLATES__DIR",
            self.templates.display().to_string(),
        ));
        self.stack.start_worker_with_env(&config, &env)
    }

    /// Publishes the `package-revision` event of `top_hash`, as a Quilt stack does.
    async fn publish(&self, package: &str, top_hash: &str) {
        let detail = json!({
            "version": "0.1",
            "type": "created",
            "bucket": self.stack.bucket,
            "handle": package,
            "topHash": top_hash,
        });
        let event = json!({
            "source": "com.quiltdata",
            "detail-type": "package-revision",
            "detail": detail,
        });
        self.stack.put_event(&event).await;
    }

    /// Waits for `n` emails; panics with the worker's log when fewer arrive.
    async fn emails(&self, n: usize, within: Duration, worker: &Worker) -> Vec<Facts> {
        let emails = self.stack.wait_for_emails(n, within).await;
        assert!(
            emails.len() >= n,
            "{n} emails expected, {} arrived: {emails:#?}\nlog: {:#?}",
            emails.len(),
            worker.lines()
        );
        emails.iter().map(Facts::parse).collect()
    }

    /// Waits until the queue holds nothing, visible or in flight.
    async fn queue_drained(&self) -> bool {
        eventually(WITHIN, || async {
            self.stack.depth(&self.stack.queue_url).await == (0, 0)
        })
        .await
    }

    /// An S3 client on LocalStack, path-style.
    fn s3(&self) -> aws_sdk_s3::Client {
        let sdk = sdk_config(&self.stack.endpoints.aws);
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Moves every revision pointer of `package` `seconds` into the past, as if its pushes so
    /// far had happened that much earlier (quilt3 names a pointer by its push's epoch second).
    async fn age_pointers(&self, package: &str, seconds: u64) {
        let s3 = self.s3();
        let prefix = format!(".quilt/named_packages/{package}/");
        let listed = s3
            .list_objects_v2()
            .bucket(&self.stack.bucket)
            .prefix(&prefix)
            .send()
            .await
            .expect("ListObjectsV2");
        for object in listed.contents() {
            let key = object.key().unwrap_or_default();
            let Ok(stamp) = key.trim_start_matches(&prefix).parse::<u64>() else {
                continue; // latest
            };
            let older = format!("{prefix}{}", stamp - seconds);
            s3.copy_object()
                .bucket(&self.stack.bucket)
                .copy_source(format!("{}/{key}", self.stack.bucket))
                .key(&older)
                .send()
                .await
                .expect("CopyObject");
            s3.delete_object()
                .bucket(&self.stack.bucket)
                .key(key)
                .send()
                .await
                .expect("DeleteObject");
        }
    }
}

/// The email whose `top_hash` line is `top_hash`.
fn for_hash<'a>(emails: &'a [Facts], top_hash: &str) -> &'a Facts {
    let found: Vec<&Facts> = emails
        .iter()
        .filter(|f| f.fields.get("top_hash").is_some_and(|v| v == &[top_hash]))
        .collect();
    assert_eq!(found.len(), 1, "one email for {top_hash}: {emails:#?}");
    found[0]
}

/// Waits for a log line with `outcome`; panics with the log otherwise.
async fn wait_outcome(worker: &Worker, outcome: &str) {
    let seen = worker
        .wait_for_log(WITHIN, |lines| {
            lines.iter().any(|l| l["outcome"] == outcome)
        })
        .await;
    assert!(seen, "an `{outcome}` line: {:#?}", worker.lines());
}

/// WARN lines whose `bucket` and `key` fields are these.
fn warnings_about(worker: &Worker, bucket: &str, key: &str) -> Vec<Value> {
    worker
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l["bucket"] == bucket && l["key"] == key)
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A top hash no manifest has (64 hex digits, unique per call).
fn unknown_hash() -> String {
    let seed = crate::support::unique("missing");
    let mut hash = String::new();
    for (i, b) in seed.bytes().cycle().take(32).enumerate() {
        hash.push_str(&format!("{:02x}", b.wrapping_add(i as u8)));
    }
    hash
}

/// The pid of the running `quilt-notify` started on `config` (found in /proc by its command
/// line, which names the test's own config file).
fn worker_pid(config_dir: &Path) -> Option<u32> {
    let needle = config_dir.join("config.toml").display().to_string();
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("quilt-notify") && cmdline.contains(&needle)).then_some(pid)
    })
}

/// A `/proc/<pid>/status` field in kB (`VmHWM`: peak resident set size).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_first_revision_is_sent_with_its_message_metadata_and_no_changes() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let readme = "# Tables\n\nDemo data.\n";
    let table = "id,value\n1,10\n";
    let raw = "day,count\n1,5\n";
    let first = ds
        .push(
            "team/first",
            Revision::new()
                .starting_empty()
                .message("First revision: <tables> & notes")
                .meta(&json!({"stage": "dev", "owner": "data-team"}))
                .set_text("README.md", readme)
                .set_text("data/table.csv", table)
                .set_text("data/raw/01.csv", raw),
        )
        .await;
    assert_eq!(first.previous_top_hash, None);
    let worker = ds.start(&ds.route("all", ""), "", &[]);

    ds.publish("team/first", &first.top_hash).await;

    let emails = ds.emails(1, WITHIN, &worker).await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    let email = &emails[0];
    assert_eq!(
        email.subject,
        format!("team/first @ {}", &first.top_hash[..7])
    );
    assert_eq!(email.one("top_hash"), first.top_hash);
    assert_eq!(email.one("details"), "present");
    assert_eq!(email.one("message"), "First revision: <tables> & notes");
    assert_eq!(email.one("files"), "3");
    assert_eq!(
        email.one("bytes"),
        (readme.len() + table.len() + raw.len()).to_string()
    );
    assert_eq!(email.one("error"), "", "no error");
    assert_eq!(email.one("readme"), "yes", "the root README.md was read");
    assert_eq!(email.one("meta.stage"), "dev");
    assert_eq!(email.one("meta.owner"), "data-team");
    assert_eq!(email.all("top_level"), strings(&[":1", "data:2"]));
    assert_eq!(
        email.one("changes"),
        "null",
        "a first revision has no changes"
    );
    assert!(
        email
            .html
            .contains("First revision: &lt;tables&gt; &amp; notes"),
        "the message, HTML-escaped: {}",
        email.html
    );
    assert!(email.html.contains("The first revision of the package"));

    wait_outcome(&worker, "sent").await;
    assert!(ds.queue_drained().await, "the message was deleted");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn added_removed_modified_and_metadata_changes_are_what_quilt3_diff_says() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/changes";
    ds.push(
        pkg,
        Revision::new()
            .starting_empty()
            .message("v1")
            .meta(&json!({"stage": "dev", "owner": "data-team"}))
            .set_text("data/table.csv", "id,value\n1,10\n")
            .set_text("data/same-size.csv", "aaaa\n")
            .set_text("docs/guide.md", "Read me.\n")
            .set_text("notes.txt", "root file\n"),
    )
    .await;
    let added = ds
        .push(
            pkg,
            Revision::new()
                .message("add two")
                .meta(&json!({"stage": "dev", "owner": "data-team"}))
                .set_text("data/2024/02.csv", "day,count\n1,6\n")
                .set_text("images/logo.svg", "<svg/>\n"),
        )
        .await;
    let removed = ds
        .push(
            pkg,
            Revision::new()
                .message("remove two")
                .meta(&json!({"stage": "dev", "owner": "data-team"}))
                .delete("docs/guide.md")
                .delete("images/logo.svg"),
        )
        .await;
    let modified = ds
        .push(
            pkg,
            Revision::new()
                .message("modify two")
                .meta(&json!({"stage": "dev", "owner": "data-team"}))
                .set_text("data/table.csv", "id,value\n1,11\n2,21\n")
                .set_text("data/same-size.csv", "bbbb\n"),
        )
        .await;
    let metadata = ds
        .push(
            pkg,
            Revision::new()
                .message("metadata only")
                .meta(&json!({"stage": "prod", "reviewed": true})),
        )
        .await;

    // quilt3's own verdicts, the reference: a sanity check of the scenario itself.
    let diff = |p: &Pushed| p.diff.clone().expect("quilt3 diff");
    assert_eq!(
        diff(&added).added,
        strings(&["data/2024/02.csv", "images/logo.svg"])
    );
    assert_eq!(
        diff(&removed).deleted,
        strings(&["docs/guide.md", "images/logo.svg"])
    );
    assert_eq!(
        diff(&modified).modified,
        strings(&["data/same-size.csv", "data/table.csv"])
    );
    assert_eq!(diff(&metadata), Default::default(), "no file changed");

    let worker = ds.start(&ds.route("all", ""), "", &[]);
    let revisions = [&added, &removed, &modified, &metadata];
    for pushed in revisions {
        ds.publish(pkg, &pushed.top_hash).await;
    }
    let emails = ds.emails(4, WITHIN, &worker).await;
    for pushed in revisions {
        let email = for_hash(&emails, &pushed.top_hash);
        let quilt3 = diff(pushed);
        assert_eq!(email.one("changes"), "present");
        assert_eq!(
            Some(email.one("previous")),
            pushed.previous_top_hash.as_deref(),
            "the previous revision is the one quilt3 replaced"
        );
        assert_eq!(email.one("changes_error"), "");
        assert_eq!(email.one("unchanged"), "false");
        assert_eq!(email.all("added_path"), quilt3.added, "{}", email.text);
        assert_eq!(email.all("removed_path"), quilt3.deleted, "{}", email.text);
        assert_eq!(
            email.all("modified_path"),
            quilt3.modified,
            "{}",
            email.text
        );
        assert_eq!(email.one("added"), quilt3.added.len().to_string());
        assert_eq!(email.one("removed"), quilt3.deleted.len().to_string());
        assert_eq!(email.one("modified"), quilt3.modified.len().to_string());
    }
    let meta = for_hash(&emails, &metadata.top_hash);
    assert_eq!(meta.one("meta.stage"), "prod");
    assert_eq!(meta.all("meta_added"), strings(&["reviewed"]));
    assert_eq!(meta.all("meta_removed"), strings(&["owner"]));
    assert_eq!(meta.all("meta_changed"), strings(&["stage"]));
    for pushed in [&added, &removed, &modified] {
        let email = for_hash(&emails, &pushed.top_hash);
        assert_eq!(email.all("meta_changed"), Vec::<String>::new());
        assert_eq!(email.all("meta_added"), Vec::<String>::new());
    }
    assert_eq!(for_hash(&emails, &metadata.top_hash).one("files"), "4");

    assert!(ds.queue_drained().await, "every message deleted");
    assert_eq!(ds.stack.emails().await.len(), 4, "one email per revision");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_same_hash_re_push_sends_nothing_unless_the_route_turns_skip_unchanged_off() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/repush";
    let revision = || {
        Revision::new()
            .message("Promote to prod")
            .meta(&json!({"stage": "prod"}))
    };
    let first = ds
        .push(
            pkg,
            revision()
                .starting_empty()
                .set_text("data/table.csv", "id\n1\n"),
        )
        .await;
    // Ten minutes ago: a re-push within the pointer skew (5 minutes) of the revision it
    // repeats is taken for that revision, never the other way round.
    ds.age_pointers(pkg, 600).await;
    let again = ds.push(pkg, revision()).await;
    assert_eq!(
        again.top_hash, first.top_hash,
        "same content, same top hash"
    );
    assert_eq!(again.previous_top_hash.as_deref(), Some(&*first.top_hash));

    // Default route: skip_unchanged is on.
    let health = free_port();
    let worker = ds.start(
        &ds.route("skips", ""),
        &format!("[health]\nlisten = \"127.0.0.1:{health}\"\n"),
        &[],
    );
    ds.publish(pkg, &again.top_hash).await;
    wait_outcome(&worker, "unchanged").await;
    assert!(ds.queue_drained().await, "the message was deleted");
    let line = &worker.outcomes("unchanged")[0];
    assert_eq!(line["top_hash"], again.top_hash.as_str(), "{line}");
    let metrics = ds
        .stack
        .http
        .get(format!("http://127.0.0.1:{health}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l == "quilt_notify_unchanged_total 1"),
        "{metrics}"
    );
    assert!(worker.outcomes("sent").is_empty(), "{:#?}", worker.lines());
    assert!(ds.stack.emails().await.is_empty(), "no email for a re-push");
    worker.stop().await;

    // A route that wants every push.
    let worker = ds.start(&ds.route("every-push", "skip_unchanged = false"), "", &[]);
    ds.publish(pkg, &again.top_hash).await;
    let emails = ds.emails(1, WITHIN, &worker).await;
    assert_eq!(emails.len(), 1);
    let email = &emails[0];
    assert_eq!(email.one("route"), "every-push");
    assert_eq!(email.one("changes"), "present");
    assert_eq!(email.one("unchanged"), "true");
    assert_eq!(email.one("previous"), first.top_hash);
    assert_eq!(
        (
            email.one("added"),
            email.one("removed"),
            email.one("modified")
        ),
        ("0", "0", "0")
    );
    wait_outcome(&worker, "sent").await;
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_re_push_seconds_after_a_new_revision_does_not_hide_it() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/quick-repush";
    let first = ds
        .push(
            pkg,
            Revision::new()
                .starting_empty()
                .message("v1")
                .set_text("a.csv", "a\n"),
        )
        .await;
    let second = ds
        .push(pkg, Revision::new().message("v2").set_text("b.csv", "b\n"))
        .await;
    // The same content again a second later (a CI job run twice, say), before the new
    // revision's event is handled: that event's time is now closer to the re-push's pointer.
    let again = ds
        .push(pkg, Revision::new().message("v2").set_text("b.csv", "b\n"))
        .await;
    assert_eq!(
        again.top_hash, second.top_hash,
        "same content, same top hash"
    );
    let worker = ds.start(&ds.route("skips", ""), "", &[]);

    ds.publish(pkg, &second.top_hash).await;

    let emails = ds.emails(1, WITHIN, &worker).await;
    let email = &emails[0];
    assert_eq!(email.one("top_hash"), second.top_hash);
    assert_eq!(email.one("unchanged"), "false", "{}", email.text);
    assert_eq!(email.one("previous"), first.top_hash);
    assert_eq!(email.all("added_path"), ["b.csv"]);
    wait_outcome(&worker, "sent").await;
    assert!(
        worker.outcomes("unchanged").is_empty(),
        "{:#?}",
        worker.lines()
    );
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn nested_folders_and_unicode_keys_are_named_as_quilt3_names_them() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/intl";
    ds.push(
        pkg,
        Revision::new()
            .starting_empty()
            .message("Plain")
            .set_text("README.md", "# Intl\n")
            .set_text("data/table.csv", "id\n1\n")
            .set_text("notes.txt", "root file\n"),
    )
    .await;
    let intl = ds
        .push(
            pkg,
            Revision::new()
                .message("Unicode and deep keys: été, 日本語")
                .set_text("données/été/résumé.csv", "clé,valeur\nà,1\n")
                .set_text("日本語/ファイル.txt", "こんにちは\n")
                .set_text("a/b/c/d/e/deep.txt", "deep\n")
                .set_text("with space/file name.txt", "spaces\n")
                .set_text("data/table.csv", "id\n1\n2\n")
                .delete("notes.txt"),
        )
        .await;
    let quilt3 = intl.diff.clone().expect("quilt3 diff");
    assert_eq!(
        quilt3.added,
        strings(&[
            "a/b/c/d/e/deep.txt",
            "données/été/résumé.csv",
            "with space/file name.txt",
            "日本語/ファイル.txt",
        ])
    );

    let worker = ds.start(&ds.route("all", ""), "", &[]);
    ds.publish(pkg, &intl.top_hash).await;
    let emails = ds.emails(1, WITHIN, &worker).await;
    let email = &emails[0];
    assert_eq!(email.one("message"), "Unicode and deep keys: été, 日本語");
    assert_eq!(email.all("added_path"), quilt3.added);
    assert_eq!(email.all("removed_path"), quilt3.deleted);
    assert_eq!(email.all("removed_path"), strings(&["notes.txt"]));
    assert_eq!(email.all("modified_path"), quilt3.modified);
    assert_eq!(email.all("modified_path"), strings(&["data/table.csv"]));
    assert_eq!(email.one("files"), "6");
    assert_eq!(
        email.all("top_level"),
        strings(&[
            ":1",
            "a:1",
            "data:1",
            "données:1",
            "with space:1",
            "日本語:1"
        ])
    );
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn package_patterns_send_only_for_prod_pushes_and_only_for_removals() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/patterns";
    let stage = |s: &str| json!({"stage": s});
    let dev_first = ds
        .push(
            pkg,
            Revision::new()
                .starting_empty()
                .message("dev, first")
                .meta(&stage("dev"))
                .set_text("a.csv", "a\n")
                .set_text("b.csv", "b\n")
                .set_text("c.csv", "c\n"),
        )
        .await;
    let prod_added = ds
        .push(
            pkg,
            Revision::new()
                .message("prod, one added")
                .meta(&stage("prod"))
                .set_text("d.csv", "d\n"),
        )
        .await;
    let dev_removed = ds
        .push(
            pkg,
            Revision::new()
                .message("dev, one removed")
                .meta(&stage("dev"))
                .delete("a.csv"),
        )
        .await;
    let prod_removed = ds
        .push(
            pkg,
            Revision::new()
                .message("prod, one removed")
                .meta(&stage("prod"))
                .delete("b.csv"),
        )
        .await;

    let routes = [
        ds.route(
            "prod-only",
            r#"package_pattern = '{"package": {"user_meta": {"stage": ["prod"]}}}'"#,
        ),
        ds.route(
            "removals",
            r#"package_pattern = '{"changes": {"removed": {"count": [{"numeric": [">", 0]}]}}}'"#,
        ),
    ]
    .concat();
    let worker = ds.start(&routes, "", &[]);
    let pushes = [&dev_first, &prod_added, &dev_removed, &prod_removed];
    for pushed in pushes {
        ds.publish(pkg, &pushed.top_hash).await;
    }
    // Every event settled: three sent, the dev first revision filtered by both patterns.
    let settled = worker
        .wait_for_log(WITHIN, |lines| {
            let count = |o: &str| lines.iter().filter(|l| l["outcome"] == o).count();
            count("sent") == 3 && count("filtered") == 1
        })
        .await;
    assert!(settled, "3 sent, 1 filtered: {:#?}", worker.lines());
    let filtered = &worker.outcomes("filtered")[0];
    assert_eq!(filtered["top_hash"], dev_first.top_hash.as_str());

    let emails = ds.emails(4, WITHIN, &worker).await;
    let mut sent: Vec<(String, String)> = emails
        .iter()
        .map(|e| (e.one("top_hash").to_owned(), e.one("route").to_owned()))
        .collect();
    sent.sort();
    let mut expected = vec![
        (prod_added.top_hash.clone(), "prod-only".to_owned()),
        (dev_removed.top_hash.clone(), "removals".to_owned()),
        (prod_removed.top_hash.clone(), "prod-only".to_owned()),
        (prod_removed.top_hash.clone(), "removals".to_owned()),
    ];
    expected.sort();
    assert_eq!(sent, expected, "(top hash, route) of each email");
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_lost_previous_manifest_costs_only_the_changes_and_the_routes_that_name_them() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/lost-previous";
    let prod = json!({"stage": "prod", "owners": [ds.stack.recipient.as_str()]});
    let first = ds
        .push(
            pkg,
            Revision::new()
                .starting_empty()
                .message("first")
                .meta(&prod)
                .set_text("a.csv", "a\n"),
        )
        .await;
    let second = ds
        .push(
            pkg,
            Revision::new()
                .message("second")
                .meta(&prod)
                .set_text("b.csv", "b\n"),
        )
        .await;
    assert_eq!(
        second.previous_top_hash.as_deref(),
        Some(first.top_hash.as_str())
    );
    // The previous revision's manifest is gone; the event's own is whole.
    ds.s3()
        .delete_object()
        .bucket(&ds.stack.bucket)
        .key(&first.manifest_key)
        .send()
        .await
        .expect("DeleteObject");
    let pattern = json!({"source": ["com.quiltdata"], "detail": {"bucket": [ds.stack.bucket]}});
    let domain = ds.stack.recipient.split('@').nth(1).expect("domain");
    let routes = [
        ds.route(
            "prod-only",
            r#"package_pattern = '{"package": {"user_meta": {"stage": ["prod"]}}}'"#,
        ),
        // Every recipient named by the package: no `to`.
        format!(
            "[[routes]]\nname = \"owners\"\ntemplate = \"facts\"\n\
             to_from = \"user_meta.owners\"\nallowed_domains = [\"{domain}\"]\npattern = '''{pattern}'''\n"
        ),
        ds.route(
            "removals",
            r#"package_pattern = '{"changes": {"removed": {"count": [{"numeric": [">", 0]}]}}}'"#,
        ),
    ]
    .concat();
    let worker = ds.start(&routes, "", &[]);

    ds.publish(pkg, &second.top_hash).await;

    // The routes that read only the package are sent; the one that names `changes` cannot be
    // decided, and takes the message to the DLQ after them.
    let dead = ds.stack.take(&ds.stack.dlq_url, 1, WITHIN).await;
    assert_eq!(dead.len(), 1, "in the DLQ: {:#?}", worker.lines());
    let emails = ds.emails(2, WITHIN, &worker).await;
    let mut sent: Vec<&str> = emails.iter().map(|e| e.one("route")).collect();
    sent.sort_unstable();
    assert_eq!(sent, ["owners", "prod-only"], "{emails:#?}");
    for email in &emails {
        assert_eq!(email.one("top_hash"), second.top_hash);
        assert_eq!(
            email.one("error"),
            "",
            "the package is whole: {}",
            email.text
        );
        assert_eq!(email.one("files"), "2");
        let changes_error = email.one("changes_error");
        assert!(
            changes_error.contains("previous revision") && changes_error.contains("NoSuchKey"),
            "changes.error says why: {changes_error}"
        );
    }
    let failed = worker.outcomes("failed");
    assert!(!failed.is_empty(), "{:#?}", worker.lines());
    for line in &failed {
        let error = line["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("route \"removals\"")
                && error.contains("package_pattern cannot be evaluated"),
            "{line}"
        );
    }
    assert_eq!(ds.stack.emails().await.len(), 2, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_missing_manifest_still_sends_the_email_saying_which_key_is_missing() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let hash = unknown_hash();
    let key = format!(".quilt/packages/{hash}");
    let worker = ds.start(&ds.route("all", ""), "", &[]);

    ds.publish("team/ghost", &hash).await;

    let emails = ds.emails(1, WITHIN, &worker).await;
    let email = &emails[0];
    assert_eq!(email.one("top_hash"), hash);
    let error = email.one("error");
    assert!(error.contains(&key), "package.error names the key: {error}");
    assert!(
        error.contains("NoSuchKey"),
        "package.error says why: {error}"
    );
    assert_eq!(email.one("files"), "0");
    assert!(email.html.contains(&key), "{}", email.html);
    let warned = warnings_about(&worker, &ds.stack.bucket, &key);
    assert!(
        !warned.is_empty(),
        "a WARN line naming bucket and key: {:#?}",
        worker.lines()
    );
    wait_outcome(&worker, "sent").await;
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_package_pattern_route_dead_letters_an_event_whose_manifest_is_missing() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let hash = unknown_hash();
    let route = ds.route(
        "prod-only",
        r#"package_pattern = '{"package": {"user_meta": {"stage": ["prod"]}}}'"#,
    );
    let worker = ds.start(&route, "", &[]);

    ds.publish("team/ghost", &hash).await;

    let dead = ds.stack.take(&ds.stack.dlq_url, 1, WITHIN).await;
    assert_eq!(dead.len(), 1, "in the DLQ: {:#?}", worker.lines());
    let body: Value = serde_json::from_str(&dead[0]).expect("DLQ body");
    assert_eq!(body["detail"]["topHash"], hash.as_str());
    let failed = worker.outcomes("failed");
    assert!(!failed.is_empty(), "{:#?}", worker.lines());
    for line in &failed {
        assert_eq!(line["error.kind"], "permanent", "{line}");
        let error = line["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("route \"prod-only\"")
                && error.contains("package_pattern cannot be evaluated"),
            "{line}"
        );
    }
    assert!(ds.stack.emails().await.is_empty(), "nothing sent");
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_corrupt_manifest_still_sends_the_email_saying_it_is_corrupt() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let hash = unknown_hash();
    let key = format!(".quilt/packages/{hash}");
    ds.s3()
        .put_object()
        .bucket(&ds.stack.bucket)
        .key(&key)
        .body(
            b"this is not a manifest\n\x00\x01\x02 {{{\n"
                .to_vec()
                .into(),
        )
        .send()
        .await
        .expect("PutObject");
    let worker = ds.start(&ds.route("all", ""), "", &[]);

    ds.publish("team/corrupt", &hash).await;

    let emails = ds.emails(1, WITHIN, &worker).await;
    let email = &emails[0];
    assert_eq!(email.one("top_hash"), hash);
    let error = email.one("error");
    assert!(!error.is_empty(), "package.error set: {}", email.text);
    assert!(
        error.contains("line 1 is not valid JSON"),
        "names the bad line: {error}"
    );
    assert!(error.contains(&key), "names the manifest: {error}");
    assert_eq!(email.one("files"), "0");
    let warned = warnings_about(&worker, &ds.stack.bucket, &key);
    assert!(
        warned.iter().any(|l| l["cause"].is_string()),
        "a WARN line naming bucket, key and cause: {:#?}",
        worker.lines()
    );
    wait_outcome(&worker, "sent").await;
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn access_denied_on_the_manifest_still_sends_the_email_saying_so() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/secret";
    let pushed = ds
        .push(
            pkg,
            Revision::new()
                .starting_empty()
                .message("Secret")
                .set_text("data.csv", "x\n"),
        )
        .await;
    let proxy = SesProxy::start(&ds.stack.endpoints.aws, 8).await;
    proxy.set(Faults::none().s3_error(&pushed.manifest_key, S3Error::access_denied()));
    let worker = ds.start(
        &ds.route("all", ""),
        "",
        &[("QUILT_NOTIFY__S3__ENDPOINT_URL", proxy.url.clone())],
    );

    ds.publish(pkg, &pushed.top_hash).await;

    let emails = ds.emails(1, WITHIN, &worker).await;
    let email = &emails[0];
    let error = email.one("error");
    assert!(
        error.contains("AccessDenied"),
        "package.error says access was denied: {error}"
    );
    assert!(
        error.contains(&pushed.manifest_key),
        "names the key: {error}"
    );
    assert_eq!(email.one("files"), "0");
    assert!(proxy.stats().s3_failed >= 1, "{:?}", proxy.stats());
    let warned = warnings_about(&worker, &ds.stack.bucket, &pushed.manifest_key);
    assert!(
        warned.iter().any(|l| l["error.kind"] == "denied"),
        "a WARN line naming bucket, key and the denial: {:#?}",
        worker.lines()
    );
    wait_outcome(&worker, "sent").await;
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn s3_throttling_is_retried_and_the_email_goes_out_once_with_full_details() {
    // Room for several receives: the redrive policy must not be what ends the test.
    let ds = DetailsStack::new(StackOptions {
        max_receive_count: 10,
        ..StackOptions::default()
    })
    .await;
    let pkg = "team/busy";
    let pushed = ds
        .push(
            pkg,
            Revision::new()
                .starting_empty()
                .message("Busy")
                .set_text("a.csv", "a\n")
                .set_text("b.csv", "b\n"),
        )
        .await;
    let proxy = SesProxy::start(&ds.stack.endpoints.aws, 9).await;
    // More SlowDowns than the SDK's own retries absorb (3 attempts a call), so the worker itself
    // sees the throttling at least once and must retry the message.
    let slowdowns = 5;
    proxy.set(Faults::none().s3_error_times(&pushed.manifest_key, S3Error::slow_down(), slowdowns));
    let worker = ds.start(
        &ds.route("all", ""),
        "",
        &[("QUILT_NOTIFY__S3__ENDPOINT_URL", proxy.url.clone())],
    );

    ds.publish(pkg, &pushed.top_hash).await;

    wait_outcome(&worker, "sent").await;
    let failed = worker.outcomes("failed");
    assert!(
        !failed.is_empty(),
        "a failed receive: {:#?}",
        worker.lines()
    );
    for line in &failed {
        assert_eq!(line["error.kind"], "transient", "{line}");
        assert_eq!(line["error.code"], "SlowDown", "{line}");
    }
    assert_eq!(proxy.stats().s3_failed, slowdowns, "{:?}", proxy.stats());
    assert!(ds.queue_drained().await, "the message was deleted");
    assert_eq!(
        ds.stack.depth(&ds.stack.dlq_url).await,
        (0, 0),
        "nothing dead-lettered"
    );
    let emails = ds.stack.emails().await;
    assert_eq!(emails.len(), 1, "exactly one email: {emails:#?}");
    let email = Facts::parse(&emails[0]);
    assert_eq!(email.one("error"), "", "details complete: {}", email.text);
    assert_eq!(email.one("files"), "2");
    assert_eq!(email.one("message"), "Busy");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_manifest_over_max_manifest_entries_is_read_no_further_and_the_email_says_why() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/capped";
    let pushed = ds
        .push(
            pkg,
            Revision::new()
                .starting_empty()
                .message("Three files")
                .set_text("a.csv", "a\n")
                .set_text("b.csv", "b\n")
                .set_text("c.csv", "c\n"),
        )
        .await;
    let worker = ds.start(
        &ds.route("all", ""),
        "",
        &[("QUILT_NOTIFY__S3__MAX_MANIFEST_ENTRIES", "2".to_owned())],
    );

    ds.publish(pkg, &pushed.top_hash).await;

    let emails = ds.emails(1, WITHIN, &worker).await;
    let email = &emails[0];
    let error = email.one("error");
    assert!(!error.is_empty(), "package.error set: {}", email.text);
    assert!(
        error.contains("more than 2 entries"),
        "names the limit: {error}"
    );
    assert!(
        error.contains(&pushed.manifest_key),
        "names the manifest: {error}"
    );
    assert_eq!(email.one("message"), "Three files", "the header was read");
    let warned = warnings_about(&worker, &ds.stack.bucket, &pushed.manifest_key);
    assert!(!warned.is_empty(), "a WARN line: {:#?}", worker.lines());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_package_of_100000_files_is_summarized_in_bounded_memory() {
    const FILES: usize = 100_000;
    let ds = DetailsStack::new(StackOptions::default()).await;
    let pkg = "team/huge";
    let quilt = Arc::clone(&ds.quilt);
    let built = tokio::task::spawn_blocking(move || quilt.bulk(pkg, FILES, "A hundred thousand"))
        .await
        .expect("join");
    let worker = ds.start(&ds.route("all", ""), "", &[]);
    let pid = eventually(WITHIN, || {
        std::future::ready(worker_pid(ds.stack.dir.path()).ok_or(()))
    })
    .await
    .expect("the worker's pid in /proc");
    // Its start-up line is written once it is built and about to poll.
    let started = worker.wait_for_log(WITHIN, |lines| !lines.is_empty()).await;
    assert!(started, "the worker logged nothing");
    let rss_before = status_kb(pid, "VmHWM").unwrap_or(0);

    let published = Instant::now();
    ds.publish(pkg, &built.top_hash).await;
    let emails = ds.emails(1, Duration::from_secs(180), &worker).await;
    let took = published.elapsed();
    let peak_kb = status_kb(pid, "VmHWM").expect("VmHWM");

    let email = &emails[0];
    assert_eq!(email.one("error"), "", "{}", email.text);
    assert_eq!(email.one("files"), FILES.to_string());
    assert_eq!(email.one("message"), "A hundred thousand");
    // Entry i is 100 + i % 50 bytes.
    let bytes: u64 = (0..FILES as u64).map(|i| 100 + i % 50).sum();
    assert_eq!(email.one("bytes"), bytes.to_string());
    let tops: Vec<String> = (0..10).map(|i| format!("shard-{i}:10000")).collect();
    assert_eq!(email.all("top_level"), tops);
    eprintln!(
        "100k-file package: publish → email {:.2} s; worker peak RSS (VmHWM) {:.1} MB \
         (before the event {:.1} MB)",
        took.as_secs_f64(),
        peak_kb as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    assert!(
        peak_kb < 300 * 1024,
        "peak RSS {peak_kb} kB over the 300 MB sanity bound"
    );
    wait_outcome(&worker, "sent").await;
    assert!(ds.queue_drained().await);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn manifests_wait_for_the_memory_budget_and_one_larger_than_all_of_it_says_so() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    // About 250 bytes a line: 10,000 files are 2.5 MB, 20,000 are 5 MB; the budget is 3 MiB.
    let quilt = Arc::clone(&ds.quilt);
    let built = tokio::task::spawn_blocking(move || {
        [
            ("team/fits-a", 10_000),
            ("team/fits-b", 10_000),
            ("team/too-big", 20_000),
        ]
        .map(|(pkg, files)| (pkg, quilt.bulk(pkg, files, pkg)))
    })
    .await
    .expect("join");
    let worker = ds.start(
        &ds.route("all", ""),
        "",
        &[("QUILT_NOTIFY__S3__MEMORY_MEGABYTES", "3".to_owned())],
    );

    for (pkg, pushed) in &built {
        ds.publish(pkg, &pushed.top_hash).await;
    }

    let emails = ds.emails(3, Duration::from_secs(180), &worker).await;
    for (pkg, pushed) in &built[..2] {
        // Each fits alone, not beside the other: one waited for the other, and both are whole.
        let email = for_hash(&emails, &pushed.top_hash);
        assert_eq!(email.one("error"), "", "{pkg}: {}", email.text);
        assert_eq!(email.one("files"), "10000", "{pkg}");
    }
    let (_, big) = &built[2];
    let email = for_hash(&emails, &big.top_hash);
    let error = email.one("error");
    assert!(
        error.contains(&big.manifest_key) && error.contains("s3.memory_megabytes (3.0 MiB)"),
        "package.error names the manifest and the budget: {error}"
    );
    assert_eq!(email.one("files"), "0", "not read");
    let warned = warnings_about(&worker, &ds.stack.bucket, &big.manifest_key);
    assert!(
        warned.iter().any(|l| l["cause"]
            .as_str()
            .is_some_and(|c| c.contains("s3.memory_megabytes"))),
        "a WARN line naming the manifest and why: {:#?}",
        worker.lines()
    );
    assert!(ds.queue_drained().await);
}

// ------------------------------------------------------------------ who gets the mail (issue 15)

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn owners_named_in_the_package_metadata_get_the_mail_only_in_allowed_domains() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let ana = format!("{}@example.com", crate::support::unique("ana"));
    let bo = crate::support::unique("bo");
    let jurgen = crate::support::unique("j");
    let owned = ds
        .push(
            "team/owned",
            Revision::new()
                .starting_empty()
                .message("owned")
                .meta(&json!({"owners": [
                    ana,
                    "eve@evil.test",
                    "x@example.com\r\nBcc: y@evil.test",
                    format!("Bo <{bo}@EXAMPLE.com>"),
                    "eve@evil.test, Bo <bo@example.com>",
                    "<eve2@evil.test><bo2@example.com>",
                    format!("Jürgen <{jurgen}@example.com>"),
                ]}))
                .set_text("data.csv", "a\n1\n"),
        )
        .await;
    let pattern = json!({"source": ["com.quiltdata"], "detail": {"bucket": [ds.stack.bucket]}});
    let route = format!(
        "[[routes]]\nname = \"owners\"\ntemplate = \"facts\"\nto = [\"{}\"]\n\
         to_from = \"user_meta.owners\"\nallowed_domains = [\"example.com\"]\npattern = '''{pattern}'''\n",
        ds.stack.recipient
    );
    let worker = ds.start(&route, "", &[]);

    ds.publish("team/owned", &owned.top_hash).await;

    let emails = ds.stack.wait_for_emails(1, WITHIN).await;
    assert_eq!(emails.len(), 1, "log: {:#?}", worker.lines());
    assert_eq!(
        emails[0]["destination"]["to"],
        json!([
            ds.stack.recipient,
            ana,
            format!("Bo <{bo}@example.com>"),
            format!("=?utf-8?b?SsO8cmdlbg==?= <{jurgen}@example.com>"),
        ]),
        "the operator's address first, then the allowed owners in metadata order, in ASCII"
    );
    let dropped: Vec<Value> = worker
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l["route"] == "owners" && l["dropped"] == 4)
        .collect();
    assert_eq!(
        dropped.len(),
        1,
        "one WARN line for the four drops: {:#?}",
        worker.lines()
    );
    let first = dropped[0]["first"].as_str().expect("first");
    assert!(
        first.contains("evil.test is not in allowed_domains"),
        "{first}"
    );
    assert!(first.contains("control characters"), "{first}");
    assert!(first.contains("holds 2 addresses"), "{first}");
    assert!(first.contains("is not one email address"), "{first}");
    assert_eq!(dropped[0]["handle"], "team/owned");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_route_with_a_topic_asks_ses_for_list_management_and_others_do_not() {
    let ds = DetailsStack::new(StackOptions::default()).await;
    let proxy = SesProxy::start(&ds.stack.endpoints.ses, 7).await;
    let pushed = ds
        .push(
            "team/listed",
            Revision::new()
                .starting_empty()
                .set_text("data.csv", "a\n1\n"),
        )
        .await;
    let routes = format!(
        "{}{}",
        ds.route("listed", "topic = \"releases\""),
        ds.route("plain", "")
    );
    let config = ds.stack.config(&proxy.url, &routes, "");
    let worker = ds.stack.start_worker_with_env(
        &config,
        &[
            (
                "QUILT_NOTIFY__TEMPLATES__DIR",
                ds.templates.display().to_string(),
            ),
            ("QUILT_NOTIFY__SES__CONTACT_LIST", "quilt-notify".to_owned()),
        ],
    );

    ds.publish("team/listed", &pushed.top_hash).await;

    let emails = ds.stack.wait_for_emails(2, WITHIN).await;
    assert_eq!(emails.len(), 2, "log: {:#?}", worker.lines());
    let requests = proxy.send_requests();
    let by_route = |route: &str| -> Value {
        requests
            .iter()
            .find(|r| {
                r["EmailTags"].as_array().is_some_and(|tags| {
                    tags.iter()
                        .any(|t| t["Name"] == "route" && t["Value"] == route)
                })
            })
            .cloned()
            .unwrap_or_else(|| panic!("a SendEmail for {route}: {requests:#?}"))
    };
    assert_eq!(
        by_route("listed")["ListManagementOptions"],
        json!({"ContactListName": "quilt-notify", "TopicName": "releases"})
    );
    assert_eq!(by_route("plain").get("ListManagementOptions"), None);
}
