//! A client request from arrival to answer, top to bottom:
//!
//! 1. normalise the path (ambiguous forms → 400);
//! 2. static files under `--www-prefix`, if configured;
//! 3. the API prefix: outside it → 404, inside it removed (kubectl keeps prefixes that start
//!    with `/api`, and so does kprox);
//! 4. the upgrade gate: only WebSocket and SPDY/3.1 (others → 400);
//! 5. the filters (→ 403 naming the rule);
//! 6. forward, or forward the upgrade.

use std::net::IpAddr;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::client_auth::ClientToken;
use crate::filter::Filter;
use crate::forward::Forwarder;
use crate::normalise::normalise;
use crate::serve::Handler;
use crate::status::status_response;
use crate::upgrade;
use crate::www::StaticFiles;

/// The request pipeline; built once, shared by every connection.
#[derive(Debug)]
pub struct Pipeline {
    client_token: Option<ClientToken>,
    filter: Filter,
    api_prefix: String,
    static_files: Option<StaticFiles>,
    forwarder: Forwarder,
}

impl Pipeline {
    /// `api_prefix` starts and ends with `/`.
    pub fn new(
        filter: Filter,
        api_prefix: String,
        static_files: Option<StaticFiles>,
        forwarder: Forwarder,
    ) -> Self {
        Self {
            client_token: None,
            filter,
            api_prefix,
            static_files,
            forwarder,
        }
    }

    /// Requires clients to present a bearer token (for listeners other machines can reach).
    pub fn with_client_token(mut self, token: ClientToken) -> Self {
        self.client_token = Some(token);
        self
    }

    /// The forwarder (for tunnels and status).
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The path under the API prefix, or `None` when outside it.
    fn strip_prefix<'a>(&self, path: &'a str) -> Option<&'a str> {
        let prefix = self.api_prefix.as_str();
        if prefix == "/" || prefix.starts_with("/api") {
            // kubectl proxy does not strip prefixes that begin with /api.
            return (prefix == "/"
                || path.starts_with(prefix)
                || path == prefix.trim_end_matches('/'))
            .then_some(path);
        }
        let rest = path.strip_prefix(prefix.trim_end_matches('/'))?;
        match rest {
            "" => Some("/"),
            rest if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    }
}

impl Handler for Pipeline {
    async fn handle(
        &self,
        request: Request<Incoming>,
        client: Option<IpAddr>,
    ) -> Response<ProxyBody> {
        // A refused upgrade ends the connection: whatever the client sends next was meant for
        // another protocol and must not be read as HTTP.
        let wants_upgrade = request.headers().contains_key(http::header::UPGRADE);
        let response = self.route(request, client).await;
        if wants_upgrade && response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return crate::forward::closing(response);
        }
        response
    }
}

impl Pipeline {
    async fn route(
        &self,
        mut request: Request<Incoming>,
        client: Option<IpAddr>,
    ) -> Response<ProxyBody> {
        if let Some(token) = &self.client_token
            && let Err(rejection) = token.check_and_strip(request.headers_mut())
        {
            let mut response = status_response(rejection.status, &rejection.message);
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"kprox\""),
            );
            return response;
        }
        let path = match normalise(request.uri().path()) {
            Ok(path) => path,
            Err(why) => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    &format!("kprox refused this request: {why}"),
                );
            }
        };
        if let Some(files) = &self.static_files
            && files.covers(&path)
        {
            return files.serve(request.method(), &path).await;
        }
        let Some(path) = self.strip_prefix(&path) else {
            return status_response(
                StatusCode::NOT_FOUND,
                "the requested path is outside the proxied API prefix",
            );
        };
        let protocol = match upgrade::requested(request.headers()) {
            Ok(protocol) => protocol,
            Err(what) => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "kprox refused this request: {what} is not supported (only websocket and SPDY/3.1)"
                    ),
                );
            }
        };
        let authority = request.uri().authority().map(|a| a.as_str().to_owned());
        if let Err(rejection) = self.filter.check(
            request.method(),
            path,
            request.headers(),
            authority.as_deref(),
            protocol.is_some(),
        ) {
            tracing::debug!(rule = rejection.rule, method = %request.method(), path, "request refused by the filter");
            return status_response(rejection.status, &rejection.message);
        }
        let path = path.to_owned();
        match protocol {
            Some(_) => self.forwarder.forward_upgrade(request, &path, client).await,
            None => self.forwarder.forward(request, &path, client).await,
        }
    }
}
