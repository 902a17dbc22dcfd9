//! Digest routes (issue 13): the real binary, two processes on one queue, windows of a few
//! seconds, a state table on moto's DynamoDB behind the fault proxy, and `kill -9` while a
//! digest is being sent. Every event must be in exactly one digest per route, and each window
//! of a route sent once. Failed and orphaned windows (issue 20 §4): a digest SES rejects is
//! kept and goes out after `quilt-notify state retry`; a renamed route's windows are warned of,
//! listed as orphaned and sent by the route `state retry --as` hands them to.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::digest::{digest_route, digests, drained, Digest};
use crate::support::proxy::{DynamoError, Faults, SesProxy};
use crate::support::state::{state_command, StateTable};
use crate::support::{env, eventually, Endpoints, Opened, Opening, StackOptions, TestStack};

/// Two digest routes on this stack's bucket (no package details: the events are synthetic).
fn digest_routes(stack: &TestStack, every: &str) -> String {
    ["digest-a", "digest-b"]
        .iter()
        .map(|name| digest_route(stack, name, every, &stack.recipient, None))
        .collect()
}

/// `n` events of distinct packages under `prefix`: their handles and bodies.
fn events(stack: &TestStack, prefix: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let handles: Vec<String> = (0..n).map(|i| format!("{prefix}/pkg-{i}")).collect();
    let bodies = handles.iter().map(|h| stack.event(h).to_string()).collect();
    (handles, bodies)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn three_hundred_events_over_several_windows_make_one_digest_per_window_and_route_holding_each_once(
) {
    let moto = Endpoints::from_env().moto;
    let table = StateTable::new(&moto);
    let proxy = SesProxy::start(&moto, 21).await;
    let fast = [("QUILT_NOTIFY__RETRY__BASE_SECONDS", "1")];
    let Opened {
        stack,
        config,
        worker: a,
    } = Opening::new()
        .queue(10, 10)
        .routes(|stack| digest_routes(stack, "4s"))
        .state(&table, &proxy.url, 10)
        .env(&fast)
        .start()
        .await;
    let b = stack.start_worker_with_env(&config, &env(&fast));

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
    let moto = Endpoints::from_env().moto;
    let table = StateTable::new(&moto);
    let ses = SesProxy::in_front_of_ses(5).await;
    let Opened {
        stack,
        config,
        worker: mut first,
    } = Opening::new()
        .ses(&ses.url)
        .routes(|stack| digest_routes(stack, "3s"))
        .state(&table, &moto, 10)
        .start()
        .await;
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

/// One window row of `quilt-notify state`'s table of pending digest windows.
#[derive(Debug)]
struct WindowRow {
    /// The route cell: the name, then ` (from OLD)` and ` [orphaned]` when they apply.
    route: String,
    events: usize,
    status: String,
}

/// The window rows `quilt-notify state` printed (cells are padded and set two spaces apart;
/// none holds two spaces in a row).
fn window_rows(output: &str) -> Vec<WindowRow> {
    output
        .lines()
        .skip_while(|line| !line.starts_with("pending digest windows ("))
        .skip(2) // the heading and the header row
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let cells: Vec<&str> = line
                .split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect();
            assert!(cells.len() >= 4, "not a window row: {line:?}");
            WindowRow {
                route: cells[0].to_owned(),
                events: cells[2]
                    .parse()
                    .unwrap_or_else(|_| panic!("events: {line:?}")),
                status: cells[3..].join("  "),
            }
        })
        .collect()
}

/// Log lines at `level` whose message contains `needle`.
fn lines_with(lines: &[Value], level: &str, needle: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["level"] == level)
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
        .cloned()
        .collect()
}

