//! Digest windows: each recorded event is one item of its window, and its once-marker says
//! which window it belongs to; a sender closes a window before reading it, and the marker,
//! changed only by conditional writes, decides each event that was being written at the close.
//!
//! Recording an event `e` for route `r` in window `W` (no transaction, one small item a write):
//! 1. put the marker `send#e`/`r` = recording in `W`, unless it exists (a redelivery resumes
//!    from it: recorded means done, withdrawn means `W` closed without it);
//! 2. list `W` as pending, and put the event's item into `W`'s partition;
//! 3. read `W`'s state: still open, the marker becomes recorded (if it still says recording
//!    in `W`); closed, it becomes withdrawn (on the same condition), and the event goes to a
//!    later window.
//!
//! Sending `W`: set `closed` on its state, query its events, and for each event whose marker
//! still says recording in `W`, make it recorded (same condition). The digest holds exactly the
//! events whose marker says recorded in `W`. Whoever changes a recording marker first decides:
//! an event the writer saw open was written before the close, so the sender's query sees it;
//! an event the writer saw closed is in the digest only if the sender got to its marker first.

use std::collections::HashMap;

use super::leases::send_key;
use super::{
    flag, key, keyed, n, number, pending_key, s, string, window_pk, window_sk, StateStore,
    TTL_ATTRIBUTE,
};
use crate::domain::schedule::Window;
use crate::ports::{Attr, Changes, Cond, Item, SortKeys, StateError, Written};

use super::leases::LeaseKey;

/// The answer to recording an event into a digest window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded in this window (or, resuming an earlier attempt, in the one it began in).
    New,
    /// This (event, route) was recorded before, in this window or an earlier one.
    Already,
    /// The window is being sent or was sent: record in a later one.
    WindowClosed,
}

/// A window of a route waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWindow {
    /// The route it goes out for.
    pub route: String,
    /// The route that recorded its events (another one after `state retry --as`).
    pub source: String,
    /// The window.
    pub window: Window,
    /// Made sendable again by `state retry`: the next check sends every such window of the
    /// route in one digest.
    pub retry: bool,
}

impl PendingWindow {
    /// The lease on sending it.
    pub fn lease(&self) -> LeaseKey<'_> {
        LeaseKey::Window {
            route: &self.route,
            source: &self.source,
            window: self.window,
        }
    }
}

/// Where a listed window stands, for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowStatus {
    /// Still taking events.
    Open,
    /// Ended, waiting for the next digest check.
    Due,
    /// A task is sending it; its lease runs until then (Unix milliseconds).
    Sending {
        /// The task.
        owner: String,
        /// When its lease ends.
        until_ms: i64,
    },
    /// The task that was sending it stopped renewing its lease; another takes it over.
    LeaseEnded {
        /// The task.
        owner: String,
    },
    /// Given up: SES refused it or it could not render; `state retry` sends it again.
    Failed {
        /// Why.
        error: String,
    },
    /// Made sendable again by `state retry`.
    Retry,
}

/// One window waiting to be sent, as `quilt-notify state` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowView {
    /// The window, with its routes.
    pub pending: PendingWindow,
    /// Where it stands.
    pub status: WindowStatus,
    /// Events written to it (withdrawn ones excepted, but for a task that died mid-way).
    pub events: usize,
}

/// Where an event's once-marker says the event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    /// Being written into this window; not decided.
    Recording(Window),
    /// In this window's digest, for good.
    Recorded(Window),
    /// This window closed without it: it goes to a later one.
    Withdrawn(Window),
    /// Not a digest marker (the pair was mailed by a per-event route): nothing to record.
    Other,
}

fn marker(item: &Item) -> Marker {
    let window = number(item, "window_start")
        .zip(number(item, "window_end"))
        .map(|(start, end)| Window { start, end });
    match (string(item, "status"), window) {
        (Some("recording"), Some(w)) => Marker::Recording(w),
        (Some("recorded"), Some(w)) => Marker::Recorded(w),
        (Some("withdrawn"), Some(w)) => Marker::Withdrawn(w),
        _ => Marker::Other,
    }
}

