//! Wiring: from [`Settings`] to a running worker with real AWS clients, its health listener and
//! metrics reporter, and the stop signal. The AWS clients are built here for every command, so
//! `run`, `send-test-event` and `dlq` reach the same endpoints with the same region.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use tokio_util::sync::CancellationToken;

use crate::aws::admin::sqs::SqsAdmin;
use crate::aws::dynamodb::DynamoTable;
use crate::aws::s3::S3Store;
use crate::aws::ses::SesMailer;
use crate::aws::skew::SkewWatch;
use crate::aws::sqs::SqsQueue;
use crate::config::{ClaimTtl, DlqRetention, Settings};
use crate::domain::details::Details;
use crate::domain::digest::{digest_data, DigestEntry, Schedule, Window};
use crate::domain::event::PackageEvent;
use crate::domain::manifest::ManifestLimits;
use crate::domain::render::{route_data, Renderer};
use crate::domain::route::{EmailAddress, Route, RouteTable};
use crate::ports::{AccountStatus, Mailer};
use crate::state::{StateOptions, StateStore};
use crate::telemetry::emf::{report_emf, EmfReporter};
use crate::worker::claims::Claims;
use crate::worker::details::{CacheLimits, DetailsReader, DetailsSource, MemoryBudget};
use crate::worker::memory::EventMemory;
use crate::worker::rate::RateLimiter;
use crate::worker::{Backoff, Instruments, Parts, Pipeline, Worker, WorkerOptions};

/// A built-in sample event, used to try every template once at start-up.
const SAMPLE_EVENT: &str = include_str!("../events/package-revision.json");
/// The details of a real quilt3 revision with changes, tried with every template that shows
/// details (see `events/README.md`).
const SAMPLE_DETAILS: &str = include_str!("../events/package-details.json");

/// The built-in sample details.
///
/// # Errors
/// Only if the file compiled into the binary is not the documented shape (a test checks it).
pub fn sample_details() -> anyhow::Result<Details> {
    let value: serde_json::Value =
        serde_json::from_str(SAMPLE_DETAILS).context("built-in sample details")?;
    let unchanged = value["changes"]["unchanged"].as_bool().unwrap_or(false);
    Ok(Details {
        package: value["package"].clone(),
        changes: value["changes"].clone(),
        unchanged,
    })
}

/// Routes and templates, compiled and loaded: everything `validate` checks.
pub struct Compiled {
    /// The compiled routes.
    pub routes: RouteTable,
    /// The loaded templates.
    pub renderer: Renderer,
    /// Problems that do not stop start-up (a template that fails on the sample event may still
    /// work on real ones), one line each, naming the route.
    pub warnings: Vec<String>,
}

/// Compiles every route pattern and loads every template the routes name.
///
/// # Errors
/// The first route or template that is invalid, named.
pub fn compile(settings: &Settings) -> anyhow::Result<Compiled> {
    let routes = RouteTable::compile(&settings.routes)?;
    let renderer = crate::templates::load_dir(
        &settings.templates.dir,
        routes.routes().iter().map(|r| r.template.as_str()),
    )
    .with_context(|| format!("templates in {}", settings.templates.dir.display()))?;
    let sample = PackageEvent::parse(SAMPLE_EVENT).context("built-in sample event")?;
    let details = sample_details()?;
    // Details as they come: with changes, a first revision, and a manifest that was not read
    // whole (`changes` then has an `error` and null counts).
    let first = Details {
        changes: serde_json::Value::Null,
        ..details.clone()
    };
    let mut incomplete = details.clone();
    incomplete.package["error"] = "the manifest could not be read to the end".into();
    if let Some(changes) = incomplete.changes.as_object_mut() {
        changes.insert(
            "error".to_owned(),
            "the current revision's manifest was not read whole".into(),
        );
        for key in ["added", "removed", "modified", "bytes_delta", "user_meta"] {
            changes.insert(key.to_owned(), serde_json::Value::Null);
        }
    }
    let variants = [details, first, incomplete];
    let host = settings.catalog.host.as_deref();
    let mut warnings = Vec::new();
    for route in routes.routes() {
        if let Some(schedule) = &route.digest {
            warnings.extend(try_digest(
                &renderer, route, schedule, &sample, &variants, host,
            ));
            continue;
        }
        // Details may be missing for any event (s3.details off, a store that failed), so a
        // template must render both without and with them.
        let mut cases = vec![None];
        if route.details && settings.s3.details {
            cases.extend(variants.iter().map(Some));
        }
        for case in cases {
            let data = route_data(route, &sample, host, case);
            if let Err(e) = renderer.render(&route.template, data) {
                let which = match case.map(|d| (d.changes.is_null(), d.error().is_some())) {
                    None => "without package details",
                    Some((true, _)) => "as a first revision",
                    Some((_, true)) => "with incomplete package details",
                    Some(_) => "with package details",
                };
                warnings.push(format!(
                    "route \"{}\": template \"{}\" fails on the sample package event {which}: {e}",
                    route.name, route.template
                ));
            }
        }
    }
    Ok(Compiled {
        routes,
        renderer,
        warnings,
    })
}

