//! The server's `SETTINGS_MAX_CONCURRENT_STREAMS` on one HTTP/2 connection, read live.
//!
//! Why live: a stream over the server's limit waits inside the HTTP/2 client until another
//! stream ends — for ever, behind watches that never end. That was the hang behind "5 of
//! 6,287 GETs" in the GOAWAY and stream-limit test: connections opened after a GOAWAY, under
//! load, took a burst of requests while kprox still believed HTTP/2's initial 100 streams,
//! because its copy of the limit was refreshed only when hyper's dispatcher task ran, not when
//! the HTTP/2 connection read the server's SETTINGS.
//!
//! So the driver of each connection sits behind a mutex that its task holds only while
//! polling, and while the limit is unknown [`StreamLimit::streams`] asks the connection itself
//! (`try_lock`: it never waits; when the driver is being polled at that instant, the value
//! cached at its last poll is used). Until the server's SETTINGS have been read, a connection
//! takes one stream;
//! [`StreamLimit::wait_known`] lets other requests wait briefly for the real limit rather than
//! open a connection each.
//!
//! The same wrapper tells the pool when the driver has ended ([`DriverEnded`]), so a finished
//! connection leaves the pool at once (see `pool.rs`, `H2Conn`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::TokioExecutor;

use crate::RequestBody;

/// The limit HTTP/2 starts with until the server's SETTINGS are read: a value no server can
/// send (the setting is 32 bits, and a missing one is taken as `usize::MAX`).
pub(crate) const NOT_YET_KNOWN: usize = usize::MAX - 1;

/// Longest wait for a new connection's limit before opening another connection.
const WAIT: Duration = Duration::from_secs(1);

/// How often [`StreamLimit::wait_known`] looks.
const WAIT_STEP: Duration = Duration::from_millis(2);

type Driver<I> = Pin<Box<http2::Connection<I, RequestBody, TokioExecutor>>>;

/// Reads the limit of one connection.
#[derive(Clone)]
pub(crate) struct StreamLimit {
    /// The value at the driver's last poll.
    cached: Arc<AtomicUsize>,
    /// Reads the connection's current value, unless its driver is being polled right now.
    live: Arc<dyn Fn() -> Option<usize> + Send + Sync>,
}

impl std::fmt::Debug for StreamLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLimit")
            .field("cached", &self.cached.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl StreamLimit {
    /// The limit: the connection is asked only while the cached value is unknown — asking
    /// takes the HTTP/2 connection's own lock, which its task holds for every frame, and a
    /// request that waits for it costs a thread wake-up (twice the CPU per request at one
    /// connection, benches/run). Once known, the driver refreshes the cache at each poll.
    fn current(&self) -> usize {
        let cached = self.cached.load(Ordering::Relaxed);
        if cached != NOT_YET_KNOWN {
            return cached;
        }
        match (self.live)() {
            Some(limit) => {
                self.cached.store(limit, Ordering::Relaxed);
                limit
            }
            None => cached,
        }
    }

    /// Whether the server's limit has been read.
    pub(crate) fn is_known(&self) -> bool {
        self.current() != NOT_YET_KNOWN
    }

    /// Streams this connection may carry: the server's limit, or one while it is unknown.
    pub(crate) fn streams(&self) -> usize {
        match self.current() {
            NOT_YET_KNOWN => 1,
            limit => limit.max(1),
        }
    }

    /// Waits (at most a second) until the server's limit has been read.
    pub(crate) async fn wait_known(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.is_known() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(WAIT_STEP).await;
        }
    }
}

/// Resolves once a connection's driver has ended (finished or dropped).
#[derive(Debug)]
pub(crate) struct DriverEnded(tokio::sync::oneshot::Receiver<()>);

impl DriverEnded {
    pub(crate) async fn wait(self) {
        let _ = self.0.await;
    }
}

/// Wraps a connection's driver: the future to spawn, the reader of its limit, and its end.
pub(crate) fn track<I>(
    conn: http2::Connection<I, RequestBody, TokioExecutor>,
) -> (Tracked<I>, StreamLimit, DriverEnded)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let driver: Arc<Mutex<Driver<I>>> = Arc::new(Mutex::new(Box::pin(conn)));
    let cached = Arc::new(AtomicUsize::new(NOT_YET_KNOWN));
    let reader = Arc::downgrade(&driver);
    let live = Arc::new(move || {
        let driver = reader.upgrade()?;
        let driver = driver.try_lock().ok()?;
        Some(driver.as_ref().get_ref().current_max_send_streams())
    });
    let (end, ended) = tokio::sync::oneshot::channel();
    (
        Tracked {
            driver,
            cached: cached.clone(),
            _end: end,
        },
        StreamLimit { cached, live },
        DriverEnded(ended),
    )
}

/// A connection's driver, polled under its mutex.
pub(crate) struct Tracked<I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static> {
    driver: Arc<Mutex<Driver<I>>>,
    cached: Arc<AtomicUsize>,
    /// Dropped with the driver: tells [`DriverEnded`].
    _end: tokio::sync::oneshot::Sender<()>,
}

impl<I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static> Future for Tracked<I> {
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut driver = self.driver.lock().unwrap_or_else(|p| p.into_inner());
        let polled = driver.as_mut().poll(cx);
        self.cached.store(
            driver.as_ref().get_ref().current_max_send_streams(),
            Ordering::Relaxed,
        );
        polled
    }
}
