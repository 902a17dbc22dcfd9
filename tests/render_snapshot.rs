//! Snapshots of the default template (`config/templates/package-created`) rendered for the
//! documented event, in three cases: with the package details of `events/package-details.json`
//! (a revision with changes), without details (`package` and `changes` null, as with
//! `s3.details = false`), and for a first revision (`changes` null). For each case
//! `tests/snapshots/<case>.html` is the HTML part exactly as sent, `tests/snapshots/<case>.txt`
//! the subject line, a blank line, then the text part.
//!
//! The digest template (`config/templates/digest`) has its snapshot too, `tests/snapshots/digest.*`:
//! an hourly window with two packages, one of them with two revisions (one a first revision).
//!
//! A template change shows up here as a diff to review. After an intended change, rewrite the
//! snapshots with `UPDATE_SNAPSHOTS=1 cargo test --test render_snapshot` and commit them.

use std::path::{Path, PathBuf};

use quilt_notify::domain::details::Details;
use quilt_notify::domain::digest::{digest_data, DigestEntry, MAX_PACKAGES};
use quilt_notify::domain::event::PackageEvent;
use quilt_notify::domain::manifest::{Folder, Workflow};
use quilt_notify::domain::render::{template_data, RenderedEmail, Renderer};
use quilt_notify::domain::route::Route;
use serde_json::json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `actual` with the snapshot file, or rewrites the file under `UPDATE_SNAPSHOTS=1`.
fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || expected.lines().count().min(actual.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} differs from the rendering, first at line {line}:\n  snapshot: {:?}\n  rendered: {:?}\n\
             If the change is intended: UPDATE_SNAPSHOTS=1 cargo test --test render_snapshot",
            path.display(),
            expected.lines().nth(line - 1).unwrap_or("<end>"),
            actual.lines().nth(line - 1).unwrap_or("<end>"),
        );
    }
}

fn renderer() -> Renderer {
    quilt_notify::config::templates::load_dir(&root().join("config/templates"), ["package-created"])
        .expect("templates load")
}

fn event() -> PackageEvent {
    let body = std::fs::read_to_string(root().join("events/package-revision.json")).expect("event");
    PackageEvent::parse(&body).expect("documented event parses")
}

/// The default template for the documented event with these details.
fn render(details: Option<&Details>) -> RenderedEmail {
    let data = template_data(
        &event(),
        Some("catalog.example.com"),
        "package-created",
        details,
    );
    renderer().render("package-created", data).expect("renders")
}

/// Compares both parts with `tests/snapshots/<case>.{html,txt}`.
fn assert_email_snapshot(case: &str, email: &RenderedEmail) {
    let snapshots = root().join("tests/snapshots");
    assert_snapshot(&snapshots.join(format!("{case}.html")), &email.html);
    assert_snapshot(
        &snapshots.join(format!("{case}.txt")),
        &format!("Subject: {}\n\n{}", email.subject, email.text),
    );
}

fn sample_details() -> Details {
    quilt_notify::app::sample_details().expect("built-in sample details")
}

#[test]
fn without_details_the_default_template_renders_the_documented_event_as_the_snapshots() {
    let email = render(None);
    assert_email_snapshot("package-created", &email);
    assert!(!email.text.contains("What changed"), "{}", email.text);
}

#[test]
fn with_details_the_default_template_shows_the_package_and_its_changes_as_the_snapshots() {
    let email = render(Some(&sample_details()));
    assert_email_snapshot("package-created-details", &email);
    assert_eq!(
        email.subject,
        "New package revision: some/package @ a0fddac in s3://example (+4 -1 ~0 files)"
    );
    for shown in [
        "Unicode and deep keys",
        "8 files, 166 bytes",
        "+ 日本語/ファイル.txt",
        "- notes.txt",
        "owner: data-team (removed)",
        "tags: [\"raw\"] → [\"raw\",\"intl\"]",
        "tags: raw, intl",
        "A package pushed by scripts/quilt_packages.py.",
        "/compare/487e8c85f8c3a31176d0ccddfb97e7c611b7ba19c3bcb0df9738a4d5077b416e/",
        "/revisions",
    ] {
        assert!(
            email.text.contains(shown),
            "text lacks {shown:?}:\n{}",
            email.text
        );
    }
}

