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
    pub passthrough: PassthroughConfig,
}

/// The TCP pass-through listener (`[passthrough]`): connections are spliced to an apiserver
/// chosen by kprox's health checks and policy, with TLS left to the client and the apiserver,
/// so a kubelet's or agent's client certificate reaches the apiserver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PassthroughConfig {
    /// Address to accept TCP on (`--tcp-passthrough`); `None` (written `off`), the default,
    /// serves none. The apiservers' certificates must name the address clients dial (such as
    /// `127.0.0.1` or `localhost`).
    #[serde(serialize_with = "crate::print_format::addr_or_off")]
    pub address: Option<std::net::SocketAddr>,
    /// Close the pass-through connections of an apiserver when health checks take it out of
    /// rotation, so clients reconnect to a healthy one (as the k3s agent's load balancer does).
    /// Default true.
    pub close_on_ejection: bool,
}

/// The async runtime's shape; read once at start (changing it needs a restart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeConfig {
    /// Threads serving connections; `0` (the default) is one per CPU kprox may use (cgroup
    /// quotas included). `1` gives the lowest tail latency when kprox shares a small machine
    /// with busy clients (benches/results); more give more throughput when cores are free.
    pub worker_threads: usize,
}

// The defaults of [`AdminConfig`].
/// The admin listener: next to kubectl proxy's 8001.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:8002";

