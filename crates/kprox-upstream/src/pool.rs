//! The connections kept to one endpoint: HTTP/2 connections shared by many streams (a new one is
//! opened when every connection is at its stream limit, so requests never queue behind long
//! watches) and idle HTTP/1.1 connections reused one request at a time.
//!
//! Watches pack onto the first connection with room: they are idle almost always, and each
//! connection costs memory. Other requests go to the connection with the fewest of them in
//! flight, and when even that one carries `spread_streams`, another connection is opened in the
//! background (up to `max_connections`): one connection is one TLS stream and one task, which
//! serialises a busy endpoint's traffic onto one core.
//!
//! On a worker thread ([`crate::worker`]), other requests prefer the connections opened on
//! that thread, whose drivers run there too, and a connection opened to spread load is opened
//! on the thread whose request found the others busy, up to its share of `max_connections`
//! (at least one): under load a request and its answer then never cross threads, while a
//! lightly used kprox keeps one connection. Watches take any connection with room, so they
//! still pack.
//!
//! Reading the HTTP/2 set is lock-free (an `ArcSwap` snapshot plus atomic stream counters); the
//! HTTP/1.1 idle list takes a short mutex, and opening connections is serialised per endpoint
//! until the protocol is known so a burst does not open a connection per request.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use crate::connect::{Connection, Connector};
use crate::error::{ErrorKind, Sent, chain};
use crate::stream_limit::StreamLimit;
use crate::{Endpoint, RequestBody, UpstreamError};

const PROTOCOL_UNKNOWN: u8 = 0;
const PROTOCOL_H2: u8 = 1;
const PROTOCOL_H1: u8 = 2;

/// How connections to one endpoint are pooled.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Streams on one HTTP/2 connection at most (capped by what the server advertises).
    pub max_streams: usize,
    /// Non-watch requests in flight on every connection before another is opened.
    pub spread_streams: usize,
    /// HTTP/2 connections opened to spread load, at most (more are opened only when every
    /// connection is at `max_streams`).
    pub max_connections: usize,
    /// Idle pooled connections are closed after this long.
    pub idle_timeout: Duration,
}

impl From<&kprox_config::UpstreamConfig> for PoolSettings {
    fn from(config: &kprox_config::UpstreamConfig) -> Self {
        Self {
            max_streams: config.max_streams_per_connection,
            spread_streams: config.spread_streams,
            max_connections: config.max_connections_per_apiserver,
            idle_timeout: config.idle_timeout.get(),
        }
    }
}

/// One HTTP/2 connection and the streams open on it.
///
/// Only the pool's list holds the `sender` for long: a request holds a clone until it is
/// handed over, and its slot ([`StreamGuard`]) holds the counters alone. That matters when a
/// connection ends: a request handed over at the instant its dispatcher stopped can be left in
/// the dispatcher's queue, and it is failed (as never sent, so it goes elsewhere) only when the
/// last sender is dropped — which the pool does as soon as the connection ends
/// ([`EndpointPool::add_h2`]). Were the sender kept alive by the waiting request
/// itself, that request would wait for ever (the 10 s hang of the GOAWAY test).
#[derive(Debug)]
struct H2Conn {
    sender: http2::SendRequest<RequestBody>,
    /// The server's stream limit for this connection (one stream until it is known).
    limit: StreamLimit,
    streams: Arc<StreamCounts>,
    /// The worker thread that opened it, where its driver runs.
    worker: Option<usize>,
}

/// The streams open on one HTTP/2 connection.
#[derive(Debug, Default)]
struct StreamCounts {
    in_flight: AtomicUsize,
    /// Streams in flight that are not watches.
    busy: AtomicUsize,
    /// Milliseconds since the pool's epoch when the last stream ended.
    idle_since_ms: AtomicU64,
}

impl H2Conn {
    fn new(sender: http2::SendRequest<RequestBody>, limit: StreamLimit, in_flight: usize) -> Self {
        let streams = StreamCounts::default();
        streams.in_flight.store(in_flight, Ordering::Relaxed);
        Self {
            sender,
            limit,
            streams: Arc::new(streams),
            worker: crate::worker::current(),
        }
    }
}

