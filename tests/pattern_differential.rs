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
//! 3. `pattern_data/recorded_cases.json`: cases whose answer was recorded against EventBridge
//!    (LocalStack's AWS-recorded templates, Event Ruler's tests) for dot-joined keys, `$or`
//!    overrides and wildcard complexity. Our engine must give the recorded answer; so must
//!    LocalStack, except where a departure is listed in (2).
//!
//! The halves that need LocalStack are `#[ignore]`d, so plain `cargo test` passes with no
//! emulator; `scripts/test` runs them (`--include-ignored`) and they fail, naming the endpoint,
//! when LocalStack does not answer. Endpoint: `QN_TEST_AWS_ENDPOINT` (default
//! `http://127.0.0.1:4566`). `QN_PATTERN_SEED` replaces the fixed seed to explore further; a
//! failure prints the seed.

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

/// Fails the test, naming the endpoint, unless something listens there.
fn require_localstack(url: &str) {
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
    assert!(
        up,
        "LocalStack is not reachable at {url} (QN_TEST_AWS_ENDPOINT): start it with scripts/start-emulators, or run scripts/test"
    );
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

/// Asks LocalStack; `pattern` is JSON text, sent as written (key order matters to Ruler's `$or`).
async fn localstack(client: &Client, pattern: &str, event: &Value) -> Answer {
    let result = client
        .test_event_pattern()
        .event_pattern(pattern)
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
async fn ask_all(client: &Client, pairs: &[(String, Value)]) -> Vec<Answer> {
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

fn seed() -> u64 {
    std::env::var("QN_PATTERN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

fn corpus(seed: u64) -> Vec<generator::Case> {
    generator::generate(seed, PATTERNS, |p, e| match ours(p, e) {
        Answer::Match(m) => Some(m),
        _ => None,
    })
}

fn pairs_of(cases: &[generator::Case]) -> Vec<(Value, Value)> {
    cases
        .iter()
        .flat_map(|c| c.events.iter().map(|e| (c.pattern.clone(), e.clone())))
        .collect()
}

/// The grammar must really cover the language, whatever LocalStack says.
#[test]
fn the_generated_corpus_covers_the_language() {
    let cases = corpus(seed());
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
    let pairs = pairs_of(&cases).len();
    assert!(pairs >= MIN_PAIRS, "only {pairs} pairs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the emulators: run scripts/test"]
async fn agrees_with_localstack_on_a_generated_corpus() {
    let seed = seed();
    let cases = corpus(seed);
    let pairs = pairs_of(&cases);
    let counts = generator::operator_counts(&cases);

    let url = endpoint();
    require_localstack(&url);
    let client = client(&url);
    let started = Instant::now();
    let texts: Vec<(String, Value)> = pairs
        .iter()
        .map(|(p, e)| (p.to_string(), e.clone()))
        .collect();
    let theirs = ask_all(&client, &texts).await;
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

fn exception_entries() -> Vec<Value> {
    let text = include_str!("pattern_data/localstack_exceptions.json");
    let file: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("localstack_exceptions.json: {e}"));
    let entries = file["exceptions"].as_array().cloned().unwrap_or_default();
    assert!(!entries.is_empty());
    entries
}

fn recorded_cases() -> Vec<Value> {
    let text = include_str!("pattern_data/recorded_cases.json");
    let file: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("recorded_cases.json: {e}"));
    let cases = file["cases"].as_array().cloned().unwrap_or_default();
    assert!(!cases.is_empty());
    cases
}

fn id(entry: &Value) -> &str {
    entry["id"].as_str().unwrap_or("?")
}

/// Our side of the departures: every entry states the documented answer. No emulator needed.
#[test]
fn localstack_departures_have_the_documented_answers() {
    let mut problems = Vec::new();
    for entry in &exception_entries() {
        let id = id(entry);
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
        let our = ours(&entry["pattern"], &with_envelope(&entry["event"]));
        if our != expected {
            problems.push(format!("{id}: ours {our:?}, documented {expected:?}"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the emulators: run scripts/test"]
async fn localstack_departures_are_the_documented_ones() {
    let entries = exception_entries();
    let pairs: Vec<(String, Value)> = entries
        .iter()
        .map(|e| (e["pattern"].to_string(), with_envelope(&e["event"])))
        .collect();
    let url = endpoint();
    require_localstack(&url);
    let theirs = ask_all(&client(&url), &pairs).await;
    let mut problems = Vec::new();
    for (entry, their) in entries.iter().zip(&theirs) {
        let recorded = Answer::from_json(&entry["localstack"]).unwrap_or(Answer::Invalid);
        if !their.agrees(&recorded) {
            problems.push(format!(
                "{}: LocalStack now answers {their:?}, recorded {recorded:?}: if it agrees with the docs, drop the entry",
                id(entry)
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    eprintln!(
        "{} documented LocalStack departures confirmed",
        entries.len()
    );
}

/// A recorded case's pattern as JSON text: a string holds the pattern exactly as written (its key
/// order matters when a `$or` overrides a field), an object is serialized.
fn pattern_text(case: &Value) -> String {
    match &case["pattern"] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Every case recorded against EventBridge gets the recorded answer. No emulator needed.
#[test]
fn recorded_cases_give_the_recorded_answers() {
    let mut problems = Vec::new();
    for case in &recorded_cases() {
        let id = id(case);
        assert!(
            case["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{id}: name the source"
        );
        let Some(expected) = Answer::from_json(&case["aws"]) else {
            panic!("{id}: `aws` must be true, false or \"invalid\"");
        };
        let pattern: Value = serde_json::from_str(&pattern_text(case))
            .unwrap_or_else(|e| panic!("{id}: pattern text: {e}"));
        let our = ours(&pattern, &with_envelope(&case["event"]));
        if our != expected {
            problems.push(format!("{id}: ours {our:?}, recorded {expected:?}"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// LocalStack gives the recorded answers too, except for the departures listed (and checked) in
/// `localstack_exceptions.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the emulators: run scripts/test"]
async fn localstack_agrees_on_the_recorded_cases() {
    let departures: Vec<String> = exception_entries()
        .iter()
        .map(|e| id(e).to_owned())
        .collect();
    let cases: Vec<Value> = recorded_cases()
        .into_iter()
        .filter(|c| !departures.iter().any(|d| d == id(c)))
        .collect();
    let pairs: Vec<(String, Value)> = cases
        .iter()
        .map(|c| (pattern_text(c), with_envelope(&c["event"])))
        .collect();
    let url = endpoint();
    require_localstack(&url);
    let theirs = ask_all(&client(&url), &pairs).await;
    let problems: Vec<String> = cases
        .iter()
        .zip(&theirs)
        .filter_map(|(case, their)| {
            let recorded = Answer::from_json(&case["aws"]).unwrap_or(Answer::Invalid);
            (*their != recorded).then(|| {
                format!(
                    "{}: LocalStack answers {their:?}, recorded {recorded:?}",
                    id(case)
                )
            })
        })
        .collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
