//! Several apiservers behind one kprox: failures of one must not reach clients.
//! Three fake apiservers on 127.0.0.1, .2 and .3 share one CA and one store (one cluster).

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kprox_testkit::{Behaviour, FakeApiServer, FakeCluster, FakeOptions, Resource};
use support::{Kprox, TOKEN};

struct Trio {
    servers: Vec<FakeApiServer>,
    _dir: tempfile::TempDir,
    kubeconfig: String,
}

impl Trio {
    async fn start(options: impl Fn(usize) -> FakeOptions) -> Self {
        Self::start_with_port(options, false).await
    }

    /// Like a real control plane: every apiserver listens on the same port.
    async fn start_on_one_port() -> Self {
        Self::start_with_port(|_| FakeOptions::default(), true).await
    }

    async fn start_with_port(options: impl Fn(usize) -> FakeOptions, one_port: bool) -> Self {
        let on_its_address = |n: usize| FakeOptions {
            ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8 + 1)),
            ..options(n)
        };
        let cluster = if one_port {
            FakeCluster::start_on_one_port(3, TOKEN, on_its_address).await
        } else {
            FakeCluster::start(3, TOKEN, on_its_address).await
        }
        .expect("fake apiservers");
        cluster.store.add_pod("default", "alpha").expect("pod");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        cluster
            .write_kubeconfig("trio", &kubeconfig)
            .expect("kubeconfig");
        Self {
            servers: cluster.servers,
            kubeconfig: kubeconfig.display().to_string(),
            _dir: dir,
        }
    }

    fn servers_arg(&self) -> String {
        self.servers
            .iter()
            .map(FakeApiServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn kprox(&self, extra: &[&str]) -> Kprox {
        let servers = self.servers_arg();
        let mut args = vec!["--kubeconfig", &self.kubeconfig, "--server", &servers];
        args.extend_from_slice(extra);
        Kprox::start(&args)
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What a load run saw.
#[derive(Debug, Default)]
struct Report {
    ok: usize,
    failures: Vec<(Duration, String)>,
    latencies: Vec<Duration>,
}

impl Report {
    fn p99(&mut self) -> Duration {
        self.latencies.sort();
        self.latencies
            .get(self.latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default()
    }
}

/// `clients` concurrent keep-alive clients sending GET `path` until `stop` is set.
async fn load(url: String, clients: usize, stop: Arc<AtomicBool>) -> Report {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, stop) = (url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut report = Report::default();
            while !stop.load(Ordering::Relaxed) {
                let begun = Instant::now();
                let request = http::Request::get(&url)
                    .header("host", "localhost")
                    .body(Empty::new())
                    .expect("request");
                let outcome =
                    match tokio::time::timeout(Duration::from_secs(10), client.request(request))
                        .await
                    {
                        Ok(Ok(response)) => {
                            let status = response.status();
                            match response.into_body().collect().await {
                                Ok(_) if status.is_success() => Ok(()),
                                Ok(_) => Err(format!("status {status}")),
                                Err(e) => Err(format!("body: {e}")),
                            }
                        }
                        Ok(Err(e)) => Err(format!("request: {e}")),
                        Err(_) => Err("timed out".to_owned()),
                    };
                report.latencies.push(begun.elapsed());
                match outcome {
                    Ok(()) => report.ok += 1,
                    Err(e) => report.failures.push((started.elapsed(), e)),
                }
            }
            report
        }));
    }
    let mut total = Report::default();
    for task in tasks {
        let report = task.await.expect("client task");
        total.ok += report.ok;
        total.failures.extend(report.failures);
        total.latencies.extend(report.latencies);
    }
    total
}

