//! SQS adapter for the [`Queue`] port.

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use aws_sdk_sqs::Client;

use super::{describe, error_code};
use crate::ports::{Queue, QueueError, ReceivedMessage, VisibilityChange};

/// SQS's limit on entries per batch call.
const BATCH_LIMIT: usize = 10;

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

fn queue_error<E, R>(
    operation: &'static str,
    err: &aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    QueueError {
        operation,
        message: format!("{}: {}", error_code(err), describe(err)),
    }
}

fn build_error(operation: &'static str, err: impl std::fmt::Display) -> QueueError {
    QueueError {
        operation,
        message: format!("cannot build request: {err}"),
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
            .map_err(|e| queue_error("ReceiveMessage", &e))?;
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

    async fn delete(&self, messages: &[(String, String)]) -> Result<Vec<String>, QueueError> {
        let mut failed = Vec::new();
        for chunk in messages.chunks(BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, receipt))| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| build_error("DeleteMessageBatch", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| queue_error("DeleteMessageBatch", &e))?;
            failed.extend(failed_ids(chunk, output.failed().iter().map(|f| f.id())));
        }
        Ok(failed)
    }

    async fn change_visibility(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<String>, QueueError> {
        let mut failed = Vec::new();
        for chunk in changes.chunks(BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, change)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&change.receipt_handle)
                        .visibility_timeout(i32::try_from(change.seconds).unwrap_or(i32::MAX))
                        .build()
                        .map_err(|e| build_error("ChangeMessageVisibilityBatch", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| queue_error("ChangeMessageVisibilityBatch", &e))?;
            let ids: Vec<(String, String)> = chunk
                .iter()
                .map(|c| (c.message_id.clone(), c.receipt_handle.clone()))
                .collect();
            failed.extend(failed_ids(&ids, output.failed().iter().map(|f| f.id())));
        }
        Ok(failed)
    }
}

/// Batch entries are identified by their index in the chunk; map failures back to message ids.
fn failed_ids<'a>(
    chunk: &'a [(String, String)],
    failed_entries: impl Iterator<Item = &'a str> + 'a,
) -> impl Iterator<Item = String> + 'a {
    failed_entries.filter_map(|id| {
        let index: usize = id.parse().ok()?;
        chunk.get(index).map(|(message_id, _)| message_id.clone())
    })
}