/// Holds one stream slot on an HTTP/2 connection until dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    streams: Arc<StreamCounts>,
    epoch: Instant,
    /// Counted in `busy` (not a watch).
    busy: bool,
}

impl StreamGuard {
    fn new(streams: Arc<StreamCounts>, epoch: Instant, busy: bool) -> Self {
        if busy {
            streams.busy.fetch_add(1, Ordering::AcqRel);
        }
        Self {
            streams,
            epoch,
            busy,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.busy {
            self.streams.busy.fetch_sub(1, Ordering::AcqRel);
        }
        if self.streams.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.streams.idle_since_ms.store(now, Ordering::Relaxed);
        }
    }
}

/// A stream slot taken on an HTTP/2 connection.
struct H2Checkout {
    sender: http2::SendRequest<RequestBody>,
    guard: StreamGuard,
    /// Non-watch streams the connection carried before this one.
    busy_before: usize,
}

#[derive(Debug)]
struct IdleH1 {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// The connection set of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointPool {
    endpoint: Endpoint,
    h2: ArcSwap<Vec<Arc<H2Conn>>>,
    h1_idle: Mutex<Vec<IdleH1>>,
    protocol: AtomicU8,
    connecting: tokio::sync::Mutex<()>,
    settings: PoolSettings,
    /// A connection is being opened to spread load.
    spreading: std::sync::atomic::AtomicBool,
    epoch: Instant,
    opened: AtomicU64,
    /// Failed connection attempts so far, and the last one's error: requests that waited for
    /// an attempt that failed move on with its error (a timeout stays a timeout).
    connect_failures: AtomicU64,
    last_connect_error: std::sync::Mutex<Option<UpstreamError>>,
    /// Bumped when the TLS identity or trust changes: older connections are not reused.
    generation: AtomicU64,
    /// Connections opened for upgrades (not pooled).
    upgrades: AtomicU64,
}

/// What one attempt on this endpoint produced: a response, or an error and — when it was never
/// sent — the request back, to try elsewhere.
pub(crate) type Attempt =
    Result<Response<PooledBody>, (UpstreamError, Option<Request<RequestBody>>)>;

