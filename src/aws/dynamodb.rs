//! DynamoDB adapter for the [`StateStore`] port, and the classification of DynamoDB errors.
//!
//! One table, key `pk` (S) + `sk` (S), TTL on `expires_at` (see docs/operations.md, "Shared
//! state"). Items:
//! - `send#<event id>` / `<route>`: the lease on one route's email for one event
//!   (`status` claimed → sent), or the once-marker of an event recorded into a digest
//!   (`status` recording → recorded, with its window);
//! - `window#<route>#<start>` / `window`: the lease on one digest window (claimed → sent or
//!   failed);
//! - `window#<route>#<start>` / `shard#NN`: 16 shards holding the window's events, one
//!   attribute `e#<event id>` (the entry's JSON) each; `closed` once the window is being sent;
//! - `pending#<route>` / `<start>-<end>`: a window holding events and not sent yet.
//!
//! Recording needs no transaction (moto copies a whole table per transaction, and DynamoDB
//! charges double for one): the marker is written first, saying which window the event goes
//! to; the entry then goes into its shard only while the shard is open, a condition on that
//! one item; a sender closes every shard before reading it. So an entry is either in the shard
//! when it closes (and in the digest), or refused (and sent to the next window, the marker
//! moved first). A redelivery resumes from the marker, and finds an entry already in a closed
//! shard, so no event is in two digests.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::{describe, error_code};
use crate::ports::{
    BoxFuture, Claim, Finish, LeaseKey, Recorded, StateError, StateFailureKind, StateStore, Window,
};

/// The attribute DynamoDB's TTL deletes items by (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// One item, as the SDK holds it.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Shared state in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
    /// How long items live after their last use (`state.ttl_days`).
    ttl: Duration,
}

