//! SQS's two batch acknowledgements, delete and change visibility, over any number of receipts:
//! ten entries a call, entries named by their index in the call, failures mapped back to
//! message ids. Shared by the worker's [`SqsQueue`](super::sqs::SqsQueue) and the operator
//! commands' [`SqsAdmin`](super::admin::SqsAdmin), which differ only in how they report errors.

use std::future::Future;

use aws_sdk_sqs::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

use super::AwsError;
use crate::ports::{Receipt, VisibilityChange};

/// SQS's limit on entries per batch call.
const BATCH_LIMIT: usize = 10;

/// Deletes by receipt; returns the ids of the messages SQS did not delete.
///
/// # Errors
/// A call failed as a whole; chunks before it were deleted.
pub(super) async fn delete<Err: AwsError>(
    client: &Client,
    url: &str,
    receipts: &[Receipt],
) -> Result<Vec<String>, Err> {
    let failed = in_chunks(
        "DeleteMessageBatch",
        receipts,
        |id, receipt| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(&receipt.receipt_handle)
                .build()
        },
        |entries| async move {
            let call = client.delete_message_batch().queue_url(url);
            Ok(call.set_entries(Some(entries)).send().await?.failed)
        },
    )
    .await?;
    Ok(failed.map(|r| r.message_id.clone()).collect())
}

/// Changes visibility timeouts; returns the ids of the messages SQS did not change.
///
/// # Errors
/// A call failed as a whole; chunks before it were changed.
pub(super) async fn change_visibility<Err: AwsError>(
    client: &Client,
    url: &str,
    changes: &[VisibilityChange],
) -> Result<Vec<String>, Err> {
    let failed = in_chunks(
        "ChangeMessageVisibilityBatch",
        changes,
        |id, change| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(&change.receipt.receipt_handle)
                .visibility_timeout(i32::try_from(change.seconds).unwrap_or(i32::MAX))
                .build()
        },
        |entries| async move {
            let call = client.change_message_visibility_batch().queue_url(url);
            Ok(call.set_entries(Some(entries)).send().await?.failed)
        },
    )
    .await?;
    Ok(failed.map(|c| c.receipt.message_id.clone()).collect())
}

/// Sends `items` in chunks of at most [`BATCH_LIMIT`]: `entry` builds an item's entry under
/// the id it is given (its index in the chunk), `call` sends a chunk's entries and answers the
/// entries SQS refused, and those are mapped back to the items.
async fn in_chunks<'a, T, Entry, Fut, E, R, Err>(
    operation: &'static str,
    items: &'a [T],
    entry: impl Fn(String, &T) -> Result<Entry, BuildError>,
    mut call: impl FnMut(Vec<Entry>) -> Fut,
) -> Result<impl Iterator<Item = &'a T>, Err>
where
    Fut: Future<Output = Result<Vec<BatchResultErrorEntry>, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
    Err: AwsError,
{
    let mut failed = Vec::new();
    for chunk in items.chunks(BATCH_LIMIT) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, item)| entry(i.to_string(), item).map_err(|e| Err::build(operation, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let refused = call(entries).await.map_err(|e| Err::call(operation, &e))?;
        failed.extend(
            refused
                .iter()
                .filter_map(|r| chunk.get(r.id().parse::<usize>().ok()?)),
        );
    }
    Ok(failed.into_iter())
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchError;

    use super::*;
    use crate::ports::QueueError;

    type CallResult = Result<Vec<BatchResultErrorEntry>, SdkError<DeleteMessageBatchError, ()>>;

    fn entry(id: String, item: &u32) -> Result<DeleteMessageBatchRequestEntry, BuildError> {
        DeleteMessageBatchRequestEntry::builder()
            .id(id)
            .receipt_handle(format!("handle-{item}"))
            .build()
    }

    fn refused(id: &str) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code("ReceiptHandleIsInvalid")
            .sender_fault(true)
            .build()
            .expect("entry")
    }

    #[tokio::test]
    async fn chunks_hold_ten_entries_named_by_index_and_refusals_map_back_to_their_items() {
        let items: Vec<u32> = (0..23).collect();
        let mut calls: Vec<Vec<String>> = Vec::new();
        let failed = in_chunks::<_, _, _, _, _, QueueError>("Op", &items, entry, |entries| {
            calls.push(entries.iter().map(|e| e.id().to_owned()).collect());
            // An id SQS did not get back is ignored.
            async { CallResult::Ok(vec![refused("1"), refused("42")]) }
        })
        .await
        .map(|f| f.copied().collect::<Vec<_>>());
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        assert_eq!(calls[2], ["0", "1", "2"]);
        assert_eq!(failed, Ok(vec![1, 11, 21]));
    }

    #[tokio::test]
    async fn a_call_that_fails_stops_the_rest_and_says_which_operation() {
        let items: Vec<u32> = (0..23).collect();
        let mut calls = 0;
        let result = in_chunks::<_, _, _, _, _, QueueError>("Op", &items, entry, |_| {
            calls += 1;
            async { CallResult::Err(SdkError::timeout_error("too slow")) }
        })
        .await
        .map(|f| f.count());
        let error = result.expect_err("the call failed");
        assert_eq!(error.operation, "Op");
        assert!(error.message.starts_with("Timeout"), "{}", error.message);
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn an_entry_that_cannot_be_built_is_never_sent() {
        let items = [1_u32];
        let mut calls = 0;
        let no_handle =
            |id: String, _: &u32| DeleteMessageBatchRequestEntry::builder().id(id).build();
        let result = in_chunks::<_, _, _, _, _, QueueError>("Op", &items, no_handle, |_| {
            calls += 1;
            async { CallResult::Ok(Vec::new()) }
        })
        .await
        .map(|f| f.count());
        let error = result.expect_err("no receipt handle");
        assert!(
            error.message.starts_with("cannot build request"),
            "{}",
            error.message
        );
        assert_eq!(calls, 0);
    }
}
