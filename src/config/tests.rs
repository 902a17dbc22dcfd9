//! Loading and checking settings, end to end: from a file and variables to `Settings` or an
//! error naming the key.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[queue]
url = "http://127.0.0.1:4566/000000000000/q"
[ses]
from = "quilt@example.com"
[[routes]]
name = "all"
template = "package-created"
to = ["team@example.com"]
pattern = { source = ["com.quiltdata"] }
"#;

fn file(contents: &str, ext: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(ext)
        .tempfile()
        .expect("temp file");
    f.write_all(contents.as_bytes()).expect("write");
    f
}

fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn load(contents: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let f = file(contents, ".toml");
    Settings::load_with_env(Some(f.path()), env(vars))
}

#[test]
fn defaults_fill_everything_but_queue_sender_and_routes() {
    let s = load(MINIMAL, &[]).expect("loads");
    assert_eq!(s.queue.wait_time_seconds, 20);
    assert_eq!(s.queue.max_messages, 10);
    assert_eq!(s.queue.endpoint_url, None);
    assert_eq!(s.worker.pollers, 4);
    assert_eq!(s.worker.concurrency, 40);
    assert_eq!(s.worker.threads, 1);
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.catalog.host, None);
    assert_eq!(s.metrics.emf_interval_seconds, 60);
    assert_eq!(s.metrics.namespace, "QuiltNotify");
    assert_eq!(s.events.endpoint_url, None);
    assert!(s.s3.tables);
    assert_eq!(s.s3.max_tables, 20);
    assert_eq!(s.s3.max_footer_megabytes, 8);
    assert_eq!(s.routes.len(), 1);
    assert_eq!(s.routes[0].pattern["source"][0], "com.quiltdata");
}

#[test]
fn templates_dir_is_relative_to_the_config_file() {
    let f = file(MINIMAL, ".toml");
    let s = Settings::load_with_env(Some(f.path()), env(&[])).expect("loads");
    let parent = f.path().parent().expect("parent");
    assert_eq!(s.templates.dir, parent.join("templates"));
}

#[test]
fn environment_overrides_the_file_with_double_underscores() {
    let s = load(
        MINIMAL,
        &[
            ("QUILT_NOTIFY__QUEUE__MAX_MESSAGES", "3"),
            ("QUILT_NOTIFY__SES__ENDPOINT_URL", "http://127.0.0.1:8005"),
            ("QUILT_NOTIFY__CATALOG__HOST", "catalog.example.com"),
            ("QUILT_NOTIFY__LOG__FORMAT", "pretty"),
        ],
    )
    .expect("loads");
    assert_eq!(s.queue.max_messages, 3);
    assert_eq!(s.ses.endpoint_url.as_deref(), Some("http://127.0.0.1:8005"));
    assert_eq!(s.catalog.host.as_deref(), Some("catalog.example.com"));
    assert_eq!(s.log.format, LogFormat::Pretty);
}

#[test]
fn queue_url_and_sender_may_come_from_the_environment_alone() {
    let without = MINIMAL
        .replace("url = \"http://127.0.0.1:4566/000000000000/q\"", "")
        .replace("from = \"quilt@example.com\"", "");
    let s = load(
        &without,
        &[
            ("QUILT_NOTIFY__QUEUE__URL", "https://sqs/q"),
            ("QUILT_NOTIFY__SES__FROM", "a@b.c"),
        ],
    )
    .expect("loads");
    assert_eq!(s.queue.url, "https://sqs/q");
    assert_eq!(s.ses.from, "a@b.c");
}

#[test]
fn a_sender_ses_cannot_take_is_refused_naming_the_key_and_why() {
    for (from, why) in [
        ("jürgen@example.com", "not 7-bit ASCII"),
        ("a@example.com, b@example.com", "holds 2 addresses"),
        ("Quilt", "not one email address"),
    ] {
        let msg = load(&MINIMAL.replace("quilt@example.com", from), &[])
            .expect_err(from)
            .to_string();
        assert!(
            msg.contains("ses.from") && msg.contains(why),
            "{from}: {msg}"
        );
    }
    let international = load(
        &MINIMAL.replace("quilt@example.com", "Qüilt <q@bücher.example>"),
        &[],
    );
    assert!(international.is_ok(), "{international:?}");
}

