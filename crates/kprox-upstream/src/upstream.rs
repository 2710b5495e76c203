//! The apiservers as one service. For each request: the balancer orders the usable endpoints,
//! the request goes to the first, and a failed attempt moves on to the next when the retry rules
//! allow it (`retry.rs`). Every outcome feeds the endpoint's health (`health.rs`), and a checker
//! task per endpoint probes `/readyz` in the background.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use kprox_telemetry::{EndpointRequests, Metrics};

use crate::balancer::{Balancer, Load, Order, Policy};
use crate::body::ResponseBody;
use crate::connect::{ConnectSettings, Connection, Connector};
use crate::error::{ErrorKind, Sent, chain};
use crate::health::{Health, HealthSettings, Signal, State};
use crate::passthrough_stats::{PassthroughCounts, PassthroughStats};
use crate::pool::{Attempt, EndpointPool, PooledBody};
use crate::retry::{self, Decision, Reason, RetryBudget, RetrySettings};
use crate::served::Served;
use crate::tls::{TlsSettings, client_config};
use crate::watch::{self, Resend, ResumableWatch};
use crate::watch_request;
use crate::{Endpoint, RequestBody, UpstreamError};

/// Adds kprox's credentials to a request kprox itself makes (health checks).
pub type Authorize = Arc<dyn Fn(&mut HeaderMap) + Send + Sync>;

pub use crate::pool::PoolSettings;

/// Everything the upstream needs, built by the binary from config and kubeconfig.
pub struct UpstreamSettings {
    /// Apiserver URLs, in configured order.
    pub servers: Vec<String>,
    /// TLS material; required when any server is `https`.
    pub tls: Option<TlsSettings>,
    /// Timeouts and keepalive.
    pub connect: ConnectSettings,
    /// How connections to one apiserver are pooled.
    pub pool: PoolSettings,
    /// How endpoints are chosen.
    pub policy: Policy,
    /// The URL of the endpoint to prefer (failover policy), if any.
    pub preferred: Option<String>,
    /// Health checks.
    pub health: HealthSettings,
    /// Retries.
    pub retry: RetrySettings,
    /// Credentials for health checks.
    pub authorize: Authorize,
    /// Resume JSON watches on another apiserver when their stream breaks.
    pub watch_resume: bool,
    /// Follow the `kubernetes` service's EndpointSlices to find the apiservers.
    pub discover: bool,
    /// Where each endpoint's request counters come from.
    pub metrics: Arc<Metrics>,
}

/// What the upstream needs besides its `[upstream]` section: found by the assembly (the
/// servers, the TLS material, the kubeconfig's proxy) or shared with the rest of kprox.
pub struct UpstreamParts {
    /// Apiserver URLs, in configured order.
    pub servers: Vec<String>,
    /// TLS material; required when any server is `https`.
    pub tls: Option<TlsSettings>,
    /// The kubeconfig cluster's `proxy-url`.
    pub proxy: Option<crate::ProxySettings>,
    /// Credentials for health checks.
    pub authorize: Authorize,
    /// Where each endpoint's request counters come from.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for UpstreamParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamParts")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

impl UpstreamSettings {
    /// The settings of `config`'s `[upstream]` section with the `parts` found elsewhere.
    pub fn from_config(config: &kprox_config::UpstreamConfig, parts: UpstreamParts) -> Self {
        Self {
            servers: parts.servers,
            tls: parts.tls,
            connect: ConnectSettings::from_config(config, parts.proxy),
            pool: PoolSettings::from(config),
            policy: config.policy,
            preferred: config.preferred.clone(),
            health: HealthSettings::from(config),
            retry: RetrySettings::from(config),
            authorize: parts.authorize,
            watch_resume: config.watch_resume,
            discover: config.discover,
            metrics: parts.metrics,
        }
    }
}

impl std::fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("servers", &self.servers)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) url: Arc<str>,
    /// The failover policy's first choice (`upstream.preferred`).
    preferred: bool,
    /// Its request counters, handed to every response it serves.
    requests: Arc<EndpointRequests>,
    pub(crate) pool: Arc<EndpointPool>,
    pub(crate) health: Health,
    load: Arc<Load>,
    /// The latest failure seen with this endpoint, for the status page.
    last_error: std::sync::Mutex<Option<(Instant, String)>>,
    /// Woken when the endpoint is taken out of rotation: replayable requests still waiting
    /// for its answer are sent elsewhere (see `unless_ejected`), and pass-through
    /// connections are closed.
    pub(crate) ejected: tokio::sync::Notify,
    /// TCP pass-through connections to this endpoint.
    pub(crate) passthrough: Arc<PassthroughStats>,
}

