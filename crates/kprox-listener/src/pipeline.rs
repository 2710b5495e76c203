//! A client request from arrival to answer, top to bottom:
//!
//! 1. client authentication, when the listener requires a token;
//! 2. normalise the path (ambiguous forms → 400);
//! 3. static files under `--www-prefix`, if configured;
//! 4. the API prefix: outside it → 404, inside it removed (kubectl keeps prefixes that start
//!    with `/api`, and so does kprox);
//! 5. the upgrade gate: only WebSocket and SPDY/3.1 (others → 400);
//! 6. the filters (→ 403 naming the rule);
//! 7. forward, or forward the upgrade.
//!
//! Around it, [`Handler::handle`] records metrics and the access log line.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::body::IncomingBody;
use http::{Request, Response, StatusCode};
use kprox_telemetry::Metrics;
use kprox_upstream::Served;

use crate::body::ProxyBody;
use crate::client_auth::ClientToken;
use crate::contexts::{CLUSTERS_SEGMENT, Contexts, Route};
use crate::filter::Filter;
use crate::forward::Forwarder;
use crate::handler::Handler;
use crate::k8s_status::status_response;
use crate::normalise::{RequestPath, normalise};
use crate::observe::{Finish, Observed};
use crate::request_head::HeadLimits;
use crate::upgrade;
use crate::www::StaticFiles;

/// The request pipeline; built once, shared by every connection.
#[derive(Debug)]
pub struct Pipeline {
    client_token: Option<ClientToken>,
    /// Replaced as a whole on a live reload.
    filter: arc_swap::ArcSwap<Filter>,
    api_prefix: String,
    static_files: Option<StaticFiles>,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
    access_log: bool,
    drain: Arc<crate::Drain>,
    head_limits: HeadLimits,
    /// The other contexts served under `/clusters/<context>/` (`--all-contexts`), set once at
    /// start-up (they need the lifecycle, which starts after the pipeline is built).
    contexts: std::sync::OnceLock<Arc<dyn Contexts>>,
}

/// Paths that may name a context.
const CONTEXTS_PREFIX: &str = "/clusters";

/// Request kinds, as metrics index them.
const PLAIN: usize = 0;
const WATCH: usize = 1;
const UPGRADE: usize = 2;

