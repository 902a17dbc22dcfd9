//! Shared state: the protocol every task of the service follows in one
//! [`StateTable`](crate::ports::StateTable), written once over the item-level port, so the
//! DynamoDB table and the in-memory one (tests, benches, the simulation) run the same steps.
//!
//! It gives two promises: one email per (event, route) across tasks and restarts ([`leases`]),
//! and every event a digest route records in exactly one digest ([`windows`]).
//!
//! Items (key `pk` + `sk`, TTL on `expires_at`; see docs/operations.md, "Shared state"):
//! - `send#<event id>` / `<route>`: the lease on one route's email for one event (`status`
//!   claimed → sent), or the once-marker of an event recorded for a digest (`status`
//!   recording → recorded, or withdrawn when the window it was written to closed first, with
//!   the window it belongs to);
//! - `window#<route>#<start>` / `window`: a digest window's state: `closed` once a sender began
//!   reading it, and the lease on sending it (`status` claimed → sent, failed, or retry);
//! - `window#<route>#<start>` / `e#<event id>`: one recorded event (its digest entry's JSON);
//! - `pending#<route>` / `<start>-<end>` (zero-padded): a window holding events and not sent
//!   yet (`failed` with its `error` once given up, `retry` once made sendable again, `source`
//!   naming the window's route when `state retry --as` moved it);
//! - `digest-routes` / `<route>`: every route that ever recorded a window (finds orphans).
//!
//! Every write touches one small item, conditionally where tasks may race; no item grows with a
//! window, so recording costs the same whatever the window holds (docs/performance.md).

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Attr, DynStateTable, Item, ItemKey, StateError, StateFailureKind};

pub use crate::domain::schedule::Window;

pub mod batch;
pub mod leases;
pub mod windows;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;

pub use leases::{Claim, Finish, LeaseKey};
pub use windows::{PendingWindow, Recorded, WindowStatus, WindowView};

/// The attribute DynamoDB's TTL deletes items by (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// How long items live and how far task clocks may disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateOptions {
    /// Items live this long after their last use (a window's after it ends): at least as long
    /// as a message can wait in the DLQ, so a redrive finds what was sent.
    pub ttl: Duration,
    /// A lease counts as ended only this long after its end, so a task whose clock runs behind
    /// by less than this never takes over a lease that is still live.
    pub skew_margin: Duration,
    /// Claims and marks that meet in flight go as one transaction ([`batch`]).
    pub batch_writes: bool,
}

impl Default for StateOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(7 * 86_400),
            skew_margin: Duration::from_secs(2),
            batch_writes: true,
        }
    }
}

/// The state protocol over one table. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    table: Arc<dyn DynStateTable>,
    ttl_s: i64,
    skew_margin_ms: i64,
    /// None: every write alone.
    pub(super) batch: Option<Arc<batch::Batcher>>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("table", &self.table.name())
            .field("ttl_s", &self.ttl_s)
            .field("skew_margin_ms", &self.skew_margin_ms)
            .finish()
    }
}

impl StateStore {
    /// The protocol over `table`.
    pub fn new(table: Arc<dyn DynStateTable>, options: StateOptions) -> Self {
        Self {
            table,
            ttl_s: i64::try_from(options.ttl.as_secs()).unwrap_or(i64::MAX / 4),
            skew_margin_ms: i64::try_from(options.skew_margin.as_millis()).unwrap_or(0),
            batch: options.batch_writes.then(Arc::default),
        }
    }

    /// The table underneath.
    pub fn table(&self) -> &dyn DynStateTable {
        self.table.as_ref()
    }

    /// One cheap read, to learn whether an unusable table works again.
    ///
    /// # Errors
    /// The table still fails; a probe refused as invalid means a key schema that is not ours,
    /// so the table is unusable.
    pub async fn probe(&self) -> Result<(), StateError> {
        let key = ItemKey {
            pk: "probe".to_owned(),
            sk: "probe".to_owned(),
        };
        match self.table.get(&key).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == StateFailureKind::Invalid => Err(StateError {
                kind: StateFailureKind::Unusable,
                ..e
            }),
            Err(e) => Err(e),
        }
    }

    /// `expires_at` for an item last used at `after_s` (Unix seconds).
    fn expires(&self, after_s: i64) -> Attr {
        Attr::N(after_s.saturating_add(self.ttl_s))
    }

    /// A refusal of one request as invalid is the message's fault only if the table answers
    /// otherwise; if the probe fails too, the probe's error (the table is unusable) stands.
    async fn judged(&self, e: StateError) -> StateError {
        if e.kind != StateFailureKind::Invalid {
            return e;
        }
        match self.probe().await {
            Ok(()) => e,
            Err(probe) => probe,
        }
    }

    /// An error for a protocol step that found the table in a state a retry may resolve.
    fn conflict(&self, operation: &'static str, message: &str) -> StateError {
        StateError {
            kind: StateFailureKind::Transient,
            operation,
            table: self.table.name().to_owned(),
            code: "Conflict".to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A string attribute.
pub(crate) fn s(value: &str) -> Attr {
    Attr::S(value.to_owned())
}

/// A number attribute.
pub(crate) fn n(value: i64) -> Attr {
    Attr::N(value)
}

/// The string attribute `name` of an item.
pub fn string<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(Attr::as_str)
}

/// The number attribute `name` of an item.
pub fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(Attr::as_i64)
}

/// Whether the boolean attribute `name` of an item is true.
pub fn flag(item: &Item, name: &str) -> bool {
    item.get(name) == Some(&Attr::Bool(true))
}

/// A key.
pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> ItemKey {
    ItemKey {
        pk: pk.into(),
        sk: sk.into(),
    }
}

/// An item holding just its key.
pub(crate) fn keyed(key: &ItemKey) -> Item {
    Item::from([("pk".to_owned(), s(&key.pk)), ("sk".to_owned(), s(&key.sk))])
}

/// The partition of a digest window: its state item and its events.
pub(crate) fn window_pk(route: &str, window: Window) -> String {
    format!("window#{route}#{}", window.start)
}

/// Sorts like the window's start (zero-padded), so a query finds the windows due in order.
pub(crate) fn window_sk(window: Window) -> String {
    format!("{:020}-{:020}", window.start.max(0), window.end.max(0))
}

/// The route's pending-list entry for a window.
pub(crate) fn pending_key(route: &str, window: Window) -> ItemKey {
    key(format!("pending#{route}"), window_sk(window))
}
