//! Living under systemd: sockets passed by socket activation (`LISTEN_FDS`), and the notify
//! protocol — `READY=1` once kprox serves and has heard from an apiserver, `STOPPING=1` at
//! shutdown, `WATCHDOG=1` pings when the unit sets `WatchdogSec`. Outside systemd all of this is
//! a no-op.

use std::time::Duration;

use anyhow::Context as _;
use kprox_listener::Listener;

/// The socket systemd passed, if any (the first one).
pub fn activated_listener() -> anyhow::Result<Option<Listener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    if let Ok(Some(tcp)) = fds.take_tcp_listener(0) {
        tcp.set_nonblocking(true)?;
        return Ok(Some(Listener::Tcp(
            tokio::net::TcpListener::from_std(tcp).context("the socket systemd passed")?,
        )));
    }
    if let Ok(Some(unix)) = fds.take_unix_listener(0) {
        unix.set_nonblocking(true)?;
        let path = unix
            .local_addr()?
            .as_pathname()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        return Ok(Some(Listener::Unix(
            tokio::net::UnixListener::from_std(unix).context("the socket systemd passed")?,
            path,
        )));
    }
    anyhow::bail!(
        "LISTEN_FDS passed a socket kprox cannot serve on (it needs a TCP or unix stream socket)"
    )
}

/// Tells systemd kprox is ready, with a status line.
pub fn ready(status: &str) {
    if let Err(error) = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]) {
        tracing::warn!(%error, "could not notify systemd");
    }
}

/// Tells systemd kprox is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("draining connections"),
    ]);
}

/// Pings the watchdog at half its interval, when the unit asked for one.
pub fn start_watchdog() {
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let every = (interval / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                tokio::time::sleep(every).await;
            }
        });
    }
}
