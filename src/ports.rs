//! The ports the worker talks through: a [`Queue`] it receives from and acknowledges to, a
//! [`Mailer`] it sends with, a [`PackageStore`] it reads package manifests from, and a
//! [`StateTable`] every task shares (the state protocol in `crate::state` is written over it).
//! The AWS adapters in `aws/` implement them; in-memory implementations stand in for tests,
//! benches and the simulation. No AWS SDK type crosses this boundary.

use std::future::Future;

/// A message as received, with what the worker needs to acknowledge or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// SQS message id (stable across receives).
    pub message_id: String,
    /// Receipt handle of this receive; needed to delete or change visibility.
    pub receipt_handle: String,
    /// The body, as sent.
    pub body: String,
    /// How many times SQS has handed this message out, this receive included.
    pub receive_count: u32,
}

impl ReceivedMessage {
    /// What acknowledging or releasing this receive of the message takes.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            message_id: self.message_id.clone(),
            receipt_handle: self.receipt_handle.clone(),
        }
    }
}

/// One receive of one message: the handle SQS acts on, and the id failures are reported by
/// (a handle is opaque and changes with every receive; the id names the message in logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message's id.
    pub message_id: String,
    /// The receipt handle of the current receive.
    pub receipt_handle: String,
}

/// A new visibility timeout for one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityChange {
    /// Which receive of which message.
    pub receipt: Receipt,
    /// Seconds until the message is visible again; 0 releases it now.
    pub seconds: u32,
}

/// Why a queue call failed. The worker does not distinguish kinds: it retries the call later.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{operation} failed: {message}")]
pub struct QueueError {
    /// The SQS operation, e.g. `ReceiveMessage`.
    pub operation: &'static str,
    /// What went wrong, with the service's error code when there is one.
    pub message: String,
}

/// A queue of message bodies with at-least-once delivery, like SQS.
pub trait Queue: Send + Sync + 'static {
    /// Long-polls for up to `max` messages, hiding them for `visibility_seconds`.
    fn receive(
        &self,
        max: u8,
        wait_seconds: u8,
        visibility_seconds: u32,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send;

    /// Deletes messages by receipt handle; returns the ids of those that could not be deleted.
    fn delete(
        &self,
        receipts: &[Receipt],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;

    /// Changes visibility timeouts; returns the ids of those that could not be changed.
    fn change_visibility(
        &self,
        changes: &[VisibilityChange],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;
}

/// One email, fully rendered and addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Sender.
    pub from: String,
    /// To.
    pub to: Vec<String>,
    /// Cc.
    pub cc: Vec<String>,
    /// Bcc.
    pub bcc: Vec<String>,
    /// Reply-To.
    pub reply_to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// HTML part.
    pub html: String,
    /// Plain-text part.
    pub text: String,
    /// Name/value tags for SES event publishing (route, event id).
    pub tags: Vec<(String, String)>,
    /// The SES contact list and topic the email belongs to: SES then adds the one-click
    /// unsubscribe headers and skips recipients who left the topic.
    pub list: Option<ListManagement>,
}

/// An SES v2 contact list and one of its topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListManagement {
    /// Contact list name (`ses.contact_list`).
    pub contact_list: String,
    /// Topic name (the route's `topic`).
    pub topic: String,
}

/// What the worker should do about a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Network, timeout or 5xx: try the message again later.
    Transient,
    /// Transient, but the request had reached the provider, which may have accepted the email
    /// before the answer was lost or went wrong (a timeout, a connection closed after sending,
    /// a 5xx): the retry may send it a second time. Handled as transient, counted as a possible
    /// duplicate (SES takes no idempotency key, so nothing can tell).
    Ambiguous,
    /// The service asks us to slow down: try later, and slow the sending rate.
    Throttled,
    /// Retrying cannot help this message (rejected address, bad request): send it to the DLQ.
    Permanent,
    /// The whole account cannot send (paused, suspended): stop consuming, keep the messages.
    AccountPaused,
    /// The shared state table cannot be used (missing, access denied): stop consuming, keep the
    /// messages, rather than send without the one-email guarantee or drain them to the DLQ.
    StateUnavailable,
}

impl FailureKind {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Ambiguous => "ambiguous",
            Self::Throttled => "throttled",
            Self::Permanent => "permanent",
            Self::AccountPaused => "account_paused",
            Self::StateUnavailable => "state_unavailable",
        }
    }
}

/// Why a send failed, classified by what the caller should do.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{code}: {message}")]
pub struct SendError {
    /// What to do about it.
    pub kind: FailureKind,
    /// The service's error code (e.g. `MessageRejected`) or a short name for local failures.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

/// What the provider says about the sending account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountStatus {
    /// Whether the account may send now (false while paused or suspended).
    pub sending_enabled: bool,
    /// Most emails per second the account may send, when the provider says.
    pub max_send_rate: Option<f64>,
}

