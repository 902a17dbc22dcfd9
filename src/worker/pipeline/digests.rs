//! Digest routes: a matched event is recorded in the state table under the route's current
//! window (and its message deleted only after that write); when a window closes, one task claims
//! it, renders one email of all its events, sends it and marks it sent. A digest that can never
//! go out as it is (SES rejects it, or it cannot render) is kept as failed, with its events,
//! until `quilt-notify state retry` makes it sendable again.

use super::{dedupe_now, Pipeline};
use crate::domain::details::Details;
use crate::domain::digest::{digest_data, DigestEntry};
use crate::domain::event::PackageEvent;
use crate::domain::route::Route;
use crate::domain::schedule::Schedule;
use crate::ports::{FailureKind, Mailer, SendError};
use crate::telemetry::metrics::Counter;
use crate::worker::outcome::{Outcome, RouteResult};
use crate::worker::state::{Claim, Finish, PendingWindow, Recorded, Window};

/// How many later windows a record tries when the window it chose closed meanwhile (another
/// task started sending it): more than one only when clocks disagree.
const RECORD_ATTEMPTS: usize = 3;

/// What one pass over the closed windows did, for the log and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestPass {
    /// Digests SES accepted.
    pub sent: usize,
    /// Windows another task holds, or found done.
    pub skipped: usize,
    /// Digests that failed: kept pending (transient) or kept as failed (permanent).
    pub failed: usize,
}

impl<M: Mailer> Pipeline<M> {
    /// Records the event for the route's digest, once per (event, route), in the window of
    /// now (or a later one, if that window closed meanwhile).
    pub(super) async fn record(
        &self,
        event: &PackageEvent,
        route: &Route,
        schedule: &Schedule,
        details: Option<&Details>,
    ) -> RouteResult {
        let Some(claims) = &self.claims else {
            // Start-up refuses digest routes without a table; never sent unrecorded.
            return RouteResult::Failed(Outcome::Failed {
                kind: FailureKind::Permanent,
                code: "no_state_table".to_owned(),
                error: format!("route \"{}\": a digest needs state.table", route.name),
            });
        };
        let entry = DigestEntry::new(event, details.filter(|_| route.details));
        let entry = match serde_json::to_string(&entry) {
            Ok(entry) => entry,
            Err(e) => {
                return RouteResult::Failed(Outcome::Failed {
                    kind: FailureKind::Permanent,
                    code: "digest_entry".to_owned(),
                    error: format!("route \"{}\": {e}", route.name),
                })
            }
        };
        let now_ms = claims.now_ms();
        let mut window = schedule.window_at(now_ms.div_euclid(1000));
        for _ in 0..RECORD_ATTEMPTS {
            match claims
                .store()
                .record(&route.name, window, event.id(), &entry, now_ms)
                .await
            {
                Ok(Recorded::New) => {
                    self.instruments.metrics.add(Counter::DigestEvents, 1);
                    self.handled
                        .record_sent(event.id(), &route.name, dedupe_now());
                    tracing::debug!(route = %route.name, window_start = window.start, "recorded for the digest");
                    return RouteResult::Recorded;
                }
                Ok(Recorded::Already) => {
                    self.instruments.metrics.add(Counter::ClaimsSkipped, 1);
                    self.handled
                        .record_sent(event.id(), &route.name, dedupe_now());
                    return RouteResult::Done;
                }
                Ok(Recorded::WindowClosed) => window = schedule.window_at(window.end),
                Err(e) => return RouteResult::Failed(Outcome::from_state_error(&route.name, &e)),
            }
        }
        RouteResult::Failed(Outcome::Failed {
            kind: FailureKind::Transient,
            code: "window_closed".to_owned(),
            error: format!(
                "route \"{}\": {RECORD_ATTEMPTS} digest windows in a row closed while recording",
                route.name
            ),
        })
    }

    /// Whether any route is a digest (then the worker runs [`Pipeline::send_due_digests`]).
    pub fn has_digests(&self) -> bool {
        self.claims.is_some() && self.routes.routes().iter().any(|r| r.digest.is_some())
    }