/// A point-in-time view of one endpoint, for metrics, the status page and tests.
#[derive(Clone, Debug)]
pub struct EndpointView {
    pub url: String,
    pub up: bool,
    pub in_flight: usize,
    pub latency: Duration,
    pub requests: u64,
    /// Times taken out of rotation since start.
    pub ejections: u64,
    pub connections_opened: u64,
    pub connections_open: usize,
    pub tls_handshakes: u64,
    /// When and what last went wrong.
    pub last_error: Option<(Instant, String)>,
    /// TCP pass-through connections.
    pub passthrough: PassthroughCounts,
}

/// An endpoint entering or leaving rotation.
#[derive(Clone, Debug)]
pub struct HealthChange {
    pub at: Instant,
    pub endpoint: String,
    pub up: bool,
}

/// How many recent health changes are kept.
const RECENT_CHANGES: usize = 20;

/// Retries made so far, by reason.
#[derive(Debug, Default)]
pub struct RetryCounts {
    pub not_sent: AtomicU64,
    pub reset: AtomicU64,
    pub unavailable: AtomicU64,
}

/// The set of apiservers.
pub struct Upstream {
    /// The current set; replaced as a whole when discovery or a reload changes it.
    endpoints: ArcSwap<Vec<Arc<EndpointState>>>,
    /// Shared by every endpoint URL (`--append-server-path`).
    base_path: String,
    /// What a new endpoint needs.
    joining: Joining,
    connector: Arc<Connector>,
    balancer: Balancer,
    retry: RetrySettings,
    budget: RetryBudget,
    retries: RetryCounts,
    pub(crate) authorize: Authorize,
    watch_resume: bool,
    changes: std::sync::Mutex<std::collections::VecDeque<HealthChange>>,
    watch_resumes: AtomicU64,
    watch_restarts_told: AtomicU64,
    /// What `run` does: follow the EndpointSlices, and check each endpoint's health.
    discover: bool,
    /// Endpoints whose health checks `run` starts: the first ones, then each one a reload or
    /// discovery adds. Taken by `run`.
    to_check: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Weak<EndpointState>>>>,
    check_sender: tokio::sync::mpsc::UnboundedSender<Weak<EndpointState>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("endpoints", &self.endpoints)
            .field("balancer", &self.balancer)
            .finish_non_exhaustive()
    }
}

pub(crate) fn empty_body() -> RequestBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