/// The admin listener.
#[derive(Clone, Debug, Serialize)]
pub struct AdminConfig {
    /// Address of `/metrics`, `/livez`, `/readyz` and the status page; `None` (written `off`)
    /// disables it. Default [`DEFAULT_ADMIN_ADDRESS`].
    #[serde(serialize_with = "crate::print_format::addr_or_off")]
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

// The defaults of [`ListenConfig`].
/// kubectl proxy's default `--address`.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1";
/// kubectl proxy's default `--port`.
pub const DEFAULT_PORT: u16 = 8001;
/// kubectl proxy's default `--api-prefix`.
pub const DEFAULT_API_PREFIX: &str = "/";
/// The kubelet's default `--streaming-connection-idle-timeout`.
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: GoDuration = GoDuration::from_secs(4 * 3600);
/// Client connections at once.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1000;
/// Only you on a desktop, anyone in a pod.
pub const DEFAULT_LOCAL_USERS: LocalUsers = LocalUsers::Auto;
/// kprox's own identity reaches the apiserver, as with kubectl proxy.
pub const DEFAULT_CLIENT_CREDENTIALS: ClientCredentials = ClientCredentials::Strip;
/// Time requests in flight get at shutdown (a pod's default grace period is 30 s).
pub const DEFAULT_SHUTDOWN_GRACE: GoDuration = GoDuration::from_secs(25);

/// Where and how client connections are accepted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListenConfig {
    /// IP address to serve on (kubectl's `--address`). Default [`DEFAULT_ADDRESS`].
    pub address: IpAddr,
    /// TCP port (kubectl's `-p/--port`); `0` picks a free one. Default [`DEFAULT_PORT`].
    pub port: u16,
    /// Serve on this unix socket instead of TCP (kubectl's `-u/--unix-socket`).
    #[serde(serialize_with = "crate::print_format::path_or_empty")]
    pub unix_socket: Option<PathBuf>,
    /// TCP keepalive period for client connections (kubectl's `--keepalive`); `None`
    /// (written `0s`, the default) leaves the operating system default.
    #[serde(serialize_with = "crate::print_format::duration_or_zero")]
    pub keepalive: Option<GoDuration>,
    /// Requests under this prefix are proxied with the prefix removed; always starts and ends
    /// with `/`. Default [`DEFAULT_API_PREFIX`].
    pub api_prefix: String,
    /// An exec, attach or port-forward tunnel with no byte either way for this long is closed.
    /// Default [`DEFAULT_TUNNEL_IDLE_TIMEOUT`].
    pub tunnel_idle_timeout: GoDuration,
    /// Serve on a non-loopback address without any client authentication. Off by default:
    /// anyone who can reach the address would act with kprox's credentials.
    pub insecure_allow_unauthenticated_remote: bool,
    /// Serve HTTPS with this certificate chain (PEM); plain HTTP when unset.
    #[serde(serialize_with = "crate::print_format::path_or_empty")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file` (PEM).
    #[serde(serialize_with = "crate::print_format::path_or_empty")]
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM); needs `tls_cert_file`.
    #[serde(serialize_with = "crate::print_format::path_or_empty")]
    pub client_ca_file: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` with the token in this file (re-read every
    /// minute); kprox checks it and removes it before forwarding.
    #[serde(serialize_with = "crate::print_format::path_or_empty")]
    pub client_token_file: Option<PathBuf>,
    /// Whose identity reaches the apiserver: kprox's (`strip` clients' credentials and add
    /// kprox's) or each client's own (`forward`). Default [`DEFAULT_CLIENT_CREDENTIALS`].
    pub client_credentials: ClientCredentials,
    /// Which local users may use a loopback or unix-socket listener (the kernel says who is on
    /// the other end). Default [`DEFAULT_LOCAL_USERS`].
    pub local_users: LocalUsers,
    /// Users served besides kprox's own and root, by name or UID, and groups as `%NAME` or
    /// `%GID` (`--allow-user`), when
    /// `local_users` is checked.
    pub allowed_users: Vec<String>,
    /// Client connections served at once; more are answered `503` with `Retry-After` and
    /// closed. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// On SIGTERM/SIGINT: new connections are refused at once, requests in flight get this
    /// long to finish, then watch streams end cleanly and tunnels close. Default
    /// [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: GoDuration,
    /// Limits on what one client may send and how slowly; see [`ListenLimits`].
    pub limits: ListenLimits,
}

// The defaults of [`ListenLimits`].
/// Header fields in one request (Envoy's and hyper's default).
pub const DEFAULT_MAX_HEADERS: u32 = 100;
/// Bytes of start line and headers in one request.
pub const DEFAULT_MAX_HEADER_BYTES: u32 = 64 * 1024;
/// Bytes in one request body: the apiserver's own `MaxRequestBodyBytes`.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 3 * 1024 * 1024;
/// From a request's first byte to the end of its headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: GoDuration = GoDuration::from_secs(30);
/// A keep-alive client connection with no request.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: GoDuration = GoDuration::from_secs(90);
/// A whole request body.
pub const DEFAULT_BODY_READ_TIMEOUT: GoDuration = GoDuration::from_secs(60);
/// A response the client does not read.
pub const DEFAULT_WRITE_TIMEOUT: GoDuration = GoDuration::from_secs(60);

/// How the upstream chooses an apiserver for a request, among those health checks keep in
/// rotation (all of them when none is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each in turn.
    RoundRobin,
    /// The cheaper of two drawn at random: peak-EWMA latency times (requests in flight + 1).
    LeastRequest,
    /// The first in configured order (`preferred` first), like k3s's active/standby.
    Failover,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "round-robin" => Ok(Self::RoundRobin),
            "least-request" => Ok(Self::LeastRequest),
            "failover" => Ok(Self::Failover),
            other => Err(format!("`{other}` is not a balancing policy")),
        }
    }
}

/// Who may connect to a loopback TCP or unix-socket listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalUsers {
    /// `owner` with a kubeconfig (a desktop or a shared host: your credentials), `any`
    /// in-cluster (the pod's network namespace is the boundary).
    Auto,
    /// The user kprox runs as, root, and `allowed_users`; anyone else gets a 403.
    Owner,
    /// Any local user or process, as with kubectl proxy (`--allow-any-local-user`).
    Any,
}

/// Whose identity the apiserver sees for a client's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCredentials {
    /// Clients' `Authorization` and `Impersonate-*` headers are removed and kprox's
    /// credentials added (kubectl proxy's model; `filter.pass_client_credentials` relaxes it).
    Strip,
    /// Each client's own `Authorization` goes to the apiserver and kprox adds nothing of its
    /// own, neither a token nor a client certificate: a request without credentials arrives
    /// anonymous. `Impersonate-*` headers are still removed. kprox's credentials serve only its
    /// health checks and discovery. For node-local agents that authenticate with tokens.
    Forward,
}

/// Limits and timeouts on client connections (`[listen.limits]`). Watches and exec/attach/
/// port-forward tunnels are exempt from the request timeouts: a watch may wait hours for an
/// event and a tunnel has `listen.tunnel_idle_timeout`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListenLimits {
    /// Most header fields in one request; more → `431`. Default [`DEFAULT_MAX_HEADERS`].
    pub max_headers: usize,
    /// Most bytes in one request's start line and headers; more → `431`. Default
    /// [`DEFAULT_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// Most bytes in one request body; more → `413`. Default [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: u64,
    /// Time from the first byte of a request to the end of its headers. Default [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: GoDuration,
    /// A keep-alive connection with no request for this long is closed. Default [`DEFAULT_CLIENT_IDLE_TIMEOUT`].
    pub idle_timeout: GoDuration,
    /// Time allowed for a whole request body to arrive. Default [`DEFAULT_BODY_READ_TIMEOUT`].
    pub body_read_timeout: GoDuration,
    /// A response (a watch included) that the client does not read for this long is abandoned
    /// and the connection closed. Default [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: GoDuration,
}

