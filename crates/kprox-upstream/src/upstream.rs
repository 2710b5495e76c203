//! The apiservers as one service: picks an endpoint, sends on its pooled connections, and
//! moves a request that was never sent to the next endpoint.
//!
//! Endpoint choice here is ordered failover with a short cool-down after a connection failure;
//! health checks and the balancing policies (round robin, least request) plug in at
//! [`Upstream::candidates`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response};

use crate::connect::{ConnectSettings, Connector};
use crate::error::{ErrorKind, Sent};
use crate::pool::{EndpointPool, ResponseBody};
use crate::tls::{TlsSettings, client_config};
use crate::{Endpoint, RequestBody, UpstreamError};

/// How long an endpoint that refused a connection is passed over (unless all are).
const COOL_DOWN: Duration = Duration::from_secs(2);

/// Everything the upstream needs, built by the binary from config and kubeconfig.
#[derive(Debug)]
pub struct UpstreamSettings {
    /// Apiserver URLs, in order of preference.
    pub servers: Vec<String>,
    /// TLS material; required when any server is `https`.
    pub tls: Option<TlsSettings>,
    /// Timeouts and keepalive.
    pub connect: ConnectSettings,
    /// Streams per HTTP/2 connection before another is opened.
    pub max_streams_per_connection: usize,
    /// Idle pooled connections are closed after this long.
    pub idle_timeout: Duration,
}

#[derive(Debug)]
struct EndpointState {
    pool: Arc<EndpointPool>,
    /// Milliseconds since `Upstream::epoch` until which the endpoint is passed over.
    cool_until_ms: AtomicU64,
}

/// The set of apiservers.
#[derive(Debug)]
pub struct Upstream {
    endpoints: Vec<EndpointState>,
    connector: Connector,
    epoch: Instant,
}

impl Upstream {
    /// Parses the servers and prepares TLS. Connections are opened on first use.
    pub fn new(settings: UpstreamSettings) -> Result<Arc<Self>, UpstreamError> {
        if settings.servers.is_empty() {
            return Err(UpstreamError::config("no apiserver URL is configured"));
        }
        let endpoints: Vec<Endpoint> = settings
            .servers
            .iter()
            .map(|s| Endpoint::parse(s))
            .collect::<Result<_, _>>()?;
        if let Some(first) = endpoints.first()
            && let Some(other) = endpoints
                .iter()
                .find(|e| e.base_path() != first.base_path())
        {
            return Err(UpstreamError::config(format!(
                "all server URLs must have the same path; {} and {} differ",
                first.url(),
                other.url()
            )));
        }
        let tls = match &settings.tls {
            Some(tls) => Some(client_config(tls)?),
            None if endpoints.iter().any(Endpoint::is_tls) => {
                return Err(UpstreamError::config("https servers need TLS settings"));
            }
            None => None,
        };
        let server_name = settings.tls.as_ref().and_then(|t| t.server_name.clone());
        let connector = Connector::new(tls, server_name, settings.connect.clone());
        let upstream = Arc::new(Self {
            endpoints: endpoints
                .into_iter()
                .map(|e| EndpointState {
                    pool: Arc::new(EndpointPool::new(
                        e,
                        settings.max_streams_per_connection,
                        settings.idle_timeout,
                    )),
                    cool_until_ms: AtomicU64::new(0),
                })
                .collect(),
            connector,
            epoch: Instant::now(),
        });
        tokio::spawn(sweep(Arc::downgrade(&upstream), settings.idle_timeout / 2));
        Ok(upstream)
    }

