//! Relaying a TCP pass-through connection with splice(2): socket → pipe → socket inside the
//! kernel, so the bytes of a 1 MiB list are never copied into kprox (HAProxy's technique for
//! TCP mode). One pipe per direction; each direction ends by half-closing its destination, so
//! a client's or an apiserver's shutdown reaches the other side as it would directly.

use std::io;
use std::net::Shutdown;

use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per splice: a default pipe's capacity. (A 256 KiB pipe measured no better:
/// the second TCP hop's kernel work, not the number of calls, is what the relay costs.)
const CHUNK: usize = 64 * 1024;

/// Relays both directions until both have ended; `to_b` and `to_a` count what each carried.
pub async fn both_ways(
    a: &TcpStream,
    b: &TcpStream,
    to_b: impl Fn(usize),
    to_a: impl Fn(usize),
) -> io::Result<()> {
    tokio::try_join!(one_way(a, b, to_b), one_way(b, a, to_a)).map(|_| ())
}

/// Moves everything `from` sends to `to`, then half-closes `to`.
async fn one_way(from: &TcpStream, to: &TcpStream, count: impl Fn(usize)) -> io::Result<()> {
    let (pipe_out, pipe_in) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        // The pipe is empty here, so EAGAIN means the socket has nothing to read.
        let read = from
            .async_io(Interest::READABLE, || {
                splice(from, None, &pipe_in, None, CHUNK, flags).map_err(io::Error::from)
            })
            .await?;
        if read == 0 {
            // `to` may already be gone (the other direction failed): nothing left to tell.
            let _ = socket2::SockRef::from(to).shutdown(Shutdown::Write);
            return Ok(());
        }
        count(read);
        let mut pending = read;
        while pending > 0 {
            pending -= to
                .async_io(Interest::WRITABLE, || {
                    splice(&pipe_out, None, to, None, pending, flags).map_err(io::Error::from)
                })
                .await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// 3 MiB one way, the client's half-close passed on, then 3 MiB back to EOF: every byte
    /// arrives in order and is counted once.
    #[tokio::test]
    async fn both_ways_carries_every_byte_and_passes_half_closes_on() {
        let payload: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server_addr = server.local_addr().expect("addr");
        let expected = payload.clone();
        let apiserver = tokio::spawn(async move {
            let (mut socket, _) = server.accept().await.expect("accept");
            let mut received = Vec::new();
            socket
                .read_to_end(&mut received)
                .await
                .expect("read to the half-close");
            assert_eq!(received, expected);
            received.reverse();
            socket.write_all(&received).await.expect("answer");
        });
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front_addr = front.local_addr().expect("addr");
        let (to_server, to_client) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counts = (to_server.clone(), to_client.clone());
        let relay = tokio::spawn(async move {
            let (client, _) = front.accept().await.expect("accept");
            let upstream = TcpStream::connect(server_addr).await.expect("connect");
            both_ways(
                &client,
                &upstream,
                |n| {
                    counts.0.fetch_add(n, Ordering::Relaxed);
                },
                |n| {
                    counts.1.fetch_add(n, Ordering::Relaxed);
                },
            )
            .await
        });
        let mut client = TcpStream::connect(front_addr).await.expect("connect");
        client.write_all(&payload).await.expect("send");
        client.shutdown().await.expect("half-close");
        let mut answer = Vec::new();
        client
            .read_to_end(&mut answer)
            .await
            .expect("read the answer");
        let mut reversed = payload.clone();
        reversed.reverse();
        assert!(answer == reversed, "the answer arrived changed");
        apiserver.await.expect("apiserver");
        relay
            .await
            .expect("relay")
            .expect("both directions ended cleanly");
        assert_eq!(to_server.load(Ordering::Relaxed), payload.len());
        assert_eq!(to_client.load(Ordering::Relaxed), payload.len());
    }
}