impl DynamoState {
    /// Wraps a client for `table`; items expire `ttl` after they were written (window items
    /// `ttl` after their window ends).
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
        }
    }

    fn expires_at(&self, after_s: i64) -> AttributeValue {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        n(after_s.saturating_add(ttl))
    }

    fn error<E>(&self, operation: &'static str, err: &SdkError<E, HttpResponse>) -> StateError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = error_code(err);
        let status = match err {
            SdkError::ServiceError(ctx) => Some(ctx.raw().status().as_u16()),
            SdkError::ResponseError(ctx) => Some(ctx.raw().status().as_u16()),
            _ => None,
        };
        StateError {
            kind: kind_of(&code, status),
            operation,
            table: self.table.clone(),
            message: err
                .message()
                .filter(|m| !m.is_empty())
                .map_or_else(|| describe(err), str::to_owned),
            code,
        }
    }

    /// The item of `key`, read consistently.
    async fn get(&self, key: Item) -> Result<Option<Item>, StateError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        Ok(output.item)
    }

    /// The item whose condition refused a write: as the error returned it
    /// (`ReturnValuesOnConditionCheckFailure`), or read, for an emulator that returns none.
    async fn refusing_item(
        &self,
        returned: Option<&Item>,
        key: Item,
    ) -> Result<Option<Item>, StateError> {
        match returned {
            Some(item) => Ok(Some(item.clone())),
            None => self.get(key).await,
        }
    }

    /// What a lease item that refused a claim says.
    fn refused(item: &Item) -> Claim {
        if string(item, "status") == Some("claimed") {
            Claim::Held {
                until_ms: number(item, "lease_until").unwrap_or(0),
            }
        } else {
            Claim::Done
        }
    }

    async fn claim_lease(
        &self,
        lease: LeaseKey<'_>,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Claim, StateError> {
        let mut item = key(lease);
        item.insert("status".into(), s("claimed"));
        item.insert("owner".into(), s(owner));
        item.insert("lease_until".into(), n(now_ms.saturating_add(lease_ms)));
        item.insert("claimed_at".into(), n(now_ms));
        match lease {
            LeaseKey::Send { event_id, route } => {
                item.insert("event_id".into(), s(event_id));
                item.insert("route".into(), s(route));
                item.insert(TTL_ATTRIBUTE.into(), self.expires_at(now_ms / 1000));
            }
            LeaseKey::Window { route, window } => {
                item.insert("route".into(), s(route));
                item.insert("window_start".into(), n(window.start));
                item.insert("window_end".into(), n(window.end));
                item.insert(TTL_ATTRIBUTE.into(), self.expires_at(window.end));
            }
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR (#status = :claimed AND (lease_until < :now OR #owner = :owner))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":owner", s(owner))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(output) => Ok(Claim::Won {
                takeover: output
                    .attributes
                    .as_ref()
                    .and_then(|old| string(old, "owner"))
                    .is_some_and(|previous| previous != owner),
            }),
            Err(SdkError::ServiceError(ctx)) if is_condition_failure(ctx.err()) => {
                let old = self
                    .refusing_item(put_item_refused(ctx.err()), key(lease))
                    .await?;
                // Gone between the write and the read (released): the next attempt claims it.
                let claim = old
                    .as_ref()
                    .map_or(Claim::Held { until_ms: now_ms }, Self::refused);
                if let (Claim::Done, LeaseKey::Window { route, window }) = (claim, lease) {
                    // A task died between marking the window sent and taking it off the
                    // pending list: finish that now, so the window is not listed again.
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(pending_key(route, window)))
                        .send()
                        .await
                        .map_err(|e| self.error("DeleteItem", &e))?;
                }
                Ok(claim)
            }
            Err(e) => Err(self.error("PutItem", &e)),
        }
    }

    async fn renew_lease(
        &self,
        lease: LeaseKey<'_>,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, StateError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(lease)))
            .update_expression("SET lease_until = :until")
            .condition_expression("#status = :claimed AND #owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until_ms))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(ctx))
                if matches!(
                    ctx.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    async fn finish_lease(
        &self,
        lease: LeaseKey<'_>,
        owner: &str,
        finish: Finish<'_>,
    ) -> Result<(), StateError> {
        let now_ms = now_ms();
        let (status, field, value) = match finish {
            Finish::Sent { message_id } => ("sent", "ses_message_id", message_id),
            Finish::Failed { error } => ("failed", "error", error),
        };
        // Unconditional: whoever holds the lease now, the email went out (or never can).
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(lease)))
            .update_expression(
                "SET #status = :status, #field = :value, finished_at = :now, finished_by = :owner, lease_until = :zero",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#field", field)
            .expression_attribute_values(":status", s(status))
            .expression_attribute_values(":value", s(value))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(|e| self.error("UpdateItem", &e))?;
        if let LeaseKey::Window { route, window } = lease {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(pending_key(route, window)))
                .send()
                .await
                .map_err(|e| self.error("DeleteItem", &e))?;
        }
        Ok(())
    }

    async fn release_lease(&self, lease: LeaseKey<'_>, owner: &str) -> Result<(), StateError> {
        let condition = "#status = :claimed AND #owner = :owner";
        let result = match lease {
            LeaseKey::Send { .. } => self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(lease)))
                .condition_expression(condition)
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":claimed", s("claimed"))
                .expression_attribute_values(":owner", s(owner))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.code() == Some(CONDITION_FAILED),
                        self.error("DeleteItem", &e),
                    )
                }),
            // The window item stays, so the window takes no more events; only the lease ends.
            LeaseKey::Window { .. } => self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(lease)))
                .update_expression("SET lease_until = :zero")
                .condition_expression(condition)
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":claimed", s("claimed"))
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_values(":zero", n(0))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.code() == Some(CONDITION_FAILED),
                        self.error("UpdateItem", &e),
                    )
                }),
        };
        match result {
            // Not ours any more: nothing to give up.
            Ok(()) | Err((true, _)) => Ok(()),
            Err((false, e)) => Err(e),
        }
    }

    /// Records one event in a window without a transaction (see the module doc): the
    /// once-marker first, then the window's pending item, then the entry into one shard of the
    /// window, on the condition that the shard is still open; a closed shard that does not hold
    /// the entry sends it to the caller's next window.
    async fn record_entry(
        &self,
        route: &str,
        window: Window,
        event_id: &str,
        entry: &str,
    ) -> Result<Recorded, StateError> {
        let marker_key = key(LeaseKey::Send { event_id, route });
        let mut marker = marker_key.clone();
        marker.insert("status".into(), s("recording"));
        marker.insert("event_id".into(), s(event_id));
        marker.insert("route".into(), s(route));
        marker.insert("window_start".into(), n(window.start));
        marker.insert("window_end".into(), n(window.end));
        marker.insert("recorded_at".into(), n(now_ms() / 1000));
        marker.insert(TTL_ATTRIBUTE.into(), self.expires_at(window.end));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        // The window this event is (being) recorded in: a redelivery resumes the first attempt.
        let mut attempt = window;
        match put {
            Ok(_) => {}
            Err(SdkError::ServiceError(ctx)) if is_condition_failure(ctx.err()) => {
                let old = self
                    .refusing_item(put_item_refused(ctx.err()), marker_key.clone())
                    .await?;
                let Some(old) = old else {
                    return Err(self.conflict("the once-marker vanished while recording"));
                };
                if string(&old, "status") != Some("recording") {
                    return Ok(Recorded::Already);
                }
                if let (Some(start), Some(end)) =
                    (number(&old, "window_start"), number(&old, "window_end"))
                {
                    attempt = Window { start, end };
                }
            }
            Err(e) => return Err(self.error("PutItem", &e)),
        }
        loop {
            match self.add_to_window(route, attempt, event_id, entry).await? {
                Added::Yes => break,
                Added::Closed if attempt == window => return Ok(Recorded::WindowClosed),
                Added::Closed => {
                    // The first attempt's window closed without this event: move to the
                    // caller's window, and say so on the marker first.
                    self.move_marker(&marker_key, attempt, window).await?;
                    attempt = window;
                }
            }
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(marker_key))
            .update_expression("SET #status = :recorded")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":recorded", s("recorded"))
            .send()
            .await
            .map_err(|e| self.error("UpdateItem", &e))?;
        Ok(Recorded::New)
    }

    /// Puts the entry into its shard of `window` unless the shard is closed. A closed shard
    /// that already holds it (an earlier attempt got there before the close) counts as added.
    async fn add_to_window(
        &self,
        route: &str,
        window: Window,
        event_id: &str,
        entry: &str,
    ) -> Result<Added, StateError> {
        let expires = self.expires_at(window.end);
        let mut pending = pending_key(route, window);
        pending.insert("route".into(), s(route));
        pending.insert("window_start".into(), n(window.start));
        pending.insert("window_end".into(), n(window.end));
        pending.insert(TTL_ATTRIBUTE.into(), expires.clone());
        // Before the entry: whenever a shard holds an entry, the window is listed as pending.
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(pending))
            .send()
            .await
            .map_err(|e| self.error("PutItem", &e))?;
        let attribute = entry_attribute(event_id);
        let added = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(shard_key(route, window, shard_of(event_id))))
            .update_expression("SET #entry = :entry, window_start = :start, window_end = :end, expires_at = :expires")
            .condition_expression("attribute_not_exists(closed)")
            .expression_attribute_names("#entry", &attribute)
            .expression_attribute_values(":entry", s(entry))
            .expression_attribute_values(":start", n(window.start))
            .expression_attribute_values(":end", n(window.end))
            .expression_attribute_values(":expires", expires)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match added {
            Ok(_) => Ok(Added::Yes),
            Err(SdkError::ServiceError(ctx)) => match ctx.err() {
                UpdateItemError::ConditionalCheckFailedException(e) => {
                    let shard = self
                        .refusing_item(e.item(), shard_key(route, window, shard_of(event_id)))
                        .await?;
                    Ok(if shard.is_some_and(|item| item.contains_key(&attribute)) {
                        Added::Yes
                    } else {
                        Added::Closed
                    })
                }
                // A shard at DynamoDB's 400 KB item limit takes no more: the next window does.
                other
                    if other.code() == Some("ValidationException")
                        && other.message().is_some_and(|m| m.contains("size")) =>
                {
                    tracing::warn!(
                        route,
                        window_start = window.start,
                        "digest window full (400 KB shard); recording in the next window"
                    );
                    Ok(Added::Closed)
                }
                _ => Err(self.error("UpdateItem", &SdkError::ServiceError(ctx))),
            },
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    /// Points the marker at `to`, if it still points at `from` (a concurrent copy of the same
    /// event may have moved it already: then it agrees).
    async fn move_marker(&self, marker: &Item, from: Window, to: Window) -> Result<(), StateError> {
        let moved = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(marker.clone()))
            .update_expression(
                "SET window_start = :start, window_end = :end, expires_at = :expires",
            )
            .condition_expression("window_start = :from")
            .expression_attribute_values(":start", n(to.start))
            .expression_attribute_values(":end", n(to.end))
            .expression_attribute_values(":from", n(from.start))
            .expression_attribute_values(":expires", self.expires_at(to.end))
            .send()
            .await;
        match moved {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(ctx))
                if matches!(
                    ctx.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    /// Closes every shard of the window (no entry can be added after) and returns the entries
    /// they hold. Idempotent: a task taking a window over reads the same entries again.
    async fn close_shards(&self, route: &str, window: Window) -> Result<Vec<String>, StateError> {
        let mut entries = Vec::new();
        for shard in 0..SHARDS {
            let closed = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(shard_key(route, window, shard)))
                .update_expression("SET closed = :yes, window_start = :start, window_end = :end, expires_at = :expires")
                .expression_attribute_values(":yes", AttributeValue::Bool(true))
                .expression_attribute_values(":start", n(window.start))
                .expression_attribute_values(":end", n(window.end))
                .expression_attribute_values(":expires", self.expires_at(window.end))
                .return_values(ReturnValue::AllNew)
                .send()
                .await
                .map_err(|e| self.error("UpdateItem", &e))?;
            for (name, value) in closed.attributes.unwrap_or_default() {
                if name.starts_with(ENTRY_PREFIX) {
                    if let Ok(text) = value.as_s() {
                        entries.push(text.clone());
                    }
                }
            }
        }
        Ok(entries)
    }

    fn conflict(&self, message: &str) -> StateError {
        StateError {
            kind: StateFailureKind::Transient,
            operation: "PutItem",
            table: self.table.clone(),
            code: "Conflict".to_owned(),
            message: message.to_owned(),
        }
    }

    /// Every item of a partition whose sort key sorts below `sk_below`, read consistently.
    async fn query_below(&self, pk: &str, sk_below: &str) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND sk < :sk")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":sk", s(sk_below))
                .set_exclusive_start_key(start.take());
            let page = query.send().await.map_err(|e| self.error("Query", &e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(items),
            }
        }
    }
}