#[test]
fn missing_queue_url_names_the_key_and_the_variable() {
    let err = load(
        &MINIMAL.replace("http://127.0.0.1:4566/000000000000/q", ""),
        &[],
    )
    .expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("queue.url"), "{msg}");
    assert!(msg.contains("QUILT_NOTIFY__QUEUE__URL"), "{msg}");
}

#[test]
fn out_of_range_values_name_their_key() {
    for (var, value, key) in [
        (
            "QUILT_NOTIFY__QUEUE__MAX_MESSAGES",
            "11",
            "queue.max_messages",
        ),
        (
            "QUILT_NOTIFY__QUEUE__WAIT_TIME_SECONDS",
            "21",
            "queue.wait_time_seconds",
        ),
        ("QUILT_NOTIFY__WORKER__POLLERS", "0", "worker.pollers"),
        ("QUILT_NOTIFY__WORKER__THREADS", "0", "worker.threads"),
        (
            "QUILT_NOTIFY__SES__MAX_SEND_RATE",
            "-1",
            "ses.max_send_rate",
        ),
        (
            "QUILT_NOTIFY__S3__MAX_MANIFEST_ENTRIES",
            "0",
            "s3.max_manifest_entries",
        ),
        (
            "QUILT_NOTIFY__S3__MEMORY_MEGABYTES",
            "0",
            "s3.memory_megabytes",
        ),
        (
            "QUILT_NOTIFY__S3__MEMORY_MEGABYTES",
            "5000000",
            "s3.memory_megabytes",
        ),
        ("QUILT_NOTIFY__S3__MAX_TABLES", "0", "s3.max_tables"),
        ("QUILT_NOTIFY__S3__MAX_TABLES", "1001", "s3.max_tables"),
        (
            "QUILT_NOTIFY__S3__MAX_FOOTER_MEGABYTES",
            "0",
            "s3.max_footer_megabytes",
        ),
        (
            "QUILT_NOTIFY__S3__MAX_FOOTER_MEGABYTES",
            "65",
            "s3.max_footer_megabytes",
        ),
        ("QUILT_NOTIFY__STATE__TTL_DAYS", "0", "state.ttl_days"),
        (
            "QUILT_NOTIFY__STATE__DLQ_RETENTION_DAYS",
            "15",
            "state.dlq_retention_days",
        ),
        (
            "QUILT_NOTIFY__STATE__LEASE_SECONDS",
            "2",
            "state.lease_seconds",
        ),
        (
            "QUILT_NOTIFY__STATE__DIGEST_CHECK_SECONDS",
            "0",
            "state.digest_check_seconds",
        ),
    ] {
        let msg = load(MINIMAL, &[(var, value)])
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains(key), "{var}={value}: {msg}");
    }
}

#[test]
fn a_mistyped_value_names_its_key() {
    let msg = load(MINIMAL, &[("QUILT_NOTIFY__WORKER__POLLERS", "many")])
        .expect_err("must fail")
        .to_string();
    assert!(msg.contains("worker.pollers"), "{msg}");
}

#[test]
fn unknown_keys_are_refused() {
    let msg = load(&format!("{MINIMAL}\n[worker]\npolers = 3\n"), &[])
        .expect_err("must fail")
        .to_string();
    assert!(msg.contains("polers"), "{msg}");
}

#[test]
fn no_routes_is_refused_because_everything_would_be_deleted() {
    let without_routes = MINIMAL.split("[[routes]]").next().expect("head");
    let msg = load(without_routes, &[])
        .expect_err("must fail")
        .to_string();
    assert!(msg.contains("routes"), "{msg}");
}

