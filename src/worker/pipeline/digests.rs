//! Digest routes: a matched event is recorded in the state table under the route's current
//! window (and its message deleted only after that write); when a window closes, one task claims
//! it, renders one email of all its events, sends it and marks it sent.

use super::{Pipeline, RouteResult};
use crate::domain::details::Details;
use crate::domain::digest::{digest_data, DigestEntry, Schedule};
use crate::domain::event::PackageEvent;
use crate::domain::route::Route;
use crate::ports::{Claim, FailureKind, Finish, LeaseKey, Mailer, Recorded, SendError, Window};
use crate::telemetry::metrics::Counter;
use crate::worker::outcome::Outcome;

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
    /// Windows that failed and stay pending (transient) or were given up (permanent).
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
        let mut window = schedule.window_at(claims.now_ms().div_euclid(1000));
        for _ in 0..RECORD_ATTEMPTS {
            match claims
                .store()
                .record(&route.name, window, event.id(), &entry)
                .await
            {
                Ok(Recorded::New) => {
                    self.instruments.metrics.add(Counter::DigestEvents, 1);
                    self.memory
                        .record_sent(event.id(), &route.name, super::memory_now());
                    tracing::debug!(route = %route.name, window_start = window.start, "recorded for the digest");
                    return RouteResult::Recorded;
                }
                Ok(Recorded::Already) => {
                    self.instruments.metrics.add(Counter::ClaimsSkipped, 1);
                    self.memory
                        .record_sent(event.id(), &route.name, super::memory_now());
                    return RouteResult::Done;
                }
                Ok(Recorded::WindowClosed) => window = schedule.window_at(window.end),
                Err(e) => return RouteResult::Failed(super::state_failure(&route.name, &e)),
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

    /// Sends the digest of every window that has closed and is not sent yet, of every digest
    /// route. Each window goes to one task: the first to claim it.
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
            for window in windows {
                match self.send_digest(route, schedule, window).await {
                    WindowResult::Sent => pass.sent += 1,
                    WindowResult::Skipped => pass.skipped += 1,
                    WindowResult::Failed => pass.failed += 1,
                }
            }
        }
        pass
    }

    async fn send_digest(
        &self,
        route: &Route,
        schedule: &Schedule,
        window: Window,
    ) -> WindowResult {
        let Some(claims) = &self.claims else {
            return WindowResult::Skipped;
        };
        let key = LeaseKey::Window {
            route: &route.name,
            window,
        };
        let metrics = &self.instruments.metrics;
        let label = schedule.label(window);
        match claims.claim(key).await {
            Ok(Claim::Won { takeover }) => {
                metrics.add(Counter::Claims, 1);
                if takeover {
                    metrics.add(Counter::LeaseTakeovers, 1);
                    tracing::warn!(route = %route.name, window = %label, "took over the digest of a task that died or stalled while sending it (if SES had accepted it, this one is a duplicate)");
                }
            }
            Ok(Claim::Done) => return WindowResult::Skipped,
            Ok(Claim::Held { .. }) => {
                metrics.add(Counter::ClaimsHeld, 1);
                return WindowResult::Skipped;
            }
            Err(e) => {
                tracing::warn!(route = %route.name, window = %label, error = %e, "could not claim the digest window; trying again at the next check");
                return WindowResult::Failed;
            }
        }
        // The lease is kept for all of it: closing the shards, the send and the mark.
        claims
            .hold(key, self.deliver(route, schedule, window, &label))
            .await
    }

    /// Closes the claimed window, renders its digest, sends it and marks it sent.
    async fn deliver(
        &self,
        route: &Route,
        schedule: &Schedule,
        window: Window,
        label: &str,
    ) -> WindowResult {
        let Some(claims) = &self.claims else {
            return WindowResult::Skipped;
        };
        let key = LeaseKey::Window {
            route: &route.name,
            window,
        };
        let metrics = &self.instruments.metrics;
        let raw = match claims.store().close_window(&route.name, window).await {
            Ok(raw) => raw,
            Err(e) => {
                claims.release(key).await;
                tracing::warn!(route = %route.name, window = %label, error = %e, "could not read the digest's events; trying again at the next check");
                return WindowResult::Failed;
            }
        };
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
            // Nothing to say: an empty window sends nothing. If the mark fails, the next check
            // finds the window again, still empty.
            if let Err(e) = claims.finish(key, Finish::Sent { message_id: "" }).await {
                tracing::debug!(route = %route.name, window = %label, error = %e, "could not mark an empty window done");
            }
            return WindowResult::Skipped;
        }
        let events = entries.len();
        let data = digest_data(
            route,
            schedule,
            window,
            entries,
            self.catalog_host.as_deref(),
        );
        let packages = data["package_count"].as_u64().unwrap_or(0);
        let rendered = match self.renderer.render(&route.template, data) {
            Ok(rendered) => rendered,
            Err(e) => {
                return self
                    .give_up(
                        key,
                        route,
                        label,
                        events,
                        &format!("the digest template fails: {e}"),
                    )
                    .await
            }
        };
        let email = self.email(
            route,
            &route.recipients.to,
            rendered,
            ("digest_window", window.start.to_string()),
        );
        let sent = self.send(&email).await;
        match sent {
            Ok(message_id) => {
                metrics.add(Counter::EmailsSent, 1);
                metrics.add(Counter::DigestsSent, 1);
                self.instruments.status.progressed();
                if let Err(e) = claims
                    .finish(
                        key,
                        Finish::Sent {
                            message_id: &message_id,
                        },
                    )
                    .await
                {
                    metrics.add(Counter::UnmarkedSends, 1);
                    tracing::warn!(route = %route.name, window = %label, ses_message_id = %message_id, error = %e, "digest sent, but the window could not be marked sent: another task may send it again after the lease ends");
                }
                tracing::info!(
                    route = %route.name,
                    window = %label,
                    window_start = window.start,
                    window_end = window.end,
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
                self.give_up(
                    key,
                    route,
                    label,
                    events,
                    &format!("SES rejected the digest: {code}: {message}"),
                )
                .await
            }
            Err(SendError {
                kind,
                code,
                message,
            }) => {
                claims.release(key).await;
                if kind == FailureKind::Throttled {
                    self.limiter.slow_down(super::THROTTLE_PAUSE);
                }
                tracing::warn!(route = %route.name, window = %label, code = %code, error = %message, "could not send the digest; trying again at the next check");
                WindowResult::Failed
            }
        }
    }

    /// A digest that can never go out: one ERROR line naming its events' count, the window
    /// marked failed (so it is not tried forever), counted.
    async fn give_up(
        &self,
        key: LeaseKey<'_>,
        route: &Route,
        label: &str,
        events: usize,
        why: &str,
    ) -> WindowResult {
        self.instruments.metrics.add(Counter::DigestsFailed, 1);
        tracing::error!(route = %route.name, window = %label, events, error = why, "digest given up: its events will not be mailed");
        if let Some(claims) = &self.claims {
            if let Err(e) = claims.finish(key, Finish::Failed { error: why }).await {
                tracing::warn!(route = %route.name, window = %label, error = %e, "could not mark the digest failed; the next check tries it again");
            }
        }
        WindowResult::Failed
    }
}

/// What became of one closed window.
enum WindowResult {
    Sent,
    Skipped,
    Failed,
}
