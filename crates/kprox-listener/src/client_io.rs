//! Timeouts on a client connection, kept where they can be seen: in the byte stream itself.
//!
//! hyper's HTTP/1.1 server has one timer, from the end of a response to the end of the next
//! request's headers. kprox distinguishes what an operator means by each limit:
//!
//! - **idle**: no request in progress and no byte arriving for `idle_timeout` → close;
//! - **headers**: the first byte of a request arrived, its headers did not follow within
//!   `header_read_timeout` → close (slowloris on headers);
//! - **write**: a response (a watch included) the client does not read for `write_timeout` →
//!   close (slow reader). Trickling does not count as reading: once the socket pushes back,
//!   the client must take [`WRITE_PROGRESS`] bytes per `write_timeout` (about 1 KiB/s at the
//!   default 60 s), or find the socket free again, for the clock to start over.
//!
//! It also scans request heads before hyper parses them ([`HeadScan`]): a bare-LF line ending
//! closes the connection; ambiguous body framing marks the request, which is answered 400; a
//! head with more fields than the limit is answered 431 with a `Status` body from here, the rest
//! of the head read and dropped (so closing does not reset the answer away), and the
//! connection closes without hyper seeing the head.
//!
//! While a request is being answered nothing here times out the read side: a watch may wait
//! hours for an event, and the request body has its own deadline (`request_body.rs`). After a
//! `101`, the connection is a tunnel and only the tunnel's idle timeout applies.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::head_scan::{HeadScan, Scanned};
use crate::request_head::{HeadLimits, too_many_fields_answer};

/// Bytes a client must take, once the socket has pushed back, within `write_timeout`.
pub const WRITE_PROGRESS: u64 = 64 * 1024;

/// The connection timeouts.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionTimeouts {
    pub idle: Duration,
    pub header_read: Duration,
    pub write: Duration,
}

impl From<&kprox_config::ListenLimits> for ConnectionTimeouts {
    fn from(limits: &kprox_config::ListenLimits) -> Self {
        Self {
            idle: limits.idle_timeout.get(),
            header_read: limits.header_read_timeout.get(),
            write: limits.write_timeout.get(),
        }
    }
}

/// What the request side tells the byte stream: is a request being answered, is this a tunnel.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    in_flight: AtomicBool,
    tunnel: AtomicBool,
    /// The head just read frames its body ambiguously.
    ambiguous: AtomicBool,
}

impl ConnectionState {
    /// A request's headers have arrived; it is being answered until the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.store(true, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether the request whose head was just read frames its body ambiguously (and forgets).
    pub(crate) fn take_ambiguous(&self) -> bool {
        self.ambiguous.swap(false, Ordering::Relaxed)
    }

    /// The connection was upgraded: from now on only the tunnel's own idle timeout applies.
    pub(crate) fn upgraded(&self) {
        self.tunnel.store(true, Ordering::Relaxed);
    }
}

/// Marks the connection busy while alive; carried by the response body.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnectionState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.store(false, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection marked busy until it is dropped (sent or
/// abandoned).
pub(crate) struct ExchangeBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> ExchangeBody<B> {
    pub(crate) fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for ExchangeBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A timer created on first use and re-armed in place.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed_until: Option<Instant>,
}

