//! An apiserver that misbehaves at the byte level: TLS like the real one, but every answer
//! (other than its health checks) is a fixed string of bytes written as they are — a header
//! with a bare CR, a folded line, a second status line. hyper-based servers cannot send such
//! things, which is the point: kprox must refuse them, never relay them.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::TestPki;

/// A TLS server on 127.0.0.1 that answers every request with `answer`, verbatim, and
/// `/readyz`, `/livez`, `/version` properly so that kprox keeps it in rotation.
pub struct RawApiServer {
    addr: SocketAddr,
    pki: Arc<TestPki>,
    task: tokio::task::JoinHandle<()>,
}

impl RawApiServer {
    pub async fn start(answer: Vec<u8>) -> anyhow::Result<Self> {
        let pki = Arc::new(TestPki::new("raw-upstream-ca")?);
        let cert = pki.server_cert(&["127.0.0.1", "localhost"])?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert_der()], cert.key_der())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let answer: Arc<[u8]> = answer.into();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // One request per connection, headers only (the tests send no bodies).
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                        match tls.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let line = String::from_utf8_lossy(&head);
                    let path = line.split_whitespace().nth(1).unwrap_or("/");
                    let healthy = ["/readyz", "/livez", "/healthz", "/version"]
                        .iter()
                        .any(|p| path.starts_with(p));
                    let reply: &[u8] = if healthy {
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    } else {
                        &answer
                    };
                    let _ = tls.write_all(reply).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Ok(Self { addr, pki, task })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that signed its certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.pki.ca_pem()
    }
}

impl std::fmt::Debug for RawApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawApiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for RawApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
