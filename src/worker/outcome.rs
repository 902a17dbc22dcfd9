//! What became of one message, and what the queue must be told about it.

use std::time::Duration;

use super::backoff::Backoff;
use super::pause::FIRST_PROBE;
use crate::ports::FailureKind;
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
}
