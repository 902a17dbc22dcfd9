//! One long-poll loop, and the handling of each batch it receives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::metrics::Counter;
use super::outcome::Outcome;
use super::pause::Gate;
use super::pipeline::Facts;
use super::Shared;
use crate::ports::{FailureKind, Mailer, Queue, ReceivedMessage, VisibilityChange};

/// Pause after a failed receive, doubling up to the cap, so an unreachable queue is not hammered.
const RECEIVE_RETRY_FIRST: Duration = Duration::from_millis(500);
const RECEIVE_RETRY_MAX: Duration = Duration::from_secs(20);

/// Receives until `stop` is cancelled. The stop is checked between long polls, never during one:
/// abandoning a receive in flight would leave its batch hidden for a whole visibility timeout.
pub(super) async fn poll<Q: Queue, M: Mailer>(
    shared: Arc<Shared<Q, M>>,
    index: usize,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut retry = RECEIVE_RETRY_FIRST;
    while !stop.is_cancelled() {
        if !wait_while_paused(&shared, &stop).await {
            break;
        }
        let Some(mut permit) = take_slots(&shared, &stop).await else {
            break;
        };
        let options = &shared.options;
        let want = u8::try_from(permit.num_permits()).unwrap_or(options.max_messages);
        let received = shared
            .queue
            .receive(want, options.wait_seconds, options.visibility_seconds)
            .await;
        match received {
            Ok(messages) if messages.is_empty() => {
                shared.status.receive_succeeded();
                retry = RECEIVE_RETRY_FIRST;
            }
            Ok(messages) => {
                shared.status.receive_succeeded();
                shared.metrics.add(Counter::Received, messages.len() as u64);
                retry = RECEIVE_RETRY_FIRST;
                if stop.is_cancelled() {
                    release_unstarted(&shared, &messages).await;
                    break;
                }
                if let Some(extra) = permit.num_permits().checked_sub(messages.len()) {
                    drop(permit.split(extra));
                }
                tracker.spawn(handle_batch(Arc::clone(&shared), messages, permit));
            }
            Err(e) => {
                tracing::warn!(poller = index, error = %e, retry_in_ms = retry.as_millis() as u64, "receive failed");
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = stop.cancelled() => {}
                }
                retry = (retry * 2).min(RECEIVE_RETRY_MAX);
            }
        }
    }
    tracing::debug!(poller = index, "poller stopped");
}

