//! What became of one message: each route's result, folded into the message's [`Outcome`], and
//! what the queue must be told about it.

use std::time::Duration;

use super::backoff::Backoff;
use super::pause::FIRST_PROBE;
use crate::ports::{FailureKind, StateError, StateFailureKind};
use crate::telemetry::metrics::Counter;

/// The result of processing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every matched route was sent (some possibly on an earlier receive). Delete.
    Sent,
    /// No route matched: nothing is owed. Delete.
    Filtered,
    /// This event id was already handled within the dedupe window. Delete.
    Duplicate,
    /// SES feedback (a bounce, a complaint, a delivery delay) about a mail sent earlier: counted
    /// and logged. Delete.
    Feedback,
    /// The revision re-pushed its predecessor's content, and every matched route skips such
    /// revisions (`skip_unchanged`). Delete.
    Unchanged,
    /// Every route that sends at once was done earlier or now, and the digest routes recorded
    /// the event for their next digest (`recorded`). Delete.
    Recorded,
    /// Another task holds the lease on one of this event's emails (it is sending it now): the
    /// message hides until that lease ends, then shows whether the email went out.
    ClaimedElsewhere {
        /// When the other task's lease ends, Unix milliseconds.
        until_ms: i64,
    },
    /// Something failed; the message stays. Its fate follows from the kind.
    Failed {
        /// What to do about it.
        kind: FailureKind,
        /// Stable short name of the error (an SES code, `invalid_event`, `render`…).
        code: String,
        /// Why, for the log line.
        error: String,
    },
    /// Shutdown came before processing finished: release at once for another worker.
    Interrupted,
}

impl Outcome {
    /// Stable name for the `outcome` log field.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Filtered => "filtered",
            Self::Duplicate => "duplicate",
            Self::Feedback => "feedback",
            Self::Unchanged => "unchanged",
            Self::Recorded => "recorded",
            Self::ClaimedElsewhere { .. } => "claimed_elsewhere",
            Self::Failed { .. } => "failed",
            Self::Interrupted => "released",
        }
    }
}

impl Outcome {
    /// Whether nothing more is owed for this message: its queue action is delete, and only then
    /// may this process remember the event as done. Not final: claimed elsewhere (the other
    /// task may die before sending), failed, or released unfinished.
    pub fn is_final(&self) -> bool {
        match self {
            Self::Sent
            | Self::Filtered
            | Self::Duplicate
            | Self::Feedback
            | Self::Unchanged
            | Self::Recorded => true,
            Self::ClaimedElsewhere { .. } | Self::Failed { .. } | Self::Interrupted => false,
        }
    }

    /// The counter this outcome adds to.
    pub fn counter(&self) -> Counter {
        match self {
            Self::Sent => Counter::Sent,
            Self::Filtered => Counter::Filtered,
            Self::Duplicate => Counter::Duplicate,
            Self::Feedback => Counter::Feedback,
            Self::Unchanged => Counter::Unchanged,
            Self::Recorded => Counter::Recorded,
            Self::ClaimedElsewhere { .. } => Counter::ClaimedElsewhere,
            Self::Interrupted => Counter::Released,
            Self::Failed { kind, .. } => match kind {
                FailureKind::Transient | FailureKind::Ambiguous => Counter::FailedTransient,
                FailureKind::Throttled => Counter::FailedThrottled,
                FailureKind::Permanent => Counter::FailedPermanent,
                FailureKind::AccountPaused => Counter::FailedAccountPaused,
                FailureKind::StateUnavailable => Counter::FailedStateUnavailable,
            },
        }
    }
}

/// What became of one route of a message; the pipeline folds a message's route results into its
/// outcome with [`Outcome::from_routes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteResult {
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

