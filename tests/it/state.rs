//! Shared state in DynamoDB (issue 13): the real binary, several processes on one queue, a
//! state table on moto's DynamoDB made by `quilt-notify state create`, and faults: `kill -9`,
//! the same event as two messages, throttling, an outage through the fault proxy, a deleted
//! table, an event id over DynamoDB's key limit. Each test that counts mail prints a
//! `RELIABILITY |` line (docs/reliability.md).

use std::time::Duration;

use serde_json::Value;

use crate::digests::{digest_route, digests, drained};
use crate::reliability::{
    all_settled, env, event_ids, events, every_package, summary, Tally, SECONDS_120,
};
use crate::support::proxy::{DynamoError, Faults, SesProxy};
use crate::support::state::StateTable;
use crate::support::{eventually, StackOptions, TestStack};

/// How many log lines have this `outcome`.
fn count(lines: &[Value], outcome: &str) -> usize {
    lines.iter().filter(|l| l["outcome"] == outcome).count()
}

/// How many log lines' messages contain `needle`.
fn logged(lines: &[Value], needle: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn two_workers_a_kill_9_and_a_restart_deliver_every_event_with_duplicates_only_from_sends_in_flight(
) {
    let stack = TestStack::spawn(StackOptions {
        max_receive_count: 10,
        visibility_timeout: 5,
    })
    .await;
    let table = StateTable::new(&stack.endpoints.moto);
    let ses = stack.endpoints.ses.clone();
    let config = stack.config(
        &ses,
        &stack.route("all", &every_package(&stack)),
        &table.section(&stack.endpoints.moto, 5),
    );
    table.create(&config);
    let concurrency = 10;
    let fast = env(&[
        ("QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "5"),
        ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "1000"),
        ("QUILT_NOTIFY__WORKER__CONCURRENCY", "10"),
    ]);

    let (ids, bodies) = events(&stack, "two", 500);
    stack.send_batch(&stack.queue_url, &bodies).await;
    let mut first = stack.start_worker_with_env(&config, &fast);
    let second = stack.start_worker_with_env(&config, &fast);
    let midway = first
        .wait_for_log(SECONDS_120, |lines| count(lines, "sent") >= 100)
        .await;
    assert!(midway, "log: {:#?}", first.lines());
    first.kill9();
    let before_kill = first.lines();
    let sent_before = event_ids(&before_kill, &["sent"]).len();
    let restarted = stack.start_worker_with_env(&config, &fast);

    let settled = eventually(Duration::from_secs(180), || {
        let mut lines = before_kill.clone();
        lines.extend(second.lines());
        lines.extend(restarted.lines());
        let logged = all_settled(&lines, &ids);
        let stack = &stack;
        async move { logged || stack.depth(&stack.queue_url).await == (0, 0) }
    })
    .await;
    assert!(settled, "not settled: {:#?}", restarted.lines());

    let tally = Tally::of(&ids, &stack.emails().await);
    let mut after = second.lines();
    after.extend(restarted.lines());
    let takeovers = logged(&after, "took over an expired lease");
    let held = count(&after, "claimed_elsewhere");
    println!(
        "state on, kill -9 after {sent_before} sends by the killed worker: {} duplicates {:?}; \
         {takeovers} lease takeovers, {held} messages hidden while claimed elsewhere",
        tally.duplicate_count(),
        tally.duplicates
    );
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert!(
        tally.duplicate_count() <= concurrency,
        "more duplicates than sends in flight at the kill: {:?}",
        tally.duplicates
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    summary(
        "kill -9 of one of two workers, then restart (state table on)",
        &format!(
            "two workers, concurrency {concurrency} each, lease 5 s; SIGKILL of one after it sent {sent_before} of 500"
        ),
        ids.len(),
        &tally,
        "0",
    );
    assert_eq!(second.stop().await, Some(0));
    assert_eq!(restarted.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn the_same_event_as_two_messages_to_two_workers_is_mailed_once() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let table = StateTable::new(&stack.endpoints.moto);
    let ses = stack.endpoints.ses.clone();
    let config = stack.config(
        &ses,
        &stack.route("all", &every_package(&stack)),
        &table.section(&stack.endpoints.moto, 10),
    );
    table.create(&config);
    let a = stack.start_worker(&config);
    let b = stack.start_worker(&config);
    let (ids, bodies) = events(&stack, "twice", 30);
    // Each event twice, in separate batches, so both workers are likely to get a copy at once.
    stack.send_batch(&stack.queue_url, &bodies).await;
    stack.send_batch(&stack.queue_url, &bodies).await;

    let settled = eventually(Duration::from_secs(90), || {
        let stack = &stack;
        async move { stack.depth(&stack.queue_url).await == (0, 0) }
    })
    .await;
    assert!(settled, "queue not drained");
    let tally = Tally::of(&ids, &stack.emails().await);
    let mut lines = a.lines();
    lines.extend(b.lines());
    println!(
        "same event twice: {} sent, {} duplicate, {} claimed elsewhere",
        count(&lines, "sent"),
        count(&lines, "duplicate"),
        count(&lines, "claimed_elsewhere")
    );
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert_eq!(tally.duplicate_count(), 0, "{:?}", tally.duplicates);
    assert_eq!(count(&lines, "sent"), 30);
    assert_eq!(count(&lines, "duplicate"), 30);
    // Every sent pair holds its SES message id.
    let claims = table.items("send#").await;
    assert_eq!(claims.len(), 30);
    assert!(claims.iter().all(|item| {
        item["status"].as_s().is_ok_and(|s| s == "sent")
            && item["ses_message_id"].as_s().is_ok_and(|id| !id.is_empty())
    }));
    assert_eq!(a.stop().await, Some(0));
    assert_eq!(b.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn throttling_and_an_outage_of_the_table_delay_mail_but_lose_none_and_send_none_twice() {
    let stack = TestStack::spawn(StackOptions {
        max_receive_count: 10,
        visibility_timeout: 5,
    })
    .await;
    let table = StateTable::new(&stack.endpoints.moto);
    let proxy = SesProxy::start(&stack.endpoints.moto, 13).await;
    let ses = stack.endpoints.ses.clone();
    let config = stack.config(
        &ses,
        &stack.route("all", &every_package(&stack)),
        &table.section(&proxy.url, 5),
    );
    table.create(&config);
    let worker = stack.start_worker_with_env(
        &config,
        &env(&[
            ("AWS_MAX_ATTEMPTS", "1"),
            ("QUILT_NOTIFY__RETRY__BASE_SECONDS", "1"),
        ]),
    );
    proxy.set(Faults::none().dynamodb_errors(0.3, DynamoError::throttling()));
    let (ids, bodies) = events(&stack, "faults", 100);
    stack.send_batch(&stack.queue_url, &bodies).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set(Faults::none().drop_connections(1.0));
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.set(Faults::none().dynamodb_errors(0.2, DynamoError::internal_server_error()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.heal();

    let settled = eventually(Duration::from_secs(120), || {
        let stack = &stack;
        async move { stack.depth(&stack.queue_url).await == (0, 0) }
    })
    .await;
    let stats = proxy.stats();
    assert!(settled, "queue not drained; log: {:#?}", worker.lines());
    let tally = Tally::of(&ids, &stack.emails().await);
    assert!(stats.dynamodb_failed > 0 && stats.dropped > 0, "{stats:?}");
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert_eq!(tally.duplicate_count(), 0, "{:?}", tally.duplicates);
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    summary(
        "state table throttled, then unreachable",
        &format!(
            "proxy before moto: 30 % ThrottlingException 4 s, every connection dropped 5 s, 20 % InternalServerError 3 s ({} of {} calls failed, {} dropped)",
            stats.dynamodb_failed, stats.dynamodb_calls, stats.dropped
        ),
        ids.len(),
        &tally,
        "0",
    );
    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_deleted_table_stops_receiving_keeps_every_message_and_resumes_once_it_exists_again() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let table = StateTable::new(&stack.endpoints.moto);
    let ses = stack.endpoints.ses.clone();
    let config = stack.config(
        &ses,
        &stack.route("all", &every_package(&stack)),
        &table.section(&stack.endpoints.moto, 10),
    );
    table.create(&config);
    let worker = stack.start_worker(&config);
    let (first_ids, bodies) = events(&stack, "before", 5);
    stack.send_batch(&stack.queue_url, &bodies).await;
    stack.wait_for_emails(5, Duration::from_secs(30)).await;

    table.delete().await;
    let (ids, bodies) = events(&stack, "missing", 20);
    stack.send_batch(&stack.queue_url, &bodies).await;
    let paused = worker
        .wait_for_log(Duration::from_secs(60), |lines| {
            logged(lines, "the state table cannot be used") >= 1
        })
        .await;
    assert!(paused, "log: {:#?}", worker.lines());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (visible, hidden) = stack.depth(&stack.queue_url).await;
    assert_eq!(visible + hidden, 20, "every message kept in the queue");
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    assert_eq!(
        stack.emails().await.len(),
        5,
        "nothing sent without the guarantee"
    );
    let errors = worker
        .lines()
        .iter()
        .filter(|l| l["level"] == "ERROR")
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("the state table cannot be used"))
        })
        .count();
    assert_eq!(errors, 1, "one ERROR line for the stop");

    println!("{}", table.create(&config));
    let all: Vec<String> = first_ids.iter().chain(&ids).cloned().collect();
    let delivered = stack.wait_for_emails(25, Duration::from_secs(90)).await;
    let tally = Tally::of(&all, &delivered);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert_eq!(tally.duplicate_count(), 0);
    assert!(
        logged(&worker.lines(), "the state table answers again") >= 1,
        "resumed"
    );
    summary(
        "state table deleted, then created again",
        "DeleteTable while running; 20 events meanwhile; `quilt-notify state create`",
        all.len(),
        &tally,
        "0",
    );
    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn an_event_id_over_the_key_limit_fails_its_own_message_to_the_dlq_and_pauses_nobody() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let table = StateTable::new(&stack.endpoints.moto);
    let ses = stack.endpoints.ses.clone();
    // A per-event route (its lease is keyed by the event id) and a digest route (so is its
    // once-marker): both refuse the hostile id.
    let routes = format!(
        "{}{}",
        stack.route("all", &every_package(&stack)),
        digest_route(&stack, "digest", "2s", &stack.recipient, None)
    );
    let config = stack.config(&ses, &routes, &table.section(&stack.endpoints.moto, 10));
    table.create(&config);
    let worker = stack.start_worker(&config);

    let (ids, mut bodies) = events(&stack, "hostile", 10);
    // Anyone who can send to the queue can send this: an id over DynamoDB's 2 KB key limit.
    let mut hostile = stack.event("hostile/long-id");
    let prefix = hostile["id"].as_str().expect("id").to_owned();
    hostile["id"] = Value::String(format!("{prefix}-{}", "x".repeat(2999 - prefix.len())));
    assert_eq!(hostile["id"].as_str().map(str::len), Some(3000));
    let hostile = hostile.to_string();
    bodies.insert(5, hostile.clone());
    let message_ids = stack.send_batch(&stack.queue_url, &bodies).await;
    let hostile_message = &message_ids[5];

    let dead = stack.take(&stack.dlq_url, 1, Duration::from_secs(60)).await;
    assert_eq!(
        dead,
        vec![hostile],
        "the hostile message is dead-lettered unchanged; log: {:#?}",
        worker.lines()
    );
    assert!(
        drained(&stack, &table, Duration::from_secs(60)).await,
        "the other events are not settled: {:#?}",
        worker.lines()
    );
    let emails = stack.emails().await;
    let tally = Tally::of(&ids, &emails);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert_eq!(tally.duplicate_count(), 0, "{:?}", tally.duplicates);
    let mut digested: Vec<String> = digests(&emails)
        .into_iter()
        .filter(|d| d.route == "digest")
        .flat_map(|d| d.handles)
        .collect();
    digested.sort();
    let expected: Vec<String> = (0..10).map(|i| format!("hostile/pkg-{i}")).collect();
    assert_eq!(digested, expected, "each other event in one digest");

    let lines = worker.lines();
    let about: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message_id"] == hostile_message.as_str())
        .collect();
    let errors: Vec<&&Value> = about.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 1, "one ERROR line: {about:#?}");
    assert_eq!(errors[0]["outcome"], "failed");
    assert_eq!(errors[0]["error.kind"], "permanent");
    assert_eq!(errors[0]["error.code"], "ValidationException");
    assert_eq!(
        logged(&lines, "cannot be used"),
        0,
        "no pause: {:#?}",
        lines
            .iter()
            .filter(|l| l["level"] != "INFO")
            .collect::<Vec<_>>()
    );
    summary(
        "an event id over DynamoDB's key limit (state table on)",
        "one message of 11 with a 3,000-character event id, sent straight to the queue; a per-event and a digest route",
        ids.len(),
        &tally,
        "1 (the hostile one, 1 ERROR line; no pause)",
    );
    assert_eq!(worker.stop().await, Some(0));
}

/// The state store's contract (`quilt_notify::state::contract`), the same cases the unit tests
/// run over the in-memory table, here over DynamoDB on moto: the simulation's table and the
/// production one answer alike.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn the_state_store_keeps_the_contract_on_dynamodb() {
    let endpoints = crate::support::Endpoints::from_env();
    let table = StateTable::new(&endpoints.moto);
    quilt_notify::aws::admin::StateAdmin::new(table.client.clone(), &table.name)
        .create()
        .await
        .expect("create the table");
    let store = quilt_notify::state::StateStore::new(
        std::sync::Arc::new(quilt_notify::aws::dynamodb::DynamoTable::new(
            table.client.clone(),
            &table.name,
        )),
        quilt_notify::state::StateOptions::default(),
    );
    quilt_notify::state::contract::run(&store, "moto").await;
}
