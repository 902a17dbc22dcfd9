//! Digest routes (issue 13): the real binary, two processes on one queue, windows of a few
//! seconds, a state table on moto's DynamoDB behind the fault proxy, and `kill -9` while a
//! digest is being sent. Every event must be in exactly one digest per route, and each window
//! of a route sent once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::reliability::env;
use crate::support::proxy::{DynamoError, Faults, SesProxy};
use crate::support::state::StateTable;
use crate::support::{eventually, StackOptions, TestStack};

/// One digest email as the SES emulator stored it.
#[derive(Debug)]
struct Digest {
    route: String,
    subject: String,
    handles: Vec<String>,
}

/// The digests among these emails: the shipped text template lists one package per
/// `<handle> in s3://…` line and ends with `route "<name>"`.
fn digests(emails: &[Value]) -> Vec<Digest> {
    emails
        .iter()
        .filter_map(|email| {
            let text = email["body"]["text"].as_str()?;
            let start = text.find("(route \"")? + "(route \"".len();
            let route = text[start..].split('"').next()?.to_owned();
            let handles = text
                .lines()
                .filter_map(|line| line.split_once(" in s3://").map(|(h, _)| h.to_owned()))
                .collect();
            Some(Digest {
                route,
                subject: email["subject"].as_str().unwrap_or_default().to_owned(),
                handles,
            })
        })
        .collect()
}

/// Two digest routes on this stack's bucket (no package details: the events are synthetic).
fn digest_routes(stack: &TestStack, every: &str) -> String {
    let pattern = format!(
        r#"{{"source": ["com.quiltdata"], "detail": {{"bucket": ["{}"]}}}}"#,
        stack.bucket
    );
    ["digest-a", "digest-b"]
        .iter()
        .map(|name| {
            format!(
                "[[routes]]\nname = \"{name}\"\nto = [\"{}\"]\ndetails = false\ndigest = {{ every = \"{every}\" }}\npattern = '{pattern}'\n",
                stack.recipient
            )
        })
        .collect()
}

/// `n` events of distinct packages under `prefix`: their handles and bodies.
fn events(stack: &TestStack, prefix: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let handles: Vec<String> = (0..n).map(|i| format!("{prefix}/pkg-{i}")).collect();
    let bodies = handles.iter().map(|h| stack.event(h).to_string()).collect();
    (handles, bodies)
}

