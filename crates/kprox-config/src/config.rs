//! The validated configuration: typed, defaults applied, every value checked. Each component
//! receives its own section, never the whole thing.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::GoDuration;

/// Everything kprox needs to start, after defaults and validation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub listen: ListenConfig,
    pub filter: FilterConfig,
    pub www: WwwConfig,
    pub kubeconfig: KubeconfigConfig,
    pub upstream: UpstreamConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub runtime: RuntimeConfig,
}

/// The async runtime's shape; read once at start (changing it needs a restart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeConfig {
    /// Threads serving connections; `0` (the default) is one per CPU kprox may use (cgroup
    /// quotas included). `1` gives the lowest tail latency when kprox shares a small machine
    /// with busy clients (benches/results); more give more throughput when cores are free.
    pub worker_threads: usize,
}

/// The admin listener.
#[derive(Clone, Debug, Serialize)]
pub struct AdminConfig {
    /// Address of `/metrics`, `/livez`, `/readyz` and the status page; `None` (written `off`)
    /// disables it. Default `127.0.0.1:8002`, next to kubectl proxy's 8001.
    #[serde(serialize_with = "crate::validate::addr_or_off")]
    pub address: Option<std::net::SocketAddr>,
    /// True when `address` is the default rather than one the user wrote (flag, env or file).
    /// A default address that is taken (a second kprox, or `--port 8002`) is replaced by a
    /// free port on the same IP, announced on stderr and in the log; an address the user
    /// chose fails start-up instead.
    #[serde(skip)]
    pub address_is_default: bool,
}

/// Two admin configurations are equal when they serve the same address: whether the address
/// was written or defaulted is where it came from, not what it is (a file that spells out the
/// default configures the same listener).
impl PartialEq for AdminConfig {
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address
    }
}

