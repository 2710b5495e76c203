//! Log output: a `RUST_LOG`-style filter (the `RUST_LOG` variable wins over the configured
//! level), text or JSON lines, always on stderr — stdout carries only the startup line that
//! scripts parse. The level can be changed while running (live reload).

use std::sync::OnceLock;

use kprox_config::{ConfigError, LogConfig, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn parse(level: &str) -> Result<EnvFilter, ConfigError> {
    EnvFilter::try_new(level).map_err(|e| {
        ConfigError::new(
            "configuration",
            "log.level",
            format!("`{level}` is not a valid filter ({e})"),
            "write a filter such as `info` or `kprox=debug,info`",
        )
    })
}

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
        _ => parse(&config.level)?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_ansi(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Already initialised (tests, `kprox demo` re-entering): keep the first subscriber.
    if result.is_ok() {
        let _ = LEVEL.set(handle);
    }
    Ok(())
}

/// Changes the log filter of the running process (`RUST_LOG`, when set, still wins).
pub fn set_log_level(level: &str) -> Result<(), ConfigError> {
    if std::env::var("RUST_LOG").is_ok_and(|v| !v.trim().is_empty()) {
        return Ok(());
    }
    let filter = parse(level)?;
    if let Some(handle) = LEVEL.get() {
        let _ = handle.reload(filter);
    }
    Ok(())
}
