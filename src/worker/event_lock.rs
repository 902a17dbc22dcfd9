//! One copy of an event at a time. SQS and EventBridge may deliver an event twice, and both
//! copies can arrive in one batch or in two batches in flight together; checking the dedupe
//! record (`HandledEvents`) and then sending is not atomic, so both copies would send. The
//! pipeline holds the event's lock from that check until the outcome is recorded, so the second
//! copy sees what the first one sent (and is deleted as a duplicate, or sends only what the
//! first could not).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// Async locks keyed by event id. An entry lives only while some copy holds or awaits it, so the
/// map stays as small as the number of events in flight.
#[derive(Debug, Default)]
pub struct EventLocks {
    // std Mutex: held for one map operation, never across an await.
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

/// Holds one event's lock; released on drop.
#[derive(Debug)]
pub struct EventGuard {
    // Dropped before the map entry is looked at (see `Drop`).
    guard: Option<OwnedMutexGuard<()>>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    event_id: String,
}

impl EventLocks {
    /// Waits until no other copy of `event_id` is being processed, then holds it.
    pub async fn lock(&self, event_id: &str) -> EventGuard {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(slots.entry(event_id.to_owned()).or_default())
        };
        EventGuard {
            guard: Some(slot.lock_owned().await),
            slots: Arc::clone(&self.slots),
            event_id: event_id.to_owned(),
        }
    }

    /// Events locked or awaited now.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no event is locked or awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for EventGuard {
    fn drop(&mut self) {
        self.guard = None;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Waiters clone the slot under this same map lock before awaiting it, so a count of one
        // (the map's own) means nobody else holds or awaits it.
        if slots
            .get(&self.event_id)
            .is_some_and(|slot| Arc::strong_count(slot) == 1)
        {
            slots.remove(&self.event_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_second_copy_waits_until_the_first_is_done() {
        let locks = Arc::new(EventLocks::default());
        let first = locks.lock("e1").await;
        let other_event = locks.lock("e2").await;
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _second = locks.lock("e1").await;
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "the second copy waits");
        drop(first);
        waiter.await.expect("no panic");
        drop(other_event);
        assert!(locks.is_empty(), "entries go with their last holder");
    }

    #[tokio::test]
    async fn entries_do_not_outlive_their_holders() {
        let locks = EventLocks::default();
        for i in 0..100 {
            let _guard = locks.lock(&format!("e{i}")).await;
        }
        assert!(locks.is_empty());
    }
}
