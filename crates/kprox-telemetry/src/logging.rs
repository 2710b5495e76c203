//! Log output: a `RUST_LOG`-style filter (the `RUST_LOG` variable wins over the configured
//! level), text or JSON lines, always on stderr — stdout carries only the startup line that
//! scripts parse.

use kprox_config::{ConfigError, LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice is harmless (the second call does nothing).
pub fn init_logging(config: &LogConfig) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => {
            EnvFilter::try_new(&from_env).map_err(|e| {
                ConfigError::new(
                    "environment variable RUST_LOG",
                    "",
                    format!("invalid filter ({e})"),
                    "write a filter such as `info` or `kprox=debug,info`",
                )
            })?
        }
        _ => EnvFilter::try_new(&config.level).map_err(|e| {
            ConfigError::new(
                "configuration",
                "log.level",
                format!("`{}` is not a valid filter ({e})", config.level),
                "write a filter such as `info` or `kprox=debug,info`",
            )
        })?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already initialised (tests, `kprox demo` re-entering): keep the first subscriber.
    let _ = result;
    Ok(())
}