#[test]
fn with_tables_the_default_template_shows_rows_and_columns_per_table_as_the_snapshots() {
    let mut details = sample_details();
    let changes = details.changes.as_mut().expect("sample changes");
    let mut tables = quilt_notify::app::sample_tables();
    // A hostile column name: escaped in the HTML part, kept as text in the text part.
    tables.entries[1]["columns"]["count"] = json!(4);
    tables.entries[0]["columns"]["added"]
        .as_array_mut()
        .expect("added")
        .push(json!({"name": "<img src=x onerror=alert(1)>", "type": "string"}));
    tables.more = 2;
    changes.tables = Some(tables);
    let email = render(Some(&details));
    assert_email_snapshot("package-created-tables", &email);
    for shown in [
        "data/readings.parquet (parquet, modified)",
        "Rows:    1200 → 1300",
        "+ station_id (int64)",
        "- note (string)",
        "~ value: int32 → double",
        "data/stations.csv (csv, added)",
        "Not read: not a Parquet file: no PAR1 at its end",
        "2 more not read",
    ] {
        assert!(
            email.text.contains(shown),
            "text lacks {shown:?}:\n{}",
            email.text
        );
    }
    assert!(!email.html.contains("<img src=x"), "{}", email.html);
    assert!(email.html.contains("&lt;img src&#x3D;x"), "{}", email.html);
}

#[test]
fn a_first_revision_says_so_as_the_snapshots() {
    let details = Details {
        changes: None,
        unchanged: false,
        ..sample_details()
    };
    let email = render(Some(&details));
    assert_email_snapshot("package-created-first", &email);
    assert!(
        email.subject.ends_with(" (first revision)"),
        "{}",
        email.subject
    );
    assert!(email
        .text
        .contains("This is the first revision of the package."));
    assert!(email
        .html
        .contains("This is the first revision of the package."));
}

#[test]
fn incomplete_details_say_why_and_claim_no_first_revision() {
    let sample = sample_details();
    let details = Details {
        package: sample.package.failed("AccessDenied reading the manifest"),
        changes: None,
        ..sample
    };
    let email = render(Some(&details));
    assert!(email
        .text
        .contains("Details incomplete: AccessDenied reading the manifest"));
    assert!(email.html.contains("AccessDenied reading the manifest"));
    assert!(
        !email.subject.contains("first revision"),
        "{}",
        email.subject
    );
    assert!(!email.text.contains("first revision"), "{}", email.text);

    let mut details = sample_details();
    if let Some(changes) = &mut details.changes {
        changes.diff = Err("the previous revision's manifest was not read whole".to_owned());
    }
    let email = render(Some(&details));
    assert!(email
        .text
        .contains("Unknown: the previous revision's manifest was not read whole"));
    assert!(!email.subject.contains('+'), "{}", email.subject);
}

#[test]
fn hostile_package_content_is_escaped_in_html_and_keeps_the_subject_one_line() {
    let evil = "<script>alert(\"x\")</script>\r\nBcc: victim@example.com '&";
    let mut details = sample_details();
    let package = details.package.package_mut();
    package.message = Some(evil.to_owned());
    package.readme = Some(evil.to_owned());
    package.user_meta =
        serde_json::from_value(json!({ evil: evil, "nested": {"k": evil} })).expect("an object");
    package.workflow = Some(Workflow {
        id: Some(evil.to_owned()),
        config: None,
    });
    package.top_level = vec![Folder {
        name: evil.to_owned(),
        files: 1,
        bytes: 1,
    }];
    let diff = details
        .changes
        .as_mut()
        .and_then(|c| c.diff.as_mut().ok())
        .expect("the sample has a diff");
    diff.added.paths = vec![evil.to_owned()];
    diff.user_meta.changed = vec![evil.to_owned()];
    let email = render(Some(&details));
    assert!(!email.html.contains("<script"), "{}", email.html);
    assert!(email.html.contains("&lt;script&gt;"));
    assert!(!email.subject.contains(['\r', '\n']), "{:?}", email.subject);
    assert!(
        email.text.contains(evil),
        "the text part is not HTML: shown as is"
    );
}

