//! Forwarding to the apiserver: sanitise → authenticate → send → stream back, for plain
//! requests and for protocol upgrades. The pipeline (`pipeline.rs`) has already normalised the
//! path, removed the API prefix and applied the filters.

use std::net::IpAddr;
use std::sync::Arc;

use crate::body::IncomingBody;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use kprox_auth::Credentials;
use kprox_upstream::{Upstream, UpstreamError};

use crate::body::ProxyBody;
use crate::k8s_status::status_response;
use crate::request_body::{BodyLimits, LimitedBody, Verdict};
use crate::upgrade::Tunnels;
use crate::{hop_by_hop, sanitise};

/// How requests are rewritten on their way upstream.
#[derive(Clone, Debug)]
pub struct ForwardSettings {
    /// Prepended to every forwarded path (`--append-server-path`); empty for none.
    pub server_path: String,
    /// Whose identity the apiserver sees.
    pub identity: Identity,
    /// The size and time limits on request bodies.
    pub body_limits: BodyLimits,
}

impl ForwardSettings {
    /// Forwarding as `[listen]` and `[filter]` ask; `server_path` is the apiserver URL's path
    /// when `--append-server-path` is on.
    pub fn from_config(
        listen: &kprox_config::ListenConfig,
        filter: &kprox_config::FilterConfig,
        server_path: Option<&str>,
    ) -> Self {
        Self {
            server_path: server_path.unwrap_or_default().to_owned(),
            identity: Identity::from_config(
                listen.client_credentials,
                filter.pass_client_credentials,
            ),
            body_limits: BodyLimits::from(&listen.limits),
        }
    }
}

/// Whose credentials a forwarded request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// kprox's: clients' `Authorization`, `Impersonate-*` and `X-Remote-*` are removed and
    /// kprox's credential added (the default).
    Kprox,
    /// kubectl proxy's behaviour (`--pass-client-credentials`): the client's headers are kept,
    /// and kprox's credential is added only when the client sent no `Authorization`.
    ClientsWhenSent,
    /// Each client's own (`--client-credentials forward`): its `Authorization` is kept,
    /// identity claims (`Impersonate-*`, `X-Remote-*`) removed, and kprox adds nothing, so a
    /// request without credentials arrives anonymous.
    ClientsOnly,
}

impl Identity {
    /// The identity `[listen] client_credentials` and `[filter] pass_client_credentials` ask for.
    pub fn from_config(
        client_credentials: kprox_config::ClientCredentials,
        pass_client_credentials: bool,
    ) -> Self {
        use kprox_config::ClientCredentials;
        match (client_credentials, pass_client_credentials) {
            (ClientCredentials::Forward, _) => Self::ClientsOnly,
            (ClientCredentials::Strip, true) => Self::ClientsWhenSent,
            (ClientCredentials::Strip, false) => Self::Kprox,
        }
    }

    /// Whether kprox's credential goes on a request with these (client) headers.
    fn adds_kproxs(self, headers: &HeaderMap) -> bool {
        match self {
            Self::Kprox => true,
            Self::ClientsWhenSent => !headers.contains_key(header::AUTHORIZATION),
            Self::ClientsOnly => false,
        }
    }
}

/// Forwards requests to the upstream with kprox's credentials.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstream: Arc<Upstream>,
    /// Replaced as a whole on a live reload.
    credentials: Arc<arc_swap::ArcSwap<Credentials>>,
    settings: Arc<ForwardSettings>,
    tunnels: Arc<Tunnels>,
    /// Request body bytes from clients (a cheap clone of the metric's handle).
    request_bytes: kprox_telemetry::IntCounter,
}

impl Forwarder {
    /// A forwarder over `upstream` using `credentials`; upgraded connections join `tunnels`.
    pub fn new(
        upstream: Arc<Upstream>,
        credentials: Arc<arc_swap::ArcSwap<Credentials>>,
        settings: ForwardSettings,
        tunnels: Arc<Tunnels>,
        request_bytes: kprox_telemetry::IntCounter,
    ) -> Self {
        Self {
            upstream,
            credentials,
            settings: Arc::new(settings),
            tunnels,
            request_bytes,
        }
    }

