//! The fake apiserver: a TLS (or plain) HTTP/1.1 + HTTP/2 server on a loopback address with
//! client-certificate and bearer-token authentication, counters, a request log and faults that
//! can be switched at run time.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::behaviour::Behaviour;
use crate::body::{Body, reason_for, status_response};
use crate::certs::TestPki;
use crate::resource_api::RouteContext;
use crate::routes::{is_public, route};
use crate::store::Store;

/// How to start a fake apiserver.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// Loopback address to bind (127.0.0.x only). Default 127.0.0.1.
    pub ip: IpAddr,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Serve HTTPS (default) or plain HTTP.
    pub tls: bool,
    /// Offer HTTP/2 by ALPN (default) or only HTTP/1.1.
    pub http2: bool,
    /// Bearer tokens accepted.
    pub tokens: Vec<String>,
    /// Refuse requests without a valid token or client certificate (401). Default true.
    pub require_auth: bool,
    /// The CA to use; a new one when `None`. Several fakes can share one to act as one cluster.
    pub pki: Option<Arc<TestPki>>,
    /// Extra names in the server certificate (the address itself, `localhost` and `kubernetes`
    /// are always there).
    pub extra_names: Vec<String>,
    /// Exactly these names in the server certificate, instead of the defaults and extras
    /// (to test which name a client verifies).
    pub only_names: Option<Vec<String>>,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`. Default: hyper's (200).
    pub max_concurrent_streams: Option<u32>,
    /// The object store; a new one when `None`. Several fakes sharing one act as the
    /// apiservers of one cluster (one etcd).
    pub store: Option<Arc<Store>>,
    /// A name for logs and the status page.
    pub name: String,
    /// Serve the benchmark's fixed answers (see [`crate::fixed`]) without touching the store,
    /// so that the upstream costs as little as possible. Default false.
    pub fixed_bodies: bool,
    /// With `allowWatchBookmarks`, a watch `BOOKMARK` this often, as the watch cache sends one
    /// about once a minute. Default `None`: only a WatchList's end-of-initial-events bookmark.
    pub bookmark_every: Option<std::time::Duration>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            tls: true,
            http2: true,
            tokens: Vec::new(),
            require_auth: true,
            pki: None,
            extra_names: Vec::new(),
            only_names: None,
            max_concurrent_streams: None,
            store: None,
            name: "fake-apiserver".to_owned(),
            fixed_bodies: false,
            bookmark_every: None,
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: Method,
    /// Path and query, exactly as received.
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// Whether the connection presented a verified client certificate.
    pub client_cert: bool,
    /// The client's leaf certificate (DER), if it presented one.
    pub client_cert_der: Option<Vec<u8>>,
}

/// Who a request authenticated as, decided as the apiserver decides it: a verified client
/// certificate first (its x509 authenticator runs before the token authenticators, so a
/// certificate wins over any token on the same request), then a bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The leaf certificate (DER) the connection presented.
    Certificate(Vec<u8>),
    /// The bearer token the request carried (whether or not this fake accepts it).
    Token(String),
    Anonymous,
}

impl LoggedRequest {
    /// Who the apiserver would take this request to be.
    pub fn identity(&self) -> Identity {
        if let Some(der) = &self.client_cert_der {
            return Identity::Certificate(der.clone());
        }
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map_or(Identity::Anonymous, |token| {
                Identity::Token(token.to_owned())
            })
    }
}

const LOG_CAPACITY: usize = 100_000;

struct Shared {
    store: Arc<Store>,
    tokens: Mutex<Vec<String>>,
    require_auth: bool,
    behaviour: watch::Sender<Behaviour>,
    /// The behaviour the accept loop has put into effect (the listener open or closed).
    applied: watch::Sender<Behaviour>,
    /// Bumped to close every open connection at once.
    kill: watch::Sender<u64>,
    /// Bumped to send GOAWAY on every open connection.
    goaway: watch::Sender<u64>,
    handshakes: AtomicU64,
    connections: AtomicU64,
    /// Connections being served right now.
    open: std::sync::atomic::AtomicUsize,
    requests: AtomicU64,
    log: Mutex<Vec<LoggedRequest>>,
    server_address: String,
    fixed_bodies: bool,
    watch: Arc<crate::watch_stream::WatchSettings>,
}

/// A running fake apiserver; stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
    pki: Arc<TestPki>,
    stop: watch::Sender<bool>,
    name: String,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeApiServer {
    /// Starts a fake apiserver with its own CA and the given options.
    pub async fn start(options: FakeOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(
            options.ip.is_loopback(),
            "the fake apiserver binds loopback addresses only"
        );
        let pki = match &options.pki {
            Some(pki) => pki.clone(),
            None => Arc::new(TestPki::new(&format!("{}-ca", options.name))?),
        };
        let listener = TcpListener::bind(SocketAddr::new(options.ip, options.port)).await?;
        let addr = listener.local_addr()?;

        let acceptor = if options.tls {
            let ip = addr.ip().to_string();
            let mut names = vec![
                ip.as_str(),
                "localhost",
                "kubernetes",
                "kubernetes.default.svc",
            ];
            names.extend(options.extra_names.iter().map(String::as_str));
            if let Some(only) = &options.only_names {
                names = only.iter().map(String::as_str).collect();
            }
            let cert = pki.server_cert(&names)?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der())?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()?;
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![cert.cert_der()], cert.key_der())?;
            config.alpn_protocols = if options.http2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            Some(TlsAcceptor::from(Arc::new(config)))
        } else {
            None
        };

        let shared = Arc::new(Shared {
            store: options
                .store
                .clone()
                .unwrap_or_else(|| Arc::new(Store::new())),
            tokens: Mutex::new(options.tokens.clone()),
            require_auth: options.require_auth,
            behaviour: watch::Sender::new(Behaviour::Healthy),
            applied: watch::Sender::new(Behaviour::Healthy),
            kill: watch::Sender::new(0),
            goaway: watch::Sender::new(0),
            handshakes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open: std::sync::atomic::AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            server_address: addr.to_string(),
            fixed_bodies: options.fixed_bodies,
            watch: Arc::new(crate::watch_stream::WatchSettings::new(
                options.bookmark_every,
            )),
        });
        let (stop, stop_rx) = watch::channel(false);
        let settings = ConnSettings {
            acceptor,
            http2: options.http2,
            max_streams: options.max_concurrent_streams,
        };
        tokio::spawn(accept_loop(
            shared.clone(),
            Some(listener),
            addr,
            settings,
            stop_rx,
        ));
        Ok(Self {
            shared,
            addr,
            tls: options.tls,
            pki,
            stop,
            name: options.name,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://ip:port` (or `http://` for a plain fake).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// The CA that signed the server certificate.
    pub fn pki(&self) -> &Arc<TestPki> {
        &self.pki
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> String {
        self.pki.ca_pem()
    }

    /// The object store.
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// Switches the fault behaviour; returns once it is in effect (the listening socket closed
    /// for `Refuse`, open again otherwise).
    pub async fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.behaviour.send_replace(behaviour);
        if matches!(behaviour, Behaviour::Refuse | Behaviour::Blackhole) {
            self.kill_connections();
        }
        let mut applied = self.shared.applied.subscribe();
        // The accept loop only stops when the server is dropped, and `self` is alive here.
        let _ = applied.wait_for(|b| *b == behaviour).await;
        if behaviour == Behaviour::Refuse {
            // Killed connections end asynchronously; a refused server has none left when this
            // returns, so nothing it had queued can still reach a client afterwards.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while self.shared.open.load(Ordering::Acquire) > 0
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    /// Replaces the accepted bearer tokens.
    pub fn set_tokens(&self, tokens: Vec<String>) {
        *lock(&self.shared.tokens) = tokens;
    }

    /// Closes every open connection abruptly.
    pub fn kill_connections(&self) {
        self.shared.kill.send_modify(|n| *n += 1);
    }

    /// Sends GOAWAY on every open HTTP/2 connection (HTTP/1.1 ones close when idle).
    pub fn goaway(&self) {
        self.shared.goaway.send_modify(|n| *n += 1);
    }

    /// Completed TLS handshakes so far.
    pub fn tls_handshakes(&self) -> u64 {
        self.shared.handshakes.load(Ordering::Relaxed)
    }

    /// Accepted TCP connections so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Resets the next watch stream that starts once it has sent `events` events, as if this
    /// apiserver died mid-stream at that point (one-shot).
    pub fn cut_next_watch_after(&self, events: usize) {
        self.shared.watch.cut_next_after(events);
    }

    /// Freezes this replica's watch cache at the store's current version: watches from a
    /// newer one wait 3 s, then get 504 "Too large resource version". `false`: caught up.
    pub fn lag_behind(&self, lagging: bool) {
        let version = lagging.then(|| self.shared.store.resource_version());
        self.shared.watch.lag_at(version);
    }

    /// Requests received so far.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The requests received, oldest first (at most the last 100,000).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<LoggedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.uri.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Stops accepting and closes connections.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        self.kill_connections();
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct ConnSettings {
    acceptor: Option<TlsAcceptor>,
    http2: bool,
    max_streams: Option<u32>,
}

async fn accept_loop(
    shared: Arc<Shared>,
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    settings: ConnSettings,
    mut stop: watch::Receiver<bool>,
) {
    let mut behaviour = shared.behaviour.subscribe();
    loop {
        let refuse = *behaviour.borrow_and_update() == Behaviour::Refuse;
        if refuse {
            // Closing the socket makes connection attempts fail with "connection refused".
            listener = None;
        } else if listener.is_none() {
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(error) => {
                    tracing::warn!(%addr, %error, "fake apiserver could not re-bind; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        shared.applied.send_replace(*behaviour.borrow());
        let accept = async {
            match &listener {
                Some(l) => l.accept().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accept => {
                if let Some((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(shared.clone(), stream, settings.clone()));
                }
            }
            _ = behaviour.changed() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Counts a connection as open until dropped.
struct OpenConnection(Arc<Shared>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, settings: ConnSettings) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    shared.open.fetch_add(1, Ordering::AcqRel);
    let _open = OpenConnection(shared.clone());
    let mut kill = shared.kill.subscribe();
    kill.mark_unchanged();
    let mut goaway = shared.goaway.subscribe();
    goaway.mark_unchanged();

    if *shared.behaviour.borrow() == Behaviour::Blackhole {
        // Hold the socket open, read nothing, answer nothing.
        let _ = kill.changed().await;
        drop(stream);
        return;
    }

    let builder = {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        if let Some(max) = settings.max_streams {
            builder.http2().max_concurrent_streams(max);
        }
        if !settings.http2 {
            builder = builder.http1_only();
        }
        builder
    };

    match settings.acceptor {
        Some(acceptor) => {
            let tls = tokio::select! {
                result = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)) => match result {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                },
                _ = kill.changed() => return,
            };
            shared.handshakes.fetch_add(1, Ordering::Relaxed);
            let client_cert: Option<Arc<Vec<u8>>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.to_vec()));
            drive(
                &builder,
                TokioIo::new(tls),
                shared,
                client_cert,
                kill,
                goaway,
            )
            .await;
        }
        None => drive(&builder, TokioIo::new(stream), shared, None, kill, goaway).await,
    }
}

/// Runs a connection until it ends, is killed, or is asked to GOAWAY (then finishes gracefully).
async fn drive<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    shared: Arc<Shared>,
    client_cert: Option<Arc<Vec<u8>>>,
    mut kill: watch::Receiver<u64>,
    mut goaway: watch::Receiver<u64>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle(shared.clone(), client_cert.clone(), request));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = kill.changed() => return,
            _ = goaway.changed() => conn.as_mut().graceful_shutdown(),
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    client_cert_der: Option<Arc<Vec<u8>>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let client_cert = client_cert_der.is_some();
    shared.requests.fetch_add(1, Ordering::Relaxed);
    {
        let mut log = lock(&shared.log);
        if log.len() >= LOG_CAPACITY {
            log.drain(..LOG_CAPACITY / 10);
        }
        log.push(LoggedRequest {
            method: request.method().clone(),
            uri: request
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default(),
            version: request.version(),
            headers: request.headers().clone(),
            client_cert,
            client_cert_der: client_cert_der.as_deref().cloned(),
        });
    }

    let behaviour = *shared.behaviour.borrow();
    match behaviour {
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        Behaviour::Status(code) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(status_response(
                code,
                reason_for(code),
                "testkit: fault injected",
            ));
        }
        Behaviour::Blackhole => std::future::pending::<()>().await,
        Behaviour::Unready if request.uri().path() == "/readyz" => {
            return Ok(status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "[-]informer-sync failed: reason withheld\nreadyz check failed",
            ));
        }
        Behaviour::Draining if request.uri().path() == "/readyz" => {
            return Ok(status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "[-]shutdown failed: reason withheld\nreadyz check failed",
            ));
        }
        Behaviour::Draining => {
            let mut response = status_response(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "The apiserver is shutting down, please try again later.",
            );
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            if request.version() == http::Version::HTTP_2 {
                // Go's HTTP/2 server turns `Connection: close` into GOAWAY.
                shared.goaway.send_modify(|n| *n += 1);
            } else {
                headers.insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            return Ok(response);
        }
        _ => {}
    }

    if shared.require_auth
        && !is_public(request.uri().path())
        && !client_cert
        && !token_ok(&shared, request.headers())
    {
        return Ok(status_response(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        ));
    }
    if let Some((namespace, pod, kind)) = crate::streaming::parse(request.uri().path()) {
        return Ok(crate::streaming::handle(
            &shared.store,
            request,
            &namespace,
            &pod,
            kind,
        ));
    }
    let ctx = RouteContext {
        store: shared.store.clone(),
        server_address: shared.server_address.clone(),
        cut_bodies: behaviour == Behaviour::CloseMidBody,
        fixed_bodies: shared.fixed_bodies,
        watch: shared.watch.clone(),
    };
    Ok(route(ctx, request).await)
}

fn token_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false; // none, or more than one
    };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    lock(&shared.tokens).iter().any(|t| t == token)
}
