//! The admin listener: kprox's own `/metrics`, `/livez`, `/readyz`, a status page at `/` and
//! its data as JSON at `/status`. Separate from the proxy port, where those paths belong to the
//! apiserver. Answers only GET and HEAD.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;

pub use crate::history::HealthEvent;
use crate::history::{ChartData, History};
use crate::html::escape;
use crate::{EndpointSnapshot, Metrics, Snapshot};

/// What the admin listener reports, provided by the binary from the live components.
pub trait AdminSource: Send + Sync + 'static {
    /// Values for the metrics kept by other components.
    fn snapshot(&self) -> Snapshot;
    /// The status page's content.
    fn admin_status(&self) -> AdminStatus;
    /// `Ok` when kprox can serve: an apiserver in rotation and usable credentials.
    fn ready(&self) -> Result<(), String>;
}

/// The status page's data (also served as JSON at `/status`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AdminStatus {
    pub version: String,
    pub listening_on: String,
    pub uptime_seconds: u64,
    pub requests_total: u64,
    pub requests_per_second: f64,
    pub watches_open: i64,
    pub tunnels_open: u64,
    pub credential: CredentialStatus,
    pub endpoints: Vec<EndpointSnapshot>,
    /// Newest first.
    pub recent_events: Vec<HealthEvent>,
    /// The kubeconfig's contexts, with `--all-contexts`; empty without.
    pub contexts: Vec<ContextStatus>,
    /// The last minutes, as the page's charts draw them.
    pub charts: ChartData,
}

/// One kubeconfig context served under `/clusters/<context>/`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ContextStatus {
    pub name: String,
    /// `current` (also served without the prefix), `not used yet`, `serving`, or `failed: …`.
    pub state: String,
    /// Apiservers in rotation, of those it has (0 of 0 until it is used).
    pub apiservers_up: usize,
    pub apiservers: usize,
    /// Requests under its prefix.
    pub requests: u64,
}

/// Where credentials come from; never their value.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CredentialStatus {
    pub source: String,
    pub expiry: String,
}

struct Admin {
    metrics: Arc<Metrics>,
    source: Arc<dyn AdminSource>,
    /// Sampled every [`crate::history::EVERY`] from start, for the rate and the charts.
    history: Mutex<History>,
}

