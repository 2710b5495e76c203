//! Reaching the apiservers through the kubeconfig cluster's `proxy-url`: an HTTP proxy
//! (`CONNECT host:port`) or a SOCKS5 proxy, optionally with a user and password in the URL.
//! TLS to the apiserver then runs inside the tunnel, end to end.

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::UpstreamError;
use crate::error::{ErrorKind, Sent};

/// A proxy to tunnel through.
#[derive(Clone)]
pub struct ProxySettings {
    kind: Kind,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("ProxySettings")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http,
    Socks5,
}

impl ProxySettings {
    /// Parses `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port`.
    pub fn parse(text: &str) -> Result<Self, UpstreamError> {
        let invalid =
            |why: &str| UpstreamError::config(format!("proxy-url `{}`: {why}", redact(text)));
        let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        let kind = match url.scheme() {
            "http" => Kind::Http,
            "socks5" | "socks5h" => Kind::Socks5,
            "https" => {
                return Err(invalid(
                    "https proxies are not supported; fix: use http:// or socks5://",
                ));
            }
            _ => return Err(invalid("the scheme must be http or socks5")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url
            .port()
            .unwrap_or(if kind == Kind::Http { 80 } else { 1080 });
        let credentials = (!url.username().is_empty()).then(|| {
            (
                url.username().to_owned(),
                url.password().unwrap_or_default().to_owned(),
            )
        });
        Ok(Self {
            kind,
            host,
            port,
            credentials,
        })
    }

    /// Opens a TCP tunnel to `host:port` through the proxy.
    pub(crate) async fn tunnel(&self, host: &str, port: u16) -> Result<TcpStream, UpstreamError> {
        let failed = |why: String| {
            UpstreamError::new(
                ErrorKind::Connect,
                Sent::No,
                format!("through the proxy {}:{}: {why}", self.host, self.port),
            )
        };
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| failed(format!("cannot connect: {e}")))?;
        match self.kind {
            Kind::Http => self
                .http_connect(&mut stream, host, port)
                .await
                .map_err(failed)?,
            Kind::Socks5 => self
                .socks5_connect(&mut stream, host, port)
                .await
                .map_err(failed)?,
        }
        Ok(stream)
    }

    async fn http_connect(
        &self,
        stream: &mut TcpStream,
        host: &str,
        port: u16,
    ) -> Result<(), String> {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, password)) = &self.credentials {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // Read the answer's head, byte by byte, so no tunnelled byte is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 {
                return Err("the proxy's answer is too long".to_owned());
            }
            let byte = stream
                .read_u8()
                .await
                .map_err(|e| format!("the proxy closed the connection ({e})"))?;
            head.push(byte);
        }
        let status_line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        match status_line.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') => Ok(()),
            _ => Err(format!("the proxy refused the tunnel: {status_line}")),
        }
    }

    async fn socks5_connect(
        &self,
        stream: &mut TcpStream,
        host: &str,
        port: u16,
    ) -> Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        let method = if self.credentials.is_some() { 2u8 } else { 0u8 };
        stream.write_all(&[5, 1, method]).await.map_err(io)?;
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await.map_err(io)?;
        if choice != [5, method] {
            return Err("the SOCKS5 proxy refused our authentication method".to_owned());
        }
        if let Some((user, password)) = &self.credentials {
            let (user, password) = (user.as_bytes(), password.as_bytes());
            let mut auth = vec![1, u8::try_from(user.len()).map_err(|_| "user too long")?];
            auth.extend_from_slice(user);
            auth.push(u8::try_from(password.len()).map_err(|_| "password too long")?);
            auth.extend_from_slice(password);
            stream.write_all(&auth).await.map_err(io)?;
            let mut answer = [0u8; 2];
            stream.read_exact(&mut answer).await.map_err(io)?;
            if answer[1] != 0 {
                return Err("the SOCKS5 proxy refused the user and password".to_owned());
            }
        }
        let mut request = vec![5, 1, 0];
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => {
                request.push(1);
                request.extend_from_slice(&v4.octets());
            }
            Ok(std::net::IpAddr::V6(v6)) => {
                request.push(4);
                request.extend_from_slice(&v6.octets());
            }
            Err(_) => {
                request.push(3);
                request.push(u8::try_from(host.len()).map_err(|_| "host name too long")?);
                request.extend_from_slice(host.as_bytes());
            }
        }
        request.extend_from_slice(&port.to_be_bytes());
        stream.write_all(&request).await.map_err(io)?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await.map_err(io)?;
        if reply[1] != 0 {
            return Err(format!(
                "the SOCKS5 proxy could not connect (reply {})",
                reply[1]
            ));
        }
        let skip = match reply[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => usize::from(stream.read_u8().await.map_err(io)?) + 2,
            other => {
                return Err(format!(
                    "the SOCKS5 proxy answered an unknown address type {other}"
                ));
            }
        };
        let mut rest = vec![0u8; skip];
        stream.read_exact(&mut rest).await.map_err(io)?;
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}
