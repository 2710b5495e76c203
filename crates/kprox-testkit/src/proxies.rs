//! Forward proxies for tests of `proxy-url`: an HTTP `CONNECT` proxy and a SOCKS5 proxy (no
//! authentication), each relaying to loopback targets only and counting its tunnels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Which protocol a [`TunnelProxy`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    HttpConnect,
    Socks5,
}

/// A running proxy on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct TunnelProxy {
    addr: SocketAddr,
    tunnels: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    kind: ProxyKind,
}

impl Drop for TunnelProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TunnelProxy {
    /// Starts a proxy of `kind`.
    pub async fn start(kind: ProxyKind) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tunnels = Arc::new(AtomicU64::new(0));
        let counter = tunnels.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = match kind {
                        ProxyKind::HttpConnect => http_connect(stream, counter).await,
                        ProxyKind::Socks5 => socks5(stream, counter).await,
                    };
                });
            }
        });
        Ok(Self {
            addr,
            tunnels,
            task,
            kind,
        })
    }

    /// `http://127.0.0.1:PORT` or `socks5://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match self.kind {
            ProxyKind::HttpConnect => format!("http://{}", self.addr),
            ProxyKind::Socks5 => format!("socks5://{}", self.addr),
        }
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::Relaxed)
    }
}

fn loopback(target: &SocketAddr) -> std::io::Result<()> {
    if target.ip().is_loopback() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            "the test proxy only reaches loopback",
        ))
    }
}

async fn http_connect(stream: TcpStream, tunnels: Arc<AtomicU64>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).await?;
        if header == "\r\n" || header.is_empty() {
            break;
        }
    }
    let mut client = reader.into_inner();
    let Ok(addr) = target.parse::<SocketAddr>() else {
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await?;
        return Ok(());
    };
    loopback(&addr)?;
    let mut upstream = TcpStream::connect(addr).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tunnels.fetch_add(1, Ordering::Relaxed);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn socks5(mut client: TcpStream, tunnels: Arc<AtomicU64>) -> std::io::Result<()> {
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting).await?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    client.read_exact(&mut methods).await?;
    client.write_all(&[5, 0]).await?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let ip: std::net::IpAddr = match request[3] {
        1 => {
            let mut v4 = [0u8; 4];
            client.read_exact(&mut v4).await?;
            v4.into()
        }
        4 => {
            let mut v6 = [0u8; 16];
            client.read_exact(&mut v6).await?;
            v6.into()
        }
        3 => {
            let len = client.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            client.read_exact(&mut name).await?;
            if name == b"localhost" {
                [127, 0, 0, 1].into()
            } else {
                return Err(std::io::Error::other(
                    "the test proxy resolves only localhost",
                ));
            }
        }
        _ => return Err(std::io::Error::other("unknown address type")),
    };
    let port = client.read_u16().await?;
    let addr = SocketAddr::new(ip, port);
    loopback(&addr)?;
    let mut upstream = TcpStream::connect(addr).await?;
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
    tunnels.fetch_add(1, Ordering::Relaxed);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
