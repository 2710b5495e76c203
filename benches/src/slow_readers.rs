//! Slow readers: many clients at once each asking for a 1 MiB list and taking it at a modem's
//! pace. A proxy that reads its upstream faster than its client drains holds the difference;
//! this measures how much, as the proxy's resident memory while the readers are mid-response.
//!
//! Each reader's socket has a small receive buffer (64 KiB), so the reader's kernel cannot take
//! the whole response on its behalf and the backlog is the proxy's to hold.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many read at once, and how fast each reads.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub readers: usize,
    /// Bytes a reader takes per tick, and the tick.
    pub bytes_per_tick: usize,
    pub tick: Duration,
}

impl Pace {
    /// 64 readers at 64 KiB/s each.
    pub const DEFAULT: Self = Self {
        readers: 64,
        bytes_per_tick: 16 * 1024,
        tick: Duration::from_millis(250),
    };
}

/// Readers mid-response; they close when this is dropped.
#[derive(Debug)]
pub struct SlowReaders {
    /// Readers whose response began (a `200` head).
    started: Arc<AtomicUsize>,
    /// Bytes every reader has taken so far.
    taken: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SlowReaders {
    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::SeqCst)
    }
}

impl Drop for SlowReaders {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts `pace.readers` readers of `path` through the plain-HTTP proxy at `address`.
pub fn start(address: SocketAddr, path: &'static str, pace: Pace) -> SlowReaders {
    let started = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicU64::new(0));
    let tasks = (0..pace.readers)
        .map(|_| {
            let (started, taken) = (started.clone(), taken.clone());
            tokio::spawn(async move {
                if let Err(error) = read_slowly(address, path, pace, &started, &taken).await {
                    eprintln!("slow reader through {address}: {error}");
                }
            })
        })
        .collect();
    SlowReaders {
        started,
        taken,
        tasks,
    }
}

async fn read_slowly(
    address: SocketAddr,
    path: &str,
    pace: Pace,
    started: &AtomicUsize,
    taken: &AtomicU64,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(64 * 1024)?;
    let mut stream = socket.connect(address).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut buf = vec![0; pace.bytes_per_tick];
    let mut first = true;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if first {
            anyhow::ensure!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "the response is not a 200: {}",
                String::from_utf8_lossy(&buf[..n.min(200)])
            );
            started.fetch_add(1, Ordering::SeqCst);
            first = false;
        }
        taken.fetch_add(n as u64, Ordering::SeqCst);
        tokio::time::sleep(pace.tick).await;
    }
}