    /// The endpoints, in order of preference.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().map(|e| e.pool.endpoint())
    }

    /// The path of the server URLs (for `--append-server-path`), empty when none.
    pub fn base_path(&self) -> &str {
        self.endpoints
            .first()
            .map_or("", |e| e.pool.endpoint().base_path())
    }

    /// TLS handshakes made so far, across endpoints.
    pub fn tls_handshakes(&self) -> u64 {
        self.connector.tls_handshakes()
    }

    /// Connections opened so far, across endpoints.
    pub fn connections_opened(&self) -> u64 {
        self.endpoints
            .iter()
            .map(|e| e.pool.connections_opened())
            .sum()
    }

    /// Connections currently open or idle in the pools.
    pub fn open_connections(&self) -> usize {
        self.endpoints
            .iter()
            .map(|e| e.pool.open_connections())
            .sum()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Endpoints to try, best first: those not cooling down in order, then — so that a request
    /// is never refused while any endpoint might answer — the cooling ones.
    fn candidates(&self) -> Vec<&EndpointState> {
        let now = self.now_ms();
        let (mut ready, cooling): (Vec<_>, Vec<_>) = self
            .endpoints
            .iter()
            .partition(|e| e.cool_until_ms.load(Ordering::Relaxed) <= now);
        ready.extend(cooling);
        ready
    }

    /// Sends a request whose URI is in origin form (path and query). A request that never left
    /// kprox is tried on the next endpoint; anything else is returned as it happened.
    pub async fn send(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let mut request = request;
        let mut last_error = None;
        for state in self.candidates() {
            match state.pool.send(&self.connector, request).await {
                Ok(response) => {
                    state.cool_until_ms.store(0, Ordering::Relaxed);
                    return Ok(response);
                }
                Err((error, unsent)) => {
                    if matches!(
                        error.kind(),
                        ErrorKind::Connect | ErrorKind::ConnectTimeout | ErrorKind::Tls
                    ) {
                        let until = self.now_ms()
                            + u64::try_from(COOL_DOWN.as_millis()).unwrap_or(u64::MAX);
                        state.cool_until_ms.store(until, Ordering::Relaxed);
                    }
                    tracing::warn!(%error, retried = unsent.is_some(), "apiserver request failed");
                    match (unsent, error.sent()) {
                        (Some(again), Sent::No) => {
                            request = again;
                            last_error = Some(error);
                        }
                        _ => return Err(error),
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            UpstreamError::new(
                ErrorKind::NoEndpoint,
                Sent::No,
                "no apiserver endpoint is available",
            )
        }))
    }
}

async fn sweep(upstream: std::sync::Weak<Upstream>, every: Duration) {
    let every = every.max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        for state in &upstream.endpoints {
            state.pool.sweep();
        }
    }
}

impl Upstream {
    /// Sends an upgrade request (WebSocket, SPDY) on a fresh HTTP/1.1 connection of its own,
    /// never pooled: after a `101` the connection belongs to the tunnel, and after any other
    /// answer it is dropped with the response, so no byte a client sends after a refused
    /// upgrade can reach the apiserver on a shared connection (CVE-2018-1002105).
    pub async fn send_upgrade(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let mut last_error = None;
        for state in self.candidates() {
            let mut sender = match self.connector.connect(state.pool.endpoint(), true).await {
                Ok(crate::connect::Connection::H1(sender)) => sender,
                Ok(crate::connect::Connection::H2(..)) => {
                    return Err(UpstreamError::new(
                        ErrorKind::Protocol,
                        Sent::No,
                        "the apiserver insisted on HTTP/2 for an upgrade",
                    )
                    .at(state.pool.endpoint().url()));
                }
                Err(error) => {
                    tracing::warn!(%error, "apiserver connection for an upgrade failed");
                    last_error = Some(error);
                    continue;
                }
            };
            let mut request = request;
            request.headers_mut().insert(
                http::header::HOST,
                state.pool.endpoint().host_header().clone(),
            );
            return sender
                .send_request(request)
                .await
                .map(|response| response.map(ResponseBody::unpooled))
                .map_err(|e| {
                    UpstreamError::new(ErrorKind::Protocol, Sent::Maybe, crate::error::chain(&e))
                        .at(state.pool.endpoint().url())
                });
        }
        Err(last_error.unwrap_or_else(|| {
            UpstreamError::new(
                ErrorKind::NoEndpoint,
                Sent::No,
                "no apiserver endpoint is available",
            )
        }))
    }
}
