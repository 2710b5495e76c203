//! Response bodies of the fake apiserver: whole JSON documents, Kubernetes `Status` errors, and
//! streams fed from a channel (watches, large blobs) that can end in an error to cut the body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Every response body the fake sends.
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A body fed by a channel: each `Ok` is a chunk, an `Err` aborts the body.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl ChannelBody {
    /// A body and the sender that feeds it; dropping the sender ends the body cleanly.
    pub fn channel(depth: usize) -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Body) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, Self { rx }.boxed())
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    json_with_type(status, value, "application/json")
}

/// A JSON response with a specific content type.
pub fn json_with_type(status: StatusCode, value: &Value, content_type: &str) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// The `Status` object the apiserver answers errors with.
pub fn status_object(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    })
}

/// An error response with a `Status` body.
pub fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_object(code, reason, message))
}

/// The `reason` the apiserver uses for a status code.
pub fn reason_for(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "AlreadyExists",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// Whether the client's `Accept` puts protobuf first (kubelets and controllers do; the
/// apiserver answers in the first type it can).
pub fn wants_protobuf(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.trim().starts_with(crate::protobuf::CONTENT_TYPE))
}

pub fn protobuf_response(body: Bytes) -> Response<Body> {
    let mut response = Response::new(crate::body::full(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(crate::protobuf_watch::CONTENT_TYPE),
    );
    response
}

/// A list, sent in one piece or (cut) as half a body followed by a broken connection.
pub fn list_response(value: Value, cut: bool) -> Response<Body> {
    if !cut {
        return json_response(StatusCode::OK, &value);
    }
    let bytes = Bytes::from(value.to_string());
    cut_stream(bytes.slice(..bytes.len() / 2), "application/json")
}

pub fn cut_stream(first: Bytes, content_type: &'static str) -> Response<Body> {
    let (tx, body) = ChannelBody::channel(2);
    tokio::spawn(async move {
        let _ = tx.send(Ok(first)).await;
        // Give the bytes time to leave before the break.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx
            .send(Err(std::io::Error::other("testkit: body cut on purpose")))
            .await;
    });
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