#[test]
fn a_route_with_a_topic_gets_the_unsubscribe_link_and_others_do_not() {
    let spec = serde_json::from_value(serde_json::json!({
        "name": "package-created", "template": "package-created", "to": ["a@b.c"],
        "pattern": {"source": ["com.quiltdata"]}, "topic": "releases"
    }))
    .expect("spec");
    let route = Route::compile(&spec).expect("route");
    let data = quilt_notify::domain::render::route_data(&route, &event(), None, None);
    let email = renderer().render("package-created", data).expect("renders");
    let placeholder = quilt_notify::domain::render::SES_UNSUBSCRIBE_PLACEHOLDER;
    assert!(
        email.html.contains(&format!("<a href=\"{placeholder}\"")),
        "{}",
        email.html
    );
    assert!(
        email.text.contains(&format!("Unsubscribe: {placeholder}")),
        "{}",
        email.text
    );
    assert!(!render(None).text.contains("Unsubscribe"));
}

// --- The digest template -----------------------------------------------------------------------

const HASH_FIRST: &str = "487e8c85f8c3a31176d0ccddfb97e7c611b7ba19c3bcb0df9738a4d5077b416e";
const HASH_SECOND: &str = "e160a192a9d8d2edb53a9937c0db29939a25910668b1c1bf7e73301ab8325214";
const HASH_OTHER: &str = "a0fddace2eb2fd91faa697d237a5dbdcfa77f0fd38ca8b4c850dbd93d142ee69";

/// The documented event as another revision.
fn revision(id: &str, time: &str, handle: &str, top_hash: &str) -> PackageEvent {
    let mut envelope = event().envelope().clone();
    envelope["id"] = json!(id);
    envelope["time"] = json!(time);
    envelope["detail"]["handle"] = json!(handle);
    envelope["detail"]["topHash"] = json!(top_hash);
    PackageEvent::from_envelope(envelope).expect("event")
}

/// Two revisions of team/demo (a first one, then one with changes) and one of some/package
/// without details, in the window 2026-11-29 10:00–11:00 UTC.
fn digest_entries() -> Vec<DigestEntry> {
    let mut details = sample_details();
    if let Some(changes) = details.changes.as_mut() {
        changes.tables = Some(quilt_notify::app::sample_tables());
    }
    let first = Details {
        changes: None,
        ..sample_details()
    };
    vec![
        DigestEntry::new(
            &revision("e1", "2026-11-29T10:05:00Z", "team/demo", HASH_FIRST),
            Some(&first),
        ),
        DigestEntry::new(
            &revision("e2", "2026-11-29T10:40:00Z", "team/demo", HASH_SECOND),
            Some(&details),
        ),
        DigestEntry::new(
            &revision("e3", "2026-11-29T10:20:00Z", "some/package", HASH_OTHER),
            None,
        ),
    ]
}

/// The shipped digest template for these entries, for an hourly route.
fn render_digest(
    entries: Vec<DigestEntry>,
    catalog_host: Option<&str>,
    topic: Option<&str>,
) -> RenderedEmail {
    let spec = serde_json::from_value(json!({
        "name": "hourly", "to": ["a@b.c"], "pattern": {"source": ["com.quiltdata"]},
        "digest": {"every": "1h"}, "topic": topic
    }))
    .expect("spec");
    let route = Route::compile(&spec).expect("route");
    let schedule = route.digest.clone().expect("a digest route");
    let window = schedule.window_at(1_795_948_200); // 2026-11-29T10:30:00Z
    let data = digest_data(&route, &schedule, window, entries, catalog_host);
    quilt_notify::config::templates::load_dir(
        &root().join("config/templates"),
        [route.template.as_str()],
    )
    .expect("templates load")
    .render(&route.template, data)
    .expect("renders")
}

