//! exec, attach and port-forward, as a kubelet would answer them behind the apiserver.
//!
//! exec and attach speak the `v5.channel.k8s.io` / `v4.channel.k8s.io` WebSocket protocols and
//! the `v4.channel.k8s.io` SPDY/3.1 fallback; port-forward speaks `portforward.k8s.io` over
//! SPDY/3.1, directly or tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`). The "container"
//! is an echo: `cat` (and attach) copies stdin to stdout, `echo ARGS` prints its arguments, any
//! other command prints what it would have run; a forwarded port echoes what it receives.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::body::{Body, full, status_response};
use crate::spdy::{self, Event};
use crate::store::{Resource, Store};

/// Which streaming subresource a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

/// `/api/v1/namespaces/{ns}/pods/{name}/{exec|attach|portforward}` → its parts.
pub fn parse(path: &str) -> Option<(String, String, Kind)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [ns, "pods", name, sub] => {
            let kind = match *sub {
                "exec" => Kind::Exec,
                "attach" => Kind::Attach,
                "portforward" => Kind::PortForward,
                _ => return None,
            };
            Some(((*ns).to_owned(), (*name).to_owned(), kind))
        }
        _ => None,
    }
}

/// What the fake container does for an exec.
#[derive(Clone, Debug)]
enum Program {
    /// Copies stdin to stdout until stdin ends.
    Cat,
    /// Prints this text and exits.
    Print(String),
}

fn program(kind: Kind, query: &str) -> Program {
    let command: Vec<String> = crate::query::values(query, "command");
    match (kind, command.first().map(String::as_str)) {
        (Kind::Attach, _) | (_, Some("cat")) => Program::Cat,
        (_, Some("echo")) => Program::Print(format!("{}\n", command[1..].join(" "))),
        _ => Program::Print(format!("fake container ran: {}\n", command.join(" "))),
    }
}

fn flag(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair == format!("{name}=true") || pair == format!("{name}=1"))
}

const SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;

/// Answers a streaming request: `101` and a task serving the session, or an error status.
pub fn handle(
    store: &Store,
    mut request: Request<Incoming>,
    namespace: &str,
    pod: &str,
    kind: Kind,
) -> Response<Body> {
    if store.get(Resource::PODS, namespace, pod).is_err() {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{pod}\" not found"),
        );
    }
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let offered: Vec<String> = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .chain(
            request
                .headers()
                .get_all("x-stream-protocol-version")
                .iter(),
        )
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let on_upgrade = hyper::upgrade::on(&mut request);

    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));

    if upgrade == "websocket" {
        let chosen = match kind {
            Kind::PortForward => ["SPDY/3.1+portforward.k8s.io"]
                .into_iter()
                .find(|p| offered.iter().any(|o| o == p)),
            _ => ["v5.channel.k8s.io", "v4.channel.k8s.io"]
                .into_iter()
                .find(|p| offered.iter().any(|o| o == p)),
        };
        let Some(chosen) = chosen else {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "no supported WebSocket subprotocol offered",
            );
        };
        let Some(key) = request.headers().get("sec-websocket-key") else {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "missing Sec-WebSocket-Key",
            );
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("sec-websocket-protocol", HeaderValue::from_static(chosen));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert("sec-websocket-accept", accept);
        }
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            match kind {
                Kind::PortForward => {
                    let (ours, theirs) = tokio::io::duplex(256 * 1024);
                    tokio::join!(bridge(ws, theirs), spdy_port_forward(ours));
                }
                _ => ws_exec(ws, program(kind, &query), chosen == "v5.channel.k8s.io").await,
            }
        });
        return response;
    }
    if upgrade == "spdy/3.1" {
        let chosen = match kind {
            Kind::PortForward => "portforward.k8s.io",
            _ => "v4.channel.k8s.io",
        };
        if !offered.iter().any(|o| o == chosen) {
            return status_response(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!("the {chosen} stream protocol was not offered"),
            );
        }
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        headers.insert(
            "x-stream-protocol-version",
            HeaderValue::from_static(chosen),
        );
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let io = TokioIo::new(upgraded);
            match kind {
                Kind::PortForward => spdy_port_forward(io).await,
                _ => {
                    let streams = 1
                        + usize::from(flag(&query, "stdin"))
                        + usize::from(flag(&query, "stdout"))
                        + usize::from(flag(&query, "stderr"))
                        + usize::from(flag(&query, "tty"));
                    spdy_exec(io, program(kind, &query), streams).await;
                }
            }
        });
        return response;
    }
    status_response(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "Upgrade request required",
    )
}

