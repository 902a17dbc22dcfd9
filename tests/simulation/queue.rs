//! SQS standard queue semantics: a receive hides a message for the visibility timeout and hands
//! out a fresh receipt handle; `ApproximateReceiveCount`; ChangeMessageVisibility; delete;
//! redrive to the DLQ once a message was received `maxReceiveCount` times; long polls that wait
//! while nothing is visible; duplicate delivery (a receive that leaves the message visible);
//! reordering; stale receipt handles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quilt_notify::ports::{Queue, QueueError, Receipt, ReceivedMessage, VisibilityChange};

use crate::config::Sqs;
use crate::world::{Life, Sim};

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Queue,
    Deleted,
    Dlq,
}

#[derive(Debug)]
pub struct Message {
    pub event: usize,
    body: Arc<str>,
    pub receives: u32,
    visible_at: u64,
    /// The receive whose handle is current (handles are `<id>#<n>`).
    generation: u32,
    pub place: Place,
    /// Arrival order.
    seq: usize,
}

/// The queue and its DLQ.
#[derive(Debug)]
pub struct QueueModel {
    sqs: Sqs,
    pub messages: BTreeMap<String, Message>,
}

impl QueueModel {
    pub fn new(sqs: Sqs) -> Self {
        Self {
            sqs,
            messages: BTreeMap::new(),
        }
    }

    /// A message arrives, visible at once.
    pub fn send(&mut self, id: &str, event: usize, body: &str, now: u64) {
        let seq = self.messages.len();
        self.messages.insert(
            id.to_owned(),
            Message {
                event,
                body: body.into(),
                receives: 0,
                visible_at: now,
                generation: 0,
                place: Place::Queue,
                seq,
            },
        );
    }

    /// Messages still in the queue, visible or in flight.
    pub fn live(&self) -> usize {
        self.messages
            .values()
            .filter(|m| m.place == Place::Queue)
            .count()
    }

    /// Whether a message is visible now; else when the next one becomes visible.
    fn next_visible(&self, now: u64) -> Option<u64> {
        self.messages
            .values()
            .filter(|m| m.place == Place::Queue)
            .map(|m| m.visible_at.max(now))
            .min()
    }

    fn handle(id: &str, generation: u32) -> String {
        format!("{id}#{generation}")
    }

    fn generation_of(handle: &str) -> Option<u32> {
        handle.rsplit_once('#').and_then(|(_, g)| g.parse().ok())
    }
}

/// One task's handle on the queue.
#[derive(Clone)]
pub struct SimQueue {
    sim: Arc<Sim>,
    life: Arc<Life>,
}

impl SimQueue {
    pub fn new(sim: Arc<Sim>, life: Arc<Life>) -> Self {
        Self { sim, life }
    }

    /// A whole-call failure, during chaos and by chance.
    fn failure(&self, operation: &'static str) -> Option<QueueError> {
        let mut world = self.sim.lock();
        if !world.chaos() || world.rng.f64() >= self.sim.cfg.faults.queue_error {
            return None;
        }
        world.fault("queue_error");
        let owner = self.life.owner();
        self.sim.trace(
            &mut world,
            &owner,
            format_args!("{operation} -> injected error"),
        );
        Some(QueueError {
            operation,
            message: "InternalError: injected".to_owned(),
        })
    }
}

impl Queue for SimQueue {
    async fn receive(
        &self,
        max: u8,
        wait_seconds: u8,
        visibility_seconds: u32,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let fate = self.sim.enter(&self.life, "ReceiveMessage").await;
        if let Some(e) = self.failure("ReceiveMessage") {
            self.sim.leave(&self.life, "ReceiveMessage", fate).await;
            return Err(e);
        }
        // The long poll: wait until a message is visible or the wait is over.
        let deadline = self.sim.now() + u64::from(wait_seconds) * 1000;
        loop {
            let arrived = self.sim.arrivals.notified();
            let now = self.sim.now();
            let next = self.sim.lock().queue.next_visible(now);
            if next == Some(now) || now >= deadline {
                break;
            }
            let until = next.map_or(deadline, |n| n.min(deadline));
            tokio::select! {
                biased;
                () = arrived => {}
                () = tokio::time::sleep_until(self.sim.started + Duration::from_millis(until)) => {}
            }
            self.life.alive().await;
        }
        let received = {
            let mut world = self.sim.lock();
            let now = self.sim.now();
            let sqs = world.queue.sqs;
            let mut visible: Vec<(usize, String)> = world
                .queue
                .messages
                .iter()
                .filter(|(_, m)| m.place == Place::Queue && m.visible_at <= now)
                .map(|(id, m)| (m.seq, id.clone()))
                .collect();
            visible.sort();
            if sqs.reorder {
                world.rng.shuffle(&mut visible);
            }
            let mut received = Vec::new();
            let mut moved = Vec::new();
            for (_, id) in visible {
                if received.len() >= usize::from(max) {
                    break;
                }
                let duplicate = world.chaos() && world.rng.f64() < sqs.duplicate;
                let duplicate_after = world.rng.u64(0..=2_000);
                let phase = world.phase;
                let Some(message) = world.queue.messages.get_mut(&id) else {
                    continue;
                };
                if message.receives >= sqs.max_receive {
                    message.place = Place::Dlq;
                    moved.push(id);
                    continue;
                }
                message.receives += 1;
                message.generation += 1;
                message.visible_at = if duplicate {
                    // Another SQS host did not hear of this receive: it hands the message out
                    // again soon.
                    now + duplicate_after
                } else {
                    now + u64::from(visibility_seconds) * 1000
                };
                let handle = QueueModel::handle(&id, message.generation);
                received.push(ReceivedMessage {
                    message_id: id.clone(),
                    receipt_handle: handle,
                    body: message.body.to_string(),
                    receive_count: message.receives,
                });
                world
                    .records
                    .receives
                    .entry(id)
                    .or_default()
                    .push((now, phase));
                if duplicate {
                    world.fault("sqs_duplicate");
                }
            }
            let owner = self.life.owner();
            let names: Vec<String> = received.iter().map(|m| m.receipt_handle.clone()).collect();
            if !received.is_empty() || !moved.is_empty() {
                self.sim.trace(
                    &mut world,
                    &owner,
                    format_args!("receive -> [{}] dlq [{}]", names.join(" "), moved.join(" ")),
                );
            }
            received
        };
        self.sim.leave(&self.life, "ReceiveMessage", fate).await;
        Ok(received)
    }

