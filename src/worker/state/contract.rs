//! The state store's contract: what every task may rely on, whichever table is underneath. One
//! suite, run over the in-memory table (here, in the unit tests) and over DynamoDB (moto, in
//! `tests/it/state.rs`), so the simulation's table and the production one answer alike.
//!
//! Cases share one table: each names its events and routes after its `tag`. Times are fixed
//! Unix milliseconds, so leases end without waiting.

use super::leases::send_key;
use super::{keyed, n, s, window_pk, Claim, Finish, LeaseKey, Recorded, StateStore, Window};
use super::{WindowStatus, TTL_ATTRIBUTE};
use crate::ports::{BoxFuture, Changes, Cond, StateFailureKind, Update};

/// A case: its name, and the test, given a store and a tag unique to the run.
pub type Case = (
    &'static str,
    fn(StateStore, String) -> BoxFuture<'static, ()>,
);

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        vec![$((stringify!($case), (|store, tag| Box::pin($case(store, tag))) as fn(StateStore, String) -> BoxFuture<'static, ()>)),*]
    };
}

/// Every case of the contract.
pub fn cases() -> Vec<Case> {
    cases![
        a_claim_holds_others_off_until_its_end_and_the_skew_margin,
        a_sent_email_is_done_for_every_task,
        a_released_send_is_claimed_at_once_without_a_takeover,
        only_the_owner_renews_or_releases_a_lease,
        the_owner_may_claim_its_own_lease_again,
        a_released_window_is_claimed_again_without_a_takeover,
        a_key_over_the_size_limit_is_the_requests_fault_not_the_tables,
        an_event_is_recorded_once_per_route,
        a_closed_window_keeps_its_events_and_sends_later_ones_on,
        an_event_a_task_left_mid_record_is_in_exactly_one_digest,
        pending_windows_are_the_ended_ones_oldest_first,
        a_sent_window_leaves_the_pending_list,
        a_failed_window_stays_listed_until_retried_then_goes_out_once,
        retry_as_hands_a_routes_windows_to_another_route,
        an_empty_window_closes_to_nothing,
        a_transaction_applies_whole_or_not_at_all,
        claims_and_marks_written_in_one_batch_answer_as_each_alone,
    ]
}

/// Runs every case against `store`, naming each before it runs (a failure's panic follows).
pub async fn run(store: &StateStore, tag: &str) {
    for (name, case) in cases() {
        eprintln!("state contract: {name}");
        case(store.clone(), format!("{tag}-{name}")).await;
    }
}

/// A moment in 2027, in Unix milliseconds.
const T: i64 = 1_800_000_000_000;

fn window(i: i64) -> Window {
    Window {
        start: T / 1000 + 60 * i,
        end: T / 1000 + 60 * (i + 1),
    }
}

fn entry(event: &str) -> String {
    format!(r#"{{"event_id":"{event}"}}"#)
}

fn sorted(mut entries: Vec<String>) -> Vec<String> {
    entries.sort();
    entries
}

async fn a_claim_holds_others_off_until_its_end_and_the_skew_margin(
    store: StateStore,
    tag: String,
) {
    let event = format!("{tag}-e");
    let key = LeaseKey::Send {
        event_id: &event,
        route: "r",
    };
    let margin = store.skew_margin_ms;
    assert_eq!(
        store.claim(key, "a", T, 10_000).await,
        Ok(Claim::Won { takeover: false })
    );
    let held = Claim::Held {
        until_ms: T + 10_000 + margin,
    };
    assert_eq!(store.claim(key, "b", T + 5_000, 10_000).await, Ok(held));
    assert_eq!(
        store.claim(key, "b", T + 10_000 + margin - 1, 10_000).await,
        Ok(held),
        "a lease that ended less than the skew margin ago is still held"
    );
    let after = T + 10_000 + margin + 1;
    assert_eq!(
        store.claim(key, "b", after, 10_000).await,
        Ok(Claim::Won { takeover: true })
    );
    assert!(matches!(
        store.claim(key, "a", after + 1, 10_000).await,
        Ok(Claim::Held { .. })
    ));
}

async fn a_sent_email_is_done_for_every_task(store: StateStore, tag: String) {
    let event = format!("{tag}-e");
    let key = LeaseKey::Send {
        event_id: &event,
        route: "r",
    };
    store.claim(key, "a", T, 10_000).await.expect("claim");
    store
        .finish(key, "a", Finish::Sent { message_id: "m1" }, T + 1)
        .await
        .expect("finish");
    assert_eq!(store.claim(key, "b", T + 2, 10_000).await, Ok(Claim::Done));
    assert_eq!(store.claim(key, "a", T + 3, 10_000).await, Ok(Claim::Done));
    assert_eq!(store.renew(key, "a", T + 20_000).await, Ok(false));
    store.release(key, "a").await.expect("release is harmless");
    assert_eq!(
        store.claim(key, "b", T + 99_000_000, 10_000).await,
        Ok(Claim::Done)
    );
}

async fn a_released_send_is_claimed_at_once_without_a_takeover(store: StateStore, tag: String) {
    let event = format!("{tag}-e");
    let key = LeaseKey::Send {
        event_id: &event,
        route: "r",
    };
    store.claim(key, "a", T, 60_000).await.expect("claim");
    store.release(key, "a").await.expect("release");
    assert_eq!(
        store.claim(key, "b", T + 1, 60_000).await,
        Ok(Claim::Won { takeover: false })
    );
}

async fn only_the_owner_renews_or_releases_a_lease(store: StateStore, tag: String) {
    let event = format!("{tag}-e");
    let key = LeaseKey::Send {
        event_id: &event,
        route: "r",
    };
    store.claim(key, "a", T, 10_000).await.expect("claim");
    assert_eq!(store.renew(key, "b", T + 60_000).await, Ok(false));
    store
        .release(key, "b")
        .await
        .expect("not b's: nothing happens");
    assert!(matches!(
        store.claim(key, "c", T + 1, 10_000).await,
        Ok(Claim::Held { .. })
    ));
    assert_eq!(store.renew(key, "a", T + 60_000).await, Ok(true));
    assert_eq!(
        store.claim(key, "c", T + 30_000, 10_000).await,
        Ok(Claim::Held {
            until_ms: T + 60_000 + store.skew_margin_ms
        })
    );
}

async fn the_owner_may_claim_its_own_lease_again(store: StateStore, tag: String) {
    let event = format!("{tag}-e");
    let key = LeaseKey::Send {
        event_id: &event,
        route: "r",
    };
    store.claim(key, "a", T, 10_000).await.expect("claim");
    assert_eq!(
        store.claim(key, "a", T + 1, 10_000).await,
        Ok(Claim::Won { takeover: false })
    );
}

async fn a_released_window_is_claimed_again_without_a_takeover(store: StateStore, tag: String) {
    let route = format!("{tag}-r");
    let key = LeaseKey::Window {
        route: &route,
        source: &route,
        window: window(0),
    };
    store.claim(key, "a", T, 10_000).await.expect("claim");
    store.release(key, "a").await.expect("release");
    assert_eq!(
        store.claim(key, "b", T + 1, 10_000).await,
        Ok(Claim::Won { takeover: false }),
        "a digest retried after a transient failure is no takeover"
    );
}

async fn a_key_over_the_size_limit_is_the_requests_fault_not_the_tables(
    store: StateStore,
    tag: String,
) {
    let event = format!("{tag}-{}", "x".repeat(3000));
    let key = LeaseKey::Send {
        event_id: &event,
        route: "r",
    };
    let claimed = store.claim(key, "a", T, 10_000).await;
    assert_eq!(
        claimed.map_err(|e| e.kind),
        Err(StateFailureKind::Invalid),
        "one hostile event id must not pause the worker"
    );
    let recorded = store
        .record("r", window(0), &event, &entry("x"), T)
        .await
        .map_err(|e| e.kind);
    assert_eq!(recorded, Err(StateFailureKind::Invalid));
    assert_eq!(store.probe().await, Ok(()));
}

async fn an_event_is_recorded_once_per_route(store: StateStore, tag: String) {
    let (r1, r2, event) = (format!("{tag}-r1"), format!("{tag}-r2"), format!("{tag}-e"));
    let e = entry(&event);
    assert_eq!(
        store.record(&r1, window(0), &event, &e, T).await,
        Ok(Recorded::New)
    );
    assert_eq!(
        store.record(&r1, window(0), &event, &e, T).await,
        Ok(Recorded::Already)
    );
    assert_eq!(
        store.record(&r1, window(1), &event, &e, T).await,
        Ok(Recorded::Already)
    );
    assert_eq!(
        store.record(&r2, window(0), &event, &e, T).await,
        Ok(Recorded::New)
    );
}

async fn a_closed_window_keeps_its_events_and_sends_later_ones_on(store: StateStore, tag: String) {
    let route = format!("{tag}-r");
    let [e1, e2, e3] = ["1", "2", "3"].map(|i| format!("{tag}-e{i}"));
    for event in [&e1, &e2] {
        let recorded = store
            .record(&route, window(0), event, &entry(event), T)
            .await;
        assert_eq!(recorded, Ok(Recorded::New));
    }
    let first = sorted(store.close_window(&route, window(0)).await.expect("close"));
    assert_eq!(first, [entry(&e1), entry(&e2)]);
    assert_eq!(
        store.record(&route, window(0), &e3, &entry(&e3), T).await,
        Ok(Recorded::WindowClosed)
    );
    assert_eq!(
        store.record(&route, window(1), &e3, &entry(&e3), T).await,
        Ok(Recorded::New)
    );
    let again = sorted(store.close_window(&route, window(0)).await.expect("close"));
    assert_eq!(again, first, "closing is idempotent");
    let second = store.close_window(&route, window(1)).await.expect("close");
    assert_eq!(second, [entry(&e3)]);
    assert_eq!(
        store.record(&route, window(2), &e3, &entry(&e3), T).await,
        Ok(Recorded::Already)
    );
}

/// The states a task can leave between the steps of `record` when it dies, written by hand:
/// whatever happened, the event ends up in exactly one digest once it is delivered again.
async fn an_event_a_task_left_mid_record_is_in_exactly_one_digest(store: StateStore, tag: String) {
    let route = format!("{tag}-r");
    let left = |event: &str, status: &str, w: Window, with_entry: bool| {
        let route = route.clone();
        let event = event.to_owned();
        let status = status.to_owned();
        let store = store.clone();
        async move {
            let mut marker = keyed(&send_key(&event, &route));
            marker.extend([
                ("status".to_owned(), s(&status)),
                ("event_id".to_owned(), s(&event)),
                ("route".to_owned(), s(&route)),
                ("window_start".to_owned(), n(w.start)),
                ("window_end".to_owned(), n(w.end)),
                (TTL_ATTRIBUTE.to_owned(), n(w.end + 86_400)),
            ]);
            store.table().put(marker, None).await.expect("marker");
            if with_entry {
                let mut item = keyed(&super::key(window_pk(&route, w), format!("e#{event}")));
                item.extend([
                    ("entry".to_owned(), s(&entry(&event))),
                    ("event_id".to_owned(), s(&event)),
                ]);
                store.table().put(item, None).await.expect("entry");
                let listed = crate::ports::Changes {
                    set: vec![("window_start", n(w.start)), ("window_end", n(w.end))],
                    remove: Vec::new(),
                };
                store
                    .table()
                    .update(&super::pending_key(&route, w), &listed, None)
                    .await
                    .expect("listed");
            }
        }
    };
    // Died after writing its event, before reading the window: the sender takes it.
    let written = format!("{tag}-written");
    left(&written, "recording", window(0), true).await;
    // Died after withdrawing from a closed window, before moving on: the sender leaves it.
    let withdrawn = format!("{tag}-withdrawn");
    left(&withdrawn, "withdrawn", window(0), true).await;
    // Died before writing its event: nothing to take.
    let unwritten = format!("{tag}-unwritten");
    left(&unwritten, "recording", window(0), false).await;

    let digest = store.close_window(&route, window(0)).await.expect("close");
    assert_eq!(digest, [entry(&written)]);
    for (event, next) in [
        (&written, Ok(Recorded::Already)),
        (&withdrawn, Ok(Recorded::New)),
        (&unwritten, Ok(Recorded::WindowClosed)),
    ] {
        let redelivered = store
            .record(&route, window(0), event, &entry(event), T)
            .await;
        let redelivered = match redelivered {
            Ok(Recorded::WindowClosed) => {
                store
                    .record(&route, window(1), event, &entry(event), T)
                    .await
            }
            other => other,
        };
        let expected = match next {
            Ok(Recorded::WindowClosed) => Ok(Recorded::New),
            other => other,
        };
        assert_eq!(redelivered, expected, "{event}");
    }
    let stale = store
        .table()
        .count(
            &window_pk(&route, window(0)),
            crate::ports::SortKeys::Prefix("e#"),
        )
        .await
        .expect("count");
    assert_eq!(
        stale, 1,
        "the withdrawn event's item left its closed window"
    );
    let later = sorted(store.close_window(&route, window(1)).await.expect("close"));
    assert_eq!(later, sorted(vec![entry(&withdrawn), entry(&unwritten)]));
    let again = store.close_window(&route, window(0)).await.expect("close");
    assert_eq!(again, [entry(&written)], "no event in two digests");
}

async fn pending_windows_are_the_ended_ones_oldest_first(store: StateStore, tag: String) {
    let route = format!("{tag}-r");
    for (i, w) in [(1, window(1)), (0, window(0))] {
        let event = format!("{tag}-e{i}");
        store
            .record(&route, w, &event, &entry(&event), T)
            .await
            .expect("record");
    }
    let windows = |ended_by| {
        let store = store.clone();
        let route = route.clone();
        async move {
            store
                .pending_windows(&route, ended_by)
                .await
                .expect("pending")
                .into_iter()
                .map(|p| p.window)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(windows(window(1).end).await, [window(0), window(1)]);
    assert_eq!(windows(window(0).end).await, [window(0)]);
    assert_eq!(windows(window(0).end - 1).await, []);
}

async fn a_sent_window_leaves_the_pending_list(store: StateStore, tag: String) {
    let route = format!("{tag}-r");
    let event = format!("{tag}-e");
    store
        .record(&route, window(0), &event, &entry(&event), T)
        .await
        .expect("record");
    let pending = store
        .pending_windows(&route, window(0).end)
        .await
        .expect("pending");
    assert_eq!(pending.len(), 1);
    let lease = pending[0].lease();
    assert_eq!(
        store.claim(lease, "a", T, 10_000).await,
        Ok(Claim::Won { takeover: false })
    );
    store.close_window(&route, window(0)).await.expect("close");
    store
        .finish(lease, "a", Finish::Sent { message_id: "m" }, T + 1)
        .await
        .expect("finish");
    let after = store.pending_windows(&route, window(0).end).await;
    assert_eq!(after, Ok(Vec::new()));
    assert_eq!(
        store.claim(lease, "b", T + 2, 10_000).await,
        Ok(Claim::Done)
    );
}

async fn a_failed_window_stays_listed_until_retried_then_goes_out_once(
    store: StateStore,
    tag: String,
) {
    let route = format!("{tag}-r");
    let event = format!("{tag}-e");
    store
        .record(&route, window(0), &event, &entry(&event), T)
        .await
        .expect("record");
    let pending = store
        .pending_windows(&route, window(0).end)
        .await
        .expect("pending");
    let lease = pending[0].lease();
    store.claim(lease, "a", T, 10_000).await.expect("claim");
    store.close_window(&route, window(0)).await.expect("close");
    let error = "SES rejected the digest: MessageRejected";
    store
        .finish(lease, "a", Finish::Failed { error }, T + 1)
        .await
        .expect("finish");
    assert_eq!(
        store.pending_windows(&route, window(0).end).await,
        Ok(Vec::new())
    );
    let views = store
        .windows(std::slice::from_ref(&route), T + 2)
        .await
        .expect("windows");
    assert_eq!(views.len(), 1, "a failed window is still listed");
    assert_eq!(
        views[0].status,
        WindowStatus::Failed {
            error: error.to_owned()
        }
    );
    assert_eq!(views[0].events, 1);
    assert_eq!(
        store.claim(lease, "b", T + 3, 10_000).await,
        Ok(Claim::Done)
    );

    assert_eq!(store.retry(&route, None).await, Ok(1));
    let retried = store
        .pending_windows(&route, window(0).end)
        .await
        .expect("pending");
    assert_eq!(retried.len(), 1);
    assert!(retried[0].retry);
    assert_eq!(
        store.claim(lease, "b", T + 4, 10_000).await,
        Ok(Claim::Won { takeover: false })
    );
    let entries = store.close_window(&route, window(0)).await.expect("close");
    assert_eq!(entries, [entry(&event)], "its events were kept");
    store
        .finish(lease, "b", Finish::Sent { message_id: "m" }, T + 5)
        .await
        .expect("finish");
    assert_eq!(
        store.pending_windows(&route, window(0).end).await,
        Ok(Vec::new())
    );
    assert_eq!(store.retry(&route, None).await, Ok(0));
}

async fn retry_as_hands_a_routes_windows_to_another_route(store: StateStore, tag: String) {
    let (old, new) = (format!("{tag}-old"), format!("{tag}-new"));
    let event = format!("{tag}-e");
    store
        .record(&old, window(0), &event, &entry(&event), T)
        .await
        .expect("record");
    let known = store.digest_routes().await.expect("routes");
    assert!(known.contains(&old), "{known:?}");
    assert_eq!(store.retry(&old, Some(&new)).await, Ok(1));
    assert_eq!(
        store.pending_windows(&old, window(0).end).await,
        Ok(Vec::new())
    );
    let handed = store
        .pending_windows(&new, window(0).end)
        .await
        .expect("pending");
    assert_eq!(handed.len(), 1);
    assert_eq!(
        (handed[0].route.as_str(), handed[0].source.as_str()),
        (new.as_str(), old.as_str())
    );
    assert!(handed[0].retry);
    let lease = handed[0].lease();
    assert_eq!(
        store.claim(lease, "a", T, 10_000).await,
        Ok(Claim::Won { takeover: false })
    );
    let entries = store.close_window(&old, window(0)).await.expect("close");
    assert_eq!(entries, [entry(&event)]);
    store
        .finish(lease, "a", Finish::Sent { message_id: "m" }, T + 1)
        .await
        .expect("finish");
    assert_eq!(
        store.pending_windows(&new, window(0).end).await,
        Ok(Vec::new())
    );
    assert!(store.digest_routes().await.expect("routes").contains(&new));
}

async fn an_empty_window_closes_to_nothing(store: StateStore, tag: String) {
    let route = format!("{tag}-r");
    assert_eq!(store.close_window(&route, window(7)).await, Ok(Vec::new()));
}

async fn a_transaction_applies_whole_or_not_at_all(store: StateStore, tag: String) {
    let table = store.table();
    let pk = format!("{tag}-t");
    let update = |sk: &str, cond: Option<Cond>| Update {
        key: super::key(pk.as_str(), sk),
        changes: Changes {
            set: vec![("status", s("claimed"))],
            remove: Vec::new(),
        },
        cond,
    };
    let written = |sk: &'static str| {
        let key = super::key(pk.as_str(), sk);
        async move { table.get(&key).await.expect("get").is_some() }
    };
    let refused = [
        update("a", None),
        update("b", Some(Cond::Eq("status", s("sent")))),
    ];
    assert_eq!(table.update_all(&refused).await, Ok(false));
    assert!(!written("a").await, "a failed condition writes nothing");
    let applied = [update("a", None), update("b", Some(Cond::Absent))];
    assert_eq!(table.update_all(&applied).await, Ok(true));
    assert!(written("a").await && written("b").await);
    let twice = [update("c", None), update("c", None)];
    let invalid = table.update_all(&twice).await.expect_err("one item twice");
    assert_eq!(invalid.kind, StateFailureKind::Invalid);
    assert!(!written("c").await);
}

/// Claims and marks of one task that wait while another call is written go in one batch; each
/// answers as it would alone, and a contended claim in the batch changes no answer.
async fn claims_and_marks_written_in_one_batch_answer_as_each_alone(
    store: StateStore,
    tag: String,
) {
    let events: Vec<String> = (0..6).map(|i| format!("{tag}-e{i}")).collect();
    let key = |i: usize| LeaseKey::Send {
        event_id: &events[i],
        route: "r",
    };
    // Three writes wait for the turn, then go as one batch.
    async fn batched<A, B, C>(
        store: &StateStore,
        a: A,
        b: B,
        c: C,
    ) -> (A::Output, B::Output, C::Output)
    where
        A: std::future::Future,
        B: std::future::Future,
        C: std::future::Future,
    {
        let turn = store.batch.as_ref().expect("batching on").turn().await;
        let release = async {
            while store.batch.as_ref().map_or(0, |b| b.waiting_count()) < 3 {
                tokio::task::yield_now().await;
            }
            drop(turn);
        };
        let (a, b, c, ()) = tokio::join!(a, b, c, release);
        (a, b, c)
    }
    let won = || Ok(Claim::Won { takeover: false });
    let claims = batched(
        &store,
        store.claim(key(0), "a", T, 10_000),
        store.claim(key(1), "a", T, 10_000),
        store.claim(key(2), "a", T, 10_000),
    )
    .await;
    assert_eq!(claims, (won(), won(), won()));
    let held = || {
        Ok(Claim::Held {
            until_ms: T + 10_000 + store.skew_margin_ms,
        })
    };
    assert_eq!(store.claim(key(0), "b", T + 1, 10_000).await, held());

    // e3 is b's: the batch with it is refused whole, and each claim is then made alone.
    assert_eq!(store.claim(key(3), "b", T, 10_000).await, won());
    let claims = batched(
        &store,
        store.claim(key(3), "a", T + 1, 10_000),
        store.claim(key(4), "a", T + 1, 10_000),
        store.claim(key(5), "a", T + 1, 10_000),
    )
    .await;
    assert_eq!(claims, (held(), won(), won()));

    let sent = |id| Finish::Sent { message_id: id };
    let marks = batched(
        &store,
        store.finish(key(0), "a", sent("m0"), T + 2),
        store.finish(key(1), "a", sent("m1"), T + 2),
        store.finish(key(2), "a", sent("m2"), T + 2),
    )
    .await;
    assert_eq!(marks, (Ok(()), Ok(()), Ok(())));
    for i in 0..3 {
        assert_eq!(
            store.claim(key(i), "b", T + 99_000_000, 10_000).await,
            Ok(Claim::Done),
            "e{i} was marked sent"
        );
    }
    assert_eq!(store.batch.as_ref().map_or(0, |b| b.waiting_count()), 0);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::memory::table::MemoryTable;
    use crate::worker::state::StateOptions;

    #[tokio::test]
    async fn the_memory_table_keeps_the_contract() {
        let store = StateStore::new(Arc::new(MemoryTable::new()), StateOptions::default());
        run(&store, "memory").await;
    }
}
