//! One message in, one [`Outcome`] out: parse, dedupe, match, read the package details (once,
//! when a matched route uses them), decide per route, render, send.
//!
//! Knows the domain and the [`Mailer`] port; knows nothing of queues, batches or visibility,
//! which the poller derives from the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::domain::details::{Decision, Details};
use crate::domain::event::PackageEvent;
use crate::domain::feedback::{Feedback, FeedbackKind};
use crate::domain::message::Message;
use crate::domain::recipients::Selection;
use crate::domain::render::{route_data, RenderedEmail, Renderer};
use crate::domain::route::{EmailAddress, Route, RouteTable};
use crate::ports::{
    Email, FailureKind, ListManagement, Mailer, SendError, StateError, StateFailureKind, StoreError,
};
use crate::worker::state::{Claim, Finish, LeaseKey};

use super::claims::Claims;
use super::event_lock::EventLocks;
use super::memory::EventMemory;
use super::outcome::Outcome;
use super::rate::RateLimiter;
use super::Instruments;
use crate::ports::DetailsSource;
use crate::telemetry::metrics::{Counter, Histogram, UNKNOWN_ROUTE};

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
    details: Option<Arc<dyn DetailsSource>>,
    memory: EventMemory,
    claims: Option<Claims>,
    /// Held from the dedupe check until the outcome is recorded (see `event_lock`).
    in_flight: EventLocks,
    limiter: RateLimiter,
    instruments: Instruments,
}

/// What a pipeline is made of; `App::build` (or a test) builds each part.
pub struct Parts<M> {
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
    pub details: Option<Arc<dyn DetailsSource>>,
    /// Dedupe and partial-success memory of this process.
    pub memory: EventMemory,
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
pub struct Facts {
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
    pub fn new(parts: Parts<M>) -> Self {
        let Parts {
            routes,
            renderer,
            catalog_host,
            default_from,
            contact_list,
            mailer,
            details,
            memory,
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
            memory,
            claims,
            in_flight: EventLocks::default(),
            limiter,
            instruments,
        }
    }

    /// Processes one message body. Never panics on any input; every failure is an outcome.
    pub async fn process(&self, body: &str) -> (Outcome, Facts) {
        let started = Instant::now();
        let result = self.process_body(body).await;
        self.instruments
            .metrics
            .observe(Histogram::ProcessingTime, started.elapsed());
        result
    }

    async fn process_body(&self, body: &str) -> (Outcome, Facts) {
        let mut facts = Facts::default();
        let event = match Message::parse(body) {
            Ok(Message::Package(event)) => event,
            Ok(Message::Feedback(feedback)) => {
                facts.event_id = feedback.event_id.clone();
                facts.routes.extend(feedback.route.clone());
                self.count_feedback(&feedback);
                return (Outcome::Feedback, facts);
            }
            Err(e) => {
                let outcome = Outcome::Failed {
                    kind: FailureKind::Permanent,
                    code: "invalid_event".to_owned(),
                    error: e.to_string(),
                };
                return (outcome, facts);
            }
        };
        facts.event_id = Some(event.id().to_owned());
        facts.bucket = Some(event.bucket().to_owned());
        facts.handle = Some(event.handle().to_owned());
        facts.top_hash = Some(event.top_hash().to_owned());

        // Until the outcome is recorded, no other copy of this event gets past this point.
        let _only_copy = self.in_flight.lock(event.id()).await;
        if self.memory.is_done(event.id(), memory_now()) {
            return (Outcome::Duplicate, facts);
        }
        let matched: Vec<&Route> = self.routes.matching(event.envelope()).collect();
        facts.routes = matched.iter().map(|r| r.name.clone()).collect();
        if matched.is_empty() {
            return (Outcome::Filtered, facts);
        }

        let pending: Vec<&Route> = matched
            .into_iter()
            .filter(|route| !self.memory.was_sent(event.id(), &route.name, memory_now()))
            .collect();
        let details = self.read_details(&event, &pending).await;
        let done = pending.len() < facts.routes.len();
        let outcome = self
            .send_routes(&event, pending, details.as_ref(), done)
            .await;
        // Only what is finished for good: a copy hidden while another task holds a lease is
        // not (that task may die before sending, and the next copy must claim again).
        if outcome.is_final() {
            self.memory.record_done(event.id(), memory_now());
        }
        (outcome, facts)
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
        let started = Instant::now();
        let read = source.details(event).await;
        self.instruments
            .metrics
            .observe(Histogram::DetailsRead, started.elapsed());
        Some(read)
    }

    /// Decides and sends each pending route, then sums up (see [`combine`]).
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
        combine(results, already_sent)
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