/// Tries a digest route's template on a digest of the sample event: alone without details, and
/// beside revisions with each kind of details. The problem, if any, naming the route.
fn try_digest(
    renderer: &Renderer,
    route: &Route,
    schedule: &Schedule,
    sample: &PackageEvent,
    variants: &[Details],
    host: Option<&str>,
) -> Option<String> {
    let window = sample
        .timestamp()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(Window { start: 0, end: 0 }, |d| {
            schedule.window_at(i64::try_from(d.as_secs()).unwrap_or(0))
        });
    let mut entries = vec![DigestEntry::new(sample, None)];
    for (i, details) in variants.iter().enumerate() {
        let mut entry = DigestEntry::new(sample, Some(details));
        entry.event_id = format!("{}-{i}", entry.event_id);
        entries.push(entry);
    }
    let cases = [vec![entries[0].clone()], entries];
    for entries in cases {
        let data = digest_data(route, schedule, window, entries, host);
        if let Err(e) = renderer.render(&route.template, data) {
            return Some(format!(
                "route \"{}\": digest template \"{}\" fails on a digest of the sample package event: {e}",
                route.name, route.template
            ));
        }
    }
    None
}

/// Loads the AWS SDK configuration (credentials, region) from the standard chain, with
/// `aws.region` on top. Every command that talks to AWS starts here.
///
/// Stalled-stream protection is off: it times every body chunk of every request, and each
/// client already bounds every attempt with a timeout (`sqs_client`, `ses_client`), which also
/// ends a stalled stream.
///
/// # Errors
/// No region anywhere in the chain.
pub async fn sdk_config(settings: &Settings) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if let Some(region) = &settings.aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        anyhow::bail!("no AWS region: set `aws.region`, QUILT_NOTIFY__AWS__REGION or AWS_REGION");
    }
    Ok(sdk)
}

/// The clock-skew watch of a command that exports no metrics: it only warns. The daemon's
/// records into its metrics (`App::build`).
pub fn skew_watch(settings: &Settings) -> Arc<SkewWatch> {
    SkewWatch::new(
        settings.state.max_clock_skew(),
        Arc::new(crate::telemetry::metrics::Metrics::default()),
    )
}