impl StateStore for DynamoState {
    fn claim<'a>(
        &'a self,
        key: LeaseKey<'a>,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<Claim, StateError>> {
        Box::pin(self.claim_lease(key, owner, now_ms, lease_ms))
    }

    fn renew<'a>(
        &'a self,
        key: LeaseKey<'a>,
        owner: &'a str,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(self.renew_lease(key, owner, until_ms))
    }

    fn finish<'a>(
        &'a self,
        key: LeaseKey<'a>,
        owner: &'a str,
        finish: Finish<'a>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.finish_lease(key, owner, finish))
    }

    fn release<'a>(
        &'a self,
        key: LeaseKey<'a>,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.release_lease(key, owner))
    }

    fn record<'a>(
        &'a self,
        route: &'a str,
        window: Window,
        event_id: &'a str,
        entry: &'a str,
    ) -> BoxFuture<'a, Result<Recorded, StateError>> {
        Box::pin(self.record_entry(route, window, event_id, entry))
    }

    fn pending_windows<'a>(
        &'a self,
        route: &'a str,
        ended_by: i64,
    ) -> BoxFuture<'a, Result<Vec<Window>, StateError>> {
        Box::pin(async move {
            // A window that ended by then started before then; the end is checked below.
            let below = window_sk(Window {
                start: ended_by,
                end: ended_by,
            });
            let items = self
                .query_below(&format!("pending#{route}"), &below)
                .await?;
            Ok(items
                .iter()
                .filter_map(|item| {
                    Some(Window {
                        start: number(item, "window_start")?,
                        end: number(item, "window_end")?,
                    })
                })
                .filter(|w| w.end <= ended_by)
                .collect())
        })
    }

    fn close_window<'a>(
        &'a self,
        route: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        Box::pin(self.close_shards(route, window))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            self.get(HashMap::from([
                ("pk".to_owned(), s("probe")),
                ("sk".to_owned(), s("probe")),
            ]))
            .await
            .map(|_| ())
        })
    }
}

