//! kprox's metrics: one registry, every family named `kprox_*` with its unit in the name, and
//! handles resolved ahead of time so the request path only touches atomics.
//!
//! Two kinds of values: those the request path counts as it goes (requests, durations, bytes,
//! rejections) and those other components already keep (endpoint health, connections, retries,
//! credential refreshes), copied in at scrape time by [`Metrics::sync`]. No label ever comes from
//! a request path, a user or a client address.

use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// HTTP methods kept apart in labels; everything else is `other`.
pub const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other",
];
/// Status classes.
pub const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Request kinds for durations.
pub const KINDS: [&str; 3] = ["plain", "watch", "upgrade"];
/// Filter rules that can refuse a request.
pub const RULES: [&str; 12] = [
    "host",
    "reject-paths",
    "reject-methods",
    "accept-paths",
    "accept-hosts",
    "cross-site",
    "origin",
    "client-token",
    "path",
    "upgrade",
    "headers",
    "peer-user",
];

/// The label for a request answered by kprox itself, without an apiserver.
pub const NO_ENDPOINT: &str = "none";

fn method_index(method: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn class_index(status: u16) -> usize {
    usize::from(status / 100).saturating_sub(1).min(4)
}

/// The request counters of one apiserver (or of kprox itself), every method and status class
/// resolved once: the upstream asks for them when an endpoint joins and hands them to each
/// response it serves, so counting a request looks nothing up.
#[derive(Debug)]
pub struct EndpointRequests {
    by_method_class: Vec<IntCounter>,
    /// Time to the response head of plain requests it answered; `None` for kprox itself.
    response_time: Option<Histogram>,
}

impl EndpointRequests {
    /// Records how long a plain request this apiserver answered took to its response head.
    pub fn observe_response(&self, seconds: f64) {
        if let Some(h) = &self.response_time {
            h.observe(seconds);
        }
    }

    /// The response-time histogram: cumulative count per bucket of [`BUCKETS`], and the total.
    pub fn response_buckets(&self) -> (Vec<u64>, u64) {
        use prometheus::core::Metric as _;
        let Some(h) = &self.response_time else {
            return (Vec::new(), 0);
        };
        let metric = h.metric();
        let histogram = metric.get_histogram();
        (
            histogram
                .get_bucket()
                .iter()
                .map(|b| b.cumulative_count())
                .collect(),
            histogram.get_sample_count(),
        )
    }

    fn count(&self, method: &http::Method, status: u16) {
        let index = method_index(method) * CODE_CLASSES.len() + class_index(status);
        if let Some(counter) = self.by_method_class.get(index) {
            counter.inc();
        }
    }
}

/// Bucket bounds (seconds) of the duration histograms.
pub const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn counters_for(
    vec: &IntCounterVec,
    response_times: Option<&HistogramVec>,
    endpoint: &str,
) -> EndpointRequests {
    EndpointRequests {
        by_method_class: METHODS
            .iter()
            .flat_map(|m| CODE_CLASSES.iter().map(move |c| (*m, *c)))
            .map(|(m, c)| vec.with_label_values(&[m, c, endpoint]))
            .collect(),
        response_time: response_times.map(|h| h.with_label_values(&[endpoint])),
    }
}

/// Values owned elsewhere, copied in at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub endpoints: Vec<EndpointSnapshot>,
    pub retries_not_sent: u64,
    pub retries_reset: u64,
    pub retries_unavailable: u64,
    pub watch_resumes: u64,
    /// Watches broken during their initial events whose clients were told to start over.
    pub watch_restarts: u64,
    pub tunnels_open: u64,
    pub credentials: Vec<CredentialSnapshot>,
}

