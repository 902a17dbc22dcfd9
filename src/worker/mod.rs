//! The worker: long-pollers that receive batches, run each message through the [`Pipeline`], and
//! tell the queue what became of it (delete, or hide again for a while), until asked to stop.
//!
//! Talks to the outside only through the [`Queue`](crate::ports::Queue) and
//! [`Mailer`](crate::ports::Mailer) ports.

pub mod backoff;
pub mod memory;
pub mod outcome;
pub mod pause;
pub mod pipeline;
mod poller;
pub mod rate;
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
use memory::EventMemory;
pub use pipeline::Pipeline;

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
}

/// Shared by the pollers and their batch tasks.
struct Shared<Q, M> {
    queue: Q,
    pipeline: Pipeline<M>,
    options: WorkerOptions,
    /// One permit per message in flight: taken before receiving, so the worker never holds
    /// more messages than it can work on.
    slots: Arc<Semaphore>,
    /// Held by the poller that is taking slots, so the slots a settled batch frees go whole to
    /// one receive instead of being split between waiting pollers (receives of 9 and 1 double
    /// the SQS calls per message: see docs/performance.md).
    taking: tokio::sync::Mutex<()>,
    /// Cancelled when the shutdown deadline has passed: unfinished messages are released.
    deadline_passed: CancellationToken,
    /// Message ids whose permanent failure was already logged as an ERROR, so a poison message
    /// makes one ERROR line on its way to the DLQ, not one per receive.
    reported: EventMemory,
    /// Closed while the SES account cannot send.
    pause: pause::Pause,
    /// For the health endpoint.
    status: Arc<status::Status>,
    /// Counters and histograms, shared with the pipeline and the exporters.
    metrics: Arc<Metrics>,
}

/// A configured worker, ready to run.
pub struct Worker<Q, M> {
    shared: Arc<Shared<Q, M>>,
}

impl<Q: Queue, M: Mailer> Worker<Q, M> {
    /// Assembles a worker from its ports and pipeline.
    pub fn new(queue: Q, pipeline: Pipeline<M>, options: WorkerOptions) -> Self {
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let metrics = pipeline.metrics();
        Self {
            shared: Arc::new(Shared {
                queue,
                pipeline,
                options,
                slots,
                taking: tokio::sync::Mutex::new(()),
                deadline_passed: CancellationToken::new(),
                reported: EventMemory::new(Duration::from_secs(3600), 10_000),
                pause: pause::Pause::default(),
                status: Arc::new(status::Status::default()),
                metrics,
            }),
        }
    }

    /// The worker's status, for a health endpoint.
    pub fn status(&self) -> Arc<status::Status> {
        Arc::clone(&self.shared.status)
    }

    /// The worker's metrics, for `/metrics` and EMF lines.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Runs until `shutdown` is cancelled, then stops receiving, gives in-flight messages the
    /// shutdown deadline to finish, releases whatever is left, and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        for index in 0..self.shared.options.pollers.max(1) {
            tracker.spawn(poller::poll(
                Arc::clone(&self.shared),
                index,
                shutdown.child_token(),
                tracker.clone(),
            ));
        }
        tracing::info!(
            pollers = self.shared.options.pollers,
            concurrency = self.shared.options.concurrency,
            "worker started"
        );
        shutdown.cancelled().await;
        tracing::info!(
            deadline_s = self.shared.options.shutdown_deadline.as_secs_f64(),
            "stop requested: no new receives; finishing in-flight messages"
        );
        tracker.close();
        let deadline = self.shared.options.shutdown_deadline;
        if tokio::time::timeout(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline passed: releasing unfinished messages");
            self.shared.deadline_passed.cancel();
            tracker.wait().await;
        }
        tracing::info!("worker stopped");
    }
}