impl Admin {
    fn admin_status(&self) -> AdminStatus {
        let mut status = self.source.admin_status();
        let now = Instant::now();
        status.requests_total = self.metrics.requests_total();
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rate = history.rate_now(status.requests_total, now);
        status.requests_per_second = (rate * 10.0).round() / 10.0;
        status.charts = history.chart_data(now);
        status.watches_open = self.metrics.watches_open().get();
        status
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        match request.uri().path() {
            "/metrics" => {
                self.metrics.sync(&self.source.snapshot());
                let mut response = text(StatusCode::OK, &self.metrics.render());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/livez" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.source.ready() {
                Ok(()) => text(StatusCode::OK, "ok\n"),
                Err(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {reason}\n"),
                ),
            },
            "/status" => {
                let body = serde_json::to_string_pretty(&self.admin_status()).unwrap_or_default();
                let mut response = text(StatusCode::OK, &body);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            "/" => {
                let mut response = text(StatusCode::OK, &render_page(&self.admin_status()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /, /status, /metrics, /livez, /readyz\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The status page: server-rendered, a little CSS, no external assets; refreshes itself.
pub fn render_page(status: &AdminStatus) -> String {
    let mut rows = String::new();
    for e in &status.endpoints {
        let (class, state) = if e.up {
            ("up", "healthy")
        } else {
            ("down", "unhealthy")
        };
        let error = match e.last_error_seconds_ago {
            Some(ago) if !e.last_error.is_empty() => {
                format!("{} ({ago} s ago)", escape(&e.last_error))
            }
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            rows,
            "<tr class=\"{class}\" data-endpoint=\"{url}\"><td>{url}</td><td class=\"state\">{state}</td><td>{:.1} ms</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"passthrough\">{}</td><td class=\"error\">{error}</td></tr>",
            e.latency_seconds * 1000.0,
            e.in_flight,
            e.requests,
            e.connections_open,
            e.ejections,
            e.passthrough_open,
            url = escape(&e.url),
        );
    }
    let mut events = String::new();
    for ev in &status.recent_events {
        let _ = writeln!(
            events,
            "<li>{} s ago: {} {}</li>",
            ev.seconds_ago,
            escape(&ev.endpoint),
            escape(&ev.change)
        );
    }
    if events.is_empty() {
        events.push_str("<li>none</li>");
    }
    let mut contexts = String::new();
    if !status.contexts.is_empty() {
        contexts.push_str("<h2>Contexts</h2>\n<table id=\"contexts\"><thead><tr><th>context</th><th>state</th><th>apiservers up</th><th>requests</th></tr></thead>\n<tbody>\n");
        for c in &status.contexts {
            let _ = writeln!(
                contexts,
                "<tr data-context=\"{name}\"><td>{name}</td><td class=\"state\">{}</td><td>{} of {}</td><td>{}</td></tr>",
                escape(&c.state),
                c.apiservers_up,
                c.apiservers,
                c.requests,
                name = escape(&c.name),
            );
        }
        contexts.push_str("</tbody></table>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>kprox status</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em; color: #1d2733; }}
h1 {{ font-size: 1.4em; margin: 0 0 .2em; }} .meta {{ color: #5b6b7c; margin-bottom: 1.5em; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ text-align: left; padding: .4em .8em; border-bottom: 1px solid #dde3ea; }}
th {{ background: #f3f6f9; font-weight: 600; }}
tr.up .state {{ color: #117a3d; font-weight: 600; }} tr.down .state {{ color: #b3261e; font-weight: 600; }}
tr.down {{ background: #fdf1f0; }} .error {{ color: #7a4b00; font-size: .9em; }}
.cards {{ display: flex; gap: 1em; margin: 1em 0 2em; }} .card {{ background: #f3f6f9; padding: .8em 1.2em; border-radius: 6px; }}
.card b {{ display: block; font-size: 1.3em; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1em 2em; }} figure.chart {{ margin: 0; }}
figcaption {{ font-weight: 600; margin-bottom: .2em; }}
svg .grid {{ stroke: #dde3ea; }} svg .axis {{ font-size: 10px; fill: #5b6b7c; }}
svg .failover {{ stroke: #b3261e; stroke-width: 1.5; }} svg .recovered {{ stroke: #117a3d; stroke-width: 1; stroke-dasharray: 2 2; }}
.legend {{ font-size: .8em; color: #5b6b7c; }} .legend span {{ margin-right: 1em; }}
.legend i {{ display: inline-block; width: 1.6em; margin-right: .3em; vertical-align: middle; border-top: 2px solid; }}
.legend i.dashed {{ border-top-style: dashed; }}
</style></head>
<body>
<h1>kprox</h1>
<div class="meta">version {version} · serving on {listening} · up {uptime} s · credentials: {source} (expiry: {expiry})</div>
<div class="cards">
<div class="card"><b id="rate">{rate:.1}</b>requests/s</div>
<div class="card"><b>{total}</b>requests</div>
<div class="card"><b>{watches}</b>watches open</div>
<div class="card"><b>{tunnels}</b>tunnels open</div>
</div>
<h2>Apiservers</h2>
<table id="endpoints"><thead><tr><th>endpoint</th><th>health</th><th>latency</th><th>in flight</th><th>requests</th><th>connections</th><th>ejections</th><th>pass-through</th><th>last error</th></tr></thead>
<tbody>
{rows}</tbody></table>
{contexts}<h2>The last minutes</h2>
{charts}<h2>Recent failovers</h2>
<ul id="events">{events}</ul>
</body></html>
"#,
        version = escape(&status.version),
        listening = escape(&status.listening_on),
        uptime = status.uptime_seconds,
        source = escape(&status.credential.source),
        expiry = escape(&status.credential.expiry),
        rate = status.requests_per_second,
        total = status.requests_total,
        watches = status.watches_open,
        tunnels = status.tunnels_open,
        charts = crate::charts::render(&status.charts, &status.recent_events),
    )
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    source: Arc<dyn AdminSource>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let admin = Arc::new(Admin {
        metrics,
        source,
        history: Mutex::new(History::default()),
    });
    let sampler = {
        let admin = Arc::downgrade(&admin);
        tokio::spawn(async move {
            loop {
                let Some(admin) = admin.upgrade() else { return };
                admin
                    .history
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sample(&admin.metrics);
                drop(admin);
                tokio::time::sleep(crate::history::EVERY).await;
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = admin.answer(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    sampler.abort();
}