/// One apiserver as the metrics and the status page (and its JSON) show it: the one copy of
/// an endpoint's state outside the upstream.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EndpointSnapshot {
    pub url: String,
    /// In rotation (health checks pass).
    pub up: bool,
    pub in_flight: u64,
    /// Peak-EWMA time to response headers.
    pub latency_seconds: f64,
    pub requests: u64,
    pub connections_open: u64,
    pub connections_opened: u64,
    pub tls_handshakes: u64,
    pub ejections: u64,
    /// What last went wrong with it, and how long ago; empty and `None` when nothing has.
    pub last_error: String,
    pub last_error_seconds_ago: Option<u64>,
    /// TCP pass-through connections open now, opened, and connects that failed.
    pub passthrough_open: u64,
    pub passthrough_opened: u64,
    pub passthrough_failed: u64,
    /// Bytes spliced by the pass-through connections, each way.
    pub passthrough_bytes_to_apiserver: u64,
    pub passthrough_bytes_to_client: u64,
}

/// One credential source's refresh counts.
#[derive(Clone, Debug, Default)]
pub struct CredentialSnapshot {
    /// `token`, `token-file`, `basic`, `none`, `client-token-file` — never a path or a value.
    pub source: String,
    pub refreshes: u64,
    pub failures: u64,
}

/// Every metric kprox exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests kprox answered itself (label `none`).
    answered_by_kprox: EndpointRequests,
    /// Counters per apiserver label, handed out by [`Metrics::endpoint_requests`]; extended
    /// when an apiserver joins (rare), never read per request.
    endpoint_requests: Mutex<Vec<(Arc<str>, Arc<EndpointRequests>)>>,
    requests_vec: IntCounterVec,
    response_times: HistogramVec,
    durations: Vec<Histogram>,
    in_flight: IntGauge,
    watches_open: IntGauge,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
    rejections: Vec<IntCounter>,
    connections_accepted: IntCounter,
    connections_open: IntGauge,
    connections_refused: IntCounter,
    // Synced at scrape time.
    endpoint_up: IntGaugeVec,
    endpoint_in_flight: IntGaugeVec,
    endpoint_latency: GaugeVec,
    upstream_connections_open: IntGaugeVec,
    upstream_connections_opened: IntCounterVec,
    tls_handshakes: IntCounterVec,
    ejections: IntCounterVec,
    passthrough_open: IntGaugeVec,
    passthrough_opened: IntCounterVec,
    passthrough_failed: IntCounterVec,
    passthrough_bytes: IntCounterVec,
    retries: IntCounterVec,
    watch_resumes: IntCounter,
    watch_restarts: IntCounter,
    tunnels_open: IntGauge,
    credential_refreshes: IntCounterVec,
    credential_failures: IntCounterVec,
    context_requests: IntCounterVec,
    sync_lock: Mutex<()>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are fixed and distinct; a failure here is a programming error caught by the tests.
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}

