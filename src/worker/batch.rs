//! One received batch: its messages run through the pipeline concurrently while the heartbeat
//! keeps them hidden, then each is settled with the queue (deleted, or hidden per its
//! [`QueueAction`]) and logged in one line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::outcome::{Outcome, QueueAction, Retry};
use super::pause::Cause;
use super::pipeline::LogFields;
use super::WorkerCore;
use crate::ports::{FailureKind, Mailer, Queue, ReceivedMessage, VisibilityChange};
use crate::telemetry::metrics::Counter;

/// A batch that arrived after the stop signal goes straight back to the queue.
pub(super) async fn release_unstarted<Q: Queue, M>(
    core: &WorkerCore<Q, M>,
    messages: &[ReceivedMessage],
) {
    let changes: Vec<VisibilityChange> = messages
        .iter()
        .map(|m| VisibilityChange {
            receipt: m.receipt(),
            seconds: 0,
        })
        .collect();
    core.instruments
        .metrics
        .add(Counter::Released, changes.len() as u64);
    if let Err(e) = core.queue.change_visibility(&changes).await {
        tracing::warn!(error = %e, count = changes.len(), "could not release messages received during shutdown; they return after the visibility timeout");
    }
}

/// Processes a batch concurrently, renews its visibility while it runs, then settles every
/// message with the queue. The permit (its slots) is held until then.
pub(super) async fn handle<Q: Queue, M: Mailer>(
    core: Arc<WorkerCore<Q, M>>,
    messages: Vec<ReceivedMessage>,
    _slots: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut pending: HashMap<tokio::task::Id, ReceivedMessage> = HashMap::new();
    for message in messages {
        let worker = Arc::clone(&core);
        let body = message.body.clone();
        let span = tracing::info_span!("message", message_id = %message.message_id, receive_count = message.receive_count);
        let handle =
            tasks.spawn(async move { worker.pipeline.process(&body).await }.instrument(span));
        pending.insert(handle.id(), message);
    }

    let renew_every = Duration::from_secs(u64::from(core.options.visibility_seconds.max(2) / 2));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    let mut results: Vec<(ReceivedMessage, Outcome, LogFields)> = Vec::with_capacity(pending.len());
    let mut aborted = false;
    while !pending.is_empty() {
        tokio::select! {
            // Finished tasks first: at the deadline, a message whose emails were sent must be
            // deleted, not released for another worker to send again.
            biased;
            joined = tasks.join_next_with_id() => {
                let Some(joined) = joined else { break };
                let (id, outcome, fields) = match joined {
                    Ok((id, (outcome, fields))) => (id, outcome, fields),
                    // Aborted at the deadline before it finished.
                    Err(e) if e.is_cancelled() => (e.id(), Outcome::Interrupted, LogFields::default()),
                    Err(e) => {
                        // A panic is a bug in this program, never the message's fault: retry it.
                        let outcome = Outcome::Failed { kind: FailureKind::Transient, code: "panic".to_owned(), error: e.to_string() };
                        (e.id(), outcome, LogFields::default())
                    }
                };
                if let Some(message) = pending.remove(&id) {
                    results.push((message, outcome, fields));
                }
            }
            // Finished messages wait for the batch's delete, so they are renewed too: one slow
            // message must not let its finished neighbours reappear and be sent again.
            _ = heartbeat.tick() => {
                renew(&core, pending.values().chain(results.iter().map(|(m, _, _)| m))).await;
            }
            // Abort what is unfinished and keep joining: a task that finished meanwhile still
            // answers with its outcome; the aborted ones answer "cancelled".
            () = core.deadline_passed.cancelled(), if !aborted => {
                aborted = true;
                tasks.abort_all();
            }
        }
    }
    settle(&core, results, started).await;
}

/// Extends the visibility of messages still being worked on, before it runs out.
async fn renew<'a, Q: Queue, M>(
    core: &WorkerCore<Q, M>,
    pending: impl Iterator<Item = &'a ReceivedMessage>,
) {
    let changes: Vec<VisibilityChange> = pending
        .map(|m| VisibilityChange {
            receipt: m.receipt(),
            seconds: core.options.visibility_seconds,
        })
        .collect();
    match core.queue.change_visibility(&changes).await {
        Ok(failed) if failed.is_empty() => {
            tracing::debug!(count = changes.len(), "visibility extended");
        }
        Ok(failed) => tracing::warn!(?failed, "could not extend visibility of some messages"),
        Err(e) => tracing::warn!(error = %e, "could not extend visibility"),
    }
}

