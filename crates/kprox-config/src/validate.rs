//! Raw configuration in, validated configuration out: defaults applied, values checked, every
//! refusal naming the source, the key and the fix.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::*;
use crate::raw::RawConfig;
use crate::{
    AdminConfig, Config, ConfigError, FilterConfig, GoDuration, KubeconfigConfig, ListenConfig,
    ListenLimits, LogConfig, LogFormat, RuntimeConfig, UpstreamConfig, WwwConfig,
};

/// More runtime threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: u64 = 1024;

/// Tells which source set a key, for error messages.
pub trait OriginOf {
    /// A user-facing name for the source of `key` (dotted), e.g. a file path.
    fn origin_of(&self, key: &str) -> String;
}

impl<F: Fn(&str) -> String> OriginOf for F {
    fn origin_of(&self, key: &str) -> String {
        self(key)
    }
}

/// Applies defaults and checks every value.
pub fn validate(raw: &RawConfig, origins: &dyn OriginOf) -> Result<Config, ConfigError> {
    let err = |key: &str, problem: String, fix: &str| {
        ConfigError::new(origins.origin_of(key), key, problem, fix)
    };

    let listen = raw.listen.clone().unwrap_or_default();
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
        keepalive: listen.keepalive.unwrap_or_default(),
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
            n => n,
        },
        limits: limits(&err, listen.limits.clone().unwrap_or_default())?,
    };

    let filter = raw.filter.clone().unwrap_or_default();
    let regexes = |key: &str, given: &Option<Vec<String>>, default: &[&str]| {
        let list: Vec<String> = match given {
            Some(list) => list.iter().filter(|r| !r.is_empty()).cloned().collect(),
            None => default.iter().map(|s| (*s).to_owned()).collect(),
        };
        for pattern in &list {
            if let Err(e) = regex::Regex::new(pattern) {
                let reason = e.to_string().lines().last().unwrap_or_default().to_owned();
                return Err(err(
                    key,
                    format!("`{pattern}` is not a valid regular expression ({reason})"),
                    "escape special characters such as `.` `[` `(` with a backslash",
                ));
            }
        }
        Ok(list)
    };
    let filter = FilterConfig {
        accept_hosts: regexes(
            "filter.accept_hosts",
            &filter.accept_hosts,
            DEFAULT_ACCEPT_HOSTS,
        )?,
        accept_paths: regexes(
            "filter.accept_paths",
            &filter.accept_paths,
            DEFAULT_ACCEPT_PATHS,
        )?,
        reject_paths: regexes(
            "filter.reject_paths",
            &filter.reject_paths,
            DEFAULT_REJECT_PATHS,
        )?,
        reject_methods: regexes(
            "filter.reject_methods",
            &filter.reject_methods,
            DEFAULT_REJECT_METHODS,
        )?,
        disable: filter.disable.unwrap_or(false),
        pass_client_credentials: filter.pass_client_credentials.unwrap_or(false),
    };

    let www = raw.www.clone().unwrap_or_default();
    let www = WwwConfig {
        dir: non_empty(www.dir.as_deref()).map(PathBuf::from),
        prefix: slash_wrapped(www.prefix.as_deref().unwrap_or(DEFAULT_WWW_PREFIX)),
    };

    let kube = raw.kubeconfig.clone().unwrap_or_default();
    let kubeconfig = KubeconfigConfig {
        path: non_empty(kube.path.as_deref()).map(PathBuf::from),
        context: non_empty(kube.context.as_deref()).map(str::to_owned),
        cluster: non_empty(kube.cluster.as_deref()).map(str::to_owned),
        user: non_empty(kube.user.as_deref()).map(str::to_owned),
        append_server_path: kube.append_server_path.unwrap_or(false),
        impersonate_user: non_empty(kube.impersonate_user.as_deref()).map(str::to_owned),
        impersonate_groups: kube
            .impersonate_groups
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|g| !g.is_empty())
            .collect(),
        impersonate_uid: non_empty(kube.impersonate_uid.as_deref()).map(str::to_owned),
        token: non_empty(kube.token.as_deref()).map(str::to_owned),
        certificate_authority: non_empty(kube.certificate_authority.as_deref()).map(PathBuf::from),
        insecure_skip_tls_verify: kube.insecure_skip_tls_verify.unwrap_or(false),
        tls_server_name: non_empty(kube.tls_server_name.as_deref()).map(str::to_owned),
        exec_timeout: positive_duration(
            &err,
            "kubeconfig.exec_timeout",
            kube.exec_timeout,
            DEFAULT_EXEC_TIMEOUT,
        )?,
        service_account_dir: PathBuf::from(
            non_empty(kube.service_account_dir.as_deref()).unwrap_or(DEFAULT_SERVICE_ACCOUNT_DIR),
        ),
        reload_interval: positive_duration(
            &err,
            "kubeconfig.reload_interval",
            kube.reload_interval,
            DEFAULT_RELOAD_INTERVAL,
        )?,
        follow_context: kube.follow_context.unwrap_or(false),
    };

    let up = raw.upstream.clone().unwrap_or_default();
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
        keepalive_interval: up.keepalive_interval.unwrap_or(DEFAULT_KEEPALIVE_INTERVAL),
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
        max_streams_per_connection: max_streams,
        spread_streams,
        max_connections_per_apiserver,
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
        max_attempts: at_least_one(
            "upstream.max_attempts",
            up.max_attempts,
            DEFAULT_MAX_ATTEMPTS,
        )?,
        watch_resume: up.watch_resume.unwrap_or(true),
        discover: up.discover.unwrap_or(false),
    };

    let log = raw.log.clone().unwrap_or_default();
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

    let admin_written = raw.admin.as_ref().and_then(|a| a.address.clone());
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

    let worker_threads = raw
        .runtime
        .as_ref()
        .and_then(|r| r.worker_threads)
        .unwrap_or(0);
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

    if listen.client_credentials == ClientCredentials::Forward && filter.pass_client_credentials {
        return Err(err(
            "listen.client_credentials",
            "forward and filter.pass_client_credentials were both set".to_owned(),
            "choose one: forward never adds kprox's credentials, pass_client_credentials adds them when a client sends none",
        ));
    }
    let passthrough = passthrough(&err, raw.passthrough.clone().unwrap_or_default())?;

    Ok(Config {
        listen,
        filter,
        www,
        kubeconfig,
        upstream,
        log,
        admin,
        runtime,
        passthrough,
    })
}

