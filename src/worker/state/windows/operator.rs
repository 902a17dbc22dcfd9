//! What an operator sees and does: every window waiting to be sent with where it stands
//! (`quilt-notify state`), the routes that ever recorded one (to find orphans), and `state
//! retry` (failed windows made sendable again, or handed to another route).

use super::{listed, PendingWindow, DIGEST_ROUTES, EVENT_PREFIX};
use crate::domain::schedule::Window;
use crate::ports::{Attr, Changes, Cond, Item, SortKeys, StateError};
use crate::worker::state::{
    flag, key, keyed, n, number, pending_key, s, string, window_pk, StateStore, TTL_ATTRIBUTE,
};

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
impl StateStore {
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
