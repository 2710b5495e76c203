//! `[listen]` and `[listen.limits]`: where and how clients connect, and what they may send.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::ConfigError;
use crate::config::*;
use crate::raw::{RawListen, RawListenLimits};

use super::values::{Refusal, count, non_empty, positive_duration, slash_wrapped, zero_is_off};

/// `[listen]`: a remote address only with client authentication or the explicit opt-out.
pub(super) fn listen(err: &Refusal<'_>, listen: RawListen) -> Result<ListenConfig, ConfigError> {
    let address_text = listen.address.as_deref().unwrap_or(DEFAULT_ADDRESS);
    let address: IpAddr = address_text.parse().map_err(|_| {
        err(
            "listen.address",
            format!("`{address_text}` is not an IP address"),
            "write an address such as 127.0.0.1, 0.0.0.0 or ::1",
        )
    })?;
    let port = listen.port.unwrap_or(DEFAULT_PORT);
    let unix_socket = non_empty(listen.unix_socket.as_deref()).map(PathBuf::from);
    if unix_socket.is_some() && port != DEFAULT_PORT {
        return Err(err(
            "listen.unix_socket",
            format!("a unix socket and the non-default port {port} were both given"),
            "use either a unix socket or a TCP port, not both",
        ));
    }
    let api_prefix = slash_wrapped(listen.api_prefix.as_deref().unwrap_or(DEFAULT_API_PREFIX));
    let insecure_remote = listen
        .insecure_allow_unauthenticated_remote
        .unwrap_or(false);
    let path_of = |value: &Option<String>| non_empty(value.as_deref()).map(PathBuf::from);
    let tls_cert_file = path_of(&listen.tls_cert_file);
    let tls_key_file = path_of(&listen.tls_key_file);
    let client_ca_file = path_of(&listen.client_ca_file);
    let client_token_file = path_of(&listen.client_token_file);
    if tls_cert_file.is_some() != tls_key_file.is_some() {
        return Err(err(
            "listen.tls_cert_file",
            "a TLS certificate and key must be given together".to_owned(),
            "set both listen.tls_cert_file and listen.tls_key_file, or neither",
        ));
    }
    if client_ca_file.is_some() && tls_cert_file.is_none() {
        return Err(err(
            "listen.client_ca_file",
            "client certificates need TLS on the listener".to_owned(),
            "set listen.tls_cert_file and listen.tls_key_file too",
        ));
    }
    let protected = client_ca_file.is_some() || client_token_file.is_some();
    if unix_socket.is_none() && !address.is_loopback() && !insecure_remote && !protected {
        return Err(err(
            "listen.address",
            format!(
                "{address} is reachable from other machines, and kprox would serve them with its credentials"
            ),
            "listen on 127.0.0.1 (the default), protect the listener (listen.client_ca_file with TLS, or listen.client_token_file), or accept the risk with --insecure-allow-unauthenticated-remote",
        ));
    }
    let listen = ListenConfig {
        address,
        port,
        unix_socket,
        keepalive: listen.keepalive.and_then(zero_is_off),
        api_prefix,
        tunnel_idle_timeout: positive_duration(
            &err,
            "listen.tunnel_idle_timeout",
            listen.tunnel_idle_timeout,
            DEFAULT_TUNNEL_IDLE_TIMEOUT,
        )?,
        insecure_allow_unauthenticated_remote: insecure_remote,
        tls_cert_file,
        tls_key_file,
        client_ca_file,
        client_token_file,
        local_users: match listen.local_users.as_deref().map(str::trim) {
            None => DEFAULT_LOCAL_USERS,
            Some("auto") => LocalUsers::Auto,
            Some("owner") => LocalUsers::Owner,
            Some("any") => LocalUsers::Any,
            Some(other) => {
                return Err(err(
                    "listen.local_users",
                    format!("`{other}` is not a choice of local users"),
                    "write auto (the default), owner (you, root and allowed_users) or any",
                ));
            }
        },
        allowed_users: listen
            .allowed_users
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect(),
        client_credentials: match listen.client_credentials.as_deref().map(str::trim) {
            None => DEFAULT_CLIENT_CREDENTIALS,
            Some("strip") => ClientCredentials::Strip,
            Some("forward") => ClientCredentials::Forward,
            Some(other) => {
                return Err(err(
                    "listen.client_credentials",
                    format!("`{other}` is not a way to treat client credentials"),
                    "write strip (kprox's identity, the default) or forward (each client's own)",
                ));
            }
        },
        shutdown_grace: listen.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        max_connections: match listen.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS) {
            0 => {
                return Err(err(
                    "listen.max_connections",
                    "0 would refuse every client".to_owned(),
                    "write a number of at least 1 (default 1000)",
                ));
            }
            n => count(n),
        },
        limits: limits(&err, listen.limits.clone().unwrap_or_default())?,
    };
    Ok(listen)
}

/// `[listen.limits]`: every limit positive; the header limit large enough for real tokens.
fn limits(err: &Refusal<'_>, raw: RawListenLimits) -> Result<ListenLimits, ConfigError> {
    let at_least = |key: &str, value: u64, minimum: u64, default: u64| {
        if value < minimum {
            Err(err(
                key,
                format!("{value} is below the smallest sensible value, {minimum}"),
                &format!("write a number of at least {minimum} (default {default})"),
            ))
        } else {
            Ok(value)
        }
    };
    let max_headers = at_least(
        "listen.limits.max_headers",
        raw.max_headers.unwrap_or(DEFAULT_MAX_HEADERS).into(),
        16,
        DEFAULT_MAX_HEADERS.into(),
    )?;
    let max_header_bytes = at_least(
        "listen.limits.max_header_bytes",
        raw.max_header_bytes
            .unwrap_or(DEFAULT_MAX_HEADER_BYTES)
            .into(),
        8 * 1024,
        DEFAULT_MAX_HEADER_BYTES.into(),
    )?;
    let max_body_bytes = at_least(
        "listen.limits.max_body_bytes",
        raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        1024,
        DEFAULT_MAX_BODY_BYTES,
    )?;
    Ok(ListenLimits {
        max_headers: usize::try_from(max_headers).unwrap_or(usize::MAX),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_body_bytes,
        header_read_timeout: positive_duration(
            err,
            "listen.limits.header_read_timeout",
            raw.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?,
        idle_timeout: positive_duration(
            err,
            "listen.limits.idle_timeout",
            raw.idle_timeout,
            DEFAULT_CLIENT_IDLE_TIMEOUT,
        )?,
        body_read_timeout: positive_duration(
            err,
            "listen.limits.body_read_timeout",
            raw.body_read_timeout,
            DEFAULT_BODY_READ_TIMEOUT,
        )?,
        write_timeout: positive_duration(
            err,
            "listen.limits.write_timeout",
            raw.write_timeout,
            DEFAULT_WRITE_TIMEOUT,
        )?,
    })
}
