//! Builds the running stack from the assembled parts (assembly.rs): upstream → request path →
//! listener settings, and binds the listeners. Nothing here starts background work; run.rs
//! does, under its lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use http::Request;
use kprox_auth::{ClusterAccess, CredentialSpec, Credentials};

use crate::assembly::Parts;
use crate::tls_source::TlsSource;
use kprox_config::{ClientCredentials, Config, LocalUsers};
use kprox_listener::{
    ClientToken, ForwardSettings, Forwarder, Identity, Listener, Pipeline, ServeSettings,
    StaticFiles, Tunnels,
};
use kprox_telemetry::Metrics;
use kprox_upstream::{ConnectSettings, HealthSettings, RetrySettings, Upstream, UpstreamSettings};
use tokio::net::TcpListener;

/// Everything built and ready to serve.
#[derive(Debug)]
pub struct Stack {
    pub pipeline: Arc<Pipeline>,
    pub upstream: Arc<Upstream>,
    /// The credentials in force, swapped by a live reload.
    pub credentials: Arc<arc_swap::ArcSwap<Credentials>>,
    pub client_token: Option<Credentials>,
    pub tunnels: Arc<Tunnels>,
    pub metrics: Arc<Metrics>,
    pub serve_settings: ServeSettings,
}

/// Builds the upstream and the request path from the assembled `parts`.
pub async fn build(
    config: &Config,
    access: &ClusterAccess,
    parts: &Parts,
) -> anyhow::Result<Stack> {
    // Shared by the request path and the health checks; a live reload replaces it.
    let credentials = Arc::new(arc_swap::ArcSwap::from_pointee(parts.credentials.clone()));
    let tls = parts
        .tls
        .as_ref()
        .map(TlsSource::settings)
        .transpose()
        .map_err(|e| anyhow::anyhow!("TLS material: {e}"))?;
    let servers = parts.servers.clone();
    let upstream_config = &config.upstream;
    let upstream = Upstream::new(UpstreamSettings {
        servers,
        tls,
        connect: ConnectSettings {
            connect_timeout: upstream_config.connect_timeout.get(),
            tls_handshake_timeout: upstream_config.tls_handshake_timeout.get(),
            keepalive_interval: (!upstream_config.keepalive_interval.is_zero())
                .then(|| upstream_config.keepalive_interval.get()),
            keepalive_timeout: upstream_config.keepalive_timeout.get(),
            proxy: access
                .proxy_url
                .as_deref()
                .map(kprox_upstream::ProxySettings::parse)
                .transpose()
                .context("the kubeconfig cluster's proxy-url")?,
        },
        pool: kprox_upstream::PoolSettings {
            max_streams: usize::try_from(upstream_config.max_streams_per_connection)
                .unwrap_or(usize::MAX),
            spread_streams: usize::try_from(upstream_config.spread_streams).unwrap_or(usize::MAX),
            max_connections: usize::try_from(upstream_config.max_connections_per_apiserver)
                .unwrap_or(usize::MAX),
            idle_timeout: upstream_config.idle_timeout.get(),
        },
        policy: upstream_config.policy,
        preferred: upstream_config.preferred.clone(),
        health: HealthSettings {
            interval: upstream_config.health_check_interval.get(),
            timeout: upstream_config.health_check_timeout.get(),
            fall: upstream_config.health_fall,
            rise: upstream_config.health_rise,
            ejection_base: upstream_config.ejection_base.get(),
            ejection_max: upstream_config.ejection_max.get(),
        },
        retry: RetrySettings {
            budget_percent: upstream_config.retry_budget_percent,
            min_per_second: upstream_config.retry_min_per_second,
            retry_after_cap: upstream_config.retry_after_cap.get(),
            max_attempts: usize::try_from(upstream_config.max_attempts).unwrap_or(3),
        },
        authorize: {
            let credentials = credentials.clone();
            Arc::new(move |headers: &mut http::HeaderMap| credentials.load().apply(headers))
        },
        watch_resume: upstream_config.watch_resume,
        discover: upstream_config.discover,
    })
    .context("setting up the upstream")?;

    let limits = &config.listen.limits;
    let head_limits = kprox_listener::HeadLimits {
        max_headers: limits.max_headers as usize,
        max_bytes: limits.max_header_bytes as usize,
    };
    let forward = ForwardSettings {
        server_path: if config.kubeconfig.append_server_path {
            upstream.base_path().to_owned()
        } else {
            String::new()
        },
        identity: match (
            config.listen.client_credentials,
            config.filter.pass_client_credentials,
        ) {
            (ClientCredentials::Forward, _) => Identity::ClientsOnly,
            (ClientCredentials::Strip, true) => Identity::ClientsWhenSent,
            (ClientCredentials::Strip, false) => Identity::Kprox,
        },
        body_limits: kprox_listener::BodyLimits {
            max_bytes: limits.max_body_bytes,
            read_timeout: limits.body_read_timeout.get(),
        },
    };
    let address = config.listen.address;
    if config.listen.unix_socket.is_none()
        && !address.is_loopback()
        && config.listen.insecure_allow_unauthenticated_remote
        && config.listen.client_ca_file.is_none()
        && config.listen.client_token_file.is_none()
    {
        tracing::warn!(%address, "serving on a non-loopback address WITHOUT client authentication: anyone who reaches it acts with kprox's credentials");
    }
    let static_files = config
        .www
        .dir
        .as_deref()
        .map(|dir| StaticFiles::new(dir, &config.www.prefix));
    let tunnels = Tunnels::new(config.listen.tunnel_idle_timeout.get());
    let servers: Vec<String> = upstream.endpoint_urls();
    let metrics = Arc::new(Metrics::new(&servers, env!("CARGO_PKG_VERSION")));
    let forwarder = Forwarder::new(
        upstream.clone(),
        credentials.clone(),
        forward,
        tunnels.clone(),
        metrics.request_bytes().clone(),
    );
    let drain = Arc::new(kprox_listener::Drain::default());
    let mut pipeline = Pipeline::new(
        parts.filter.clone(),
        config.listen.api_prefix.clone(),
        static_files,
        forwarder,
        metrics.clone(),
        drain.clone(),
    )
    .with_access_log(config.log.access)
    .with_head_limits(head_limits);
    let mut client_token = None;
    if let Some(path) = &config.listen.client_token_file {
        let expected = Credentials::start(&CredentialSpec::TokenFile(path.clone()))
            .await
            .with_context(|| format!("listen.client_token_file {}", path.display()))?;
        client_token = Some(expected.clone());
        pipeline = pipeline.with_client_token(ClientToken::new(expected));
    }
    let pipeline = Arc::new(pipeline);
    let tls = match (&config.listen.tls_cert_file, &config.listen.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            kprox_listener::tls::server_config(cert, key, config.listen.client_ca_file.as_deref())
                .map_err(|e| anyhow::anyhow!("listener TLS: {e}"))?,
        ),
        _ => None,
    };
    let serve_settings = ServeSettings {
        keepalive: (!config.listen.keepalive.is_zero()).then(|| config.listen.keepalive.get()),
        timeouts: kprox_listener::ConnectionTimeouts {
            idle: limits.idle_timeout.get(),
            header_read: limits.header_read_timeout.get(),
            write: limits.write_timeout.get(),
        },
        head_limits,
        tls,
        metrics: Some(metrics.clone()),
        max_connections: usize::try_from(config.listen.max_connections).unwrap_or(usize::MAX),
        grace: config.listen.shutdown_grace.get(),
        drain: drain.clone(),
        local_users: local_users(config, access)?,
    };
    Ok(Stack {
        pipeline,
        upstream,
        credentials,
        client_token,
        tunnels,
        metrics,
        serve_settings,
    })
}