/// The sum of the `events` fields of these log lines.
fn events_in(lines: &[Value]) -> u64 {
    lines.iter().filter_map(|l| l["events"].as_u64()).sum()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_digest_ses_rejects_is_kept_as_failed_listed_with_its_reason_and_sent_whole_after_state_retry(
) {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let moto = stack.endpoints.moto.clone();
    let table = StateTable::new(&moto);
    // moto's SES v2 refuses an unverified sender with MessageRejected: a permanent failure.
    // The mail is read from a pass-through proxy before it, not from moto's data.json, which
    // dumps every object moto ever made and blocks moto (one request at a time) for seconds.
    let ses = SesProxy::start(&moto, 1).await;
    let sender = format!("digest-{}@unverified.example", stack.name);
    let config = stack.config(
        &ses.url,
        &digest_route(&stack, "rejected", "2s", &stack.recipient, None),
        &table.section(&moto, 10),
    );
    table.create(&config);
    let worker = stack.start_worker_with_env(
        &config,
        &env(&[
            ("QUILT_NOTIFY__SES__FROM", &format!("Quilt <{sender}>")),
            ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100"),
        ]),
    );
    let (handles, bodies) = events(&stack, "rejected", 5);
    // Two waves, the second once the first window failed: at least two failed windows, each
    // with its own ERROR line, which the retry must send as one digest.
    for (wave, failed_so_far) in [(&bodies[..3], 3), (&bodies[3..], 5)] {
        stack.send_batch(&stack.queue_url, wave).await;
        let failed = worker
            .wait_for_log(Duration::from_secs(60), |lines| {
                events_in(&lines_with(lines, "ERROR", "digest failed")) >= failed_so_far
            })
            .await;
        assert!(failed, "no failed digest: {:#?}", worker.lines());
    }
    let errors: Vec<Value> = worker
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(
        events_in(&errors),
        5,
        "one ERROR line per window: {errors:#?}"
    );
    for error in &errors {
        assert_eq!(error["route"], "rejected", "{error:#?}");
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|e| e.contains("SES rejected the digest: MessageRejected")),
            "{error:#?}"
        );
    }

    // `quilt-notify state` lists each window as failed, with the reason and its events (the
    // ERROR line is written before the windows are marked: wait for the marks).
    let listed = eventually(Duration::from_secs(20), || {
        let shown = state_command(&config, &[], &[]);
        let rows = window_rows(&shown);
        let done = !rows.is_empty()
            && rows.iter().all(|r| r.status.starts_with("failed:"))
            && rows.iter().map(|r| r.events).sum::<usize>() == 5;
        std::future::ready(if done { Ok((shown, rows)) } else { Err(shown) })
    })
    .await;
    let (shown, rows) = listed.unwrap_or_else(|shown| panic!("not listed as failed: {shown}"));
    assert!(rows.len() >= 2, "a window per wave: {shown}");
    for row in &rows {
        assert_eq!(row.route, "rejected", "{shown}");
        assert!(
            row.status
                .contains("SES rejected the digest: MessageRejected")
                && row.status.contains(&sender),
            "{shown}"
        );
    }
    assert!(
        shown.contains("`quilt-notify state retry --route NAME`"),
        "{shown}"
    );
    let before = ses.stats();
    assert_eq!(before.sends_accepted, 0, "nothing sent yet");
    assert_eq!(
        before.sends,
        errors.len() as u64,
        "one send per failed digest"
    );

    // The operator fixes the cause (verifies the sender) and retries: one digest of all.
    let identities = aws_sdk_sesv2::Client::new(&crate::support::sdk_config(&moto));
    identities
        .create_email_identity()
        .email_identity(&sender)
        .send()
        .await
        .expect("CreateEmailIdentity on moto");
    let retried = state_command(&config, &["retry", "--route", "rejected"], &[]);
    assert!(
        retried.contains(&format!(
            "route rejected: {} failed digest window(s) sendable again",
            rows.len()
        )),
        "{retried}"
    );
    assert!(
        drained(&stack, &table, Duration::from_secs(30)).await,
        "not sent after the retry: {:#?}",
        worker.lines()
    );
    assert_eq!(ses.stats().sends_accepted, 1, "one digest");
    let requests = ses.send_requests();
    let last = &requests[requests.len() - 1];
    assert_eq!(
        last["Destination"]["ToAddresses"],
        serde_json::json!([stack.recipient])
    );
    let mail = &last["Content"]["Simple"];
    let text = mail["Body"]["Text"]["Data"].as_str().unwrap_or_default();
    for handle in &handles {
        assert!(
            text.contains(&format!("{handle} in s3://")),
            "{handle} missing: {text}"
        );
    }
    assert!(
        mail["Subject"]["Data"]
            .as_str()
            .is_some_and(|s| s.starts_with("[Quilt] 5 revisions of 5 packages")),
        "{mail:#?}"
    );
    let sent = lines_with(&worker.lines(), "INFO", "digest sent");
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["events"], 5);
    assert_eq!(sent[0]["windows"], rows.len());
    let errors_now = worker
        .lines()
        .iter()
        .filter(|l| l["level"] == "ERROR")
        .count();
    assert_eq!(errors_now, errors.len(), "no new ERROR line");
    let shown = state_command(&config, &[], &[]);
    assert!(shown.contains("pending digest windows: none"), "{shown}");
    println!(
        "RELIABILITY | a digest SES rejects, then `state retry` | moto: sender not verified -> MessageRejected; 5 events in 2 waves, {} window(s) kept as failed; sender verified, `state retry --route` | 5 | 5 in 1 digest | 0 | 0 | 0 |",
        rows.len()
    );
    assert_eq!(worker.stop().await, Some(0));
}

