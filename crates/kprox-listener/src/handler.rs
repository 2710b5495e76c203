//! What serves one request: the seam between the connection code (serve.rs, watch_path.rs),
//! which reads requests off sockets, and kprox's request path (pipeline.rs), which answers them.

use std::future::Future;
use std::net::IpAddr;

use http::{Request, Response};

use crate::body::{IncomingBody, ProxyBody};

/// Handles one request; `client` is the peer IP for TCP connections.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<IncomingBody>,
        client: Option<IpAddr>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
}
