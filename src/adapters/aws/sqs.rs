//! SQS adapter for the [`Queue`] port.

use aws_sdk_sqs::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use aws_sdk_sqs::Client;

use super::{batch, describe, error_code, AwsError};
use crate::ports::{Queue, QueueError, Receipt, ReceivedMessage, VisibilityChange};

/// A queue backed by one SQS queue URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// Wraps a client and the queue URL.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

/// The worker retries any failed call, so its error keeps the code and the cause chain as text.
impl AwsError for QueueError {
    fn call<E, R>(operation: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        QueueError {
            operation,
            message: format!("{}: {}", error_code(err), describe(err)),
        }
    }

    fn build(operation: &'static str, err: BuildError) -> Self {
        QueueError {
            operation,
            message: format!("cannot build request: {err}"),
        }
    }
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        max: u8,
        wait_seconds: u8,
        visibility_seconds: u32,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::from(max))
            .wait_time_seconds(i32::from(wait_seconds))
            .visibility_timeout(i32::try_from(visibility_seconds).unwrap_or(i32::MAX))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| QueueError::call("ReceiveMessage", &e))?;
        let messages = output
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(ReceivedMessage {
                    message_id: m.message_id()?.to_owned(),
                    receipt_handle: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count,
                })
            })
            .collect();
        Ok(messages)
    }

    async fn delete(&self, receipts: &[Receipt]) -> Result<Vec<String>, QueueError> {
        batch::delete(&self.client, &self.url, receipts).await
    }

    async fn change_visibility(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<String>, QueueError> {
        batch::change_visibility(&self.client, &self.url, changes).await
    }
}