const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// Shards per digest window: a window's entries are spread over this many items by event id,
/// so a window holds about 16 × 400 KB of entries (thousands of events) and each write touches
/// one small item.
pub const SHARDS: u32 = 16;

/// Attribute-name prefix of one entry in a shard item: `e#<event id>`.
pub const ENTRY_PREFIX: &str = "e#";

/// Whether an entry went into a window.
enum Added {
    Yes,
    Closed,
}

fn entry_attribute(event_id: &str) -> String {
    format!("{ENTRY_PREFIX}{event_id}")
}

/// The shard of an event: FNV-1a of its id, so every copy of an event picks the same one.
fn shard_of(event_id: &str) -> u32 {
    let hash = event_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % SHARDS
}

/// The key of one shard of a window.
pub(crate) fn shard_key(route: &str, window: Window, shard: u32) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(&window_pk(route, window))),
        ("sk".to_owned(), s(&format!("shard#{shard:02}"))),
    ])
}

/// The item a refused PutItem returned, if any.
fn put_item_refused(err: &PutItemError) -> Option<&Item> {
    match err {
        PutItemError::ConditionalCheckFailedException(e) => e.item(),
        _ => None,
    }
}

fn is_condition_failure(err: &PutItemError) -> bool {
    matches!(err, PutItemError::ConditionalCheckFailedException(_))
}

