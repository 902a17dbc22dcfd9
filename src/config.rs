//! Settings: loading them in layers (built-in defaults, a file, the environment) and checking them.
//!
//! Owns the shape of the configuration and every rule about which values are acceptable, so a bad
//! setting fails start-up naming its key. Knows nothing of AWS clients or how settings are used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::domain::route::RouteSpec;

/// The defaults, compiled in: `config/default.toml` is both documentation and the lowest layer.
const DEFAULTS: &str = include_str!("../config/default.toml");

/// Environment variables with this prefix (then `__`) override file settings.
pub const ENV_PREFIX: &str = "QUILT_NOTIFY";

/// An environment variable holding a whole TOML configuration, layered right above the file: how
/// a container platform (an ECS task definition) passes routes without a file in the image.
pub const INLINE_ENV: &str = "QUILT_NOTIFY_CONFIG_TOML";

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
    /// `/readyz` needs a successful receive within this many seconds.
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

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a value has the wrong type.
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    /// A value has the right type but is not acceptable.
    #[error("`{key}`: {reason}")]
    Invalid {
        /// Dotted path of the setting, e.g. `queue.max_messages`.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl Settings {
    /// Loads defaults, then `file` (if any), then `QUILT_NOTIFY__…` variables of this process.
    ///
    /// # Errors
    /// The file is missing or malformed, a key is unknown or mistyped, or a value is out of range.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// As [`Settings::load`], with the environment given as a map (`None`: the process's), so
    /// tests need not mutate global state.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        let inline = match &env {
            Some(map) => map.get(INLINE_ENV).cloned(),
            None => std::env::var(INLINE_ENV).ok(),
        };
        if let Some(text) = inline.filter(|t| !t.trim().is_empty()) {
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(env);
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        if settings.templates.dir.is_relative() {
            let base = file.and_then(Path::parent).unwrap_or(Path::new("."));
            settings.templates.dir = base.join(&settings.templates.dir);
        }
        settings.check()?;
        Ok(settings)
    }

    /// Range and presence checks that types alone cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.queue.url.trim().is_empty() {
            return invalid(
                "queue.url",
                "is required: set it in the file or as QUILT_NOTIFY__QUEUE__URL",
            );
        }
        if self.ses.from.trim().is_empty() {
            return invalid(
                "ses.from",
                "is required: set it in the file or as QUILT_NOTIFY__SES__FROM",
            );
        }
        if self.queue.wait_time_seconds > 20 {
            return invalid("queue.wait_time_seconds", "must be between 0 and 20");
        }
        if !(1..=10).contains(&self.queue.max_messages) {
            return invalid("queue.max_messages", "must be between 1 and 10");
        }
        if !(1..=43_200).contains(&self.queue.visibility_timeout_seconds) {
            return invalid(
                "queue.visibility_timeout_seconds",
                "must be between 1 and 43200 (12 hours)",
            );
        }
        if !self.ses.max_send_rate.is_finite() || self.ses.max_send_rate < 0.0 {
            return invalid("ses.max_send_rate", "must be 0 (ask SES) or more");
        }
        if self.worker.threads == 0 {
            return invalid("worker.threads", "must be at least 1");
        }
        if self.worker.pollers == 0 {
            return invalid("worker.pollers", "must be at least 1");
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.worker.dedupe_capacity == 0 {
            return invalid("worker.dedupe_capacity", "must be at least 1");
        }
        if self.retry.max_seconds > 43_200 || self.retry.base_seconds > self.retry.max_seconds {
            return invalid(
                "retry",
                "need base_seconds <= max_seconds <= 43200 (SQS's longest visibility timeout)",
            );
        }
        if let Some(listen) = &self.health.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return invalid(
                    "health.listen",
                    &format!("{listen:?} is not an address like 0.0.0.0:8080"),
                );
            }
        }
        if self.metrics.emf_interval_seconds > 0 && self.metrics.namespace.trim().is_empty() {
            return invalid(
                "metrics.namespace",
                "must not be empty while metrics.emf_interval_seconds is above 0",
            );
        }
        if self.routes.is_empty() {
            return invalid(
                "routes",
                "no route is configured, so every message would be deleted unsent; add a [[routes]] table",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            if route.name.trim().is_empty() {
                return invalid(&format!("routes[{i}].name"), "must not be empty");
            }
            if !seen.insert(route.name.as_str()) {
                return invalid(
                    &format!("routes[{i}].name"),
                    &format!("route name \"{}\" is used twice", route.name),
                );
            }
        }
        Ok(())
    }
}