/// A marker's condition: it still says `status` in `window`.
fn marker_is(status: &str, window: Window) -> Cond {
    Cond::All(vec![
        Cond::Eq("status", s(status)),
        Cond::Eq("window_start", n(window.start)),
    ])
}

/// Most steps one record takes: each is a marker change some task made, so more means a
/// livelock between copies, which a retry of the message resolves.
const RECORD_STEPS: usize = 8;

/// The partition that lists every route that recorded a window.
const DIGEST_ROUTES: &str = "digest-routes";

/// Sort-key prefix of a window's event items.
const EVENT_PREFIX: &str = "e#";

/// Sort-key prefix of the event shards an earlier version wrote (read when closing, so
/// nothing recorded before an upgrade is lost).
const LEGACY_SHARD_PREFIX: &str = "shard#";

impl StateStore {
    /// Records `entry` (JSON) for the event in the route's window, once per (event, route): a
    /// redelivered event is `Already` recorded (in this window or the one it went to first),
    /// and an event is never in two digests. `WindowClosed`: try a later window.
    ///
    /// # Errors
    /// The table failed, or copies of the event kept changing its marker.
    pub async fn record(
        &self,
        route: &str,
        window: Window,
        event_id: &str,
        entry: &str,
        now_ms: i64,
    ) -> Result<Recorded, StateError> {
        match self
            .try_record(route, window, event_id, entry, now_ms)
            .await
        {
            Ok(recorded) => Ok(recorded),
            Err(e) => Err(self.judged(e).await),
        }
    }

    async fn try_record(
        &self,
        route: &str,
        window: Window,
        event_id: &str,
        entry: &str,
        now_ms: i64,
    ) -> Result<Recorded, StateError> {
        let marker_key = send_key(event_id, route);
        let mut item = keyed(&marker_key);
        item.extend([
            ("status".to_owned(), s("recording")),
            ("event_id".to_owned(), s(event_id)),
            ("route".to_owned(), s(route)),
            ("window_start".to_owned(), n(window.start)),
            ("window_end".to_owned(), n(window.end)),
            ("recorded_at".to_owned(), n(now_ms / 1000)),
            (TTL_ATTRIBUTE.to_owned(), self.expires(window.end)),
        ]);
        let (mut state, mut wrote) = match self.table.put(item, Some(&Cond::Absent)).await? {
            Written::Applied(_) => (Marker::Recording(window), false),
            Written::Refused(Some(found)) => (marker(&found), false),
            Written::Refused(None) => {
                return Err(self.conflict("PutItem", "the once-marker vanished while recording"))
            }
        };
        for _ in 0..RECORD_STEPS {
            let (changes, cond) = match state {
                Marker::Recorded(_) | Marker::Other if wrote => return Ok(Recorded::New),
                Marker::Recorded(_) | Marker::Other => return Ok(Recorded::Already),
                Marker::Withdrawn(from) => {
                    // Its item in the closed window is dead (a sender ignores it): removed here,
                    // where every path from a withdrawal passes, so `state` counts it no more.
                    self.table
                        .delete(&event_key(route, from, event_id), None)
                        .await?;
                    if from.start >= window.start {
                        return Ok(Recorded::WindowClosed);
                    }
                    (
                        Changes {
                            set: vec![
                                ("status", s("recording")),
                                ("window_start", n(window.start)),
                                ("window_end", n(window.end)),
                                (TTL_ATTRIBUTE, self.expires(window.end)),
                            ],
                            remove: Vec::new(),
                        },
                        marker_is("withdrawn", from),
                    )
                }
                Marker::Recording(at) => {
                    self.write_event(route, at, event_id, entry).await?;
                    wrote = true;
                    let closed = self.is_closed(route, at).await?;
                    let to = if closed { "withdrawn" } else { "recorded" };
                    let changes = Changes {
                        set: vec![("status", s(to))],
                        remove: Vec::new(),
                    };
                    match self
                        .table
                        .update(&marker_key, &changes, Some(&marker_is("recording", at)))
                        .await?
                    {
                        Written::Applied(_) if closed => {
                            state = Marker::Withdrawn(at);
                            continue;
                        }
                        Written::Applied(_) => return Ok(Recorded::New),
                        Written::Refused(Some(found)) => {
                            state = marker(&found);
                            continue;
                        }
                        Written::Refused(None) => {
                            return Err(self.conflict(
                                "UpdateItem",
                                "the once-marker vanished while recording",
                            ))
                        }
                    }
                }
            };
            state = match self
                .table
                .update(&marker_key, &changes, Some(&cond))
                .await?
            {
                Written::Applied(_) => Marker::Recording(window),
                Written::Refused(Some(found)) => marker(&found),
                Written::Refused(None) => {
                    return Err(
                        self.conflict("UpdateItem", "the once-marker vanished while recording")
                    )
                }
            };
        }
        Err(self.conflict(
            "UpdateItem",
            "copies of the event kept moving its once-marker; the message is retried",
        ))
    }

