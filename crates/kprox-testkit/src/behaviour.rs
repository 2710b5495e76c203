//! Faults the fake apiserver can be switched into at run time, to test failover and retries.

use std::time::Duration;

/// How the fake apiserver treats connections and requests from now on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves normally.
    #[default]
    Healthy,
    /// Closes its listening socket and every open connection: new connections are refused.
    Refuse,
    /// Accepts connections but never answers anything on them, not even the TLS handshake.
    Blackhole,
    /// Waits this long before answering each request.
    Slow(Duration),
    /// Answers every request with this status and a `Status` body.
    Status(u16),
    /// Sends response headers and half the body, then breaks the connection.
    CloseMidBody,
    /// Up and serving, but not ready: `/readyz` fails (as while its informers sync or etcd is
    /// unreachable) and every other request is served. It still accepts TCP, which is all a
    /// TCP health check (KubePrism's, the k3s agent's) looks at.
    Unready,
    /// Shutting down as the apiserver does with `--shutdown-send-retry-after`: `/readyz` fails
    /// and every other request gets 429 with `Retry-After: 5` and `Connection: close` (over
    /// HTTP/2, the connection is sent GOAWAY instead, as Go's server does); requests already
    /// in flight finish.
    Draining,
}
