//! `[upstream]` and `[passthrough]`: the apiservers, and the connections kprox keeps and splices to them.

use crate::ConfigError;
use crate::GoDuration;
use crate::config::*;
use crate::raw::{RawPassthrough, RawUpstream};

use super::values::{Refusal, check_server_url, count, non_empty, zero_is_off};

/// `[upstream]`: server URLs checked, counts and timeouts positive, the policy one of three.
pub(super) fn upstream(err: &Refusal<'_>, up: RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    let mut servers = Vec::new();
    for server in up.servers.iter().flatten() {
        // `--server a,b` arrives as one entry; split it here so every source accepts it.
        for one in server.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            check_server_url(one).map_err(|problem| {
                err(
                    "upstream.servers",
                    problem,
                    "write a URL such as https://10.0.0.1:6443",
                )
            })?;
            servers.push(one.to_owned());
        }
    }
    let max_streams = up
        .max_streams_per_connection
        .unwrap_or(DEFAULT_MAX_STREAMS_PER_CONNECTION);
    if max_streams == 0 {
        return Err(err(
            "upstream.max_streams_per_connection",
            "0 would allow no request at all".to_owned(),
            "write a number of at least 1 (default 100)",
        ));
    }
    let spread_streams = up.spread_streams.unwrap_or(DEFAULT_SPREAD_STREAMS);
    let max_connections_per_apiserver = up
        .max_connections_per_apiserver
        .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_APISERVER);
    for (key, value, default) in [
        (
            "upstream.spread_streams",
            spread_streams,
            DEFAULT_SPREAD_STREAMS,
        ),
        (
            "upstream.max_connections_per_apiserver",
            max_connections_per_apiserver,
            DEFAULT_MAX_CONNECTIONS_PER_APISERVER,
        ),
    ] {
        if value == 0 {
            return Err(err(
                key,
                "0 is not a usable number of streams or connections".to_owned(),
                &format!("write a number of at least 1 (default {default})"),
            ));
        }
    }
    let positive = |key: &str, value: Option<GoDuration>, default: GoDuration| {
        let value = value.unwrap_or(default);
        if value.is_zero() {
            Err(err(
                key,
                "0s would make every attempt fail at once".to_owned(),
                &format!("write a positive duration (default {default})"),
            ))
        } else {
            Ok(value)
        }
    };
    let policy = match up.policy.as_deref().filter(|p| !p.trim().is_empty()) {
        None => DEFAULT_POLICY,
        Some(text) => text.parse::<Policy>().map_err(|problem| {
            err(
                "upstream.policy",
                problem,
                "write round-robin, least-request or failover",
            )
        })?,
    };
    let preferred = non_empty(up.preferred.as_deref()).map(|p| p.trim_end_matches('/').to_owned());
    if let Some(p) = &preferred
        && !servers.is_empty()
        && !servers.iter().any(|s| s.trim_end_matches('/') == p)
    {
        return Err(err(
            "upstream.preferred",
            format!("{p} is not one of upstream.servers"),
            "name one of the servers exactly",
        ));
    }
    let at_least_one = |key: &str, value: Option<u32>, default: u32| {
        let value = value.unwrap_or(default);
        if value == 0 {
            Err(err(
                key,
                "0 is not allowed".to_owned(),
                &format!("write a number of at least 1 (default {default})"),
            ))
        } else {
            Ok(value)
        }
    };
    let upstream = UpstreamConfig {
        servers,
        connect_timeout: positive(
            "upstream.connect_timeout",
            up.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?,
        tls_handshake_timeout: positive(
            "upstream.tls_handshake_timeout",
            up.tls_handshake_timeout,
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        )?,
        keepalive_interval: zero_is_off(
            up.keepalive_interval.unwrap_or(DEFAULT_KEEPALIVE_INTERVAL),
        ),
        keepalive_timeout: positive(
            "upstream.keepalive_timeout",
            up.keepalive_timeout,
            DEFAULT_KEEPALIVE_TIMEOUT,
        )?,
        idle_timeout: positive(
            "upstream.idle_timeout",
            up.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
        )?,
        max_streams_per_connection: count(max_streams),
        spread_streams: count(spread_streams),
        max_connections_per_apiserver: count(max_connections_per_apiserver),
        policy,
        preferred,
        health_check_interval: positive(
            "upstream.health_check_interval",
            up.health_check_interval,
            DEFAULT_HEALTH_CHECK_INTERVAL,
        )?,
        health_check_timeout: positive(
            "upstream.health_check_timeout",
            up.health_check_timeout,
            DEFAULT_HEALTH_CHECK_TIMEOUT,
        )?,
        health_rise: at_least_one("upstream.health_rise", up.health_rise, DEFAULT_HEALTH_RISE)?,
        health_fall: at_least_one("upstream.health_fall", up.health_fall, DEFAULT_HEALTH_FALL)?,
        ejection_base: positive(
            "upstream.ejection_base",
            up.ejection_base,
            DEFAULT_EJECTION_BASE,
        )?,
        ejection_max: positive(
            "upstream.ejection_max",
            up.ejection_max,
            DEFAULT_EJECTION_MAX,
        )?,
        retry_budget_percent: up
            .retry_budget_percent
            .unwrap_or(DEFAULT_RETRY_BUDGET_PERCENT),
        retry_min_per_second: up
            .retry_min_per_second
            .unwrap_or(DEFAULT_RETRY_MIN_PER_SECOND),
        retry_after_cap: up.retry_after_cap.unwrap_or(DEFAULT_RETRY_AFTER_CAP),
        max_attempts: count(at_least_one(
            "upstream.max_attempts",
            up.max_attempts,
            DEFAULT_MAX_ATTEMPTS,
        )?),
        watch_resume: up.watch_resume.unwrap_or(true),
        discover: up.discover.unwrap_or(false),
    };
    Ok(upstream)
}

/// `[passthrough]`: an address with a port, or off.
pub(super) fn passthrough(
    err: &Refusal<'_>,
    raw: RawPassthrough,
) -> Result<PassthroughConfig, ConfigError> {
    let address = match raw.address.as_deref().map(str::trim) {
        None | Some("off" | "") => None,
        Some(text) => Some(text.parse().map_err(|_| {
            err(
                "passthrough.address",
                format!("`{text}` is not an address with a port"),
                "write HOST:PORT such as 127.0.0.1:6443, or off",
            )
        })?),
    };
    Ok(PassthroughConfig {
        address,
        close_on_ejection: raw.close_on_ejection.unwrap_or(true),
    })
}
