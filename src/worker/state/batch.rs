//! Group commit: the claims and marks of one task's sends that arrive while another batch is
//! being written go to the table together, as one transaction, so a busy worker makes one call
//! where it would make many (each call through the SDK costs far more CPU than the protocol's
//! own work; docs/performance.md).
//!
//! A batch is only ever a cheaper way to the outcome each write would have alone: a transaction
//! applies whole or not at all, and when it does not apply (a condition failed, it collided
//! with another task's, the call failed, or its writer was stopped), every write in it is made
//! again alone, exactly as without batching. A batched write's condition is therefore never
//! weaker than its solo one, and each write is safe to make twice (a claim already ours is won
//! again, a mark sets the same values). A write that finds no company is not batched at all:
//! with nothing else in flight there is no call to save, and no wait is ever added to gather one.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::ports::{DynStateTable, ItemKey, Update};

/// At most this many writes go in one transaction (DynamoDB allows 100): enough to fold a busy
/// worker's sends into a few calls, few enough that one contended item costs little to redo.
pub const MAX_BATCH: usize = 25;

/// One write waiting for the next batch.
struct Waiting {
    id: u64,
    update: Update,
    applied: oneshot::Sender<bool>,
}

/// How a submitted write went.
pub enum Submitted<'a> {
    /// It was written, in a transaction with others.
    Applied,
    /// It was not written: the caller writes it alone. `turn`, when given, is the right to
    /// write that the caller holds meanwhile, so the writes that arrive during its call gather
    /// into the next batch.
    Alone(Option<tokio::sync::MutexGuard<'a, ()>>),
}

/// The writes waiting for a batch, and the turn to write (one call at a time goes through it:
/// a lone write or a batch).
#[derive(Default)]
pub struct Batcher {
    waiting: Mutex<Vec<Waiting>>,
    next_id: std::sync::atomic::AtomicU64,
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("waiting", &self.waiting().len())
            .finish_non_exhaustive()
    }
}

impl Batcher {
    fn waiting(&self) -> MutexGuard<'_, Vec<Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many writes wait for a batch.
    #[cfg(any(test, feature = "test-support"))]
    pub fn waiting_count(&self) -> usize {
        self.waiting().len()
    }

