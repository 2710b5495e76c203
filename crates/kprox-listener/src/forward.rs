//! The request path from a client to the apiserver and back, top to bottom: prefix → sanitise →
//! authenticate → send → stream back. Filters run before this (see `serve.rs`).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use kprox_auth::{Credentials, inject};
use kprox_upstream::{BoxError, Upstream};

use crate::body::ProxyBody;
use crate::status::status_response;
use crate::{hop_by_hop, sanitise};

/// How requests are rewritten on their way upstream.
#[derive(Clone, Debug)]
pub struct ForwardSettings {
    /// Only paths under this prefix are proxied, with the prefix removed. Starts and ends with
    /// `/`; `/` proxies everything.
    pub api_prefix: String,
    /// Prepended to every forwarded path (`--append-server-path`); empty for none.
    pub server_path: String,
    /// Forward the client's `Authorization` / `Impersonate-*` instead of removing them.
    pub pass_client_credentials: bool,
}

/// Forwards requests to the upstream with kprox's credentials.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstream: Arc<Upstream>,
    credentials: Credentials,
    settings: Arc<ForwardSettings>,
}

impl Forwarder {
    /// A forwarder over `upstream` using `credentials`.
    pub fn new(
        upstream: Arc<Upstream>,
        credentials: Credentials,
        settings: ForwardSettings,
    ) -> Self {
        Self {
            upstream,
            credentials,
            settings: Arc::new(settings),
        }
    }

    /// Forwards one request from `client` and returns the apiserver's response, or a `Status`
    /// error when it cannot be had.
    pub async fn forward(
        &self,
        request: Request<Incoming>,
        client: Option<IpAddr>,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();

        let Some(path_and_query) = self.upstream_target(&parts.uri) else {
            return status_response(
                StatusCode::NOT_FOUND,
                "the requested path is outside the proxied API prefix",
            );
        };
        parts.uri = Uri::from(path_and_query);

        hop_by_hop::strip(&mut parts.headers);
        if !self.settings.pass_client_credentials {
            sanitise::strip_client_credentials(&mut parts.headers);
        }
        if let Some(ip) = client {
            append_forwarded_for(&mut parts.headers, ip);
        }
        // kprox's credentials go on last, after everything a client could use to remove them.
        inject(&mut parts.headers, &self.credentials.snapshot());
        // The upstream chooses HTTP/2 or HTTP/1.1 per connection and sets Host / :authority.
        parts.version = http::Version::HTTP_11;

        let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
        let request = Request::from_parts(parts, body);
        match self.upstream.send(request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                hop_by_hop::strip(&mut parts.headers);
                Response::from_parts(
                    parts,
                    body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
                )
            }
            Err(error) => {
                let code =
                    StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
                status_response(
                    code,
                    &format!("kprox could not reach the apiserver: {error}"),
                )
            }
        }
    }

    /// The path and query to send upstream: the API prefix removed (None when the path is
    /// outside it), the server path prepended, the query kept byte for byte.
    fn upstream_target(&self, uri: &Uri) -> Option<PathAndQuery> {
        let path = uri.path();
        let prefix = self.settings.api_prefix.as_str();
        let rest = if prefix == "/" {
            path
        } else if let Some(rest) = path.strip_prefix(prefix.trim_end_matches('/')) {
            // `/api-prefix` alone or followed by `/`; `/api-prefixed` is not under it.
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        } else {
            return None;
        };
        let rest = if rest.is_empty() { "/" } else { rest };
        let mut target = String::with_capacity(
            self.settings.server_path.len() + rest.len() + uri.query().map_or(0, |q| q.len() + 1),
        );
        target.push_str(&self.settings.server_path);
        target.push_str(rest);
        if let Some(query) = uri.query() {
            target.push('?');
            target.push_str(query);
        }
        PathAndQuery::from_maybe_shared(Bytes::from(target)).ok()
    }
}

fn append_forwarded_for(headers: &mut http::HeaderMap, ip: IpAddr) {
    let ip = ip.to_string();
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {ip}"),
        _ => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", value);
    }
}
