//! Command-line interface: kubectl proxy's flags with its names and defaults, plus kprox's own.
//! Only flags the user typed reach the configuration (as the top layer); defaults live in
//! kprox-config so that the TOML file and environment can set them too.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kprox_config::GoDuration;
use kprox_config::raw::{
    RawAdmin, RawConfig, RawFilter, RawKubeconfig, RawListen, RawLog, RawPassthrough, RawUpstream,
    RawWww,
};

/// kprox: kubectl proxy, fast and safe, for one or many apiservers.
///
/// Runs a proxy from localhost to the Kubernetes API, with the credentials of your kubeconfig.
/// `kprox demo` runs it against a simulated cluster.
#[derive(Debug, Parser)]
#[command(name = "kprox", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: ProxyFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run against three simulated apiservers: no cluster needed.
    Demo,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completion {
        /// The shell to complete for.
        shell: CompletionShell,
    },
    /// Print kprox's man page (roff) to stdout.
    Man,
    /// Print a kubeconfig with every context of yours reaching its cluster through this kprox
    /// (run it with --all-contexts and the same --port); no credentials in it.
    Kubeconfig,
}

/// Shells `kprox completion` writes for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (TOML) and the kubeconfig selection, secrets redacted.
    Print,
    /// Validate the configuration and kubeconfig; exit non-zero with the problem if invalid.
    Check,
}

