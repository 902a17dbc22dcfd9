//! Loading: built-in defaults, then a file, then `QUILT_NOTIFY_CONFIG_TOML`, then
//! `QUILT_NOTIFY__…` variables, merged by the `config` crate and checked.

use std::collections::HashMap;
use std::path::Path;

use super::{ConfigError, Settings};

/// The defaults, compiled in: `config/default.toml` is both documentation and the lowest layer.
const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Environment variables with this prefix (then `__`) override file settings.
pub const ENV_PREFIX: &str = "QUILT_NOTIFY";

/// An environment variable holding a whole TOML configuration, layered right above the file: how
/// a container platform (an ECS task definition) passes routes without a file in the image.
pub const INLINE_ENV: &str = "QUILT_NOTIFY_CONFIG_TOML";

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
}