// The defaults of [`FilterConfig`].
/// kubectl proxy's default `--accept-hosts`: loopback names only (DNS rebinding defence).
pub const DEFAULT_ACCEPT_HOSTS: &[&str] = &["^localhost$", r"^127\.0\.0\.1$", r"^\[::1\]$"];
/// kubectl proxy's default `--accept-paths`: everything.
pub const DEFAULT_ACCEPT_PATHS: &[&str] = &["^.*"];
/// kubectl proxy's default `--reject-paths` (exec and attach), plus the kubelet's exec, attach,
/// run and port-forward reached through the node proxy, which kubectl leaves open.
pub const DEFAULT_REJECT_PATHS: &[&str] = &[
    "^/api/.*/pods/.*/exec",
    "^/api/.*/pods/.*/attach",
    "^/api/.*/nodes/.*/proxy/(exec|attach|run|portForward)",
];
/// kubectl proxy's default `--reject-methods`: nothing.
pub const DEFAULT_REJECT_METHODS: &[&str] = &["^$"];

/// Which requests are accepted. Regexes are validated here and compiled by the listener.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilterConfig {
    /// Regexes matched against the request's Host (port removed). Default
    /// [`DEFAULT_ACCEPT_HOSTS`].
    pub accept_hosts: Vec<String>,
    /// Regexes a path must match to be accepted. Default [`DEFAULT_ACCEPT_PATHS`].
    pub accept_paths: Vec<String>,
    /// Regexes that reject a path; checked before anything else. Default
    /// [`DEFAULT_REJECT_PATHS`].
    pub reject_paths: Vec<String>,
    /// Regexes that reject a method (compared case-insensitively). Default
    /// [`DEFAULT_REJECT_METHODS`].
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
            accept_hosts: strings(DEFAULT_ACCEPT_HOSTS),
            accept_paths: strings(DEFAULT_ACCEPT_PATHS),
            reject_paths: strings(DEFAULT_REJECT_PATHS),
            reject_methods: strings(DEFAULT_REJECT_METHODS),
            disable: false,
            pass_client_credentials: false,
        }
    }
}

// The defaults of [`WwwConfig`].
/// kubectl proxy's default `--www-prefix`.
pub const DEFAULT_WWW_PREFIX: &str = "/static/";

/// Static files served beside the API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WwwConfig {
    /// Directory to serve (kubectl's `-w/--www`); none by default.
    #[serde(serialize_with = "crate::print_format::path_or_empty")]
    pub dir: Option<PathBuf>,
    /// URL prefix of the static files (kubectl's `-P/--www-prefix`); starts and ends with `/`. Default
    /// [`DEFAULT_WWW_PREFIX`].
    pub prefix: String,
}

