//! Wiring: from [`Settings`] to a running worker with real AWS clients, its health listener and
//! metrics reporter, and the stop signal. The AWS clients are built here for every command, so
//! `run`, `send-test-event` and `dlq` reach the same endpoints with the same region.

mod checks;
mod clients;

pub use checks::{compile, sample_details, sample_tables, CompiledConfig};
pub use clients::{
    claim_ttl, dynamodb_client, events_client, s3_client, sdk_config, ses_client, skew_watch,
    sqs_client, state_store,
};

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::adapters::aws::s3::S3Store;
use crate::adapters::aws::ses::SesMailer;
use crate::adapters::aws::skew::SkewWatch;
use crate::adapters::aws::sqs::SqsQueue;
use crate::config::Settings;
use crate::domain::manifest::ManifestLimits;
use crate::domain::route::EmailAddress;
use crate::ports::DynDetailsSource;
use crate::ports::{AccountStatus, Mailer};
use crate::telemetry::emf::{report_emf, EmfReporter};
use crate::worker::claims::Claims;
use crate::worker::dedupe::HandledEvents;
use crate::worker::details::{CacheLimits, DetailsReader, MemoryBudget};
use crate::worker::rate::RateLimiter;
use crate::worker::{Backoff, Instruments, Pipeline, PipelineParts, Worker, WorkerOptions};

/// The daemon, built from settings, ready to run.
pub struct App {
    worker: Worker<SqsQueue, SesMailer>,
    /// The worker's metrics and status, read by the health listener and the EMF reporter.
    instruments: Instruments,
    health: Option<(tokio::net::TcpListener, Duration)>,
    /// EMF reporter and its interval, when EMF lines are on.
    emf: Option<(EmfReporter, Duration)>,
}

impl App {
    /// Compiles routes and templates and builds the AWS clients.
    ///
    /// # Errors
    /// Invalid routes or templates, or no AWS region anywhere in the chain.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let compiled = compile(settings)?;
        for warning in &compiled.warnings {
            tracing::warn!("{warning}");
        }
        let sdk = sdk_config(settings).await?;
        let instruments = Instruments::default();
        let skew = SkewWatch::new(
            settings.state.max_clock_skew(),
            Arc::clone(&instruments.metrics),
        );
        let queue = SqsQueue::new(sqs_client(&sdk, settings, &skew), &settings.queue.url);
        let mailer = SesMailer::new(
            ses_client(&sdk, settings, &skew),
            settings.ses.configuration_set.clone(),
        );

