//! The body type of every response kprox sends to clients: streamed from the apiserver, or a
//! small error or static document.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Errors a response body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response to a client.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A client's request body: hyper's, or none for a request kprox read itself (a watch; see
/// `watch_path.rs`).
#[derive(Debug)]
pub struct IncomingBody(Option<hyper::body::Incoming>);

impl IncomingBody {
    /// No body at all.
    pub fn empty() -> Self {
        Self(None)
    }
}

impl From<hyper::body::Incoming> for IncomingBody {
    fn from(body: hyper::body::Incoming) -> Self {
        Self(Some(body))
    }
}

impl http_body::Body for IncomingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match &mut self.0 {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            http_body::Body::size_hint,
        )
    }
}