/// Something that sends emails, like SES.
pub trait Mailer: Send + Sync + 'static {
    /// Sends one email; returns the provider's message id.
    fn send(&self, email: &Email) -> impl Future<Output = Result<String, SendError>> + Send;

    /// Asks about the account without sending: used to discover the send rate at start-up and
    /// to probe a paused account without spending a message's receive count.
    fn account(&self) -> impl Future<Output = Result<AccountStatus, SendError>> + Send;
}

/// A shared store is a store (the tests and benches keep a handle on the one a reader uses).
impl<S: PackageStore> PackageStore for std::sync::Arc<S> {
    fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::read(self, object, max_bytes, sink)
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        S::list(self, bucket, prefix, max_keys)
    }
}

pub use crate::domain::revision::ObjectRef;

/// What a failed store call means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailureKind {
    /// Throttling, 5xx, timeouts, network: try the message again later.
    Transient,
    /// The object or the bucket does not exist.
    Missing,
    /// The service refused access.
    Denied,
    /// Any other answer: asking again will not change it.
    Other,
}

impl StoreFailureKind {
    /// Stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Missing => "missing",
            Self::Denied => "denied",
            Self::Other => "other",
        }
    }
}

/// Why a store call failed, with the object it was about.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{operation} s3://{bucket}/{key}: {code}: {message}")]
pub struct StoreError {
    /// What it means for the message.
    pub kind: StoreFailureKind,
    /// The operation, e.g. `GetObject`.
    pub operation: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key, or the prefix of a listing.
    pub key: String,
    /// The service's error code, or a short name for failures that never reached it.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// Where a [`PackageStore`] hands an object's bytes. A closure taking chunks is one.
pub trait ReadSink: Send {
    /// The bytes the read will hand over, before the first chunk, when the store knows them
    /// (a reader sizes its memory by it). False: stop, nothing more is wanted.
    fn size(&mut self, _bytes: u64) -> bool {
        true
    }

    /// The next chunk. False: stop, nothing more is wanted.
    fn chunk(&mut self, chunk: &[u8]) -> bool;
}

impl<F: FnMut(&[u8]) -> bool + Send> ReadSink for F {
    fn chunk(&mut self, chunk: &[u8]) -> bool {
        self(chunk)
    }
}

/// Where Quilt keeps packages beside the data, like S3: manifests, revision pointers and the
/// files themselves. Read only.
pub trait PackageStore: Send + Sync + 'static {
    /// Reads an object (its first `max_bytes` when given), handing its bytes to `sink` as they
    /// arrive, so a large object is never held whole: first its size, when the store knows it
    /// (S3: the response's `Content-Length`), then its chunks. `sink` returns false to stop.
    fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The keys under `prefix`, in byte order, at most `max_keys` of them.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// A future boxed so that its trait can be shared as a trait object (`dyn StateTable`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
/// partition. The state protocol (`crate::state`) is written once over it; the DynamoDB
/// adapter and the in-memory table implement it and pass one contract suite.
pub trait StateTable: Send + Sync + 'static {
    /// The table's name, for errors and logs.
    fn name(&self) -> &str;

    /// The item under `key`, read consistently.
    fn get<'a>(&'a self, key: &'a ItemKey) -> BoxFuture<'a, Result<Option<Item>, StateError>>;

    /// The items under `keys` that exist, read consistently, in no particular order.
    fn get_many<'a>(&'a self, keys: &'a [ItemKey]) -> BoxFuture<'a, Result<Vec<Item>, StateError>>;

    /// Writes `item` whole (replacing any item under its key) if `cond` holds.
    fn put<'a>(
        &'a self,
        item: Item,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>>;

    /// Applies `changes` to the item under `key` if `cond` holds.
    fn update<'a>(
        &'a self,
        key: &'a ItemKey,
        changes: &'a Changes,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>>;

    /// Deletes the item under `key` if `cond` holds.
    fn delete<'a>(
        &'a self,
        key: &'a ItemKey,
        cond: Option<&'a Cond>,
    ) -> BoxFuture<'a, Result<Written, StateError>>;

    /// Every item of partition `pk` whose sort key is in `keys`, in sort-key order, read
    /// consistently.
    fn query<'a>(
        &'a self,
        pk: &'a str,
        keys: SortKeys<'a>,
    ) -> BoxFuture<'a, Result<Vec<Item>, StateError>>;

    /// How many items of partition `pk` have a sort key in `keys` (without reading them out).
    fn count<'a>(
        &'a self,
        pk: &'a str,
        keys: SortKeys<'a>,
    ) -> BoxFuture<'a, Result<usize, StateError>>;
}