    /// Lists the window as pending (and the route among digest routes, once per window), then
    /// writes the event's item into it.
    async fn write_event(
        &self,
        route: &str,
        window: Window,
        event_id: &str,
        entry: &str,
    ) -> Result<(), StateError> {
        let expires = self.expires(window.end);
        let listed = Changes {
            set: vec![
                ("route", s(route)),
                ("window_start", n(window.start)),
                ("window_end", n(window.end)),
                (TTL_ATTRIBUTE, expires.clone()),
            ],
            remove: Vec::new(),
        };
        let index = self
            .table
            .update(&pending_key(route, window), &listed, None)
            .await?;
        if matches!(index, Written::Applied(None)) {
            let mut known = keyed(&key(DIGEST_ROUTES, route));
            known.insert(TTL_ATTRIBUTE.to_owned(), expires.clone());
            self.table.put(known, None).await?;
        }
        let mut item = keyed(&event_key(route, window, event_id));
        item.extend([
            ("entry".to_owned(), s(entry)),
            ("event_id".to_owned(), s(event_id)),
            (TTL_ATTRIBUTE.to_owned(), expires),
        ]);
        self.table.put(item, None).await.map(|_| ())
    }

    /// Whether a sender has begun reading the window.
    async fn is_closed(&self, route: &str, window: Window) -> Result<bool, StateError> {
        let state = self
            .table
            .get(&key(window_pk(route, window), "window"))
            .await?;
        Ok(state.is_some_and(|item| flag(&item, "closed")))
    }

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

    /// Every window listed for `routes`, with where it stands and how many events it holds,
    /// for `quilt-notify state` (and the simulation's checks).
    ///
    /// # Errors
    /// The table failed.
    pub async fn windows(
        &self,
        routes: &[String],
        now_ms: i64,
    ) -> Result<Vec<WindowView>, StateError> {
        let mut views = Vec::new();
        for route in routes {
            let pk = format!("pending#{route}");
            for item in self.table.query(&pk, SortKeys::Prefix("")).await? {
                let Some(pending) = listed(route, &item) else {
                    continue;
                };
                let window_pk = window_pk(&pending.source, pending.window);
                let state = self.table.get(&key(window_pk.as_str(), "window")).await?;
                let status = status(&item, state.as_ref(), pending.window, now_ms);
                let events = self
                    .table
                    .count(&window_pk, SortKeys::Prefix(EVENT_PREFIX))
                    .await?;
                views.push(WindowView {
                    pending,
                    status,
                    events,
                });
            }
        }
        Ok(views)
    }