#[test]
fn the_digest_template_lists_each_package_as_the_snapshots() {
    let email = render_digest(
        digest_entries(),
        Some("catalog.example.com"),
        Some("digests"),
    );
    assert_email_snapshot("digest", &email);
    assert_eq!(
        email.subject,
        "[Quilt] 3 revisions of 2 packages, 2026-11-29 10:00–11:00 UTC"
    );
    let html_as_shown = email.html.replace("&#x3D;", "=");
    for shown in [
        "team/demo",
        "s3://example",
        "\"Unicode and deep keys\"",
        "8 files, 166 bytes",
        "+4 -1 ~0 files",
        "Rows:     +140 across 3 changed table files in this window",
        "(first revision)",
        "some/package in s3://example: 1 revision\n",
        &format!("https://catalog.example.com/b/example/packages/team/demo/tree/{HASH_SECOND}/"),
        "All revisions: https://catalog.example.com/b/example/packages/team/demo/revisions",
        "Unsubscribe: {{amazonSESUnsubscribeUrl}}",
        "every 1h",
    ] {
        assert!(
            email.text.contains(shown),
            "text lacks {shown:?}:\n{}",
            email.text
        );
    }
    for shown in [
        "Unicode and deep keys",
        "first revision",
        &format!("/b/example/packages/team/demo/tree/{HASH_SECOND}/"),
        "/b/example/packages/team/demo/revisions",
        "<a href=\"{{amazonSESUnsubscribeUrl}}\"",
    ] {
        assert!(html_as_shown.contains(shown), "html lacks {shown:?}");
    }
    // The newest package comes first.
    let demo = email.text.find("team/demo in").expect("team/demo");
    let other = email.text.find("some/package in").expect("some/package");
    assert!(demo < other, "{}", email.text);
    assert!(!email.text.contains("more package"), "{}", email.text);
}

#[test]
fn the_digest_template_renders_without_a_catalog_and_counts_the_packages_left_out() {
    let sample = sample_details();
    let incomplete = Details {
        package: sample.package.clone().failed("AccessDenied"),
        ..sample
    };
    let mut entries = digest_entries();
    entries.push(DigestEntry::new(
        &revision("e4", "2026-11-29T10:50:00Z", "team/partial", HASH_OTHER),
        Some(&incomplete),
    ));
    let email = render_digest(entries, None, None);
    assert!(!email.html.contains("catalog.example.com") && !email.text.contains("https://"));
    assert!(!email.text.contains("Unsubscribe") && !email.html.contains("Unsubscribe"));
    assert!(
        email.text.contains("8 files, 166 bytes (as far as read)\n  Changes:  +4 -1 ~0 files\n  Details incomplete."),
        "{}",
        email.text
    );
    assert!(email.html.contains("Details incomplete."));

    let many: Vec<DigestEntry> = (0..=MAX_PACKAGES)
        .map(|i| {
            DigestEntry::new(
                &revision(
                    &format!("e{i}"),
                    "2026-11-29T10:05:00Z",
                    &format!("p/{i:04}"),
                    HASH_OTHER,
                ),
                None,
            )
        })
        .collect();
    let email = render_digest(many, Some("catalog.example.com"), None);
    assert_eq!(
        email.subject,
        "[Quilt] 501 revisions of 501 packages, 2026-11-29 10:00–11:00 UTC"
    );
    assert!(email
        .text
        .contains("... and 1 more package, not listed here."));
    assert!(email.html.contains("and 1 more package, not listed here."));
    assert!(email.text.contains("p/0499 in") && !email.text.contains("p/0500"));
}

#[test]
fn the_digest_template_escapes_package_content_in_html() {
    let evil = "<script>alert(\"x\")</script>\r\nBcc: victim@example.com";
    let mut details = sample_details();
    details.package.package_mut().message = Some(evil.to_owned());
    let entry = DigestEntry::new(
        &revision("e1", "2026-11-29T10:05:00Z", "<b>evil</b>", HASH_OTHER),
        Some(&details),
    );
    let email = render_digest(vec![entry], Some("catalog.example.com"), None);
    assert!(!email.html.contains("<script") && !email.html.contains("<b>evil"));
    assert!(email.html.contains("&lt;script&gt;"));
    assert!(
        email.text.contains(evil),
        "the text part is not HTML: shown as is"
    );
}
