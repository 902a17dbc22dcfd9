//! SQS and EventBridge calls for the operator commands (`dlq`, `send-test-event`): queue
//! attributes and depth, the dead-letter queue behind a queue, reading without consuming,
//! moving messages back (`StartMessageMoveTask`, or receive → send → delete), publishing events.
//!
//! The worker never uses this module; it talks through the [`Queue`](crate::ports::Queue) port.
//! Like the rest of `aws/`, it keeps SDK types inside and answers with its own.

use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use aws_sdk_sqs::error::ProvideErrorMetadata;

use super::{describe, error_code};

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

fn sdk_error<E, R>(operation: &'static str, err: &aws_sdk_sqs::error::SdkError<E, R>) -> AdminError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    AdminError {
        operation,
        code: error_code(err),
        message: service_message(err.message(), err),
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

fn local_error(operation: &'static str, message: impl std::fmt::Display) -> AdminError {
    AdminError {
        operation,
        code: "InvalidRequest".to_owned(),
        message: message.to_string(),
    }
}

/// What the operator commands need to know about a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFacts {
    /// The queue's ARN.
    pub arn: String,
    /// `deadLetterTargetArn` of its redrive policy, if it has one.
    pub dead_letter_arn: Option<String>,
    /// `maxReceiveCount` of its redrive policy, if it has one.
    pub max_receive_count: Option<u32>,
}

/// Approximate message counts of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// `ApproximateNumberOfMessages`: waiting to be received.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: received, not yet deleted or released.
    pub in_flight: u64,
}

impl Depth {
    /// Visible plus in flight.
    pub fn total(self) -> u64 {
        self.visible + self.in_flight
    }
}

/// A message as read by an operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekedMessage {
    /// SQS message id; kept when SQS moves a message to its DLQ, so it matches the worker's
    /// `message_id` log field.
    pub message_id: String,
    /// Receipt handle of this receive.
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// `ApproximateReceiveCount`, this receive included.
    pub receive_count: u32,
    /// `SentTimestamp`: when the message was first sent (to the source queue).
    pub sent_at: Option<SystemTime>,
    /// `DeadLetterQueueSourceArn`: the queue SQS moved it from, when it did.
    pub dead_letter_source: Option<String>,
    /// `ERROR_CODE: ERROR_MESSAGE` message attributes: set by EventBridge when a rule parks an
    /// event it could not deliver to its target in this queue.
    pub rule_error: Option<String>,
}

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

/// SQS calls of the operator commands.
#[derive(Debug, Clone)]
pub struct SqsAdmin {
    client: aws_sdk_sqs::Client,
}

