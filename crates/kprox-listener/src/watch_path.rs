//! A connection whose first request is a watch, answered without hyper's connection buffers.
//!
//! hyper's HTTP/1.1 server keeps an 8 KiB read buffer and an 8 KiB header write buffer for a
//! connection's whole life, and a second read buffer once the first is shared with the request
//! (heaptrack, 3,000 watches: 24 KiB of a watch's ~30 KiB). A watch needs neither: its request
//! has no body, and its answer is a head and then one chunk per event, hours apart.
//!
//! So kprox looks at the first read on a connection before hyper does. When it holds exactly
//! one complete request head and nothing more, and that head is a plain watch — `GET`,
//! HTTP/1.1, one `Host`, no body, no `Expect`, no upgrade, `Connection` at most `keep-alive` or
//! `close` — kprox answers it here: the same [`Handler`] (filters, credentials, metrics, drain),
//! the same [`ClientIo`] (timeouts), and a small HTTP/1.1 writer for the response. Anything
//! else, and any doubt, goes to hyper with the bytes put back in front, so every request is
//! read by exactly one parser (httparse, the one hyper uses) and no two readings of the same
//! bytes can differ. After the watch ends the connection carries on with hyper, unless it is
//! to close.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::body::{IncomingBody, ProxyBody};
use crate::client_io::{ClientIo, ClientSocket, ConnectionState, InFlight};
use crate::handler::Handler;

/// What the first read on a connection held.
pub(crate) enum FirstRead {
    /// The client closed, or the read failed (a timeout, a bare LF): nothing to answer.
    Closed,
    /// A watch request, for [`answer`].
    Watch(Box<Request<IncomingBody>>),
    /// Anything else: the bytes, for hyper.
    Other(Bytes),
}

/// How much of the first request is looked at; a longer head goes to hyper.
const FIRST_READ: usize = 4096;

/// Headers httparse reads into; a request with more goes to hyper.
const MAX_HEADERS: usize = 48;

/// Reads what the client sends first (one read) and decides who answers it.
pub(crate) async fn read_first<T>(io: &mut ClientIo<T>) -> FirstRead
where
    T: AsyncRead + AsyncWrite + ClientSocket + Unpin,
{
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    match io.read_buf(&mut buf).await {
        Ok(0) => FirstRead::Closed,
        Ok(_) => match parse_watch(&buf) {
            Some(request) => FirstRead::Watch(Box::new(request)),
            None => FirstRead::Other(buf.freeze()),
        },
        Err(error) => {
            tracing::debug!(%error, "client connection ended before a request");
            FirstRead::Closed
        }
    }
}

