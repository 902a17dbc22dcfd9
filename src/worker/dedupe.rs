//! What this worker remembers about events it handled: the dedupe window and partial success.
//!
//! Keyed by EventBridge event id. An event is `done` when every route it matched was sent; until
//! then the routes already sent are remembered, so a redelivery sends only the rest. Bounded in
//! both time (window) and size (capacity, oldest forgotten first). Kept per process: a
//! restart forgets, which is the at-least-once trade the design accepts.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Entry {
    first_seen: Option<Instant>,
    sent_routes: Vec<String>,
    done: bool,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    order: VecDeque<(Instant, String)>,
}

/// The events this process handled, and their routes sent so far: bounded. Cheap to share: one short lock per call.
#[derive(Debug)]
pub struct HandledEvents {
    window: Duration,
    capacity: usize,
    // std Mutex: held for a few map operations, never across an await.
    state: Mutex<State>,
}

impl HandledEvents {
    /// Remembers at most `capacity` events for at most `window`.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether every route of this event was already sent.
    pub fn is_done(&self, event_id: &str, now: Instant) -> bool {
        self.with_state(now, |s| s.entries.get(event_id).is_some_and(|e| e.done))
    }

    /// Whether this route was already sent for this event.
    pub fn was_sent(&self, event_id: &str, route: &str, now: Instant) -> bool {
        self.with_state(now, |s| {
            s.entries
                .get(event_id)
                .is_some_and(|e| e.sent_routes.iter().any(|r| r == route))
        })
    }

    /// Records one route as sent.
    pub fn record_sent(&self, event_id: &str, route: &str, now: Instant) {
        self.with_state(now, |s| {
            let entry = Self::entry(s, event_id, now);
            if !entry.sent_routes.iter().any(|r| r == route) {
                entry.sent_routes.push(route.to_owned());
            }
        });
    }

    /// Records the event as completely handled.
    pub fn record_done(&self, event_id: &str, now: Instant) {
        self.with_state(now, |s| Self::entry(s, event_id, now).done = true);
    }

    /// How many events are remembered.
    pub fn len(&self) -> usize {
        self.with_state(Instant::now(), |s| s.entries.len())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry<'a>(state: &'a mut State, event_id: &str, now: Instant) -> &'a mut Entry {
        if !state.entries.contains_key(event_id) {
            state.order.push_back((now, event_id.to_owned()));
        }
        let entry = state.entries.entry(event_id.to_owned()).or_default();
        entry.first_seen.get_or_insert(now);
        entry
    }

    /// Runs `f` after forgetting what fell out of the window or over capacity.
    fn with_state<T>(&self, now: Instant, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain maps; the data
        // is still usable, and losing dedupe is better than stopping delivery.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((seen, id)) = state.order.front() {
            let expired = now.saturating_duration_since(*seen) > self.window;
            if !expired && state.entries.len() <= self.capacity {
                break;
            }
            let id = id.clone();
            state.order.pop_front();
            state.entries.remove(&id);
        }
        let result = f(&mut state);
        if state.entries.len() > self.capacity {
            if let Some((_, id)) = state.order.pop_front() {
                state.entries.remove(&id);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handled(window_s: u64, capacity: usize) -> HandledEvents {
        HandledEvents::new(Duration::from_secs(window_s), capacity)
    }

    #[test]
    fn a_done_event_is_a_duplicate_within_the_window() {
        let m = handled(60, 10);
        let t0 = Instant::now();
        assert!(!m.is_done("e1", t0));
        m.record_done("e1", t0);
        assert!(m.is_done("e1", t0 + Duration::from_secs(59)));
        assert!(!m.is_done("e1", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn sent_routes_are_remembered_per_event() {
        let m = handled(60, 10);
        let t0 = Instant::now();
        m.record_sent("e1", "a", t0);
        assert!(m.was_sent("e1", "a", t0));
        assert!(!m.was_sent("e1", "b", t0));
        assert!(!m.was_sent("e2", "a", t0));
        assert!(!m.is_done("e1", t0));
    }

    #[test]
    fn capacity_forgets_the_oldest_first() {
        let m = handled(3600, 3);
        let t0 = Instant::now();
        for (i, id) in ["e1", "e2", "e3", "e4"].iter().enumerate() {
            m.record_done(id, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(m.len(), 3);
        let later = t0 + Duration::from_secs(1);
        assert!(!m.is_done("e1", later));
        assert!(m.is_done("e2", later) && m.is_done("e3", later) && m.is_done("e4", later));
    }

    #[test]
    fn memory_stays_bounded_under_many_ids() {
        let m = handled(3600, 1000);
        let t0 = Instant::now();
        for i in 0..50_000 {
            m.record_sent(&format!("e{i}"), "r", t0);
        }
        assert_eq!(m.len(), 1000);
    }
}
