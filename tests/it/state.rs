//! Shared state in DynamoDB (issue 13): the real binary, several processes on one queue, a
//! state table on moto's DynamoDB made by `quilt-notify state create`, and faults: `kill -9`,
//! the same event as two messages, throttling, an outage through the fault proxy, a deleted
//! table, an event id over DynamoDB's key limit. Each test that counts mail prints a
//! `RELIABILITY |` line (docs/reliability.md).

use std::time::Duration;

use serde_json::Value;

use crate::support::digest::{digest_route, digests, drained};
use crate::support::proxy::{DynamoError, Faults, SesProxy};
use crate::support::state::StateTable;
use crate::support::tally::{event_ids, summary, Tally};
use crate::support::{
    env, events, eventually, every_package, Endpoints, Opened, Opening, StackOptions, TestStack,
    SECONDS_120,
};

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

/// The outcomes each process logged for one event, in order: the story of a lost event.
fn story(processes: &[(&str, &[Value])], event_id: &str) -> String {
    processes
        .iter()
        .map(|(name, lines)| {
            let outcomes: Vec<&str> = lines
                .iter()
                .filter(|l| l["event_id"] == event_id && l["outcome"].is_string())
                .filter_map(|l| l["outcome"].as_str())
                .collect();
            format!("{name}: {outcomes:?}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Issue 20 §1, as an operator saw it: two tasks on one queue and one state table, SES slow
/// enough that the killed task holds a claim on every message it has in flight, and a lease
/// (15 s) far longer than the visibility timeout (3 s). The dead task's messages come back
/// while its leases still run: whoever receives one finds it `claimed_elsewhere` and hides it
/// until the lease ends, then receives it again. Before the fix that task had remembered the
/// event as done and deleted the second copy unsent (26 and 10 of 300 lost in two tries).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn two_workers_a_kill_9_and_a_restart_deliver_every_event_with_duplicates_only_from_sends_in_flight(
) {
    const EVENTS: usize = 300;
    const CONCURRENCY: usize = 10;
    const LEASE_SECONDS: u32 = 15;
    const VISIBILITY_SECONDS: u32 = 3;
    const SEND_DELAY: Duration = Duration::from_millis(1500);
    let moto = Endpoints::from_env().moto;
    let table = StateTable::new(&moto);
    // Every send waits at the proxy, so a task has a claim live for most of its messages' time.
    let proxy = SesProxy::in_front_of_ses(20).await;
    proxy.set(Faults::none().send_delay(SEND_DELAY));
    let (stack, config) = Opening::new()
        .queue(10, VISIBILITY_SECONDS)
        .ses(&proxy.url)
        .state(&table, &moto, LEASE_SECONDS)
        .configure()
        .await;
    let visibility = VISIBILITY_SECONDS.to_string();
    let concurrency = CONCURRENCY.to_string();
    let settings = env(&[
        ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "1000"),
        ("QUILT_NOTIFY__WORKER__CONCURRENCY", &concurrency),
        (
            "QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS",
            &visibility,
        ),
    ]);

    let (ids, bodies) = events(&stack, "two", EVENTS);
    stack.send_batch(&stack.queue_url, &bodies).await;
    let mut first = stack.start_worker_with_env(&config, &settings);
    let second = stack.start_worker_with_env(&config, &settings);
    let midway = first
        .wait_for_log(SECONDS_120, |lines| count(lines, "sent") >= 60)
        .await;
    assert!(midway, "log: {:#?}", first.lines());
    // A batch's outcomes are logged when it settles, and the next batch is received at once:
    // half a send later its claims are taken and its sends wait at the proxy.
    tokio::time::sleep(SEND_DELAY / 2).await;
    first.kill9();
    let before_kill = first.lines();
    let sent_before = event_ids(&before_kill, &["sent"]).len();
    // Replaced once the dead task's leases have ended (ECS takes longer): meanwhile the
    // survivor alone receives the dead task's messages, while its leases run and after.
    tokio::time::sleep(Duration::from_secs(u64::from(LEASE_SECONDS) + 3)).await;
    let restarted = stack.start_worker_with_env(&config, &settings);

    // Every copy is deleted once it is sent or found sent: the queue drains.
    let drained = eventually(Duration::from_secs(180), || {
        let stack = &stack;
        async move { stack.depth(&stack.queue_url).await == (0, 0) }
    })
    .await;
    assert!(drained, "queue not drained: {:#?}", restarted.lines());

    let tally = Tally::of(&ids, &stack.emails().await);
    let (survivor, reborn) = (second.lines(), restarted.lines());
    let mut after = survivor.clone();
    after.extend(reborn.iter().cloned());
    let takeovers = logged(&after, "took over an expired lease");
    let held = count(&after, "claimed_elsewhere");
    let processes: [(&str, &[Value]); 3] = [
        ("killed", &before_kill),
        ("survivor", &survivor),
        ("restarted", &reborn),
    ];
    println!(
        "state on, kill -9 after {sent_before} sends by the killed worker: {} lost, {} duplicates {:?}; \
         {takeovers} lease takeovers, {held} messages hidden while claimed elsewhere",
        tally.lost.len(),
        tally.duplicate_count(),
        tally.duplicates
    );
    let stories: Vec<String> = tally
        .lost
        .iter()
        .map(|id| format!("{id}: {}", story(&processes, id)))
        .collect();
    assert!(
        tally.lost.is_empty(),
        "{} lost (neither mailed nor dead-lettered):\n{}",
        tally.lost.len(),
        stories.join("\n")
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    assert!(
        tally.duplicate_count() <= CONCURRENCY,
        "more duplicates than sends in flight at the kill: {:?}",
        tally.duplicates
    );
    // The case itself happened: the dead task's claims outlived its messages' visibility.
    assert!(held > 0, "no copy was found claimed elsewhere");
    assert!(takeovers > 0, "no lease was taken over");
    summary(
        "kill -9 of one of two workers, then restart (state table on)",
        &format!(
            "two workers, concurrency {CONCURRENCY} each, every send delayed 1.5 s, lease {LEASE_SECONDS} s, \
             visibility {VISIBILITY_SECONDS} s; SIGKILL of one after it sent {sent_before} of {EVENTS}; \
             {held} copies hidden as claimed_elsewhere, {takeovers} lease takeovers"
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
    let moto = Endpoints::from_env().moto;
    let table = StateTable::new(&moto);
    let Opened {
        stack,
        config,
        worker: a,
    } = Opening::new().state(&table, &moto, 10).start().await;
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
    let moto = Endpoints::from_env().moto;
    let table = StateTable::new(&moto);
    let proxy = SesProxy::start(&moto, 13).await;
    let Opened { stack, worker, .. } = Opening::new()
        .queue(10, 5)
        .state(&table, &proxy.url, 5)
        .env(&[
            ("AWS_MAX_ATTEMPTS", "1"),
            ("QUILT_NOTIFY__RETRY__BASE_SECONDS", "1"),
        ])
        .start()
        .await;
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
    let moto = Endpoints::from_env().moto;
    let table = StateTable::new(&moto);
    let Opened {
        stack,
        config,
        worker,
    } = Opening::new().state(&table, &moto, 10).start().await;
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
    let moto = Endpoints::from_env().moto;
    let table = StateTable::new(&moto);
    // A per-event route (its lease is keyed by the event id) and a digest route (so is its
    // once-marker): both refuse the hostile id.
    let Opened { stack, worker, .. } = Opening::new()
        .routes(|stack| {
            format!(
                "{}{}",
                stack.route("all", &every_package(stack)),
                digest_route(stack, "digest", "2s", &stack.recipient, None)
            )
        })
        .state(&table, &moto, 10)
        .start()
        .await;

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

/// The state store's contract (`quilt_notify::worker::state::contract`), the same cases the unit tests
/// run over the in-memory table, here over DynamoDB on moto: the simulation's table and the
/// production one answer alike.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn the_state_store_keeps_the_contract_on_dynamodb() {
    let endpoints = crate::support::Endpoints::from_env();
    let table = StateTable::new(&endpoints.moto);
    quilt_notify::adapters::aws::admin::StateAdmin::new(table.client.clone(), &table.name)
        .create()
        .await
        .expect("create the table");
    let store = quilt_notify::worker::state::StateStore::new(
        std::sync::Arc::new(quilt_notify::adapters::aws::dynamodb::DynamoTable::new(
            table.client.clone(),
            &table.name,
        )),
        quilt_notify::worker::state::StateOptions::default(),
    );
    quilt_notify::worker::state::contract::run(&store, "moto").await;
}

/// Issue 20 §5: claims lived `state.ttl_days` (7) while the DLQ keeps a message 14 days, so a
/// redrive after day 7 found no claim and sent its routes again. Claims now live as long as the
/// DLQ keeps messages and a day more, and `validate` says which retention it used.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn claims_outlive_the_dead_letter_queues_retention_and_validate_says_which_it_used() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let table = StateTable::new(&stack.endpoints.moto);
    let ses = stack.endpoints.ses.clone();
    let config = stack.config(
        &ses,
        &stack.route("all", &every_package(&stack)),
        &format!("{}ttl_days = 7\n", table.section(&stack.endpoints.moto, 10)),
    );
    table.create(&config);

    let validate = std::process::Command::new(env!("CARGO_BIN_EXE_quilt-notify"))
        .args(["validate", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run validate");
    let stdout = String::from_utf8_lossy(&validate.stdout);
    assert!(
        validate.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let dlq_name = stack.dlq_url.rsplit('/').next().expect("DLQ name");
    assert!(
        stdout.contains("claims are kept 15 days") && stdout.contains(dlq_name),
        "validate names the DLQ's 14 days (and one more): {stdout}"
    );

    let worker = stack.start_worker(&config);
    let (ids, bodies) = events(&stack, "ttl", 1);
    stack.send_batch(&stack.queue_url, &bodies).await;
    let emails = stack.wait_for_emails(1, Duration::from_secs(30)).await;
    assert_eq!(
        Tally::of(&ids, &emails).delivered,
        1,
        "{:#?}",
        worker.lines()
    );
    let claims = table.items("send#").await;
    assert_eq!(claims.len(), 1);
    let expires_at: i64 = claims[0]["expires_at"]
        .as_n()
        .expect("expires_at")
        .parse()
        .expect("a number");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now")
        .as_secs() as i64;
    let days = (expires_at - now) as f64 / 86_400.0;
    assert!(
        (14.9..=15.0).contains(&days),
        "a claim expires in {days:.2} days"
    );
    assert_eq!(worker.stop().await, Some(0));
}
