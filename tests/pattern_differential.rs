//! Differential test: our pattern engine against LocalStack's `TestEventPattern`, a second,
//! independent implementation of the EventBridge pattern language.
//!
//! Two parts:
//! 1. A seeded corpus from `pattern_data/generator.rs` (≥ 2,000 pattern/event pairs covering
//!    every operator and edge case). Both engines must give the same answer (match, no match, or
//!    invalid pattern) on every pair.
//! 2. `pattern_data/localstack_exceptions.json`: the cases where LocalStack departs from the
//!    EventBridge documentation (each quotes the wording it departs from). For those, our
//!    engine must give the documented answer, and LocalStack must still give its recorded one
//!    (so a LocalStack upgrade that fixes a departure is noticed and the entry removed).
//!
//! Endpoint: `QN_TEST_AWS_ENDPOINT` (default `http://127.0.0.1:4566`). When it is unreachable
//! the test fails if `CI` is set, and prints a skip notice otherwise. `QN_PATTERN_SEED` replaces
//! the fixed seed to explore further; a failure prints the seed.

#[path = "pattern_data/generator.rs"]
mod generator;

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_eventbridge::Client;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use quilt_notify::domain::pattern::Pattern;

/// The corpus seed: fixed, so a failure reproduces.
const SEED: u64 = 0x5157_4E4F_5449_4659;
/// Patterns to generate; valid ones get up to three events, giving well over 2,000 pairs.
const PATTERNS: usize = 900;
const MIN_PAIRS: usize = 2_000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 16;

/// An engine's answer for one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Match(bool),
    Invalid,
    /// Anything else LocalStack answers (an internal error, say).
    Error(String),
}

impl Answer {
    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(Self::Match(*b)),
            Value::String(s) if s == "invalid" => Some(Self::Invalid),
            Value::String(s) if s == "error" => Some(Self::Error(String::new())),
            _ => None,
        }
    }

    /// Equality where a recorded `"error"` matches any error text.
    fn agrees(&self, recorded: &Self) -> bool {
        match (self, recorded) {
            (Self::Error(_), Self::Error(_)) => true,
            (a, b) => a == b,
        }
    }
}

fn ours(pattern: &Value, event: &Value) -> Answer {
    match Pattern::compile(pattern) {
        Ok(p) => Answer::Match(p.matches(event)),
        Err(_) => Answer::Invalid,
    }
}

fn endpoint() -> String {
    std::env::var("QN_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// Whether something listens at the endpoint; fails loudly in CI, skips with a notice locally.
fn reachable(url: &str) -> bool {
    let host_port = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let up = host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if !up {
        if std::env::var_os("CI").is_some() {
            panic!("LocalStack is not reachable at {url} (QN_TEST_AWS_ENDPOINT) and CI is set: start it with scripts/start-emulators");
        }
        eprintln!("SKIPPED: LocalStack is not reachable at {url}; start it with scripts/start-emulators (set CI to make this a failure)");
    }
    up
}

fn client(url: &str) -> Client {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    Client::from_conf(config)
}

async fn localstack(client: &Client, pattern: &Value, event: &Value) -> Answer {
    let result = client
        .test_event_pattern()
        .event_pattern(pattern.to_string())
        .event(event.to_string())
        .send()
        .await;
    match result {
        Ok(out) => Answer::Match(out.result()),
        Err(e) => match e.as_service_error() {
            Some(s) if s.is_invalid_event_pattern_exception() => Answer::Invalid,
            _ => Answer::Error(format!("{e:?}").chars().take(300).collect()),
        },
    }
}

/// Asks LocalStack about every pair, `IN_FLIGHT` at a time, keeping the input order.
async fn ask_all(client: &Client, pairs: &[(Value, Value)]) -> Vec<Answer> {
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for (i, (pattern, event)) in pairs.iter().enumerate() {
        let (client, pattern, event, limit) = (
            client.clone(),
            pattern.clone(),
            event.clone(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, localstack(&client, &pattern, &event).await)
        });
    }
    let mut answers = vec![Answer::Error("not asked".into()); pairs.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, answer)) => answers[i] = answer,
            Err(e) => panic!("a request task failed: {e}"),
        }
    }
    answers
}

