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
//! It also reads request heads for what hyper's parser forgives but a smuggler relies on
//! another parser reading differently: a bare-LF line ending closes the connection; a
//! `Content-Length` beside `Transfer-Encoding`, or two `Content-Length`s (which hyper resolves
//! by the RFC and hides from the handler), mark the request ambiguous and it is answered 400.
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

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

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

/// Looks for a bare LF (an LF not preceded by CR) in request heads.
#[derive(Debug)]
struct HeadScan {
    /// The byte before the ones being fed, whatever part of the stream it belonged to.
    prev: u8,
    /// The current line has no byte other than CR yet.
    line_empty: bool,
    /// A non-empty line has ended: an empty line now ends the head.
    seen_line: bool,
    /// The head has ended; what follows is body or the next request.
    done: bool,
    /// The start of the current line, lower-cased (long enough for the names below).
    line: [u8; 18],
    line_len: usize,
    content_lengths: u8,
    transfer_encodings: u8,
}

impl Default for HeadScan {
    fn default() -> Self {
        Self {
            prev: 0,
            line_empty: true,
            seen_line: false,
            done: false,
            line: [0; 18],
            line_len: 0,
            content_lengths: 0,
            transfer_encodings: 0,
        }
    }
}

impl HeadScan {
    /// Ready for the next request head.
    fn restart(&mut self) {
        *self = Self {
            prev: self.prev,
            ..Self::default()
        };
    }

    /// Feeds bytes of a request head; `false` on a bare LF.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            if self.done {
                break;
            }
            match byte {
                b'\n' if self.prev != b'\r' => return false,
                b'\n' => {
                    if !self.line_empty {
                        self.seen_line = true;
                        let line = &self.line[..self.line_len];
                        if line.starts_with(b"content-length:") {
                            self.content_lengths = self.content_lengths.saturating_add(1);
                        } else if line.starts_with(b"transfer-encoding:") {
                            self.transfer_encodings = self.transfer_encodings.saturating_add(1);
                        }
                    } else if self.seen_line {
                        self.done = true;
                    }
                    self.line_empty = true;
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => {
                    self.line_empty = false;
                    if self.line_len < self.line.len() {
                        self.line[self.line_len] = byte.to_ascii_lowercase();
                        self.line_len += 1;
                    }
                }
            }
            self.prev = byte;
        }
        if let Some(&last) = bytes.last() {
            self.prev = last;
        }
        true
    }

    /// The finished head framed its body ambiguously.
    fn ambiguous(&self) -> bool {
        self.done
            && (self.content_lengths > 1
                || (self.content_lengths > 0 && self.transfer_encodings > 0))
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
    pub(crate) fn new(inner: T, state: Arc<ConnectionState>, timeouts: ConnectionTimeouts) -> Self {
        Self {
            inner,
            state,
            timeouts,
            idle_since: Instant::now(),
            head_started: None,
            was_busy: false,
            head_scan: HeadScan::default(),
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
impl<T: AsyncRead + ClientSocket + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
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
                if !this.head_scan.feed(fresh) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a bare LF in a request head",
                    )));
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

#[cfg(test)]
mod tests {
    use super::HeadScan;

    #[test]
    fn crlf_heads_pass_and_the_scan_stops_at_their_end() {
        let mut scan = HeadScan::default();
        assert!(scan.feed(b"GET / HTTP/1.1\r\nHost: a\r"));
        assert!(scan.feed(b"\n\r\nbody\nwith bare LFs\n"));
        assert!(scan.done);
    }

    #[test]
    fn a_bare_lf_anywhere_in_the_head_is_refused() {
        assert!(!HeadScan::default().feed(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
        assert!(!HeadScan::default().feed(b"GET / HTTP/1.1\r\nHost: a\n\r\n"));
        let mut split = HeadScan::default();
        assert!(split.feed(b"GET / HTTP/1.1\r\nX: y"));
        assert!(!split.feed(b"\n"));
    }

    #[test]
    fn ambiguous_framing_is_seen_in_the_raw_head() {
        let mut both = HeadScan::default();
        assert!(
            both.feed(
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
        );
        assert!(both.ambiguous());
        let mut twice = HeadScan::default();
        assert!(twice.feed(b"POST / HTTP/1.1\r\ncontent-length: 5\r\nCONTENT-LENGTH: 5\r\n\r\n"));
        assert!(twice.ambiguous());
        let mut fine = HeadScan::default();
        assert!(
            fine.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nX-Content-Length: 1\r\n\r\n12345")
        );
        assert!(!fine.ambiguous());
    }

    #[test]
    fn leading_empty_lines_do_not_end_the_head() {
        let mut scan = HeadScan::default();
        assert!(scan.feed(b"\r\nGET / HTTP/1.1\r\n"));
        assert!(!scan.done);
        assert!(!scan.feed(b"Host: a\n"));
    }
}