    /// The turn to write, taken as a lone write would (tests hold it to gather a batch).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Writes `update` in a batch with the writes waiting, or hands it back to be written alone.
    pub async fn submit(&self, table: &dyn DynStateTable, update: Update) -> Submitted<'_> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (applied, mut answer) = oneshot::channel();
        self.waiting().push(Waiting {
            id,
            update,
            applied,
        });
        loop {
            tokio::select! {
                biased;
                // A closed channel: the batch's writer was stopped mid-call.
                applied = &mut answer => {
                    return if applied.unwrap_or(false) {
                        Submitted::Applied
                    } else {
                        Submitted::Alone(None)
                    };
                }
                turn = self.turn.lock() => {
                    let batch = self.take();
                    if let [only] = batch.as_slice() {
                        if only.id == id {
                            return Submitted::Alone(Some(turn));
                        }
                    }
                    Self::write(table, batch).await;
                }
            }
        }
    }

    /// Writes `batch` as one transaction (a lone write of another caller is handed back).
    async fn write(table: &dyn DynStateTable, batch: Vec<Waiting>) {
        if batch.len() < 2 {
            for waiting in batch {
                let _ = waiting.applied.send(false);
            }
            return;
        }
        let (updates, answers): (Vec<Update>, Vec<_>) =
            batch.into_iter().map(|w| (w.update, w.applied)).unzip();
        let applied = match table.update_all(&updates).await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::debug!(writes = updates.len(), error = %e, "a batch of state writes failed; each is made alone");
                false
            }
        };
        for answer in answers {
            let _ = answer.send(applied);
        }
    }

    /// The oldest waiting writes, at most [`MAX_BATCH`] and each on a different item (a
    /// transaction may not touch an item twice); the rest wait for the next batch.
    fn take(&self) -> Vec<Waiting> {
        let mut waiting = self.waiting();
        let mut keys: BTreeSet<ItemKey> = BTreeSet::new();
        let mut batch = Vec::new();
        let mut rest = Vec::new();
        for w in waiting.drain(..) {
            if batch.len() < MAX_BATCH && keys.insert(w.update.key.clone()) {
                batch.push(w);
            } else {
                rest.push(w);
            }
        }
        *waiting = rest;
        batch
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::memory::table::MemoryTable;
    use crate::ports::{Attr, Changes, Cond, StateTable};

    fn update(sk: &str, cond: Option<Cond>) -> Update {
        Update {
            key: ItemKey {
                pk: "p".to_owned(),
                sk: sk.to_owned(),
            },
            changes: Changes {
                set: vec![("status", Attr::S("claimed".to_owned()))],
                remove: Vec::new(),
            },
            cond,
        }
    }

    #[tokio::test]
    async fn a_lone_write_is_handed_back_without_a_call() {
        let table = Arc::new(MemoryTable::new());
        let batcher = Batcher::default();
        let submitted = batcher.submit(table.as_ref(), update("a", None)).await;
        assert!(
            matches!(submitted, Submitted::Alone(Some(_))),
            "with the turn"
        );
        assert_eq!(table.units().calls, 0);
    }

    #[tokio::test]
    async fn writes_that_arrive_while_a_batch_is_written_go_in_one_call() {
        let table = Arc::new(MemoryTable::new());
        let batcher = Arc::new(Batcher::default());
        // Hold the writer, as a batch in flight would, while ten writes arrive.
        let writing = batcher.turn().await;
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (table, batcher) = (Arc::clone(&table), Arc::clone(&batcher));
                tokio::spawn(async move {
                    let submitted = batcher
                        .submit(table.as_ref(), update(&format!("k{i}"), None))
                        .await;
                    matches!(submitted, Submitted::Applied)
                })
            })
            .collect();
        while batcher.waiting().len() < 10 {
            tokio::task::yield_now().await;
        }
        drop(writing);
        for task in tasks {
            assert!(task.await.unwrap(), "each write was applied in the batch");
        }
        assert_eq!(table.units().calls, 1, "one transaction for ten writes");
        assert_eq!(table.items().len(), 10);
    }

    #[tokio::test]
    async fn a_batch_with_one_failed_condition_writes_nothing_and_hands_every_write_back() {
        let table = Arc::new(MemoryTable::new());
        let batcher = Arc::new(Batcher::default());
        let writing = batcher.turn().await;
        let conds = [None, Some(Cond::Absent), None];
        StateTable::update(
            table.as_ref(),
            &update("k1", None).key,
            &Changes::default(),
            None,
        )
        .await
        .unwrap();
        let tasks: Vec<_> = conds
            .into_iter()
            .enumerate()
            .map(|(i, cond)| {
                let (table, batcher) = (Arc::clone(&table), Arc::clone(&batcher));
                tokio::spawn(async move {
                    let submitted = batcher
                        .submit(table.as_ref(), update(&format!("k{i}"), cond))
                        .await;
                    matches!(submitted, Submitted::Alone(None))
                })
            })
            .collect();
        while batcher.waiting().len() < 3 {
            tokio::task::yield_now().await;
        }
        drop(writing);
        for task in tasks {
            assert!(task.await.unwrap(), "handed back, without the turn");
        }
        assert_eq!(table.items().len(), 1, "only the item written before");
    }

    #[test]
    fn a_batch_takes_one_write_per_item_and_at_most_max_batch() {
        let batcher = Batcher::default();
        for i in 0..(MAX_BATCH + 5) {
            let (applied, _) = oneshot::channel();
            let sk = if i == 1 {
                "k0".to_owned()
            } else {
                format!("k{i}")
            };
            batcher.waiting().push(Waiting {
                id: i as u64,
                update: update(&sk, None),
                applied,
            });
        }
        let batch = batcher.take();
        assert_eq!(batch.len(), MAX_BATCH);
        let keys: BTreeSet<_> = batch.iter().map(|w| w.update.key.clone()).collect();
        assert_eq!(keys.len(), MAX_BATCH, "no item twice");
        assert_eq!(
            batcher.waiting().len(),
            5,
            "the rest wait for the next batch"
        );
    }
}
