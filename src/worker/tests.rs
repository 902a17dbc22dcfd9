//! The worker loop against in-memory ports: what is deleted, released or kept, decided without
//! a network. (The same promises are proven against the real emulators in `tests/it/`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::dedupe::HandledEvents;
use super::rate::RateLimiter;
use super::{Backoff, Instruments, Pipeline, PipelineParts, Worker, WorkerOptions};
use crate::adapters::memory::{MemoryMailer, MemoryQueue};
use crate::domain::render::{Renderer, TemplateSource};
use crate::domain::route::{RouteSpec, RouteTable};
use crate::ports::FailureKind;

fn route(name: &str, handle_prefix: &str) -> RouteSpec {
    RouteSpec::builder(name)
        .to(&["a@example.com"])
        .pattern(json!({"detail": {"handle": [{"prefix": handle_prefix}]}}))
        .build()
}

fn event(id: &str, handle: &str) -> String {
    json!({
        "version": "0", "id": id, "detail-type": "package-revision", "source": "com.quiltdata",
        "account": "1", "time": "2024-04-25T14:46:51Z", "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": "b", "handle": handle, "topHash": "abc"}
    })
    .to_string()
}

fn worker(
    queue: &MemoryQueue,
    mailer: &MemoryMailer,
    routes: &[RouteSpec],
    deadline: Duration,
) -> Worker<MemoryQueue, MemoryMailer> {
    worker_with(queue, mailer, routes, options(deadline))
}

/// Two pollers, four slots, no long poll.
fn options(deadline: Duration) -> WorkerOptions {
    WorkerOptions {
        pollers: 2,
        concurrency: 4,
        max_messages: 10,
        wait_seconds: 0,
        visibility_seconds: 30,
        backoff: Backoff::new(5, 300),
        shutdown_deadline: deadline,
        digest_check: Duration::from_secs(1),
    }
}

fn worker_with(
    queue: &MemoryQueue,
    mailer: &MemoryMailer,
    routes: &[RouteSpec],
    options: WorkerOptions,
) -> Worker<MemoryQueue, MemoryMailer> {
    worker_limited(queue, mailer, routes, options, RateLimiter::new(0.0)).0
}

/// A worker with a send-rate limit, and the instruments it reports to.
fn worker_limited(
    queue: &MemoryQueue,
    mailer: &MemoryMailer,
    routes: &[RouteSpec],
    options: WorkerOptions,
    limiter: RateLimiter,
) -> (Worker<MemoryQueue, MemoryMailer>, Instruments) {
    let mut renderer = Renderer::new();
    renderer
        .add(
            "t",
            &TemplateSource {
                subject: "{{route}} {{handle}}".into(),
                html: "<p>{{handle}}</p>".into(),
                text: "{{handle}}".into(),
            },
        )
        .unwrap();
    let mailer = Arc::new(mailer.clone());
    let instruments = Instruments::default();
    let pipeline = Pipeline::new(PipelineParts {
        routes: RouteTable::compile(routes).unwrap(),
        renderer,
        catalog_host: None,
        default_from: "from@example.com".into(),
        contact_list: None,
        mailer: Arc::clone(&mailer),
        details: None,
        handled: HandledEvents::new(Duration::from_secs(3600), 1000),
        claims: None,
        limiter,
        instruments: instruments.clone(),
    });
    let worker = Worker::new(
        queue.clone(),
        pipeline,
        mailer,
        instruments.clone(),
        options,
    );
    (worker, instruments)
}

