//! Raw HTTP/1.1 over a plain socket, for requests no well-behaved client would send.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response read off the wire.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
    /// Everything received, for counting pipelined responses.
    pub all: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn status_reason(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Writes `request` as it is and reads until kprox closes the connection (or 5 s pass).
pub fn exchange(address: &str, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let all = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // Bodies here are small; drop chunked framing if any.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines()
            .filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit()) || l.is_empty())
            .collect::<Vec<_>>()
            .join("")
    } else {
        body.to_owned()
    };
    Raw {
        status,
        head: head.to_owned(),
        body,
        all,
    }
}

pub async fn exchange_async(address: &str, request: String) -> Raw {
    let address = address.to_owned();
    tokio::task::spawn_blocking(move || exchange(&address, request.as_bytes()))
        .await
        .expect("exchange")
}
