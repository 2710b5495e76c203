//! Protocol upgrades for exec, attach and port-forward: which ones are allowed, and the tunnel
//! that copies bytes both ways once the apiserver has answered `101 Switching Protocols`.
//!
//! Only WebSocket and SPDY/3.1 are relayed; `h2c` and anything else is refused, so a client
//! cannot turn a kprox connection into something the filters never looked at.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// The upgrade a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    WebSocket,
    Spdy31,
}

/// Reads the upgrade a request asks for: `Ok(None)` for none, `Err` with the refused token.
/// An `Upgrade` header without `Connection: upgrade` is not an upgrade request (the header is
/// hop-by-hop and will be dropped).
pub fn requested(headers: &HeaderMap) -> Result<Option<Protocol>, String> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let mut values = headers.get_all(header::UPGRADE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if connection_upgrade && headers.contains_key(header::UPGRADE) {
            Err("several Upgrade headers".to_owned())
        } else {
            Ok(None)
        };
    };
    if !connection_upgrade {
        return Ok(None);
    }
    let token = value
        .to_str()
        .map_err(|_| "an unreadable Upgrade header".to_owned())?
        .trim();
    if token.eq_ignore_ascii_case("websocket") {
        Ok(Some(Protocol::WebSocket))
    } else if token.eq_ignore_ascii_case("SPDY/3.1") {
        Ok(Some(Protocol::Spdy31))
    } else {
        Err(format!("upgrade to `{token}`"))
    }
}

/// The open tunnels, so that shutdown can end them and the status page can count them.
#[derive(Debug)]
pub struct Tunnels {
    open: AtomicUsize,
    stop: watch::Sender<bool>,
    idle_timeout: Duration,
}

impl Tunnels {
    /// Tunnels idle (no byte either way) for `idle_timeout` are closed.
    pub fn new(idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            stop: watch::Sender::new(false),
            idle_timeout,
        })
    }

    /// Tunnels open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Ends every tunnel (shutdown).
    pub fn close_all(&self) {
        self.stop.send_replace(true);
    }

    /// Once both sides have switched protocols, copies bytes both ways until either side
    /// closes, the tunnel is idle too long, or kprox shuts down.
    pub fn spawn(self: &Arc<Self>, client: OnUpgrade, upstream: OnUpgrade) {
        let tunnels = self.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::debug!(%error, "upgrade did not complete");
                    return;
                }
            };
            tunnels.open.fetch_add(1, Ordering::Relaxed);
            let epoch = Instant::now();
            let activity = Arc::new(AtomicU64::new(0));
            let mut client = Active {
                inner: TokioIo::new(client),
                activity: activity.clone(),
                epoch,
            };
            let mut upstream = Active {
                inner: TokioIo::new(upstream),
                activity: activity.clone(),
                epoch,
            };
            let idle = tunnels.idle_timeout;
            let watchdog = async {
                loop {
                    let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                    let quiet = epoch.elapsed().saturating_sub(last);
                    if quiet >= idle {
                        return;
                    }
                    tokio::time::sleep(idle - quiet).await;
                }
            };
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "tunnel ended with an error");
                    }
                }
                () = watchdog => tracing::info!(idle = ?idle, "closing an idle tunnel"),
                _ = stop.wait_for(|s| *s) => tracing::debug!("closing a tunnel for shutdown"),
            }
            tunnels.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A stream that records when it last moved a byte.
struct Active<T> {
    inner: T,
    activity: Arc<AtomicU64>,
    epoch: Instant,
}

impl<T> Active<T> {
    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(now, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn websocket_and_spdy_are_the_only_upgrades() {
        assert_eq!(
            requested(&headers(&[
                ("connection", "Upgrade"),
                ("upgrade", "websocket")
            ])),
            Ok(Some(Protocol::WebSocket))
        );
        assert_eq!(
            requested(&headers(&[
                ("connection", "keep-alive, upgrade"),
                ("upgrade", "SPDY/3.1")
            ])),
            Ok(Some(Protocol::Spdy31))
        );
        assert!(
            requested(&headers(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c")
            ]))
            .is_err()
        );
        assert!(
            requested(&headers(&[
                ("connection", "Upgrade"),
                ("upgrade", "websocket, h2c")
            ]))
            .is_err()
        );
        assert_eq!(requested(&headers(&[("upgrade", "websocket")])), Ok(None));
        assert_eq!(requested(&headers(&[])), Ok(None));
    }
}
