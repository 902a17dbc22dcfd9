//! What sends the emails, like SES v2, and how its failures are classified.

use std::future::Future;

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