// The defaults of [`KubeconfigConfig`].
/// Longest an exec credential plugin may run.
pub const DEFAULT_EXEC_TIMEOUT: GoDuration = GoDuration::from_secs(30);
/// Where Kubernetes mounts a pod's service account.
pub const DEFAULT_SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How often TLS files are checked (client-go re-reads client certificates every 5 minutes).
pub const DEFAULT_RELOAD_INTERVAL: GoDuration = GoDuration::from_secs(10);

/// Which kubeconfig entries are used. `Default` is "everything from the kubeconfig".
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KubeconfigConfig {
    /// Kubeconfig file; none means `KUBECONFIG` (several files merged) or `~/.kube/config`.
    #[serde(serialize_with = "crate::print_format::path_or_empty")]
    pub path: Option<PathBuf>,
    /// Context to use instead of the current one.
    #[serde(serialize_with = "crate::print_format::string_or_empty")]
    pub context: Option<String>,
    /// Cluster to use instead of the context's.
    #[serde(serialize_with = "crate::print_format::string_or_empty")]
    pub cluster: Option<String>,
    /// User to use instead of the context's.
    #[serde(serialize_with = "crate::print_format::string_or_empty")]
    pub user: Option<String>,
    /// Prepend the path of the server URL to every forwarded request.
    pub append_server_path: bool,
    /// Impersonate this user (kubectl's `--as`); overrides the kubeconfig user's `as`.
    #[serde(rename = "as", serialize_with = "crate::print_format::string_or_empty")]
    pub impersonate_user: Option<String>,
    /// Impersonate these groups (`--as-group`, repeatable).
    #[serde(rename = "as_groups")]
    pub impersonate_groups: Vec<String>,
    /// Impersonate this UID (`--as-uid`).
    #[serde(
        rename = "as_uid",
        serialize_with = "crate::print_format::string_or_empty"
    )]
    pub impersonate_uid: Option<String>,
    /// A bearer token instead of the kubeconfig user's credential (`--token`). Printed redacted.
    #[serde(serialize_with = "crate::print_format::redacted")]
    pub token: Option<String>,
    /// A CA file instead of the kubeconfig cluster's (`--certificate-authority`).
    #[serde(serialize_with = "crate::print_format::path_or_empty")]
    pub certificate_authority: Option<PathBuf>,
    /// Do not verify the apiserver at all (`--insecure-skip-tls-verify`). Dangerous.
    pub insecure_skip_tls_verify: bool,
    /// Verify the apiserver's certificate against this name (`--tls-server-name`).
    #[serde(serialize_with = "crate::print_format::string_or_empty")]
    pub tls_server_name: Option<String>,
    /// Longest an exec credential plugin may run before it is stopped. Default [`DEFAULT_EXEC_TIMEOUT`].
    pub exec_timeout: GoDuration,
    /// Where the pod's service account is mounted, used when there is no kubeconfig and
    /// `KUBERNETES_SERVICE_HOST` is set. Default [`DEFAULT_SERVICE_ACCOUNT_DIR`].
    #[serde(serialize_with = "crate::print_format::path_buf")]
    pub service_account_dir: PathBuf,
    /// How often the config file, kubeconfig, CA and client certificate files are checked for
    /// changes. Default [`DEFAULT_RELOAD_INTERVAL`].
    pub reload_interval: GoDuration,
    /// Follow the kubeconfig's current-context when it changes. Default false: the context kprox
    /// started with stays selected.
    pub follow_context: bool,
    /// Serve every context of the kubeconfig under `/clusters/<context>/`, each set up on its
    /// first request; other paths go to the current context. Default false.
    pub all_contexts: bool,
}

