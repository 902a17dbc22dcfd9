//! SQS calls of the operator commands (`dlq`, `send-test-event`): queue attributes and depth,
//! the dead-letter queue behind a queue, reading without consuming, and (in `moves`) moving
//! messages back.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use super::AdminError;
use crate::adapters::aws::{batch, AwsError};
use crate::ports::{Receipt, VisibilityChange};

mod moves;
pub use moves::{MoveTask, MoveTaskStatus, MovedBatch};

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

impl PeekedMessage {
    /// What releasing this receive of the message takes.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            message_id: self.message_id.clone(),
            receipt_handle: self.receipt_handle.clone(),
        }
    }
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
        let mut attributes = self
            .attributes(
                url,
                &[
                    QueueAttributeName::QueueArn,
                    QueueAttributeName::RedrivePolicy,
                ],
            )
            .await?;
        let arn = attributes
            .remove(&QueueAttributeName::QueueArn)
            .ok_or_else(|| AdminError::local("GetQueueAttributes", "the queue has no QueueArn"))?;
        let policy = attributes.get(&QueueAttributeName::RedrivePolicy);
        let (dead_letter_arn, max_receive_count) = match policy {
            Some(text) if !text.trim().is_empty() => {
                let policy: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                    AdminError::local(
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
            return Err(AdminError::local(
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
            .map_err(|e| AdminError::call("GetQueueUrl", &e))?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| AdminError::local("GetQueueUrl", "no QueueUrl in the answer"))
    }

    /// How long the queue keeps a message (`MessageRetentionPeriod`), in seconds.
    ///
    /// # Errors
    /// The queue cannot be read, or does not say.
    pub async fn retention_seconds(&self, url: &str) -> Result<u64, AdminError> {
        let name = QueueAttributeName::MessageRetentionPeriod;
        let attributes = self.attributes(url, std::slice::from_ref(&name)).await?;
        attributes
            .get(&name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                AdminError::local(
                    "GetQueueAttributes",
                    "no MessageRetentionPeriod in the answer",
                )
            })
    }

    /// Approximate counts of waiting and in-flight messages.
    ///
    /// # Errors
    /// The queue cannot be read.
    pub async fn depth(&self, url: &str) -> Result<Depth, AdminError> {
        let visible = QueueAttributeName::ApproximateNumberOfMessages;
        let in_flight = QueueAttributeName::ApproximateNumberOfMessagesNotVisible;
        let attributes = self
            .attributes(url, &[visible.clone(), in_flight.clone()])
            .await?;
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Depth {
            visible: count(visible),
            in_flight: count(in_flight),
        })
    }

    /// The named attributes of a queue (those it has).
    async fn attributes(
        &self,
        url: &str,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>, AdminError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| AdminError::call("GetQueueAttributes", &e))?;
        Ok(out.attributes.unwrap_or_default())
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
            .map_err(|e| AdminError::call("ReceiveMessage", &e))?;
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
    /// A call failed as a whole.
    pub async fn release(&self, url: &str, receipts: &[Receipt]) -> Result<usize, AdminError> {
        let changes: Vec<VisibilityChange> = receipts
            .iter()
            .map(|receipt| VisibilityChange {
                receipt: receipt.clone(),
                seconds: 0,
            })
            .collect();
        let failed: Vec<String> = batch::change_visibility(&self.client, url, &changes).await?;
        Ok(failed.len())
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
            .map_err(|e| AdminError::call("SendMessage", &e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}

/// EventBridge's `ERROR_CODE` and `ERROR_MESSAGE` attributes, as one line.
fn rule_error(
    attributes: Option<&HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>>,
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
