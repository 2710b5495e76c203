//! TCP pass-through (node-local mode): a client connection is spliced to an apiserver chosen
//! like any request's — healthy by kprox's own `/readyz` checks, by the configured policy over
//! the open pass-through connections — and TLS is left to the two ends, so a kubelet's client
//! certificate reaches the apiserver. A failed connect moves on to the next apiserver before
//! the client has sent a byte (nothing has been read from it yet).

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::balancer::LoadGuard;
use crate::health::Signal;
use crate::passthrough_stats::PassthroughStats;
use crate::upstream::{EndpointState, Upstream};
use crate::{ErrorKind, Sent, UpstreamError};

/// A TCP connection to an apiserver for one client connection.
#[derive(Debug)]
pub struct PassthroughConnection {
    pub stream: TcpStream,
    pub lease: PassthroughLease,
}

/// What a pass-through connection holds of its apiserver while it lives.
#[derive(Debug)]
pub struct PassthroughLease {
    /// The apiserver's URL.
    pub url: Arc<str>,
    /// Where the splice counts its bytes.
    pub stats: Arc<PassthroughStats>,
    endpoint: Arc<EndpointState>,
    /// The connection counts as the endpoint's pass-through load while it lives.
    _open: LoadGuard,
}

impl PassthroughLease {
    /// Resolves when the apiserver is taken out of rotation (at once if it already is).
    pub async fn ejected(&self) {
        loop {
            let notified = self.endpoint.ejected.notified();
            tokio::pin!(notified);
            // Registered before the check, so an ejection between the two is not missed.
            notified.as_mut().enable();
            if !self.endpoint.health.is_up() {
                return;
            }
            notified.await;
        }
    }
}

impl Upstream {
    /// Connects to the apiserver a new pass-through connection should use: the healthy ones
    /// in the policy's order (all of them when none is healthy), the next one on a failed
    /// connect.
    pub async fn connect_passthrough(&self) -> Result<PassthroughConnection, UpstreamError> {
        let endpoints = self.endpoint_set();
        let mut last_error = None;
        for index in self.order_by(&endpoints, |e| &e.passthrough.load) {
            let Some(endpoint) = endpoints.get(index) else {
                continue;
            };
            let open = endpoint.passthrough.load.start();
            match self.connector().tcp(endpoint.pool.endpoint()).await {
                Ok(stream) => {
                    open.headers_arrived();
                    endpoint.passthrough.opened();
                    return Ok(PassthroughConnection {
                        stream,
                        lease: PassthroughLease {
                            url: endpoint.url.clone(),
                            stats: endpoint.passthrough.clone(),
                            endpoint: endpoint.clone(),
                            _open: open,
                        },
                    });
                }
                Err(error) => {
                    endpoint.passthrough.failed();
                    self.note_error(endpoint, &error);
                    self.record(endpoint, Signal::ConnectFailed);
                    tracing::debug!(%error, "pass-through connect failed; trying the next apiserver");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            UpstreamError::new(
                ErrorKind::Connect,
                Sent::No,
                "no apiserver to connect to".to_owned(),
            )
        }))
    }
}
