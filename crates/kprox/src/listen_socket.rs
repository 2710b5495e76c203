//! TCP listeners with a listen backlog sized for bursts of new connections.
//!
//! `tokio::net::TcpListener::bind` listens with a backlog of 128 (the standard library's
//! value). A burst of more new connections than that — 200 watches opened at once, a fleet of
//! clients reconnecting after a restart — overflows the accept queue: the kernel drops the
//! extra SYNs and each of those clients waits for its SYN retransmission, one second later
//! (`TcpExtListenOverflows` in `nstat`; the idle-watch benchmark showed 33 of 1,000 watches
//! opening in ~1 s instead of ~25 ms). Go's `net.Listen`, which kubectl proxy uses, asks for
//! `net.core.somaxconn`; kprox asks for [`LISTEN_BACKLOG`], which the kernel caps at that value.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept-queue length asked for; Linux caps it at `net.core.somaxconn` (4096 by default
/// since 5.4).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` and listens with [`LISTEN_BACKLOG`], with `SO_REUSEADDR` as tokio sets it (a
/// restarted kprox can bind while old connections are in TIME_WAIT).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