    async fn delete(&self, receipts: &[Receipt]) -> Result<Vec<String>, QueueError> {
        let fate = self.sim.enter(&self.life, "DeleteMessageBatch").await;
        if let Some(e) = self.failure("DeleteMessageBatch") {
            self.sim.leave(&self.life, "DeleteMessageBatch", fate).await;
            return Err(e);
        }
        let failed = {
            let mut world = self.sim.lock();
            let stale_works = world.queue.sqs.stale_delete_works;
            let mut failed = Vec::new();
            let mut done = Vec::new();
            for receipt in receipts {
                let generation = QueueModel::generation_of(&receipt.receipt_handle);
                let Some(message) = world.queue.messages.get_mut(&receipt.message_id) else {
                    failed.push(receipt.message_id.clone());
                    continue;
                };
                let current = generation == Some(message.generation);
                let result = match message.place {
                    Place::Dlq => {
                        failed.push(receipt.message_id.clone());
                        "failed (in the DLQ)"
                    }
                    Place::Deleted => "ok (deleted before)",
                    Place::Queue if current || stale_works => {
                        message.place = Place::Deleted;
                        if current {
                            "deleted"
                        } else {
                            "deleted (stale handle)"
                        }
                    }
                    Place::Queue => "ok, but not deleted (stale handle)",
                };
                done.push(format!("{} {result}", receipt.receipt_handle));
            }
            let owner = self.life.owner();
            self.sim.trace(
                &mut world,
                &owner,
                format_args!("delete [{}]", done.join(", ")),
            );
            failed
        };
        self.sim.leave(&self.life, "DeleteMessageBatch", fate).await;
        Ok(failed)
    }

    async fn change_visibility(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<String>, QueueError> {
        let fate = self
            .sim
            .enter(&self.life, "ChangeMessageVisibilityBatch")
            .await;
        if let Some(e) = self.failure("ChangeMessageVisibilityBatch") {
            self.sim
                .leave(&self.life, "ChangeMessageVisibilityBatch", fate)
                .await;
            return Err(e);
        }
        // The worker builds some of these lists from a HashMap: apply and trace them in one
        // order, so the seed's trace does not depend on hashing.
        let mut changes: Vec<&VisibilityChange> = changes.iter().collect();
        changes.sort_by(|a, b| a.receipt.message_id.cmp(&b.receipt.message_id));
        let (failed, released) = {
            let mut world = self.sim.lock();
            let now = self.sim.now();
            let mut failed = Vec::new();
            let mut done = Vec::new();
            let mut released = false;
            for change in changes {
                let generation = QueueModel::generation_of(&change.receipt.receipt_handle);
                let message = world
                    .queue
                    .messages
                    .get_mut(&change.receipt.message_id)
                    .filter(|m| m.place == Place::Queue && Some(m.generation) == generation);
                let result = match message {
                    Some(message) => {
                        message.visible_at = now + u64::from(change.seconds) * 1000;
                        released |= change.seconds == 0;
                        "ok"
                    }
                    None => {
                        failed.push(change.receipt.message_id.clone());
                        "failed"
                    }
                };
                done.push(format!(
                    "{} {}s {result}",
                    change.receipt.receipt_handle, change.seconds
                ));
            }
            let owner = self.life.owner();
            self.sim.trace(
                &mut world,
                &owner,
                format_args!("visibility [{}]", done.join(", ")),
            );
            (failed, released)
        };
        if released {
            self.sim.arrivals.notify_waiters();
        }
        self.sim
            .leave(&self.life, "ChangeMessageVisibilityBatch", fate)
            .await;
        Ok(failed)
    }
}