#[test]
fn duplicate_route_names_are_refused() {
    let twice = format!(
        "{MINIMAL}{}",
        &MINIMAL[MINIMAL.find("[[routes]]").expect("routes")..]
    );
    let msg = load(&twice, &[]).expect_err("must fail").to_string();
    assert!(msg.contains("used twice"), "{msg}");
}

#[test]
fn package_details_are_on_by_default_and_read_from_aws() {
    let s = load(MINIMAL, &[]).expect("loads");
    assert!(s.s3.details);
    assert_eq!(s.s3.endpoint_url, None);
    assert_eq!(s.s3.max_manifest_entries, 1_000_000);
    assert!(s.s3.cache_size > 0);
    // Manifest bytes read at once, sized for a 512 MB task beside the summary cache.
    assert!((64..=384).contains(&s.s3.memory_megabytes));
    assert!(s.s3.memory_megabytes + s.s3.cache_megabytes <= 448);
    assert!(s.routes[0].details && s.routes[0].skip_unchanged);
}

#[test]
fn a_package_pattern_needs_the_details_switch_on() {
    let filtered = MINIMAL.replace(
        "pattern = { source",
        "package_pattern = { package = { user_meta = { stage = [\"prod\"] } } }\npattern = { source",
    );
    assert!(load(&filtered, &[]).is_ok());
    let msg = load(&filtered, &[("QUILT_NOTIFY__S3__DETAILS", "false")])
        .expect_err("must fail")
        .to_string();
    assert!(
        msg.contains("routes[0].package_pattern") && msg.contains("s3.details = false"),
        "{msg}"
    );
}

#[test]
fn a_topic_needs_a_contact_list() {
    let topical = MINIMAL.replace(
        "pattern = { source",
        "topic = \"releases\"\npattern = { source",
    );
    let msg = load(&topical, &[]).expect_err("must fail").to_string();
    assert!(
        msg.contains("routes[0].topic") && msg.contains("ses.contact_list"),
        "{msg}"
    );
    let listed = load(&topical, &[("QUILT_NOTIFY__SES__CONTACT_LIST", "quilt")]).expect("loads");
    assert_eq!(listed.ses.contact_list.as_deref(), Some("quilt"));
}

#[test]
fn state_is_per_process_by_default_and_a_digest_needs_the_table() {
    let s = load(MINIMAL, &[]).expect("loads");
    assert_eq!(s.state.table, None, "memory unless a table is named");
    assert_eq!((s.state.ttl_days, s.state.lease_seconds), (7, 60));
    let digest = MINIMAL.replace(
        "template = \"package-created\"",
        "digest = { every = \"1h\" }",
    );
    let msg = load(&digest, &[]).expect_err("must fail").to_string();
    assert!(
        msg.contains("routes[0].digest") && msg.contains("state.table") && msg.contains("\"all\""),
        "{msg}"
    );
    let shared = load(&digest, &[("QUILT_NOTIFY__STATE__TABLE", "qn-state")]).expect("loads");
    assert_eq!(shared.state.table.as_deref(), Some("qn-state"));
}

#[test]
fn a_whole_config_can_come_from_one_environment_variable() {
    let s = Settings::load_with_env(None, env(&[(INLINE_ENV, MINIMAL)])).expect("loads");
    assert_eq!(s.routes[0].name, "all");
    assert_eq!(s.ses.from, "quilt@example.com");
    let overridden = Settings::load_with_env(
        None,
        env(&[(INLINE_ENV, MINIMAL), ("QUILT_NOTIFY__SES__FROM", "x@y.z")]),
    )
    .expect("loads");
    assert_eq!(overridden.ses.from, "x@y.z", "single variables still win");
}

#[test]
fn a_missing_file_is_an_error() {
    let err = Settings::load_with_env(Some(Path::new("/nonexistent/q.toml")), env(&[]))
        .expect_err("must fail");
    assert!(err.to_string().contains("q.toml"), "{err}");
}