/// Runs the worker until `done` holds (checked every 10 ms, at most 5 s), then stops it.
async fn run_until(
    worker: Worker<MemoryQueue, MemoryMailer>,
    done: impl Fn() -> bool,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    for _ in 0..500 {
        if done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("worker stops")
        .expect("no panic");
    stop
}

#[tokio::test]
async fn sent_and_filtered_messages_are_deleted_and_only_matches_are_sent() {
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    queue.push("m1", &event("e1", "team-a/x"));
    queue.push("m2", &event("e2", "team-b/y"));
    let w = worker(
        &queue,
        &mailer,
        &[route("a", "team-a/")],
        Duration::from_secs(5),
    );
    let q = queue.clone();
    run_until(w, move || q.deleted().len() == 2).await;
    assert_eq!(mailer.subjects(), ["a team-a/x"]);
    let mut deleted = queue.deleted();
    deleted.sort();
    assert_eq!(deleted, ["m1", "m2"]);
    assert!(queue.changes().is_empty());
}

#[tokio::test]
async fn a_transient_failure_keeps_the_message_hidden_for_its_backoff() {
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::scripted(vec![Err(FailureKind::Transient)]);
    queue.push("m1", &event("e1", "x"));
    let w = worker(&queue, &mailer, &[route("all", "")], Duration::from_secs(5));
    let q = queue.clone();
    run_until(w, move || !q.changes().is_empty()).await;
    assert!(queue.deleted().is_empty(), "not deleted unsent");
    let (id, seconds) = queue.changes()[0].clone();
    assert_eq!(id, "m1");
    assert!(
        (4..=5).contains(&seconds),
        "first backoff ~5 s, got {seconds}"
    );
}

#[tokio::test]
async fn permanent_failures_are_released_at_once_toward_the_dlq() {
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::scripted(vec![Err(FailureKind::Permanent)]);
    queue.push("rejected", &event("e1", "x"));
    queue.push("garbage", "not json");
    let w = worker(&queue, &mailer, &[route("all", "")], Duration::from_secs(5));
    let q = queue.clone();
    run_until(w, move || q.changes().len() == 2).await;
    assert!(queue.deleted().is_empty());
    let mut changes = queue.changes();
    changes.sort();
    assert_eq!(
        changes,
        [("garbage".to_owned(), 0), ("rejected".to_owned(), 0)]
    );
}

#[tokio::test]
async fn a_redelivery_sends_only_the_routes_that_failed() {
    let queue = MemoryQueue::default();
    // Route a succeeds, route b fails once; the same message comes back.
    let mailer = MemoryMailer::scripted(vec![Ok(()), Err(FailureKind::Transient)]);
    queue.push("m1", &event("e1", "x"));
    let w = worker(
        &queue,
        &mailer,
        &[route("a", ""), route("b", "")],
        Duration::from_secs(5),
    );
    let q = queue.clone();
    let redelivered = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&redelivered);
    run_until(w, move || {
        let mut again = flag.lock().unwrap();
        if !*again && !q.changes().is_empty() {
            *again = true;
            q.push("m1", &event("e1", "x"));
        }
        !q.deleted().is_empty()
    })
    .await;
    assert_eq!(mailer.subjects(), ["a x", "b x"], "a once, b once");
    assert_eq!(queue.deleted(), ["m1"]);
}

#[tokio::test]
async fn a_duplicate_event_is_deleted_without_sending_again() {
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    queue.push("m1", &event("e1", "x"));
    let w = worker(&queue, &mailer, &[route("all", "")], Duration::from_secs(5));
    let q = queue.clone();
    let pushed = Arc::new(Mutex::new(false));
    run_until(w, move || {
        let mut pushed = pushed.lock().unwrap();
        if !*pushed && q.deleted() == ["m1"] {
            *pushed = true;
            q.push("m2", &event("e1", "x"));
        }
        q.deleted().len() == 2
    })
    .await;
    assert_eq!(mailer.subjects().len(), 1);
    assert_eq!(queue.deleted(), ["m1", "m2"]);
}

#[tokio::test]
async fn at_the_shutdown_deadline_unfinished_messages_are_released_at_once() {
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    mailer.hold_sends(); // every send hangs
    queue.push("m1", &event("e1", "x"));
    let w = worker(
        &queue,
        &mailer,
        &[route("all", "")],
        Duration::from_millis(200),
    );
    let q = queue.clone();
    run_until(w, move || q.receives() > 2).await;
    assert!(queue.deleted().is_empty());
    assert_eq!(queue.changes(), [("m1".to_owned(), 0)]);
    assert!(mailer.subjects().is_empty());
}

