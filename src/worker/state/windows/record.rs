//! Recording an event into a digest window: the once-marker first, then the event's item, then
//! the marker settled by whether the window was still open (steps 1 to 3 above).

use super::{event_key, marker, marker_is, Marker, DIGEST_ROUTES};
use crate::domain::schedule::Window;
use crate::ports::{Changes, Cond, StateError, Written};
use crate::worker::state::leases::send_key;
use crate::worker::state::{
    flag, key, keyed, n, pending_key, s, window_pk, StateStore, TTL_ATTRIBUTE,
};

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
/// Most steps one record takes: each is a marker change some task made, so more means a
/// livelock between copies, which a retry of the message resolves.
const RECORD_STEPS: usize = 8;
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
}
