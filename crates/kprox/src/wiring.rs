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
use kprox_config::Config;
use kprox_listener::{
    ClientToken, ForwardSettings, Forwarder, HeadLimits, Listener, Pipeline, ServeSettings,
    StaticFiles, Tunnels,
};
use kprox_telemetry::Metrics;
use kprox_upstream::{Upstream, UpstreamParts, UpstreamSettings};
use tokio::net::TcpListener;

/// Everything built and ready to serve.
#[derive(Debug)]
pub struct Stack {
    pub pipeline: Arc<Pipeline>,
    pub upstream: Arc<Upstream>,
    /// The credentials in force, swapped by a live reload.
    pub credentials: SharedCredentials,
    pub client_token: Option<Credentials>,
    pub tunnels: Arc<Tunnels>,
    pub metrics: Arc<Metrics>,
    pub serve_settings: ServeSettings,
}

/// The upstream of one context and the credentials it and the request path share (a live
/// reload replaces them), from the assembled `parts`. Starts nothing.
pub fn upstream(
    config: &Config,
    access: &ClusterAccess,
    parts: &Parts,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Arc<Upstream>, SharedCredentials)> {
    let credentials = Arc::new(arc_swap::ArcSwap::from_pointee(parts.credentials.clone()));
    let tls = parts
        .tls
        .as_ref()
        .map(TlsSource::settings)
        .transpose()
        .map_err(|e| anyhow::anyhow!("TLS material: {e}"))?;
    let proxy = access
        .proxy_url
        .as_deref()
        .map(kprox_upstream::ProxySettings::parse)
        .transpose()
        .context("the kubeconfig cluster's proxy-url")?;
    let authorize: kprox_upstream::Authorize = {
        let credentials = credentials.clone();
        Arc::new(move |headers: &mut http::HeaderMap| credentials.load().apply(headers))
    };
    let upstream = Upstream::new(UpstreamSettings::from_config(
        &config.upstream,
        UpstreamParts {
            servers: parts.servers.clone(),
            tls,
            proxy,
            authorize,
            metrics: metrics.clone(),
        },
    ))
    .context("setting up the upstream")?;
    Ok((upstream, credentials))
}

/// The request path's way to one context's upstream: with its credentials, the forwarding
/// `[listen]` and `[filter]` ask for, upgrades joining `tunnels`.
pub fn forwarder(
    config: &Config,
    upstream: &Arc<Upstream>,
    credentials: SharedCredentials,
    tunnels: &Arc<Tunnels>,
    metrics: &Metrics,
) -> Forwarder {
    let forward = ForwardSettings::from_config(
        &config.listen,
        &config.filter,
        config
            .kubeconfig
            .append_server_path
            .then(|| upstream.base_path()),
    );
    Forwarder::new(
        upstream.clone(),
        credentials,
        forward,
        tunnels.clone(),
        metrics.request_bytes().clone(),
    )
}

/// The credentials in force for one context, swapped whole by a live reload.
pub type SharedCredentials = Arc<arc_swap::ArcSwap<Credentials>>;

/// Builds the upstream and the request path from the assembled `parts`.
pub async fn build(
    config: &Config,
    access: &ClusterAccess,
    parts: &Parts,
) -> anyhow::Result<Stack> {
    let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION")));
    let (upstream, credentials) = upstream(config, access, parts, &metrics)?;
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
    let forwarder = forwarder(config, &upstream, credentials.clone(), &tunnels, &metrics);
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
    .with_head_limits(HeadLimits::from(&config.listen.limits));
    let mut client_token = None;
    if let Some(path) = &config.listen.client_token_file {
        let expected = Credentials::load(&CredentialSpec::TokenFile(path.clone()))
            .await
            .with_context(|| format!("listen.client_token_file {}", path.display()))?;
        client_token = Some(expected.clone());
        pipeline = pipeline.with_client_token(ClientToken::new(expected));
    }
    let pipeline = Arc::new(pipeline);
    let tls = kprox_listener::tls::from_listen(&config.listen)
        .map_err(|e| anyhow::anyhow!("listener TLS: {e}"))?;
    let local_users = kprox_listener::LocalUsers::from_config(&config.listen, access.in_cluster)
        .map_err(anyhow::Error::msg)?;
    let serve_settings =
        ServeSettings::from_config(&config.listen, tls, metrics.clone(), drain, local_users);
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
    let listener =
        crate::listen_socket::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Listener::Tcp(listener))
}

/// Binds the TCP pass-through listener, if one is configured; a busy address fails start-up.
pub async fn bind_passthrough(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = config.passthrough.address else {
        return Ok(None);
    };
    let listener = crate::listen_socket::bind(addr).with_context(|| {
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
    match crate::listen_socket::bind(addr) {
        Ok(listener) => Ok(Some(listener)),
        Err(error)
            if config.admin.address_is_default
                && error.kind() == std::io::ErrorKind::AddrInUse =>
        {
            let listener = crate::listen_socket::bind(SocketAddr::new(addr.ip(), 0))
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