#[tokio::test]
async fn a_paused_account_stops_receiving_until_a_probe_finds_it_enabled() {
    tokio::time::pause();
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::scripted(vec![Err(FailureKind::AccountPaused)]);
    mailer.set_sending_enabled(false);
    queue.push("m1", &event("e1", "x"));
    let w = worker(&queue, &mailer, &[route("all", "")], Duration::from_secs(5));
    let stop = CancellationToken::new();
    let running = tokio::spawn(w.run(stop.clone()));

    // Let it fail once and trip the gate.
    while queue.changes().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(queue.deleted().is_empty());
    assert!(queue.changes()[0].1 >= 1, "held back, not released at once");
    // Paused: the queue is left alone for several probe intervals.
    queue.push("m1", &event("e1", "x"));
    let receives = queue.receives();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        queue.receives() <= receives + 2,
        "no receiving while paused"
    );
    assert!(queue.deleted().is_empty());

    mailer.set_sending_enabled(true);
    while queue.deleted().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mailer.subjects(), ["all x"]);
    stop.cancel();
    running.await.expect("no panic");
}

#[tokio::test]
async fn two_copies_of_one_event_in_one_batch_send_once() {
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    queue.push("m1", &event("e1", "x"));
    queue.push("m2", &event("e1", "x"));
    let w = worker(&queue, &mailer, &[route("all", "")], Duration::from_secs(5));
    let q = queue.clone();
    run_until(w, move || q.deleted().len() == 2).await;
    assert_eq!(mailer.subjects(), ["all x"], "one email for the event");
    let mut deleted = queue.deleted();
    deleted.sort();
    assert_eq!(deleted, ["m1", "m2"], "the copy is deleted as a duplicate");
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_messages_that_finished_are_deleted_not_released() {
    // Ten sends finish at 1.5 s, while the heartbeat's visibility call (1 s to 3 s) holds the
    // batch; the stop at 0.5 s makes the deadline pass at 2 s. When the batch looks again, its
    // tasks are done and the deadline has passed: the finished messages must be deleted.
    // Releasing them would let another worker send their emails again.
    let queue = MemoryQueue::default();
    queue.set_visibility_latency(Duration::from_secs(2));
    let mailer = MemoryMailer::default();
    mailer.set_latency(Duration::from_millis(1500));
    for i in 0..10 {
        queue.push(&format!("m{i}"), &event(&format!("e{i}"), "x"));
    }
    let mut options = options(Duration::from_millis(1500));
    options.concurrency = 10;
    options.visibility_seconds = 2;
    let w = worker_with(&queue, &mailer, &[route("all", "")], options);
    let stop = CancellationToken::new();
    let running = tokio::spawn(w.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    running.await.expect("no panic");
    assert_eq!(mailer.subjects().len(), 10);
    assert_eq!(queue.deleted().len(), 10, "every sent message deleted");
    let released: Vec<_> = queue
        .changes()
        .into_iter()
        .filter(|(_, s)| *s == 0)
        .collect();
    assert!(released.is_empty(), "released after sending: {released:?}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_stops_at_once_without_waiting_out_its_long_poll() {
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    let mut options = options(Duration::from_secs(5));
    options.wait_seconds = 20;
    let w = worker_with(&queue, &mailer, &[route("all", "")], options);
    let stop = CancellationToken::new();
    let running = tokio::spawn(w.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(queue.receives() >= 1, "long-polling");
    let asked = tokio::time::Instant::now();
    stop.cancel();
    running.await.expect("no panic");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "stopped {:?} after the signal",
        asked.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_worker_abandons_its_long_polls_once_its_batches_are_done() {
    // Two pollers: one brings a batch whose send takes 3 s, the other long-polls meanwhile.
    // At the stop, the batch is finished and deleted; the pending poll is abandoned then, not
    // waited out (20 s), and well before the 10 s deadline.
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    mailer.set_latency(Duration::from_secs(3));
    queue.push("m1", &event("e1", "x"));
    let mut options = options(Duration::from_secs(10));
    options.wait_seconds = 20;
    let w = worker_with(&queue, &mailer, &[route("all", "")], options);
    let stop = CancellationToken::new();
    let running = tokio::spawn(w.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = tokio::time::Instant::now();
    stop.cancel();
    running.await.expect("no panic");
    assert_eq!(queue.deleted(), ["m1"]);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "stopped {took:?} after the signal: when the send finished"
    );
}

#[tokio::test(start_paused = true)]
async fn a_worker_busy_with_slow_sends_stays_ready_without_receiving() {
    // Ten slots, all taken by one batch whose sends the rate limit spaces 10 s apart: no
    // receive for 90 s, yet an email goes out every 10 s. That is a healthy worker.
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    for i in 0..10 {
        queue.push(&format!("m{i}"), &event(&format!("e{i}"), "x"));
    }
    let mut options = options(Duration::from_secs(5));
    options.pollers = 1;
    options.concurrency = 10;
    let (w, instruments) = worker_limited(
        &queue,
        &mailer,
        &[route("all", "")],
        options,
        RateLimiter::new(0.1),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(w.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(75)).await;
    assert_eq!(
        queue.receives(),
        1,
        "every slot busy: no receive since the first"
    );
    assert!(mailer.subjects().len() >= 7, "sending all along");
    assert_eq!(
        instruments.status.readiness(Duration::from_secs(60)),
        Ok(())
    );
    stop.cancel();
    running.await.expect("no panic");
}

// ---- metrics (operations) ----

#[tokio::test]
async fn metrics_count_each_outcome_delete_send_and_duration() {
    use crate::telemetry::metrics::{Counter, Histogram};
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    queue.push("m1", &event("e1", "team-a/x"));
    queue.push("m2", &event("e2", "team-b/y"));
    queue.push("m3", "not json");
    let (w, instruments) = worker_limited(
        &queue,
        &mailer,
        &[route("a", "team-a/")],
        options(Duration::from_secs(5)),
        RateLimiter::new(0.0),
    );
    let metrics = instruments.metrics;
    let q = queue.clone();
    run_until(w, move || q.deleted().len() == 2 && q.changes().len() == 1).await;

    let counts: Vec<(&str, u64)> = Counter::ALL
        .iter()
        .map(|c| (c.name(), metrics.count(*c)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        counts,
        [
            ("received", 3),
            ("sent", 1),
            ("filtered", 1),
            ("failed_permanent", 1),
            ("deleted", 2),
            ("emails_sent", 1),
        ]
    );
    assert_eq!(metrics.observations(Histogram::ProcessingTime), 3);
    assert_eq!(metrics.observations(Histogram::SesCall), 1);
    // The event's time is in 2024: its age at send lands in the open bucket, but it is counted.
    assert_eq!(metrics.observations(Histogram::EventAge), 1);
}

// ---- batching (performance) ----

#[tokio::test]
async fn under_a_backlog_the_pollers_receive_full_batches() {
    // Two pollers share 20 slots. When a batch settles, its 10 slots must go to one receive of
    // 10, not be split between the waiting pollers into receives of 9 and 1: small receives
    // multiply the SQS calls per message (receive and delete) and halve the throughput.
    let queue = MemoryQueue::default();
    let mailer = MemoryMailer::default();
    for i in 0..200 {
        queue.push(&format!("m{i}"), &event(&format!("e{i}"), "x"));
    }
    let options = WorkerOptions {
        pollers: 2,
        concurrency: 20,
        max_messages: 10,
        wait_seconds: 0,
        visibility_seconds: 30,
        backoff: Backoff::new(5, 300),
        shutdown_deadline: Duration::from_secs(5),
        digest_check: Duration::from_secs(1),
    };
    let w = worker_with(&queue, &mailer, &[route("all", "")], options);
    let q = queue.clone();
    run_until(w, move || q.deleted().len() == 200).await;
    assert_eq!(queue.deleted().len(), 200);
    let batches = queue.batches();
    assert_eq!(batches.iter().sum::<usize>(), 200);
    assert!(
        batches.iter().all(|&n| n == 10),
        "receives of other than 10 messages: {batches:?}"
    );
}
