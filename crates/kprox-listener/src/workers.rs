//! The worker runtimes client connections are spread over.
//!
//! kprox runs one single-threaded tokio runtime per core. The accept loops hand each new
//! connection to the next worker in turn, and the connection lives there to its end: its
//! requests, their HTTP/2 streams (`kprox_upstream::worker`) and any tunnel or watch it opens
//! run on that one thread. A socket is registered with the reactor of the runtime that made
//! it, so an accepted socket is taken off the accepting runtime's reactor and registered again
//! on the worker's (two `epoll_ctl` calls per connection, none per request).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::task::JoinSet;

use crate::serve::Stream;

/// The runtimes connections go to, in turn; none means the runtime that accepted them.
#[derive(Debug, Default)]
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Workers {
    /// Connections are spread over `handles`, in turn.
    pub fn new(handles: Vec<Handle>) -> Self {
        Self {
            handles,
            next: AtomicUsize::new(0),
        }
    }

    /// How many runtimes connections are spread over (0: the accepting one).
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether connections stay on the runtime that accepted them.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    fn next(&self) -> Option<&Handle> {
        if self.handles.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        self.handles.get(turn % self.handles.len())
    }

    /// Runs `serve` on the next worker with `io` registered there, as a task of `set`.
    pub(crate) fn spawn<F, Fut>(&self, set: &mut JoinSet<()>, io: Stream, serve: F)
    where
        F: FnOnce(Stream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(handle) = self.next() else {
            set.spawn(serve(io));
            return;
        };
        let detached = match io.detach() {
            Ok(detached) => detached,
            Err(error) => {
                tracing::debug!(%error, "a new connection could not be handed to a worker");
                return;
            }
        };
        set.spawn_on(
            async move {
                match detached.attach() {
                    Ok(io) => serve(io).await,
                    Err(error) => tracing::warn!(%error, "a worker could not take a connection"),
                }
            },
            handle,
        );
    }

    /// Runs `serve` on the next worker with the TCP socket `io` registered there.
    pub(crate) fn spawn_tcp<F, Fut>(
        &self,
        set: &mut JoinSet<()>,
        io: tokio::net::TcpStream,
        serve: F,
    ) where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn(set, Stream::Tcp(io), move |io| async move {
            if let Stream::Tcp(tcp) = io {
                serve(tcp).await;
            }
        });
    }
}

/// A socket between two runtimes' reactors.
pub(crate) enum Detached {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    /// Takes the socket off this runtime's reactor.
    pub(crate) fn detach(self) -> std::io::Result<Detached> {
        Ok(match self {
            Self::Tcp(tcp) => Detached::Tcp(tcp.into_std()?),
            Self::Unix(unix) => Detached::Unix(unix.into_std()?),
        })
    }
}

impl Detached {
    /// Registers the socket with the calling runtime's reactor (it is still non-blocking).
    pub(crate) fn attach(self) -> std::io::Result<Stream> {
        Ok(match self {
            Self::Tcp(tcp) => Stream::Tcp(tokio::net::TcpStream::from_std(tcp)?),
            Self::Unix(unix) => Stream::Unix(tokio::net::UnixStream::from_std(unix)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each connection is served on the next runtime in turn, with a socket that works there.
    #[test]
    fn connections_go_to_each_worker_in_turn_and_their_sockets_work_there() {
        let workers: Vec<tokio::runtime::Runtime> = (0..2)
            .map(|index| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("test-worker-{index}"))
                    .enable_all()
                    .build()
                    .expect("a runtime")
            })
            .collect();
        let spread = Workers::new(workers.iter().map(|rt| rt.handle().clone()).collect());
        let acceptor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let served_on = acceptor.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address");
            let mut set = JoinSet::new();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for _ in 0..4 {
                let client = tokio::net::TcpStream::connect(address)
                    .await
                    .expect("connect");
                let (server, _) = listener.accept().await.expect("accept");
                let tx = tx.clone();
                spread.spawn_tcp(&mut set, server, move |mut server| async move {
                    use tokio::io::AsyncWriteExt as _;
                    // Sent before the greeting, which the acceptor waits for: in order.
                    let _ = tx.send(std::thread::current().name().map(str::to_owned));
                    server
                        .write_all(b"hello")
                        .await
                        .expect("write on the worker");
                });
                let mut client = client;
                let mut buffer = [0u8; 5];
                tokio::io::AsyncReadExt::read_exact(&mut client, &mut buffer)
                    .await
                    .expect("read what the worker wrote");
                assert_eq!(&buffer, b"hello");
            }
            while set.join_next().await.is_some() {}
            drop(tx);
            let mut served_on = Vec::new();
            while let Some(entry) = rx.recv().await {
                served_on.push(entry);
            }
            served_on
        });
        let threads: Vec<Option<&str>> = served_on.iter().map(Option::as_deref).collect();
        let (first, second) = (Some("test-worker-0"), Some("test-worker-1"));
        assert_eq!(threads, vec![first, second, first, second]);
    }
}
