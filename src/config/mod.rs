//! Settings: their shape ([`Settings`] and its sections), loading them in layers (built-in
//! defaults, a file, the environment) and checking them.
//!
//! Owns the shape of the configuration and every rule about which values are acceptable, so a bad
//! setting fails start-up naming its key. Knows nothing of AWS clients or how settings are used.

mod checks;
mod load;
mod settings;
pub mod templates;
#[cfg(test)]
mod tests;

pub use load::{ENV_PREFIX, INLINE_ENV};
pub use settings::{
    AwsSettings, CatalogSettings, ClaimTtl, DlqRetention, EventsSettings, HealthSettings,
    LogFormat, LogSettings, MetricsSettings, QueueSettings, RetrySettings, SesSettings, Settings,
    StateSettings, TemplateSettings, WorkerSettings, LEASE_SKEW_MULTIPLE,
};

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
