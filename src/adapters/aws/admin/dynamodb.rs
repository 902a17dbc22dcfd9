//! The state table, for `quilt-notify state`: create it (with TTL), and scan for the latest
//! claims. The item layout is the state protocol's (`crate::worker::state`); what goes through the
//! state-table port (windows, one event's claims) is read there.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use super::AdminError;
use crate::adapters::aws::dynamodb::{from_sdk, SdkItem, TTL_ATTRIBUTE};
use crate::adapters::aws::AwsError;
use crate::ports::Item;
use crate::worker::state::{number, string};

/// What `create` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// The table was created now (false: it existed with our key schema).
    pub table: bool,
    /// TTL was turned on now (false: it was on already).
    pub ttl: bool,
}

/// One lease item: an email of an event, or a digest window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRow {
    /// The event id (emails) or `window <start>` (digests).
    pub subject: String,
    /// The route.
    pub route: String,
    /// `claimed`, `sent`, `recorded` or `failed`.
    pub status: String,
    /// Who claimed it.
    pub owner: String,
    /// When it was claimed or recorded, Unix milliseconds.
    pub at_ms: i64,
    /// Lease end, Unix milliseconds (0: none).
    pub lease_until_ms: i64,
    /// The SES message id once sent.
    pub ses_message_id: String,
}

/// The state table's administration calls.
#[derive(Debug, Clone)]
pub struct StateAdmin {
    client: Client,
    table: String,
}

impl StateAdmin {
    /// Wraps a client for `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table (on-demand, key `pk` + `sk`) unless it exists with that key, waits
    /// until it is active, and turns TTL on `expires_at` on unless it is on. Idempotent.
    ///
    /// # Errors
    /// A call failed, the table exists with another key schema, or TTL is on for another
    /// attribute.
    pub async fn create(&self) -> Result<Created, AdminError> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| AdminError::build("CreateTable", e))
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| AdminError::build("CreateTable", e))
        };
        let created = match self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) => {
                let error = AdminError::call("CreateTable", &e);
                if error.code != "ResourceInUseException" {
                    return Err(error);
                }
                false
            }
        };
        self.wait_active().await?;
        let ttl = self.enable_ttl().await?;
        Ok(Created {
            table: created,
            ttl,
        })
    }

    /// Waits (up to two minutes) for the table to be active, and checks its key schema.
    async fn wait_active(&self) -> Result<(), AdminError> {
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| AdminError::call("DescribeTable", &e))?;
            let Some(table) = described.table else {
                return Err(AdminError::local("DescribeTable", "no table in the answer"));
            };
            let keys: Vec<(String, String)> = table
                .key_schema()
                .iter()
                .map(|k| {
                    (
                        k.attribute_name().to_owned(),
                        k.key_type().as_str().to_owned(),
                    )
                })
                .collect();
            let ours = [
                ("pk".to_owned(), "HASH".to_owned()),
                ("sk".to_owned(), "RANGE".to_owned()),
            ];
            if keys != ours {
                return Err(AdminError::local(
                    "DescribeTable",
                    format!(
                        "table {} exists with the key schema {keys:?}, not pk (HASH) + sk (RANGE): choose another state.table",
                        self.table
                    ),
                ));
            }
            if table.table_status() == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(AdminError::local(
            "DescribeTable",
            format!("table {} did not become active in two minutes", self.table),
        ))
    }

    /// Turns TTL on `expires_at` on; false if it was on already.
    async fn enable_ttl(&self) -> Result<bool, AdminError> {
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| AdminError::call("DescribeTimeToLive", &e))?;
        if let Some(ttl) = described.time_to_live_description {
            let on = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            match ttl.attribute_name() {
                Some(TTL_ATTRIBUTE) if on => return Ok(false),
                Some(other) if on => {
                    return Err(AdminError::local(
                        "DescribeTimeToLive",
                        format!(
                            "table {} has TTL on attribute {other}, not {TTL_ATTRIBUTE}: its items would never expire",
                            self.table
                        ),
                    ))
                }
                _ => {}
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| AdminError::build("UpdateTimeToLive", e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| AdminError::call("UpdateTimeToLive", &e))?;
        Ok(true)
    }

    /// The newest `limit` claims among the first `scan_limit` items of a Scan, and how many
    /// items the Scan read. A Scan reads the table in hash order, not by time, so on a table
    /// larger than `scan_limit` this is a sample, not the newest of all.
    ///
    /// # Errors
    /// A call failed.
    pub async fn recent_claims(
        &self,
        limit: usize,
        scan_limit: usize,
    ) -> Result<(Vec<ClaimRow>, usize), AdminError> {
        let mut rows = Vec::new();
        let mut scanned = 0;
        let mut start: Option<SdkItem> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :send) OR sk = :window")
                .expression_attribute_values(":send", AttributeValue::S("send#".into()))
                .expression_attribute_values(":window", AttributeValue::S("window".into()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| AdminError::call("Scan", &e))?;
            scanned += usize::try_from(page.scanned_count).unwrap_or(0);
            for item in page.items.unwrap_or_default().into_iter().map(from_sdk) {
                let subject = string(&item, "event_id").map_or_else(
                    || format!("window {}", number(&item, "window_start").unwrap_or(0)),
                    str::to_owned,
                );
                rows.push(claim_row(&item, subject));
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() && scanned < scan_limit => start = Some(last),
                _ => break,
            }
        }
        rows.sort_by_key(|row| std::cmp::Reverse(row.at_ms));
        rows.truncate(limit);
        Ok((rows, scanned))
    }
}

/// One claim item as a row.
pub fn claim_row(item: &Item, subject: String) -> ClaimRow {
    ClaimRow {
        subject,
        route: string(item, "route").unwrap_or_default().to_owned(),
        status: string(item, "status").unwrap_or_default().to_owned(),
        owner: string(item, "owner").unwrap_or_default().to_owned(),
        at_ms: number(item, "claimed_at")
            .or_else(|| number(item, "recorded_at").map(|s| s * 1000))
            .unwrap_or(0),
        lease_until_ms: number(item, "lease_until").unwrap_or(0),
        ses_message_id: string(item, "ses_message_id")
            .unwrap_or_default()
            .to_owned(),
    }
}