    /// One WARN line per route that has digest windows in the table but is not in the config
    /// (renamed or removed): nobody sends those windows until an operator hands them to a
    /// route with `quilt-notify state retry --route OLD --as NEW`.
    pub async fn warn_orphaned_windows(&self) {
        let Some(claims) = &self.claims else {
            return;
        };
        let known = match claims.store().digest_routes().await {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for digest windows of routes the config no longer has");
                return;
            }
        };
        let configured = self.routes.routes();
        for orphan in known
            .into_iter()
            .filter(|name| !configured.iter().any(|r| r.name == *name))
        {
            match claims
                .store()
                .windows(std::slice::from_ref(&orphan), claims.now_ms())
                .await
            {
                Ok(windows) if windows.is_empty() => {}
                Ok(windows) => {
                    let events: usize = windows.iter().map(|w| w.events).sum();
                    tracing::warn!(
                        route = %orphan,
                        windows = windows.len(),
                        events,
                        "digest windows of a route the config no longer has: nothing sends them; `quilt-notify state retry --route {orphan} --as NEW` hands them to route NEW"
                    );
                }
                Err(e) => {
                    tracing::warn!(route = %orphan, error = %e, "could not read the digest windows of a route the config no longer has");
                }
            }
        }
    }

    /// Sends the digest of every window that has closed and is not sent yet, of every digest
    /// route. Each window goes to one task: the first to claim it. Windows made sendable again
    /// by `state retry` go out together, in one digest per route.
    pub async fn send_due_digests(&self) -> DigestPass {
        let mut pass = DigestPass::default();
        let Some(claims) = &self.claims else {
            return pass;
        };
        let now_s = claims.now_ms().div_euclid(1000);
        for route in self.routes.routes() {
            let Some(schedule) = &route.digest else {
                continue;
            };
            let windows = match claims.store().pending_windows(&route.name, now_s).await {
                Ok(windows) => windows,
                Err(e) => {
                    tracing::warn!(route = %route.name, error = %e, "could not list closed digest windows; trying again at the next check");
                    pass.failed += 1;
                    continue;
                }
            };
            let (retried, due): (Vec<_>, Vec<_>) = windows.into_iter().partition(|w| w.retry);
            let groups = due
                .into_iter()
                .map(|w| vec![w])
                .chain((!retried.is_empty()).then_some(retried));
            for group in groups {
                match self.send_digest(route, schedule, &group).await {
                    WindowResult::Sent => pass.sent += 1,
                    WindowResult::Skipped => pass.skipped += 1,
                    WindowResult::Failed => pass.failed += 1,
                }
            }
        }
        pass
    }

    /// Claims the windows of one digest (those another task holds or finished are left
    /// out), then delivers it under their leases.
    async fn send_digest(
        &self,
        route: &Route,
        schedule: &Schedule,
        windows: &[PendingWindow],
    ) -> WindowResult {
        let Some(claims) = &self.claims else {
            return WindowResult::Skipped;
        };
        let metrics = &self.instruments.metrics;
        let mut held = Vec::with_capacity(windows.len());
        let mut failed = false;
        for pending in windows {
            let label = schedule.label(pending.window);
            match claims.claim(pending.lease()).await {
                Ok(Claim::Won { takeover }) => {
                    metrics.add(Counter::Claims, 1);
                    if takeover {
                        metrics.add(Counter::LeaseTakeovers, 1);
                        tracing::warn!(route = %route.name, window = %label, "took over the digest of a task that died or stalled while sending it (if SES had accepted it, this one is a duplicate)");
                    }
                    held.push(pending.clone());
                }
                Ok(Claim::Done) => {}
                Ok(Claim::Held { .. }) => metrics.add(Counter::ClaimsHeld, 1),
                Err(e) => {
                    tracing::warn!(route = %route.name, window = %label, error = %e, "could not claim the digest window; trying again at the next check");
                    failed = true;
                }
            }
        }
        if held.is_empty() {
            return if failed {
                WindowResult::Failed
            } else {
                WindowResult::Skipped
            };
        }
        // The leases are kept for all of it: closing the windows, the send and the marks.
        let first = held[0].lease();
        let rest: Vec<_> = held[1..].iter().map(PendingWindow::lease).collect();
        claims
            .hold_all(first, &rest, self.deliver(route, schedule, &held))
            .await
    }

    /// Closes the claimed windows, renders their digest, sends it and marks each sent.
    async fn deliver(
        &self,
        route: &Route,
        schedule: &Schedule,
        windows: &[PendingWindow],
    ) -> WindowResult {
        let Some(claims) = &self.claims else {
            return WindowResult::Skipped;
        };
        let span = Window {
            start: windows.iter().map(|w| w.window.start).min().unwrap_or(0),
            end: windows.iter().map(|w| w.window.end).max().unwrap_or(0),
        };
        let label = schedule.label(span);
        let metrics = &self.instruments.metrics;
        let mut raw = Vec::new();
        for pending in windows {
            match claims
                .store()
                .close_window(&pending.source, pending.window)
                .await
            {
                Ok(entries) => raw.extend(entries),
                Err(e) => {
                    self.release_all(windows).await;
                    tracing::warn!(route = %route.name, window = %label, error = %e, "could not read the digest's events; trying again at the next check");
                    return WindowResult::Failed;
                }
            }
        }
        let entries: Vec<DigestEntry> = raw
            .iter()
            .filter_map(|text| match serde_json::from_str(text) {
                Ok(entry) => Some(entry),
                Err(e) => {
                    tracing::error!(route = %route.name, window = %label, error = %e, "a recorded digest entry is not readable; left out of the digest");
                    None
                }
            })
            .collect();
        if entries.is_empty() {
            // Nothing to say: an empty window sends nothing. If a mark fails, the next check
            // finds the window again, still empty.
            self.finish_all(windows, Finish::Sent { message_id: "" }, &label)
                .await;
            return WindowResult::Skipped;
        }
        let events = entries.len();
        let data = digest_data(route, schedule, span, entries, self.catalog_host.as_deref());
        let packages = data["package_count"].as_u64().unwrap_or(0);
        let rendered = match self.renderer.render(&route.template, data) {
            Ok(rendered) => rendered,
            Err(e) => {
                let why = format!("the digest template fails: {e}");
                return self.keep_failed(windows, route, &label, events, &why).await;
            }
        };
        let email = self.email(
            route,
            &route.recipients.to,
            rendered,
            ("digest_window", span.start.to_string()),
        );
        match self.send(&email).await {
            Ok(message_id) => {
                metrics.add(Counter::EmailsSent, 1);
                metrics.add(Counter::DigestsSent, 1);
                self.instruments.status.progressed();
                let finish = Finish::Sent {
                    message_id: &message_id,
                };
                if !self.finish_all(windows, finish, &label).await {
                    metrics.add(Counter::UnmarkedSends, 1);
                    tracing::warn!(route = %route.name, window = %label, ses_message_id = %message_id, "digest sent, but a window could not be marked sent: another task may send it again after the lease ends");
                }
                tracing::info!(
                    route = %route.name,
                    window = %label,
                    window_start = span.start,
                    window_end = span.end,
                    windows = windows.len(),
                    events,
                    packages,
                    ses_message_id = %message_id,
                    "digest sent"
                );
                WindowResult::Sent
            }
            Err(SendError {
                kind: FailureKind::Permanent,
                code,
                message,
            }) => {
                let why = format!("SES rejected the digest: {code}: {message}");
                self.keep_failed(windows, route, &label, events, &why).await
            }
            Err(SendError {
                kind,
                code,
                message,
            }) => {
                self.release_all(windows).await;
                if kind == FailureKind::Throttled {
                    self.limiter.slow_down(super::THROTTLE_PAUSE);
                }
                tracing::warn!(route = %route.name, window = %label, code = %code, error = %message, "could not send the digest; trying again at the next check");
                WindowResult::Failed
            }
        }
    }

    /// A digest that cannot go out as it is: one ERROR line naming its events' count, and the
    /// windows kept as failed, with the reason and their events, until `state retry` or their
    /// items expire.
    async fn keep_failed(
        &self,
        windows: &[PendingWindow],
        route: &Route,
        label: &str,
        events: usize,
        why: &str,
    ) -> WindowResult {
        self.instruments.metrics.add(Counter::DigestsFailed, 1);
        tracing::error!(route = %route.name, window = %label, events, error = why, "digest failed: its windows are kept as failed; `quilt-notify state retry --route {}` sends them again", route.name);
        self.finish_all(windows, Finish::Failed { error: why }, label)
            .await;
        WindowResult::Failed
    }

    /// Marks every window finished; false if any mark failed (logged).
    async fn finish_all(&self, windows: &[PendingWindow], finish: Finish<'_>, label: &str) -> bool {
        let Some(claims) = &self.claims else {
            return false;
        };
        let mut all = true;
        for pending in windows {
            if let Err(e) = claims.finish(pending.lease(), finish).await {
                tracing::warn!(route = %pending.route, window = %label, error = %e, "could not mark a digest window finished; the next check finds it again");
                all = false;
            }
        }
        all
    }

    async fn release_all(&self, windows: &[PendingWindow]) {
        if let Some(claims) = &self.claims {
            for pending in windows {
                claims.release(pending.lease()).await;
            }
        }
    }
}

/// What became of one digest.
enum WindowResult {
    Sent,
    Skipped,
    Failed,
}