/// Holds the poller while the account is paused; returns false if stop came first.
async fn wait_while_paused<Q, M: Mailer>(shared: &Shared<Q, M>, stop: &CancellationToken) -> bool {
    loop {
        let wait = match shared.pause.check() {
            Gate::Open => return true,
            Gate::Wait(wait) => wait,
            Gate::Probe => {
                match shared.pipeline.mailer().account().await {
                    Ok(status) if status.sending_enabled => {
                        shared.pause.resume();
                        shared.status.set_paused(false);
                        tracing::warn!("SES account can send again: resuming");
                        return true;
                    }
                    Err(e) if e.kind != FailureKind::AccountPaused => {
                        // The account cannot be asked (e.g. no ses:GetAccount permission):
                        // resume and let the next send tell.
                        shared.pause.resume();
                        shared.status.set_paused(false);
                        tracing::warn!(error = %e, "cannot probe the SES account; resuming to find out by sending");
                        return true;
                    }
                    _ => {
                        let next = shared.pause.extend();
                        tracing::error!(
                            next_probe_s = next.as_secs(),
                            "SES account still cannot send; not receiving"
                        );
                        continue;
                    }
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return false,
        }
    }
}

/// Waits for at least one free slot, then takes as many more as are free, up to a batch. One
/// poller at a time: the others wait for their turn, not for slots.
async fn take_slots<Q, M>(
    shared: &Shared<Q, M>,
    stop: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    let _turn = tokio::select! {
        turn = shared.taking.lock() => turn,
        () = stop.cancelled() => return None,
    };
    let mut permit = tokio::select! {
        permit = Arc::clone(&shared.slots).acquire_owned() => permit.ok()?,
        () = stop.cancelled() => return None,
    };
    while permit.num_permits() < usize::from(shared.options.max_messages) {
        match Arc::clone(&shared.slots).try_acquire_owned() {
            Ok(more) => permit.merge(more),
            Err(_) => break,
        }
    }
    Some(permit)
}

/// A batch that arrived after the stop signal goes straight back to the queue.
async fn release_unstarted<Q: Queue, M>(shared: &Shared<Q, M>, messages: &[ReceivedMessage]) {
    let changes: Vec<VisibilityChange> = messages
        .iter()
        .map(|m| VisibilityChange {
            receipt: m.receipt(),
            seconds: 0,
        })
        .collect();
    shared.metrics.add(Counter::Released, changes.len() as u64);
    if let Err(e) = shared.queue.change_visibility(&changes).await {
        tracing::warn!(error = %e, count = changes.len(), "could not release messages received during shutdown; they return after the visibility timeout");
    }
}

/// Processes a batch concurrently, renews its visibility while it runs, then settles every
/// message with the queue. The permit (its slots) is held until then.
async fn handle_batch<Q: Queue, M: Mailer>(
    shared: Arc<Shared<Q, M>>,
    messages: Vec<ReceivedMessage>,
    _slots: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut pending: HashMap<tokio::task::Id, ReceivedMessage> = HashMap::new();
    for message in messages {
        let worker = Arc::clone(&shared);
        let body = message.body.clone();
        let span = tracing::info_span!("message", message_id = %message.message_id, receive_count = message.receive_count);
        let handle =
            tasks.spawn(async move { worker.pipeline.process(&body).await }.instrument(span));
        pending.insert(handle.id(), message);
    }

    let renew_every = Duration::from_secs(u64::from(shared.options.visibility_seconds.max(2) / 2));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    let mut results: Vec<(ReceivedMessage, Outcome, Facts)> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        tokio::select! {
            joined = tasks.join_next_with_id() => {
                let Some(joined) = joined else { break };
                let (id, result) = match joined {
                    Ok((id, (outcome, facts))) => (id, (outcome, facts)),
                    Err(e) => {
                        // A panic is a bug in this program, never the message's fault: retry it.
                        let outcome = Outcome::Failed { kind: FailureKind::Transient, code: "panic".to_owned(), error: e.to_string() };
                        (e.id(), (outcome, Facts::default()))
                    }
                };
                if let Some(message) = pending.remove(&id) {
                    results.push((message, result.0, result.1));
                }
            }
            // Finished messages wait for the batch's delete, so they are renewed too: one slow
            // message must not let its finished neighbours reappear and be sent again.
            _ = heartbeat.tick() => {
                renew(&shared, pending.values().chain(results.iter().map(|(m, _, _)| m))).await;
            }
            () = shared.deadline_passed.cancelled() => {
                tasks.abort_all();
                for (_, message) in pending.drain() {
                    results.push((message, Outcome::Interrupted, Facts::default()));
                }
            }
        }
    }
    settle(&shared, results, started).await;
}

/// Extends the visibility of messages still being worked on, before it runs out.
async fn renew<'a, Q: Queue, M>(
    shared: &Shared<Q, M>,
    pending: impl Iterator<Item = &'a ReceivedMessage>,
) {
    let changes: Vec<VisibilityChange> = pending
        .map(|m| VisibilityChange {
            receipt: m.receipt(),
            seconds: shared.options.visibility_seconds,
        })
        .collect();
    match shared.queue.change_visibility(&changes).await {
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
    shared: &Shared<Q, M>,
    results: Vec<(ReceivedMessage, Outcome, Facts)>,
    started: Instant,
) {
    let account_paused = results.iter().any(|(_, outcome, _)| {
        matches!(
            outcome,
            Outcome::Failed {
                kind: FailureKind::AccountPaused,
                ..
            }
        )
    });
    if account_paused && shared.pause.trip() {
        shared.status.set_paused(true);
        tracing::error!(
            "SES says the account cannot send (paused or suspended): stopping receives and keeping messages in the queue until a probe finds it enabled"
        );
    }
    let mut deletes = Vec::new();
    let mut changes = Vec::new();
    for (message, outcome, _) in &results {
        if outcome.is_settled() {
            deletes.push(message.receipt());
        } else {
            changes.push(VisibilityChange {
                receipt: message.receipt(),
                seconds: release_after(shared, message, outcome),
            });
        }
    }
    let undeleted = settle_call(
        "delete",
        shared.queue.delete(&deletes),
        &deletes
            .iter()
            .map(|d| d.message_id.clone())
            .collect::<Vec<_>>(),
    )
    .await;
    let unreleased = settle_call(
        "change visibility",
        shared.queue.change_visibility(&changes),
        &changes
            .iter()
            .map(|c| c.receipt.message_id.clone())
            .collect::<Vec<_>>(),
    )
    .await;

    // Counted before the log lines are written, so whoever sees a line sees its counts.
    let metrics = &shared.metrics;
    for (_, outcome, _) in &results {
        metrics.add(Counter::for_outcome(outcome), 1);
    }
    let deleted = deletes
        .iter()
        .filter(|d| !undeleted.contains(&d.message_id))
        .count();
    metrics.add(Counter::Deleted, deleted as u64);
    metrics.add(
        Counter::Unacknowledged,
        (undeleted.len() + unreleased.len()) as u64,
    );

    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    for (message, outcome, facts) in &results {
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
                let seen = shared.reported.is_done(&message.message_id, now);
                shared.reported.record_done(&message.message_id, now);
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
        log_outcome(message, outcome, facts, logged);
    }
}

fn release_after<Q, M>(shared: &Shared<Q, M>, message: &ReceivedMessage, outcome: &Outcome) -> u32 {
    match outcome {
        Outcome::Failed {
            kind: FailureKind::Permanent,
            ..
        }
        | Outcome::Interrupted => 0,
        // Not the message's fault: hide it until the next account probe, whatever its count.
        Outcome::Failed {
            kind: FailureKind::AccountPaused,
            ..
        } => {
            let wait = shared
                .pause
                .remaining()
                .unwrap_or(super::pause::FIRST_PROBE);
            u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX)
        }
        _ => shared
            .options
            .backoff
            .delay(message.receive_count, fastrand::f64()),
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
fn log_outcome(message: &ReceivedMessage, outcome: &Outcome, facts: &Facts, logged: Logged) {
    let Logged {
        elapsed_ms,
        acknowledged,
        visible_in_s,
        first_report,
    } = logged;
    let routes = facts.routes.join(",");
    macro_rules! line {
        ($level:ident, $($extra:tt)*) => {
            tracing::$level!(
                message_id = %message.message_id,
                receive_count = message.receive_count,
                event_id = facts.event_id.as_deref(),
                bucket = facts.bucket.as_deref(),
                handle = facts.handle.as_deref(),
                top_hash = facts.top_hash.as_deref(),
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
