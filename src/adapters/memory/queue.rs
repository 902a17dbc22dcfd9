//! A [`Queue`] in memory for unit tests: it hands out what was pushed, in order, and records
//! what the worker deleted and released. Unlike SQS, a received message never comes back by
//! itself (no visibility timeout), so a test sees exactly what the worker decided. The
//! simulation has its own queue with SQS's timing (tests/simulation/queue.rs).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::ports::{Queue, QueueError, Receipt, ReceivedMessage, VisibilityChange};

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Inner {
    waiting: VecDeque<ReceivedMessage>,
    deleted: Vec<String>,
    changes: Vec<(String, u32)>,
    receives: usize,
    /// Size of each receive that returned messages.
    batches: Vec<usize>,
    /// How long a visibility change takes.
    visibility_latency: Duration,
}

/// Messages in memory; clones share them.
#[derive(Clone, Default)]
pub struct MemoryQueue(Arc<Mutex<Inner>>);

impl MemoryQueue {
    /// A message arrives (receipt handle `rh-<id>`, received once).
    pub fn push(&self, id: &str, body: &str) {
        locked(&self.0).waiting.push_back(ReceivedMessage {
            message_id: id.to_owned(),
            receipt_handle: format!("rh-{id}"),
            body: body.to_owned(),
            receive_count: 1,
        });
    }

    /// Every visibility change from now on takes `latency`, as a slow SQS would.
    pub fn set_visibility_latency(&self, latency: Duration) {
        locked(&self.0).visibility_latency = latency;
    }

    /// Ids of the messages deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        locked(&self.0).deleted.clone()
    }

    /// (message id, seconds) of every visibility change, in order.
    pub fn changes(&self) -> Vec<(String, u32)> {
        locked(&self.0).changes.clone()
    }

    /// How many receives were made, empty ones included.
    pub fn receives(&self) -> usize {
        locked(&self.0).receives
    }

    /// The size of each receive that returned messages.
    pub fn batches(&self) -> Vec<usize> {
        locked(&self.0).batches.clone()
    }
}

impl Queue for MemoryQueue {
    async fn receive(
        &self,
        max: u8,
        wait: u8,
        _visibility: u32,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let batch: Vec<_> = {
            let mut inner = locked(&self.0);
            inner.receives += 1;
            let n = usize::from(max).min(inner.waiting.len());
            if n > 0 {
                inner.batches.push(n);
            }
            inner.waiting.drain(..n).collect()
        };
        if batch.is_empty() {
            // A long poll on an empty queue waits it out (no message arrives meanwhile here).
            let wait = Duration::from_secs(u64::from(wait)).max(Duration::from_millis(20));
            tokio::time::sleep(wait).await;
        }
        Ok(batch)
    }

    async fn delete(&self, receipts: &[Receipt]) -> Result<Vec<String>, QueueError> {
        locked(&self.0)
            .deleted
            .extend(receipts.iter().map(|r| r.message_id.clone()));
        Ok(Vec::new())
    }

    async fn change_visibility(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<String>, QueueError> {
        let latency = locked(&self.0).visibility_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut inner = locked(&self.0);
        for change in changes {
            inner
                .changes
                .push((change.receipt.message_id.clone(), change.seconds));
        }
        Ok(Vec::new())
    }
}