/// The key of a lease item.
fn key(lease: LeaseKey<'_>) -> Item {
    let (pk, sk) = match lease {
        LeaseKey::Send { event_id, route } => (format!("send#{event_id}"), route.to_owned()),
        LeaseKey::Window { route, window } => (window_pk(route, window), "window".to_owned()),
    };
    HashMap::from([("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(&sk))])
}

fn window_pk(route: &str, window: Window) -> String {
    format!("window#{route}#{}", window.start)
}

/// Sorts like the window's start (zero-padded), so a Query finds the windows due in order.
fn window_sk(window: Window) -> String {
    format!("{:020}-{:020}", window.start.max(0), window.end.max(0))
}

fn pending_key(route: &str, window: Window) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(&format!("pending#{route}"))),
        ("sk".to_owned(), s(&window_sk(window))),
    ])
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A string attribute.
pub(crate) fn string<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A number attribute that fits an i64.
pub(crate) fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The classification table: throttling, server errors and the network are transient;
/// a missing table, refused credentials or a key schema that is not ours make the table
/// unusable until an operator acts, and so does any other client error (a 4xx that retrying
/// the message cannot change).
pub fn kind_of(code: &str, http_status: Option<u16>) -> StateFailureKind {
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "LimitExceededException"
        | "TransactionConflictException"
        | "TransactionInProgressException"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "Timeout"
        | "DispatchFailure"
        | "ResponseError" => StateFailureKind::Transient,
        "ResourceNotFoundException"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "ValidationException" => StateFailureKind::Unusable,
        _ => match http_status {
            Some(400..=499) if http_status != Some(429) => StateFailureKind::Unusable,
            _ => StateFailureKind::Transient,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code_then_status() {
        let table = [
            (
                "ProvisionedThroughputExceededException",
                Some(400),
                StateFailureKind::Transient,
            ),
            (
                "ThrottlingException",
                Some(400),
                StateFailureKind::Transient,
            ),
            (
                "TransactionConflictException",
                Some(400),
                StateFailureKind::Transient,
            ),
            (
                "InternalServerError",
                Some(500),
                StateFailureKind::Transient,
            ),
            ("DispatchFailure", None, StateFailureKind::Transient),
            ("Timeout", None, StateFailureKind::Transient),
            ("Unknown", Some(503), StateFailureKind::Transient),
            ("Unknown", Some(429), StateFailureKind::Transient),
            (
                "ResourceNotFoundException",
                Some(400),
                StateFailureKind::Unusable,
            ),
            (
                "AccessDeniedException",
                Some(400),
                StateFailureKind::Unusable,
            ),
            ("ValidationException", Some(400), StateFailureKind::Unusable),
            ("Unknown", Some(403), StateFailureKind::Unusable),
        ];
        for (code, status, kind) in table {
            assert_eq!(kind_of(code, status), kind, "{code} {status:?}");
        }
    }

    #[test]
    fn pending_windows_sort_by_start() {
        let early = window_sk(Window { start: 9, end: 10 });
        let late = window_sk(Window {
            start: 1_700_000_000,
            end: 1_700_000_060,
        });
        assert!(early < late);
    }
}
