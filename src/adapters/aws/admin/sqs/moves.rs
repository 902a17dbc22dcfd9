//! Moving messages from a dead-letter queue back: an SQS message move task
//! (`StartMessageMoveTask`, then its progress), or by hand, receive → send → delete (for when
//! the task is refused or fails: `dlq redrive` chooses).

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::SqsAdmin;
use crate::adapters::aws::admin::AdminError;
use crate::adapters::aws::{batch, AwsError};
use crate::ports::Receipt;

/// How far a message move task got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTask {
    /// Where it is.
    pub status: MoveTaskStatus,
    /// `ApproximateNumberOfMessagesMoved`.
    pub moved: u64,
    /// `ApproximateNumberOfMessagesToMove`, when SQS says.
    pub to_move: Option<u64>,
}

/// The state of a message move task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveTaskStatus {
    /// Still moving.
    Running,
    /// Done: everything that was there when it started was moved.
    Completed,
    /// Stopped with this `FailureReason`.
    Failed(String),
    /// Cancelled (by `CancelMessageMoveTask`).
    Cancelled,
    /// A status this program does not know.
    Other(String),
}

/// What one receive → send → delete round moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MovedBatch {
    /// Messages received from the source.
    pub received: usize,
    /// Sent to the destination and deleted from the source.
    pub moved: usize,
    /// Not sent; released in the source (visibility 0), so they stay there.
    pub send_failed: usize,
    /// Sent but not deleted from the source: they will be there twice.
    pub delete_failed: usize,
}

impl SqsAdmin {
    /// Starts an SQS message move task from a DLQ to a queue; returns its task handle.
    ///
    /// # Errors
    /// SQS refused (not a DLQ, a task already running, not supported, no permission).
    pub async fn start_move_task(
        &self,
        source_arn: &str,
        destination_arn: &str,
    ) -> Result<String, AdminError> {
        let out = self
            .client
            .start_message_move_task()
            .source_arn(source_arn)
            .destination_arn(destination_arn)
            .send()
            .await
            .map_err(|e| AdminError::call("StartMessageMoveTask", &e))?;
        Ok(out.task_handle().unwrap_or_default().to_owned())
    }

    /// The most recent move task from `source_arn` (the one just started, when there is only
    /// one at a time, as SQS enforces).
    ///
    /// # Errors
    /// The list call failed.
    pub async fn latest_move_task(&self, source_arn: &str) -> Result<Option<MoveTask>, AdminError> {
        let out = self
            .client
            .list_message_move_tasks()
            .source_arn(source_arn)
            .max_results(1)
            .send()
            .await
            .map_err(|e| AdminError::call("ListMessageMoveTasks", &e))?;
        Ok(out.results().first().map(|task| {
            let status = match task.status().unwrap_or_default() {
                "RUNNING" | "CREATED" => MoveTaskStatus::Running,
                "COMPLETED" => MoveTaskStatus::Completed,
                "FAILED" => MoveTaskStatus::Failed(
                    task.failure_reason()
                        .unwrap_or("no FailureReason given")
                        .to_owned(),
                ),
                "CANCELLED" | "CANCELLING" => MoveTaskStatus::Cancelled,
                other => MoveTaskStatus::Other(other.to_owned()),
            };
            MoveTask {
                status,
                moved: u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0),
                to_move: task
                    .approximate_number_of_messages_to_move()
                    .and_then(|n| u64::try_from(n).ok()),
            }
        }))
    }

    /// One round of moving by hand: receive up to `max` (1..=10) messages from `from_url`
    /// (hidden for `visibility_seconds`), send each body with its message attributes to `to_url`, delete
    /// what was sent, release what was not.
    ///
    /// # Errors
    /// A call failed as a whole. Messages received but not yet sent reappear in the source
    /// after `visibility_seconds`.
    pub async fn move_batch(
        &self,
        from_url: &str,
        to_url: &str,
        max: u8,
        visibility_seconds: u32,
    ) -> Result<MovedBatch, AdminError> {
        let out = self
            .client
            .receive_message()
            .queue_url(from_url)
            .max_number_of_messages(i32::from(max.clamp(1, 10)))
            .wait_time_seconds(1)
            .visibility_timeout(i32::try_from(visibility_seconds).unwrap_or(i32::MAX))
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| AdminError::call("ReceiveMessage", &e))?;
        let messages = out.messages();
        let mut round = MovedBatch {
            received: messages.len(),
            ..MovedBatch::default()
        };
        if messages.is_empty() {
            return Ok(round);
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body().unwrap_or_default())
                    .set_message_attributes(m.message_attributes().cloned())
                    .build()
                    .map_err(|e| AdminError::local("SendMessageBatch", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sent = self
            .client
            .send_message_batch()
            .queue_url(to_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AdminError::call("SendMessageBatch", &e))?;
        let receipt = |id: &str| -> Option<Receipt> {
            let message = messages.get(id.parse::<usize>().ok()?)?;
            Some(Receipt {
                message_id: message.message_id()?.to_owned(),
                receipt_handle: message.receipt_handle()?.to_owned(),
            })
        };
        let sent_receipts: Vec<Receipt> = sent
            .successful()
            .iter()
            .filter_map(|e| receipt(e.id()))
            .collect();
        let unsent: Vec<Receipt> = sent
            .failed()
            .iter()
            .filter_map(|e| receipt(e.id()))
            .collect();
        round.send_failed = sent.failed().len();
        if !unsent.is_empty() {
            // Best effort: if this fails too, they reappear after the visibility timeout anyway.
            let _ = self.release(from_url, &unsent).await;
        }
        if sent_receipts.is_empty() {
            return Ok(round);
        }
        let deleted: Result<Vec<String>, AdminError> =
            batch::delete(&self.client, from_url, &sent_receipts).await;
        round.delete_failed = deleted.map_or(sent_receipts.len(), |failed| failed.len());
        round.moved = sent_receipts.len() - round.delete_failed;
        Ok(round)
    }
}
