//! What the daemon says about itself: log lines ([`init`]: JSON for machines such as ECS,
//! CloudWatch and jq, or pretty for people) and metrics ([`metrics`]), exported as Prometheus text
//! ([`prometheus`], for `/metrics`) and CloudWatch EMF lines ([`emf`]).
//!
//! Knows nothing of HTTP nor of when lines are due: the worker records, the health listener
//! serves the text, the app starts the EMF loop.

pub mod emf;
pub mod health;
pub mod metrics;
pub mod prometheus;

pub use emf::EmfReporter;
pub use metrics::{Counter, Histogram, Metrics};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. The level filter comes from `RUST_LOG` (default `info`, and
/// the AWS SDK's chatter at `warn`). Logs go to stdout, as container platforms expect.
///
/// A line that cannot be written (no one reads stdout any more) is dropped silently: the
/// subscriber's own report of it goes to stderr by `eprintln!`, which panics when stderr is
/// closed too, and a panic there unwound through whatever was logging, the stop signal's
/// handling included, so the worker never exited.
///
/// # Errors
/// A subscriber was already installed.
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .log_internal_errors(false);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