/// Waits until the queue is empty and no window is pending any more.
async fn drained(stack: &TestStack, table: &StateTable, within: Duration) -> bool {
    eventually(within, || async {
        stack.depth(&stack.queue_url).await == (0, 0) && table.items("pending#").await.is_empty()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn three_hundred_events_over_several_windows_make_one_digest_per_window_and_route_holding_each_once(
) {
    let stack = TestStack::spawn(StackOptions {
        max_receive_count: 10,
        visibility_timeout: 10,
    })
    .await;
    let table = StateTable::new(&stack.endpoints.moto);
    let proxy = SesProxy::start(&stack.endpoints.moto, 21).await;
    let ses = stack.endpoints.ses.clone();
    let config = stack.config(
        &ses,
        &digest_routes(&stack, "4s"),
        &table.section(&proxy.url, 10),
    );
    table.create(&config);
    let fast = env(&[("QUILT_NOTIFY__RETRY__BASE_SECONDS", "1")]);
    let a = stack.start_worker_with_env(&config, &fast);
    let b = stack.start_worker_with_env(&config, &fast);

    let (handles, bodies) = events(&stack, "digest", 300);
    for (i, chunk) in bodies.chunks(30).enumerate() {
        match i {
            3 => proxy.set(Faults::none().dynamodb_errors(0.2, DynamoError::throttling())),
            6 => proxy.set(Faults::none().drop_connections(1.0)),
            7 => proxy.heal(),
            _ => {}
        }
        stack.send_batch(&stack.queue_url, chunk).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    proxy.heal();
    assert!(
        drained(&stack, &table, Duration::from_secs(240)).await,
        "not drained; a: {:#?}",
        a.lines()
    );
    let stats = proxy.stats();
    let all = digests(&stack.emails().await);
    for route in ["digest-a", "digest-b"] {
        let mine: Vec<&Digest> = all.iter().filter(|d| d.route == route).collect();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for digest in &mine {
            for handle in &digest.handles {
                *seen.entry(handle.as_str()).or_default() += 1;
            }
        }
        let missing: Vec<&String> = handles
            .iter()
            .filter(|h| !seen.contains_key(h.as_str()))
            .collect();
        let twice: Vec<(&&str, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
        let windows: BTreeSet<&str> = mine.iter().map(|d| d.subject.as_str()).collect();
        println!(
            "DIGEST | {route} | {} digests, sizes {:?} | {} events | missing {} | twice {}",
            mine.len(),
            mine.iter().map(|d| d.handles.len()).collect::<Vec<_>>(),
            seen.len(),
            missing.len(),
            twice.len()
        );
        assert!(missing.is_empty(), "{route}: missing {missing:?}");
        let sent: Vec<Value> = a
            .lines()
            .into_iter()
            .chain(b.lines())
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains("digest")))
            .collect();
        assert!(
            twice.is_empty(),
            "{route}: in two digests {twice:?}; log: {sent:#?}"
        );
        assert_eq!(windows.len(), mine.len(), "{route}: a window sent twice");
        assert!(
            mine.len() >= 3,
            "{route}: the events spanned several windows"
        );
    }
    println!(
        "RELIABILITY | digests of 300 events, two workers, DynamoDB faults | windows of 4 s; proxy before moto: 20 % ThrottlingException for 3 batches, every connection dropped for 1 ({} of {} calls failed, {} dropped) | 300 | 300 per route | 0 | 0 | 0 |",
        stats.dynamodb_failed, stats.dynamodb_calls, stats.dropped
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    assert_eq!(a.stop().await, Some(0));
    assert_eq!(b.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_kill_9_while_a_digest_is_being_sent_and_a_restart_still_send_it_once() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let table = StateTable::new(&stack.endpoints.moto);
    let ses = SesProxy::start(&stack.endpoints.ses, 5).await;
    let config = stack.config(
        &ses.url,
        &digest_routes(&stack, "3s"),
        &table.section(&stack.endpoints.moto, 10),
    );
    table.create(&config);
    let mut first = stack.start_worker(&config);
    let (handles, bodies) = events(&stack, "killed", 20);
    stack.send_batch(&stack.queue_url, &bodies).await;
    // Each digest send hangs in the proxy, so the kill falls while SES has not answered.
    ses.set(Faults::none().send_delay(Duration::from_secs(30)));
    let sending = eventually(Duration::from_secs(120), || {
        let ses = &ses;
        async move { ses.stats().sends >= 1 }
    })
    .await;
    assert!(sending, "no digest send began: {:#?}", first.lines());
    first.kill9();
    ses.heal();
    let second = stack.start_worker(&config);
    assert!(drained(&stack, &table, Duration::from_secs(120)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = digests(&stack.emails().await);
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for digest in &all {
        for handle in &digest.handles {
            *seen
                .entry((digest.route.clone(), handle.clone()))
                .or_default() += 1;
        }
    }
    for route in ["digest-a", "digest-b"] {
        for handle in &handles {
            assert_eq!(
                seen.get(&(route.to_owned(), handle.clone())),
                Some(&1),
                "{route} {handle}: {all:#?}"
            );
        }
    }
    let takeovers = second
        .lines()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("took over the digest"))
        })
        .count();
    println!(
        "RELIABILITY | kill -9 while a digest is sent, then restart | SES proxy held every send 30 s; SIGKILL after the first digest send began; restart; lease 10 s ({takeovers} digest takeovers) | 20 | 20 per route, {} digests | 0 | 0 | 0 |",
        all.len()
    );
    assert!(takeovers >= 1, "the restarted worker took the window over");
    assert_eq!(second.stop().await, Some(0));
}