// The defaults of [`UpstreamConfig`].
/// Dial timeout: KubePrism's 5 s rather than client-go's 30 s, so that a dead apiserver costs a
/// request seconds, not half a minute, before it goes elsewhere.
pub const DEFAULT_CONNECT_TIMEOUT: GoDuration = GoDuration::from_secs(5);
/// TLS handshake timeout, as short as the dial timeout for the same reason (client-go: 10 s).
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: GoDuration = GoDuration::from_secs(5);
/// client-go's HTTP/2 read-idle timeout before a health PING.
pub const DEFAULT_KEEPALIVE_INTERVAL: GoDuration = GoDuration::from_secs(30);
/// client-go's HTTP/2 PING timeout.
pub const DEFAULT_KEEPALIVE_TIMEOUT: GoDuration = GoDuration::from_secs(15);
/// Go's `http.Transport` idle connection timeout.
pub const DEFAULT_IDLE_TIMEOUT: GoDuration = GoDuration::from_secs(90);
/// Streams per HTTP/2 connection before kprox opens another (Go's default server allows 250,
/// the apiserver 1000 by default; staying below both leaves room for watches).
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// Non-watch requests in flight on every connection to an apiserver before another is opened.
pub const DEFAULT_SPREAD_STREAMS: u32 = 16;
/// Connections per apiserver opened to share load.
pub const DEFAULT_MAX_CONNECTIONS_PER_APISERVER: u32 = 4;
/// Balancing policy.
pub const DEFAULT_POLICY: Policy = Policy::LeastRequest;
/// Active health check period: with the timeout and fall below, a dead apiserver is out within 2 s.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: GoDuration = GoDuration::from_millis(400);
/// Active health check timeout.
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: GoDuration = GoDuration::from_millis(500);
/// Passed checks to come back.
pub const DEFAULT_HEALTH_RISE: u32 = 2;
/// Failed checks to go out.
pub const DEFAULT_HEALTH_FALL: u32 = 2;
/// First ejection time.
pub const DEFAULT_EJECTION_BASE: GoDuration = GoDuration::from_secs(1);
/// Longest ejection time.
pub const DEFAULT_EJECTION_MAX: GoDuration = GoDuration::from_secs(30);
/// Envoy's retry budget.
pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
/// Retries always allowed per second.
pub const DEFAULT_RETRY_MIN_PER_SECOND: u32 = 10;
/// Longest `Retry-After` kprox waits for.
pub const DEFAULT_RETRY_AFTER_CAP: GoDuration = GoDuration::from_secs(1);
/// Attempts per request.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The apiservers and the connections kprox keeps to them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpstreamConfig {
    /// Apiserver URLs; empty means the kubeconfig cluster's server.
    pub servers: Vec<String>,
    /// Limit on establishing a TCP connection. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: GoDuration,
    /// Limit on the TLS handshake. Default [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeout: GoDuration,
    /// HTTP/2 PING after this much silence on a connection; `None` (written `0s`) sends none.
    /// Default [`DEFAULT_KEEPALIVE_INTERVAL`].
    #[serde(serialize_with = "crate::print_format::duration_or_zero")]
    pub keepalive_interval: Option<GoDuration>,
    /// A PING unanswered for this long closes the connection. Default [`DEFAULT_KEEPALIVE_TIMEOUT`].
    pub keepalive_timeout: GoDuration,
    /// Pooled connections idle this long are closed. Default [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: GoDuration,
    /// Streams kprox opens on one HTTP/2 connection before opening another, capped by what the
    /// apiserver advertises. Default [`DEFAULT_MAX_STREAMS_PER_CONNECTION`].
    pub max_streams_per_connection: usize,
    /// Requests other than watches in flight on every HTTP/2 connection to an apiserver before
    /// kprox opens another to share the load. Default [`DEFAULT_SPREAD_STREAMS`].
    pub spread_streams: usize,
    /// HTTP/2 connections per apiserver opened to share load, at most (watches beyond
    /// `max_streams_per_connection` still get more). Default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_APISERVER`].
    pub max_connections_per_apiserver: usize,
    /// How an apiserver is chosen for each request. Default [`DEFAULT_POLICY`].
    pub policy: Policy,
    /// A server URL to prefer (first choice of the failover policy).
    #[serde(serialize_with = "crate::print_format::string_or_empty")]
    pub preferred: Option<String>,
    /// Time between active `/readyz` checks of each apiserver. Default [`DEFAULT_HEALTH_CHECK_INTERVAL`].
    pub health_check_interval: GoDuration,
    /// A check unanswered this long fails. Default [`DEFAULT_HEALTH_CHECK_TIMEOUT`].
    pub health_check_timeout: GoDuration,
    /// Consecutive passed checks that bring an apiserver back. Default [`DEFAULT_HEALTH_RISE`].
    pub health_rise: u32,
    /// Consecutive failed checks that take an apiserver out. Default [`DEFAULT_HEALTH_FALL`].
    pub health_fall: u32,
    /// Minimum time out after an ejection, doubling with each repeat. Default [`DEFAULT_EJECTION_BASE`].
    pub ejection_base: GoDuration,
    /// Longest time out. Default [`DEFAULT_EJECTION_MAX`].
    pub ejection_max: GoDuration,
    /// Retries may add at most this percentage of requests. Default [`DEFAULT_RETRY_BUDGET_PERCENT`].
    pub retry_budget_percent: u32,
    /// ...but this many retries per second are always allowed. Default [`DEFAULT_RETRY_MIN_PER_SECOND`].
    pub retry_min_per_second: u32,
    /// A 503 whose `Retry-After` is longer than this goes back to the client instead; a 429 that
    /// long goes to the next apiserver at once (it speaks for its replica). Default [`DEFAULT_RETRY_AFTER_CAP`].
    pub retry_after_cap: GoDuration,
    /// Attempts per request, the first included (requests never sent do not count). Default [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: usize,
    /// Resume a watch (JSON or protobuf) on another apiserver when its stream breaks, from the
    /// last resourceVersion delivered, in the same client response; a watch broken during its
    /// initial events gets an `ERROR` event instead (README, "Watches across a failover").
    /// Default true.
    pub watch_resume: bool,
    /// Follow the `default/kubernetes` EndpointSlices (through kprox's own credentials) and
    /// use the apiservers they list, seeded from `servers`. Default false.
    pub discover: bool,
}

