//! The `quilt-notify` command line: parses flags, sets up logging, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use quilt_notify::app::{self, App};
use quilt_notify::config::Settings;
use quilt_notify::telemetry;

/// Every AWS call allocates dozens of small buffers; with glibc's malloc the allocator was about
/// 15 % of the worker's CPU per message (docs/performance.md), mimalloc's per-thread free lists
/// cost less. Built with `no_thp`: transparent huge pages would add 6 MiB to the idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns Quilt package-revision events into notification emails.
///
/// An EventBridge rule sends Quilt's `package-revision` events to an SQS queue; quilt-notify
/// long-polls that queue, matches each event against the configured routes (EventBridge
/// event patterns), reads the package's manifest from S3 to say what the package is and what
/// changed, renders the route's Handlebars templates and sends the email with SES v2.
/// A message is deleted only after all its emails were accepted; failures are retried with
/// backoff and end in the queue's dead-letter queue. With a DynamoDB state table
/// (`state.table`), every task shares what was sent, so an email goes out once per route and
/// event across restarts and tasks, and digest routes batch a window's events into one email.
#[derive(Debug, Parser)]
#[command(name = "quilt-notify", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: poll the queue and send emails until SIGTERM or SIGINT.
    ///
    /// On the first signal it stops receiving, lets in-flight messages finish within
    /// `worker.shutdown_deadline_seconds`, releases the rest to the queue, and exits 0.
    /// A second signal exits at once.
    Run(ConfigArgs),
    /// Check a configuration without running: load it, compile every route pattern, load and
    /// try every template. Exits 0 if the daemon would start, 2 with the offending key or route
    /// otherwise. With a state table, also print how long claims are kept and why (the queue's
    /// DLQ retention, read from SQS, or `state.dlq_retention_days` when it cannot be read).
    Validate(ConfigArgs),
    /// Check whether events match EventBridge event patterns, without AWS: one pattern and one
    /// event (prints true or false), every route of a configuration (`--config`), or a corpus of
    /// `{"pattern": …, "event": …}` lines on stdin (`--jsonl`). Exits 0 on a match, 1 on none,
    /// 2 on an invalid pattern, configuration or input.
    Match(quilt_notify::commands::pattern_match::MatchArgs),
    /// Render the emails an event would produce, without sending, with the package details
    /// read as the worker reads them (or from local manifests, `--manifest`): subject,
    /// recipients and text on the terminal, files to open in a browser with `--out`, or every
    /// template variable as JSON with `--data`.
    Render(quilt_notify::commands::render::RenderArgs),
    /// Probe a running worker's health endpoint (see `health.listen`); for container
    /// HEALTHCHECKs, which then need no curl and no shell. Exits 0 on HTTP 200, 1 otherwise.
    /// `--url http://HOST:PORT/metrics` prints the metrics.
    Health(HealthArgs),
    /// Publish a realistic package-revision event (fresh id, now as its time, a random top
    /// hash) to EventBridge's default bus or straight to the queue, and print its id: a smoke
    /// test for a deployment. With `--wait`, watch the queue drain and exit 0 only if the worker
    /// handled the event. Endpoints and region come from the configuration, as for `run`.
    SendTestEvent(quilt_notify::commands::send_test_event::SendTestEventArgs),
    /// Look into the dead-letter queue (`inspect`, which consumes nothing) or move its messages
    /// back to the queue (`redrive`). The DLQ is the queue's RedrivePolicy target, or
    /// `--dlq-url`.
    Dlq(quilt_notify::commands::dlq::DlqArgs),
    /// Manage the SES contact list (`ses.contact_list`) whose topics give routes one-click
    /// unsubscribe: `sync` creates the list and the routes' topics.
    Topics(quilt_notify::commands::topics::TopicsArgs),
    /// The shared state table (`state.table`): `create` makes it (idempotent); `show` (also
    /// without a sub-command) prints the digest windows waiting to be sent and the latest
    /// claims (which event's email was sent, by which task, with which SES message id), or one
    /// event's claims with `--event ID`; `retry --route NAME [--as NEW]` makes failed digest
    /// windows sendable again.
    State(quilt_notify::commands::state::StateArgs),
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// URL to probe: /healthz (alive) or /readyz (receiving and able to send).
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    url: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Configuration file (TOML or YAML). Built-in defaults apply below it and
    /// QUILT_NOTIFY__<SECTION>__<KEY> environment variables above it.
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Run(args) => run(&args),
        Command::Health(args) => health(&args),
        Command::Match(args) => {
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            match quilt_notify::commands::pattern_match::run(&args, stdin, stdout) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Render(args) => match quilt_notify::commands::render::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::SendTestEvent(args) => {
            operator_exit(quilt_notify::commands::send_test_event::run(&args))
        }
        Command::Dlq(args) => operator_exit(quilt_notify::commands::dlq::run(&args)),
        Command::Topics(args) => operator_exit(quilt_notify::commands::topics::run(&args)),
        Command::State(args) => operator_exit(quilt_notify::commands::state::run(&args)),
    }
}

/// Exit code of an operator command: 0 done, 1 not done (or an AWS call failed), 2 when the
/// configuration cannot be used.
fn operator_exit(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e)
            if e.downcast_ref::<quilt_notify::config::ConfigError>()
                .is_some() =>
        {
            eprintln!("error: invalid configuration: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ConfigArgs) -> Result<Settings, ExitCode> {
    Settings::load(args.config.as_deref()).map_err(|e| {
        eprintln!("error: invalid configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn validate(args: &ConfigArgs) -> ExitCode {
    let settings = match load(args) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match app::compile(&settings) {
        Ok(compiled) => {
            for warning in &compiled.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "ok: {} route(s), templates from {}",
                compiled.routes.routes().len(),
                settings.templates.dir.display()
            );
            if settings.state.table.is_some() {
                println!("state: {}", claim_ttl(&settings));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// How long the worker would keep claims, and why, as `validate` says it: the DLQ's retention
/// is read from SQS as `run` reads it (the configured one stands in when it cannot be).
fn claim_ttl(settings: &Settings) -> String {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return format!("cannot read the DLQ's retention: {e}"),
    };
    let ttl = runtime.block_on(async {
        match app::sdk_config(settings).await {
            Ok(sdk) => app::claim_ttl(&sdk, settings, &app::skew_watch(settings)).await,
            Err(e) => settings.state.claim_ttl(Err(format!("{e:#}"))),
        }
    });
    runtime.shutdown_background();
    format!("claims are kept {} days: {}", ttl.days, ttl.because)
}

fn health(args: &HealthArgs) -> ExitCode {
    let timeout = std::time::Duration::from_secs(args.timeout);
    let probed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(quilt_notify::telemetry::health::probe(&args.url, timeout))
        });
    match probed {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &ConfigArgs) -> ExitCode {
    let settings = match load(args) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if let Err(e) = telemetry::init(settings.log.format) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let mut builder = match settings.worker.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let app = match App::build(&settings).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "cannot start");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let shutdown = CancellationToken::new();
        if let Err(e) = app::stop_on_signals(shutdown.clone()) {
            tracing::error!(error = %e, "cannot install the SIGTERM/SIGINT handlers");
            return ExitCode::FAILURE;
        }
        app.run(shutdown).await;
        ExitCode::SUCCESS
    });
    // Every message is settled by now. Dropping the runtime would wait for its blocking threads,
    // and a DNS lookup of an endpoint that just went away (compose stopping LocalStack first)
    // blocks one for seconds: exit without waiting for them.
    runtime.shutdown_background();
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