    /// Every route that recorded a window whose items have not expired (orphans among them:
    /// routes the config no longer has).
    ///
    /// # Errors
    /// The table failed.
    pub async fn digest_routes(&self) -> Result<Vec<String>, StateError> {
        let items = self
            .table
            .query(DIGEST_ROUTES, SortKeys::Prefix(""))
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| string(item, "sk").map(str::to_owned))
            .collect())
    }

    /// Makes the failed windows of `route` sendable again (the next digest check sends them
    /// in one digest); with `to`, hands every window of `route` (failed or pending: a route
    /// the config no longer has) to route `to`, whose template and recipients then send it.
    /// Returns how many windows it changed.
    ///
    /// # Errors
    /// The table failed; windows changed before the failure stay changed, and running it
    /// again finishes the rest.
    pub async fn retry(&self, route: &str, to: Option<&str>) -> Result<usize, StateError> {
        let pk = format!("pending#{route}");
        let mut changed = 0;
        for item in self.table.query(&pk, SortKeys::Prefix("")).await? {
            let Some(pending) = listed(route, &item) else {
                continue;
            };
            let failed = flag(&item, "failed");
            if failed {
                let again = Changes {
                    set: vec![("status", s("retry"))],
                    remove: vec!["owner", "lease_until"],
                };
                let state = key(window_pk(&pending.source, pending.window), "window");
                let was_failed = Cond::Eq("status", s("failed"));
                self.table.update(&state, &again, Some(&was_failed)).await?;
            }
            match to {
                None if !failed => continue,
                None => {
                    let again = Changes {
                        set: vec![("retry", Attr::Bool(true))],
                        remove: vec!["failed", "error"],
                    };
                    self.table
                        .update(&pending_key(route, pending.window), &again, None)
                        .await?;
                }
                Some(to) => {
                    // The new entry first: a task that dies between the two writes leaves the
                    // window listed twice, and the second sender finds it sent.
                    let mut moved = keyed(&pending_key(to, pending.window));
                    moved.extend([
                        ("route".to_owned(), s(to)),
                        ("source".to_owned(), s(&pending.source)),
                        ("window_start".to_owned(), n(pending.window.start)),
                        ("window_end".to_owned(), n(pending.window.end)),
                        ("retry".to_owned(), Attr::Bool(true)),
                        (TTL_ATTRIBUTE.to_owned(), self.expires(pending.window.end)),
                    ]);
                    self.table.put(moved, None).await?;
                    let mut known = keyed(&key(DIGEST_ROUTES, to));
                    known.insert(TTL_ATTRIBUTE.to_owned(), self.expires(pending.window.end));
                    self.table.put(known, None).await?;
                    self.table
                        .delete(&pending_key(route, pending.window), None)
                        .await?;
                }
            }
            changed += 1;
        }
        Ok(changed)
    }
}

/// The key of one recorded event's item in its window.
fn event_key(route: &str, window: Window, event_id: &str) -> crate::ports::ItemKey {
    key(
        window_pk(route, window),
        format!("{EVENT_PREFIX}{event_id}"),
    )
}

/// A pending-list item of `route` as a window.
fn listed(route: &str, item: &Item) -> Option<PendingWindow> {
    Some(PendingWindow {
        route: route.to_owned(),
        source: string(item, "source").unwrap_or(route).to_owned(),
        window: Window {
            start: number(item, "window_start")?,
            end: number(item, "window_end")?,
        },
        retry: flag(item, "retry"),
    })
}

/// Where a window stands, from its pending-list item and its state item.
fn status(listed: &Item, state: Option<&Item>, window: Window, now_ms: i64) -> WindowStatus {
    if flag(listed, "failed") {
        return WindowStatus::Failed {
            error: string(listed, "error").unwrap_or_default().to_owned(),
        };
    }
    let lease = state.and_then(|state| {
        let owner = string(state, "owner")?;
        (string(state, "status") == Some("claimed"))
            .then(|| (owner.to_owned(), number(state, "lease_until").unwrap_or(0)))
    });
    match lease {
        Some((owner, until_ms)) if until_ms > now_ms => WindowStatus::Sending { owner, until_ms },
        Some((owner, _)) => WindowStatus::LeaseEnded { owner },
        None if flag(listed, "retry") => WindowStatus::Retry,
        None if window.end * 1000 > now_ms => WindowStatus::Open,
        None => WindowStatus::Due,
    }
}
