//! EventBridge calls of `send-test-event`, on the default bus: publishing an event, and the
//! rules that target a queue (to say before sending whether the event will arrive).

use std::time::SystemTime;

use super::AdminError;
use crate::adapters::aws::AwsError;

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
            .map_err(|e| AdminError::call("PutEvents", &e))?;
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
                .map_err(|e| AdminError::call("ListRuleNamesByTarget", &e))?;
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
                .map_err(|e| AdminError::call("DescribeRule", &e))?;
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
