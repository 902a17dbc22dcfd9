//! DynamoDB adapter for the [`StateTable`] port: items, conditions and changes translated to
//! DynamoDB expressions, and DynamoDB's errors classified. The protocol itself (leases, digest
//! windows) is `crate::worker::state`, written once over the port.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure, Select,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use super::{describe, error_code};
use crate::ports::{
    Changes, Cond, Item, ItemKey, SortKeys, StateError, StateFailureKind, StateTable, Update,
    Written,
};

pub use crate::worker::state::TTL_ATTRIBUTE;

mod translate;
pub(crate) use translate::from_sdk;
use translate::{item_key, sdk_key, to_sdk, Expr};

/// One item, as the SDK holds it.
pub(crate) type SdkItem = HashMap<String, AttributeValue>;

/// BatchGetItem takes at most this many keys.
const BATCH_GET_MAX: usize = 100;

/// Shared state in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
}

impl DynamoTable {
    /// Wraps a client for `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
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

    /// The item that refused a write: as the error returned it, or read, for an emulator that
    /// returns none.
    /// A request the SDK would not build: a bug in the adapter, answered as an invalid request.
    fn invalid(&self, operation: &'static str, e: &dyn std::error::Error) -> StateError {
        StateError {
            kind: StateFailureKind::Invalid,
            operation,
            table: self.table.clone(),
            code: "ValidationException".to_owned(),
            message: e.to_string(),
        }
    }

    async fn refusing(
        &self,
        returned: Option<&SdkItem>,
        key: &ItemKey,
    ) -> Result<Written, StateError> {
        match returned {
            Some(item) => Ok(Written::Refused(Some(from_sdk(item.clone())))),
            None => Ok(Written::Refused(StateTable::get(self, key).await?)),
        }
    }

    /// Every page of a query of one partition, or only the count.
    async fn query_pages(
        &self,
        pk: &str,
        keys: SortKeys<'_>,
        count_only: bool,
    ) -> Result<(Vec<Item>, usize), StateError> {
        let (condition, bound) = match keys {
            SortKeys::Prefix("") => ("pk = :pk", None),
            SortKeys::Prefix(prefix) => ("pk = :pk AND begins_with(sk, :sk)", Some(prefix)),
            SortKeys::Below(below) => ("pk = :pk AND sk < :sk", Some(below)),
        };
        let mut items = Vec::new();
        let mut count = 0;
        let mut start: Option<SdkItem> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression(condition)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .set_exclusive_start_key(start.take());
            if let Some(bound) = bound {
                query =
                    query.expression_attribute_values(":sk", AttributeValue::S(bound.to_owned()));
            }
            if count_only {
                query = query.select(Select::Count);
            }
            let page = query.send().await.map_err(|e| self.error("Query", &e))?;
            count += usize::try_from(page.count).unwrap_or(0);
            items.extend(page.items.unwrap_or_default().into_iter().map(from_sdk));
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok((items, count)),
            }
        }
    }
}

