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
