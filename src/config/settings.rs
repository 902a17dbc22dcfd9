//! The settings types: one struct per section of the file, as the layers merge into them.
//! Every default lives in `config/default.toml`, not here; rules beyond the types are in
//! [`checks`](super::checks).

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::domain::route::RouteSpec;

/// Everything the daemon can be told, after all layers were merged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// AWS-wide settings.
    pub aws: AwsSettings,
    /// The SQS queue that the EventBridge rule feeds.
    pub queue: QueueSettings,
    /// SES v2 sending.
    pub ses: SesSettings,
    /// S3, where package manifests are read for the package details.
    pub s3: S3Settings,
    /// State shared by every task: one email per (event, route), digests.
    pub state: StateSettings,
    /// Pollers, concurrency, shutdown and dedupe.
    pub worker: WorkerSettings,
    /// Backoff for transient failures.
    pub retry: RetrySettings,
    /// The Quilt catalog that links point to.
    pub catalog: CatalogSettings,
    /// Where templates live.
    pub templates: TemplateSettings,
    /// The HTTP health listener.
    pub health: HealthSettings,
    /// Metrics: the `/metrics` endpoint and CloudWatch Embedded Metric Format log lines.
    pub metrics: MetricsSettings,
    /// EventBridge, for `send-test-event --to-bus`.
    pub events: EventsSettings,
    /// Log output.
    pub log: LogSettings,
    /// Which events become which emails.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

/// AWS-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Region; `None` defers to the AWS chain.
    #[serde(deserialize_with = "empty_as_none")]
    pub region: Option<String>,
}

/// The SQS queue and how it is polled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Queue URL (required).
    pub url: String,
    /// Endpoint override, e.g. LocalStack.
    #[serde(deserialize_with = "empty_as_none")]
    pub endpoint_url: Option<String>,
    /// Long-poll wait, 0..=20 s.
    pub wait_time_seconds: u8,
    /// Batch size, 1..=10.
    pub max_messages: u8,
    /// Visibility timeout requested on receive and renewed by the heartbeat.
    pub visibility_timeout_seconds: u32,
}

/// SES v2 sending.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesSettings {
    /// Endpoint override, e.g. the local SES v2 emulator.
    #[serde(deserialize_with = "empty_as_none")]
    pub endpoint_url: Option<String>,
    /// Default sender (required).
    pub from: String,
    /// Configuration set to send with.
    #[serde(deserialize_with = "empty_as_none")]
    pub configuration_set: Option<String>,
    /// SendEmail calls per second across the process; 0 means "ask SES GetAccount".
    pub max_send_rate: f64,
    /// SES v2 contact list whose topics routes name (`topic`), for one-click unsubscribe.
    #[serde(deserialize_with = "empty_as_none")]
    pub contact_list: Option<String>,
}

/// S3 reads for the package details (`package` and `changes` in templates).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint override, e.g. LocalStack; addressing is path-style when set.
    #[serde(deserialize_with = "empty_as_none")]
    pub endpoint_url: Option<String>,
    /// Global switch: false reads nothing from S3, whatever the routes say.
    pub details: bool,
    /// Most file entries read from one manifest; a longer one gives partial details.
    pub max_manifest_entries: usize,
    /// Manifest summaries kept in memory, by top hash.
    pub cache_size: usize,
    /// Their memory at most, in MiB.
    pub cache_megabytes: usize,
    /// Bytes of large manifests being read at once, across all messages, in MiB.
    pub memory_megabytes: usize,
    /// Read the footers and header lines of added and modified table files
    /// (`changes.tables`).
    pub tables: bool,
    /// Table files read per event at most, 1..=1000.
    pub max_tables: usize,
    /// A longer Parquet footer is not read, in MiB, 1..=64.
    pub max_footer_megabytes: u64,
}

impl S3Settings {
    /// What of the tables to read; None when `s3.tables` is off.
    pub fn table_settings(&self) -> Option<crate::domain::table::TableSettings> {
        self.tables.then(|| crate::domain::table::TableSettings {
            max_tables: self.max_tables,
            limits: crate::domain::table::TableLimits {
                max_footer_bytes: self.max_footer_megabytes * 1024 * 1024,
            },
        })
    }
}

/// The DynamoDB table of shared state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Table name; `None` keeps state in each process's memory (and refuses digest routes).
    #[serde(deserialize_with = "empty_as_none")]
    pub table: Option<String>,
    /// Endpoint override, e.g. moto.
    #[serde(deserialize_with = "empty_as_none")]
    pub endpoint_url: Option<String>,
    /// Days an item lives after its last write (a window's items: after the window ends), at
    /// least: claims also outlive the DLQ's retention (see [`StateSettings::claim_ttl`]).
    pub ttl_days: u64,
    /// The DLQ's retention in days, assumed when it cannot be read from SQS.
    pub dlq_retention_days: u64,
    /// A claim holds its lease this long, renewed while a send is slow.
    pub lease_seconds: u64,
    /// How far a task's clock may be from AWS's before it warns (see
    /// [`StateSettings::max_clock_skew`]).
    pub max_clock_skew_seconds: u64,
    /// How often each task looks for digest windows that have closed.
    pub digest_check_seconds: u64,
    /// Whether claims and marks that meet in flight go to the table as one transaction.
    pub batch_writes: bool,
}

