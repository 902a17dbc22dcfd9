//! The queue the worker receives from and acknowledges to, like SQS.

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