/// Where and how client connections are accepted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListenConfig {
    /// IP address to serve on (kubectl's `--address`). Default `127.0.0.1`.
    pub address: IpAddr,
    /// TCP port (kubectl's `-p/--port`); `0` picks a free one. Default `8001`.
    pub port: u16,
    /// Serve on this unix socket instead of TCP (kubectl's `-u/--unix-socket`).
    #[serde(serialize_with = "crate::validate::path_or_empty")]
    pub unix_socket: Option<PathBuf>,
    /// TCP keepalive period for client connections (kubectl's `--keepalive`); `0s` leaves the
    /// operating system default.
    pub keepalive: GoDuration,
    /// Requests under this prefix are proxied with the prefix removed; always starts and ends
    /// with `/`. Default `/`.
    pub api_prefix: String,
    /// An exec, attach or port-forward tunnel with no byte either way for this long is closed.
    /// Default 4 h, the kubelet's streaming idle timeout.
    pub tunnel_idle_timeout: GoDuration,
    /// Serve on a non-loopback address without any client authentication. Off by default:
    /// anyone who can reach the address would act with kprox's credentials.
    pub insecure_allow_unauthenticated_remote: bool,
    /// Serve HTTPS with this certificate chain (PEM); plain HTTP when unset.
    #[serde(serialize_with = "crate::validate::path_or_empty")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file` (PEM).
    #[serde(serialize_with = "crate::validate::path_or_empty")]
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM); needs `tls_cert_file`.
    #[serde(serialize_with = "crate::validate::path_or_empty")]
    pub client_ca_file: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` with the token in this file (re-read every
    /// minute); kprox checks it and removes it before forwarding.
    #[serde(serialize_with = "crate::validate::path_or_empty")]
    pub client_token_file: Option<PathBuf>,
    /// Client connections served at once; more are answered `503` with `Retry-After` and
    /// closed. Default 1000 (below the usual 1024 open-file limit).
    pub max_connections: u32,
    /// On SIGTERM/SIGINT: new connections are refused at once, requests in flight get this
    /// long to finish, then watch streams end cleanly and tunnels close. Default 25 s (inside a
    /// pod's 30 s termination grace period).
    pub shutdown_grace: GoDuration,
    /// Limits on what one client may send and how slowly; see [`ListenLimits`].
    pub limits: ListenLimits,
}

/// Limits and timeouts on client connections (`[listen.limits]`). Watches and exec/attach/
/// port-forward tunnels are exempt from the request timeouts: a watch may wait hours for an
/// event and a tunnel has `listen.tunnel_idle_timeout`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListenLimits {
    /// Most header fields in one request; more → `431`. Default 100 (Envoy's and hyper's).
    pub max_headers: u32,
    /// Most bytes in one request's start line and headers; more → `431`. Default 64 KiB
    /// (a 16 KiB bearer token fits four times over).
    pub max_header_bytes: u32,
    /// Most bytes in one request body; more → `413`. Default 3 MiB, the apiserver's own limit.
    pub max_body_bytes: u64,
    /// Time from the first byte of a request to the end of its headers. Default 30 s.
    pub header_read_timeout: GoDuration,
    /// A keep-alive connection with no request for this long is closed. Default 90 s.
    pub idle_timeout: GoDuration,
    /// Time allowed for a whole request body to arrive. Default 60 s.
    pub body_read_timeout: GoDuration,
    /// A response (a watch included) that the client does not read for this long is abandoned
    /// and the connection closed. Default 60 s.
    pub write_timeout: GoDuration,
}

/// Which requests are accepted. Regexes are validated here and compiled by the listener.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilterConfig {
    /// Regexes matched against the request's Host (port removed).
    pub accept_hosts: Vec<String>,
    /// Regexes a path must match to be accepted.
    pub accept_paths: Vec<String>,
    /// Regexes that reject a path; checked before anything else.
    pub reject_paths: Vec<String>,
    /// Regexes that reject a method (compared case-insensitively).
    pub reject_methods: Vec<String>,
    /// Accept every request (kubectl's `--disable-filter`). Dangerous; logged loudly.
    pub disable: bool,
    /// Forward the client's own `Authorization` and `Impersonate-*` headers instead of removing
    /// them (kubectl proxy's behaviour). Off by default.
    pub pass_client_credentials: bool,
}

impl FilterConfig {
    /// kubectl proxy's default filters, what an empty configuration gives.
    pub fn kubectl_defaults() -> Self {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Self {
            accept_hosts: strings(crate::DEFAULT_ACCEPT_HOSTS),
            accept_paths: strings(crate::DEFAULT_ACCEPT_PATHS),
            reject_paths: strings(crate::DEFAULT_REJECT_PATHS),
            reject_methods: strings(crate::DEFAULT_REJECT_METHODS),
            disable: false,
            pass_client_credentials: false,
        }
    }
}

/// Static files served beside the API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WwwConfig {
    /// Directory to serve (kubectl's `-w/--www`); none by default.
    #[serde(serialize_with = "crate::validate::path_or_empty")]
    pub dir: Option<PathBuf>,
    /// URL prefix of the static files (kubectl's `-P/--www-prefix`); starts and ends with `/`.
    pub prefix: String,
}

/// Which kubeconfig entries are used. `Default` is "everything from the kubeconfig".
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KubeconfigConfig {
    /// Kubeconfig file; none means `KUBECONFIG` (several files merged) or `~/.kube/config`.
    #[serde(serialize_with = "crate::validate::path_or_empty")]
    pub path: Option<PathBuf>,
    /// Context to use instead of the current one.
    #[serde(serialize_with = "crate::validate::string_or_empty")]
    pub context: Option<String>,
    /// Cluster to use instead of the context's.
    #[serde(serialize_with = "crate::validate::string_or_empty")]
    pub cluster: Option<String>,
    /// User to use instead of the context's.
    #[serde(serialize_with = "crate::validate::string_or_empty")]
    pub user: Option<String>,
    /// Prepend the path of the server URL to every forwarded request.
    pub append_server_path: bool,
    /// Impersonate this user (kubectl's `--as`); overrides the kubeconfig user's `as`.
    #[serde(rename = "as", serialize_with = "crate::validate::string_or_empty")]
    pub impersonate_user: Option<String>,
    /// Impersonate these groups (`--as-group`, repeatable).
    #[serde(rename = "as_groups")]
    pub impersonate_groups: Vec<String>,
    /// Impersonate this UID (`--as-uid`).
    #[serde(rename = "as_uid", serialize_with = "crate::validate::string_or_empty")]
    pub impersonate_uid: Option<String>,
    /// A bearer token instead of the kubeconfig user's credential (`--token`). Printed redacted.
    #[serde(serialize_with = "crate::validate::redacted")]
    pub token: Option<String>,
    /// A CA file instead of the kubeconfig cluster's (`--certificate-authority`).
    #[serde(serialize_with = "crate::validate::path_or_empty")]
    pub certificate_authority: Option<PathBuf>,
    /// Do not verify the apiserver at all (`--insecure-skip-tls-verify`). Dangerous.
    pub insecure_skip_tls_verify: bool,
    /// Verify the apiserver's certificate against this name (`--tls-server-name`).
    #[serde(serialize_with = "crate::validate::string_or_empty")]
    pub tls_server_name: Option<String>,
    /// Longest an exec credential plugin may run before it is stopped. Default 30 s.
    pub exec_timeout: GoDuration,
    /// Where the pod's service account is mounted, used when there is no kubeconfig and
    /// `KUBERNETES_SERVICE_HOST` is set. Default `/var/run/secrets/kubernetes.io/serviceaccount`.
    #[serde(serialize_with = "crate::validate::path_buf")]
    pub service_account_dir: PathBuf,
    /// How often the config file, kubeconfig, CA and client certificate files are checked for
    /// changes. Default 10 s.
    pub reload_interval: GoDuration,
    /// Follow the kubeconfig's current-context when it changes. Default false: the context kprox
    /// started with stays selected.
    pub follow_context: bool,
}

/// The apiservers and the connections kprox keeps to them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpstreamConfig {
    /// Apiserver URLs; empty means the kubeconfig cluster's server.
    pub servers: Vec<String>,
    /// Limit on establishing a TCP connection. Default 30 s, like client-go.
    pub connect_timeout: GoDuration,
    /// Limit on the TLS handshake. Default 10 s, like client-go.
    pub tls_handshake_timeout: GoDuration,
    /// HTTP/2 PING after this much silence on a connection. Default 30 s, like client-go.
    pub keepalive_interval: GoDuration,
    /// A PING unanswered for this long closes the connection. Default 15 s, like client-go.
    pub keepalive_timeout: GoDuration,
    /// Pooled connections idle this long are closed. Default 90 s.
    pub idle_timeout: GoDuration,
    /// Streams kprox opens on one HTTP/2 connection before opening another, capped by what the
    /// apiserver advertises. Default 100.
    pub max_streams_per_connection: u32,
    /// Requests other than watches in flight on every HTTP/2 connection to an apiserver before
    /// kprox opens another to share the load. Default 16.
    pub spread_streams: u32,
    /// HTTP/2 connections per apiserver opened to share load, at most (watches beyond
    /// `max_streams_per_connection` still get more). Default 4.
    pub max_connections_per_apiserver: u32,
    /// `round-robin`, `least-request` or `failover`. Default `least-request`.
    pub policy: String,
    /// A server URL to prefer (first choice of the failover policy).
    #[serde(serialize_with = "crate::validate::string_or_empty")]
    pub preferred: Option<String>,
    /// Time between active `/readyz` checks of each apiserver. Default 400 ms.
    pub health_check_interval: GoDuration,
    /// A check unanswered this long fails. Default 500 ms.
    pub health_check_timeout: GoDuration,
    /// Consecutive passed checks that bring an apiserver back. Default 2.
    pub health_rise: u32,
    /// Consecutive failed checks that take an apiserver out. Default 2.
    pub health_fall: u32,
    /// Minimum time out after an ejection, doubling with each repeat. Default 1 s.
    pub ejection_base: GoDuration,
    /// Longest time out. Default 30 s.
    pub ejection_max: GoDuration,
    /// Retries may add at most this percentage of requests. Default 20.
    pub retry_budget_percent: u32,
    /// ...but this many retries per second are always allowed. Default 10.
    pub retry_min_per_second: u32,
    /// A 503 whose `Retry-After` is longer than this goes back to the client instead; a 429 that
    /// long goes to the next apiserver at once (it speaks for its replica). Default 1 s.
    pub retry_after_cap: GoDuration,
    /// Attempts per request, the first included (requests never sent do not count). Default 3.
    pub max_attempts: u32,
    /// Resume a watch (JSON or protobuf) on another apiserver when its stream breaks, from the
    /// last resourceVersion delivered, in the same client response; a watch broken during its
    /// initial events gets an `ERROR` event instead (README, "Watches across a failover").
    /// Default true.
    pub watch_resume: bool,
    /// Follow the `default/kubernetes` EndpointSlices (through kprox's own credentials) and
    /// use the apiservers they list, seeded from `servers`. Default false.
    pub discover: bool,
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter such as `info` or `kprox=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
    /// One line per request (target `kprox::access`): method, normalised path, status,
    /// apiserver, duration, attempts. Off by default.
    pub access: bool,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald shows them as they are).
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::FilterConfig;

    #[test]
    fn the_kubectl_defaults_are_what_an_empty_configuration_gives() {
        let config = crate::load(&crate::Sources {
            file: None,
            environment: false,
            flags: crate::RawConfig::default(),
        })
        .expect("the defaults load");
        assert_eq!(config.filter, FilterConfig::kubectl_defaults());
    }
}