impl Timer {
    /// Polls a timer set for `deadline`; `Ready` once it has passed.
    fn poll_at(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed_until != Some(deadline) {
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed_until = Some(deadline);
        }
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The most of a refused head read and dropped after the answer.
const DRAIN_LIMIT: usize = 256 * 1024;

/// An answer written in place of a request hyper is not to read. Then the rest of the head is
/// read and dropped, so that closing with unread bytes does not reset the connection before the
/// client has read the answer.
struct Refusal {
    answer: Bytes,
    written: usize,
    flushed: bool,
    drained: usize,
}

impl Refusal {
    fn new(answer: Bytes) -> Self {
        Self {
            answer,
            written: 0,
            flushed: false,
            drained: 0,
        }
    }

    /// Writes the answer and drains the head, within the head's `deadline`; `Ready(error)`
    /// once done, for hyper, which then closes the connection.
    fn poll<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        inner: &mut T,
        scan: &mut HeadScan,
        timer: &mut Timer,
        deadline: Instant,
        cx: &mut Context<'_>,
    ) -> Poll<io::Error> {
        let timed_out = || {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not take the 431 in time",
            )
        };
        while self.written < self.answer.len() {
            match Pin::new(&mut *inner).poll_write(cx, &self.answer[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(error),
                Poll::Pending => {
                    ready!(timer.poll_at(deadline, cx));
                    return Poll::Ready(timed_out());
                }
            }
        }
        if !self.flushed {
            match Pin::new(&mut *inner).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flushed = true,
                Poll::Ready(Err(error)) => return Poll::Ready(error),
                Poll::Pending => {
                    ready!(timer.poll_at(deadline, cx));
                    return Poll::Ready(timed_out());
                }
            }
        }
        let mut scratch = [0u8; 2048];
        while !scan.done() && self.drained < DRAIN_LIMIT {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => {
                    self.drained += buf.filled().len();
                    if scan.feed(buf.filled()) == Scanned::BareLf {
                        break;
                    }
                }
                Poll::Ready(Err(_)) => break,
                Poll::Pending => {
                    ready!(timer.poll_at(deadline, cx));
                    break;
                }
            }
        }
        Poll::Ready(io::Error::new(
            io::ErrorKind::InvalidData,
            "a request head with too many header fields, answered 431",
        ))
    }
}

/// A client socket that can be told to reset rather than close gracefully: a client cut off
/// for not reading would otherwise keep the kernel sending it the unsent buffer for minutes.
pub(crate) trait ClientSocket {
    fn reset_on_close(&self) {}
}

impl ClientSocket for tokio::net::TcpStream {
    fn reset_on_close(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

impl ClientSocket for tokio::net::UnixStream {}

impl ClientSocket for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn reset_on_close(&self) {
        self.get_ref().0.reset_on_close();
    }
}

/// A client byte stream with kprox's connection timeouts.
pub(crate) struct ClientIo<T> {
    inner: T,
    state: Arc<ConnectionState>,
    timeouts: ConnectionTimeouts,
    /// When the connection last became idle (accepted, or a response finished).
    idle_since: Instant,
    /// The first byte of the request head being read, if one is.
    head_started: Option<Instant>,
    /// The request side was busy at the last look.
    was_busy: bool,
    head_scan: HeadScan,
    /// The answer to a head over the field limit, once one arrived.
    refusal: Option<Box<Refusal>>,
    metrics: Option<Arc<kprox_telemetry::Metrics>>,
    read_timer: Timer,
    /// Bytes written to the client so far.
    written: u64,
    /// Since when the socket has pushed back, and how much had been written then.
    write_blocked: Option<(Instant, u64)>,
    /// The last write attempt returned `Pending` (the next `Ready` is not a free socket).
    write_was_pending: bool,
    write_timer: Timer,
}

impl<T: ClientSocket> ClientIo<T> {
    /// `limits` for the header-field count; `metrics` where its refusals are counted.
    pub(crate) fn new(
        inner: T,
        state: Arc<ConnectionState>,
        timeouts: ConnectionTimeouts,
        limits: HeadLimits,
        metrics: Option<Arc<kprox_telemetry::Metrics>>,
    ) -> Self {
        Self {
            inner,
            state,
            timeouts,
            idle_since: Instant::now(),
            head_started: None,
            was_busy: false,
            head_scan: HeadScan::new(limits.max_headers),
            refusal: None,
            metrics,
            read_timer: Timer::default(),
            written: 0,
            write_blocked: None,
            write_was_pending: false,
            write_timer: Timer::default(),
        }
    }

    fn tunnel(&self) -> bool {
        self.state.tunnel.load(Ordering::Relaxed)
    }

    /// Brings `head_started` / `idle_since` up to date with the request side.
    fn observe_request_side(&mut self) -> bool {
        let busy = self.state.in_flight.load(Ordering::Relaxed);
        if busy {
            self.head_started = None;
            if !self.was_busy {
                self.head_scan.restart();
            }
        } else if self.was_busy {
            self.idle_since = Instant::now();
        }
        self.was_busy = busy;
        busy
    }

