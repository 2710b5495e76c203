//! Accepting client connections and serving HTTP/1.1 on them until shutdown.
//!
//! `serve(listener, handler, shutdown)`: the caller binds the socket (a test binds
//! `127.0.0.1:0`) and decides when to stop; in-flight requests finish before `serve` returns.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::body::IncomingBody;
use crate::client_io::{ClientIo, ClientSocket, ConnectionState, ConnectionTimeouts, ExchangeBody};
use crate::handler::Handler;
use crate::local_users::{LocalUsers, RefusePeer, Verdict};
use crate::request_head::HeadLimits;
use crate::rewind::Rewind;
use crate::stream::Stream;
use crate::watch_path::{self, Answered, FirstRead};
use crate::workers::spawn_in;

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// What to print in `Starting to serve on ...`: `127.0.0.1:8001` or the socket path.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Self::Unix(_, path) => path.display().to_string(),
        }
    }

    /// The TCP address, if TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }
}

/// Connection-level settings.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    /// TCP keepalive for client connections; `None` leaves the OS default.
    pub keepalive: Option<Duration>,
    /// Idle, header-read (also the TLS handshake's limit) and write timeouts.
    pub timeouts: ConnectionTimeouts,
    /// Header limits, answered 431 with a `Status` body (`request_head.rs`).
    pub head_limits: HeadLimits,
    /// Serve HTTPS with this configuration instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where to count connections.
    pub metrics: Option<Arc<kprox_telemetry::Metrics>>,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// After shutdown starts, how long requests in flight may take before streams are ended.
    pub grace: Duration,
    /// Ends watch streams when the grace period is over.
    pub drain: Arc<crate::Drain>,
    /// Who may use loopback and unix-socket connections; `None` serves any local user.
    pub local_users: Option<Arc<LocalUsers>>,
    /// The runtimes connections are served on, in turn (none: the one that accepts).
    pub workers: Arc<crate::Workers>,
}

impl ServeSettings {
    /// The settings of `[listen]`, with what is built elsewhere: the TLS configuration, the
    /// metrics, the drain the request path shares, and who may connect.
    pub fn from_config(
        listen: &kprox_config::ListenConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        metrics: Arc<kprox_telemetry::Metrics>,
        drain: Arc<crate::Drain>,
        local_users: Option<LocalUsers>,
    ) -> Self {
        Self {
            keepalive: listen.keepalive.map(|d| d.get()),
            timeouts: ConnectionTimeouts::from(&listen.limits),
            head_limits: HeadLimits::from(&listen.limits),
            tls,
            metrics: Some(metrics),
            max_connections: listen.max_connections,
            grace: listen.shutdown_grace.get(),
            drain,
            local_users: local_users.map(Arc::new),
            workers: Arc::default(),
        }
    }
}

/// Counts a client connection as open while it lives.
struct OpenConnection(Arc<kprox_telemetry::Metrics>);

