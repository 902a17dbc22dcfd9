//! Sending a window: the windows due for a route, and closing one to read the events of its
//! digest, each decided by its once-marker.

use std::collections::HashMap;

use super::{listed, marker, marker_is, Marker, PendingWindow, EVENT_PREFIX, LEGACY_SHARD_PREFIX};
use crate::domain::schedule::Window;
use crate::ports::{Attr, Changes, Item, SortKeys, StateError, Written};
use crate::worker::state::leases::send_key;
use crate::worker::state::{
    flag, key, n, s, string, window_pk, window_sk, StateStore, TTL_ATTRIBUTE,
};

impl StateStore {
    /// The route's windows holding events and not sent yet that end at or before `ended_by`
    /// (Unix seconds), oldest first; failed windows only once `state retry` made them
    /// sendable again.
    ///
    /// # Errors
    /// The table failed.
    pub async fn pending_windows(
        &self,
        route: &str,
        ended_by: i64,
    ) -> Result<Vec<PendingWindow>, StateError> {
        // A window that ended by then started before then; the end is checked below.
        let below = window_sk(Window {
            start: ended_by,
            end: ended_by,
        });
        let pk = format!("pending#{route}");
        let items = match self.table.query(&pk, SortKeys::Below(&below)).await {
            Ok(items) => items,
            Err(e) => return Err(self.judged(e).await),
        };
        Ok(items
            .iter()
            .filter(|item| !flag(item, "failed"))
            .filter_map(|item| listed(route, item))
            .filter(|p| p.window.end <= ended_by)
            .collect())
    }

    /// Closes the window to new events and returns the entries of every event it holds.
    /// Idempotent: a task taking a window over reads the same entries again.
    ///
    /// # Errors
    /// The table failed.
    pub async fn close_window(
        &self,
        source: &str,
        window: Window,
    ) -> Result<Vec<String>, StateError> {
        match self.try_close(source, window).await {
            Ok(entries) => Ok(entries),
            Err(e) => Err(self.judged(e).await),
        }
    }

    async fn try_close(&self, source: &str, window: Window) -> Result<Vec<String>, StateError> {
        let pk = window_pk(source, window);
        let closing = Changes {
            set: vec![
                ("closed", Attr::Bool(true)),
                ("route", s(source)),
                ("window_start", n(window.start)),
                ("window_end", n(window.end)),
                (TTL_ATTRIBUTE, self.expires(window.end)),
            ],
            remove: Vec::new(),
        };
        self.table
            .update(&key(pk.as_str(), "window"), &closing, None)
            .await?;
        let events = self
            .table
            .query(&pk, SortKeys::Prefix(EVENT_PREFIX))
            .await?;
        let keys: Vec<_> = events
            .iter()
            .filter_map(|item| string(item, "event_id"))
            .map(|event_id| send_key(event_id, source))
            .collect();
        let markers = self.table.get_many(&keys).await?;
        let markers: HashMap<&str, &Item> = markers
            .iter()
            .filter_map(|m| Some((string(m, "pk")?.strip_prefix("send#")?, m)))
            .collect();
        let mut entries = Vec::with_capacity(events.len());
        for event in &events {
            let (Some(event_id), Some(entry)) = (string(event, "event_id"), string(event, "entry"))
            else {
                continue;
            };
            let found = markers.get(event_id).copied();
            if self.decide(source, window, event_id, found).await? {
                entries.push(entry.to_owned());
            }
        }
        // Shards an earlier version wrote: closed with the window, so every entry counts.
        for shard in self
            .table
            .query(&pk, SortKeys::Prefix(LEGACY_SHARD_PREFIX))
            .await?
        {
            for (name, value) in &shard {
                if let (true, Some(entry)) = (name.starts_with(EVENT_PREFIX), value.as_str()) {
                    entries.push(entry.to_owned());
                }
            }
        }
        Ok(entries)
    }

    /// Whether an event item found in the closed window belongs to its digest.
    async fn decide(
        &self,
        source: &str,
        window: Window,
        event_id: &str,
        found: Option<&Item>,
    ) -> Result<bool, StateError> {
        let Some(found) = found else {
            // No marker: it expired, or an earlier version wrote the event. Mail it rather
            // than lose it.
            return Ok(true);
        };
        match marker(found) {
            Marker::Recorded(w) => Ok(w == window),
            Marker::Recording(w) if w == window => {
                let changes = Changes {
                    set: vec![("status", s("recorded"))],
                    remove: Vec::new(),
                };
                let marker_key = send_key(event_id, source);
                match self
                    .table
                    .update(&marker_key, &changes, Some(&marker_is("recording", window)))
                    .await?
                {
                    Written::Applied(_) => Ok(true),
                    Written::Refused(now) => {
                        Ok(now.as_ref().map(marker) == Some(Marker::Recorded(window)))
                    }
                }
            }
            _ => Ok(false),
        }
    }
}
