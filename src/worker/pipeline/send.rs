//! One route's email for one event: render it, claim it in the shared state (when there is a
//! table), send it within the send-rate limit while holding the lease, and mark it sent, or give
//! the lease up when the send failed.

use std::time::{Instant, SystemTime};

use super::{dedupe_now, Pipeline, THROTTLE_PAUSE};
use crate::domain::details::Details;
use crate::domain::event::PackageEvent;
use crate::domain::render::{route_data, RenderedEmail};
use crate::domain::route::{EmailAddress, Route};
use crate::ports::{Email, FailureKind, ListManagement, Mailer, SendError};
use crate::telemetry::metrics::{Counter, Histogram};
use crate::worker::outcome::{Outcome, RouteResult};
use crate::worker::state::{Claim, Finish, LeaseKey};

impl<M: Mailer> Pipeline<M> {
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
                self.handled
                    .record_sent(event.id(), &route.name, dedupe_now());
                Ok(Some(RouteResult::Done))
            }
            Ok(Claim::Held { until_ms }) => {
                metrics.add(Counter::ClaimsHeld, 1);
                Ok(Some(RouteResult::Held(until_ms)))
            }
            Err(e) => Err(Outcome::from_state_error(&route.name, &e)),
        }
    }

    pub(super) async fn send_route(
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
                self.handled
                    .record_sent(event.id(), &route.name, dedupe_now());
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
    pub(super) fn email(
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
    pub(super) async fn send(&self, email: &Email) -> Result<String, SendError> {
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
