//! The pipeline with a shared state table: each pipeline here is one task, and they share one
//! in-memory state with the DynamoDB adapter's semantics (the same promises against moto's
//! DynamoDB and the real binary are in `tests/it/state.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::{build_sharing, event, pushed};
use crate::adapters::memory::table::MemoryTable;
use crate::adapters::memory::MemoryMailer;
use crate::domain::route::RouteSpec;
use crate::ports::{FailureKind, SendError, StateFailureKind};
use crate::telemetry::metrics::Counter;
use crate::worker::claims::{now_ms, Claims};
use crate::worker::outcome::Outcome;
use crate::worker::state::{string, LeaseKey, StateOptions, StateStore};
use crate::worker::Pipeline;

/// The table every task shares, and the state protocol over it.
struct SharedTable {
    table: Arc<MemoryTable>,
    store: StateStore,
}

impl std::ops::Deref for SharedTable {
    type Target = StateStore;
    fn deref(&self) -> &StateStore {
        &self.store
    }
}

impl SharedTable {
    fn new() -> Self {
        let table = Arc::new(MemoryTable::new());
        let store = StateStore::new(Arc::clone(&table) as _, StateOptions::default());
        Self { table, store }
    }

    fn fail(&self, kind: Option<StateFailureKind>) {
        self.table.fail(kind);
    }

    /// (pk, SES message id) of every claim marked sent.
    fn sent(&self) -> Vec<(String, String)> {
        self.table
            .items()
            .iter()
            .filter(|item| string(item, "status") == Some("sent"))
            .map(|item| {
                let field = |name| string(item, name).unwrap_or_default().to_owned();
                (field("pk"), field("ses_message_id"))
            })
            .collect()
    }

    /// Who holds the lease on a pair, if anyone.
    fn holder(&self, event_id: &str, route: &str) -> Option<String> {
        let pk = format!("send#{event_id}");
        self.table
            .items()
            .iter()
            .find(|item| string(item, "pk") == Some(&pk) && string(item, "sk") == Some(route))
            .filter(|item| string(item, "status") == Some("claimed"))
            .and_then(|item| string(item, "owner").map(str::to_owned))
    }
}

fn task(
    state: &SharedTable,
    owner: &str,
    routes: &[&str],
) -> (Pipeline<MemoryMailer>, Arc<MemoryMailer>) {
    let specs: Vec<_> = routes
        .iter()
        .map(|name| RouteSpec::builder(name).details(false).build())
        .collect();
    let claims = Claims::new(state.store.clone(), owner, Duration::from_secs(60));
    build_sharing(&specs, &pushed(&["same_hash"]), Some(claims))
}

fn key<'a>(event_id: &'a str, route: &'a str) -> LeaseKey<'a> {
    LeaseKey::Send { event_id, route }
}

#[tokio::test]
async fn the_same_event_at_two_tasks_sends_one_email() {
    let state = SharedTable::new();
    let (a, outbox_a) = task(&state, "a", &["r"]);
    let (b, outbox_b) = task(&state, "b", &["r"]);
    let body = event("e1", "same_hash");
    assert_eq!(a.process(&body).await.0, Outcome::Sent);
    assert_eq!(b.process(&body).await.0, Outcome::Duplicate);
    assert_eq!(outbox_a.subjects().len() + outbox_b.subjects().len(), 1);
    assert_eq!(state.sent(), [("send#e1".to_owned(), "ses-1".to_owned())]);
    assert_eq!(b.instruments.metrics.count(Counter::ClaimsSkipped), 1);
}

#[tokio::test]
async fn a_pair_another_task_is_sending_hides_the_message_until_its_lease_ends() {
    let state = SharedTable::new();
    let until = now_ms() + 30_000;
    state
        .claim(key("e1", "r"), "other", until - 30_000, 30_000)
        .await
        .unwrap();
    let (b, outbox) = task(&state, "b", &["r"]);
    let (outcome, _) = b.process(&event("e1", "same_hash")).await;
    let Outcome::ClaimedElsewhere { until_ms } = outcome else {
        panic!("{outcome:?}");
    };
    // Hidden until the lease can be taken over: its end plus the allowed clock skew.
    let takeable = until + StateOptions::default().skew_margin.as_millis() as i64;
    assert!(
        (until_ms - takeable).abs() < 1_000,
        "{until_ms} vs {takeable}"
    );
    assert!(outbox.subjects().is_empty());
}

#[tokio::test]
async fn the_expired_lease_of_a_dead_task_is_taken_over_and_counted() {
    let state = SharedTable::new();
    state
        .claim(key("e1", "r"), "dead", now_ms() - 120_000, 60_000)
        .await
        .unwrap();
    let (b, outbox) = task(&state, "b", &["r"]);
    assert_eq!(b.process(&event("e1", "same_hash")).await.0, Outcome::Sent);
    assert_eq!(outbox.subjects().len(), 1);
    assert_eq!(b.instruments.metrics.count(Counter::LeaseTakeovers), 1);
}

