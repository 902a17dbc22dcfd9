//! What became of one message, and what the queue must be told about it.

use crate::ports::FailureKind;

/// The result of processing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every matched route was sent (some possibly on an earlier receive). Delete.
    Sent,
    /// No route matched: nothing is owed. Delete.
    Filtered,
    /// This event id was already handled within the dedupe window. Delete.
    Duplicate,
    /// Something failed; the message stays. Its fate follows from the kind.
    Failed {
        /// What to do about it.
        kind: FailureKind,
        /// Stable short name of the error (an SES code, `invalid_event`, `render`…).
        code: String,
        /// Why, for the log line.
        error: String,
    },
    /// Shutdown came before processing finished: release at once for another worker.
    Interrupted,
}

impl Outcome {
    /// Stable name for the `outcome` log field.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Filtered => "filtered",
            Self::Duplicate => "duplicate",
            Self::Failed { .. } => "failed",
            Self::Interrupted => "released",
        }
    }

    /// Whether the message is finished with and must be deleted.
    pub fn is_settled(&self) -> bool {
        matches!(self, Self::Sent | Self::Filtered | Self::Duplicate)
    }
}