/// The request in `bytes` if they are exactly one plain watch request head; copied out, so the
/// read buffer is freed at once.
fn parse_watch(bytes: &[u8]) -> Option<Request<IncomingBody>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(length) = head.parse(bytes).ok()? else {
        return None;
    };
    if length != bytes.len() || head.method? != "GET" || head.version? != 1 {
        return None;
    }
    let target = head.path?;
    if !target.starts_with('/') {
        return None;
    }
    let uri = Uri::try_from(target).ok()?;
    // Under a non-root API prefix the rule does not match and such watches take the general
    // path, which serves them all the same.
    if !kprox_upstream::is_watch(&http::Method::GET, &uri) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        let plain = match name {
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::EXPECT => false,
            header::UPGRADE | header::TE | header::TRAILER => false,
            header::CONNECTION => connection_option(&value).is_some(),
            header::HOST => !headers.contains_key(header::HOST),
            _ => true,
        };
        if !plain {
            return None;
        }
        headers.append(name, value);
    }
    if !headers.contains_key(header::HOST) {
        return None;
    }
    let mut request = Request::new(IncomingBody::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// `Some(true)` for `Connection: close`, `Some(false)` for `keep-alive`, `None` for anything
/// else (another option names a header as hop-by-hop: hyper's to handle).
fn connection_option(value: &HeaderValue) -> Option<bool> {
    let value = value.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("close") {
        Some(true)
    } else if value.eq_ignore_ascii_case("keep-alive") {
        Some(false)
    } else {
        None
    }
}

/// What [`answer`] did: the whole answer is out, or the head is out and the body is to be
/// [`stream`]ed.
pub(crate) enum Answered {
    /// `Some(bytes)`: the connection carries on, with what the client has sent meanwhile put
    /// back in front for hyper; `None`: it closes.
    Finished(Option<Bytes>),
    Streaming(Streaming),
}

/// A response whose head is written and whose body is still to come.
pub(crate) struct Streaming {
    body: ProxyBody,
    /// The body's length when known (sent as is), or `None` (chunked).
    length: Option<u64>,
    /// The connection closes after this response.
    closes: bool,
    /// The connection is busy (for `ClientIo`'s timeouts) until the body is sent.
    in_flight: InFlight,
    /// Bytes the client sent after its request (a pipelined request), for hyper.
    early: BytesMut,
}

/// Answers a watch request read by [`read_first`] up to its response head. The client going
/// away (end of stream) ends the request upstream too. The head's state is freed before the
/// body streams: a watch holds only [`stream`]'s small state for its hours.
pub(crate) async fn answer<T, H>(
    io: &mut ClientIo<T>,
    state: &Arc<ConnectionState>,
    request: Box<Request<IncomingBody>>,
    handler: &H,
    client: Option<IpAddr>,
) -> io::Result<Answered>
where
    T: AsyncRead + AsyncWrite + ClientSocket + Unpin,
    H: Handler,
{
    let client_closes = request
        .headers()
        .get(header::CONNECTION)
        .and_then(connection_option)
        .unwrap_or(false);
    let in_flight = state.begin();
    // The client is read while it waits, to see it leave (end of stream). Should it send
    // bytes instead (a pipelined request), they are kept for hyper and reading stops there:
    // nothing the client sends is read as anything but the next request.
    let mut early = BytesMut::new();
    let mut scratch = [0u8; 16];

    // Boxed and dropped once the head is back: the handler's state (~1.5 KiB) is not kept
    // for the hours a watch may stream.
    let mut handling = Box::pin(handler.handle(*request, client));
    let response = loop {
        tokio::select! {
            biased;
            response = &mut handling => break response,
            read = io.read(&mut scratch), if early.is_empty() => match read {
                Ok(0) | Err(_) => return Ok(Answered::Finished(None)),
                Ok(n) => early.extend_from_slice(&scratch[..n]),
            },
        }
    };
    drop(handling);
    let (parts, body) = response.into_parts();
    let Some(plan) = Plan::of(&parts, &body, client_closes) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the response has a header that cannot be written",
        ));
    };
    drop(parts);
    let Plan {
        head,
        bodiless,
        length,
        closes,
    } = plan;
    io.write_all(&head).await?;
    io.flush().await?;
    drop(head);
    if bodiless {
        return Ok(Answered::Finished((!closes).then(|| early.freeze())));
    }
    Ok(Answered::Streaming(Streaming {
        body,
        length,
        closes,
        in_flight,
        early,
    }))
}

/// How a response goes out: its head, and how its body is framed.
struct Plan {
    head: Vec<u8>,
    /// No body may follow (1xx, 204, 304).
    bodiless: bool,
    /// The body's length when known (sent as is), or `None` (chunked).
    length: Option<u64>,
    /// The connection closes after this response.
    closes: bool,
}

impl Plan {
    /// `None` if a header cannot be written.
    fn of(parts: &http::response::Parts, body: &ProxyBody, closes: bool) -> Option<Self> {
        let bodiless = parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // A body of known size (a refusal's `Status`) goes out with its length, as hyper does.
        let length = declared.or_else(|| http_body::Body::size_hint(body).exact());
        let closes = closes
            || parts
                .headers
                .get(header::CONNECTION)
                .and_then(connection_option)
                .unwrap_or(false);
        let add_length = length.filter(|_| declared.is_none() && !bodiless);
        let head = response_head(parts.status, &parts.headers, bodiless, add_length, closes)?;
        Some(Self {
            head,
            bodiless,
            length,
            closes,
        })
    }
}

