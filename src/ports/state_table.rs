//! The table every task shares, like DynamoDB: the state protocol (`worker::state`) is written
//! once over it.

use std::future::Future;

use super::BoxFuture;

/// What a failed state call means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFailureKind {
    /// Throttling, 5xx, timeouts, network: try the message again later.
    Transient,
    /// The table is missing, access is denied, or its key schema is not ours: nothing works
    /// until an operator acts, so the worker stops receiving.
    Unusable,
    /// The table refused this one request as invalid (a key over DynamoDB's size limit, say)
    /// while it answers others: the message's fault, not the table's.
    Invalid,
}

/// Why a state call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{operation} on table {table}: {code}: {message}")]
pub struct StateError {
    /// What it means.
    pub kind: StateFailureKind,
    /// The operation, e.g. `PutItem`.
    pub operation: &'static str,
    /// The table.
    pub table: String,
    /// The service's error code, or a short name for failures that never reached it.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// One attribute of a state-table item: the three kinds the state protocol stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    /// A string.
    S(String),
    /// A whole number.
    N(i64),
    /// A boolean.
    Bool(bool),
}

impl Attr {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::S(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::N(n) => Some(*n),
            _ => None,
        }
    }
}

/// One item: its attributes by name, the key's `pk` and `sk` (strings) among them.
pub type Item = std::collections::BTreeMap<String, Attr>;

/// The primary key of an item: partition key `pk`, sort key `sk`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

/// A condition on the item a write is about, checked atomically with the write: the subset of
/// DynamoDB's condition expressions the state protocol needs. As in DynamoDB, a comparison with
/// an attribute the item lacks (or with an item that does not exist) is false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// The item does not exist.
    Absent,
    /// The attribute equals the value.
    Eq(&'static str, Attr),
    /// The number attribute is less than the number.
    Lt(&'static str, i64),
    /// The item lacks the attribute (or does not exist).
    Missing(&'static str),
    /// Every condition holds.
    All(Vec<Cond>),
    /// At least one condition holds.
    Any(Vec<Cond>),
}

/// Changes to one item, made whole or not at all; the item is created if it does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Attributes set to these values.
    pub set: Vec<(&'static str, Attr)>,
    /// Attributes removed.
    pub remove: Vec<&'static str>,
}

/// The answer to a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The write was made; the item as it was before (None: it did not exist).
    Applied(Option<Item>),
    /// The condition failed and nothing was written; the item as it is.
    Refused(Option<Item>),
}

/// One write of a transaction: `changes` to the item under `key` if `cond` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The item.
    pub key: ItemKey,
    /// What to change.
    pub changes: Changes,
    /// What must hold of the item as it is.
    pub cond: Option<Cond>,
}

/// DynamoDB's limit on the writes of one transaction (`TransactWriteItems`).
pub const MAX_TRANSACTION_WRITES: usize = 100;

/// Which items of a partition a query returns, by sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKeys<'a> {
    /// Sort keys that start with this.
    Prefix(&'a str),
    /// Sort keys that sort before this.
    Below(&'a str),
}

/// A table of items shared by every task of the service, like DynamoDB: single-item reads and
/// conditional writes, each atomic and strongly consistent, and consistent queries of one
/// partition. The state protocol (`crate::worker::state`) is written once over it; the DynamoDB
/// adapter and the in-memory table implement it and pass one contract suite.
///
/// Implement this trait (with `async fn`s); the protocol holds a table as a [`DynStateTable`],
/// which every implementation is.
pub trait StateTable: Send + Sync + 'static {
    /// The table's name, for errors and logs.
    fn name(&self) -> &str;

    /// The item under `key`, read consistently.
    fn get(&self, key: &ItemKey) -> impl Future<Output = Result<Option<Item>, StateError>> + Send;

    /// The items under `keys` that exist, read consistently, in no particular order.
    fn get_many(
        &self,
        keys: &[ItemKey],
    ) -> impl Future<Output = Result<Vec<Item>, StateError>> + Send;

    /// Writes `item` whole (replacing any item under its key) if `cond` holds.
    fn put(
        &self,
        item: Item,
        cond: Option<&Cond>,
    ) -> impl Future<Output = Result<Written, StateError>> + Send;

    /// Applies `changes` to the item under `key` if `cond` holds.
    fn update(
        &self,
        key: &ItemKey,
        changes: &Changes,
        cond: Option<&Cond>,
    ) -> impl Future<Output = Result<Written, StateError>> + Send;

    /// Applies every update, or none of them: `Ok(false)` when a condition failed or the
    /// transaction collided with another one on an item (nothing was written then). One call
    /// for many items, billed at two write units per started KiB of each item. At most
    /// [`MAX_TRANSACTION_WRITES`] updates, each on a different item; more is invalid.
    fn update_all(
        &self,
        updates: &[Update],
    ) -> impl Future<Output = Result<bool, StateError>> + Send;

    /// Deletes the item under `key` if `cond` holds.
    fn delete(
        &self,
        key: &ItemKey,
        cond: Option<&Cond>,
    ) -> impl Future<Output = Result<Written, StateError>> + Send;

    /// Every item of partition `pk` whose sort key is in `keys`, in sort-key order, read
    /// consistently.
    fn query(
        &self,
        pk: &str,
        keys: SortKeys<'_>,
    ) -> impl Future<Output = Result<Vec<Item>, StateError>> + Send;

    /// How many items of partition `pk` have a sort key in `keys` (without reading them out).
    fn count(
        &self,
        pk: &str,
        keys: SortKeys<'_>,
    ) -> impl Future<Output = Result<usize, StateError>> + Send;
}

