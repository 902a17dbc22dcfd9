//! The worker: long-pollers that receive batches, run each message through the [`Pipeline`], and
//! tell the queue what became of it (delete, or hide again for a while), until asked to stop.
//!
//! Talks to the outside only through the [`Queue`](crate::ports::Queue) and
//! [`Mailer`](crate::ports::Mailer) ports.

pub mod backoff;
mod batch;
pub mod claims;
pub mod clock;
pub mod dedupe;
pub mod details;
pub mod event_lock;
pub mod outcome;
pub mod pause;
pub mod pipeline;
mod poller;
pub mod rate;
pub mod state;
pub mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ports::{Mailer, Queue};
use crate::telemetry::metrics::Metrics;
pub use backoff::Backoff;
use dedupe::HandledEvents;
pub use pipeline::{Pipeline, PipelineParts};
use status::Status;

/// How the worker polls and paces itself.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Concurrent long-pollers.
    pub pollers: usize,
    /// Messages in flight at once across pollers.
    pub concurrency: usize,
    /// Messages per receive, 1..=10.
    pub max_messages: u8,
    /// Long-poll wait, 0..=20 s.
    pub wait_seconds: u8,
    /// Visibility timeout asked for on receive and renewed by the heartbeat.
    pub visibility_seconds: u32,
    /// Delay before a transiently failed message is tried again.
    pub backoff: Backoff,
    /// Time in-flight work gets after the stop signal before it is released.
    pub shutdown_deadline: Duration,
    /// How often closed digest windows are looked for (`state.digest_check_seconds`).
    pub digest_check: Duration,
}

/// Where the worker and its pipeline report what they do: counters for `/metrics` and EMF
/// lines, status for `/readyz`. Built by `App::build`, which hands the same instances to the
/// health listener and the EMF reporter.
#[derive(Debug, Clone, Default)]
pub struct Instruments {
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Progress and pause, for readiness.
    pub status: Arc<Status>,
}

/// What the pollers and their batch tasks share: the queue, the pipeline, the slots, the pause
/// and the stop signals. (Not the shared state table: that is behind the pipeline's claims.)
struct WorkerCore<Q, M> {
    queue: Q,
    pipeline: Pipeline<M>,
    /// Asks SES whether a paused account can send again (the pipeline's mailer, shared).
    account: Arc<M>,
    options: WorkerOptions,
    /// One permit per message in flight: taken before receiving, so the worker never holds
    /// more messages than it can work on.
    slots: Arc<Semaphore>,
    /// Held by the poller that is taking slots, so the slots a settled batch frees go whole to
    /// one receive instead of being split between waiting pollers (receives of 9 and 1 double
    /// the SQS calls per message: see docs/performance.md).
    taking: tokio::sync::Mutex<()>,
    /// Cancelled once stopping no longer waits for in-flight batches (none left, or the
    /// deadline passed): long polls still pending are abandoned.
    abandon_receives: CancellationToken,
    /// Cancelled when the shutdown deadline has passed: unfinished messages are released.
    deadline_passed: CancellationToken,
    /// Message ids whose permanent failure was already logged as an ERROR, so a poison message
    /// makes one ERROR line on its way to the DLQ, not one per receive.
    reported: HandledEvents,
    /// Closed while the SES account cannot send.
    pause: pause::Pause,
    /// Metrics and status.
    instruments: Instruments,
}

/// A configured worker, ready to run.
pub struct Worker<Q, M> {
    core: Arc<WorkerCore<Q, M>>,
}

impl<Q: Queue, M: Mailer> Worker<Q, M> {
    /// Assembles a worker from its ports and pipeline. `account` is the mailer the pipeline
    /// sends with, asked about the account while it is paused; `instruments` are the ones the
    /// pipeline records into.
    pub fn new(
        queue: Q,
        pipeline: Pipeline<M>,
        account: Arc<M>,
        instruments: Instruments,
        options: WorkerOptions,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Self {
            core: Arc::new(WorkerCore {
                queue,
                pipeline,
                account,
                options,
                slots,
                taking: tokio::sync::Mutex::new(()),
                abandon_receives: CancellationToken::new(),
                deadline_passed: CancellationToken::new(),
                reported: HandledEvents::new(Duration::from_secs(3600), 10_000),
                pause: pause::Pause::default(),
                instruments,
            }),
        }
    }

    /// Runs until `shutdown` is cancelled, then stops receiving, gives in-flight messages the
    /// shutdown deadline to finish, releases whatever is left, and returns.
    ///
    /// Long polls pending at the stop are abandoned as soon as no batch is in flight (at once
    /// for an idle worker), or at the deadline: a receive waits up to 20 s, and every deploy
    /// would wait for it. Messages an abandoned receive had already taken stay hidden until
    /// their visibility timeout ends, then come back: delayed, never lost.
    pub async fn run(self, shutdown: CancellationToken) {
        let pollers = TaskTracker::new();
        let batches = TaskTracker::new();
        self.core.pipeline.warn_orphaned_windows().await;
        if self.core.pipeline.has_digests() {
            pollers.spawn(send_digests(Arc::clone(&self.core), shutdown.child_token()));
        }
        for index in 0..self.core.options.pollers.max(1) {
            pollers.spawn(poller::poll(
                Arc::clone(&self.core),
                index,
                shutdown.child_token(),
                batches.clone(),
            ));
        }
        tracing::info!(
            pollers = self.core.options.pollers,
            concurrency = self.core.options.concurrency,
            "worker started"
        );
        shutdown.cancelled().await;
        let deadline = tokio::time::Instant::now() + self.core.options.shutdown_deadline;
        tracing::info!(
            deadline_s = self.core.options.shutdown_deadline.as_secs_f64(),
            "stop requested: no new receives; finishing in-flight messages"
        );
        pollers.close();
        batches.close();
        // Batches first: while one runs, a receive may still bring messages it would otherwise
        // lose to the visibility timeout; once none runs, waiting for a long poll helps no one.
        let _ = tokio::time::timeout_at(deadline, batches.wait()).await;
        self.core.abandon_receives.cancel();
        pollers.wait().await;
        // A batch spawned by a receive that answered just before the stop is waited for too.
        if tokio::time::timeout_at(deadline, batches.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline passed: releasing unfinished messages");
            self.core.deadline_passed.cancel();
            batches.wait().await;
        }
        tracing::info!("worker stopped");
    }
}

/// Sends the digests of closed windows every `digest_check` until `stop`; not while the worker
/// is paused (the SES account or the state table cannot be used). A digest being sent when the
/// stop comes is finished: the process waits for this task as for the pollers.
async fn send_digests<Q: Queue, M: Mailer>(core: Arc<WorkerCore<Q, M>>, stop: CancellationToken) {
    let mut every = tokio::time::interval(core.options.digest_check.max(Duration::from_secs(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        if core.pause.remaining().is_some() {
            continue;
        }
        let pass = core.pipeline.send_due_digests().await;
        if pass != pipeline::DigestPass::default() {
            tracing::debug!(
                sent = pass.sent,
                skipped = pass.skipped,
                failed = pass.failed,
                "digest check"
            );
        }
    }
    tracing::debug!("digest sender stopped");
}