/// Treats `""` as unset, because TOML has no null and env vars are easiest to blank.
fn empty_as_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|s| !s.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const MINIMAL: &str = r#"
[queue]
url = "http://127.0.0.1:4566/000000000000/q"
[ses]
from = "quilt@example.com"
[[routes]]
name = "all"
template = "package-created"
to = ["team@example.com"]
pattern = { source = ["com.quiltdata"] }
"#;

    fn file(contents: &str, ext: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(ext)
            .tempfile()
            .expect("temp file");
        f.write_all(contents.as_bytes()).expect("write");
        f
    }

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn load(contents: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let f = file(contents, ".toml");
        Settings::load_with_env(Some(f.path()), env(vars))
    }

    #[test]
    fn defaults_fill_everything_but_queue_sender_and_routes() {
        let s = load(MINIMAL, &[]).expect("loads");
        assert_eq!(s.queue.wait_time_seconds, 20);
        assert_eq!(s.queue.max_messages, 10);
        assert_eq!(s.queue.endpoint_url, None);
        assert_eq!(s.worker.pollers, 4);
        assert_eq!(s.worker.concurrency, 40);
        assert_eq!(s.worker.threads, 1);
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.catalog.host, None);
        assert_eq!(s.metrics.emf_interval_seconds, 60);
        assert_eq!(s.metrics.namespace, "QuiltNotify");
        assert_eq!(s.events.endpoint_url, None);
        assert_eq!(s.routes.len(), 1);
        assert_eq!(s.routes[0].pattern["source"][0], "com.quiltdata");
    }

    #[test]
    fn templates_dir_is_relative_to_the_config_file() {
        let f = file(MINIMAL, ".toml");
        let s = Settings::load_with_env(Some(f.path()), env(&[])).expect("loads");
        let parent = f.path().parent().expect("parent");
        assert_eq!(s.templates.dir, parent.join("templates"));
    }

    #[test]
    fn environment_overrides_the_file_with_double_underscores() {
        let s = load(
            MINIMAL,
            &[
                ("QUILT_NOTIFY__QUEUE__MAX_MESSAGES", "3"),
                ("QUILT_NOTIFY__SES__ENDPOINT_URL", "http://127.0.0.1:8005"),
                ("QUILT_NOTIFY__CATALOG__HOST", "catalog.example.com"),
                ("QUILT_NOTIFY__LOG__FORMAT", "pretty"),
            ],
        )
        .expect("loads");
        assert_eq!(s.queue.max_messages, 3);
        assert_eq!(s.ses.endpoint_url.as_deref(), Some("http://127.0.0.1:8005"));
        assert_eq!(s.catalog.host.as_deref(), Some("catalog.example.com"));
        assert_eq!(s.log.format, LogFormat::Pretty);
    }

    #[test]
    fn queue_url_and_sender_may_come_from_the_environment_alone() {
        let without = MINIMAL
            .replace("url = \"http://127.0.0.1:4566/000000000000/q\"", "")
            .replace("from = \"quilt@example.com\"", "");
        let s = load(
            &without,
            &[
                ("QUILT_NOTIFY__QUEUE__URL", "https://sqs/q"),
                ("QUILT_NOTIFY__SES__FROM", "a@b.c"),
            ],
        )
        .expect("loads");
        assert_eq!(s.queue.url, "https://sqs/q");
        assert_eq!(s.ses.from, "a@b.c");
    }

    #[test]
    fn missing_queue_url_names_the_key_and_the_variable() {
        let err = load(
            &MINIMAL.replace("http://127.0.0.1:4566/000000000000/q", ""),
            &[],
        )
        .expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("queue.url"), "{msg}");
        assert!(msg.contains("QUILT_NOTIFY__QUEUE__URL"), "{msg}");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        for (var, value, key) in [
            (
                "QUILT_NOTIFY__QUEUE__MAX_MESSAGES",
                "11",
                "queue.max_messages",
            ),
            (
                "QUILT_NOTIFY__QUEUE__WAIT_TIME_SECONDS",
                "21",
                "queue.wait_time_seconds",
            ),
            ("QUILT_NOTIFY__WORKER__POLLERS", "0", "worker.pollers"),
            ("QUILT_NOTIFY__WORKER__THREADS", "0", "worker.threads"),
            (
                "QUILT_NOTIFY__SES__MAX_SEND_RATE",
                "-1",
                "ses.max_send_rate",
            ),
        ] {
            let msg = load(MINIMAL, &[(var, value)])
                .expect_err("must fail")
                .to_string();
            assert!(msg.contains(key), "{var}={value}: {msg}");
        }
    }

    #[test]
    fn a_mistyped_value_names_its_key() {
        let msg = load(MINIMAL, &[("QUILT_NOTIFY__WORKER__POLLERS", "many")])
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("worker.pollers"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let msg = load(&format!("{MINIMAL}\n[worker]\npolers = 3\n"), &[])
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("polers"), "{msg}");
    }

    #[test]
    fn no_routes_is_refused_because_everything_would_be_deleted() {
        let without_routes = MINIMAL.split("[[routes]]").next().expect("head");
        let msg = load(without_routes, &[])
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("routes"), "{msg}");
    }

    #[test]
    fn duplicate_route_names_are_refused() {
        let twice = format!(
            "{MINIMAL}{}",
            &MINIMAL[MINIMAL.find("[[routes]]").expect("routes")..]
        );
        let msg = load(&twice, &[]).expect_err("must fail").to_string();
        assert!(msg.contains("used twice"), "{msg}");
    }

    #[test]
    fn a_whole_config_can_come_from_one_environment_variable() {
        let s = Settings::load_with_env(None, env(&[(INLINE_ENV, MINIMAL)])).expect("loads");
        assert_eq!(s.routes[0].name, "all");
        assert_eq!(s.ses.from, "quilt@example.com");
        let overridden = Settings::load_with_env(
            None,
            env(&[(INLINE_ENV, MINIMAL), ("QUILT_NOTIFY__SES__FROM", "x@y.z")]),
        )
        .expect("loads");
        assert_eq!(overridden.ses.from, "x@y.z", "single variables still win");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = Settings::load_with_env(Some(Path::new("/nonexistent/q.toml")), env(&[]))
            .expect_err("must fail");
        assert!(err.to_string().contains("q.toml"), "{err}");
    }

    #[test]
    fn yaml_files_work_too_and_keep_pattern_key_case() {
        let yaml = r#"
queue: { url: "https://sqs/q" }
ses: { from: "a@b.c" }
routes:
  - name: camel
    template: package-created
    to: [x@example.com]
    pattern: { detail: { topHash: [{ prefix: "a0" }], missing: [null] } }
"#;
        let f = file(yaml, ".yaml");
        let s = Settings::load_with_env(Some(f.path()), env(&[])).expect("loads");
        let pattern = &s.routes[0].pattern;
        assert_eq!(pattern["detail"]["topHash"][0]["prefix"], "a0");
        assert!(pattern["detail"]["missing"][0].is_null());
    }
}
