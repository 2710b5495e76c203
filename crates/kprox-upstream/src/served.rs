//! Which apiserver answered a response: a response extension read by metrics, the access log
//! and watch resume (which avoids a lagging replica on its next try).

use std::sync::Arc;

/// Which apiserver answered a request and after how many attempts; put in the response's
/// extensions for metrics and the access log.
#[derive(Clone, Debug)]
pub struct Served {
    /// The URL of the endpoint that answered.
    pub endpoint: Arc<str>,
    /// Its request counters, resolved when it joined.
    pub requests: Arc<kprox_telemetry::EndpointRequests>,
    /// Attempts made, the successful one included.
    pub attempts: u32,
}