async fn ws_exec(ws: WebSocketStream<TokioIo<Upgraded>>, program: Program, v5: bool) {
    let (mut sink, mut stream) = ws.split();
    let stdout = |data: &[u8]| {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(1u8);
        frame.extend_from_slice(data);
        Message::Binary(frame.into())
    };
    match program {
        Program::Print(text) => {
            let _ = sink.send(stdout(text.as_bytes())).await;
        }
        Program::Cat => {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Binary(data) => match data.first() {
                        Some(0) if sink.send(stdout(&data[1..])).await.is_err() => return,
                        // v5: the client closed stdin.
                        Some(255) if v5 && data.get(1) == Some(&0) => break,
                        _ => {}
                    },
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        }
    }
    let mut status = vec![3u8];
    status.extend_from_slice(SUCCESS.as_bytes());
    let _ = sink.send(Message::Binary(status.into())).await;
    let _ = sink.send(normal_close()).await;
    // Let the client read the close before the socket goes.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

async fn spdy_exec<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    program: Program,
    expected_streams: usize,
) {
    let (read, write) = tokio::io::split(io);
    let (mut reader, mut writer) = spdy::session(read, write);
    let mut streams: HashMap<String, u32> = HashMap::new();
    while streams.len() < expected_streams {
        match reader.next().await {
            Event::Open { id, headers, .. } => {
                if writer.reply(id).await.is_err() {
                    return;
                }
                streams.insert(headers.get("streamtype").cloned().unwrap_or_default(), id);
            }
            Event::Data { id: 0, data, .. } => {
                let _ = writer.pong(&data).await;
            }
            Event::End => return,
            _ => {}
        }
    }
    let stdout = streams.get("stdout").copied();
    match program {
        Program::Print(text) => {
            if let Some(id) = stdout {
                let _ = writer.data(id, text.as_bytes(), false).await;
            }
        }
        Program::Cat => {
            let stdin = streams.get("stdin").copied();
            loop {
                match reader.next().await {
                    Event::Data { id: 0, data, .. } => {
                        let _ = writer.pong(&data).await;
                    }
                    Event::Data { id, data, fin } if Some(id) == stdin => {
                        if let Some(out) = stdout
                            && !data.is_empty()
                        {
                            let _ = writer.data(out, &data, false).await;
                        }
                        if fin {
                            break;
                        }
                    }
                    Event::End => return,
                    _ => {}
                }
            }
        }
    }
    if let Some(&id) = streams.get("error") {
        let _ = writer.data(id, SUCCESS.as_bytes(), true).await;
    }
    for name in ["stdout", "stderr"] {
        if let Some(&id) = streams.get(name) {
            let _ = writer.data(id, &[], true).await;
        }
    }
    // The client closes the connection once it has read the status.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Event::End = reader.next().await {
                return;
            }
        }
    })
    .await;
    let _ = writer.goaway(0).await;
}

async fn spdy_port_forward<IO: AsyncRead + AsyncWrite + Unpin>(io: IO) {
    let (read, write) = tokio::io::split(io);
    let (mut reader, mut writer) = spdy::session(read, write);
    // requestid → error stream, data streams → requestid
    let mut errors: HashMap<String, u32> = HashMap::new();
    let mut data_streams: HashMap<u32, String> = HashMap::new();
    loop {
        match reader.next().await {
            Event::Open { id, headers, .. } => {
                if writer.reply(id).await.is_err() {
                    return;
                }
                let request = headers.get("requestid").cloned().unwrap_or_default();
                match headers.get("streamtype").map(String::as_str) {
                    Some("error") => {
                        errors.insert(request, id);
                    }
                    Some("data") => {
                        data_streams.insert(id, request);
                    }
                    _ => {}
                }
            }
            Event::Data { id: 0, data, .. } => {
                let _ = writer.pong(&data).await;
            }
            Event::Data { id, data, fin } => {
                if let Some(request) = data_streams.get(&id).cloned() {
                    // The "container port" echoes.
                    if writer.data(id, &data, fin).await.is_err() {
                        return;
                    }
                    if fin {
                        data_streams.remove(&id);
                        if let Some(error) = errors.remove(&request) {
                            let _ = writer.data(error, &[], true).await;
                        }
                    }
                }
            }
            Event::Reset { id } => {
                data_streams.remove(&id);
            }
            Event::End => return,
        }
    }
}

/// Carries a byte stream inside WebSocket binary messages (port-forward's SPDY tunnel).
async fn bridge<IO: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<TokioIo<Upgraded>>,
    io: IO,
) {
    let (mut sink, mut stream) = ws.split();
    let (mut read, mut write) = tokio::io::split(io);
    let inbound = async {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(data) if write.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = write.shutdown().await;
    };
    let outbound = async {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buffer[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(normal_close()).await;
    };
    tokio::join!(inbound, outbound);
}

/// A close frame with status 1000: clients read it as a clean end of every channel.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}