impl OpenConnection {
    fn new(metrics: Arc<kprox_telemetry::Metrics>) -> Self {
        metrics.connections_accepted().inc();
        metrics.connections_open().inc();
        Self(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open().dec();
    }
}

/// Serves connections until `shutdown` resolves, then lets open connections finish the
/// request in progress (idle keep-alive connections close at once) and returns.
pub async fn serve<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let (stopping, _) = watch::channel(false);
    let capacity = Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1)));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let (io, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let (Some(period), Stream::Tcp(tcp)) = (settings.keepalive, &io) {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(period)
                .with_interval(period);
            let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive);
        }
        let Ok(permit) = capacity.clone().try_acquire_owned() else {
            // Over the cap: answer at once and close, without reading the request.
            if let Some(metrics) = &settings.metrics {
                metrics.connections_refused().inc();
            }
            if settings.tls.is_some() {
                drop(io); // no plain-text answer on a TLS port: just close
            } else {
                tokio::spawn(refuse_over_capacity(io));
            }
            continue;
        };
        let connection = Connection {
            handler: handler.clone(),
            client,
            builder: http1_builder(&settings),
            timeouts: settings.timeouts,
            head_limits: settings.head_limits,
            stop: stopping.subscribe(),
            open: (settings.metrics.clone().map(OpenConnection::new), permit),
        };
        // Judged before the connection's task exists, so a served connection's task is the
        // same as without the check; the lookup is a few system calls.
        let verdict = settings.local_users.as_deref().map(|users| match &io {
            Stream::Tcp(tcp) => judge_tcp(users, tcp),
            Stream::Unix(unix) => {
                users.judge(unix.peer_cred().map(|credentials| credentials.uid()))
            }
        });
        if let Some(Verdict::Refused(message)) = verdict {
            let metrics = settings.metrics.clone();
            let tls = settings.tls.clone();
            connections.spawn(Box::pin(refuse(connection, message, metrics, io, tls)));
            continue;
        }
        let (io, worker) = match settings.workers.assign(io) {
            Ok(assigned) => assigned,
            Err(error) => {
                tracing::debug!(%error, "a new connection could not be handed to a worker");
                continue;
            }
        };
        match (io, settings.tls.clone()) {
            (Stream::Tcp(tcp), Some(tls)) => {
                spawn_in(&mut connections, worker, serve_tls(connection, tcp, tls));
            }
            (Stream::Tcp(tcp), None) => spawn_in(&mut connections, worker, connection.run(tcp)),
            (Stream::Unix(unix), _) => spawn_in(&mut connections, worker, connection.run(unix)),
        }
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    // Idle keep-alive connections close now; busy ones after their current exchange.
    stopping.send_replace(true);
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(settings.grace, all_done)
        .await
        .is_err()
    {
        tracing::info!(
            open = connections.len(),
            "grace period over: ending watch streams"
        );
        settings.drain.end_streams();
        let rest = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(std::time::Duration::from_secs(5), rest)
            .await
            .is_err()
        {
            tracing::warn!(
                open = connections.len(),
                "closing connections that did not finish"
            );
            connections.abort_all();
        }
    }
}

/// Serves a TLS connection once its handshake is done (within the header-read timeout).
async fn serve_tls<H: Handler>(
    connection: Connection<H>,
    tcp: tokio::net::TcpStream,
    tls: Arc<rustls::ServerConfig>,
) {
    let handshake_timeout = connection.timeouts.header_read;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => connection.run(tls).await,
        Ok(Err(error)) => tracing::debug!(%error, "client TLS handshake failed"),
        Err(_) => tracing::debug!("client TLS handshake timed out"),
    }
}

/// One accepted client connection and what serving it needs.
struct Connection<H> {
    handler: Arc<H>,
    client: Option<IpAddr>,
    builder: hyper::server::conn::http1::Builder,
    timeouts: ConnectionTimeouts,
    head_limits: HeadLimits,
    stop: watch::Receiver<bool>,
    /// Counted as open, and holding a place under the cap, until served.
    open: (Option<OpenConnection>, tokio::sync::OwnedSemaphorePermit),
}

/// The verdict on a TCP connection's local user.
fn judge_tcp(users: &LocalUsers, tcp: &tokio::net::TcpStream) -> Verdict {
    match (tcp.local_addr(), tcp.peer_addr()) {
        (Ok(local), Ok(peer)) => users.judge_tcp(local, peer),
        (Err(error), _) | (_, Err(error)) => users.judge(Err(error)),
    }
}

/// Serves a refused connection: 403 with the refusal to each request, then close.
async fn refuse<H: Handler>(
    connection: Connection<H>,
    message: String,
    metrics: Option<Arc<kprox_telemetry::Metrics>>,
    io: Stream,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    tracing::warn!(reason = %message, "local user refused");
    let refused = Connection {
        handler: Arc::new(RefusePeer { message, metrics }),
        client: connection.client,
        builder: connection.builder,
        timeouts: connection.timeouts,
        head_limits: connection.head_limits,
        stop: connection.stop,
        open: connection.open,
    };
    match (io, tls) {
        (Stream::Tcp(tcp), Some(tls)) => {
            let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(refused.timeouts.header_read, handshake).await
            {
                refused.run(tls).await;
            }
        }
        (Stream::Tcp(tcp), None) => refused.run(tcp).await,
        (Stream::Unix(unix), _) => refused.run(unix).await,
    }
}