/// A digest template of its own in this stack's directory, so a digest shows which route's
/// template rendered it (the text part keeps the shipped one's `<handle> in s3://` lines and
/// `(route "…")` footer, which [`digests`] reads). Returns the templates directory.
fn renamed_template(stack: &TestStack, name: &str) -> std::path::PathBuf {
    let dir = stack.dir.path().join("templates");
    let template = dir.join(name);
    std::fs::create_dir_all(&template).expect("template dir");
    for (part, text) in [
        ("subject.hbs", "Renamed digest: {{events}} revisions"),
        (
            "html.hbs",
            "<ul>{{#each packages}}<li>{{handle}}</li>{{/each}}</ul>",
        ),
        (
            "text.hbs",
            "{{#each packages}}\n{{handle}} in s3://{{bucket}}\n{{/each}}\n(route \"{{route}}\")\n",
        ),
    ] {
        std::fs::write(template.join(part), text).expect("write template");
    }
    dir
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn windows_of_a_route_the_config_no_longer_has_are_warned_of_listed_orphaned_and_sent_by_the_route_they_are_handed_to(
) {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let moto = stack.endpoints.moto.clone();
    let ses = stack.endpoints.ses.clone();
    let table = StateTable::new(&moto);
    let old_to = format!("old-{}", stack.recipient);
    let old_config = stack.dir.path().join("config-old.toml");
    std::fs::rename(
        stack.config(
            &ses,
            &digest_route(&stack, "digest-old", "2s", &old_to, None),
            &table.section(&moto, 10),
        ),
        &old_config,
    )
    .expect("keep the old config");
    table.create(&old_config);
    // This worker records and never sends: its digest check runs at start, then after 300 s.
    let mut first = stack.start_worker_with_env(
        &old_config,
        &env(&[("QUILT_NOTIFY__STATE__DIGEST_CHECK_SECONDS", "300")]),
    );
    let started = first
        .wait_for_log(Duration::from_secs(30), |lines| {
            !lines_with(lines, "INFO", "worker started").is_empty()
        })
        .await;
    assert!(started, "{:#?}", first.lines());
    let (handles, bodies) = events(&stack, "renamed", 6);
    stack.send_batch(&stack.queue_url, &bodies).await;
    let recorded = first
        .wait_for_log(Duration::from_secs(60), |lines| {
            lines.iter().filter(|l| l["outcome"] == "recorded").count() >= 6
        })
        .await;
    assert!(recorded, "{:#?}", first.lines());
    assert_eq!(first.terminate().await, Some(0));

    // The route is renamed: the new config has digest-new, with its own template and recipient.
    let templates = renamed_template(&stack, "renamed-digest");
    let config = stack.config(
        &ses,
        &digest_route(
            &stack,
            "digest-new",
            "2s",
            &stack.recipient,
            Some("renamed-digest"),
        ),
        &table.section(&moto, 10),
    );
    let with_templates = env(&[(
        "QUILT_NOTIFY__TEMPLATES__DIR",
        templates.to_str().expect("utf-8 path"),
    )]);
    let second = stack.start_worker_with_env(&config, &with_templates);
    let started = second
        .wait_for_log(Duration::from_secs(30), |lines| {
            !lines_with(lines, "INFO", "worker started").is_empty()
        })
        .await;
    assert!(started, "{:#?}", second.lines());
    let warnings = lines_with(&second.lines(), "WARN", "the config no longer has");
    assert_eq!(warnings.len(), 1, "one WARN line: {warnings:#?}");
    assert_eq!(warnings[0]["route"], "digest-old", "{warnings:#?}");
    assert_eq!(warnings[0]["events"], 6, "{warnings:#?}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("state retry --route digest-old --as NEW")),
        "{warnings:#?}"
    );

    let shown = state_command(&config, &[], &with_templates);
    let rows = window_rows(&shown);
    assert!(!rows.is_empty(), "{shown}");
    assert!(
        rows.iter().all(|r| r.route == "digest-old [orphaned]"),
        "{shown}"
    );
    assert_eq!(rows.iter().map(|r| r.events).sum::<usize>(), 6, "{shown}");
    assert!(
        shown.contains("state retry --route OLD --as NEW"),
        "{shown}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.emails().await.is_empty(), "nothing sends them yet");

    let handed = state_command(
        &config,
        &["retry", "--route", "digest-old", "--as", "digest-new"],
        &with_templates,
    );
    assert!(
        handed.contains(&format!(
            "route digest-old: {} digest window(s) handed to route digest-new",
            rows.len()
        )),
        "{handed}"
    );
    assert!(
        drained(&stack, &table, Duration::from_secs(30)).await,
        "not sent after the hand-over: {:#?}",
        second.lines()
    );
    let emails = stack.emails().await;
    let all = digests(&emails);
    assert_eq!(all.len(), 1, "one digest: {emails:#?}");
    assert_eq!(all[0].route, "digest-new");
    assert_eq!(
        all[0].subject, "Renamed digest: 6 revisions",
        "NEW's template"
    );
    let mut got = all[0].handles.clone();
    got.sort();
    assert_eq!(got, handles, "every event of the old route");
    let store: Value = stack
        .http
        .get(format!("{ses}/store"))
        .send()
        .await
        .expect("GET /store")
        .json()
        .await
        .expect("store json");
    assert!(
        !store.to_string().contains(&old_to),
        "nothing for the old route's recipient"
    );
    let shown = state_command(&config, &[], &with_templates);
    assert!(shown.contains("pending digest windows: none"), "{shown}");
    println!(
        "RELIABILITY | a digest route renamed while its window waits | 6 events recorded for digest-old, that worker stopped; a worker with digest-new warned of {} orphaned window(s); `state retry --route digest-old --as digest-new` | 6 | 6 in 1 digest of digest-new | 0 | 0 | 0 |",
        rows.len()
    );
    assert_eq!(second.stop().await, Some(0));
}
