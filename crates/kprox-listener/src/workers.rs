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

use crate::stream::{Stream, tcp_move_to};

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

    /// The worker the next connection goes to, with `io` registered with that worker's
    /// reactor (`None`: `io` stays on the accepting runtime). The connection's task is then
    /// built here and spawned there as it is, so it is no larger than on one runtime (a
    /// wrapper that moved the socket over first would keep its own copy of what it carries,
    /// about 600 bytes more per open watch).
    pub(crate) fn assign(&self, io: Stream) -> std::io::Result<(Stream, Option<&Handle>)> {
        match self.next() {
            Some(worker) => Ok((io.move_to(worker)?, Some(worker))),
            None => Ok((io, None)),
        }
    }

    /// [`Self::assign`] for a TCP socket.
    pub(crate) fn assign_tcp(
        &self,
        io: tokio::net::TcpStream,
    ) -> std::io::Result<(tokio::net::TcpStream, Option<&Handle>)> {
        match self.next() {
            Some(worker) => Ok((tcp_move_to(io, worker)?, Some(worker))),
            None => Ok((io, None)),
        }
    }
}

/// Spawns `task` into `set` on `worker`, or on the calling runtime.
pub(crate) fn spawn_in<F>(set: &mut JoinSet<()>, worker: Option<&Handle>, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match worker {
        Some(handle) => set.spawn_on(task, handle),
        None => set.spawn(task),
    };
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
                let (mut server, worker) = spread.assign_tcp(server).expect("assigned");
                let tx = tx.clone();
                spawn_in(&mut set, worker, async move {
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