/// An SQS client for `queue.endpoint_url`, with attempts long enough for the configured long
/// poll. Every client's answers feed `skew`.
pub fn sqs_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_sqs::Client {
    let wait = u64::from(settings.queue.wait_time_seconds);
    let mut config = aws_sdk_sqs::config::Builder::from(sdk);
    config.set_endpoint_url(settings.queue.endpoint_url.clone());
    let config = config
        .timeout_config(timeouts(wait + 10, None))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// An SES v2 client for `ses.endpoint_url`.
pub fn ses_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_sesv2::Client {
    let mut config = aws_sdk_sesv2::config::Builder::from(sdk);
    config.set_endpoint_url(settings.ses.endpoint_url.clone());
    let config = config
        .timeout_config(timeouts(10, Some(30)))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_sesv2::Client::from_conf(config)
}

/// An S3 client for `s3.endpoint_url`, path-style when an endpoint is set (LocalStack and most
/// S3-compatible stores do not resolve bucket sub-domains).
pub fn s3_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(sdk);
    config.set_endpoint_url(settings.s3.endpoint_url.clone());
    let config = config
        .force_path_style(settings.s3.endpoint_url.is_some())
        .timeout_config(timeouts(10, None))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A DynamoDB client for `state.endpoint_url`.
pub fn dynamodb_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_dynamodb::Client {
    let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
    config.set_endpoint_url(settings.state.endpoint_url.clone());
    let config = config
        .timeout_config(timeouts(5, Some(20)))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The shared state table of `state.table`, when set, whose items live `ttl` (see
/// [`claim_ttl`]) and whose leases count as ended only after the allowed clock skew.
pub fn state_store(
    sdk: &SdkConfig,
    settings: &Settings,
    ttl: Duration,
    skew: &Arc<SkewWatch>,
) -> Option<StateStore> {
    let table = settings.state.table.as_ref()?;
    let options = StateOptions {
        ttl,
        skew_margin: settings.state.max_clock_skew(),
    };
    let table = DynamoTable::new(dynamodb_client(sdk, settings, skew), table.clone());
    Some(StateStore::new(Arc::new(table), options))
}

/// How long the DLQ lookup may take at start-up before the configured retention stands in.
const DLQ_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long claims live: `state.ttl_days`, or a day longer than the queue's DLQ keeps messages,
/// read from SQS (or `state.dlq_retention_days` when it cannot be; see
/// [`StateSettings::claim_ttl`](crate::config::StateSettings::claim_ttl)).
pub async fn claim_ttl(sdk: &SdkConfig, settings: &Settings, skew: &Arc<SkewWatch>) -> ClaimTtl {
    let lookup = dlq_retention(sdk, settings, skew);
    let dlq = match tokio::time::timeout(DLQ_LOOKUP_TIMEOUT, lookup).await {
        Ok(found) => found,
        Err(_) => Err(format!(
            "no answer within {} s",
            DLQ_LOOKUP_TIMEOUT.as_secs()
        )),
    };
    settings.state.claim_ttl(dlq)
}

/// The retention of the queue's DLQ: its RedrivePolicy names the DLQ's ARN, GetQueueUrl finds
/// it, GetQueueAttributes says how long it keeps messages.
async fn dlq_retention(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> Result<DlqRetention, String> {
    let sqs = SqsAdmin::new(sqs_client(sdk, settings, skew));
    let facts = sqs
        .facts(&settings.queue.url)
        .await
        .map_err(|e| e.to_string())?;
    let arn = facts
        .dead_letter_arn
        .ok_or_else(|| "the queue has no redrive policy naming a DLQ".to_owned())?;
    let url = sqs.url_of(&arn).await.map_err(|e| e.to_string())?;
    let seconds = sqs
        .retention_seconds(&url)
        .await
        .map_err(|e| e.to_string())?;
    Ok(DlqRetention {
        queue: arn.rsplit(':').next().unwrap_or(&arn).to_owned(),
        seconds,
    })
}

/// An EventBridge client for `events.endpoint_url` (only `send-test-event` uses one).
pub fn events_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_eventbridge::Client {
    let mut config = aws_sdk_eventbridge::config::Builder::from(sdk);
    config.set_endpoint_url(settings.events.endpoint_url.clone());
    let config = config
        .timeout_config(timeouts(10, None))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

/// Every client connects within 5 s and bounds each attempt (and, when given, the whole call
/// with its retries). These timeouts also end a stalled stream (see `sdk_config`).
fn timeouts(attempt_seconds: u64, operation_seconds: Option<u64>) -> TimeoutConfig {
    let mut builder = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(attempt_seconds));
    if let Some(seconds) = operation_seconds {
        builder = builder.operation_timeout(Duration::from_secs(seconds));
    }
    builder.build()
}

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
            Arc::new(reader) as Arc<dyn DetailsSource>
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
        let pipeline = Pipeline::new(Parts {
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
            memory: EventMemory::new(
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
            tokio::spawn(crate::health::serve(
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
