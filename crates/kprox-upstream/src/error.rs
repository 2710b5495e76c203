//! Why a request to the apiservers failed, and whether it was ever sent — the retry logic and
//! the status code the client gets are decided from this, never from error strings.

use std::fmt;

/// The broad cause of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad configuration (a server URL, TLS material).
    Config,
    /// TCP connection refused, unreachable, or reset while connecting.
    Connect,
    /// The TCP connection or TLS handshake took too long.
    ConnectTimeout,
    /// TLS failed, most often the server's certificate could not be verified.
    Tls,
    /// The HTTP connection failed (handshake, reset, GOAWAY, protocol error).
    Protocol,
    /// No endpoint could take the request.
    NoEndpoint,
}

/// Whether the apiserver can have seen any of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Nothing left kprox: always safe to try again elsewhere.
    No,
    /// Bytes may have been written: only idempotent requests may be retried.
    Maybe,
}

/// A failed attempt to reach the apiservers.
#[derive(Clone, Debug)]
pub struct UpstreamError {
    kind: ErrorKind,
    sent: Sent,
    endpoint: Option<String>,
    message: String,
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Some(endpoint) => write!(f, "{endpoint}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl UpstreamError {
    pub(crate) fn new(kind: ErrorKind, sent: Sent, message: impl Into<String>) -> Self {
        Self {
            kind,
            sent,
            endpoint: None,
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, Sent::No, message)
    }

    pub(crate) fn at(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(endpoint.to_owned());
        self
    }

    /// The cause.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the request may have reached the apiserver.
    pub fn sent(&self) -> Sent {
        self.sent
    }

    /// The endpoint involved, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The HTTP status a client should get: 504 for timeouts, 503 when no endpoint is usable,
    /// 502 for everything else that went wrong upstream.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::ConnectTimeout => 504,
            ErrorKind::NoEndpoint => 503,
            _ => 502,
        }
    }
}

/// Describes an error and its causes in one line (hyper and rustls nest the useful part).
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