/// Who may use loopback and unix-socket connections: with a kubeconfig, only the user kprox
/// runs as, root and `listen.allowed_users` (the credentials are that user's); in a pod, or
/// with `local_users = "any"`, anyone who can connect.
fn local_users(
    config: &Config,
    access: &ClusterAccess,
) -> anyhow::Result<Option<Arc<kprox_listener::LocalUsers>>> {
    let checked = match config.listen.local_users {
        LocalUsers::Any => false,
        LocalUsers::Owner => true,
        LocalUsers::Auto => !access.in_cluster,
    };
    if !checked {
        return Ok(None);
    }
    let users = kprox_listener::LocalUsers::new(&config.listen.allowed_users)
        .map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(users)))
}

/// Binds the configured TCP address or unix socket.
pub async fn bind(config: &Config) -> anyhow::Result<Listener> {
    // Socket activation: systemd already bound the address (no port race at login).
    if let Some(listener) = crate::systemd::activated_listener()? {
        tracing::info!(address = %listener.describe(), "serving on the socket systemd passed");
        return Ok(listener);
    }
    if let Some(path) = &config.listen.unix_socket {
        return crate::unix_socket::bind(path).await;
    }
    let addr = SocketAddr::new(config.listen.address, config.listen.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Listener::Tcp(listener))
}

/// Binds the TCP pass-through listener, if one is configured; a busy address fails start-up.
pub async fn bind_passthrough(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = config.passthrough.address else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("passthrough.address: cannot listen on {addr} (choose a free HOST:PORT with --tcp-passthrough, or off)")
    })?;
    Ok(Some(listener))
}

/// Binds the admin listener, if there is one.
///
/// kubectl proxy users run one proxy per context (`--port 8001`, `--port 8003`, ...) and
/// `--port 8002` is as ordinary as any: none of these may fail because of a listener kubectl
/// proxy does not have. So when the admin address is kprox's default and it is taken, the
/// admin listener moves to a free port on the same IP and says where; an address the user
/// wrote is theirs, and a busy one fails start-up with one line naming it.
pub async fn bind_admin(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = config.admin.address else {
        return Ok(None);
    };
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(error)
            if config.admin.address_is_default
                && error.kind() == std::io::ErrorKind::AddrInUse =>
        {
            let listener = TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .with_context(|| format!("admin.address: cannot listen on {}:0", addr.ip()))?;
            let chosen = listener.local_addr()?;
            eprintln!(
                "kprox: the default admin address {addr} is in use (another kprox, or --port {}); \
                 the admin listener is on http://{chosen} instead (choose one with --admin-address)",
                addr.port()
            );
            tracing::warn!(default = %addr, address = %chosen, "default admin address in use: admin listener moved to a free port");
            Ok(Some(listener))
        }
        Err(error) => Err(error).with_context(|| {
            format!(
                "admin.address: cannot listen on {addr} (choose a free HOST:PORT with --admin-address, or off)"
            )
        }),
    }
}

impl Stack {
    /// Sends `GET path` with kprox's credentials and returns the status (for `config check`).
    pub async fn probe(
        &self,
        path: &str,
    ) -> Result<http::StatusCode, kprox_upstream::UpstreamError> {
        use http_body_util::BodyExt as _;
        let mut request = Request::get(path)
            .body(
                http_body_util::Empty::<bytes::Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap_or_default();
        self.credentials.load().apply(request.headers_mut());
        self.upstream.send(request).await.map(|r| r.status())
    }
}