// The defaults of [`LogConfig`].
/// Log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter such as `info` or `kprox=debug,info`. `RUST_LOG` overrides it. Default
    /// [`DEFAULT_LOG_LEVEL`].
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

    /// Field docs link their default's constant instead of restating its value, so the docs,
    /// the constants and `config/kprox.toml` (tests/documented_defaults.rs) cannot drift apart.
    #[test]
    fn field_docs_link_their_default_constant_and_never_restate_it() {
        let source = include_str!("config.rs");
        let lines: Vec<&str> = source.lines().collect();
        let mut linked = std::collections::BTreeSet::new();
        for (n, line) in lines.iter().enumerate() {
            let Some(doc) = line.strip_prefix("    ///") else {
                continue;
            };
            for (at, _) in doc.match_indices("Default") {
                let mut rest = &doc[at + "Default".len()..];
                if !(rest.is_empty() || rest.starts_with(' ')) {
                    continue;
                }
                rest = rest.trim();
                if rest.is_empty() {
                    rest = lines
                        .get(n + 1)
                        .and_then(|next| next.trim().strip_prefix("///"))
                        .unwrap_or_default()
                        .trim();
                }
                if rest.starts_with("true") || rest.starts_with("false") {
                    continue;
                }
                let name = rest
                    .strip_prefix("[`")
                    .and_then(|r| r.split_once("`]"))
                    .map(|(name, _)| name)
                    .unwrap_or_else(|| {
                        panic!("config.rs:{}: a default written out: {line}", n + 1)
                    });
                assert!(
                    source.contains(&format!("pub const {name}: ")),
                    "config.rs:{}: {name} is not a constant here",
                    n + 1
                );
                linked.insert(name.to_owned());
            }
        }
        for line in &lines {
            if let Some(name) = line
                .strip_prefix("pub const ")
                .and_then(|rest| rest.split_once(':'))
                .map(|(name, _)| name)
            {
                assert!(
                    linked.contains(name),
                    "{name} is no field's documented default"
                );
            }
        }
    }

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