    /// Claims the route's email for this event in the state table, when there is one. Ok(None)
    /// means go ahead and send; Ok(Some) is the route's result without sending.
    async fn claim(
        &self,
        event: &PackageEvent,
        route: &Route,
        key: LeaseKey<'_>,
    ) -> Result<Option<RouteResult>, Outcome> {
        let Some(claims) = &self.claims else {
            return Ok(None);
        };
        let metrics = &self.instruments.metrics;
        match claims.claim(key).await {
            Ok(Claim::Won { takeover }) => {
                metrics.add(Counter::Claims, 1);
                if takeover {
                    metrics.add(Counter::LeaseTakeovers, 1);
                    tracing::warn!(
                        route = %route.name,
                        "took over an expired lease: the task that held it died or stalled mid-send (if SES had accepted its email, this one is a duplicate)"
                    );
                }
                Ok(None)
            }
            Ok(Claim::Done) => {
                metrics.add(Counter::ClaimsSkipped, 1);
                self.memory
                    .record_sent(event.id(), &route.name, memory_now());
                Ok(Some(RouteResult::Done))
            }
            Ok(Claim::Held { until_ms }) => {
                metrics.add(Counter::ClaimsHeld, 1);
                Ok(Some(RouteResult::Held(until_ms)))
            }
            Err(e) => Err(state_failure(&route.name, &e)),
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

    async fn send_route(
        &self,
        event: &PackageEvent,
        route: &Route,
        details: Option<&Details>,
        to: &[EmailAddress],
    ) -> RouteResult {
        match self.try_send_route(event, route, details, to).await {
            Ok(result) | Err(result) => result,
        }
    }

    async fn try_send_route(
        &self,
        event: &PackageEvent,
        route: &Route,
        details: Option<&Details>,
        to: &[EmailAddress],
    ) -> Result<RouteResult, RouteResult> {
        let data = route_data(route, event, self.catalog_host.as_deref(), details);
        let rendered = self.renderer.render(&route.template, data).map_err(|e| {
            RouteResult::Failed(Outcome::Failed {
                kind: FailureKind::Permanent,
                code: "render".to_owned(),
                error: format!("route \"{}\": {e}", route.name),
            })
        })?;
        let email = self.email(route, to, rendered, ("event_id", event.id().to_owned()));
        let key = LeaseKey::Send {
            event_id: event.id(),
            route: &route.name,
        };
        if let Some(done) = self
            .claim(event, route, key)
            .await
            .map_err(RouteResult::Failed)?
        {
            return Ok(done);
        }
        let sent = match &self.claims {
            Some(claims) => claims.hold(key, self.send(&email)).await,
            None => self.send(&email).await,
        };
        let metrics = &self.instruments.metrics;
        match sent {
            Ok(message_id) => {
                metrics.add(Counter::EmailsSent, 1);
                self.instruments.status.progressed();
                if let Some(at) = event.timestamp() {
                    // An event stamped in the future (clock skew) counts as age 0.
                    let age = SystemTime::now().duration_since(at).unwrap_or_default();
                    metrics.observe(Histogram::EventAge, age);
                }
                self.memory
                    .record_sent(event.id(), &route.name, memory_now());
                if let Some(claims) = &self.claims {
                    let finish = Finish::Sent {
                        message_id: &message_id,
                    };
                    if let Err(e) = claims.finish(key, finish).await {
                        metrics.add(Counter::UnmarkedSends, 1);
                        tracing::warn!(
                            route = %route.name,
                            ses_message_id = %message_id,
                            error = %e,
                            "sent, but the claim could not be marked sent: a redelivery after its lease ends may send this email again"
                        );
                    }
                }
                Ok(RouteResult::Sent)
            }
            Err(SendError {
                kind,
                code,
                message,
            }) => {
                if let Some(claims) = &self.claims {
                    claims.release(key).await;
                }
                // Counted in `send`; retried like any transient failure.
                let kind = match kind {
                    FailureKind::Ambiguous => FailureKind::Transient,
                    kind => kind,
                };
                if kind == FailureKind::Throttled {
                    self.limiter.slow_down(THROTTLE_PAUSE);
                }
                Err(RouteResult::Failed(Outcome::Failed {
                    kind,
                    code,
                    error: format!("route \"{}\": {message}", route.name),
                }))
            }
        }
    }

    /// A route's email to `to` (with the route's Cc, Bcc, Reply-To, sender and contact-list
    /// topic), tagged with the route's tag and `tag` (the event id, or a digest's window).
    fn email(
        &self,
        route: &Route,
        to: &[EmailAddress],
        rendered: RenderedEmail,
        tag: (&str, String),
    ) -> Email {
        let addresses = |list: &[EmailAddress]| -> Vec<String> {
            list.iter().map(|a| a.as_str().to_owned()).collect()
        };
        Email {
            from: route
                .from
                .as_ref()
                .map_or_else(|| self.default_from.clone(), |f| f.as_str().to_owned()),
            to: addresses(to),
            cc: addresses(&route.recipients.cc),
            bcc: addresses(&route.recipients.bcc),
            reply_to: addresses(&route.recipients.reply_to),
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
            tags: vec![
                // A tag SES can carry that leads back to the route (`route_tag`).
                ("route".to_owned(), route.tag()),
                (tag.0.to_owned(), tag.1),
            ],
            list: self.contact_list.as_ref().zip(route.topic.as_ref()).map(
                |(contact_list, topic)| ListManagement {
                    contact_list: contact_list.clone(),
                    topic: topic.clone(),
                },
            ),
        }
    }

    /// One SendEmail within the send-rate limit, its time recorded (the wait for the limiter
    /// not included). A failure after which SES may hold the email is counted and logged: its
    /// retry may deliver it twice.
    async fn send(&self, email: &Email) -> Result<String, SendError> {
        self.limiter.acquire().await;
        let call = Instant::now();
        let sent = self.mailer.send(email).await;
        let metrics = &self.instruments.metrics;
        metrics.observe(Histogram::SesCall, call.elapsed());
        if let Err(e) = &sent {
            if e.kind == FailureKind::Ambiguous {
                metrics.add(Counter::PossibleDuplicates, 1);
                tracing::warn!(
                    error.code = %e.code,
                    "SES may have accepted this email before the call failed: its retry may send it twice"
                );
            }
        }
        sent
    }
}

/// What became of one route of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RouteResult {
    /// SES accepted its email now.
    Sent,
    /// Sent (or recorded) earlier, by this task or another: nothing sent now.
    Done,
    /// Another task's lease on its email lasts until then (Unix milliseconds).
    Held(i64),
    /// Recorded for the route's next digest.
    Recorded,
    /// Skipped: the revision re-pushed its predecessor's content.
    Unchanged,
    /// Nothing to send: the package pattern does not match, or nobody is left to receive it.
    Filtered,
    /// It failed, this way.
    Failed(Outcome),
}

/// Now, for the dedupe memory: tokio's clock, which a simulation pauses and advances (the same
/// as the system's monotonic clock otherwise).
fn memory_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The message's outcome from its routes': the most hopeful failure if any failed; else
/// claimed elsewhere while another task sends one of them; else sent if any was sent (now, or
/// earlier: `already_sent`, or a claim found it done while others were sent or skipped); else
/// recorded; else duplicate when every route was done before; else unchanged, else filtered.
fn combine(results: Vec<RouteResult>, already_sent: bool) -> Outcome {
    let mut worst: Option<Outcome> = None;
    let mut held: Option<i64> = None;
    let (mut sent, mut done, mut recorded, mut unchanged) = (already_sent, 0, false, false);
    let routes = results.len();
    for result in results {
        match result {
            RouteResult::Failed(failure) => {
                if worst.as_ref().is_none_or(|w| rank(&failure) > rank(w)) {
                    worst = Some(failure);
                }
            }
            RouteResult::Held(until_ms) => held = Some(held.map_or(until_ms, |h| h.max(until_ms))),
            RouteResult::Sent => sent = true,
            RouteResult::Done => done += 1,
            RouteResult::Recorded => recorded = true,
            RouteResult::Unchanged => unchanged = true,
            RouteResult::Filtered => {}
        }
    }
    if let Some(failure) = worst {
        return failure;
    }
    if let Some(until_ms) = held {
        return Outcome::ClaimedElsewhere { until_ms };
    }
    match () {
        () if sent => Outcome::Sent,
        () if recorded => Outcome::Recorded,
        () if done > 0 && done == routes => Outcome::Duplicate,
        () if done > 0 => Outcome::Sent,
        () if unchanged => Outcome::Unchanged,
        () => Outcome::Filtered,
    }
}

/// A failed state call as the message's outcome: transient; unusable, which pauses the worker
/// instead of sending without the guarantee; or invalid, the message's own fault while the
/// table answers (an event id over DynamoDB's key limit), which sends it to the DLQ.
fn state_failure(route: &str, e: &StateError) -> Outcome {
    Outcome::Failed {
        kind: match e.kind {
            StateFailureKind::Transient => FailureKind::Transient,
            StateFailureKind::Unusable => FailureKind::StateUnavailable,
            StateFailureKind::Invalid => FailureKind::Permanent,
        },
        code: e.code.clone(),
        error: format!("route \"{route}\": state table: {e}"),
    }
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

/// When routes fail differently, the message's fate follows the most hopeful failure: anything
/// that may succeed later beats permanent, so a permanent error in one route cannot send a
/// message to the DLQ while another route still deserves its retries.
fn rank(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Failed { kind, .. } => match kind {
            FailureKind::Permanent => 1,
            FailureKind::Transient | FailureKind::Ambiguous => 2,
            FailureKind::Throttled => 3,
            FailureKind::AccountPaused | FailureKind::StateUnavailable => 4,
        },
        _ => 0,
    }
}

mod digests;
pub use digests::DigestPass;

#[cfg(test)]
mod tests;