impl Pipeline {
    /// The kind of a request for metrics and load: a watch as the apiserver will see it once
    /// the API prefix is removed (`kprox_upstream::is_watch`, one rule everywhere).
    fn kind_of(&self, request: &Request<IncomingBody>) -> usize {
        if request.headers().contains_key(http::header::UPGRADE) {
            return UPGRADE;
        }
        let uri = request.uri();
        let prefix = self.api_prefix.trim_end_matches('/');
        let mut path = match uri.path().strip_prefix(prefix) {
            Some(rest) if !prefix.is_empty() && !prefix.starts_with("/api") => rest,
            _ => uri.path(),
        };
        // Under /clusters/<context>/, the apiserver sees the rest.
        let context_rest = self
            .contexts
            .get()
            .filter(|_| path.starts_with(CONTEXTS_PREFIX))
            .and_then(|contexts| {
                let judged = normalise(path).ok()?;
                match crate::contexts::route(&judged, &contexts.names()) {
                    Route::Context { rest, .. } => Some(rest.forwarded),
                    _ => None,
                }
            });
        if let Some(rest) = &context_rest {
            path = rest;
        }
        let watch = if path.len() == uri.path().len() {
            kprox_upstream::is_watch(request.method(), uri)
        } else {
            let target = match uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path.to_owned(),
            };
            target
                .parse()
                .is_ok_and(|uri| kprox_upstream::is_watch(request.method(), &uri))
        };
        if watch { WATCH } else { PLAIN }
    }

    /// `api_prefix` starts and ends with `/`; `drain` ends this pipeline's watches at shutdown
    /// (the one the listener's `ServeSettings` carry), so it has no default.
    pub fn new(
        filter: Filter,
        api_prefix: String,
        static_files: Option<StaticFiles>,
        forwarder: Forwarder,
        metrics: Arc<Metrics>,
        drain: Arc<crate::Drain>,
    ) -> Self {
        Self {
            client_token: None,
            filter: arc_swap::ArcSwap::from_pointee(filter),
            api_prefix,
            static_files,
            forwarder,
            metrics,
            access_log: false,
            drain,
            head_limits: HeadLimits::default(),
            contexts: std::sync::OnceLock::new(),
        }
    }

    /// Serves `contexts` under `/clusters/<context>/` besides the current context; once (a
    /// second call is ignored and says so).
    pub fn serve_contexts(&self, contexts: Arc<dyn Contexts>) {
        if self.contexts.set(contexts).is_err() {
            tracing::warn!("the contexts are already served; the second set is ignored");
        }
    }

    /// Requires clients to present a bearer token (for listeners other machines can reach).
    pub fn with_client_token(mut self, token: ClientToken) -> Self {
        self.client_token = Some(token);
        self
    }

    /// Logs one line per request (target `kprox::access`): method, normalised path, status,
    /// apiserver, duration to the response start, attempts. Never headers or bodies.
    pub fn with_access_log(mut self, enabled: bool) -> Self {
        self.access_log = enabled;
        self
    }

    /// Applies new filters to requests from now on (live reload).
    pub fn set_filter(&self, filter: Filter) {
        self.filter.store(Arc::new(filter));
    }

    /// Refuses requests whose headers are over these limits (431).
    pub fn with_head_limits(mut self, limits: HeadLimits) -> Self {
        self.head_limits = limits;
        self
    }

    /// The forwarder (for tunnels and status).
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The path under the API prefix, or `None` when outside it.
    fn strip_prefix(&self, path: &RequestPath) -> Option<RequestPath> {
        let prefix = self.api_prefix.as_str();
        if prefix == "/" || prefix.starts_with("/api") {
            // kubectl proxy does not strip prefixes that begin with /api.
            let judged = path.judged.as_str();
            return (prefix == "/"
                || judged.starts_with(prefix)
                || judged == prefix.trim_end_matches('/'))
            .then(|| path.clone());
        }
        path.strip_prefix(prefix)
    }

    fn refuse(&self, rule: &str, status: StatusCode, message: &str) -> Response<ProxyBody> {
        self.metrics.rejected(rule);
        status_response(status, message)
    }

    async fn route(
        &self,
        mut request: Request<IncomingBody>,
        path: Result<RequestPath, String>,
        client: Option<IpAddr>,
    ) -> Response<ProxyBody> {
        if let Some(token) = &self.client_token
            && let Err(rejection) = token.check_and_strip(request.headers_mut())
        {
            let mut response = self.refuse(rejection.rule, rejection.status, &rejection.message);
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"kprox\""),
            );
            return response;
        }
        let path = match path {
            Ok(path) => path,
            Err(why) => {
                return self.refuse(
                    "path",
                    StatusCode::BAD_REQUEST,
                    &format!("kprox refused this request: {why}"),
                );
            }
        };
        if let Some(files) = &self.static_files
            && files.covers(&path.judged)
        {
            // Boxed, like the upgrade below: the common path's future stays small (see handle).
            return Box::pin(files.serve(request.method(), &path)).await;
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
                return self.refuse("upgrade", StatusCode::BAD_REQUEST, &format!("kprox refused this request: {what} is not supported (only websocket and SPDY/3.1)"));
            }
        };
        let (forwarder, path) = match self.context_of(path).await {
            Ok(routed) => routed,
            Err(refused) => return refused,
        };
        let authority = request.uri().authority().map(|a| a.as_str().to_owned());
        if let Err(rejection) = self.filter.load().check(
            request.method(),
            &path.judged,
            request.headers(),
            authority.as_deref(),
            protocol.is_some(),
        ) {
            tracing::debug!(rule = rejection.rule, method = %request.method(), path = path.judged, "request refused by the filter");
            return self.refuse(rejection.rule, rejection.status, &rejection.message);
        }
        let path = path.forwarded;
        match protocol {
            Some(_) => Box::pin(forwarder.forward_upgrade(request, &path, client)).await,
            None => forwarder.forward(request, &path, client).await,
        }
    }

    /// The forwarder for `path` and the path it gets: the current context's, or — under
    /// `/clusters/<context>/` with `--all-contexts` — that context's, with the rest of the path
    /// (404 naming the contexts when the name is not one of them).
    async fn context_of(
        &self,
        path: RequestPath,
    ) -> Result<(std::borrow::Cow<'_, Forwarder>, RequestPath), Response<ProxyBody>> {
        let Some(contexts) = self
            .contexts
            .get()
            .filter(|_| path.judged.starts_with(CONTEXTS_PREFIX))
        else {
            return Ok((std::borrow::Cow::Borrowed(&self.forwarder), path));
        };
        let names = contexts.names();
        match crate::contexts::route(&path, &names) {
            Route::Current => Ok((std::borrow::Cow::Borrowed(&self.forwarder), path)),
            Route::Unknown => Err(status_response(
                StatusCode::NOT_FOUND,
                &format!(
                    "kprox serves no such context under /{CLUSTERS_SEGMENT}/: the kubeconfig's contexts are {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            )),
            Route::Context { name, rest } => match contexts.forwarder(&name).await {
                Ok(forwarder) => Ok((std::borrow::Cow::Owned(forwarder), rest)),
                Err(refusal) => Err(status_response(refusal.status, &refusal.message)),
            },
        }
    }
}

impl Handler for Pipeline {
    async fn handle(
        &self,
        request: Request<IncomingBody>,
        client: Option<IpAddr>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = request.method().clone();
        let kind = self.kind_of(&request);
        let path = normalise(request.uri().path()).map_err(|why| why.to_string());
        let logged_path = path
            .as_ref()
            .map_or_else(|_| "(refused)".to_owned(), |p| p.judged.clone());
        self.metrics.in_flight().inc();

        let mut response = match self.head_limits.check(&request) {
            // Boxed: the routing future (about 12 KiB of nested state) is freed once the
            // response head is back, instead of staying inside the connection for as long as
            // a watch streams. hyper keeps a connection's service future allocated for the
            // connection's life, so this is the difference between ~13 KiB and a few hundred
            // bytes per open watch.
            Ok(()) => Box::pin(self.route(request, path, client)).await,
            Err(why) => crate::forward::closing(self.refuse(
                "headers",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &format!("kprox refused this request: {why}"),
            )),
        };
        // A refused upgrade ends the connection: whatever the client sends next was meant for
        // another protocol and must not be read as HTTP.
        if kind == UPGRADE && response.status() != StatusCode::SWITCHING_PROTOCOLS {
            response = crate::forward::closing(response);
        }

        let status = response.status();
        let served = response.extensions().get::<Served>().cloned();
        self.metrics.request(
            &method,
            status.as_u16(),
            served.as_ref().map(|s| &*s.requests),
        );
        let to_headers = started.elapsed();
        if kind == PLAIN
            && let Some(served) = &served
        {
            served.requests.observe_response(to_headers.as_secs_f64());
        }
        if self.access_log {
            let endpoint = served
                .as_ref()
                .map_or(kprox_telemetry::NO_ENDPOINT, |s| s.endpoint.as_ref());
            tracing::info!(
                target: "kprox::access",
                method = %method, path = %logged_path, status = status.as_u16(), endpoint,
                duration_ms = to_headers.as_secs_f64() * 1000.0,
                attempts = served.as_ref().map_or(0, |s| s.attempts),
            );
        }
        let finish = match kind {
            WATCH if status == StatusCode::OK => {
                self.metrics.duration(WATCH, to_headers.as_secs_f64());
                self.metrics.in_flight().dec();
                self.metrics.watches_open().inc();
                Finish::Watch
            }
            UPGRADE => {
                self.metrics.duration(UPGRADE, to_headers.as_secs_f64());
                self.metrics.in_flight().dec();
                Finish::Nothing
            }
            _ => Finish::Plain,
        };
        response
            .map(|body| Observed::wrap(body, self.metrics.clone(), started, finish, &self.drain))
    }
}