impl Metrics {
    /// Creates every family; apiservers get their series when the upstream asks for their
    /// counters ([`Metrics::endpoint_requests`]).
    pub fn new(version: &str) -> Self {
        let registry = Registry::new();
        let requests_vec = counter_vec(
            &registry,
            "kprox_requests_total",
            "Client requests answered, by method, status class and the apiserver that answered (none: answered by kprox).",
            &["method", "code", "endpoint"],
        );
        let answered_by_kprox = counters_for(&requests_vec, None, NO_ENDPOINT);
        let response_times = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("kprox_upstream_response_seconds", "Time from a plain request's arrival to its response head, by the apiserver that answered (retries included).")
                    .buckets(BUCKETS.to_vec()),
                &["endpoint"],
            )
            .unwrap_or_else(|e| panic!("response times: {e}")),
        );
        let durations_vec = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("kprox_request_duration_seconds", "Time to answer a client request: whole exchange for plain requests, time to the response start for watches and upgrades.")
                    .buckets(BUCKETS.to_vec()),
                &["kind"],
            )
            .unwrap_or_else(|e| panic!("durations: {e}")),
        );
        let durations = KINDS
            .iter()
            .map(|k| durations_vec.with_label_values(&[k]))
            .collect();
        let rejections_vec = counter_vec(
            &registry,
            "kprox_filter_rejections_total",
            "Client requests refused before forwarding, by the rule that refused them.",
            &["rule"],
        );
        let rejections = RULES
            .iter()
            .map(|r| rejections_vec.with_label_values(&[r]))
            .collect();
        let simple_gauge = |name: &str, help: &str| {
            register(
                &registry,
                IntGauge::new(name, help).unwrap_or_else(|e| panic!("{name}: {e}")),
            )
        };
        let simple_counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).unwrap_or_else(|e| panic!("{name}: {e}")),
            )
        };
        let build = gauge_vec(
            &registry,
            "kprox_build_info",
            "Always 1; the version label says which kprox is running.",
            &["version"],
        );
        build.with_label_values(&[version]).set(1);
        let endpoint_latency = register(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "kprox_upstream_latency_seconds",
                    "Peak-EWMA time to response headers per apiserver, as the balancer sees it.",
                ),
                &["endpoint"],
            )
            .unwrap_or_else(|e| panic!("latency: {e}")),
        );
        Self {
            answered_by_kprox,
            endpoint_requests: Mutex::new(Vec::new()),
            requests_vec,
            response_times,
            durations,
            in_flight: simple_gauge(
                "kprox_requests_in_flight",
                "Client requests being answered now.",
            ),
            watches_open: simple_gauge("kprox_watches_open", "Watch streams open now."),
            request_bytes: simple_counter(
                "kprox_request_bytes_total",
                "Request body bytes received from clients.",
            ),
            response_bytes: simple_counter(
                "kprox_response_bytes_total",
                "Response body bytes sent to clients.",
            ),
            rejections,
            connections_accepted: simple_counter(
                "kprox_listener_connections_total",
                "Client connections accepted.",
            ),
            connections_open: simple_gauge(
                "kprox_listener_connections_open",
                "Client connections open now.",
            ),
            connections_refused: simple_counter(
                "kprox_listener_rejections_total",
                "Client connections refused (503) because max_connections were open.",
            ),
            endpoint_up: gauge_vec(
                &registry,
                "kprox_upstream_up",
                "1 when the apiserver is in rotation, 0 when health checks took it out.",
                &["endpoint"],
            ),
            endpoint_in_flight: gauge_vec(
                &registry,
                "kprox_upstream_requests_in_flight",
                "Requests waiting for an apiserver's answer (started watches not counted).",
                &["endpoint"],
            ),
            endpoint_latency,
            upstream_connections_open: gauge_vec(
                &registry,
                "kprox_upstream_connections_open",
                "Pooled connections to the apiserver now.",
                &["endpoint"],
            ),
            upstream_connections_opened: counter_vec(
                &registry,
                "kprox_upstream_connections_opened_total",
                "Pooled connections opened to the apiserver.",
                &["endpoint"],
            ),
            tls_handshakes: counter_vec(
                &registry,
                "kprox_upstream_tls_handshakes_total",
                "TLS handshakes completed with the apiserver.",
                &["endpoint"],
            ),
            ejections: counter_vec(
                &registry,
                "kprox_upstream_ejections_total",
                "Times the apiserver was taken out of rotation (failovers away from it).",
                &["endpoint"],
            ),
            passthrough_open: gauge_vec(
                &registry,
                "kprox_passthrough_connections_open",
                "TCP pass-through connections spliced to the apiserver now.",
                &["endpoint"],
            ),
            passthrough_opened: counter_vec(
                &registry,
                "kprox_passthrough_connections_total",
                "TCP pass-through connections spliced to the apiserver.",
                &["endpoint"],
            ),
            passthrough_failed: counter_vec(
                &registry,
                "kprox_passthrough_connect_failures_total",
                "TCP connects to the apiserver for a pass-through client that failed (the client moved on to the next apiserver).",
                &["endpoint"],
            ),
            passthrough_bytes: counter_vec(
                &registry,
                "kprox_passthrough_bytes_total",
                "Bytes spliced by TCP pass-through connections, by direction (to_apiserver, to_client).",
                &["endpoint", "direction"],
            ),
            retries: counter_vec(
                &registry,
                "kprox_upstream_retries_total",
                "Requests tried again on another apiserver, by reason (not_sent, reset, unavailable).",
                &["reason"],
            ),
            watch_resumes: simple_counter(
                "kprox_watch_resumes_total",
                "Watch streams resumed on another apiserver after theirs broke.",
            ),
            watch_restarts: simple_counter(
                "kprox_watch_restarts_total",
                "Watch streams that broke during their initial events: no safe resume point, so the client got an ERROR event and starts over.",
            ),
            tunnels_open: simple_gauge(
                "kprox_tunnels_open",
                "Upgraded exec, attach and port-forward tunnels open now.",
            ),
            credential_refreshes: counter_vec(
                &registry,
                "kprox_credential_refreshes_total",
                "Credential reloads that changed or confirmed the credential, by source kind.",
                &["source"],
            ),
            credential_failures: counter_vec(
                &registry,
                "kprox_credential_refresh_failures_total",
                "Credential reloads that failed (the previous credential stays in use), by source kind.",
                &["source"],
            ),
            context_requests: counter_vec(
                &registry,
                "kprox_context_requests_total",
                "Client requests under /clusters/<context>/ (--all-contexts), by kubeconfig context.",
                &["context"],
            ),
            sync_lock: Mutex::new(()),
            registry,
        }
    }

    /// The request counters of the apiserver `url` (its label value): resolved once, when the
    /// endpoint joins; the same handle for the same URL.
    pub fn endpoint_requests(&self, url: &str) -> Arc<EndpointRequests> {
        let mut table = self
            .endpoint_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, counters)) = table.iter().find(|(label, _)| label.as_ref() == url) {
            return counters.clone();
        }
        let counters = Arc::new(counters_for(
            &self.requests_vec,
            Some(&self.response_times),
            url,
        ));
        table.push((Arc::from(url), counters.clone()));
        counters
    }

    /// Every apiserver's request handles, in the order they joined (the status page's charts
    /// read their response times).
    pub fn endpoints(&self) -> Vec<(Arc<str>, Arc<EndpointRequests>)> {
        self.endpoint_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The request counter of the kubeconfig context `name` (resolved when the context is set
    /// up; names come from the kubeconfig only, so the label stays bounded).
    pub fn context_requests(&self, name: &str) -> IntCounter {
        self.context_requests.with_label_values(&[name])
    }

    /// Counts a finished client request; `answered_by` holds the counters of the apiserver
    /// that answered, `None` when kprox answered itself.
    pub fn request(
        &self,
        method: &http::Method,
        status: u16,
        answered_by: Option<&EndpointRequests>,
    ) {
        answered_by
            .unwrap_or(&self.answered_by_kprox)
            .count(method, status);
    }

    /// Records a duration for a request kind (`0` plain, `1` watch, `2` upgrade).
    pub fn duration(&self, kind: usize, seconds: f64) {
        if let Some(h) = self.durations.get(kind) {
            h.observe(seconds);
        }
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// The open watches gauge.
    pub fn watches_open(&self) -> &IntGauge {
        &self.watches_open
    }

    /// Request body bytes.
    pub fn request_bytes(&self) -> &IntCounter {
        &self.request_bytes
    }

    /// Response body bytes.
    pub fn response_bytes(&self) -> &IntCounter {
        &self.response_bytes
    }

    /// Counts a refusal by `rule` (one of [`RULES`]).
    pub fn rejected(&self, rule: &str) {
        if let Some(i) = RULES.iter().position(|r| *r == rule) {
            self.rejections[i].inc();
        }
    }

    /// Client connections accepted.
    pub fn connections_accepted(&self) -> &IntCounter {
        &self.connections_accepted
    }

    /// Client connections refused at the cap.
    pub fn connections_refused(&self) -> &IntCounter {
        &self.connections_refused
    }

    /// Client connections open.
    pub fn connections_open(&self) -> &IntGauge {
        &self.connections_open
    }

    /// Client requests answered so far (all labels).
    pub fn requests_total(&self) -> u64 {
        let table = self
            .endpoint_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::iter::once(&self.answered_by_kprox)
            .chain(table.iter().map(|(_, counters)| &**counters))
            .flat_map(|c| c.by_method_class.iter())
            .map(IntCounter::get)
            .sum()
    }

    /// Copies values kept elsewhere into the registry.
    pub fn sync(&self, snapshot: &Snapshot) {
        let _serial = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        let advance = |counter: &IntCounter, total: u64| {
            let current = counter.get();
            if total > current {
                counter.inc_by(total - current);
            }
        };
        for e in &snapshot.endpoints {
            let l = [e.url.as_str()];
            self.endpoint_up.with_label_values(&l).set(i64::from(e.up));
            self.endpoint_in_flight
                .with_label_values(&l)
                .set(i64::try_from(e.in_flight).unwrap_or(i64::MAX));
            self.endpoint_latency
                .with_label_values(&l)
                .set(e.latency_seconds);
            self.upstream_connections_open
                .with_label_values(&l)
                .set(i64::try_from(e.connections_open).unwrap_or(i64::MAX));
            advance(
                &self.upstream_connections_opened.with_label_values(&l),
                e.connections_opened,
            );
            advance(&self.tls_handshakes.with_label_values(&l), e.tls_handshakes);
            advance(&self.ejections.with_label_values(&l), e.ejections);
            self.passthrough_open
                .with_label_values(&l)
                .set(i64::try_from(e.passthrough_open).unwrap_or(i64::MAX));
            advance(
                &self.passthrough_opened.with_label_values(&l),
                e.passthrough_opened,
            );
            advance(
                &self.passthrough_failed.with_label_values(&l),
                e.passthrough_failed,
            );
            for (direction, total) in [
                ("to_apiserver", e.passthrough_bytes_to_apiserver),
                ("to_client", e.passthrough_bytes_to_client),
            ] {
                advance(
                    &self
                        .passthrough_bytes
                        .with_label_values(&[e.url.as_str(), direction]),
                    total,
                );
            }
        }
        advance(
            &self.retries.with_label_values(&["not_sent"]),
            snapshot.retries_not_sent,
        );
        advance(
            &self.retries.with_label_values(&["reset"]),
            snapshot.retries_reset,
        );
        advance(
            &self.retries.with_label_values(&["unavailable"]),
            snapshot.retries_unavailable,
        );
        advance(&self.watch_resumes, snapshot.watch_resumes);
        advance(&self.watch_restarts, snapshot.watch_restarts);
        self.tunnels_open
            .set(i64::try_from(snapshot.tunnels_open).unwrap_or(i64::MAX));
        for c in &snapshot.credentials {
            advance(
                &self
                    .credential_refreshes
                    .with_label_values(&[c.source.as_str()]),
                c.refreshes,
            );
            advance(
                &self
                    .credential_failures
                    .with_label_values(&[c.source.as_str()]),
                c.failures,
            );
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Names, types and help of every family, for the README catalogue check.
    pub fn catalogue(&self) -> Vec<(String, String, String)> {
        self.registry
            .gather()
            .iter()
            .map(|f| {
                (
                    f.name().to_owned(),
                    format!("{:?}", f.get_field_type()).to_lowercase(),
                    f.help().to_owned(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_pre_resolved_counters() {
        let metrics = Metrics::new("0.1.0");
        let _a = metrics.endpoint_requests("https://a:6443");
        let b = metrics.endpoint_requests("https://b:6443");
        assert!(
            Arc::ptr_eq(&b, &metrics.endpoint_requests("https://b:6443")),
            "one handle per apiserver"
        );
        metrics.request(&http::Method::GET, 200, Some(&b));
        metrics.request(
            &http::Method::from_bytes(b"PROPFIND").expect("method"),
            403,
            None,
        );
        let text = metrics.render();
        assert!(
            text.contains(
                r#"kprox_requests_total{code="2xx",endpoint="https://b:6443",method="GET"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"kprox_requests_total{code="4xx",endpoint="none",method="other"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"kprox_build_info{version="0.1.0"} 1"#));
    }

    #[test]
    fn synced_counters_only_move_forward() {
        let metrics = Metrics::new("0.1.0");
        let mut snapshot = Snapshot {
            retries_reset: 3,
            ..Default::default()
        };
        metrics.sync(&snapshot);
        snapshot.retries_reset = 5;
        metrics.sync(&snapshot);
        assert!(
            metrics
                .render()
                .contains(r#"kprox_upstream_retries_total{reason="reset"} 5"#)
        );
    }
}