impl<H: Handler> Connection<H> {
    /// Serves the connection until it closes: a first request that is a watch by kprox's own
    /// writer (`watch_path.rs`), everything else by hyper.
    async fn run<T>(self, socket: T)
    where
        T: AsyncRead + AsyncWrite + ClientSocket + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnectionState::default());
        let metrics = self.open.0.as_ref().map(|open| open.0.clone());
        let mut io = ClientIo::new(
            socket,
            state.clone(),
            self.timeouts,
            self.head_limits,
            metrics,
        );
        let replay = match watch_path::read_first(&mut io).await {
            FirstRead::Closed => return,
            FirstRead::Other(bytes) => bytes,
            FirstRead::Watch(request) => {
                // Each step boxed, so the task stays small for as long as the watch is open.
                let answered =
                    watch_path::answer(&mut io, &state, request, &*self.handler, self.client);
                let carry_on = match Box::pin(answered).await {
                    Ok(Answered::Finished(carry_on)) => Ok(carry_on),
                    Ok(Answered::Streaming(streaming)) => {
                        Box::pin(watch_path::stream(&mut io, streaming)).await
                    }
                    Err(error) => Err(error),
                };
                match carry_on {
                    Ok(Some(replay)) if !*self.stop.borrow() => replay,
                    Ok(_) => return,
                    Err(error) => {
                        tracing::debug!(%error, "client connection ended with an error");
                        return;
                    }
                }
            }
        };
        let handler = self.handler.clone();
        let client = self.client;
        let service = service_fn(move |request: Request<Incoming>| {
            let handler = handler.clone();
            let in_flight = state.begin();
            let state = state.clone();
            async move {
                if state.take_ambiguous() {
                    let refusal = crate::forward::closing(crate::status_response(
                        http::StatusCode::BAD_REQUEST,
                        "kprox refused this request: its body is framed ambiguously (Content-Length with Transfer-Encoding, or more than one Content-Length)",
                    ));
                    return Ok(refusal.map(|body| ExchangeBody::new(body, in_flight)));
                }
                let response = handler
                    .handle(request.map(IncomingBody::from), client)
                    .await;
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    state.upgraded();
                }
                Ok::<_, Infallible>(response.map(|body| ExchangeBody::new(body, in_flight)))
            }
        });
        let hyper_connection = self
            .builder
            .serve_connection(TokioIo::new(Rewind::new(replay, io)), service)
            .with_upgrades();
        // Boxed: hyper's connection state is large and only some connections need it.
        Box::pin(drive(hyper_connection, self.stop)).await;
    }
}

/// hyper's HTTP/1.1 server with kprox's hard limits. Its header timer (from the end of one
/// response to the end of the next request's headers) is only a backstop: `ClientIo` enforces
/// the idle and header-read timeouts separately and sooner.
fn http1_builder(settings: &ServeSettings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    let hard_max_bytes = settings.head_limits.hard_max_bytes();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.timeouts.idle + settings.timeouts.header_read)
        .max_header_size(hard_max_bytes);
    if let Some(max) = settings.head_limits.hyper_max_headers() {
        builder.max_headers(max);
    }
    // hyper's read buffer (about 400 KiB by default) must hold the largest head allowed.
    if hard_max_bytes + 8192 > 400 * 1024 {
        builder.max_buf_size(hard_max_bytes + 8192);
    }
    builder
}

/// Drives hyper's side of a connection; on shutdown, asks hyper to finish the current
/// exchange and close.
async fn drive<C>(conn: C, mut stop: watch::Receiver<bool>)
where
    C: Future<Output = hyper::Result<()>> + GracefulShutdownable,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => log_end(result),
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().start_graceful_shutdown();
            log_end(conn.await);
        }
    }
}

fn log_end(result: hyper::Result<()>) {
    if let Err(error) = result {
        tracing::debug!(%error, "client connection ended with an error");
    }
}

/// hyper's upgradeable HTTP/1.1 connection, seen through the one method shutdown needs.
trait GracefulShutdownable {
    fn start_graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulShutdownable for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: http_body::Body + Send + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn start_graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, Option<IpAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Stream::Tcp(stream), Some(peer.ip())))
        }
        Listener::Unix(l, _) => {
            let (stream, _) = l.accept().await?;
            Ok((Stream::Unix(stream), None))
        }
    }
}

/// The answer to a connection over the cap: a `503` `Status` with `Retry-After`, then close.
async fn refuse_over_capacity(io: Stream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"kprox is serving its maximum number of connections; retry shortly","reason":"ServiceUnavailable","code":503}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        match io {
            Stream::Tcp(mut tcp) => {
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
            Stream::Unix(mut unix) => {
                let _ = unix.write_all(response.as_bytes()).await;
                let _ = unix.shutdown().await;
            }
        }
    };
    // A peer that does not read cannot hold the task.
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}
