//! The ports the worker talks through, one file each: a [`Queue`] it receives from and
//! acknowledges to, a [`Mailer`] it sends with, a [`PackageStore`] it reads package manifests
//! from, the [`StateTable`] every task shares (the state protocol in `worker::state` is written
//! over it), and the [`DetailsSource`] the pipeline asks for an event's package details. The
//! adapters in `adapters/aws` implement them against AWS, those in `adapters/memory` in memory
//! (for `render --manifest`, tests, benches and the simulation). No AWS SDK type crosses this
//! boundary.
//!
//! Every port is a trait with `async fn`s (written `fn … -> impl Future + Send`, so that callers
//! may rely on `Send`). The two that are held as trait objects, the state table and the details
//! source, have a dyn-compatible twin ([`DynStateTable`], [`DynDetailsSource`]) implemented for
//! every implementation: adapters write plain `async fn`s, and the futures are boxed once, there.
//! (Not the `async-trait` crate: it would box every call, also on a concrete type, and show its
//! expanded signatures in the docs, for what these two small twins do.)

mod details;
mod mailer;
mod package_store;
mod queue;
mod state_table;

pub use details::{DetailsSource, DetailsWanted, DynDetailsSource};
pub use mailer::{AccountStatus, Email, FailureKind, ListManagement, Mailer, SendError};
pub use package_store::{
    ByteRange, ObjectRef, PackageStore, ReadSink, StoreError, StoreFailureKind,
};
pub use queue::{Queue, QueueError, Receipt, ReceivedMessage, VisibilityChange};
pub use state_table::{
    Attr, Changes, Cond, DynStateTable, Item, ItemKey, SortKeys, StateError, StateFailureKind,
    StateTable, Update, Written, MAX_TRANSACTION_WRITES,
};

/// A future boxed so that a port can be shared as a trait object (`dyn DynStateTable`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