/// Flags shared by the proxy and its subcommands (they apply to `demo` and `config` too).
#[derive(Clone, Debug, Args)]
pub struct ProxyFlags {
    /// TOML configuration file (see config/kprox.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The port on which to run the proxy. Set to 0 to pick a random port. [default: 8001]
    #[arg(short = 'p', long, global = true)]
    pub port: Option<u16>,
    /// The IP address on which to serve on. [default: 127.0.0.1]
    #[arg(long, global = true)]
    pub address: Option<String>,
    /// Unix socket on which to run the proxy.
    #[arg(short = 'u', long = "unix-socket", global = true)]
    pub unix_socket: Option<String>,
    /// keepalive specifies the keep-alive period for an active network connection. [default: 0s]
    #[arg(long, global = true, value_parser = parse_duration)]
    pub keepalive: Option<GoDuration>,
    /// Serve on a non-loopback address without client authentication (anyone who reaches it
    /// acts with kprox's credentials).
    #[arg(long = "insecure-allow-unauthenticated-remote", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_allow_unauthenticated_remote: Option<bool>,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long = "tls-cert-file", global = true)]
    pub tls_cert_file: Option<String>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(long = "tls-private-key-file", global = true)]
    pub tls_private_key_file: Option<String>,
    /// Require client certificates signed by the CAs in this file (with TLS).
    #[arg(long = "client-ca-file", global = true)]
    pub client_ca_file: Option<String>,
    /// Client connections served at once; more get 503. [default: 1000]
    #[arg(long = "max-connections", global = true)]
    pub max_connections: Option<u32>,
    /// Require clients to send this file's token as a bearer token.
    #[arg(long = "client-token-file", global = true)]
    pub client_token_file: Option<String>,
    /// Prefix to serve the proxied API under. [default: /]
    #[arg(long = "api-prefix", global = true)]
    pub api_prefix: Option<String>,

    /// Regular expression for hosts that the proxy should accept. [default: ^localhost$,^127\.0\.0\.1$,^\[::1\]$]
    #[arg(long = "accept-hosts", global = true)]
    pub accept_hosts: Option<String>,
    /// Regular expression for paths that the proxy should accept. [default: ^.*]
    #[arg(long = "accept-paths", global = true)]
    pub accept_paths: Option<String>,
    /// Regular expression for paths that the proxy should reject. [default: ^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach,^/api/.*/nodes/.*/proxy/(exec|attach|run|portForward)]
    #[arg(long = "reject-paths", global = true)]
    pub reject_paths: Option<String>,
    /// Regular expression for HTTP methods that the proxy should reject. [default: ^$]
    #[arg(long = "reject-methods", global = true)]
    pub reject_methods: Option<String>,
    /// If true, disable request filtering in the proxy. This is dangerous.
    #[arg(long = "disable-filter", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub disable_filter: Option<bool>,
    /// Forward clients' own Authorization and Impersonate-* headers (kubectl proxy's behaviour).
    #[arg(long = "pass-client-credentials", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub pass_client_credentials: Option<bool>,

    /// Also serve static files from the given directory under the specified prefix.
    #[arg(short = 'w', long, global = true)]
    pub www: Option<String>,
    /// Prefix to serve static files under, if static file directory is specified. [default: /static/]
    #[arg(short = 'P', long = "www-prefix", global = true)]
    pub www_prefix: Option<String>,

    /// If true, enables automatic path appending of the kube context server path to each request.
    #[arg(long = "append-server-path", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub append_server_path: Option<bool>,
    /// Path to the kubeconfig file to use.
    #[arg(long, global = true)]
    pub kubeconfig: Option<String>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The name of the kubeconfig cluster to use.
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// The name of the kubeconfig user to use.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Username to impersonate for the operation.
    #[arg(long = "as", global = true)]
    pub impersonate_user: Option<String>,
    /// Group to impersonate for the operation; repeat for several.
    #[arg(long = "as-group", global = true)]
    pub impersonate_group: Vec<String>,
    /// UID to impersonate for the operation.
    #[arg(long = "as-uid", global = true)]
    pub impersonate_uid: Option<String>,
    /// Bearer token for authentication to the API server.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Path to a cert file for the certificate authority.
    #[arg(long = "certificate-authority", global = true)]
    pub certificate_authority: Option<String>,
    /// If true, the server's certificate will not be checked for validity. Dangerous.
    #[arg(long = "insecure-skip-tls-verify", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_skip_tls_verify: Option<bool>,
    /// Server name to use for server certificate validation.
    #[arg(long = "tls-server-name", global = true)]
    pub tls_server_name: Option<String>,
    /// Apiserver URL; repeat it or separate URLs with commas for several. [default: the kubeconfig cluster's]
    #[arg(short = 's', long, global = true)]
    pub server: Vec<String>,

    /// Follow the kubeconfig's current-context when it changes (kubectl config use-context).
    #[arg(long = "follow-context", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub follow_context: Option<bool>,
    /// Serve every kubeconfig context under /clusters/<context>/ (other paths: the current context).
    #[arg(long = "all-contexts", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub all_contexts: Option<bool>,
    /// Follow the apiservers listed by the kubernetes service's EndpointSlices.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub discover: Option<bool>,
    /// Log filter, like RUST_LOG (`info`, `debug`, `kprox=debug,info`). [default: info]
    #[arg(long = "log-level", global = true)]
    pub log_level: Option<String>,
    /// Log one line per request (method, normalised path, status, apiserver, duration).
    #[arg(long = "access-log", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub access_log: Option<bool>,
    /// Address of kprox's /metrics, /livez, /readyz and status page, or `off`. [default: 127.0.0.1:8002]
    #[arg(long = "admin-address", global = true)]
    pub admin_address: Option<String>,
    /// Log format: text or json. [default: text]
    #[arg(long = "log-format", global = true)]
    pub log_format: Option<String>,
    /// Serve any local user, as kubectl proxy does (by default only you and root may use a
    /// loopback or unix-socket listener when kprox uses a kubeconfig).
    #[arg(long = "allow-any-local-user", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub allow_any_local_user: Option<bool>,
    /// Also serve this local user (name or UID), or every user of a group (%NAME or %GID); repeatable.
    #[arg(long = "allow-user", global = true)]
    pub allow_user: Vec<String>,
    /// Whose identity reaches the apiserver: `strip` clients' credentials and add kprox's, or
    /// `forward` each client's own and add none of kprox's (node-local agents). [default: strip]
    #[arg(long = "client-credentials", global = true)]
    pub client_credentials: Option<String>,
    /// Also accept TCP on HOST:PORT and splice it to a healthy apiserver, TLS untouched, so
    /// clients (the kubelet) keep their own client certificates. [default: off]
    #[arg(long = "tcp-passthrough", global = true)]
    pub tcp_passthrough: Option<String>,
}

