//! One long-poll loop: wait while the account is paused, take free slots, receive at most that
//! many messages, and hand them to a batch task (see `batch`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::batch;
use super::pause::{Cause, Gate};
use super::WorkerCore;
use crate::ports::{FailureKind, Mailer, Queue};
use crate::telemetry::metrics::Counter;

/// Pause after a failed receive, doubling up to the cap, so an unreachable queue is not hammered.
const RECEIVE_RETRY_FIRST: Duration = Duration::from_millis(500);
const RECEIVE_RETRY_MAX: Duration = Duration::from_secs(20);

/// Receives until `stop` is cancelled. The stop is checked between long polls; a long poll in
/// progress is abandoned only when the worker says so (`WorkerCore::abandon_receives`), because
/// messages it had taken stay hidden for a whole visibility timeout.
pub(super) async fn poll<Q: Queue, M: Mailer>(
    core: Arc<WorkerCore<Q, M>>,
    index: usize,
    stop: CancellationToken,
    batches: TaskTracker,
) {
    let mut retry = RECEIVE_RETRY_FIRST;
    while !stop.is_cancelled() {
        if !wait_while_paused(&core, &stop).await {
            break;
        }
        let Some(mut permit) = take_slots(&core, &stop).await else {
            break;
        };
        let options = &core.options;
        let want = u8::try_from(permit.num_permits()).unwrap_or(options.max_messages);
        let received = tokio::select! {
            // An answer that came with the abandon still counts: its messages are released.
            biased;
            received = core.queue.receive(want, options.wait_seconds, options.visibility_seconds) => received,
            () = core.abandon_receives.cancelled() => {
                tracing::debug!(poller = index, "long poll abandoned at shutdown");
                break;
            }
        };
        match received {
            Ok(messages) if messages.is_empty() => {
                core.instruments.status.progressed();
                retry = RECEIVE_RETRY_FIRST;
            }
            Ok(messages) => {
                core.instruments.status.progressed();
                core.instruments
                    .metrics
                    .add(Counter::Received, messages.len() as u64);
                retry = RECEIVE_RETRY_FIRST;
                if stop.is_cancelled() {
                    batch::release_unstarted(&core, &messages).await;
                    break;
                }
                if let Some(extra) = permit.num_permits().checked_sub(messages.len()) {
                    drop(permit.split(extra));
                }
                batches.spawn(batch::handle(Arc::clone(&core), messages, permit));
            }
            Err(e) => {
                tracing::warn!(poller = index, error = %e, retry_in_ms = retry.as_millis() as u64, "receive failed");
                drop(permit);
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RECEIVE_RETRY_MAX);
            }
        }
    }
    tracing::debug!(poller = index, "poller stopped");
}

/// Holds the poller while the account is paused; returns false if stop came first.
async fn wait_while_paused<Q, M: Mailer>(
    core: &WorkerCore<Q, M>,
    stop: &CancellationToken,
) -> bool {
    let status = &core.instruments.status;
    loop {
        let wait = match core.pause.check() {
            Gate::Open => return true,
            Gate::Wait(wait) => wait,
            Gate::Probe(Cause::SesAccount) => match core.account.account().await {
                Ok(account) if account.sending_enabled => {
                    core.pause.resume();
                    status.set_paused(None);
                    tracing::warn!("SES account can send again: resuming");
                    return true;
                }
                Err(e) if e.kind != FailureKind::AccountPaused => {
                    // The account cannot be asked (e.g. no ses:GetAccount permission):
                    // resume and let the next send tell.
                    core.pause.resume();
                    status.set_paused(None);
                    tracing::warn!(error = %e, "cannot probe the SES account; resuming to find out by sending");
                    return true;
                }
                _ => {
                    let next = core.pause.extend();
                    tracing::error!(
                        next_probe_s = next.as_secs(),
                        "SES account still cannot send; not receiving"
                    );
                    continue;
                }
            },
            Gate::Probe(Cause::StateTable) => match core.pipeline.probe_state().await {
                Ok(()) => {
                    core.pause.resume();
                    status.set_paused(None);
                    tracing::warn!("the state table answers again: resuming");
                    return true;
                }
                Err(e) => {
                    let next = core.pause.extend();
                    tracing::error!(
                        next_probe_s = next.as_secs(),
                        error = %e,
                        "the state table still cannot be used; not receiving"
                    );
                    continue;
                }
            },
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Waits for at least one free slot, then takes as many more as are free, up to a batch. One
/// poller at a time: the others wait for their turn, not for slots.
async fn take_slots<Q, M>(
    core: &WorkerCore<Q, M>,
    stop: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    // Biased, stop first: deterministic under a simulation's scheduler, and no slots are
    // taken once stopping.
    let _turn = tokio::select! {
        biased;
        () = stop.cancelled() => return None,
        turn = core.taking.lock() => turn,
    };
    let mut permit = tokio::select! {
        biased;
        () = stop.cancelled() => return None,
        permit = Arc::clone(&core.slots).acquire_owned() => permit.ok()?,
    };
    while permit.num_permits() < usize::from(core.options.max_messages) {
        match Arc::clone(&core.slots).try_acquire_owned() {
            Ok(more) => permit.merge(more),
            Err(_) => break,
        }
    }
    Some(permit)
}
