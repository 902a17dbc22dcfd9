//! The AWS calls of the operator commands (`dlq`, `send-test-event`, `topics`, `state`): SQS
//! administration in [`sqs`] (queue facts and depth, reading without consuming, moving messages
//! back), EventBridge in [`events`] (publishing, the rules that target a queue), SES contact
//! lists in [`ses`] and the state table in [`dynamodb`].
//!
//! The worker never uses this module; it talks through the [`Queue`](crate::ports::Queue) port.
//! Like the rest of `aws/`, it keeps SDK types inside and answers with its own: here one
//! [`AdminError`] for both services.

pub mod dynamodb;
pub mod events;
pub mod ses;
pub mod sqs;

pub use dynamodb::{claim_row, ClaimRow, Created, StateAdmin};
pub use events::{EventBus, NewEvent, Rule};
pub use ses::{ListTopic, SesAdmin};
pub use sqs::{Depth, MoveTask, MoveTaskStatus, MovedBatch, PeekedMessage, QueueFacts, SqsAdmin};

use aws_sdk_sqs::error::{BuildError, ProvideErrorMetadata, SdkError};

use super::{describe, error_code, AwsError};

/// A failed SQS or EventBridge call, with the service's error code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{operation} failed: {code}: {message}")]
pub struct AdminError {
    /// The operation, e.g. `StartMessageMoveTask`.
    pub operation: &'static str,
    /// The service's error code, or a short name for failures that never reached it.
    pub code: String,
    /// What went wrong, with its cause chain.
    pub message: String,
}

/// An operator reads the service's code and its own message, so both are kept apart.
impl AwsError for AdminError {
    fn call<E, R>(operation: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        Self {
            operation,
            code: error_code(err),
            message: service_message(err.message(), err),
        }
    }

    fn build(operation: &'static str, err: BuildError) -> Self {
        Self::local(operation, err)
    }
}

impl AdminError {
    /// A request refused before it was sent, or an answer this program cannot use.
    fn local(operation: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            operation,
            code: "InvalidRequest".to_owned(),
            message: message.to_string(),
        }
    }
}

/// The service's own message when it sent one (the SDK's rendering repeats the code and adds
/// debug output), else the error with its cause chain.
fn service_message(message: Option<&str>, err: &(dyn std::error::Error + 'static)) -> String {
    match message {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => describe(err),
    }
}