/// Sends the body as it comes, framed by its length or chunked, while watching the client
/// (as [`answer`] does): `Ok(Some(bytes))` when it was sent whole and the connection carries
/// on, with what the client sent meanwhile for hyper.
pub(crate) async fn stream<T>(
    io: &mut ClientIo<T>,
    streaming: Streaming,
) -> io::Result<Option<Bytes>>
where
    T: AsyncRead + AsyncWrite + ClientSocket + Unpin,
{
    let Streaming {
        mut body,
        length,
        closes,
        in_flight,
        mut early,
    } = streaming;
    let mut scratch = [0u8; 16];
    let mut sent: u64 = 0;
    // With a known length the client knows when the answer is complete and may send its next
    // request at once: stop watching it then.
    while length.is_none_or(|length| sent < length) {
        tokio::select! {
            biased;
            frame = body.frame() => match frame {
                None => break,
                // The stream from the apiserver broke: end the connection without the final
                // chunk, so the client sees a cut stream rather than a complete one.
                Some(Err(error)) => {
                    tracing::debug!(%error, "watch stream ended with an error");
                    return Ok(None);
                }
                Some(Ok(frame)) => {
                    let Ok(mut data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if length.is_some() {
                        io.write_all_buf(&mut data).await?;
                    } else {
                        let size = format!("{:x}\r\n", data.len());
                        let mut chunk = Buf::chain(Buf::chain(size.as_bytes(), data), &b"\r\n"[..]);
                        io.write_all_buf(&mut chunk).await?;
                    }
                    io.flush().await?;
                }
            },
            read = io.read(&mut scratch), if early.is_empty() => match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => early.extend_from_slice(&scratch[..n]),
            },
        }
    }
    match length {
        None => {
            io.write_all(b"0\r\n\r\n").await?;
            io.flush().await?;
        }
        // A body shorter or longer than declared leaves the framing unknown: close.
        Some(declared) if declared != sent => return Ok(None),
        Some(_) => {}
    }
    drop(in_flight);
    Ok((!closes).then(|| early.freeze()))
}

/// The status line and header section, with `content-length: add_length` when given and
/// chunked framing when there is a body of unknown length; `None` if a header value holds a byte that would end
/// the line (never from a valid `HeaderValue`, checked anyway: this is what response splitting
/// needs).
fn response_head(
    status: StatusCode,
    headers: &HeaderMap,
    bodiless: bool,
    add_length: Option<u64>,
    closes: bool,
) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if matches!(*name, header::CONNECTION | header::TRANSFER_ENCODING) {
            continue;
        }
        if value
            .as_bytes()
            .iter()
            .any(|&b| b == b'\r' || b == b'\n' || b == 0)
        {
            return None;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(length) = add_length {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    } else if !bodiless && !headers.contains_key(header::CONTENT_LENGTH) {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if closes {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(head: &str) -> Option<Request<IncomingBody>> {
        parse_watch(head.as_bytes())
    }

    #[test]
    fn a_plain_watch_is_taken() {
        let request = watch(
            "GET /api/v1/namespaces/default/pods?watch=true&resourceVersion=5 HTTP/1.1\r\nHost: localhost:8001\r\nAccept: application/json\r\nConnection: keep-alive\r\n\r\n",
        )
        .expect("a watch");
        assert_eq!(
            request.uri(),
            "/api/v1/namespaces/default/pods?watch=true&resourceVersion=5"
        );
        assert_eq!(request.headers()["accept"], "application/json");
        assert_eq!(request.headers().len(), 3);
    }

    #[test]
    fn anything_else_goes_to_hyper() {
        let refused = [
            // not a watch
            "GET /api/v1/pods HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /api/v1/pods?watch=false HTTP/1.1\r\nHost: a\r\n\r\n",
            // not a GET, not HTTP/1.1, not origin-form
            "POST /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /api/v1/pods?watch=1 HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET http://a/api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            // a body, an upgrade, an expectation, hop-by-hop options
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\nConnection: close, x-secret\r\n\r\n",
            // no Host, two Hosts
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nAccept: */*\r\n\r\n",
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            // incomplete, or something after the head
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\n",
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            // malformed
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET /api/v1/pods?watch=1  HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for head in refused {
            assert!(watch(head).is_none(), "taken: {head:?}");
        }
        let many = format!(
            "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X-A: b\r\n".repeat(MAX_HEADERS)
        );
        assert!(watch(&many).is_none(), "too many headers taken");
    }

    #[test]
    fn the_response_head_is_chunked_unless_a_length_is_given() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::DATE,
            HeaderValue::from_static("Mon, 30 Nov 2026 10:00:00 GMT"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        let head = response_head(StatusCode::OK, &headers, false, None, false).expect("a head");
        assert_eq!(
            String::from_utf8(head).expect("text"),
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: Mon, 30 Nov 2026 10:00:00 GMT\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let head =
            response_head(StatusCode::FORBIDDEN, &headers, false, Some(12), true).expect("a head");
        let head = String::from_utf8(head).expect("a head");
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
        assert!(
            head.contains("content-length: 12\r\n") && head.ends_with("connection: close\r\n\r\n")
        );
        assert!(!head.contains("chunked"), "{head}");
    }
}
