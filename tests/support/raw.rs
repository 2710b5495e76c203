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
        header_in(&self.head, name)
    }

    pub fn status_reason(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// The first value of header `name` in a response head.
fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
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

/// Reads a response's status line and headers off a kept-open connection, byte by byte so
/// nothing after them is taken; what arrived if the connection ends first.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

pub async fn exchange_async(address: &str, request: String) -> Raw {
    let address = address.to_owned();
    tokio::task::spawn_blocking(move || exchange(&address, request.as_bytes()))
        .await
        .expect("exchange")
}

/// One response read off a kept-open connection: the head (without its blank line), the body
/// with any chunked framing removed, and the size of every chunk (the final empty one
/// included) when it was chunked.
#[derive(Debug)]
pub struct Framed {
    pub head: String,
    pub body: Vec<u8>,
    pub chunks: Vec<usize>,
}

impl Framed {
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.head, name)
    }
}

/// Reads exactly one response from `reader`, framed by `Content-Length` or chunked encoding,
/// and leaves the reader at the first byte after it.
pub fn read_framed(reader: &mut impl std::io::BufRead) -> Framed {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a response head line");
        assert!(
            !line.is_empty(),
            "connection closed inside a head: {head:?}"
        );
        if line == "\r\n" {
            break;
        }
        assert!(line.ends_with("\r\n"), "a head line without CRLF: {line:?}");
        head.push_str(&line);
    }
    let mut framed = Framed {
        head,
        body: Vec::new(),
        chunks: Vec::new(),
    };
    if framed
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).expect("a chunk size line");
            let size = usize::from_str_radix(size.trim_end_matches("\r\n"), 16)
                .unwrap_or_else(|_| panic!("a bad chunk size line {size:?}"));
            framed.chunks.push(size);
            let mut data = vec![0; size + 2];
            reader.read_exact(&mut data).expect("a chunk");
            assert!(data.ends_with(b"\r\n"), "a chunk not ended by CRLF");
            data.truncate(size);
            framed.body.extend_from_slice(&data);
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = framed.header("content-length") {
        let length: usize = length.parse().expect("a numeric Content-Length");
        framed.body = vec![0; length];
        reader.read_exact(&mut framed.body).expect("the body");
    }
    framed
}