impl StateTable for DynamoTable {
    fn name(&self) -> &str {
        &self.table
    }

    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StateError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(sdk_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        Ok(output.item.map(from_sdk))
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut wanted: Vec<SdkItem> = chunk.iter().map(sdk_key).collect();
            // Keys DynamoDB left unprocessed (throttling) are asked for again, with a pause.
            let mut pause = Duration::from_millis(50);
            while !wanted.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut wanted)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StateError {
                        kind: StateFailureKind::Invalid,
                        operation: "BatchGetItem",
                        table: self.table.clone(),
                        code: "ConstructionFailure".to_owned(),
                        message: e.to_string(),
                    })?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| self.error("BatchGetItem", &e))?;
                if let Some(mut found) = output.responses {
                    items.extend(
                        found
                            .remove(&self.table)
                            .unwrap_or_default()
                            .into_iter()
                            .map(from_sdk),
                    );
                }
                if let Some(mut left) = output.unprocessed_keys {
                    if let Some(left) = left.remove(&self.table) {
                        wanted = left.keys;
                    }
                }
                if !wanted.is_empty() {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        Ok(items)
    }

    async fn put(&self, item: Item, cond: Option<&Cond>) -> Result<Written, StateError> {
        let key = item_key(&item);
        let mut expr = Expr::default();
        let condition = cond.map(|c| expr.cond(c));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_sdk(item)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(output) => Ok(Written::Applied(output.attributes.map(from_sdk))),
            Err(SdkError::ServiceError(ctx)) => match ctx.err() {
                PutItemError::ConditionalCheckFailedException(e) => {
                    self.refusing(e.item(), &key).await
                }
                _ => Err(self.error("PutItem", &SdkError::ServiceError(ctx))),
            },
            Err(e) => Err(self.error("PutItem", &e)),
        }
    }

    async fn update(
        &self,
        key: &ItemKey,
        changes: &Changes,
        cond: Option<&Cond>,
    ) -> Result<Written, StateError> {
        let mut expr = Expr::default();
        let update = expr.changes(changes);
        let condition = cond.map(|c| expr.cond(c));
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(sdk_key(key)))
            .update_expression(update)
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match updated {
            // An update that created the item returns no old attributes.
            Ok(output) => Ok(Written::Applied(
                output.attributes.filter(|a| !a.is_empty()).map(from_sdk),
            )),
            Err(SdkError::ServiceError(ctx)) => match ctx.err() {
                UpdateItemError::ConditionalCheckFailedException(e) => {
                    self.refusing(e.item(), key).await
                }
                _ => Err(self.error("UpdateItem", &SdkError::ServiceError(ctx))),
            },
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    async fn update_all(&self, updates: &[Update]) -> Result<bool, StateError> {
        let mut items = Vec::with_capacity(updates.len());
        for update in updates {
            let mut expr = Expr::default();
            let changes = expr.changes(&update.changes);
            let condition = update.cond.as_ref().map(|c| expr.cond(c));
            let built = aws_sdk_dynamodb::types::Update::builder()
                .table_name(&self.table)
                .set_key(Some(sdk_key(&update.key)))
                .update_expression(changes)
                .set_condition_expression(condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .build()
                .map_err(|e| self.invalid("TransactWriteItems", &e))?;
            items.push(TransactWriteItem::builder().update(built).build());
        }
        let written = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(ctx)) => match ctx.err() {
                // A failed condition or a collision with another transaction: nothing written.
                TransactWriteItemsError::TransactionCanceledException(e)
                    if e.cancellation_reasons().iter().all(|r| {
                        matches!(
                            r.code(),
                            None | Some("None" | "ConditionalCheckFailed" | "TransactionConflict")
                        )
                    }) =>
                {
                    Ok(false)
                }
                TransactWriteItemsError::TransactionCanceledException(e) => {
                    let codes: Vec<&str> = e
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .filter(|c| *c != "None")
                        .collect();
                    let code = codes.first().copied().unwrap_or("TransactionCanceled");
                    Err(StateError {
                        kind: kind_of(
                            if code == "ValidationError" {
                                "ValidationException"
                            } else {
                                code
                            },
                            Some(400),
                        ),
                        operation: "TransactWriteItems",
                        table: self.table.clone(),
                        code: code.to_owned(),
                        message: e.message().unwrap_or("transaction cancelled").to_owned(),
                    })
                }
                _ => Err(self.error("TransactWriteItems", &SdkError::ServiceError(ctx))),
            },
            Err(e) => Err(self.error("TransactWriteItems", &e)),
        }
    }

    async fn delete(&self, key: &ItemKey, cond: Option<&Cond>) -> Result<Written, StateError> {
        let mut expr = Expr::default();
        let condition = cond.map(|c| expr.cond(c));
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(sdk_key(key)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match deleted {
            Ok(output) => Ok(Written::Applied(
                output.attributes.filter(|a| !a.is_empty()).map(from_sdk),
            )),
            Err(SdkError::ServiceError(ctx)) => match ctx.err() {
                DeleteItemError::ConditionalCheckFailedException(e) => {
                    self.refusing(e.item(), key).await
                }
                _ => Err(self.error("DeleteItem", &SdkError::ServiceError(ctx))),
            },
            Err(e) => Err(self.error("DeleteItem", &e)),
        }
    }

    async fn query(&self, pk: &str, keys: SortKeys<'_>) -> Result<Vec<Item>, StateError> {
        Ok(self.query_pages(pk, keys, false).await?.0)
    }

    async fn count(&self, pk: &str, keys: SortKeys<'_>) -> Result<usize, StateError> {
        Ok(self.query_pages(pk, keys, true).await?.1)
    }
}

/// The classification table: throttling, server errors and the network are transient; a
/// request DynamoDB refuses as invalid (a key over its size limit) is that request's fault
/// (the state protocol probes the table to tell it from a schema that is not ours); a missing
/// table, refused credentials, or any other client error make the table unusable until an
/// operator acts.
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
        "ValidationException" => StateFailureKind::Invalid,
        "ResourceNotFoundException"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException" => StateFailureKind::Unusable,
        _ => match http_status {
            Some(400..=499) if http_status != Some(429) => StateFailureKind::Unusable,
            _ => StateFailureKind::Transient,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Attr;

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
            ("ValidationException", Some(400), StateFailureKind::Invalid),
            ("Unknown", Some(403), StateFailureKind::Unusable),
        ];
        for (code, status, kind) in table {
            assert_eq!(kind_of(code, status), kind, "{code} {status:?}");
        }
    }

    #[test]
    fn expressions_use_placeholders_for_every_name_and_value() {
        let mut expr = Expr::default();
        let cond = Cond::Any(vec![
            Cond::Missing("status"),
            Cond::All(vec![
                Cond::Eq("status", Attr::S("claimed".into())),
                Cond::Lt("lease_until", 5),
            ]),
        ]);
        assert_eq!(
            expr.cond(&cond),
            "(attribute_not_exists(#n0) OR (#n0 = :v0 AND #n1 < :v1))"
        );
        let changes = Changes {
            set: vec![("owner", Attr::S("a".into()))],
            remove: vec!["lease_until"],
        };
        assert_eq!(expr.changes(&changes), "SET #n2 = :v2 REMOVE #n1");
        assert_eq!(expr.names().map(|n| n.len()), Some(3));
    }
}