/// Deletes settled messages in batches and hides failed ones for their backoff (permanent
/// failures: visibility 0, so the redrive policy moves them to the DLQ within seconds). Then
/// writes one log line per message.
async fn settle<Q: Queue, M>(
    core: &WorkerCore<Q, M>,
    results: Vec<(ReceivedMessage, Outcome, LogFields)>,
    started: Instant,
) {
    let cause = results.iter().find_map(|(_, outcome, _)| match outcome {
        Outcome::Failed {
            kind: FailureKind::AccountPaused,
            ..
        } => Some((Cause::SesAccount, None)),
        Outcome::Failed {
            kind: FailureKind::StateUnavailable,
            error,
            ..
        } => Some((Cause::StateTable, Some(error))),
        _ => None,
    });
    if let Some((cause, error)) = cause {
        if core.pause.trip(cause) {
            core.instruments.status.set_paused(Some(cause));
            match cause {
                Cause::SesAccount => tracing::error!(
                    "SES says the account cannot send (paused or suspended): stopping receives and keeping messages in the queue until a probe finds it enabled"
                ),
                Cause::StateTable => tracing::error!(
                    error = error.map_or("", String::as_str),
                    "the state table cannot be used (missing, access denied, or not this schema): stopping receives and keeping messages in the queue until a probe reads it"
                ),
            }
        }
    }
    let pause_remaining = core.pause.remaining();
    let mut deletes = Vec::new();
    let mut changes = Vec::new();
    for (message, outcome, _) in &results {
        let retry = Retry {
            receive_count: message.receive_count,
            backoff: core.options.backoff,
            jitter: fastrand::f64(),
            pause_remaining,
            now_ms: core.pipeline.now_ms(),
        };
        match outcome.queue_action(&retry) {
            QueueAction::Delete => {
                deletes.push(message.receipt());
            }
            QueueAction::Hide(seconds) => changes.push(VisibilityChange {
                receipt: message.receipt(),
                seconds,
            }),
        }
    }
    let undeleted = settle_call(
        "delete",
        core.queue.delete(&deletes),
        &deletes
            .iter()
            .map(|d| d.message_id.clone())
            .collect::<Vec<_>>(),
    )
    .await;
    let unreleased = settle_call(
        "change visibility",
        core.queue.change_visibility(&changes),
        &changes
            .iter()
            .map(|c| c.receipt.message_id.clone())
            .collect::<Vec<_>>(),
    )
    .await;

    // Counted before the log lines are written, so whoever sees a line sees its counts.
    let metrics = &core.instruments.metrics;
    for (_, outcome, _) in &results {
        metrics.add(outcome.counter(), 1);
    }
    let deleted = deletes
        .iter()
        .filter(|d| !undeleted.contains(&d.message_id))
        .count();
    metrics.add(Counter::Deleted, deleted as u64);
    if deleted > 0 {
        core.instruments.status.progressed();
    }
    metrics.add(
        Counter::Unacknowledged,
        (undeleted.len() + unreleased.len()) as u64,
    );

    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    for (message, outcome, fields) in &results {
        let acknowledged =
            !undeleted.contains(&message.message_id) && !unreleased.contains(&message.message_id);
        let visible_in_s = changes
            .iter()
            .find(|c| c.receipt.message_id == message.message_id)
            .map(|c| c.seconds);
        let first_report = match outcome {
            Outcome::Failed {
                kind: FailureKind::Permanent,
                ..
            } => {
                let now = Instant::now();
                let seen = core.reported.is_done(&message.message_id, now);
                core.reported.record_done(&message.message_id, now);
                !seen
            }
            _ => true,
        };
        let logged = Logged {
            elapsed_ms,
            acknowledged,
            visible_in_s,
            first_report,
        };
        log_outcome(message, outcome, fields, logged);
    }
}

/// Runs one settling call; on a whole-call failure every message of it counts as unsettled.
async fn settle_call(
    what: &str,
    call: impl std::future::Future<Output = Result<Vec<String>, crate::ports::QueueError>>,
    ids: &[String],
) -> Vec<String> {
    if ids.is_empty() {
        return Vec::new();
    }
    match call.await {
        Ok(failed) => failed,
        Err(e) => {
            tracing::error!(error = %e, count = ids.len(), "could not {what} messages; they return after their visibility timeout");
            ids.to_vec()
        }
    }
}

/// How the settling went, for the log line.
struct Logged {
    elapsed_ms: f64,
    acknowledged: bool,
    visible_in_s: Option<u32>,
    /// False for a permanent failure this process already reported as an ERROR.
    first_report: bool,
}

/// The one line per message that operators query.
fn log_outcome(message: &ReceivedMessage, outcome: &Outcome, fields: &LogFields, logged: Logged) {
    let Logged {
        elapsed_ms,
        acknowledged,
        visible_in_s,
        first_report,
    } = logged;
    let routes = fields.routes.join(",");
    macro_rules! line {
        ($level:ident, $($extra:tt)*) => {
            tracing::$level!(
                message_id = %message.message_id,
                receive_count = message.receive_count,
                event_id = fields.event_id.as_deref(),
                bucket = fields.bucket.as_deref(),
                handle = fields.handle.as_deref(),
                top_hash = fields.top_hash.as_deref(),
                routes = %routes,
                outcome = outcome.as_str(),
                elapsed_ms,
                acknowledged,
                $($extra)*
            )
        };
    }
    match outcome {
        Outcome::Failed {
            kind: FailureKind::Permanent,
            code,
            error,
        } if !first_report => line!(
            warn, error.kind = "permanent", error.code = %code, error = %error, visible_in_s,
            "message failed permanently again; on its way to the dead-letter queue"
        ),
        Outcome::Failed {
            kind: FailureKind::Permanent,
            code,
            error,
        } => line!(
            error, error.kind = "permanent", error.code = %code, error = %error, visible_in_s,
            "message failed permanently; released to reach the dead-letter queue"
        ),
        Outcome::Failed { kind, code, error } => line!(
            warn, error.kind = kind.as_str(), error.code = %code, error = %error, visible_in_s,
            "message failed; will be retried"
        ),
        Outcome::Interrupted => line!(
            warn,
            visible_in_s,
            "message released unfinished at shutdown"
        ),
        _ => line!(info, "message handled"),
    }
}
