//! Digest routes in the pipeline: events recorded once into the window of the moment, and each
//! closed window sent once, by whichever task claims it first. The state is in memory, with the
//! DynamoDB adapter's semantics; `tests/it/state.rs` runs the same against moto.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::event;
use crate::adapters::memory::table::MemoryTable;
use crate::adapters::memory::MemoryMailer;
use crate::domain::digest::DigestEntry;
use crate::domain::event::PackageEvent;
use crate::domain::render::{Renderer, TemplateSource};
use crate::domain::route::{RouteSpec, RouteTable};
use crate::ports::{FailureKind, SendError};
use crate::telemetry::metrics::Counter;
use crate::worker::claims::{now_ms, Claims};
use crate::worker::dedupe::HandledEvents;
use crate::worker::outcome::Outcome;
use crate::worker::rate::RateLimiter;
use crate::worker::state::{LeaseKey, StateOptions, StateStore, Window, WindowStatus};
use crate::worker::{Instruments, Pipeline, PipelineParts};

/// A window long past: closed for every clock.
const PAST: Window = Window {
    start: 1_700_000_000,
    end: 1_700_000_060,
};

fn digest_route(template: &str) -> RouteSpec {
    RouteSpec::builder("daily")
        .no_template()
        .details(false)
        .digest(json!({"every": "1h", "template": template}))
        .build()
}

/// A shared state in memory.
fn shared() -> StateStore {
    StateStore::new(Arc::new(MemoryTable::new()), StateOptions::default())
}

/// One task: a pipeline whose digest template's subject counts events and packages.
fn task(
    state: &StateStore,
    owner: &str,
    template: &str,
) -> (Pipeline<MemoryMailer>, Arc<MemoryMailer>) {
    let claims = Claims::new(state.clone(), owner, Duration::from_secs(60));
    build(Some(claims), template)
}

fn build(claims: Option<Claims>, template: &str) -> (Pipeline<MemoryMailer>, Arc<MemoryMailer>) {
    let mut renderer = Renderer::new();
    renderer
        .add(
            "digest",
            &TemplateSource {
                subject: "{{route}}: {{events}} events, {{package_count}} packages".into(),
                html: "{{#each packages}}<p>{{handle}} {{revisions}}</p>{{/each}}".into(),
                text: "{{#each packages}}{{handle}} {{revisions}}\n{{/each}}".into(),
            },
        )
        .unwrap();
    renderer
        .add(
            "broken",
            &TemplateSource {
                subject: "{{no_such_variable}}".into(),
                html: "x".into(),
                text: "x".into(),
            },
        )
        .unwrap();
    let outbox = Arc::new(MemoryMailer::default());
    let pipeline = Pipeline::new(PipelineParts {
        routes: RouteTable::compile(&[digest_route(template)]).unwrap(),
        renderer,
        catalog_host: None,
        default_from: "from@example.com".into(),
        contact_list: None,
        mailer: Arc::clone(&outbox),
        details: None,
        handled: HandledEvents::new(Duration::from_secs(3600), 100),
        claims,
        limiter: RateLimiter::new(0.0),
        instruments: Instruments::default(),
    });
    (pipeline, outbox)
}

/// Records `n` events of `handles` straight into the past window, as a task would have.
async fn recorded(state: &StateStore, handles: &[&str]) {
    recorded_in(state, PAST, "e", handles).await;
}