impl Upstream {
    /// Parses the servers and prepares TLS; starts nothing (see [`Upstream::run`]).
    /// Connections are opened on first use.
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
        if let Some(url) = &settings.preferred
            && !endpoints
                .iter()
                .any(|e| e.url() == url.trim_end_matches('/'))
        {
            return Err(UpstreamError::config(format!(
                "the preferred server {url} is not one of the servers"
            )));
        }
        let base_path = endpoints
            .first()
            .map(|e| e.base_path().to_owned())
            .unwrap_or_default();
        let tls = match &settings.tls {
            Some(tls) => Some(client_config(tls)?),
            None if endpoints.iter().any(Endpoint::is_tls) => {
                return Err(UpstreamError::config("https servers need TLS settings"));
            }
            None => None,
        };
        // One name for every endpoint: `tls-server-name`, else the first URL's host when it is a
        // DNS name (the cluster's name, which every apiserver certificate carries). When the
        // first URL is an IP address, each endpoint is verified against its own address, as
        // kubeadm-style certificates name each apiserver's own IP and not its peers'.
        let server_name = settings
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .or_else(|| {
                endpoints
                    .first()
                    .map(Endpoint::host)
                    .filter(|h| h.parse::<std::net::IpAddr>().is_err())
                    .map(str::to_owned)
            });
        let connector = Connector::new(tls, server_name, settings.connect.clone());
        let connector = Arc::new(connector);
        let joining = Joining {
            pool: settings.pool.clone(),
            health: settings.health.clone(),
            preferred: settings
                .preferred
                .as_ref()
                .map(|p| p.trim_end_matches('/').to_owned()),
            metrics: settings.metrics.clone(),
        };
        let states: Vec<Arc<EndpointState>> =
            endpoints.into_iter().map(|e| joining.state(e)).collect();
        let (check_sender, to_check) = tokio::sync::mpsc::unbounded_channel();
        let upstream = Arc::new(Self {
            endpoints: ArcSwap::from_pointee(states),
            base_path,
            joining,
            connector,
            balancer: Balancer::new(settings.policy),
            budget: RetryBudget::new(&settings.retry),
            retry: settings.retry,
            retries: RetryCounts::default(),
            authorize: settings.authorize,
            watch_resume: settings.watch_resume,
            changes: std::sync::Mutex::new(std::collections::VecDeque::new()),
            watch_resumes: AtomicU64::new(0),
            watch_restarts_told: AtomicU64::new(0),
            discover: settings.discover,
            to_check: std::sync::Mutex::new(Some(to_check)),
            check_sender,
        });
        for endpoint in upstream.endpoints.load().iter() {
            let _ = upstream.check_sender.send(Arc::downgrade(endpoint));
        }
        Ok(upstream)
    }

    /// The upstream's background work until the returned future is dropped: idle-connection
    /// sweeps, every endpoint's health checks (those a reload or discovery adds included) and
    /// EndpointSlice discovery when configured. Nothing runs before it is polled: requests
    /// work without it, but no endpoint is ever ejected or brought back. Runs once; a second
    /// call returns at once.
    pub async fn run(self: Arc<Self>) {
        let taken = self
            .to_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut to_check) = taken else {
            tracing::warn!("the upstream's background work is already running");
            return;
        };
        // Dropping the set (when this future is dropped) aborts every task in it.
        let mut work = tokio::task::JoinSet::new();
        work.spawn(sweep(
            Arc::downgrade(&self),
            self.joining.pool.idle_timeout / 2,
        ));
        if self.discover {
            work.spawn(crate::discovery::follow(Arc::downgrade(&self)));
        }
        let (upstream, settings) = (Arc::downgrade(&self), self.joining.health.clone());
        drop(self);
        while let Some(endpoint) = to_check.recv().await {
            while work.try_join_next().is_some() {}
            work.spawn(check(upstream.clone(), endpoint, settings.clone()));
        }
    }

    /// The endpoint URLs now, in order.
    pub fn endpoint_urls(&self) -> Vec<String> {
        self.endpoints
            .load()
            .iter()
            .map(|e| e.url.to_string())
            .collect()
    }

    /// The path of the server URLs (for `--append-server-path`), empty when none.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// Replaces the set of endpoints (discovery, reload): endpoints that stay keep their
    /// connections, health and load; new ones start healthy; removed ones finish what they
    /// carry and are dropped. An empty list is refused: the set is never left empty.
    pub fn set_servers(self: &Arc<Self>, urls: &[String]) -> Result<bool, UpstreamError> {
        if urls.is_empty() {
            return Err(UpstreamError::config("an empty set of apiservers"));
        }
        let parsed: Vec<Endpoint> = urls
            .iter()
            .map(|u| Endpoint::parse(u))
            .collect::<Result<_, _>>()?;
        if let Some(other) = parsed.iter().find(|e| e.base_path() != self.base_path) {
            return Err(UpstreamError::config(format!(
                "{} does not have the path of the other servers",
                other.url()
            )));
        }
        let current = self.endpoints.load_full();
        if current.len() == parsed.len()
            && current
                .iter()
                .zip(&parsed)
                .all(|(c, p)| c.url.as_ref() == p.url())
        {
            return Ok(false);
        }
        let mut added = Vec::new();
        let next: Vec<Arc<EndpointState>> = parsed
            .into_iter()
            .map(
                |e| match current.iter().find(|c| c.url.as_ref() == e.url()) {
                    Some(existing) => existing.clone(),
                    None => {
                        let state = self.joining.state(e);
                        added.push(state.clone());
                        state
                    }
                },
            )
            .collect();
        tracing::info!(servers = ?next.iter().map(|e| e.url.to_string()).collect::<Vec<_>>(), "apiserver set changed");
        self.endpoints.store(Arc::new(next));
        for endpoint in added {
            let _ = self.check_sender.send(Arc::downgrade(&endpoint));
        }
        Ok(true)
    }

    /// TLS handshakes made so far, across endpoints.
    pub fn tls_handshakes(&self) -> u64 {
        self.connector.tls_handshakes()
    }

    /// Connections opened so far, across endpoints.
    pub fn connections_opened(&self) -> u64 {
        self.endpoints
            .load()
            .iter()
            .map(|e| e.pool.connections_opened())
            .sum()
    }

    /// Connections currently open or idle in the pools.
    pub fn open_connections(&self) -> usize {
        self.endpoints
            .load()
            .iter()
            .map(|e| e.pool.open_connections())
            .sum()
    }

    /// Retries made so far.
    pub fn retries(&self) -> &RetryCounts {
        &self.retries
    }

    /// Every endpoint's state now.
    pub fn endpoint_views(&self) -> Vec<EndpointView> {
        self.endpoints
            .load()
            .iter()
            .map(|e| EndpointView {
                url: e.url.to_string(),
                up: e.health.is_up(),
                in_flight: e.load.in_flight(),
                latency: e.load.latency(),
                requests: e.load.requests(),
                ejections: e.health.ejections_total(),
                connections_opened: e.pool.connections_opened(),
                connections_open: e.pool.open_connections(),
                tls_handshakes: e.pool.tls_handshakes(),
                last_error: e
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
                passthrough: e.passthrough.snapshot(),
            })
            .collect()
    }

    /// Switches to new TLS material (a rotated client certificate, a changed CA): new
    /// connections use it, and connections made with the old one are drained — requests in
    /// flight finish on them, none is given a new request.
    pub fn reload_tls(&self, settings: &TlsSettings) -> Result<(), UpstreamError> {
        let config = client_config(settings)?;
        self.connector.replace_tls(config);
        for endpoint in self.endpoints.load().iter() {
            endpoint.pool.retire_connections();
        }
        tracing::info!("TLS material reloaded; new connections use it, old ones drain");
        Ok(())
    }

    /// Whether any apiserver has answered kprox yet (a health check or a request).
    pub fn heard_from_an_apiserver(&self) -> bool {
        self.endpoints
            .load()
            .iter()
            .any(|e| e.load.requests() > 0 && e.health.is_up() || e.health.passed_checks() > 0)
    }

    /// Whether any endpoint is up.
    pub fn any_up(&self) -> bool {
        self.endpoints.load().iter().any(|e| e.health.is_up())
    }

    fn order(&self, endpoints: &[Arc<EndpointState>]) -> Order {
        self.order_by(endpoints, |e| &e.load)
    }

    /// The endpoints to try, in order, by the policy over the loads `load_of` gives.
    pub(crate) fn order_by(
        &self,
        endpoints: &[Arc<EndpointState>],
        load_of: impl Fn(&EndpointState) -> &Arc<Load>,
    ) -> Order {
        let preferred = endpoints.iter().position(|e| e.preferred);
        self.balancer
            .order(endpoints, |e| e.health.is_up(), |e| load_of(e), preferred)
    }

    /// Health changes, newest first.
    pub fn recent_changes(&self) -> Vec<HealthChange> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Watches resumed so far.
    pub fn watch_resumes(&self) -> u64 {
        self.watch_resumes.load(Ordering::Relaxed)
    }

    /// Watches that broke during their initial events, whose clients were told to start over.
    pub fn watch_restarts_told(&self) -> u64 {
        self.watch_restarts_told.load(Ordering::Relaxed)
    }

    /// The endpoints now.
    pub(crate) fn endpoint_set(&self) -> Arc<Vec<Arc<EndpointState>>> {
        self.endpoints.load_full()
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    pub(crate) fn note_error(&self, endpoint: &EndpointState, error: &UpstreamError) {
        *endpoint
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), error.to_string()));
    }

    pub(crate) fn record(&self, endpoint: &EndpointState, signal: Signal) {
        if let Some(state) = endpoint.health.record(signal) {
            let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
            changes.push_back(HealthChange {
                at: Instant::now(),
                endpoint: endpoint.pool.endpoint().url().to_owned(),
                up: state == State::Up,
            });
            while changes.len() > RECENT_CHANGES {
                changes.pop_front();
            }
            drop(changes);
            match state {
                State::Down => {
                    tracing::warn!(endpoint = %endpoint.pool.endpoint().url(), ?signal, "apiserver taken out of rotation");
                    endpoint.ejected.notify_waiters();
                }
                State::Up => {
                    tracing::info!(endpoint = %endpoint.pool.endpoint().url(), "apiserver back in rotation")
                }
            }
        }
    }

    fn count(&self, reason: Reason) {
        let counter = match reason {
            Reason::NotSent => &self.retries.not_sent,
            Reason::Reset => &self.retries.reset,
            Reason::Unavailable => &self.retries.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends a request whose URI is in origin form (path and query). JSON watches come back
    /// resumable (see `watch.rs`) when watch resume is on.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let (parts, body) = request.into_parts();
        let watch = watch_request::is_watch(&parts.method, &parts.uri);
        let resume_with = (self.watch_resume && watch).then(|| parts.clone());
        let response = self
            .send_once_as(Request::from_parts(parts, body), None, watch)
            .await?;
        match resume_with.zip(watch::resumable_encoding(&response)) {
            Some((parts, encoding)) => {
                let (head, body) = response.into_parts();
                let resend: Arc<dyn Resend> = self.clone();
                let served_by = head.extensions.get::<Served>().map(|s| s.endpoint.clone());
                let watch = ResumableWatch::new(resend, parts, encoding, body).served_by(served_by);
                Ok(Response::from_parts(head, ResponseBody::watch(watch)))
            }
            None => Ok(response.map(ResponseBody::pooled)),
        }
    }

    /// Sends a request once (with the retries the rules allow), choosing and, when safe,
    /// changing endpoints (see the module documentation).
    pub(crate) async fn send_once(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let watch = watch_request::is_watch(request.method(), request.uri());
        self.send_once_as(request, None, watch).await
    }

    /// [`Self::send_once`] for a request already known to be a `watch` or not, trying the
    /// endpoint `avoid` (a replica that just said it is behind) only after every other.
    async fn send_once_as(
        &self,
        request: Request<RequestBody>,
        avoid: Option<Arc<str>>,
        watch: bool,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        self.budget.deposit();
        let (parts, body) = request.into_parts();
        let replayable = retry::replayable(&parts.method, &parts.headers, body.is_end_stream());
        let mut body = Some(body);
        let endpoints = self.endpoints.load_full();
        let mut order = self.order(&endpoints);
        if let Some(avoid) = &avoid {
            // A stable sort: the others keep the balancer's order.
            order.sort_by_key(|&i| endpoints[i].url == *avoid);
        }
        let mut budgeted = 0usize;
        let mut last_error: Option<UpstreamError> = None;
        let mut only_refusals = true;

        for (attempt, &index) in order.iter().enumerate() {
            let request_body = match body.take() {
                Some(body) => body,
                None if replayable => empty_body(),
                // The body went with an attempt that may have been received: no replay.
                None => break,
            };
            let endpoint = &endpoints[index];
            let mut load = endpoint.load.start();
            let is_last = attempt + 1 == order.len();
            let sent = endpoint.pool.send(
                &self.connector,
                Request::from_parts(parts.clone(), request_body),
                watch,
            );
            // One await of `sent` (two would give the future two places in this one's state).
            let hedge = replayable && endpoints.len() > 1;
            let outcome = match self.unless_ejected(endpoint, sent, &parts, hedge).await {
                Hedge::Original(outcome) => outcome,
                Hedge::Elsewhere(answer) => return answer,
            };
            match outcome {
                Ok(response) => {
                    load.headers_arrived();
                    let status = response.status();
                    let draining = retry::is_draining(status, response.headers(), &self.retry);
                    self.record(
                        endpoint,
                        if draining {
                            Signal::Draining
                        } else if status.is_server_error() {
                            Signal::ServerError
                        } else {
                            Signal::RequestOk
                        },
                    );
                    let may_retry = !is_last && budgeted + 1 < self.retry.max_attempts;
                    let decision = if draining && replayable && self.budget.try_withdraw() {
                        // Its Retry-After is about this replica; the next one can answer now.
                        Decision::After(Duration::ZERO)
                    } else {
                        retry::after_response(
                            status,
                            response.headers(),
                            replayable,
                            attempt,
                            &self.retry,
                            &self.budget,
                        )
                    };
                    if may_retry && let Decision::After(wait) = decision {
                        tracing::debug!(endpoint = %endpoint.pool.endpoint().url(), %status, "retrying elsewhere");
                        drop(response);
                        budgeted += 1;
                        self.count(Reason::Unavailable);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if watch {
                        // A watch is load until its answer starts; after that it only waits.
                        load.release();
                    }
                    if status.is_server_error() {
                        self.note_error(
                            endpoint,
                            &UpstreamError::new(
                                ErrorKind::Protocol,
                                Sent::Maybe,
                                format!("answered {status}"),
                            ),
                        );
                    }
                    let mut response = response.map(|b| b.with_load(load));
                    response.extensions_mut().insert(Served {
                        endpoint: endpoint.url.clone(),
                        requests: endpoint.requests.clone(),
                        attempts: u32::try_from(attempt + 1).unwrap_or(u32::MAX),
                    });
                    return Ok(response);
                }
                Err((error, unsent)) => {
                    drop(load);
                    let signal = match error.kind() {
                        ErrorKind::Connect | ErrorKind::ConnectTimeout | ErrorKind::Tls => {
                            Signal::ConnectFailed
                        }
                        _ => Signal::ServerError,
                    };
                    self.record(endpoint, signal);
                    self.note_error(endpoint, &error);
                    only_refusals &= error.kind() == ErrorKind::Connect;
                    if let Some(unsent) = unsent {
                        body = Some(unsent.into_body());
                    }
                    let (decision, reason) =
                        retry::after_error(&error, replayable, attempt, &self.budget);
                    tracing::warn!(%error, ?decision, "apiserver request failed");
                    last_error = Some(error);
                    match decision {
                        Decision::Stop => break,
                        Decision::Again => self.count(reason),
                        Decision::After(wait) => {
                            if budgeted + 1 >= self.retry.max_attempts {
                                break;
                            }
                            budgeted += 1;
                            self.count(reason);
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        }
        Err(self.final_error(last_error, only_refusals))
    }

    /// Waits for `sent`; with `hedge`, only until `endpoint` is taken out of rotation (a
    /// stalled apiserver: it accepted the request and answers nothing). Then the request —
    /// replayable, with no answer yet — is sent again through the balancer, and the first
    /// answer wins; the other attempt is cancelled. Only replayable requests are hedged, never
    /// writes.
    async fn unless_ejected(
        &self,
        endpoint: &EndpointState,
        sent: impl Future<Output = Attempt>,
        parts: &http::request::Parts,
        hedge: bool,
    ) -> Hedge {
        tokio::pin!(sent);
        if !hedge {
            return Hedge::Original(sent.await);
        }
        let ejected = endpoint.ejected.notified();
        tokio::pin!(ejected);
        tokio::select! {
            biased;
            outcome = &mut sent => return Hedge::Original(outcome),
            () = &mut ejected => {}
        }
        tracing::info!(endpoint = %endpoint.url, path = %parts.uri.path(), "apiserver taken out of rotation while a request waited for it; sending it elsewhere too");
        self.count(Reason::Unavailable);
        let again = self.send_again(parts);
        tokio::select! {
            outcome = &mut sent => Hedge::Original(outcome),
            answer = again => Hedge::Elsewhere(answer),
        }
    }

    /// `send_once` for a replayable request, boxed (it is called from inside `send_once`).
    fn send_again(
        &self,
        parts: &http::request::Parts,
    ) -> Pin<Box<dyn Future<Output = Result<Response<PooledBody>, UpstreamError>> + Send + '_>>
    {
        Box::pin(self.send_once(Request::from_parts(parts.clone(), empty_body())))
    }

    fn final_error(&self, last_error: Option<UpstreamError>, only_refusals: bool) -> UpstreamError {
        match last_error {
            Some(error) if only_refusals => UpstreamError::new(
                ErrorKind::NoEndpoint,
                Sent::No,
                format!(
                    "no apiserver is reachable ({} tried; last: {error})",
                    self.endpoints.load().len()
                ),
            ),
            Some(error) => error,
            None => UpstreamError::new(
                ErrorKind::NoEndpoint,
                Sent::No,
                "no apiserver endpoint is available",
            ),
        }
    }

    /// Sends an upgrade request (WebSocket, SPDY) on a fresh HTTP/1.1 connection of its own,
    /// never pooled: after a `101` the connection belongs to the tunnel, and after any other
    /// answer it is dropped with the response, so no byte a client sends after a refused
    /// upgrade can reach the apiserver on a shared connection (CVE-2018-1002105).
    pub async fn send_upgrade(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let mut last_error = None;
        let mut only_refusals = true;
        let endpoints = self.endpoints.load_full();
        for index in self.order(&endpoints) {
            let state = &endpoints[index];
            let endpoint = state.pool.endpoint();
            let mut sender = match self.connector.connect(endpoint, true).await {
                Ok(Connection::H1(sender)) => sender,
                Ok(Connection::H2(..)) => {
                    return Err(UpstreamError::new(
                        ErrorKind::Protocol,
                        Sent::No,
                        "the apiserver insisted on HTTP/2 for an upgrade",
                    )
                    .at(endpoint.url()));
                }
                Err(error) => {
                    self.record(state, Signal::ConnectFailed);
                    self.note_error(state, &error);
                    only_refusals &= error.kind() == ErrorKind::Connect;
                    tracing::warn!(%error, "apiserver connection for an upgrade failed");
                    last_error = Some(error);
                    continue;
                }
            };
            state.pool.note_upgrade_connection();
            let mut request = request;
            request
                .headers_mut()
                .insert(http::header::HOST, endpoint.host_header().clone());
            return sender
                .send_request(request)
                .await
                .map(|response| {
                    let mut response =
                        response.map(|b| ResponseBody::pooled(PooledBody::unpooled(b)));
                    response.extensions_mut().insert(Served {
                        endpoint: state.url.clone(),
                        requests: state.requests.clone(),
                        attempts: 1,
                    });
                    response
                })
                .map_err(|e| {
                    UpstreamError::new(ErrorKind::Protocol, Sent::Maybe, chain(&e))
                        .at(endpoint.url())
                });
        }
        Err(self.final_error(last_error, only_refusals))
    }
}

async fn sweep(upstream: Weak<Upstream>, every: Duration) {
    let every = every.max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        for state in upstream.endpoints.load().iter() {
            state.pool.sweep();
        }
    }
}

/// `interval` ±10%, so that several kprox instances do not probe in lockstep.
fn jittered(interval: Duration) -> Duration {
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    );
    let tenth = interval / 10;
    let spread = u64::try_from(tenth.as_nanos() * 2).unwrap_or(1).max(1);
    interval - tenth + Duration::from_nanos(nanos % spread)
}

/// Builds the state of a new endpoint.
/// What an endpoint gets when it joins the set (start-up, discovery, reload).
#[derive(Debug)]
struct Joining {
    pool: PoolSettings,
    health: HealthSettings,
    /// The URL to prefer, if configured, without a trailing `/`.
    preferred: Option<String>,
    metrics: Arc<Metrics>,
}

impl Joining {
    fn state(&self, endpoint: Endpoint) -> Arc<EndpointState> {
        let url: Arc<str> = Arc::from(endpoint.url());
        Arc::new(EndpointState {
            preferred: self.preferred.as_deref() == Some(url.as_ref()),
            requests: self.metrics.endpoint_requests(&url),
            url,
            pool: Arc::new(EndpointPool::new(endpoint, self.pool.clone())),
            health: Health::new(self.health.clone()),
            load: Arc::new(Load::default()),
            last_error: std::sync::Mutex::new(None),
            ejected: tokio::sync::Notify::new(),
            passthrough: Arc::new(PassthroughStats::default()),
        })
    }
}

/// Probes one endpoint's `/readyz` until it leaves the set or the upstream is dropped. The
/// first probe goes at once: the endpoint's first connection is then open (and its health
/// known) before a client's first request needs it, instead of that request waiting for the
/// TCP, TLS and HTTP/2 handshakes.
async fn check(upstream: Weak<Upstream>, endpoint: Weak<EndpointState>, settings: HealthSettings) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        wait = jittered(settings.interval);
        let (Some(upstream), Some(endpoint)) = (upstream.upgrade(), endpoint.upgrade()) else {
            return;
        };
        // An endpoint removed from the set is no longer checked.
        if !upstream
            .endpoints
            .load()
            .iter()
            .any(|e| Arc::ptr_eq(e, &endpoint))
        {
            return;
        }
        let mut request = Request::get("/readyz")
            .body(empty_body())
            .unwrap_or_else(|_| Request::new(empty_body()));
        (upstream.authorize)(request.headers_mut());
        let outcome = tokio::time::timeout(
            settings.timeout,
            endpoint.pool.send(&upstream.connector, request, false),
        )
        .await;
        let failure = match outcome {
            // An apiserver that refuses kprox's credential is still up; the credential is
            // refreshed on the request path.
            Ok(Ok(response))
                if response.status().is_success()
                    || matches!(response.status().as_u16(), 401 | 403) =>
            {
                None
            }
            Ok(Ok(response)) => Some(UpstreamError::new(
                ErrorKind::Protocol,
                Sent::Maybe,
                format!("health check: /readyz answered {}", response.status()),
            )),
            Ok(Err((error, _))) => Some(error),
            Err(_) => Some(UpstreamError::new(
                ErrorKind::ConnectTimeout,
                Sent::Maybe,
                format!("health check: no answer within {:?}", settings.timeout),
            )),
        };
        let passed = failure.is_none();
        if let Some(error) = failure {
            tracing::debug!(%error, "health check failed");
            upstream.note_error(&endpoint, &error);
        }
        upstream.record(
            &endpoint,
            if passed {
                Signal::CheckPassed
            } else {
                Signal::CheckFailed
            },
        );
    }
}

/// Which attempt answered a request whose endpoint was ejected while it waited.
enum Hedge {
    /// The first attempt, on the ejected endpoint, answered (or failed) first.
    Original(Attempt),
    /// The request sent again elsewhere answered first.
    Elsewhere(Result<Response<PooledBody>, UpstreamError>),
}

impl crate::discovery::DiscoveryTarget for Upstream {
    fn get(self: Arc<Self>, path: String) -> crate::discovery::Answer {
        Box::pin(async move {
            let mut request = Request::get(path)
                .body(empty_body())
                .map_err(|e| e.to_string())?;
            (self.authorize)(request.headers_mut());
            let response = self.send(request).await.map_err(|e| e.to_string())?;
            Ok((response.status(), response.into_body()))
        })
    }

    fn set_servers(self: Arc<Self>, urls: &[String]) -> Result<(), String> {
        Upstream::set_servers(&self, urls)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl Resend for Upstream {
    fn resend(
        self: Arc<Self>,
        request: http::request::Parts,
        avoid: Option<Arc<str>>,
    ) -> watch::Resume {
        Box::pin(async move {
            // Only watches are resumed.
            self.send_once_as(Request::from_parts(request, empty_body()), avoid, true)
                .await
        })
    }

    fn note_resumed(&self) {
        self.watch_resumes.fetch_add(1, Ordering::Relaxed);
    }

    fn note_restart_told(&self) {
        self.watch_restarts_told.fetch_add(1, Ordering::Relaxed);
    }
}