/// A [`StateTable`] as a trait object (`Arc<dyn DynStateTable>`), so that the state protocol,
/// the pipeline and the worker need no table type parameter. Every `StateTable` is one: the
/// methods are the same, each future boxed here, once.
pub trait DynStateTable: Send + Sync + 'static {
    /// [`StateTable::name`].
    fn name(&self) -> &str;
    /// [`StateTable::get`].
    fn get<'a>(&'a self, key: &'a ItemKey) -> BoxFuture<'a, Result<Option<Item>, StateError>>;
    /// [`StateTable::get_many`].
    fn get_many<'a>(&'a self, keys: &'a [ItemKey]) -> BoxFuture<'a, Result<Vec<Item>, StateError>>;
    /// [`StateTable::put`].
    fn put<'a>(
        &'a self,
        item: Item,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>>;
    /// [`StateTable::update`].
    fn update<'a>(
        &'a self,
        key: &'a ItemKey,
        changes: &'a Changes,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>>;
    /// [`StateTable::update_all`].
    fn update_all<'a>(&'a self, updates: &'a [Update]) -> BoxFuture<'a, Result<bool, StateError>>;
    /// [`StateTable::delete`].
    fn delete<'a>(
        &'a self,
        key: &'a ItemKey,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>>;
    /// [`StateTable::query`].
    fn query<'a>(
        &'a self,
        pk: &'a str,
        keys: SortKeys<'a>,
    ) -> BoxFuture<'a, Result<Vec<Item>, StateError>>;
    /// [`StateTable::count`].
    fn count<'a>(
        &'a self,
        pk: &'a str,
        keys: SortKeys<'a>,
    ) -> BoxFuture<'a, Result<usize, StateError>>;
}

impl<T: StateTable> DynStateTable for T {
    fn name(&self) -> &str {
        StateTable::name(self)
    }
    fn get<'a>(&'a self, key: &'a ItemKey) -> BoxFuture<'a, Result<Option<Item>, StateError>> {
        Box::pin(StateTable::get(self, key))
    }
    fn get_many<'a>(&'a self, keys: &'a [ItemKey]) -> BoxFuture<'a, Result<Vec<Item>, StateError>> {
        Box::pin(StateTable::get_many(self, keys))
    }
    fn put<'a>(
        &'a self,
        item: Item,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>> {
        Box::pin(StateTable::put(self, item, cond))
    }
    fn update<'a>(
        &'a self,
        key: &'a ItemKey,
        changes: &'a Changes,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>> {
        Box::pin(StateTable::update(self, key, changes, cond))
    }
    fn update_all<'a>(&'a self, updates: &'a [Update]) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(StateTable::update_all(self, updates))
    }
    fn delete<'a>(
        &'a self,
        key: &'a ItemKey,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>> {
        Box::pin(StateTable::delete(self, key, cond))
    }
    fn query<'a>(
        &'a self,
        pk: &'a str,
        keys: SortKeys<'a>,
    ) -> BoxFuture<'a, Result<Vec<Item>, StateError>> {
        Box::pin(StateTable::query(self, pk, keys))
    }
    fn count<'a>(
        &'a self,
        pk: &'a str,
        keys: SortKeys<'a>,
    ) -> BoxFuture<'a, Result<usize, StateError>> {
        Box::pin(StateTable::count(self, pk, keys))
    }
}
