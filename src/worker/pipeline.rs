//! One message in, one [`Outcome`] out: parse, dedupe, match, read the package details (once,
//! when a matched route uses them), decide per route, render, send. One route's email (render,
//! claim, send, mark) is `send`; a digest route's record, and the digests of closed windows,
//! are `digests`.
//!
//! Knows the domain and the [`Mailer`] port; knows nothing of queues, batches or visibility,
//! which the poller derives from the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::details::{Decision, Details};
use crate::domain::event::PackageEvent;
use crate::domain::feedback::{Feedback, FeedbackKind};
use crate::domain::message::Message;
use crate::domain::recipients::Selection;
use crate::domain::render::Renderer;
use crate::domain::route::{EmailAddress, Route, RouteTable};
use crate::ports::{FailureKind, Mailer, StateError, StoreError};

use super::claims::Claims;
use super::dedupe::HandledEvents;
use super::event_lock::EventLocks;
use super::outcome::{Outcome, RouteResult};
use super::rate::RateLimiter;
use super::Instruments;
use crate::ports::{DetailsWanted, DynDetailsSource};
use crate::telemetry::metrics::{Histogram, UNKNOWN_ROUTE};

/// How long every send waits after SES said "too many requests", on top of the rate limit.
const THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// Everything needed to turn a message body into sent emails.
pub struct Pipeline<M> {
    routes: RouteTable,
    renderer: Renderer,
    catalog_host: Option<String>,
    default_from: String,
    contact_list: Option<String>,
    mailer: Arc<M>,
    details: Option<Arc<dyn DynDetailsSource>>,
    handled: HandledEvents,
    claims: Option<Claims>,
    /// Held from the dedupe check until the outcome is recorded (see `event_lock`).
    in_flight: EventLocks,
    limiter: RateLimiter,
    instruments: Instruments,
}

/// What a pipeline is made of; `App::build` (or a test) builds each part.
pub struct PipelineParts<M> {
    /// The compiled routes.
    pub routes: RouteTable,
    /// The loaded templates.
    pub renderer: Renderer,
    /// Catalog host for links, if any.
    pub catalog_host: Option<String>,
    /// Sender of routes that name none.
    pub default_from: String,
    /// SES contact list of the routes' topics (`ses.contact_list`).
    pub contact_list: Option<String>,
    /// Sends the emails; the worker shares it to probe a paused account.
    pub mailer: Arc<M>,
    /// Reads package details; None when `s3.details` is off.
    pub details: Option<Arc<dyn DynDetailsSource>>,
    /// What this process handled: dedupe and partial success (`worker::dedupe`).
    pub handled: HandledEvents,
    /// Leases in the shared state table, when `state.table` is set: one email per (event,
    /// route) across every task and restart.
    pub claims: Option<Claims>,
    /// The send-rate limit.
    pub limiter: RateLimiter,
    /// Where processing times, sends and progress are recorded.
    pub instruments: Instruments,
}

/// What the log line reports besides the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFields {
    /// EventBridge event id, when the body parsed.
    pub event_id: Option<String>,
    /// Package bucket.
    pub bucket: Option<String>,
    /// Package handle.
    pub handle: Option<String>,
    /// Package top hash.
    pub top_hash: Option<String>,
    /// Names of the routes that matched.
    pub routes: Vec<String>,
}

impl<M> Pipeline<M> {
    /// Unix milliseconds now, by this task's clock (the claims', when shared state is on).
    pub fn now_ms(&self) -> i64 {
        self.claims
            .as_ref()
            .map_or_else(super::claims::now_ms, Claims::now_ms)
    }
}

impl<M: Mailer> Pipeline<M> {
    /// Assembles a pipeline from its parts.
    pub fn new(parts: PipelineParts<M>) -> Self {
        let PipelineParts {
            routes,
            renderer,
            catalog_host,
            default_from,
            contact_list,
            mailer,
            details,
            handled,
            claims,
            limiter,
            instruments,
        } = parts;
        Self {
            routes,
            renderer,
            catalog_host,
            default_from,
            contact_list,
            mailer,
            details,
            handled,
            claims,
            in_flight: EventLocks::default(),
            limiter,
            instruments,
        }
    }