#[tokio::test]
async fn only_the_routes_not_sent_elsewhere_are_sent() {
    let state = SharedTable::new();
    let (a, outbox_a) = task(&state, "a", &["first"]);
    a.process(&event("e1", "same_hash")).await;
    let (b, outbox_b) = task(&state, "b", &["first", "second"]);
    assert_eq!(b.process(&event("e1", "same_hash")).await.0, Outcome::Sent);
    assert_eq!(outbox_a.subjects(), ["first files=- added=-"]);
    assert_eq!(outbox_b.subjects(), ["second files=- added=-"]);
}

#[tokio::test]
async fn an_unusable_table_sends_nothing_and_stops_the_worker() {
    let state = SharedTable::new();
    state.fail(Some(StateFailureKind::Unusable));
    let (a, outbox) = task(&state, "a", &["r"]);
    let (outcome, _) = a.process(&event("e1", "same_hash")).await;
    assert!(
        matches!(outcome, Outcome::Failed { kind: FailureKind::StateUnavailable, ref code, .. } if code == "ResourceNotFoundException"),
        "{outcome:?}"
    );
    assert!(
        outbox.subjects().is_empty(),
        "no email without the guarantee"
    );
    assert!(a.probe_state().await.is_err());
    state.fail(None);
    assert!(a.probe_state().await.is_ok());
    assert_eq!(a.process(&event("e1", "same_hash")).await.0, Outcome::Sent);
}

#[tokio::test]
async fn a_throttled_table_is_a_transient_failure() {
    let state = SharedTable::new();
    state.fail(Some(StateFailureKind::Transient));
    let (a, outbox) = task(&state, "a", &["r"]);
    let (outcome, _) = a.process(&event("e1", "same_hash")).await;
    assert!(
        matches!(
            outcome,
            Outcome::Failed {
                kind: FailureKind::Transient,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(outbox.subjects().is_empty());
}

#[tokio::test]
async fn a_failed_send_gives_its_lease_up_so_another_task_retries_at_once() {
    let state = SharedTable::new();
    let (a, outbox_a) = task(&state, "a", &["r"]);
    outbox_a.refuse(Some(SendError {
        kind: FailureKind::Transient,
        code: "ServiceUnavailable".into(),
        message: "try later".into(),
    }));
    let (outcome, _) = a.process(&event("e1", "same_hash")).await;
    assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
    assert_eq!(state.holder("e1", "r"), None);
    let (b, outbox_b) = task(&state, "b", &["r"]);
    assert_eq!(b.process(&event("e1", "same_hash")).await.0, Outcome::Sent);
    assert_eq!(outbox_b.subjects().len(), 1);
}

/// Issue 20 §1: a message hidden because another task held its lease is not final, so the
/// next delivery to the same task must claim again, not be dropped as a duplicate.
#[tokio::test]
async fn a_copy_that_found_the_lease_held_elsewhere_is_not_remembered_as_done() {
    let state = SharedTable::new();
    state
        .claim(key("e1", "r"), "killed", now_ms(), 60_000)
        .await
        .unwrap();
    let (b, outbox) = task(&state, "b", &["r"]);
    let body = event("e1", "same_hash");
    let (outcome, _) = b.process(&body).await;
    assert!(
        matches!(outcome, Outcome::ClaimedElsewhere { .. }),
        "{outcome:?}"
    );
    // The killed task's lease ends (here: given up; in production: it runs out).
    state.release(key("e1", "r"), "killed").await.unwrap();
    assert_eq!(b.process(&body).await.0, Outcome::Sent);
    assert_eq!(outbox.subjects().len(), 1);
}

/// Issue 20 §5: SES may have accepted an email whose call timed out or answered 5xx. Nothing
/// can tell (SES takes no idempotency key), so the retry goes on as for any transient failure,
/// and the possible duplicate is counted.
#[tokio::test]
async fn an_ambiguous_send_failure_is_retried_as_transient_and_counted_as_a_possible_duplicate() {
    let state = SharedTable::new();
    let (a, outbox) = task(&state, "a", &["r"]);
    outbox.refuse(Some(SendError {
        kind: FailureKind::Ambiguous,
        code: "Timeout".into(),
        message: "no answer".into(),
    }));
    let body = event("e1", "same_hash");
    let (outcome, _) = a.process(&body).await;
    assert!(
        matches!(
            outcome,
            Outcome::Failed {
                kind: FailureKind::Transient,
                ..
            }
        ),
        "{outcome:?}"
    );
    let metrics = &a.instruments.metrics;
    assert_eq!(metrics.count(Counter::PossibleDuplicates), 1);
    assert_eq!(state.holder("e1", "r"), None, "the lease is given up");

    // A refused send is no possible duplicate.
    outbox.refuse(Some(SendError {
        kind: FailureKind::Transient,
        code: "DispatchFailure".into(),
        message: "connection refused".into(),
    }));
    a.process(&body).await;
    assert_eq!(metrics.count(Counter::PossibleDuplicates), 1);
    outbox.refuse(None);
    assert_eq!(a.process(&body).await.0, Outcome::Sent);
}