    /// The client's body, streamed, its bytes counted.
    fn counted(&self, body: ClientBody) -> kprox_upstream::RequestBody {
        let counter = self.request_bytes.clone();
        body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counter.inc_by(data.len() as u64);
            }
            frame
        })
        .boxed()
    }

    /// The client's body held to the limits; the verdict says why it failed, if it did.
    fn limited(&self, body: IncomingBody) -> (ClientBody, Arc<Verdict>) {
        LimitedBody::new(body, self.settings.body_limits)
    }

    /// The answer when sending failed: the body's own fault (413, 408) or the upstream's.
    fn failure(&self, error: &UpstreamError, verdict: &Verdict) -> Response<ProxyBody> {
        match verdict.refusal(&self.settings.body_limits) {
            Some((code, message)) => closing(status_response(code, &message)),
            None => upstream_failure(error),
        }
    }

    /// A declared body length over the cap is refused before anything is read or sent.
    fn declared_too_large(&self, headers: &HeaderMap) -> Option<Response<ProxyBody>> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())?;
        (declared > self.settings.body_limits.max_bytes).then(|| {
            let (code, message) = crate::request_body::too_large(&self.settings.body_limits);
            closing(status_response(code, &message))
        })
    }

    /// The credentials in force (replaced by a live reload).
    fn credentials(&self) -> Arc<Credentials> {
        self.credentials.load_full()
    }

    /// The handle a live reload swaps credentials through.
    pub fn credentials_handle(&self) -> Arc<arc_swap::ArcSwap<Credentials>> {
        self.credentials.clone()
    }

    /// The tunnels opened by upgrades.
    pub fn tunnels(&self) -> &Arc<Tunnels> {
        &self.tunnels
    }

    /// Rewrites headers for the apiserver. Order matters: hop-by-hop headers (and whatever
    /// `Connection` names) go first, then client credentials, and kprox's own are added last so
    /// nothing a client sends can remove or replace them.
    fn prepare(&self, headers: &mut HeaderMap, client: Option<IpAddr>) {
        self.prepare_without_credentials(headers, client);
        if self.settings.identity.adds_kproxs(headers) {
            self.credentials().apply(headers);
        }
    }

    /// Everything `prepare` does but adding kprox's credential.
    fn prepare_without_credentials(&self, headers: &mut HeaderMap, client: Option<IpAddr>) {
        hop_by_hop::strip(headers);
        match self.settings.identity {
            Identity::Kprox => sanitise::strip_client_credentials(headers),
            Identity::ClientsWhenSent => {}
            Identity::ClientsOnly => sanitise::strip_identity_claims(headers),
        }
        if let Some(ip) = client {
            append_forwarded_for(headers, ip);
        }
    }

    /// The path and query to send: the server path prepended, the query kept byte for byte.
    fn target(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let mut target = String::with_capacity(
            self.settings.server_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        target.push_str(&self.settings.server_path);
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        PathAndQuery::from_maybe_shared(Bytes::from(target))
            .ok()
            .map(Uri::from)
    }

    /// Forwards one request whose `path` is final (normalised, prefix removed) and returns the
    /// apiserver's response, or a `Status` error when it cannot be had.
    pub async fn forward(
        &self,
        request: Request<IncomingBody>,
        path: &str,
        client: Option<IpAddr>,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        let Some(uri) = self.target(path, parts.uri.query()) else {
            return status_response(
                StatusCode::BAD_REQUEST,
                "the request target cannot be forwarded",
            );
        };
        if let Some(refusal) = self.declared_too_large(&parts.headers) {
            return refusal;
        }
        let (body, verdict) = self.limited(body);
        parts.uri = uri;
        self.prepare_without_credentials(&mut parts.headers, client);
        // The upstream chooses HTTP/2 or HTTP/1.1 per connection and sets Host / :authority.
        parts.version = http::Version::HTTP_11;
        let ours = self.settings.identity.adds_kproxs(&parts.headers);
        // Only a request that carries kprox's credential waits for an expired one's refresh.
        let snapshot = if ours {
            self.credentials().fresh_snapshot().await
        } else {
            self.credentials().snapshot()
        };

        if !(ours && self.credentials().refreshable()) {
            return self
                .send(parts, self.counted(body), &snapshot, ours)
                .await
                .unwrap_or_else(|e| self.failure(&e, &verdict));
        }
        // A refusal of kprox's credential can be answered by refreshing it and sending again,
        // if the body can be sent again: keep small bodies (and the head) for that.
        let bytes = match self.replayable_body(&parts.headers, body, &verdict).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(streaming)) => {
                return self
                    .send(parts, streaming, &snapshot, ours)
                    .await
                    .unwrap_or_else(|e| self.failure(&e, &verdict));
            }
            Err(response) => return response,
        };
        let head = parts;
        let first = match self
            .send(head.clone(), full_body(bytes.clone()), &snapshot, ours)
            .await
        {
            Ok(response) => response,
            Err(error) => return upstream_failure(&error),
        };
        if first.status() != StatusCode::UNAUTHORIZED
            || !self
                .credentials()
                .refresh_after_rejection(snapshot.generation)
                .await
        {
            return first;
        }
        // The client never sees the 401 of a credential kprox could renew.
        drop(first);
        tracing::info!("the apiserver refused kprox's credential; retrying with the refreshed one");
        let renewed = self.credentials().snapshot();
        self.send(head, full_body(bytes), &renewed, ours)
            .await
            .unwrap_or_else(|e| upstream_failure(&e))
    }

    /// The body in memory when it is empty or small enough to send twice; otherwise the
    /// streaming body back (`Ok(Err)`); `Err` when it cannot be read.
    async fn replayable_body(
        &self,
        headers: &HeaderMap,
        body: ClientBody,
        verdict: &Verdict,
    ) -> Result<Result<Bytes, kprox_upstream::RequestBody>, Response<ProxyBody>> {
        if body.is_end_stream() {
            return Ok(Ok(Bytes::new()));
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        match length {
            Some(n) if n <= REPLAY_LIMIT => match http_body_util::Limited::new(body, REPLAY_LIMIT)
                .collect()
                .await
            {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    self.request_bytes.inc_by(bytes.len() as u64);
                    Ok(Ok(bytes))
                }
                Err(_) => Err(match verdict.refusal(&self.settings.body_limits) {
                    Some((code, message)) => closing(status_response(code, &message)),
                    None => status_response(
                        StatusCode::BAD_REQUEST,
                        "the request body could not be read",
                    ),
                }),
            },
            _ => Ok(Err(self.counted(body))),
        }
    }

    /// Adds the credential and sends; hop-by-hop headers are removed from the answer.
    async fn send(
        &self,
        mut parts: http::request::Parts,
        body: kprox_upstream::RequestBody,
        snapshot: &kprox_auth::Snapshot,
        ours: bool,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        if ours {
            self.credentials()
                .apply_snapshot(&mut parts.headers, snapshot);
        }
        let response = self.upstream.send(Request::from_parts(parts, body)).await?;
        let (mut parts, body) = response.into_parts();
        hop_by_hop::strip(&mut parts.headers);
        Ok(Response::from_parts(parts, body.boxed_unsync()))
    }

    /// Forwards an upgrade request on a connection of its own. On `101` the tunnel is started
    /// and the `101` relayed; any other answer is relayed with `Connection: close`, so the
    /// client connection ends with it and nothing pipelined behind the request is read.
    pub async fn forward_upgrade(
        &self,
        mut request: Request<IncomingBody>,
        path: &str,
        client: Option<IpAddr>,
    ) -> Response<ProxyBody> {
        let client_upgrade = hyper::upgrade::on(&mut request);
        let (mut parts, body) = request.into_parts();
        let Some(uri) = self.target(path, parts.uri.query()) else {
            return closing(status_response(
                StatusCode::BAD_REQUEST,
                "the request target cannot be forwarded",
            ));
        };
        parts.uri = uri;
        let upgrade = parts.headers.get(header::UPGRADE).cloned();
        self.prepare(&mut parts.headers, client);
        // Upgrade and Connection are hop-by-hop, but this hop asks for the same upgrade.
        if let Some(upgrade) = upgrade {
            parts.headers.insert(header::UPGRADE, upgrade);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        }
        parts.version = http::Version::HTTP_11;
        let body = self.counted(self.limited(body).0);
        let mut response = match self
            .upstream
            .send_upgrade(Request::from_parts(parts, body))
            .await
        {
            Ok(response) => response,
            Err(error) => return closing(upstream_failure(&error)),
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            self.tunnels.spawn(client_upgrade, upstream_upgrade);
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, crate::body::full(Bytes::new()));
        }
        let (mut parts, body) = response.into_parts();
        hop_by_hop::strip(&mut parts.headers);
        closing(Response::from_parts(parts, body.boxed_unsync()))
    }
}

/// A client's request body under kprox's limits.
type ClientBody = LimitedBody<IncomingBody>;

/// Largest request body kept in memory so that it can be sent again after a credential refresh.
const REPLAY_LIMIT: usize = 64 * 1024;

fn full_body(bytes: Bytes) -> kprox_upstream::RequestBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed()
}

/// Marks a response as the last on its client connection.
pub(crate) fn closing(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn upstream_failure(error: &UpstreamError) -> Response<ProxyBody> {
    let code = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = status_response(
        code,
        &format!("kprox could not reach the apiserver: {error}"),
    );
    if code == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn append_forwarded_for(headers: &mut HeaderMap, ip: IpAddr) {
    let ip = ip.to_string();
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {ip}"),
        _ => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", value);
    }
}