async fn run_load_with(
    url: String,
    clients: usize,
    duration: Duration,
    during: impl std::future::Future<Output = ()>,
) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let runner = tokio::spawn(load(url, clients, stop.clone()));
    during.await;
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    runner.await.expect("load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_apiserver_under_load_fails_no_request() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    let kprox = trio.kprox(&["--log-level", "warn"]);
    let url = kprox.url("/api/v1/namespaces/default/pods");
    let victim = &trio.servers[1];
    let mut report = run_load_with(url, 32, Duration::from_secs(4), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        victim.set_behaviour(Behaviour::Refuse).await;
    })
    .await;
    let p99 = report.p99();
    println!(
        "kill under load: {} ok, {} failed, p99 {p99:?}",
        report.ok,
        report.failures.len()
    );
    assert!(
        report.ok > 500,
        "too little load to mean anything: {}",
        report.ok
    );
    assert!(
        report.failures.is_empty(),
        "clients saw failures: {:?}",
        &report.failures[..report.failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_apiserver_is_detected_within_2s_and_then_costs_nothing() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    let kprox = trio.kprox(&["--log-level", "warn"]);
    let url = kprox.url("/api/v1/namespaces/default/pods");
    let victim = &trio.servers[2];
    let before = Arc::new(std::sync::Mutex::new(0u64));
    let detected = Arc::new(std::sync::Mutex::new(None::<Duration>));
    let mut report = run_load_with(url, 16, Duration::from_secs(5), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        victim.set_behaviour(Behaviour::Blackhole).await;
        // Requests already inside the fake when it went dark still count; later ones cannot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        *before.lock().expect("lock") = victim.request_count();
        let since = Instant::now();
        let needle = format!("apiserver taken out of rotation endpoint={}", victim.url());
        while since.elapsed() < Duration::from_secs(4) {
            if kprox.stderr().contains(&needle) {
                *detected.lock().expect("lock") = Some(since.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let p99 = report.p99();
    let detected = *detected.lock().expect("lock");
    println!(
        "blackhole: detected after {detected:?}; {} ok, {} failed, p99 {p99:?}",
        report.ok,
        report.failures.len()
    );
    let detected = detected.expect("the blackhole was never taken out of rotation");
    assert!(
        detected < Duration::from_secs(2),
        "detection took {detected:?}"
    );
    // The blackhole answers nothing, so its request count stops where it was.
    assert_eq!(victim.request_count(), *before.lock().expect("lock"));
    let late: Vec<_> = report
        .failures
        .iter()
        .filter(|(at, _)| *at > Duration::from_secs(3))
        .collect();
    assert!(late.is_empty(), "failures after detection: {late:?}");
    assert!(
        report.failures.is_empty(),
        "requests to the blackhole were not moved: {:?}",
        &report.failures[..report.failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_answers_goaway_and_stream_limits_do_not_reach_clients() {
    let trio = Trio::start(|n| FakeOptions {
        max_concurrent_streams: (n == 2).then_some(10),
        ..Default::default()
    })
    .await;
    let kprox = trio.kprox(&["--log-level", "warn"]);
    // 30 open watches; the third apiserver allows only 10 streams per connection.
    let mut watches = Vec::new();
    for _ in 0..30 {
        let mut stream = tokio::net::TcpStream::connect(&kprox.address)
            .await
            .expect("connect");
        use tokio::io::AsyncWriteExt;
        stream
            .write_all(
                b"GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            )
            .await
            .expect("watch");
        watches.push(stream);
    }
    // Every watch is open (its 200 has arrived) before the rounds start: they measure what the
    // GOAWAYs and the limit do to requests beside established watches, not kprox's first seconds.
    for (n, stream) in watches.iter_mut().enumerate() {
        let head = tokio::time::timeout(Duration::from_secs(10), support::raw::read_head(stream))
            .await
            .unwrap_or_else(|_| panic!("watch {n}: no response head within 10 s"));
        assert!(head.starts_with("HTTP/1.1 200"), "watch {n}: {head}");
    }
    let url = kprox.url("/api/v1/namespaces/default/pods/alpha");
    // The scenario 50 times, each round with fresh connections after its GOAWAYs: the stream
    // limit of a new connection must be the server's from its first burst (stream_limit.rs),
    // or requests wait for ever behind watches. The rest of the suite's tests run meanwhile.
    let (mut ok, mut slowest) = (0usize, Duration::ZERO);
    for round in 0..50 {
        trio.servers[0].set_behaviour(Behaviour::Status(503)).await;
        let goaway = async {
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                trio.servers[1].goaway();
            }
        };
        let report = run_load_with(url.clone(), 16, Duration::from_millis(200), goaway).await;
        trio.servers[0].set_behaviour(Behaviour::Healthy).await;
        assert!(
            report.failures.is_empty(),
            "round {round}: {:?}",
            &report.failures[..report.failures.len().min(5)]
        );
        let max = report.latencies.iter().max().copied().unwrap_or_default();
        assert!(
            max < Duration::from_secs(1),
            "round {round}: a GET took {max:?}"
        );
        ok += report.ok;
        slowest = slowest.max(max);
    }
    println!("503 + GOAWAY + stream limit, 50 rounds: {ok} ok, slowest {slowest:?}");
    drop(watches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_never_duplicated_during_a_failover() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    let kprox = trio.kprox(&["--log-level", "warn", "--reject-methods", "^$"]);
    let url = kprox.url("/api/v1/namespaces/default/configmaps");
    let killer = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        trio.servers[0].set_behaviour(Behaviour::Refuse).await;
    };
    let posts = async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut sent = 0usize;
        let mut outcomes = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            let body = format!(r#"{{"metadata":{{"name":"cm-{sent}"}},"data":{{"n":"{sent}"}}}}"#);
            let request = http::Request::post(format!("{url}?fieldManager=post-{sent}"))
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            let status = match client.request(request).await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            outcomes.push(status);
            sent += 1;
        }
        (sent, outcomes)
    };
    let ((sent, outcomes), ()) = tokio::join!(posts, killer);
    let mut received = Vec::new();
    for server in &trio.servers {
        for request in server.requests() {
            if request.method == http::Method::POST {
                received.push(request.uri);
            }
        }
    }
    let unique: std::collections::HashSet<_> = received.iter().collect();
    println!(
        "POSTs: {sent} sent, {} received, outcomes other than 201: {:?}",
        received.len(),
        outcomes.iter().filter(|s| **s != 201).collect::<Vec<_>>()
    );
    assert_eq!(
        unique.len(),
        received.len(),
        "a POST reached the apiservers twice"
    );
    assert!(received.len() <= sent);
    assert!(
        !outcomes.contains(&409),
        "a retried POST collided with itself"
    );
    assert!(
        outcomes.iter().filter(|s| **s == 201).count() + 2 >= sent,
        "more than the POSTs in flight at the kill failed: {outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_apiservers_down_answers_503_at_once_and_one_back_takes_traffic_within_2s() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    let kprox = trio.kprox(&["--log-level", "error"]);
    let url = kprox.url("/api/v1/namespaces/default/pods");
    for server in &trio.servers {
        server.set_behaviour(Behaviour::Refuse).await;
    }
    let client = client();
    let get = || {
        http::Request::get(&url)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    // Give the checkers time to see it; then every answer must be a fast 503.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let begun = Instant::now();
        let response = client.request(get()).await.expect("response");
        let elapsed = begun.elapsed();
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("\"kind\":\"Status\""));
        assert!(elapsed < Duration::from_millis(100), "503 took {elapsed:?}");
    }
    trio.servers[1].set_behaviour(Behaviour::Healthy).await;
    let back = Instant::now();
    loop {
        let response = client.request(get()).await.expect("response");
        if response.status() == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "traffic did not return within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "traffic returned {:?} after the apiserver came back",
        back.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_less_to_a_slow_apiserver() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    let kprox = trio.kprox(&["--log-level", "warn"]);
    trio.servers[0]
        .set_behaviour(Behaviour::Slow(Duration::from_millis(60)))
        .await;
    let url = kprox.url("/api/v1/namespaces/default/pods/alpha");
    let counts_before: Vec<u64> = trio
        .servers
        .iter()
        .map(|s| s.requests_to("/api/v1/namespaces/default/pods/alpha").len() as u64)
        .collect();
    let report = run_load_with(url, 8, Duration::from_secs(3), async {}).await;
    let counts: Vec<u64> = trio
        .servers
        .iter()
        .zip(&counts_before)
        .map(|(s, b)| s.requests_to("/api/v1/namespaces/default/pods/alpha").len() as u64 - b)
        .collect();
    println!(
        "least-request with one slow apiserver: {counts:?} ({} ok)",
        report.ok
    );
    assert!(report.failures.is_empty());
    assert!(
        counts[0] * 4 < counts[1].min(counts[2]),
        "the slow apiserver got {counts:?}"
    );
}

/// Reads watch events (one JSON object per line inside HTTP/1.1 chunks) from a raw stream.
struct EventReader {
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl EventReader {
    async fn open(address: &str, path: &str) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut reader = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("head");
            if line == "\r\n" {
                break;
            }
        }
        Self { reader }
    }

    /// The next event, or None when the stream ended.
    async fn next(&mut self) -> Option<serde_json::Value> {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        loop {
            line.clear();
            // Nothing for 10 s counts as the end; callers assert on what they got.
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                    .await
                    .ok()?
                    .ok()?;
            if read == 0 {
                return None;
            }
            let text = line.trim();
            if text.starts_with('{') {
                return serde_json::from_str(text).ok();
            }
            if text == "0" {
                return None; // the last chunk
            }
        }
    }
}

fn event_name(event: &serde_json::Value) -> (String, String) {
    (
        event["type"].as_str().unwrap_or_default().to_owned(),
        event["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn watching(trio: &Trio, path: &str) -> usize {
    trio.servers
        .iter()
        .position(|s| !s.requests_to(path).is_empty())
        .expect("some apiserver got the watch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_survives_the_death_of_its_apiserver_without_gap_or_duplicate() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    let kprox = trio.kprox(&["--log-level", "warn"]);
    let store = trio.servers[0].store().clone();
    let rv = store.resource_version();
    let path = format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}");
    let mut events = EventReader::open(&kprox.address, &path).await;
    store.add_pod("default", "p1").expect("p1");
    store.add_pod("default", "p2").expect("p2");
    let mut seen = vec![
        event_name(&events.next().await.expect("p1")),
        event_name(&events.next().await.expect("p2")),
    ];
    let victim = watching(&trio, "/api/v1/namespaces/default/pods?watch=1");
    trio.servers[victim].set_behaviour(Behaviour::Refuse).await;
    store.add_pod("default", "p3").expect("p3");
    store
        .delete(kprox_testkit::Resource::PODS, "default", "p1")
        .expect("delete p1");
    store.add_pod("default", "p4").expect("p4");
    for _ in 0..3 {
        seen.push(event_name(
            &events.next().await.expect("an event after the failover"),
        ));
    }
    let expected: Vec<(String, String)> = [
        ("ADDED", "p1"),
        ("ADDED", "p2"),
        ("ADDED", "p3"),
        ("DELETED", "p1"),
        ("ADDED", "p4"),
    ]
    .iter()
    .map(|(t, n)| ((*t).to_owned(), (*n).to_owned()))
    .collect();
    assert_eq!(seen, expected);
    let resumed: Vec<_> = trio
        .servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .flat_map(|(_, s)| s.requests_to("/api/v1/namespaces/default/pods?watch=1"))
        .collect();
    let all: Vec<Vec<String>> = trio
        .servers
        .iter()
        .map(|s| {
            s.requests_to("/api/v1/namespaces/default/pods?watch=1")
                .into_iter()
                .map(|r| r.uri)
                .collect()
        })
        .collect();
    assert_eq!(
        resumed.len(),
        1,
        "resumed exactly once; victim {victim}; watches per server {all:?}; kprox: {}",
        kprox.stderr()
    );
    assert!(
        resumed[0].uri.contains("resourceVersion="),
        "{}",
        resumed[0].uri
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_whose_version_is_gone_gets_410_and_ends() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    let kprox = trio.kprox(&["--log-level", "warn"]);
    let store = trio.servers[0].store().clone();
    let path = format!(
        "/api/v1/namespaces/default/pods?watch=1&resourceVersion={}",
        store.resource_version()
    );
    let mut events = EventReader::open(&kprox.address, &path).await;
    store.add_pod("default", "before").expect("add");
    assert_eq!(
        event_name(&events.next().await.expect("before")).1,
        "before"
    );
    // The other apiservers answer slowly, so the resumed watch arrives after the history it
    // needs was compacted away.
    let victim = watching(&trio, "/api/v1/namespaces/default/pods?watch=1");
    for (i, server) in trio.servers.iter().enumerate() {
        if i != victim {
            server
                .set_behaviour(Behaviour::Slow(Duration::from_millis(800)))
                .await;
        }
    }
    trio.servers[victim].set_behaviour(Behaviour::Refuse).await;
    store.add_pod("default", "missed").expect("add");
    store.compact();
    let mut tail = Vec::new();
    while let Some(event) = events.next().await {
        tail.push(event);
    }
    let error = tail
        .iter()
        .find(|e| e["type"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR event: {tail:?}; kprox: {}", kprox.stderr()));
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(tail.last(), Some(error), "the stream ends after the 410");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_and_python_watches_survive_an_apiserver_death() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    let kprox = trio.kprox(&["--log-level", "warn"]);
    let store = trio.servers[0].store().clone();
    let cache = tempfile::tempdir().expect("cache");
    let mut kubectl = std::process::Command::new(support::require_tool("kubectl"))
        .args([
            "--server",
            &kprox.url(""),
            "--cache-dir",
            &cache.path().display().to_string(),
            "get",
            "pods",
            "--watch",
            "--output-watch-events",
            "--no-headers",
        ])
        .env("KUBECONFIG", "/dev/null")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    let python = support::require_python(&["kubernetes"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/watch_until.py"
    );
    let mut py = std::process::Command::new(python)
        .args([script, &kprox.url(""), "w3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let kubectl_lines = lines_of(kubectl.stdout.take().expect("stdout"));
    let py_lines = lines_of(py.stdout.take().expect("stdout"));
    // Both clients have listed and are watching once they print the initial pod / "ready".
    wait_for(&kubectl_lines, "alpha");
    wait_for(&py_lines, "ready");
    store.add_pod("default", "w1").expect("w1");
    wait_for(&kubectl_lines, "w1");
    // Kill every apiserver a watch is on; the third stays to take them over.
    let busy: Vec<usize> = (0..3)
        .filter(|&i| {
            !trio.servers[i]
                .requests_to("/api/v1/namespaces/default/pods?")
                .iter()
                .all(|r| !r.uri.contains("watch"))
        })
        .collect();
    assert!(
        busy.len() < 3,
        "watches spread over all three apiservers; nothing would be left"
    );
    for &i in &busy {
        trio.servers[i].set_behaviour(Behaviour::Refuse).await;
    }
    store.add_pod("default", "w2").expect("w2");
    store.add_pod("default", "w3").expect("w3");
    wait_for(&kubectl_lines, "w3");
    let _ = kubectl.kill();
    let _ = kubectl.wait();
    let py_status = py.wait().expect("python ends");
    let mut stderr = String::new();
    if let Some(mut e) = py.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(py_status.success(), "python watch failed: {stderr}");

    let k: Vec<String> = kubectl_lines.lock().expect("lock").clone();
    let names: Vec<&str> = k
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names, ["alpha", "w1", "w2", "w3"], "kubectl saw: {k:?}");
    let p: Vec<String> = py_lines.lock().expect("lock").clone();
    let result = p
        .iter()
        .find(|l| l.contains("watched"))
        .unwrap_or_else(|| panic!("python printed: {p:?}"));
    let result: serde_json::Value = serde_json::from_str(result).expect("json");
    assert_eq!(
        result["watched"],
        serde_json::json!([["ADDED", "w1"], ["ADDED", "w2"], ["ADDED", "w3"]])
    );
}

fn lines_of(out: impl std::io::Read + Send + 'static) -> Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push(line);
        }
    });
    lines
}

fn wait_for(lines: &Arc<std::sync::Mutex<Vec<String>>>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines
        .lock()
        .expect("lock")
        .iter()
        .any(|l| l.contains(needle))
    {
        assert!(
            Instant::now() < deadline,
            "never saw {needle:?}: {:?}",
            lines.lock().expect("lock")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_follows_the_kubernetes_endpoint_slices() {
    let trio = Trio::start_on_one_port().await;
    let port = trio.servers[0].addr().port();
    let store = trio.servers[0].store().clone();
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &trio.kubeconfig,
        "--server",
        &trio.servers[0].url(),
        "--discover",
    ]);
    let status_urls = || {
        let out = support::run("curl", &["-sS", &format!("{}/status", kprox.admin_url())]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["endpoints"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["url"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let wait_for = |expected: Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let urls = status_urls();
            if urls == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "endpoints {urls:?}, expected {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let url = |n: u8| format!("https://127.0.0.{n}:{port}");
    // No slice yet: the seed stays.
    wait_for(vec![url(1)]);
    let slice = |addresses: &[&str]| {
        serde_json::json!({
            "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": addresses.iter().map(|a| serde_json::json!({"addresses": [a], "conditions": {"ready": true}})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        })
    };
    store
        .create(
            kprox_testkit::Resource::ENDPOINT_SLICES,
            "default",
            slice(&["127.0.0.1", "127.0.0.2", "127.0.0.3"]),
        )
        .expect("slice");
    wait_for(vec![url(1), url(2), url(3)]);
    // The seed apiserver dies; the discovered ones carry the traffic.
    trio.servers[0].set_behaviour(Behaviour::Refuse).await;
    let client = client();
    for _ in 0..20 {
        let request = http::Request::get(kprox.url("/api/v1/namespaces/default/pods"))
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .expect("request");
        assert_eq!(
            client.request(request).await.expect("response").status(),
            200
        );
    }
    // The control plane shrinks.
    store
        .update(
            kprox_testkit::Resource::ENDPOINT_SLICES,
            "default",
            "kubernetes",
            slice(&["127.0.0.2"]),
        )
        .expect("update");
    wait_for(vec![url(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_apiserver_loses_its_waiting_gets_to_the_others_and_keeps_its_posts() {
    let trio = Trio::start(|_| FakeOptions::default()).await;
    // Ordered failover: everything goes to the first apiserver while it is in rotation.
    let config = trio._dir.path().join("failover.toml");
    std::fs::write(&config, "[upstream]\npolicy = \"failover\"\n").expect("config");
    let config = config.display().to_string();
    let kprox = trio.kprox(&[
        "--log-level",
        "warn",
        "--config",
        &config,
        "--reject-methods",
        "^$",
    ]);
    let client = client();
    // Warm: the first apiserver answers.
    let warm = client
        .request(get_request(&kprox.url("/api/v1/namespaces/default/pods")))
        .await
        .expect("warm");
    assert_eq!(warm.status(), 200);
    // It stalls: accepts requests and answers nothing for 30 s, health checks included.
    trio.servers[0]
        .set_behaviour(Behaviour::Slow(Duration::from_secs(30)))
        .await;
    let started = Instant::now();
    let gets: Vec<_> = (0..10)
        .map(|_| {
            let request = get_request(&kprox.url("/api/v1/namespaces/default/pods"));
            let client = client.clone();
            tokio::spawn(async move {
                let response = client.request(request).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((response.status().as_u16(), started.elapsed()))
            })
        })
        .collect();
    let posts: Vec<_> = (0..3)
        .map(|n| {
            let url = kprox.url("/api/v1/namespaces/default/configmaps");
            tokio::spawn(async move {
                let client: Client<_, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).build_http();
                let body = format!(r#"{{"metadata":{{"name":"stalled-{n}"}}}}"#);
                let request = http::Request::post(url)
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                client.request(request).await.map(|r| r.status().as_u16())
            })
        })
        .collect();
    for get in gets {
        let (status, elapsed) = get.await.expect("task").expect("answered");
        assert_eq!(status, 200);
        assert!(
            elapsed < Duration::from_secs(2),
            "a GET waited {elapsed:?} for the stalled apiserver"
        );
    }
    // The POSTs reached the stalled apiserver and nowhere else: never re-sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for server in &trio.servers[1..] {
        let posts_seen = server
            .requests()
            .iter()
            .filter(|r| r.method == http::Method::POST)
            .count();
        assert_eq!(posts_seen, 0, "{} got a re-sent POST", server.url());
    }
    let at_stalled = trio.servers[0]
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::POST)
        .count();
    assert_eq!(at_stalled, 3);
    for post in posts {
        post.abort();
    }
}

fn get_request(url: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(url)
        .header("host", "localhost")
        .body(Empty::new())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_apiserver_gets_no_new_requests_and_finishes_its_streams() {
    draining(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_apiserver_over_http2_answers_no_client_and_finishes_its_streams() {
    draining(true).await;
}

/// An apiserver shutting down with `--shutdown-send-retry-after`: its 429 (with `Connection:
/// close` over HTTP/1.1, a GOAWAY over HTTP/2, and `Retry-After: 5`) takes it out at once.
async fn draining(http2: bool) {
    let trio = Trio::start(|_| FakeOptions {
        http2,
        ..Default::default()
    })
    .await;
    let config = trio._dir.path().join("failover.toml");
    std::fs::write(&config, "[upstream]\npolicy = \"failover\"\n").expect("config");
    let config = config.display().to_string();
    let kprox = trio.kprox(&["--log-level", "warn", "--config", &config]);
    let client = client();
    // A watch streams from the first apiserver before it starts shutting down.
    let rv = trio.servers[0].store().resource_version();
    let watch = client
        .request(get_request(&kprox.url(&format!(
            "/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"
        ))))
        .await
        .expect("watch");
    assert_eq!(watch.status(), 200);
    trio.servers[0].set_behaviour(Behaviour::Draining).await;
    let gets_before = trio.servers[0]
        .requests_to("/api/v1/namespaces/default/pods/")
        .len();
    for _ in 0..20 {
        let response = client
            .request(get_request(
                &kprox.url("/api/v1/namespaces/default/pods/alpha"),
            ))
            .await
            .expect("get");
        assert_eq!(response.status(), 200, "a client saw the draining answer");
    }
    // One request learnt that it drains; no other went there.
    let gets_after = trio.servers[0]
        .requests_to("/api/v1/namespaces/default/pods/")
        .len();
    assert!(
        gets_after - gets_before <= 1,
        "{} requests reached the draining apiserver",
        gets_after - gets_before
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while !kprox.stderr().contains("apiserver taken out of rotation") {
        assert!(
            Instant::now() < deadline,
            "never taken out: {}",
            kprox.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stream it was already serving goes on.
    let store = trio.servers[0].store();
    let mut pod = store.get(Resource::PODS, "default", "alpha").expect("pod");
    pod["metadata"]["labels"] = serde_json::json!({"during": "drain"});
    store
        .update(Resource::PODS, "default", "alpha", pod)
        .expect("update");
    let mut body = watch.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the watch still streams")
        .expect("a frame")
        .expect("no error");
    let event = String::from_utf8_lossy(frame.data_ref().expect("data")).into_owned();
    assert!(
        event.contains("\"MODIFIED\"") && event.contains("drain"),
        "{event}"
    );
    let watch_requests = trio
        .servers
        .iter()
        .map(|s| s.requests_to("/api/v1/namespaces/default/pods?watch").len())
        .collect::<Vec<_>>();
    assert_eq!(watch_requests, [1, 0, 0], "the watch was not moved");
}
