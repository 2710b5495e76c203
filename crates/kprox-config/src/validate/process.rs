//! `[log]`, `[admin]` and `[runtime]`: kprox's own logging, admin listener and threads.

use crate::ConfigError;
use crate::config::*;
use crate::raw::{RawAdmin, RawLog, RawRuntime};

use super::values::Refusal;

/// More runtime threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: u64 = 1024;

/// `[log]`: a filter and a format.
pub(super) fn log(err: &Refusal<'_>, log: RawLog) -> Result<LogConfig, ConfigError> {
    let format = match log.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(err(
                "log.format",
                format!("`{other}` is not a log format"),
                "write `text` or `json`",
            ));
        }
    };
    let log = LogConfig {
        level: log
            .level
            .filter(|l| !l.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
        format,
        access: log.access.unwrap_or(false),
    };
    Ok(log)
}

/// `[admin]`: an address with a port, or off; whether it was written or defaulted.
pub(super) fn admin(err: &Refusal<'_>, raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let admin_written = raw.address;
    let address_is_default = admin_written.is_none();
    let admin_text = admin_written.unwrap_or_else(|| DEFAULT_ADMIN_ADDRESS.to_owned());
    let admin = AdminConfig {
        address_is_default,
        address: match admin_text.trim() {
            "off" | "" => None,
            text => Some(text.parse().map_err(|_| {
                err(
                    "admin.address",
                    format!("`{text}` is not an address with a port"),
                    "write HOST:PORT such as 127.0.0.1:8002, or off",
                )
            })?),
        },
    };
    Ok(admin)
}

/// `[runtime]`: 0 (one per CPU) up to a sane maximum.
pub(super) fn runtime(err: &Refusal<'_>, raw: RawRuntime) -> Result<RuntimeConfig, ConfigError> {
    let worker_threads = raw.worker_threads.unwrap_or(0);
    if worker_threads > MAX_WORKER_THREADS {
        return Err(err(
            "runtime.worker_threads",
            format!("{worker_threads} threads is more than kprox can use"),
            "write a number from 1 to 1024, or 0 for one per CPU",
        ));
    }
    let runtime = RuntimeConfig {
        worker_threads: usize::try_from(worker_threads).unwrap_or(0),
    };
    Ok(runtime)
}
