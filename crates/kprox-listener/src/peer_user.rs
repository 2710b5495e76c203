//! Who is on the other end of a local connection, as the kernel knows it: for a unix socket
//! the connecting process's credentials (`SO_PEERCRED`); for loopback TCP the owner of the
//! client's socket, found in the kernel's socket table with one exact sock_diag lookup of the
//! connection's 4-tuple (no scan of `/proc/net/tcp`, whose cost grows with every open
//! connection — 10,000 watches).

use std::io;
use std::net::SocketAddr;

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

/// The UID owning the client socket of a TCP connection accepted on `local` from `peer`
/// (both on this machine).
pub fn tcp_peer_uid(local: SocketAddr, peer: SocketAddr) -> io::Result<u32> {
    // The client's socket: its source is our peer, its destination us. An IPv4 client of a
    // dual-stack listener shows up as a mapped address; its socket is an IPv4 one.
    let (source, destination) = (unmapped(peer), unmapped(local));
    let family = if source.is_ipv4() { AF_INET } else { AF_INET6 };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut message = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId {
                source_port: source.port(),
                destination_port: destination.port(),
                source_address: source.ip(),
                destination_address: destination.ip(),
                interface_id: 0,
                // INET_DIAG_NOCOOKIE: match by the 4-tuple alone.
                cookie: [0xff; 8],
            },
        })
        .into(),
    );
    message.finalize();
    let mut request = vec![0; message.buffer_len()];
    message.serialize(&mut request);

    let mut socket = netlink_sys::Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    socket.send(&request, 0)?;
    let mut answer = vec![0; 8192];
    let size = socket.recv(&mut &mut answer[..], 0)?;
    let parsed = NetlinkMessage::<SockDiagMessage>::deserialize(&answer[..size])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match parsed.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            Ok(response.header.uid)
        }
        NetlinkPayload::Error(error) => Err(error.to_io()),
        other => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no socket table entry for {peer} -> {local}: {other:?}"),
        )),
    }
}

fn unmapped(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => address,
        },
        SocketAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_connection_of_ours_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, peer) = listener.accept().expect("accept");
        let local = accepted.local_addr().expect("local");
        assert_eq!(peer, client.local_addr().expect("client address"));
        let uid = tcp_peer_uid(local, peer).expect("lookup");
        assert_eq!(uid, rustix::process::getuid().as_raw());
        // A 4-tuple nobody has is not found, not guessed.
        let nobody = SocketAddr::new(peer.ip(), 1);
        assert!(tcp_peer_uid(local, nobody).is_err());
    }

    #[test]
    fn an_ipv6_loopback_connection_is_found_too() {
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            panic!("::1 is not configured on this machine's loopback interface");
        };
        let _client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, peer) = listener.accept().expect("accept");
        let uid = tcp_peer_uid(accepted.local_addr().expect("local"), peer).expect("lookup");
        assert_eq!(uid, rustix::process::getuid().as_raw());
    }
}