/// The envelope TestEventPattern requires, under the exception file's partial events.
fn with_envelope(event: &Value) -> Value {
    let mut full = json!({
        "version": "0",
        "id": "6425eb6a-9627-e6a1-2ae8-9d2d8883dc74",
        "detail-type": "package-revision",
        "source": "com.quiltdata",
        "account": "012345678901",
        "time": "2024-04-25T14:46:51Z",
        "region": "us-east-1",
        "resources": []
    });
    if let (Some(full), Some(extra)) = (full.as_object_mut(), event.as_object()) {
        for (k, v) in extra {
            full.insert(k.clone(), v.clone());
        }
    }
    full
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agrees_with_localstack_on_a_generated_corpus() {
    let seed = std::env::var("QN_PATTERN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let cases = generator::generate(seed, PATTERNS, |p, e| match ours(p, e) {
        Answer::Match(m) => Some(m),
        _ => None,
    });
    let pairs: Vec<(Value, Value)> = cases
        .iter()
        .flat_map(|c| c.events.iter().map(|e| (c.pattern.clone(), e.clone())))
        .collect();

    // The grammar must really cover the language, whatever LocalStack says.
    let counts = generator::operator_counts(&cases);
    for op in [
        "exact string",
        "exact number",
        "exact boolean",
        "exact null",
        "prefix",
        "prefix/equals-ignore-case",
        "suffix",
        "suffix/equals-ignore-case",
        "equals-ignore-case",
        "wildcard",
        "exists",
        "numeric",
        "cidr",
        "$or",
        "anything-but",
        "anything-but/list",
        "anything-but/prefix",
        "anything-but/suffix",
        "anything-but/equals-ignore-case",
        "anything-but/wildcard",
    ] {
        assert!(
            counts.get(op).copied().unwrap_or(0) >= 10,
            "the generator produced too few {op:?}: {counts:?}"
        );
    }
    assert!(pairs.len() >= MIN_PAIRS, "only {} pairs", pairs.len());

    let url = endpoint();
    if !reachable(&url) {
        return;
    }
    let client = client(&url);
    let started = Instant::now();
    let theirs = ask_all(&client, &pairs).await;
    let elapsed = started.elapsed();

    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for ((pattern, event), their) in pairs.iter().zip(&theirs) {
        let our = ours(pattern, event);
        *tally.entry(format!("{our:?}")).or_default() += 1;
        if our != *their {
            disagreements.push(format!(
                "pattern: {pattern}\n  event: {event}\n  ours: {our:?}  localstack: {their:?}"
            ));
        }
    }
    eprintln!(
        "differential: seed {seed:#x}, {} patterns, {} pairs in {:.1}s, answers {tally:?}, {} disagreements",
        cases.len(),
        pairs.len(),
        elapsed.as_secs_f64(),
        disagreements.len()
    );
    eprintln!("operator coverage: {counts:?}");
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree (seed {seed:#x}); first ones:\n{}",
        disagreements.len(),
        pairs.len(),
        disagreements
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_departures_are_the_documented_ones() {
    let text = include_str!("pattern_data/localstack_exceptions.json");
    let file: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("localstack_exceptions.json: {e}"));
    let entries = file["exceptions"].as_array().cloned().unwrap_or_default();
    assert!(!entries.is_empty());

    // Our side needs no emulator: every entry states the documented answer.
    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    for entry in &entries {
        let id = entry["id"].as_str().unwrap_or("?");
        let (Some(expected), Some(_)) = (
            Answer::from_json(&entry["aws"]),
            Answer::from_json(&entry["localstack"]),
        ) else {
            panic!("{id}: `aws` and `localstack` must be true, false, \"invalid\" or \"error\"");
        };
        assert!(
            entry["doc"]
                .as_str()
                .is_some_and(|d| d.starts_with("https://")),
            "{id}: cite the page"
        );
        assert!(
            entry["quote"].as_str().is_some_and(|q| !q.is_empty()),
            "{id}: quote the wording"
        );
        let event = with_envelope(&entry["event"]);
        let our = ours(&entry["pattern"], &event);
        if our != expected {
            problems.push(format!("{id}: ours {our:?}, documented {expected:?}"));
        }
        pairs.push((entry["pattern"].clone(), event));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));

    let url = endpoint();
    if !reachable(&url) {
        return;
    }
    let theirs = ask_all(&client(&url), &pairs).await;
    for (entry, their) in entries.iter().zip(&theirs) {
        let id = entry["id"].as_str().unwrap_or("?");
        let recorded = Answer::from_json(&entry["localstack"]).unwrap_or(Answer::Invalid);
        if !their.agrees(&recorded) {
            problems.push(format!(
                "{id}: LocalStack now answers {their:?}, recorded {recorded:?}: if it agrees with the docs, drop the entry"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    eprintln!(
        "{} documented LocalStack departures confirmed",
        entries.len()
    );
}