impl Outcome {
    /// The message's outcome from its routes': the most hopeful failure if any failed; else
    /// claimed elsewhere while another task sends one of them; else sent if any was sent (now,
    /// or earlier: `already_sent`, or a claim found it done while others were sent or skipped);
    /// else recorded; else duplicate when every route was done before; else unchanged, else
    /// filtered.
    pub(crate) fn from_routes(results: Vec<RouteResult>, already_sent: bool) -> Outcome {
        let mut worst: Option<Outcome> = None;
        let mut held: Option<i64> = None;
        let (mut sent, mut done, mut recorded, mut unchanged) = (already_sent, 0, false, false);
        let routes = results.len();
        for result in results {
            match result {
                RouteResult::Failed(failure) => {
                    if worst
                        .as_ref()
                        .is_none_or(|w| hopefulness(&failure) > hopefulness(w))
                    {
                        worst = Some(failure);
                    }
                }
                RouteResult::Held(until_ms) => {
                    held = Some(held.map_or(until_ms, |h| h.max(until_ms)));
                }
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

    /// A failed state call as the outcome of `route`'s message: transient; unusable, which
    /// pauses the worker instead of sending without the guarantee; or invalid, the message's own
    /// fault while the table answers (an event id over DynamoDB's key limit), which sends it to
    /// the DLQ.
    pub(crate) fn from_state_error(route: &str, e: &StateError) -> Outcome {
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
}

/// When routes fail differently, the message's fate follows the most hopeful failure: anything
/// that may succeed later beats permanent, so a permanent error in one route cannot send a
/// message to the DLQ while another route still deserves its retries.
fn hopefulness(outcome: &Outcome) -> u8 {
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

/// What the queue is told about a message once its outcome is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    /// Finished with: delete it.
    Delete,
    /// Keep it, invisible for this many seconds (0 releases it at once).
    Hide(u32),
}

/// What decides how long a kept message stays hidden, besides its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// How many times SQS handed the message out, this receive included.
    pub receive_count: u32,
    /// The backoff for transient failures.
    pub backoff: Backoff,
    /// In `[0, 1)`: shortens the backoff by up to a fifth (pass `fastrand::f64()`).
    pub jitter: f64,
    /// Time until the next probe of a paused SES account or unusable state table, when paused.
    pub pause_remaining: Option<Duration>,
    /// Unix milliseconds now, to tell how long another task's lease still runs.
    pub now_ms: i64,
}

impl Outcome {
    /// The queue action for this outcome:
    /// - sent, filtered, duplicate, feedback, unchanged, recorded: delete;
    /// - claimed elsewhere: hidden until the other task's lease ends (at least 1 s), when the
    ///   next receive finds the email sent (duplicate) or the lease free to take over;
    /// - permanent failure, or released at shutdown: visible again at once (a permanent failure
    ///   so that the redrive policy moves it to the DLQ within seconds, an unfinished message so
    ///   that another worker takes it);
    /// - the account cannot send, or the state table is unusable: hidden until the next probe,
    ///   whatever its receive count, since it is not the message's fault (at least 1 s);
    /// - transient or throttled: hidden for the backoff of its receive count.
    pub fn queue_action(&self, retry: &Retry) -> QueueAction {
        match self {
            Self::Sent
            | Self::Filtered
            | Self::Duplicate
            | Self::Feedback
            | Self::Unchanged
            | Self::Recorded => QueueAction::Delete,
            Self::ClaimedElsewhere { until_ms } => {
                let seconds = until_ms.saturating_sub(retry.now_ms).div_euclid(1000) + 1;
                QueueAction::Hide(u32::try_from(seconds.clamp(1, 43_200)).unwrap_or(1))
            }
            Self::Failed {
                kind: FailureKind::Permanent,
                ..
            }
            | Self::Interrupted => QueueAction::Hide(0),
            Self::Failed {
                kind: FailureKind::AccountPaused | FailureKind::StateUnavailable,
                ..
            } => {
                let wait = retry.pause_remaining.unwrap_or(FIRST_PROBE);
                QueueAction::Hide(u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX))
            }
            Self::Failed {
                kind: FailureKind::Transient | FailureKind::Ambiguous | FailureKind::Throttled,
                ..
            } => QueueAction::Hide(retry.backoff.delay(retry.receive_count, retry.jitter)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(kind: FailureKind) -> Outcome {
        Outcome::Failed {
            kind,
            code: "c".into(),
            error: "e".into(),
        }
    }

    #[test]
    fn each_outcome_maps_to_one_queue_action() {
        let backoff = Backoff::new(5, 300);
        let retry = |receive_count, pause_remaining| Retry {
            receive_count,
            backoff,
            jitter: 0.0,
            pause_remaining,
            now_ms: 1_000_000,
        };
        let paused_for = |s| Some(Duration::from_secs(s));
        let table = [
            (Outcome::Sent, retry(1, None), QueueAction::Delete),
            (Outcome::Filtered, retry(3, None), QueueAction::Delete),
            (Outcome::Unchanged, retry(2, None), QueueAction::Delete),
            (Outcome::Feedback, retry(1, None), QueueAction::Delete),
            (Outcome::Recorded, retry(1, None), QueueAction::Delete),
            (
                Outcome::ClaimedElsewhere {
                    until_ms: 1_042_500,
                },
                retry(1, None),
                QueueAction::Hide(43),
            ),
            (
                Outcome::ClaimedElsewhere { until_ms: 999_000 },
                retry(4, None),
                QueueAction::Hide(1),
            ),
            (
                failed(FailureKind::StateUnavailable),
                retry(9, paused_for(20)),
                QueueAction::Hide(20),
            ),
            (
                Outcome::Duplicate,
                retry(1, paused_for(9)),
                QueueAction::Delete,
            ),
            (
                failed(FailureKind::Permanent),
                retry(1, None),
                QueueAction::Hide(0),
            ),
            (
                failed(FailureKind::Permanent),
                retry(7, None),
                QueueAction::Hide(0),
            ),
            (Outcome::Interrupted, retry(2, None), QueueAction::Hide(0)),
            (
                failed(FailureKind::Transient),
                retry(1, None),
                QueueAction::Hide(5),
            ),
            (
                failed(FailureKind::Transient),
                retry(3, None),
                QueueAction::Hide(20),
            ),
            (
                failed(FailureKind::Throttled),
                retry(2, None),
                QueueAction::Hide(10),
            ),
            (
                failed(FailureKind::Throttled),
                retry(30, None),
                QueueAction::Hide(300),
            ),
            (
                failed(FailureKind::AccountPaused),
                retry(9, paused_for(40)),
                QueueAction::Hide(40),
            ),
            (
                failed(FailureKind::AccountPaused),
                retry(1, None),
                QueueAction::Hide(5),
            ),
            (
                failed(FailureKind::AccountPaused),
                retry(1, Some(Duration::from_millis(300))),
                QueueAction::Hide(1),
            ),
        ];
        for (outcome, retry, expected) in table {
            assert_eq!(
                outcome.queue_action(&retry),
                expected,
                "{outcome:?} after {} receives, pause {:?}",
                retry.receive_count,
                retry.pause_remaining
            );
        }
    }

    #[test]
    fn an_outcome_is_final_exactly_when_its_message_is_deleted() {
        let retry = Retry {
            receive_count: 1,
            backoff: Backoff::new(5, 300),
            jitter: 0.0,
            pause_remaining: None,
            now_ms: 0,
        };
        let all = [
            Outcome::Sent,
            Outcome::Filtered,
            Outcome::Duplicate,
            Outcome::Feedback,
            Outcome::Unchanged,
            Outcome::Recorded,
            Outcome::ClaimedElsewhere { until_ms: 5_000 },
            Outcome::Interrupted,
            failed(FailureKind::Transient),
            failed(FailureKind::Ambiguous),
            failed(FailureKind::Throttled),
            failed(FailureKind::Permanent),
            failed(FailureKind::AccountPaused),
            failed(FailureKind::StateUnavailable),
        ];
        for outcome in all {
            let deleted = outcome.queue_action(&retry) == QueueAction::Delete;
            assert_eq!(outcome.is_final(), deleted, "{outcome:?}");
        }
    }

    #[test]
    fn outcomes_map_to_their_counters() {
        assert_eq!(Outcome::Sent.counter(), Counter::Sent);
        assert_eq!(Outcome::Interrupted.counter(), Counter::Released);
        assert_eq!(
            failed(FailureKind::Permanent).counter(),
            Counter::FailedPermanent
        );
        assert_eq!(
            failed(FailureKind::AccountPaused).counter(),
            Counter::FailedAccountPaused
        );
    }

    #[test]
    fn jitter_shortens_only_the_backoff() {
        let retry = Retry {
            receive_count: 1,
            backoff: Backoff::new(10, 300),
            jitter: 0.999,
            pause_remaining: None,
            now_ms: 0,
        };
        assert_eq!(
            failed(FailureKind::Transient).queue_action(&retry),
            QueueAction::Hide(9)
        );
        assert_eq!(
            failed(FailureKind::Permanent).queue_action(&retry),
            QueueAction::Hide(0)
        );
    }

    #[test]
    fn a_message_follows_its_most_hopeful_failure_then_leases_then_what_was_sent() {
        use RouteResult::{Done, Failed, Filtered, Held, Recorded, Sent, Unchanged};
        let table = [
            (
                vec![Sent, Failed(failed(FailureKind::Permanent))],
                false,
                failed(FailureKind::Permanent),
            ),
            (
                vec![
                    Failed(failed(FailureKind::Permanent)),
                    Failed(failed(FailureKind::Transient)),
                    Failed(failed(FailureKind::Throttled)),
                ],
                false,
                failed(FailureKind::Throttled),
            ),
            (
                vec![
                    Failed(failed(FailureKind::StateUnavailable)),
                    Failed(failed(FailureKind::Throttled)),
                ],
                false,
                failed(FailureKind::StateUnavailable),
            ),
            (
                vec![Sent, Held(5_000), Held(9_000)],
                false,
                Outcome::ClaimedElsewhere { until_ms: 9_000 },
            ),
            (vec![Sent, Recorded, Done], false, Outcome::Sent),
            (vec![Filtered], true, Outcome::Sent),
            (vec![Recorded, Unchanged], false, Outcome::Recorded),
            (vec![Done, Done], false, Outcome::Duplicate),
            (vec![Done, Filtered], false, Outcome::Sent),
            (vec![Unchanged, Filtered], false, Outcome::Unchanged),
            (vec![Filtered], false, Outcome::Filtered),
            (vec![], false, Outcome::Filtered),
        ];
        for (results, already_sent, expected) in table {
            let shown = format!("{results:?} (already sent: {already_sent})");
            assert_eq!(
                Outcome::from_routes(results, already_sent),
                expected,
                "{shown}"
            );
        }
    }

    #[test]
    fn a_state_error_fails_the_message_as_its_kind_says() {
        let error = |kind| StateError {
            kind,
            operation: "UpdateItem",
            table: "t".to_owned(),
            code: "Code".to_owned(),
            message: "m".to_owned(),
        };
        for (kind, expected) in [
            (StateFailureKind::Transient, FailureKind::Transient),
            (StateFailureKind::Unusable, FailureKind::StateUnavailable),
            (StateFailureKind::Invalid, FailureKind::Permanent),
        ] {
            let Outcome::Failed { kind, code, error } =
                Outcome::from_state_error("r", &error(kind))
            else {
                panic!("a failure");
            };
            assert_eq!((kind, code.as_str()), (expected, "Code"));
            assert!(
                error.starts_with("route \"r\": state table: UpdateItem"),
                "{error}"
            );
        }
    }
}