impl EndpointPool {
    pub(crate) fn new(endpoint: Endpoint, mut settings: PoolSettings) -> Self {
        settings.max_streams = settings.max_streams.max(1);
        settings.spread_streams = settings.spread_streams.max(1);
        settings.max_connections = settings.max_connections.max(1);
        Self {
            endpoint,
            h2: ArcSwap::from_pointee(Vec::new()),
            h1_idle: Mutex::new(Vec::new()),
            protocol: AtomicU8::new(PROTOCOL_UNKNOWN),
            connecting: tokio::sync::Mutex::new(()),
            settings,
            spreading: std::sync::atomic::AtomicBool::new(false),
            epoch: Instant::now(),
            opened: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            last_connect_error: std::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            upgrades: AtomicU64::new(0),
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// TLS handshakes completed with this endpoint (pooled and upgrade connections).
    pub(crate) fn tls_handshakes(&self) -> u64 {
        if self.endpoint.is_tls() {
            self.opened.load(Ordering::Relaxed) + self.upgrades.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Counts a connection opened for an upgrade.
    pub(crate) fn note_upgrade_connection(&self) {
        self.upgrades.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections opened so far.
    pub(crate) fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Sends a request (origin-form URI) on a pooled or new connection; `watch` requests pack,
    /// others spread (see the module documentation).
    pub(crate) async fn send(
        self: &Arc<Self>,
        connector: &Arc<Connector>,
        mut request: Request<RequestBody>,
        watch: bool,
    ) -> Attempt {
        // A pooled connection can turn out dead between checks; a few tries cover a burst of
        // stale ones without looping forever.
        for _ in 0..4 {
            if let Some(checkout) = self.checkout_h2(watch) {
                if !watch && checkout.busy_before >= self.settings.spread_streams {
                    self.spread(connector);
                }
                let H2Checkout { sender, guard, .. } = checkout;
                request = match self.send_h2(sender, guard, request).await {
                    Ok(response) => return Ok(response),
                    Err((error, Some(unsent))) => {
                        tracing::debug!(endpoint = %self.endpoint.url(), %error, "pooled HTTP/2 connection unusable; trying another");
                        self.forget_closed_h2();
                        unsent
                    }
                    Err(failed) => return Err(failed),
                };
                continue;
            }
            if let Some(sender) = self.checkout_h1() {
                request = match self.send_h1(sender, request).await {
                    Ok(response) => return Ok(response),
                    Err((_, Some(unsent))) => unsent,
                    Err(failed) => return Err(failed),
                };
                continue;
            }
            break;
        }
        // Boxed: connecting (TCP, TLS, the HTTP/2 handshake) is a large future that most
        // requests never need, and every request's future would otherwise carry its size.
        Box::pin(self.send_on_new_connection(connector, request, watch)).await
    }

    /// Opens one more HTTP/2 connection on this thread in the background, unless one is being
    /// opened, the pool is at `max_connections`, or this worker has its share of them.
    fn spread(self: &Arc<Self>, connector: &Arc<Connector>) {
        let worker = crate::worker::current();
        let share = self
            .settings
            .max_connections
            .div_ceil(crate::worker::count())
            .max(1);
        let list = self.h2.load();
        let own = list.iter().filter(|c| c.worker == worker).count();
        if list.len() >= self.settings.max_connections
            || own >= share
            || self.spreading.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (pool, connector) = (self.clone(), connector.clone());
        tokio::spawn(async move {
            let generation = pool.generation.load(Ordering::Acquire);
            if let Ok(Connection::H2(sender, limit, ended)) =
                connector.connect(&pool.endpoint, false).await
            {
                pool.opened.fetch_add(1, Ordering::Relaxed);
                if pool.generation.load(Ordering::Acquire) == generation {
                    let conn = Arc::new(H2Conn::new(sender, limit, 0));
                    pool.add_h2(&conn, ended);
                    tracing::debug!(endpoint = %pool.endpoint.url(), connections = pool.h2.load().len(), "opened a connection to spread load");
                }
            }
            pool.spreading.store(false, Ordering::Release);
        });
    }

    async fn send_on_new_connection(
        self: &Arc<Self>,
        connector: &Connector,
        request: Request<RequestBody>,
        watch: bool,
    ) -> Attempt {
        // Until the endpoint is known to speak HTTP/1.1 only, open one connection at a time:
        // with HTTP/2, the one connection serves everybody who waited.
        let failures_before = self.connect_failures.load(Ordering::Acquire);
        let _serial = if self.protocol.load(Ordering::Acquire) == PROTOCOL_H1 {
            None
        } else {
            Some(self.connecting.lock().await)
        };
        // A connection whose stream limit is still unknown carries one stream; wait for its
        // limit rather than open a connection per waiting request.
        let unknown: Vec<StreamLimit> = self
            .h2
            .load()
            .iter()
            .filter(|c| !c.sender.is_closed() && !c.limit.is_known())
            .map(|c| c.limit.clone())
            .collect();
        for limit in unknown {
            limit.wait_known().await;
        }
        if let Some(H2Checkout { sender, guard, .. }) = self.checkout_h2(watch) {
            return self.send_h2(sender, guard, request).await;
        }
        // The attempt we waited for failed: do not queue up another full timeout behind it;
        // the request was not sent and can go to another endpoint now.
        if self.connect_failures.load(Ordering::Acquire) != failures_before {
            let error = self
                .last_connect_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| {
                    UpstreamError::new(
                        ErrorKind::Connect,
                        Sent::No,
                        "a connection attempt just failed",
                    )
                    .at(self.endpoint.url())
                });
            return Err((error, Some(request)));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let connection = match connector.connect(&self.endpoint, false).await {
            Ok(connection) => connection,
            Err(error) => {
                *self
                    .last_connect_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
                self.connect_failures.fetch_add(1, Ordering::AcqRel);
                return Err((error, Some(request)));
            }
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        match connection {
            Connection::H2(sender, limit, ended) => {
                self.protocol.store(PROTOCOL_H2, Ordering::Release);
                let conn = Arc::new(H2Conn::new(sender.clone(), limit, 1));
                // A connection made with a TLS identity retired meanwhile serves this request only.
                if self.generation.load(Ordering::Acquire) == generation {
                    self.add_h2(&conn, ended);
                }
                let guard = StreamGuard::new(conn.streams.clone(), self.epoch, !watch);
                // The connection (and its sender) stays with the pool only: see `H2Conn`.
                drop(conn);
                self.send_h2(sender, guard, request).await
            }
            Connection::H1(sender) => {
                self.protocol.store(PROTOCOL_H1, Ordering::Release);
                self.send_h1(sender, request).await
            }
        }
    }

    /// A connection with a free stream slot, the slot already taken. Watches take the first
    /// connection with room; other requests the one of this thread's carrying the fewest of
    /// them, or else any with room.
    fn checkout_h2(&self, watch: bool) -> Option<H2Checkout> {
        let list = self.h2.load();
        let worker = crate::worker::current();
        let has_room = |conn: &H2Conn| {
            let limit = self.settings.max_streams.min(conn.limit.streams());
            (!conn.sender.is_closed() && conn.streams.in_flight.load(Ordering::Relaxed) < limit)
                .then_some(limit)
        };
        let preferred = if watch {
            None
        } else {
            list.iter()
                .filter(|conn| conn.worker == worker && has_room(conn).is_some())
                .min_by_key(|conn| conn.streams.busy.load(Ordering::Relaxed))
        };
        // The preferred connection first, then any with room (it may have filled meanwhile).
        for conn in preferred.into_iter().chain(list.iter()) {
            let Some(limit) = has_room(conn) else {
                continue;
            };
            let taken = conn.streams.in_flight.fetch_add(1, Ordering::AcqRel);
            let busy_before = conn.streams.busy.load(Ordering::Relaxed);
            let guard = StreamGuard::new(conn.streams.clone(), self.epoch, !watch);
            if taken < limit {
                return Some(H2Checkout {
                    sender: conn.sender.clone(),
                    guard,
                    busy_before,
                });
            }
            drop(guard); // full: give the slot back
        }
        None
    }

    /// Puts `conn` in the list, and takes it out as soon as its driver ends (a GOAWAY served,
    /// the server gone), dropping the pool's sender: see [`H2Conn`] for why that must not wait
    /// for the next sweep.
    fn add_h2(self: &Arc<Self>, conn: &Arc<H2Conn>, ended: crate::stream_limit::DriverEnded) {
        self.h2.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(conn.clone());
            list
        });
        let (pool, conn) = (Arc::downgrade(self), Arc::downgrade(conn));
        tokio::spawn(async move {
            ended.wait().await;
            if let Some(pool) = pool.upgrade() {
                pool.retain_h2(|c| !std::ptr::eq(c, conn.as_ptr()));
            }
        });
    }

    fn forget_closed_h2(&self) {
        self.retain_h2(|c| !c.sender.is_closed());
    }

    /// Keeps the HTTP/2 connections `keep` says yes to.
    fn retain_h2(&self, keep: impl Fn(&H2Conn) -> bool) {
        self.h2
            .rcu(|list| list.iter().filter(|c| keep(c)).cloned().collect::<Vec<_>>());
    }

    fn checkout_h1(&self) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.h1_idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(entry) = idle.pop() {
            if entry.sender.is_ready() && entry.since.elapsed() < self.settings.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    async fn send_h2(
        &self,
        mut sender: http2::SendRequest<RequestBody>,
        guard: StreamGuard,
        mut request: Request<RequestBody>,
    ) -> Attempt {
        // HTTP/2 carries the authority in the URI (`:authority`), not in a Host header.
        request.headers_mut().remove(header::HOST);
        *request.uri_mut() = absolute(&self.endpoint, request.uri());
        let answer = sender.try_send_request(request);
        // Not kept while waiting: see `H2Conn`.
        drop(sender);
        match answer.await {
            Ok(response) => Ok(response.map(|body| PooledBody {
                inner: body,
                guard: Some(guard),
                load: None,
            })),
            Err(mut error) => {
                let unsent = error.take_message().map(|r| {
                    let (parts, body) = r.into_parts();
                    Request::from_parts(parts, body)
                });
                let sent = if unsent.is_some() || never_processed(error.error()) {
                    Sent::No
                } else {
                    Sent::Maybe
                };
                let failure = UpstreamError::new(ErrorKind::Protocol, sent, chain(error.error()))
                    .at(self.endpoint.url());
                Err((failure, unsent.map(origin_form)))
            }
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut sender: http1::SendRequest<RequestBody>,
        mut request: Request<RequestBody>,
    ) -> Attempt {
        request
            .headers_mut()
            .insert(header::HOST, self.endpoint.host_header().clone());
        let pending = sender.try_send_request(request);
        // The connection goes back to the idle list once the response has been read in full;
        // if the client drops the response early, hyper closes it instead.
        let pool = Arc::downgrade(self);
        tokio::spawn(return_when_ready(
            pool,
            self.generation.load(Ordering::Acquire),
            sender,
        ));
        match pending.await {
            Ok(response) => Ok(response.map(|body| PooledBody {
                inner: body,
                guard: None,
                load: None,
            })),
            Err(mut error) => {
                let unsent = error.take_message();
                let sent = if unsent.is_some() {
                    Sent::No
                } else {
                    Sent::Maybe
                };
                Err((
                    UpstreamError::new(ErrorKind::Protocol, sent, chain(error.error()))
                        .at(self.endpoint.url()),
                    unsent,
                ))
            }
        }
    }

    /// Stops reusing every current connection: requests in flight finish on them, new ones get
    /// new connections (after a CA or client certificate change).
    pub(crate) fn retire_connections(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.h2.store(Arc::new(Vec::new()));
        self.h1_idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Drops closed connections and those idle longer than the idle timeout.
    pub(crate) fn sweep(&self) {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let idle_ms = u64::try_from(self.settings.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        self.retain_h2(|c| {
            let idle = c.streams.in_flight.load(Ordering::Acquire) == 0
                && now_ms.saturating_sub(c.streams.idle_since_ms.load(Ordering::Relaxed)) > idle_ms;
            !c.sender.is_closed() && !idle
        });
        let mut idle = self.h1_idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|e| !e.sender.is_closed() && e.since.elapsed() < self.settings.idle_timeout);
    }

    /// Open HTTP/2 connections and idle HTTP/1.1 ones (for status and tests).
    pub(crate) fn open_connections(&self) -> usize {
        let h2 = self
            .h2
            .load()
            .iter()
            .filter(|c| !c.sender.is_closed())
            .count();
        h2 + self.h1_idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

async fn return_when_ready(
    pool: Weak<EndpointPool>,
    generation: u64,
    mut sender: http1::SendRequest<RequestBody>,
) {
    if sender.ready().await.is_err() {
        return;
    }
    if let Some(pool) = pool.upgrade()
        && pool.generation.load(Ordering::Acquire) == generation
    {
        pool.h1_idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(IdleH1 {
                sender,
                since: Instant::now(),
            });
    }
}

fn absolute(endpoint: &Endpoint, uri: &Uri) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(endpoint.scheme().clone());
    parts.authority = Some(endpoint.authority().clone());
    parts.path_and_query = uri
        .path_and_query()
        .cloned()
        .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

fn origin_form(mut request: Request<RequestBody>) -> Request<RequestBody> {
    if let Some(pq) = request.uri().path_and_query().cloned() {
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Whether an HTTP/2 error proves the server never processed the stream: `REFUSED_STREAM`, or a
/// GOAWAY whose last-stream-id is below it (h2 fails exactly those streams).
fn never_processed(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        source = e.source();
    }
    false
}

/// A response body from the apiserver; holds its HTTP/2 stream slot until it ends or is dropped.
#[derive(Debug)]
pub(crate) struct PooledBody {
    inner: Incoming,
    guard: Option<StreamGuard>,
    load: Option<crate::balancer::LoadGuard>,
}

impl PooledBody {
    /// A body from a connection that is not pooled (upgrades).
    /// Counts the response as load on its endpoint until it ends.
    pub(crate) fn with_load(mut self, load: crate::balancer::LoadGuard) -> Self {
        self.load = Some(load);
        self
    }

    pub(crate) fn unpooled(inner: Incoming) -> Self {
        Self {
            inner,
            guard: None,
            load: None,
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // The stream is finished: free its slot and its load now rather than at drop.
            self.guard = None;
            self.load = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
