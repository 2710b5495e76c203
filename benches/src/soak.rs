//! The soak: a long mixed load through one kprox in front of three fake apiservers that keep
//! failing in turn, to show that nothing is lost and nothing leaks.
//!
//! Every request must end in a response: a success, or a deliberate error (a `Status` body
//! with a code). A request that gets no response head at all — the client connection closed or
//! reset under it, or no answer within 30 s — is *lost*. A response cut after its head is
//! counted apart (kprox aborts a response whose upstream died mid-body, on purpose, so the
//! client cannot mistake it for a whole one). kprox's RSS and open descriptors are sampled
//! every second.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use kprox_testkit::{Behaviour, FakeApiServer, FakeCluster, FakeOptions, Resource};
use serde_json::{Value, json};

use crate::load::{Target, connect};
use crate::subject::Launch;
use crate::subject::Subject;

const TOKEN: &str = "soak-token-8b2d";

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    pub kprox: PathBuf,
    /// Requests in all.
    pub requests: u64,
    /// Client connections at once.
    pub connections: usize,
    /// Time between two faults.
    pub fault_every: Duration,
}

/// How the requests ended.
#[derive(Debug)]
struct Outcomes {
    ok: AtomicU64,
    /// By status code (index): 4xx/5xx with a `Status` body.
    deliberate: Vec<AtomicU64>,
    /// No response head.
    lost: AtomicU64,
    /// A head, then the body broke off.
    cut: AtomicU64,
    /// A 2xx whose body was not what was sent or expected.
    corrupt: AtomicU64,
    /// The first few corrupt bodies, shortened, so a failed soak says what it saw.
    corrupt_samples: std::sync::Mutex<Vec<String>>,
}

impl Outcomes {
    /// Counts a corrupt answer and keeps its first bytes as a sample.
    fn corrupt(&self, what: &str, body: &[u8]) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut samples) = self.corrupt_samples.lock()
            && samples.len() < MAX_CORRUPT_SAMPLES
        {
            let shown = &body[..body.len().min(300)];
            samples.push(format!("{what}: {}", String::from_utf8_lossy(shown)));
        }
    }

    fn deliberate(&self, code: u16) {
        self.deliberate[usize::from(code).min(599)].fetch_add(1, Ordering::Relaxed);
    }
}

const MAX_CORRUPT_SAMPLES: usize = 5;

impl Default for Outcomes {
    fn default() -> Self {
        Self {
            ok: AtomicU64::new(0),
            deliberate: (0..600).map(|_| AtomicU64::new(0)).collect(),
            lost: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            corrupt_samples: std::sync::Mutex::new(Vec::new()),
        }
    }
}

/// One sample of kprox's resources.
#[derive(Clone, Debug)]
pub struct ResourceSample {
    pub seconds: f64,
    pub requests: u64,
    pub rss_kib: u64,
    pub fds: usize,
}

/// The soak's result.
#[derive(Debug)]
pub struct SoakReport {
    pub requests: u64,
    pub ok: u64,
    pub deliberate: Vec<(u16, u64)>,
    pub lost: u64,
    pub cut: u64,
    pub corrupt: u64,
    /// The first few corrupt answers, shortened.
    pub corrupt_samples: Vec<String>,
    pub faults: Vec<(String, u64)>,
    pub seconds: f64,
    pub samples: Vec<ResourceSample>,
    /// Descriptors before the load and after every client has gone.
    pub fds_before: usize,
    pub fds_after: usize,
}

impl SoakReport {
    /// RSS at the end of the first tenth (warmed up) and the highest in the last tenth, KiB.
    pub fn rss_growth_kib(&self) -> (u64, u64) {
        let n = self.samples.len();
        if n == 0 {
            return (0, 0);
        }
        let tenth = (n / 10).max(1);
        let early = self.samples[tenth.min(n - 1)].rss_kib;
        let late = self.samples[n.saturating_sub(tenth)..]
            .iter()
            .map(|s| s.rss_kib)
            .max()
            .unwrap_or(early);
        (early, late)
    }