impl SqsAdmin {
    /// Wraps a client.
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Self { client }
    }

    /// The queue's ARN and redrive policy.
    ///
    /// # Errors
    /// The queue cannot be read, or its redrive policy is not valid JSON.
    pub async fn facts(&self, url: &str) -> Result<QueueFacts, AdminError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", &e))?;
        let attributes = out.attributes();
        let arn = attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| local_error("GetQueueAttributes", "the queue has no QueueArn"))?;
        let policy = attributes.and_then(|a| a.get(&QueueAttributeName::RedrivePolicy));
        let (dead_letter_arn, max_receive_count) = match policy {
            Some(text) if !text.trim().is_empty() => {
                let policy: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                    local_error(
                        "GetQueueAttributes",
                        format!("RedrivePolicy is not JSON: {e}"),
                    )
                })?;
                let count = match &policy["maxReceiveCount"] {
                    serde_json::Value::Number(n) => n.as_u64(),
                    serde_json::Value::String(s) => s.parse().ok(),
                    _ => None,
                };
                (
                    policy["deadLetterTargetArn"].as_str().map(str::to_owned),
                    count.and_then(|c| u32::try_from(c).ok()),
                )
            }
            _ => (None, None),
        };
        Ok(QueueFacts {
            arn,
            dead_letter_arn,
            max_receive_count,
        })
    }

    /// The URL of the queue with this ARN.
    ///
    /// # Errors
    /// Not an SQS ARN, or the queue cannot be found.
    pub async fn url_of(&self, arn: &str) -> Result<String, AdminError> {
        let parts: Vec<&str> = arn.split(':').collect();
        let [_, _, "sqs", _, account, name] = parts.as_slice() else {
            return Err(local_error(
                "GetQueueUrl",
                format!("{arn:?} is not an SQS queue ARN"),
            ));
        };
        let out = self
            .client
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueUrl", &e))?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| local_error("GetQueueUrl", "no QueueUrl in the answer"))
    }

    /// Approximate counts of waiting and in-flight messages.
    ///
    /// # Errors
    /// The queue cannot be read.
    pub async fn depth(&self, url: &str) -> Result<Depth, AdminError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", &e))?;
        let get = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Depth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }

    /// Receives up to `max` (1..=10) messages, hiding them for `visibility_seconds` (0 leaves
    /// them visible: a peek).
    ///
    /// # Errors
    /// The receive failed.
    pub async fn receive(
        &self,
        url: &str,
        max: u8,
        wait_seconds: u8,
        visibility_seconds: u32,
    ) -> Result<Vec<PeekedMessage>, AdminError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::from(max.clamp(1, 10)))
            .wait_time_seconds(i32::from(wait_seconds.min(20)))
            .visibility_timeout(i32::try_from(visibility_seconds).unwrap_or(i32::MAX))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", &e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let attribute = |name: MessageSystemAttributeName| {
                    m.attributes().and_then(|a| a.get(&name)).cloned()
                };
                let sent_at = attribute(MessageSystemAttributeName::SentTimestamp)
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
                Some(PeekedMessage {
                    message_id: m.message_id()?.to_owned(),
                    receipt_handle: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    sent_at,
                    dead_letter_source: attribute(
                        MessageSystemAttributeName::DeadLetterQueueSourceArn,
                    ),
                    rule_error: rule_error(m.message_attributes()),
                })
            })
            .collect())
    }

    /// Makes received messages visible again at once; returns how many SQS refused.
    ///
    /// # Errors
    /// The call failed as a whole.
    pub async fn release(&self, url: &str, receipts: &[String]) -> Result<usize, AdminError> {
        let mut failed = 0;
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| local_error("ChangeMessageVisibilityBatch", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("ChangeMessageVisibilityBatch", &e))?;
            failed += out.failed().len();
        }
        Ok(failed)
    }

    /// Sends one message; returns its SQS message id.
    ///
    /// # Errors
    /// The send failed.
    pub async fn send(&self, url: &str, body: &str) -> Result<String, AdminError> {
        let out = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| sdk_error("SendMessage", &e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

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
            .map_err(|e| sdk_error("StartMessageMoveTask", &e))?;
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
            .map_err(|e| sdk_error("ListMessageMoveTasks", &e))?;
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
            .map_err(|e| sdk_error("ReceiveMessage", &e))?;
        let messages = out.messages();
        let mut batch = MovedBatch {
            received: messages.len(),
            ..MovedBatch::default()
        };
        if messages.is_empty() {
            return Ok(batch);
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
                    .map_err(|e| local_error("SendMessageBatch", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sent = self
            .client
            .send_message_batch()
            .queue_url(to_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error("SendMessageBatch", &e))?;
        let receipt = |id: &str| -> Option<String> {
            let index: usize = id.parse().ok()?;
            messages.get(index)?.receipt_handle().map(str::to_owned)
        };
        let sent_receipts: Vec<String> = sent
            .successful()
            .iter()
            .filter_map(|e| receipt(e.id()))
            .collect();
        let unsent: Vec<String> = sent
            .failed()
            .iter()
            .filter_map(|e| receipt(e.id()))
            .collect();
        batch.send_failed = sent.failed().len();
        if !unsent.is_empty() {
            // Best effort: if this fails too, they reappear after the visibility timeout anyway.
            let _ = self.release(from_url, &unsent).await;
        }
        let deletes = sent_receipts
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| local_error("DeleteMessageBatch", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if deletes.is_empty() {
            return Ok(batch);
        }
        let deleted = self
            .client
            .delete_message_batch()
            .queue_url(from_url)
            .set_entries(Some(deletes))
            .send()
            .await;
        match deleted {
            Ok(out) => {
                batch.delete_failed = out.failed().len();
                batch.moved = sent_receipts.len() - batch.delete_failed;
            }
            Err(_) => batch.delete_failed = sent_receipts.len(),
        }
        Ok(batch)
    }
}

/// An EventBridge rule that targets a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Its event pattern (JSON), if it has one (a scheduled rule has none).
    pub pattern: Option<String>,
    /// Whether it is enabled.
    pub enabled: bool,
}

/// What to publish with `PutEvents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// `source`, e.g. `com.quiltdata`.
    pub source: String,
    /// `detail-type`, e.g. `package-revision`.
    pub detail_type: String,
    /// `detail`, as JSON text.
    pub detail: String,
    /// `time`.
    pub time: SystemTime,
}

/// EventBridge calls of `send-test-event`, on the default bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
}

impl EventBus {
    /// Wraps a client.
    pub fn new(client: aws_sdk_eventbridge::Client) -> Self {
        Self { client }
    }

    /// Publishes one event to the default bus; returns the id EventBridge gave it (the `id` of
    /// the envelope the rule's targets receive).
    ///
    /// # Errors
    /// The call failed, or EventBridge rejected the entry.
    pub async fn put(&self, event: &NewEvent) -> Result<String, AdminError> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(&event.source)
            .detail_type(&event.detail_type)
            .detail(&event.detail)
            .time(aws_sdk_eventbridge::primitives::DateTime::from(event.time))
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| events_error("PutEvents", &e))?;
        let result = out.entries().first();
        match result.and_then(|r| r.event_id()) {
            Some(id) if out.failed_entry_count() == 0 => Ok(id.to_owned()),
            _ => Err(AdminError {
                operation: "PutEvents",
                code: result
                    .and_then(|r| r.error_code())
                    .unwrap_or("FailedEntry")
                    .to_owned(),
                message: result
                    .and_then(|r| r.error_message())
                    .unwrap_or("the entry was not accepted")
                    .to_owned(),
            }),
        }
    }

    /// The rules on the default bus that have `target_arn` as a target, with their patterns.
    ///
    /// # Errors
    /// A list or describe call failed (e.g. no `events:ListRuleNamesByTarget` permission).
    pub async fn rules_targeting(&self, target_arn: &str) -> Result<Vec<Rule>, AdminError> {
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_rule_names_by_target()
                .target_arn(target_arn)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| events_error("ListRuleNamesByTarget", &e))?;
            names.extend(out.rule_names().iter().cloned());
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        let mut rules = Vec::with_capacity(names.len());
        for name in names {
            let out = self
                .client
                .describe_rule()
                .name(&name)
                .send()
                .await
                .map_err(|e| events_error("DescribeRule", &e))?;
            rules.push(Rule {
                enabled: out
                    .state()
                    .is_none_or(|s| s == &aws_sdk_eventbridge::types::RuleState::Enabled),
                pattern: out.event_pattern().map(str::to_owned),
                name,
            });
        }
        Ok(rules)
    }
}

fn events_error<E, R>(
    operation: &'static str,
    err: &aws_sdk_eventbridge::error::SdkError<E, R>,
) -> AdminError
where
    E: aws_sdk_eventbridge::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    AdminError {
        operation,
        code: error_code(err),
        message: service_message(err.message(), err),
    }
}

/// EventBridge's `ERROR_CODE` and `ERROR_MESSAGE` attributes, as one line.
fn rule_error(
    attributes: Option<
        &std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>,
    >,
) -> Option<String> {
    let text = |name: &str| attributes?.get(name)?.string_value().map(str::to_owned);
    match (text("ERROR_CODE"), text("ERROR_MESSAGE")) {
        (None, None) => None,
        (code, message) => Some(format!(
            "{}: {}",
            code.unwrap_or_else(|| "error".to_owned()),
            message.unwrap_or_default()
        )),
    }
}