/// Records events named `prefix`0, `prefix`1… of `handles` into `window`.
async fn recorded_in(state: &StateStore, window: Window, prefix: &str, handles: &[&str]) {
    for (i, handle) in handles.iter().enumerate() {
        let body = event(&format!("{prefix}{i}"), "same_hash").replace("team/demo", handle);
        let parsed = PackageEvent::parse(&body).unwrap();
        let entry = serde_json::to_string(&DigestEntry::new(&parsed, None)).unwrap();
        state
            .record("daily", window, parsed.id(), &entry, now_ms())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_matched_event_is_recorded_once_and_its_message_deleted() {
    let state = shared();
    let (a, outbox) = task(&state, "a", "digest");
    let body = event("e1", "same_hash");
    assert_eq!(a.process(&body).await.0, Outcome::Recorded);
    let (b, _) = task(&state, "b", "digest");
    assert_eq!(b.process(&body).await.0, Outcome::Duplicate, "redelivered");
    assert!(
        outbox.subjects().is_empty(),
        "nothing sent before the window closes"
    );
    assert_eq!(a.instruments.metrics.count(Counter::DigestEvents), 1);
    let now = now_ms() / 1000;
    let open = state.pending_windows("daily", now + 7200).await.unwrap();
    assert_eq!(open.len(), 1, "one window holds it");
    let open = open[0].window;
    assert!(open.start <= now && now < open.end);
    assert_eq!(state.close_window("daily", open).await.unwrap().len(), 1);
    assert!(
        state
            .pending_windows("daily", now)
            .await
            .unwrap()
            .is_empty(),
        "not due before it ends"
    );
}

#[tokio::test]
async fn a_closed_window_is_sent_once_grouped_by_package_whichever_tasks_look() {
    let state = shared();
    recorded(&state, &["team/a", "team/b", "team/a"]).await;
    let (a, outbox_a) = task(&state, "a", "digest");
    let (b, outbox_b) = task(&state, "b", "digest");
    let pass = a.send_due_digests().await;
    assert_eq!(pass.sent, 1);
    assert_eq!(b.send_due_digests().await.sent, 0);
    assert_eq!(
        a.send_due_digests().await.sent,
        0,
        "not twice by the same task"
    );
    assert_eq!(outbox_a.subjects(), ["daily: 3 events, 2 packages"]);
    assert!(outbox_b.subjects().is_empty());
    let sent = outbox_a.sent()[0].text.clone();
    assert_eq!(sent, "team/a 2\nteam/b 1\n");
    assert!(state
        .pending_windows("daily", i64::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(a.instruments.metrics.count(Counter::DigestsSent), 1);
}

#[tokio::test]
async fn a_window_another_task_is_sending_is_left_to_it_until_its_lease_ends() {
    let state = shared();
    recorded(&state, &["team/a"]).await;
    let key = LeaseKey::Window {
        route: "daily",
        source: "daily",
        window: PAST,
    };
    state.claim(key, "other", now_ms(), 60_000).await.unwrap();
    let (a, outbox) = task(&state, "a", "digest");
    assert_eq!(a.send_due_digests().await.skipped, 1);
    assert!(outbox.subjects().is_empty());
    // The other task died: its lease ended.
    state
        .claim(key, "other", now_ms() - 120_000, 60_000)
        .await
        .unwrap();
    assert_eq!(a.send_due_digests().await.sent, 1);
    assert_eq!(a.instruments.metrics.count(Counter::LeaseTakeovers), 1);
}

#[tokio::test]
async fn a_record_after_the_window_was_claimed_goes_to_the_next_window() {
    let state = shared();
    let (a, _) = task(&state, "a", "digest");
    let now = now_ms() / 1000;
    let current = Window {
        start: now - now.rem_euclid(3600),
        end: now - now.rem_euclid(3600) + 3600,
    };
    // Another task (with a faster clock) is already sending the current window.
    state.close_window("daily", current).await.unwrap();
    assert_eq!(
        a.process(&event("late", "same_hash")).await.0,
        Outcome::Recorded
    );
    let next = Window {
        start: current.end,
        end: current.end + 3600,
    };
    assert_eq!(state.close_window("daily", next).await.unwrap().len(), 1);
    assert!(
        state
            .close_window("daily", current)
            .await
            .unwrap()
            .is_empty(),
        "not in the window that was being sent"
    );
}

#[tokio::test]
async fn a_redelivery_after_its_window_closed_is_not_recorded_again() {
    let state = shared();
    let (a, outbox) = task(&state, "a", "digest");
    let body = event("e1", "same_hash");
    assert_eq!(a.process(&body).await.0, Outcome::Recorded);
    let window = state.pending_windows("daily", i64::MAX).await.unwrap()[0].window;
    assert_eq!(state.close_window("daily", window).await.unwrap().len(), 1);
    let (b, _) = task(&state, "b", "digest");
    assert_eq!(b.process(&body).await.0, Outcome::Duplicate);
    let later = state.pending_windows("daily", i64::MAX).await.unwrap();
    let later: Vec<Window> = later.iter().map(|p| p.window).collect();
    assert_eq!(later, [window], "no second window holds it");
    assert!(outbox.subjects().is_empty());
}

#[tokio::test]
async fn ses_trouble_leaves_the_window_for_the_next_check() {
    let state = shared();
    recorded(&state, &["team/a"]).await;
    let (a, outbox) = task(&state, "a", "digest");
    outbox.refuse(Some(SendError {
        kind: FailureKind::Transient,
        code: "ServiceUnavailable".into(),
        message: "try later".into(),
    }));
    assert_eq!(a.send_due_digests().await.failed, 1);
    let (b, outbox_b) = task(&state, "b", "digest");
    assert_eq!(
        b.send_due_digests().await.sent,
        1,
        "released: no wait for the lease"
    );
    assert_eq!(outbox_b.subjects(), ["daily: 1 events, 1 packages"]);
    assert_eq!(
        b.instruments.metrics.count(Counter::LeaseTakeovers),
        0,
        "a window released after a transient failure is no takeover"
    );
}

#[tokio::test]
async fn a_digest_that_cannot_render_is_kept_as_failed_not_retried_forever() {
    let state = shared();
    recorded(&state, &["team/a"]).await;
    let (a, outbox) = task(&state, "a", "broken");
    assert_eq!(a.send_due_digests().await.failed, 1);
    assert_eq!(
        a.send_due_digests().await.failed,
        0,
        "kept as failed, not pending"
    );
    assert!(outbox.subjects().is_empty());
    assert_eq!(a.instruments.metrics.count(Counter::DigestsFailed), 1);
    let views = state
        .windows(&["daily".to_owned()], now_ms())
        .await
        .unwrap();
    assert_eq!(views.len(), 1, "its events are kept: {views:?}");
    assert!(
        matches!(&views[0].status, WindowStatus::Failed { error } if error.contains("template")),
        "{views:?}"
    );
    assert_eq!(views[0].events, 1);
}

#[tokio::test]
async fn digests_ses_rejected_go_out_in_one_digest_after_state_retry() {
    let state = shared();
    recorded_in(&state, PAST, "a", &["team/a", "team/b"]).await;
    let later = Window {
        start: PAST.end,
        end: PAST.end + 60,
    };
    recorded_in(&state, later, "b", &["team/c"]).await;
    let (a, outbox) = task(&state, "a", "digest");
    outbox.refuse(Some(SendError {
        kind: FailureKind::Permanent,
        code: "MessageRejected".into(),
        message: "Email address is not verified.".into(),
    }));
    assert_eq!(a.send_due_digests().await.failed, 2);
    assert_eq!(
        a.send_due_digests().await,
        Default::default(),
        "nothing pending"
    );
    outbox.refuse(None);
    assert_eq!(state.retry("daily", None).await, Ok(2));
    let pass = a.send_due_digests().await;
    assert_eq!(pass.sent, 1, "{pass:?}");
    assert_eq!(outbox.subjects(), ["daily: 3 events, 3 packages"]);
    assert_eq!(a.send_due_digests().await, Default::default());
    assert!(state
        .windows(&["daily".to_owned()], now_ms())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn without_a_state_table_a_digest_route_fails_rather_than_drop_the_event() {
    // Start-up refuses this configuration; the pipeline still never deletes an unrecorded event.
    let (a, outbox) = build(None, "digest");
    assert!(!a.has_digests(), "no digest loop without a table");
    let (outcome, _) = a.process(&event("e1", "same_hash")).await;
    assert!(
        matches!(outcome, Outcome::Failed { kind: FailureKind::Permanent, ref code, .. } if code == "no_state_table"),
        "{outcome:?}"
    );
    assert!(outbox.subjects().is_empty());
}

/// Issue 20 §4: one recorded event costs a constant number of small writes, whatever its
/// window holds (the earlier design appended to 16 shard items billed whole, which grew with
/// the window up to DynamoDB's 400 KB item limit), and a window of 20,000 events records,
/// closes and goes out as one digest. Units are DynamoDB's, computed from item sizes.
#[tokio::test]
async fn recording_costs_the_same_at_20000_events_and_such_a_window_goes_out_in_one_digest() {
    let table = Arc::new(MemoryTable::new());
    let state = StateStore::new(Arc::clone(&table) as _, StateOptions::default());
    let parsed = PackageEvent::parse(&event("template", "same_hash")).unwrap();
    let entry = serde_json::to_string(&DigestEntry::new(&parsed, None)).unwrap();
    let mut per_event = Vec::new();
    for i in 0..20_000 {
        let before = table.units();
        let id = format!("{:08}-0000-4000-8000-000000000000", i);
        let entry = entry.replace(parsed.id(), &id);
        state
            .record("daily", PAST, &id, &entry, now_ms())
            .await
            .unwrap();
        let after = table.units();
        per_event.push((after.write - before.write, after.read - before.read));
    }
    let first_window_writes = per_event[0].0;
    let (tenth, late) = (per_event[9], per_event[19_999]);
    println!(
        "digest record cost: event 1 {first_window_writes} WCU (lists the window), event 10 {tenth:?} (WCU, RCU), event 20,000 {late:?}"
    );
    assert!(
        per_event[1..].iter().all(|cost| *cost == tenth),
        "every event after the first costs what the 10th did"
    );
    assert_eq!(tenth, late, "the 20,000th event costs what the 10th did");
    let largest = table
        .items()
        .iter()
        .map(crate::adapters::memory::table::item_size)
        .max()
        .unwrap();
    assert!(
        largest < 2048,
        "no item grows with the window: {largest} bytes"
    );

    let (a, outbox) = task(&state, "a", "digest");
    let before = table.units();
    let pass = a.send_due_digests().await;
    let sending = table.units();
    println!(
        "sending the 20,000-event window: {} WCU, {} RCU, {} calls",
        sending.write - before.write,
        sending.read - before.read,
        sending.calls - before.calls
    );
    assert_eq!(pass.sent, 1, "{pass:?}");
    assert_eq!(outbox.subjects(), ["daily: 20000 events, 1 packages"]);
}