/// `[passthrough]`: an address with a port, or off.
fn passthrough(
    err: &dyn Fn(&str, String, &str) -> ConfigError,
    raw: crate::raw::RawPassthrough,
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

/// `[listen.limits]`: every limit positive; the header limit large enough for real tokens.
fn limits(
    err: &dyn Fn(&str, String, &str) -> ConfigError,
    raw: crate::raw::RawListenLimits,
) -> Result<ListenLimits, ConfigError> {
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
        max_headers: u32::try_from(max_headers).unwrap_or(u32::MAX),
        max_header_bytes: u32::try_from(max_header_bytes).unwrap_or(u32::MAX),
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

fn positive_duration(
    err: &dyn Fn(&str, String, &str) -> ConfigError,
    key: &str,
    value: Option<GoDuration>,
    default: GoDuration,
) -> Result<GoDuration, ConfigError> {
    let value = value.unwrap_or(default);
    if value.is_zero() {
        return Err(err(
            key,
            "0s would end every connection at once".to_owned(),
            &format!("write a positive duration (default {default})"),
        ));
    }
    Ok(value)
}

/// Empty strings mean "unset", as kubectl's string flags do.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

/// `api` → `/api/`, `` → `/`.
fn slash_wrapped(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

fn check_server_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("`{text}` must start with https:// or http://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not carry a query or fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{RawFilter, RawListen, RawUpstream};

    fn origin(_: &str) -> String {
        "test.toml".to_owned()
    }

    #[test]
    fn defaults_match_kubectl_proxy() {
        let config = validate(&RawConfig::default(), &origin).expect("defaults are valid");
        assert_eq!(config.listen.address.to_string(), "127.0.0.1");
        assert_eq!(config.listen.port, 8001);
        assert_eq!(config.listen.api_prefix, "/");
        assert_eq!(config.www.prefix, "/static/");
        assert_eq!(config.filter.reject_paths, DEFAULT_REJECT_PATHS);
        assert!(!config.filter.pass_client_credentials);
    }

    #[test]
    fn a_bad_regex_names_the_file_the_key_and_the_fix() {
        let raw = RawConfig {
            filter: Some(RawFilter {
                accept_hosts: Some(vec!["^ok$".into(), "(unclosed".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let error = validate(&raw, &origin).expect_err("must refuse");
        assert_eq!(error.key, "filter.accept_hosts");
        let line = error.to_string();
        assert!(
            line.starts_with("test.toml: key `filter.accept_hosts`: `(unclosed`"),
            "{line}"
        );
        assert!(line.contains("fix:"), "{line}");
    }

    #[test]
    fn a_remote_address_needs_an_explicit_opt_in() {
        let mut raw = RawConfig {
            listen: Some(RawListen {
                address: Some("0.0.0.0".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            validate(&raw, &origin).expect_err("refused").key,
            "listen.address"
        );
        if let Some(listen) = raw.listen.as_mut() {
            listen.insecure_allow_unauthenticated_remote = Some(true);
        }
        assert!(
            validate(&raw, &origin)
                .expect("allowed")
                .listen
                .insecure_allow_unauthenticated_remote
        );
    }

    #[test]
    fn unix_socket_with_a_custom_port_is_refused() {
        let raw = RawConfig {
            listen: Some(RawListen {
                unix_socket: Some("/tmp/k.sock".into()),
                port: Some(9000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let error = validate(&raw, &origin).expect_err("must refuse");
        assert_eq!(error.key, "listen.unix_socket");
    }

    #[test]
    fn comma_separated_servers_are_split_and_checked() {
        let raw = RawConfig {
            upstream: Some(RawUpstream {
                servers: Some(vec!["https://a:6443, https://b:6443".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let config = validate(&raw, &origin).expect("valid");
        assert_eq!(
            config.upstream.servers,
            ["https://a:6443", "https://b:6443"]
        );

        let raw = RawConfig {
            upstream: Some(RawUpstream {
                servers: Some(vec!["ftp://a".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            validate(&raw, &origin).expect_err("bad scheme").key,
            "upstream.servers"
        );
    }

    #[test]
    fn prefixes_are_wrapped_in_slashes() {
        assert_eq!(slash_wrapped("api"), "/api/");
        assert_eq!(slash_wrapped("/api"), "/api/");
        assert_eq!(slash_wrapped(""), "/");
        assert_eq!(slash_wrapped("/"), "/");
    }
}