/// A lease must be this many times `state.max_clock_skew_seconds`. Two tasks' clocks may
/// disagree by twice the allowed skew, and a holder renews every third of its lease, so a lease
/// of 3× the skew would look ended to a skewed task just as it is renewed; 4× leaves a sixth of
/// the lease to spare.
pub const LEASE_SKEW_MULTIPLE: u64 = 4;

/// Where the DLQ's retention came from, for [`StateSettings::claim_ttl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqRetention {
    /// The dead-letter queue's name.
    pub queue: String,
    /// Its `MessageRetentionPeriod`, in seconds.
    pub seconds: u64,
}

/// How long claims live, and why: `validate` prints it, the worker logs it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTtl {
    /// Days an item lives after it was written.
    pub days: u64,
    /// Which value decided, in words.
    pub because: String,
}

impl ClaimTtl {
    /// The same, as DynamoDB's TTL counts it.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.days.saturating_mul(86_400))
    }
}

impl StateSettings {
    /// How far a task's clock may be from AWS's (the `Date` of its answers). Leases compare the
    /// clocks of different tasks, which may then disagree by twice this: a lease is refused
    /// unless it is [`LEASE_SKEW_MULTIPLE`] times this long, and a lease comparison needs a
    /// margin larger than this. Past it, the task warns and counts (`ClockSkewExceeded`).
    pub fn max_clock_skew(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.max_clock_skew_seconds)
    }

    /// How long claims must live: at least `ttl_days`, and a day longer than the DLQ keeps a
    /// message, since a message redriven from the DLQ must still find the claims of the routes
    /// it already sent (a redrive after the claims expired sends them again). `dlq` is the
    /// retention read from SQS, or why it could not be read; then `dlq_retention_days` stands
    /// in for it.
    pub fn claim_ttl(&self, dlq: Result<DlqRetention, String>) -> ClaimTtl {
        let (retention_days, source) = match dlq {
            Ok(DlqRetention { queue, seconds }) => (
                seconds.div_ceil(86_400),
                format!(
                    "the dead-letter queue {queue} keeps messages {seconds} s (MessageRetentionPeriod)"
                ),
            ),
            Err(reason) => (
                self.dlq_retention_days,
                format!(
                    "state.dlq_retention_days = {} (the DLQ's retention could not be read: {reason})",
                    self.dlq_retention_days
                ),
            ),
        };
        let needed = retention_days.saturating_add(1);
        if self.ttl_days >= needed {
            ClaimTtl {
                days: self.ttl_days,
                because: format!(
                    "state.ttl_days = {}, a day or more longer than {source}",
                    self.ttl_days
                ),
            }
        } else {
            ClaimTtl {
                days: needed,
                because: format!(
                    "{source}, and a day more for a redriven message to be received (state.ttl_days = {} is shorter)",
                    self.ttl_days
                ),
            }
        }
    }
}

/// Pollers, concurrency, shutdown and dedupe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Runtime threads: 1 runs every task on one thread (no cross-thread wake-ups), more uses
    /// Tokio's multi-threaded scheduler.
    pub threads: usize,
    /// Concurrent long-pollers.
    pub pollers: usize,
    /// Messages in flight at once, across pollers.
    pub concurrency: usize,
    /// Time in-flight work gets after a stop signal.
    pub shutdown_deadline_seconds: u64,
    /// How long an event id is remembered.
    pub dedupe_window_seconds: u64,
    /// How many event ids are remembered at most.
    pub dedupe_capacity: usize,
}

/// Backoff for transient failures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// First delay.
    pub base_seconds: u32,
    /// Largest delay.
    pub max_seconds: u32,
}

/// The Quilt catalog that links point to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    /// Catalog host name; `None` leaves `catalog_url` out of the template data.
    #[serde(deserialize_with = "empty_as_none")]
    pub host: Option<String>,
}

/// Where templates live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    /// Directory of templates, already resolved against the config file's directory.
    pub dir: PathBuf,
}

/// The HTTP health listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    /// Listen address; `None` means no listener.
    #[serde(deserialize_with = "empty_as_none")]
    pub listen: Option<String>,
    /// `/readyz` needs progress (a receive, an accepted send, a delete) within this many seconds.
    pub ready_within_seconds: u64,
}

/// Metrics export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Seconds between CloudWatch EMF log lines; 0 turns them off.
    pub emf_interval_seconds: u64,
    /// CloudWatch namespace of the EMF metrics.
    pub namespace: String,
}

/// EventBridge, used only by `send-test-event --to-bus`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// Endpoint override, e.g. LocalStack; `None` means AWS.
    #[serde(deserialize_with = "empty_as_none")]
    pub endpoint_url: Option<String>,
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// JSON lines or human-readable.
    pub format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Treats `""` as unset, because TOML has no null and env vars are easiest to blank.
fn empty_as_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|s| !s.trim().is_empty()))
}