        let send_rate = match settings.ses.max_send_rate {
            rate if rate > 0.0 => rate,
            _ => discover_send_rate(&mailer).await,
        };
        let worker_settings = &settings.worker;
        let mailer = Arc::new(mailer);
        let details = settings.s3.details.then(|| {
            let limits = ManifestLimits {
                max_entries: settings.s3.max_manifest_entries,
                ..ManifestLimits::default()
            };
            let reader = DetailsReader::new(
                S3Store::new(s3_client(&sdk, settings, &skew)),
                limits,
                CacheLimits::new(settings.s3.cache_size, settings.s3.cache_megabytes),
                settings.catalog.host.clone(),
            )
            .with_memory_budget(MemoryBudget::megabytes(settings.s3.memory_megabytes as u64));
            let reader = match settings.s3.table_settings() {
                Some(tables) if compiled.routes.any_reads_tables() => {
                    tracing::info!(
                        max_tables = tables.max_tables,
                        "table files of a revision are read for changes.tables when a route that shows or filters on them matches"
                    );
                    reader.with_tables(tables)
                }
                Some(_) => {
                    tracing::info!(
                        "table files are not read: no route's template or package_pattern mentions tables"
                    );
                    reader
                }
                None => reader,
            };
            Arc::new(reader) as Arc<dyn DynDetailsSource>
        });
        let ttl = match settings.state.table {
            Some(_) => {
                let ttl = claim_ttl(&sdk, settings, &skew).await;
                tracing::info!(days = ttl.days, because = %ttl.because, "claims are kept {} days", ttl.days);
                ttl.duration()
            }
            None => Duration::ZERO,
        };
        let claims = state_store(&sdk, settings, ttl, &skew).map(|store| {
            let claims = Claims::new(
                store,
                Claims::new_owner(),
                Duration::from_secs(settings.state.lease_seconds),
            );
            tracing::info!(
                table = settings.state.table.as_deref().unwrap_or_default(),
                owner = claims.owner(),
                "shared state: one email per (event, route) across tasks"
            );
            claims
        });
        let pipeline = Pipeline::new(PipelineParts {
            routes: compiled.routes,
            renderer: compiled.renderer,
            catalog_host: settings.catalog.host.clone(),
            // In the 7-bit ASCII form SES takes (checked at load, so this parse succeeds).
            default_from: EmailAddress::parse(&settings.ses.from)
                .context("ses.from")?
                .as_str()
                .to_owned(),
            contact_list: settings.ses.contact_list.clone(),
            mailer: Arc::clone(&mailer),
            details,
            handled: HandledEvents::new(
                Duration::from_secs(worker_settings.dedupe_window_seconds),
                worker_settings.dedupe_capacity,
            ),
            claims,
            limiter: RateLimiter::new(send_rate),
            instruments: instruments.clone(),
        });
        let options = WorkerOptions {
            pollers: worker_settings.pollers,
            concurrency: worker_settings.concurrency,
            max_messages: settings.queue.max_messages,
            wait_seconds: settings.queue.wait_time_seconds,
            visibility_seconds: settings.queue.visibility_timeout_seconds,
            backoff: Backoff::new(settings.retry.base_seconds, settings.retry.max_seconds),
            shutdown_deadline: Duration::from_secs(worker_settings.shutdown_deadline_seconds),
            digest_check: Duration::from_secs(settings.state.digest_check_seconds),
        };
        let health = match &settings.health.listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("health.listen: cannot listen on {address}"))?;
                tracing::info!(address = %address, "health endpoint on /healthz, /readyz and /metrics");
                Some((
                    listener,
                    Duration::from_secs(settings.health.ready_within_seconds),
                ))
            }
            None => None,
        };
        let emf = match settings.metrics.emf_interval_seconds {
            0 => None,
            seconds => Some((
                EmfReporter::new(
                    settings.metrics.namespace.clone(),
                    queue_name(&settings.queue.url),
                ),
                Duration::from_secs(seconds),
            )),
        };
        Ok(Self {
            worker: Worker::new(queue, pipeline, mailer, instruments.clone(), options),
            instruments,
            health,
            emf,
        })
    }

    /// Runs until `shutdown` is cancelled, then drains within the deadline.
    pub async fn run(self, shutdown: CancellationToken) {
        let stop_health = CancellationToken::new();
        let metrics = Arc::clone(&self.instruments.metrics);
        if let Some((listener, ready_within)) = self.health {
            tokio::spawn(crate::telemetry::health::serve(
                listener,
                Arc::clone(&self.instruments.status),
                Arc::clone(&metrics),
                ready_within,
                stop_health.clone(),
            ));
        }
        let reporter = self.emf.map(|(reporter, every)| {
            tokio::spawn(report_emf(
                reporter,
                every,
                Arc::clone(&metrics),
                stop_health.clone(),
            ))
        });
        self.worker.run(shutdown).await;
        stop_health.cancel();
        if let Some(reporter) = reporter {
            // The last line covers the last partial interval; a lost one would undercount.
            let _ = reporter.await;
        }
    }
}

/// The queue's name: the last path segment of its URL (the EMF `Queue` dimension).
pub fn queue_name(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(url)
        .to_owned()
}

/// Asks SES for the account's maximum send rate; unlimited (0) if it will not say.
async fn discover_send_rate(mailer: &SesMailer) -> f64 {
    match mailer.account().await {
        Ok(AccountStatus {
            max_send_rate: Some(rate),
            ..
        }) if rate > 0.0 => {
            tracing::info!(max_send_rate = rate, "send rate read from SES GetAccount");
            rate
        }
        Ok(_) => {
            tracing::info!("SES GetAccount gave no send rate; sending unthrottled");
            0.0
        }
        Err(e) => {
            tracing::info!(error = %e, "could not read the send rate from SES GetAccount; sending unthrottled (set ses.max_send_rate to fix a rate)");
            0.0
        }
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT; exits the process at once (status 130) on
/// the second.
///
/// # Errors
/// The signal handlers cannot be installed.
pub fn stop_on_signals(token: CancellationToken) -> std::io::Result<()> {
    on_signals(token, || std::process::exit(130))
}

/// Installs the handlers now, before returning, and keeps the same two streams for both
/// signals: a signal that arrives before a stream exists, or between two streams, is lost, and a
/// second SIGTERM sent at once would not stop the process.
fn on_signals(
    token: CancellationToken,
    on_second: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = first, "stop signal received");
        token.cancel();
        let second = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = second, "second stop signal: exiting at once");
        on_second();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_first_signal_stops_and_a_second_exits() {
        let token = CancellationToken::new();
        let exited = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&exited);
        on_signals(token.clone(), move || flag.store(true, Ordering::SeqCst)).expect("handlers");
        // Before the handler task has even run: it must not be lost (nor kill the process).
        // SAFETY: raise only sends a signal to this process, whose handlers are installed above.
        unsafe { libc::raise(libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(5), token.cancelled())
            .await
            .expect("the first signal cancels");
        assert!(!exited.load(Ordering::SeqCst), "one signal only stops");
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGTERM) };
        for _ in 0..500 {
            if exited.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the second signal did not exit");
    }
}
