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
//!
//! Here: the window items' keys and the once-marker; `record` (an event into a window),
//! `close` (the windows due, and closing one to read its digest), `operator` (what
//! `quilt-notify state` lists, and `state retry`).

use super::leases::LeaseKey;
use super::{flag, n, number, s, string, window_pk};
use crate::domain::schedule::Window;
use crate::ports::{Cond, Item};

mod close;
mod operator;
mod record;

pub use operator::{WindowStatus, WindowView};
pub use record::Recorded;

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
/// The partition that lists every route that recorded a window.
const DIGEST_ROUTES: &str = "digest-routes";

/// Sort-key prefix of a window's event items.
const EVENT_PREFIX: &str = "e#";

/// Sort-key prefix of the event shards an earlier version wrote (read when closing, so
/// nothing recorded before an upgrade is lost).
const LEGACY_SHARD_PREFIX: &str = "shard#";
/// The key of one recorded event's item in its window.
fn event_key(route: &str, window: Window, event_id: &str) -> crate::ports::ItemKey {
    super::key(
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