    /// Processes one message body. Never panics on any input; every failure is an outcome.
    pub async fn process(&self, body: &str) -> (Outcome, LogFields) {
        let started = Instant::now();
        let result = self.process_body(body).await;
        self.instruments
            .metrics
            .observe(Histogram::ProcessingTime, started.elapsed());
        result
    }

    async fn process_body(&self, body: &str) -> (Outcome, LogFields) {
        let mut fields = LogFields::default();
        let event = match Message::parse(body) {
            Ok(Message::Package(event)) => event,
            Ok(Message::Feedback(feedback)) => {
                fields.event_id = feedback.event_id.clone();
                fields.routes.extend(feedback.route.clone());
                self.count_feedback(&feedback);
                return (Outcome::Feedback, fields);
            }
            Err(e) => {
                let outcome = Outcome::Failed {
                    kind: FailureKind::Permanent,
                    code: "invalid_event".to_owned(),
                    error: e.to_string(),
                };
                return (outcome, fields);
            }
        };
        fields.event_id = Some(event.id().to_owned());
        fields.bucket = Some(event.bucket().to_owned());
        fields.handle = Some(event.handle().to_owned());
        fields.top_hash = Some(event.top_hash().to_owned());

        // Until the outcome is recorded, no other copy of this event gets past this point.
        let _only_copy = self.in_flight.lock(event.id()).await;
        if self.handled.is_done(event.id(), dedupe_now()) {
            return (Outcome::Duplicate, fields);
        }
        let matched: Vec<&Route> = self.routes.matching(event.envelope()).collect();
        fields.routes = matched.iter().map(|r| r.name.clone()).collect();
        if matched.is_empty() {
            return (Outcome::Filtered, fields);
        }

        let pending: Vec<&Route> = matched
            .into_iter()
            .filter(|route| !self.handled.was_sent(event.id(), &route.name, dedupe_now()))
            .collect();
        let details = self.read_details(&event, &pending).await;
        let done = pending.len() < fields.routes.len();
        let outcome = self
            .send_routes(&event, pending, details.as_ref(), done)
            .await;
        // Only what is finished for good: a copy hidden while another task holds a lease is
        // not (that task may die before sending, and the next copy must claim again).
        if outcome.is_final() {
            self.handled.record_done(event.id(), dedupe_now());
        }
        (outcome, fields)
    }

    /// The event's details, read once when a pending route uses them and `s3.details` is on.
    async fn read_details(
        &self,
        event: &PackageEvent,
        pending: &[&Route],
    ) -> Option<Result<Details, StoreError>> {
        let source = self.details.as_ref()?;
        if !pending.iter().any(|route| route.needs_details()) {
            return None;
        }
        let wanted = DetailsWanted {
            tables: pending.iter().any(|route| route.reads_tables),
        };
        let started = Instant::now();
        let read = source.details(event, wanted).await;
        self.instruments
            .metrics
            .observe(Histogram::DetailsRead, started.elapsed());
        Some(read)
    }

    /// Decides and sends each pending route, then sums up (see [`Outcome::from_routes`]).
    async fn send_routes(
        &self,
        event: &PackageEvent,
        pending: Vec<&Route>,
        details: Option<&Result<Details, StoreError>>,
        already_sent: bool,
    ) -> Outcome {
        let mut results = Vec::with_capacity(pending.len());
        for route in pending {
            results.push(self.route_result(event, route, details).await);
        }
        Outcome::from_routes(results, already_sent)
    }

    /// What one route does with the event: decide on its details, then send.
    async fn route_result(
        &self,
        event: &PackageEvent,
        route: &Route,
        details: Option<&Result<Details, StoreError>>,
    ) -> RouteResult {
        let read = match details {
            Some(Err(e)) if route.needs_details() => {
                // Routes that do not use details still go out; this one waits for a retry.
                return RouteResult::Failed(Outcome::Failed {
                    kind: FailureKind::Transient,
                    code: e.code.clone(),
                    error: format!("route \"{}\": package details: {e}", route.name),
                });
            }
            Some(Ok(details)) => Some(details),
            _ => None,
        };
        match route.decide(read) {
            Decision::Send => {
                if let Some(schedule) = &route.digest {
                    return self.record(event, route, schedule, read).await;
                }
                let Some(to) = addressees(event, route, read) else {
                    return RouteResult::Filtered;
                };
                self.send_route(event, route, read, &to).await
            }
            Decision::SkipUnchanged => RouteResult::Unchanged,
            Decision::Filtered => {
                tracing::debug!(route = %route.name, "package_pattern does not match");
                RouteResult::Filtered
            }
            Decision::Unevaluable(reason) => RouteResult::Failed(Outcome::Failed {
                kind: FailureKind::Permanent,
                code: "incomplete_details".to_owned(),
                error: format!("route \"{}\": {reason}", route.name),
            }),
        }
    }

