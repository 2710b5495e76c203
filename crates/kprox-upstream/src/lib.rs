//! kprox-upstream: everything between kprox and the apiservers.
//!
//! [`Upstream`] owns the endpoints ([`Endpoint`]), one connection set per endpoint (pooled
//! HTTP/2 with stream accounting, HTTP/1.1 reuse), the TLS configuration ([`TlsSettings`]) and
//! the choice of endpoint; [`UpstreamError`] says what failed and whether the request was sent.
//! It knows nothing of credentials or clients: requests arrive ready to go.

pub mod balancer;
mod body;
mod connect;
mod discovery;
mod endpoint;
mod error;
mod health;
mod passthrough;
mod passthrough_stats;
mod pool;
mod proxy;
mod retry;
mod served;
mod stream_limit;
mod tls;
mod upstream;
mod watch;
mod watch_event;
mod watch_protobuf;
pub mod watch_request;
pub mod worker;

pub use balancer::Policy;
pub use body::ResponseBody;
pub use connect::ConnectSettings;
pub use endpoint::Endpoint;
pub use error::{ErrorKind, Sent, UpstreamError};
pub use health::{Health, HealthSettings, Signal, State as HealthState};
pub use passthrough::{PassthroughConnection, PassthroughLease};
pub use passthrough_stats::{PassthroughCounts, PassthroughStats};
pub use proxy::ProxySettings;
pub use retry::RetrySettings;
pub use served::Served;
pub use tls::TlsSettings;
pub use upstream::{
    Authorize, EndpointView, HealthChange, PoolSettings, RetryCounts, Upstream, UpstreamParts,
    UpstreamSettings,
};
pub use watch_request::is_watch;

/// Errors a request body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request sent upstream: the client's body, streamed.
pub type RequestBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