    pub fn to_json(&self) -> Value {
        let (early, late) = self.rss_growth_kib();
        json!({
            "requests": self.requests,
            "ok": self.ok,
            "deliberate_errors": self.deliberate.iter().map(|(c, n)| json!({"code": c, "count": n})).collect::<Vec<_>>(),
            "lost": self.lost,
            "cut_mid_body": self.cut,
            "corrupt": self.corrupt,
            "corrupt_samples": self.corrupt_samples,
            "faults": self.faults.iter().map(|(f, n)| json!({"fault": f, "count": n})).collect::<Vec<_>>(),
            "seconds": self.seconds,
            "requests_per_second": self.requests as f64 / self.seconds.max(1e-9),
            "rss_kib_warm": early,
            "rss_kib_late_max": late,
            "fds_before": self.fds_before,
            "fds_after": self.fds_after,
            "samples": self.samples.iter().map(|s| json!({
                "seconds": s.seconds, "requests": s.requests, "rss_kib": s.rss_kib, "fds": s.fds,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn to_markdown(&self) -> String {
        let (early, late) = self.rss_growth_kib();
        let mut out = String::new();
        out.push_str("| figure | value |\n|---|---|\n");
        out.push_str(&format!(
            "| requests | {} in {:.0} s ({:.0}/s) |\n",
            self.requests,
            self.seconds,
            self.requests as f64 / self.seconds.max(1e-9)
        ));
        out.push_str(&format!("| succeeded | {} |\n", self.ok));
        let deliberate: Vec<String> = self
            .deliberate
            .iter()
            .map(|(c, n)| format!("{n} × {c}"))
            .collect();
        out.push_str(&format!(
            "| deliberate errors (Status bodies) | {} |\n",
            if deliberate.is_empty() {
                "none".to_owned()
            } else {
                deliberate.join(", ")
            }
        ));
        out.push_str(&format!("| **lost** (no response) | **{}** |\n", self.lost));
        out.push_str(&format!(
            "| cut mid-body (aborted on purpose) | {} |\n",
            self.cut
        ));
        out.push_str(&format!("| corrupt bodies | {} |\n", self.corrupt));
        for sample in &self.corrupt_samples {
            out.push_str(&format!(
                "| corrupt sample | `{}` |\n",
                sample.replace('|', "\\|").replace('`', "'")
            ));
        }
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(f, n)| format!("{n} × {f}"))
            .collect();
        out.push_str(&format!("| faults injected | {} |\n", faults.join(", ")));
        out.push_str(&format!(
            "| kprox RSS, warm → highest in the last tenth | {:.1} → {:.1} MiB |\n",
            early as f64 / 1024.0,
            late as f64 / 1024.0
        ));
        out.push_str(&format!(
            "| kprox open descriptors, before → after | {} → {} |\n",
            self.fds_before, self.fds_after
        ));
        out
    }
}

/// What went wrong, if anything: requests lost or corrupted, descriptors leaked, memory
/// growing. Empty when the soak passed.
pub fn verdict(report: &SoakReport) -> Vec<String> {
    let mut problems = Vec::new();
    if report.lost > 0 {
        problems.push(format!("{} requests got no response", report.lost));
    }
    if report.corrupt > 0 {
        problems.push(format!("{} responses were corrupt", report.corrupt));
    }
    // A few descriptors come and go with the upstream pools and health checks.
    if report.fds_after > report.fds_before + 8 {
        problems.push(format!(
            "descriptors grew from {} to {}",
            report.fds_before, report.fds_after
        ));
    }
    let (early, late) = report.rss_growth_kib();
    if late > early + early / 2 + 8 * 1024 {
        problems.push(format!(
            "RSS grew from {:.1} to {:.1} MiB",
            early as f64 / 1024.0,
            late as f64 / 1024.0
        ));
    }
    problems
}

/// The request kinds of the mix, by share of 20.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// GET one object (14/20).
    GetObject,
    /// GET a short list (2/20).
    List,
    /// POST 1 KiB of JSON to the echo route, checking the echoed length and digest (3/20).
    Post,
    /// Open a watch, read its first event, leave (1/20).
    Watch,
}

fn kind_of(n: u64) -> Kind {
    match n % 20 {
        0..=13 => Kind::GetObject,
        14 | 15 => Kind::List,
        16..=18 => Kind::Post,
        _ => Kind::Watch,
    }
}

/// Runs the soak.
pub async fn soak(options: &SoakOptions) -> anyhow::Result<SoakReport> {
    let cluster = FakeCluster::start(3, TOKEN, |_| FakeOptions::default()).await?;
    let store = cluster.store.clone();
    // Objects live in a namespace that exists, as the apiserver requires.
    store.create(
        Resource::NAMESPACES,
        "",
        json!({"metadata": {"name": "soak"}}),
    )?;
    store.create(
        Resource::CONFIG_MAPS,
        "soak",
        json!({"metadata": {"name": "fixed"}, "data": {"k": "v"}}),
    )?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig("soak", &kubeconfig)?;
    let kprox = Subject::kprox_with(
        &options.kprox,
        &kubeconfig,
        &["--server", &cluster.server_list()],
        &Launch::default(),
    )?;
    let servers = cluster.servers;
    let pid = kprox.pid();
    let target = Target::Plain(kprox.address);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_before = crate::subject::open_fds(pid)?;

    let outcomes = Arc::new(Outcomes::default());
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..options.connections {
        let (target, outcomes, issued) = (target.clone(), outcomes.clone(), issued.clone());
        let total = options.requests;
        workers.push(tokio::spawn(async move {
            worker(&target, &outcomes, &issued, total).await;
        }));
    }

    let servers = Arc::new(servers);
    let fault_counts = Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let faults = tokio::spawn(inject_faults(
        servers.clone(),
        options.fault_every,
        fault_counts.clone(),
    ));
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    while !workers.iter().all(tokio::task::JoinHandle::is_finished) {
        ticker.tick().await;
        let (rss, _) = crate::subject::memory_kib(pid)?;
        samples.push(ResourceSample {
            seconds: started.elapsed().as_secs_f64(),
            requests: issued.load(Ordering::Relaxed).min(options.requests),
            rss_kib: rss,
            fds: crate::subject::open_fds(pid)?,
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    faults.abort();
    for server in servers.iter() {
        server.set_behaviour(Behaviour::Healthy).await;
    }
    for worker in workers {
        worker.await?;
    }
    // Let kprox notice every client connection has gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fds_after = crate::subject::open_fds(pid)?;

    let deliberate = outcomes
        .deliberate
        .iter()
        .enumerate()
        .filter_map(|(code, n)| {
            let n = n.load(Ordering::Relaxed);
            (n > 0).then_some((code as u16, n))
        })
        .collect();
    let faults = fault_counts.lock().map(|f| f.clone()).unwrap_or_default();
    Ok(SoakReport {
        requests: options.requests,
        ok: outcomes.ok.load(Ordering::Relaxed),
        deliberate,
        lost: outcomes.lost.load(Ordering::Relaxed),
        cut: outcomes.cut.load(Ordering::Relaxed),
        corrupt: outcomes.corrupt.load(Ordering::Relaxed),
        corrupt_samples: outcomes
            .corrupt_samples
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default(),
        faults,
        seconds,
        samples,
        fds_before,
        fds_after,
    })
}

/// One client connection issuing requests until `total` have been issued by all.
async fn worker(target: &Target, outcomes: &Outcomes, issued: &AtomicU64, total: u64) {
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    // 1 KiB of JSON (the fake, like the apiserver, takes JSON bodies).
    let payload = Bytes::from(format!("{{\"data\":\"{}\"}}", "p".repeat(1024 - 11)));
    let payload_digest = kprox_testkit::digest(&payload);
    loop {
        let n = issued.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return;
        }
        let kind = kind_of(n);
        let request = match kind {
            Kind::GetObject => get("/api/v1/namespaces/soak/configmaps/fixed"),
            Kind::List => get("/api/v1/namespaces/soak/configmaps?limit=10"),
            Kind::Watch => get("/api/v1/namespaces/soak/configmaps?watch=1&resourceVersion=0"),
            Kind::Post => Request::builder()
                .method(Method::POST)
                .uri("/testkit/echo")
                .header(header::HOST, "localhost")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(payload.clone())),
        };
        let Ok(request) = request else {
            outcomes.corrupt("request", b"could not be built");
            continue;
        };
        // A fresh connection when the last one ended (or never existed).
        let ready = match &mut sender {
            Some(s) => tokio::time::timeout(Duration::from_secs(5), s.ready())
                .await
                .is_ok_and(|r: hyper::Result<()>| r.is_ok()),
            None => false,
        };
        if !ready {
            sender = match connect(target).await {
                Ok(s) => Some(s),
                Err(_) => {
                    outcomes.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
        }
        let Some(s) = sender.as_mut() else { continue };
        let response =
            match tokio::time::timeout(Duration::from_secs(30), s.send_request(request)).await {
                Ok(Ok(response)) => response,
                _ => {
                    outcomes.lost.fetch_add(1, Ordering::Relaxed);
                    sender = None;
                    continue;
                }
            };
        let status = response.status();
        if matches!(kind, Kind::Watch) && status == StatusCode::OK {
            // The first event is the object already there; then hang up. An event is one
            // line, and chunk boundaries mean nothing in HTTP: read up to the first newline.
            let first =
                tokio::time::timeout(Duration::from_secs(30), first_line(response.into_body()))
                    .await;
            match first {
                Ok(Some(line)) => {
                    if line.windows(5).any(|w| w == b"fixed") {
                        outcomes.ok.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(code) = error_event_code(&line) {
                        // The stream broke during its initial burst, where resuming could
                        // lose objects: kprox says so with an ERROR event, and the client
                        // starts over (crates/kprox-upstream/src/watch.rs).
                        outcomes.deliberate(code);
                    } else {
                        outcomes.corrupt("watch's first event", &line);
                    }
                }
                _ => {
                    outcomes.cut.fetch_add(1, Ordering::Relaxed);
                }
            }
            sender = None;
            continue;
        }
        let body =
            match tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
                .await
            {
                Ok(Ok(body)) => body.to_bytes(),
                _ => {
                    outcomes.cut.fetch_add(1, Ordering::Relaxed);
                    sender = None;
                    continue;
                }
            };
        if status.is_success() {
            let sound = match kind {
                Kind::Post => serde_json::from_slice::<Value>(&body).is_ok_and(|v| {
                    v["bodyLength"] == 1024 && v["bodySha"] == payload_digest.as_str()
                }),
                _ => serde_json::from_slice::<Value>(&body).is_ok(),
            };
            if sound {
                outcomes.ok.fetch_add(1, Ordering::Relaxed);
            } else {
                outcomes.corrupt(&format!("{kind:?} {status}"), &body);
            }
        } else {
            let is_status = serde_json::from_slice::<Value>(&body)
                .is_ok_and(|v| v["kind"] == "Status" && v["code"] == status.as_u16());
            if is_status {
                outcomes.deliberate(status.as_u16());
            } else {
                outcomes.corrupt(&format!("{kind:?} {status}"), &body);
            }
        }
    }
}

/// The body's bytes up to its first newline, or `None` when it ended or broke before one.
async fn first_line(mut body: hyper::body::Incoming) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    while !line.contains(&b'\n') && line.len() < 1 << 20 {
        let frame = body.frame().await?.ok()?;
        if let Some(data) = frame.data_ref() {
            line.extend_from_slice(data);
        }
    }
    let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
    line.truncate(end);
    Some(line)
}

/// The code of a watch `ERROR` event carrying a `Status`, as kprox and the apiserver send them.
fn error_event_code(line: &[u8]) -> Option<u16> {
    let event: Value = serde_json::from_slice(line.trim_ascii()).ok()?;
    let status = &event["object"];
    if event["type"] != "ERROR" || status["kind"] != "Status" {
        return None;
    }
    status["code"].as_u64().and_then(|c| u16::try_from(c).ok())
}

fn get(path: &'static str) -> Result<Request<Full<Bytes>>, http::Error> {
    Request::builder()
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
}

/// Faults in turn, each on the next apiserver: connections killed, GOAWAY, 503s for a second,
/// slow answers for a second, the server down for two seconds. Never two at once.
async fn inject_faults(
    servers: Arc<Vec<FakeApiServer>>,
    every: Duration,
    counts: Arc<std::sync::Mutex<Vec<(String, u64)>>>,
) {
    let names = [
        "connections killed",
        "GOAWAY",
        "503 for 1 s",
        "slow (100 ms) for 1 s",
        "down for 2 s",
    ];
    let mut tally = [0u64; 5];
    for step in 0usize.. {
        tokio::time::sleep(every).await;
        let server = &servers[step % servers.len()];
        let fault = step % names.len();
        match fault {
            0 => server.kill_connections(),
            1 => server.goaway(),
            2 => {
                server.set_behaviour(Behaviour::Status(503)).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                server.set_behaviour(Behaviour::Healthy).await;
            }
            3 => {
                server
                    .set_behaviour(Behaviour::Slow(Duration::from_millis(100)))
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                server.set_behaviour(Behaviour::Healthy).await;
            }
            _ => {
                server.set_behaviour(Behaviour::Refuse).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                server.set_behaviour(Behaviour::Healthy).await;
            }
        }
        tally[fault] += 1;
        if let Ok(mut counts) = counts.lock() {
            *counts = names
                .iter()
                .zip(tally)
                .map(|(name, n)| ((*name).to_owned(), n))
                .collect();
        }
    }
}
