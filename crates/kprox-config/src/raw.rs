//! The configuration as written: TOML file, `KPROX_*` environment and command-line flags.
//!
//! Every field is an `Option` so that each layer only says what it sets, and every struct denies
//! unknown fields so a misspelt key is an error rather than a silently ignored setting. Defaults
//! and checks live in `validate.rs`; nothing here decides what a value means.

use serde::{Deserialize, Serialize};

use crate::GoDuration;

/// The whole raw configuration, one section per component.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Where kprox accepts client connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<RawListen>,
    /// Which requests are let through (kubectl proxy's filter flags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<RawFilter>,
    /// Static files served beside the API (kubectl proxy's `--www`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub www: Option<RawWww>,
    /// Which kubeconfig, context, cluster and user to use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<RawKubeconfig>,
    /// How kprox talks to the apiservers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<RawUpstream>,
    /// Logging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<RawLog>,
    /// The admin listener (metrics, health, status page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<RawAdmin>,
    /// The async runtime's shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RawRuntime>,
    /// The TCP pass-through listener (node-local mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<RawPassthrough>,
}

/// `[passthrough]`: TCP connections spliced to a healthy apiserver, TLS untouched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPassthrough {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_on_ejection: Option<bool>,
}

/// `[runtime]`: how many threads serve connections.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRuntime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<u64>,
}

/// `[admin]`: where kprox's own endpoints are served.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `[listen]`: kubectl proxy's `--address`, `--port`, `--unix-socket`, `--keepalive`, `--api-prefix`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListen {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_socket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_idle_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_allow_unauthenticated_remote: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_credentials: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_users: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_users: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RawListenLimits>,
}

/// `[listen.limits]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListenLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_read_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_timeout: Option<GoDuration>,
}

/// `[filter]`: kubectl proxy's request filter flags, plus client credential handling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_client_credentials: Option<bool>,
}

/// `[www]`: kubectl proxy's `--www` and `--www-prefix`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWww {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// `[kubeconfig]`: kubectl's global `--kubeconfig`, `--context`, `--cluster`, `--user` and
/// kubectl proxy's `--append-server-path`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKubeconfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub append_server_path: Option<bool>,
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub impersonate_user: Option<String>,
    #[serde(rename = "as_groups", skip_serializing_if = "Option::is_none")]
    pub impersonate_groups: Option<Vec<String>>,
    #[serde(rename = "as_uid", skip_serializing_if = "Option::is_none")]
    pub impersonate_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_interval: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_context: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_contexts: Option<bool>,
}

/// `[upstream]`: the apiservers and the connections to them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_interval: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams_per_connection: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread_streams: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_apiserver: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_interval: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_timeout: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_rise: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_fall: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejection_base: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejection_max: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget_percent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_min_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_cap: Option<GoDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_resume: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discover: Option<bool>,
}

/// `[log]`: level filter and output format.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<bool>,
}