fn parse_duration(text: &str) -> Result<GoDuration, String> {
    text.parse()
        .map_err(|e: kprox_config::DurationError| e.to_string())
}

/// kubectl splits its regex flags on commas.
fn regex_list(value: &Option<String>) -> Option<Vec<String>> {
    value
        .as_ref()
        .map(|v| v.split(',').map(str::to_owned).collect())
}

impl ProxyFlags {
    /// The layered configuration for these flags: defaults, the `--config` file, `KPROX_*`
    /// variables, then the flags. Loaded at start and again by every reload.
    pub fn load_config(&self) -> anyhow::Result<kprox_config::Config> {
        Ok(kprox_config::load(&kprox_config::Sources {
            file: self.config.as_deref(),
            environment: true,
            flags: self.to_raw(),
        })?)
    }

    /// The flags the user typed, as the top configuration layer.
    pub fn to_raw(&self) -> RawConfig {
        let listen = RawListen {
            address: self.address.clone(),
            port: self.port,
            unix_socket: self.unix_socket.clone(),
            keepalive: self.keepalive,
            api_prefix: self.api_prefix.clone(),
            tunnel_idle_timeout: None,
            insecure_allow_unauthenticated_remote: self.insecure_allow_unauthenticated_remote,
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_private_key_file.clone(),
            client_ca_file: self.client_ca_file.clone(),
            client_token_file: self.client_token_file.clone(),
            client_credentials: self.client_credentials.clone(),
            local_users: self
                .allow_any_local_user
                .map(|any| if any { "any" } else { "owner" }.to_owned()),
            allowed_users: (!self.allow_user.is_empty()).then(|| self.allow_user.clone()),
            max_connections: self.max_connections,
            shutdown_grace: None,
            limits: None,
        };
        let filter = RawFilter {
            accept_hosts: regex_list(&self.accept_hosts),
            accept_paths: regex_list(&self.accept_paths),
            reject_paths: regex_list(&self.reject_paths),
            reject_methods: regex_list(&self.reject_methods),
            disable: self.disable_filter,
            pass_client_credentials: self.pass_client_credentials,
        };
        let www = RawWww {
            dir: self.www.clone(),
            prefix: self.www_prefix.clone(),
        };
        let kubeconfig = RawKubeconfig {
            path: self.kubeconfig.clone(),
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
            append_server_path: self.append_server_path,
            impersonate_user: self.impersonate_user.clone(),
            impersonate_groups: (!self.impersonate_group.is_empty())
                .then(|| self.impersonate_group.clone()),
            impersonate_uid: self.impersonate_uid.clone(),
            token: self.token.clone(),
            certificate_authority: self.certificate_authority.clone(),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            tls_server_name: self.tls_server_name.clone(),
            exec_timeout: None,
            service_account_dir: None,
            reload_interval: None,
            follow_context: self.follow_context,
            all_contexts: self.all_contexts,
        };
        let upstream = RawUpstream {
            servers: (!self.server.is_empty()).then(|| self.server.clone()),
            discover: self.discover,
            ..Default::default()
        };
        let log = RawLog {
            level: self.log_level.clone(),
            format: self.log_format.clone(),
            access: self.access_log,
        };
        let admin = RawAdmin {
            address: self.admin_address.clone(),
        };
        let passthrough = RawPassthrough {
            address: self.tcp_passthrough.clone(),
            close_on_ejection: None,
        };
        RawConfig {
            listen: (listen != RawListen::default()).then_some(listen),
            filter: (filter != RawFilter::default()).then_some(filter),
            www: (www != RawWww::default()).then_some(www),
            kubeconfig: (kubeconfig != RawKubeconfig::default()).then_some(kubeconfig),
            upstream: (upstream != RawUpstream::default()).then_some(upstream),
            log: (log != RawLog::default()).then_some(log),
            admin: (admin != RawAdmin::default()).then_some(admin),
            // No flag: the runtime's shape is set in the file or KPROX_RUNTIME__WORKER_THREADS.
            runtime: None,
            passthrough: (passthrough != RawPassthrough::default()).then_some(passthrough),
        }
    }
}