    /// Asks the state table whether it answers again (the probe of a paused worker).
    ///
    /// # Errors
    /// The table still fails; Ok when there is no table.
    pub async fn probe_state(&self) -> Result<(), StateError> {
        match &self.claims {
            Some(claims) => claims.store().probe().await,
            None => Ok(()),
        }
    }

    /// Counts SES feedback for its route (only configured routes become labels) and logs it:
    /// WARN for bounces and complaints, which need someone to act, INFO otherwise.
    fn count_feedback(&self, feedback: &Feedback) {
        let route = feedback
            .route
            .as_deref()
            .and_then(|tag| self.routes.by_tag(tag))
            .map_or(UNKNOWN_ROUTE, |route| route.name.as_str());
        self.instruments.metrics.add_feedback(route, feedback.kind);
        let recipients = feedback.recipients.join(", ");
        let subtype = feedback.subtype.as_deref().unwrap_or_default();
        let message_id = feedback.message_id.as_deref().unwrap_or_default();
        let kind = feedback.kind.as_str();
        match feedback.kind {
            FeedbackKind::Bounce | FeedbackKind::Complaint => tracing::warn!(
                feedback = kind, route, recipients = %recipients, subtype, ses_message_id = message_id,
                detail_type = %feedback.detail_type, "SES feedback: {kind}"
            ),
            FeedbackKind::DeliveryDelay | FeedbackKind::Other => tracing::info!(
                feedback = kind, route, recipients = %recipients, subtype, ses_message_id = message_id,
                detail_type = %feedback.detail_type, "SES feedback: {kind}"
            ),
        }
    }
}

/// Now, for the dedupe record: tokio's clock, which a simulation pauses and advances (the same
/// as the system's monotonic clock otherwise).
fn dedupe_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The To addresses of a route's email for this package, after one WARN line for what
/// `to_from` dropped; None when nobody at all is left to receive it (the route is then
/// filtered, with a WARN line saying why).
fn addressees(
    event: &PackageEvent,
    route: &Route,
    details: Option<&Details>,
) -> Option<Vec<EmailAddress>> {
    // The package as JSON only for a route that reads addresses from it.
    let package = details
        .filter(|_| route.metadata_recipients.is_some())
        .map(Details::package_json);
    let addressees = route.addressees(package.as_ref());
    if let Some(selection) = &addressees.selection {
        warn_dropped(event, route, selection);
    }
    if addressees.nobody {
        tracing::warn!(
            route = %route.name,
            bucket = event.bucket(),
            handle = event.handle(),
            top_hash = event.top_hash(),
            "no recipients left: the package names no allowed address at to_from; nothing sent for this route"
        );
        return None;
    }
    Some(addressees.to)
}

/// One WARN line for the invalid or foreign `to_from` addresses, one for those over the limit.
fn warn_dropped(event: &PackageEvent, route: &Route, selection: &Selection) {
    if selection.dropped_count > 0 {
        let first: Vec<String> = selection
            .dropped
            .iter()
            .map(|d| format!("{} ({})", d.value, d.reason))
            .collect();
        tracing::warn!(
            route = %route.name,
            bucket = event.bucket(),
            handle = event.handle(),
            top_hash = event.top_hash(),
            dropped = selection.dropped_count,
            first = %first.join("; "),
            "to_from: addresses dropped (invalid, or outside allowed_domains)"
        );
    }
    if selection.over_limit > 0 {
        tracing::warn!(
            route = %route.name,
            bucket = event.bucket(),
            handle = event.handle(),
            top_hash = event.top_hash(),
            dropped = selection.over_limit,
            max_recipients = route.max_recipients,
            "to_from: addresses dropped over max_recipients, the last in metadata order"
        );
    }
}

mod digests;
mod send;
pub use digests::DigestPass;

#[cfg(test)]
mod tests;
