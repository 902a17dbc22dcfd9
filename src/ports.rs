//! The two ports the worker talks through: a [`Queue`] it receives from and acknowledges to, and a
//! [`Mailer`] it sends with. The AWS adapters in `aws/` implement them; tests put fault-injecting
//! or recording implementations in their place. No AWS SDK type crosses this boundary.

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

/// A future boxed so that its trait can be shared as a trait object (`dyn StateStore`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use crate::domain::digest::Window;

/// What a lease is held on: one route's email for one event, or one digest window of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKey<'a> {
    /// The email of `route` for the event `event_id`.
    Send {
        /// EventBridge event id.
        event_id: &'a str,
        /// Route name.
        route: &'a str,
    },
    /// The digest of `route` for `window`.
    Window {
        /// Route name.
        route: &'a str,
        /// The window.
        window: Window,
    },
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the lease now. `takeover`: it took over an expired lease of another
    /// owner (that owner died or stalled mid-send).
    Won {
        /// Whether another owner's expired lease was taken.
        takeover: bool,
    },
    /// Finished already: sent, recorded in a digest, or (a window) given up.
    Done,
    /// Another owner's lease is live until this time (Unix milliseconds).
    Held {
        /// When the lease ends unless renewed.
        until_ms: i64,
    },
}

/// How a claimed piece of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish<'a> {
    /// SES accepted the email, with this message id.
    Sent {
        /// The SES message id.
        message_id: &'a str,
    },
    /// It can never be sent (a digest that SES refuses or that cannot render).
    Failed {
        /// Why.
        error: &'a str,
    },
}

/// The answer to recording an event into a digest window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded in this window.
    New,
    /// This (event, route) was recorded before, in this window or an earlier one.
    Already,
    /// The window is being sent or was sent (or is full): record in a later one.
    WindowClosed,
}

/// What a failed state call means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFailureKind {
    /// Throttling, 5xx, timeouts, network: try the message again later.
    Transient,
    /// The table is missing, access is denied, or its key schema is not ours: nothing works
    /// until an operator acts, so the worker stops receiving.
    Unusable,
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

/// State shared by every task of the service, like a DynamoDB table: leases that make one
/// email per (event, route) and one digest per window, and the events of open digest windows.
/// Times are Unix milliseconds, windows Unix seconds.
pub trait StateStore: Send + Sync + 'static {
    /// Takes the lease on `key` until `now_ms + lease_ms`, unless the work is done or another
    /// owner's lease is live.
    fn claim<'a>(
        &'a self,
        key: LeaseKey<'a>,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<Claim, StateError>>;

    /// Extends the caller's lease to `until_ms`; false if the caller no longer holds it.
    fn renew<'a>(
        &'a self,
        key: LeaseKey<'a>,
        owner: &'a str,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Marks the claimed work finished, for good (a finished window leaves the pending list).
    fn finish<'a>(
        &'a self,
        key: LeaseKey<'a>,
        owner: &'a str,
        finish: Finish<'a>,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// Gives the lease up after a failure that a retry may cure, so the next attempt, here or
    /// in another task, need not wait for it to expire. A window stays closed to new events.
    fn release<'a>(
        &'a self,
        key: LeaseKey<'a>,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// Records `entry` (JSON) for the event in the route's window, once per (event, route):
    /// a redelivered event is `Already` recorded (in this window or the one it went to first),
    /// and an event is never in two windows. `WindowClosed`: try the next window.
    fn record<'a>(
        &'a self,
        route: &'a str,
        window: Window,
        event_id: &'a str,
        entry: &'a str,
    ) -> BoxFuture<'a, Result<Recorded, StateError>>;

    /// The route's windows holding events and not sent yet that end at or before `ended_by`
    /// (Unix seconds), oldest first.
    fn pending_windows<'a>(
        &'a self,
        route: &'a str,
        ended_by: i64,
    ) -> BoxFuture<'a, Result<Vec<Window>, StateError>>;

    /// Closes the window to new entries and returns every entry recorded in it. Idempotent.
    fn close_window<'a>(
        &'a self,
        route: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Vec<String>, StateError>>;

    /// One cheap read, to learn whether an unusable table works again.
    fn probe(&self) -> BoxFuture<'_, Result<(), StateError>>;
}