#[test]
fn yaml_files_work_too_and_keep_pattern_key_case() {
    let yaml = r#"
queue: { url: "https://sqs/q" }
ses: { from: "a@b.c" }
routes:
  - name: camel
    template: package-created
    to: [x@example.com]
    pattern: { detail: { topHash: [{ prefix: "a0" }], missing: [null] } }
"#;
    let f = file(yaml, ".yaml");
    let s = Settings::load_with_env(Some(f.path()), env(&[])).expect("loads");
    let pattern = &s.routes[0].pattern;
    assert_eq!(pattern["detail"]["topHash"][0]["prefix"], "a0");
    assert!(pattern["detail"]["missing"][0].is_null());
}

#[test]
fn claims_live_a_day_longer_than_the_dlq_keeps_messages_and_say_which_value_decided() {
    let s = load(MINIMAL, &[]).expect("loads");
    let state = &s.state;
    assert_eq!(state.dlq_retention_days, 14, "SQS's longest when unknown");
    let dlq = |seconds| {
        Ok(crate::config::DlqRetention {
            queue: "quilt-notify-dlq".into(),
            seconds,
        })
    };

    // The DLQ keeps 14 days, claims 7 by default: 15.
    let ttl = state.claim_ttl(dlq(14 * 86_400));
    assert_eq!(ttl.days, 15);
    assert!(
        ttl.because.contains("quilt-notify-dlq") && ttl.because.contains("1209600 s"),
        "{}",
        ttl.because
    );
    assert_eq!(ttl.duration().as_secs(), 15 * 86_400);
    // A part of a day counts as a day.
    assert_eq!(state.claim_ttl(dlq(4 * 86_400 + 1)).days, 7);
    assert_eq!(state.claim_ttl(dlq(6 * 86_400 + 1)).days, 8);
    // The configured days win when they are longer.
    let ttl = state.claim_ttl(dlq(86_400));
    assert_eq!(ttl.days, 7);
    assert!(
        ttl.because.contains("state.ttl_days = 7"),
        "{}",
        ttl.because
    );
    // Unreadable: the configured retention stands in, and the reason is said.
    let ttl = state.claim_ttl(Err("AccessDenied".into()));
    assert_eq!(ttl.days, 15);
    assert!(
        ttl.because.contains("state.dlq_retention_days = 14")
            && ttl.because.contains("AccessDenied"),
        "{}",
        ttl.because
    );
}

#[test]
fn a_lease_must_be_four_times_the_clock_skew_tasks_may_have() {
    let s = load(MINIMAL, &[]).expect("loads");
    assert_eq!(s.state.max_clock_skew(), std::time::Duration::from_secs(2));
    let msg = load(
        MINIMAL,
        &[
            ("QUILT_NOTIFY__STATE__LEASE_SECONDS", "7"),
            ("QUILT_NOTIFY__STATE__MAX_CLOCK_SKEW_SECONDS", "2"),
        ],
    )
    .expect_err("7 s < 4 × 2 s")
    .to_string();
    assert!(
        msg.contains("state.lease_seconds") && msg.contains("max_clock_skew_seconds"),
        "{msg}"
    );
    let s = load(
        MINIMAL,
        &[
            ("QUILT_NOTIFY__STATE__LEASE_SECONDS", "5"),
            ("QUILT_NOTIFY__STATE__MAX_CLOCK_SKEW_SECONDS", "1"),
        ],
    )
    .expect("5 s >= 4 × 1 s");
    assert_eq!(s.state.lease_seconds, 5);
    let msg = load(
        MINIMAL,
        &[("QUILT_NOTIFY__STATE__MAX_CLOCK_SKEW_SECONDS", "0")],
    )
    .expect_err("must fail")
    .to_string();
    assert!(msg.contains("state.max_clock_skew_seconds"), "{msg}");
}