    /// A write could not proceed: `Ready(error)` once it has waited `write` long.
    fn poll_write_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.tunnel() {
            return Poll::Pending;
        }
        let written = self.written;
        let (since, _) = *self
            .write_blocked
            .get_or_insert_with(|| (Instant::now(), written));
        ready!(self.write_timer.poll_at(since + self.timeouts.write, cx));
        self.inner.reset_on_close();
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read the response in time",
        ))
    }

    /// Accounts a write of `n` bytes (or a flush, `None`) that returned `result`.
    fn wrote<R>(
        &mut self,
        result: Poll<io::Result<R>>,
        n: impl FnOnce(&R) -> u64,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Ready(Ok(value)) => {
                self.written += n(&value);
                let progressed = self
                    .write_blocked
                    .is_some_and(|(_, at)| self.written - at >= WRITE_PROGRESS);
                // A socket with room at the first try, or a client that took enough: unblocked.
                if !self.write_was_pending || progressed {
                    self.write_blocked = None;
                }
                self.write_was_pending = false;
                Poll::Ready(Ok(value))
            }
            Poll::Ready(Err(e)) => {
                self.write_blocked = None;
                self.write_was_pending = false;
                Poll::Ready(Err(e))
            }
            Poll::Pending => match self.poll_write_stall(cx) {
                Poll::Ready(error) => Poll::Ready(Err(error)),
                Poll::Pending => {
                    self.write_was_pending = true;
                    Poll::Pending
                }
            },
        }
    }

    /// A flush or shutdown moves no new bytes: only a wait is timed.
    fn flushed(
        &mut self,
        result: Poll<io::Result<()>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        match result {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => match self.poll_write_stall(cx) {
                Poll::Ready(error) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
impl<T: AsyncRead + AsyncWrite + ClientSocket + Unpin> ClientIo<T> {
    /// Carries on with the refusal under way, if there is one.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Error>> {
        let deadline = self.head_started.unwrap_or(self.idle_since) + self.timeouts.header_read;
        let refusal = self.refusal.as_deref_mut()?;
        Some(refusal.poll(
            &mut self.inner,
            &mut self.head_scan,
            &mut self.read_timer,
            deadline,
            cx,
        ))
    }
}

impl<T: AsyncRead + AsyncWrite + ClientSocket + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(refused) = this.poll_refusal(cx) {
            return refused.map(Err);
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.tunnel() {
            return result;
        }
        let busy = this.observe_request_side();
        match result {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                if busy {
                    if let Some(&last) = fresh.last() {
                        this.head_scan.prev = last;
                    }
                    return Poll::Ready(Ok(()));
                }
                if !fresh.is_empty() && this.head_started.is_none() {
                    this.head_started = Some(Instant::now());
                }
                match this.head_scan.feed(fresh) {
                    Scanned::Fine => {}
                    Scanned::BareLf => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a bare LF in a request head",
                        )));
                    }
                    Scanned::TooManyFields => {
                        // hyper never sees this head: the answer and the close are ours.
                        buf.set_filled(before);
                        if let Some(metrics) = &this.metrics {
                            metrics.rejected("headers");
                        }
                        let answer = too_many_fields_answer(this.head_scan.max_fields());
                        this.refusal = Some(Box::new(Refusal::new(answer)));
                        // From here on every read carries the refusal on.
                        return Pin::new(this).poll_read(cx, buf);
                    }
                }
                if this.head_scan.ambiguous() {
                    this.state.ambiguous.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if busy => Poll::Pending,
            Poll::Pending => {
                let (deadline, what) = match this.head_started {
                    Some(start) => (
                        start + this.timeouts.header_read,
                        "the request headers did not arrive in time",
                    ),
                    None => (
                        this.idle_since + this.timeouts.idle,
                        "the connection was idle too long",
                    ),
                };
                ready!(this.read_timer.poll_at(deadline, cx));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
        }
    }
}

impl<T: AsyncWrite + ClientSocket + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(result, |n| *n as u64, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(result, |n| *n as u64, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.flushed(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.flushed(result, cx)
    }
}
