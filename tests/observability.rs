//! kprox's admin listener as operators meet it: promtool and a real Prometheus server scraping
//! /metrics, probes on /livez and /readyz, the status page in headless Chromium, the access log.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kprox_testkit::{Behaviour, FakeApiServer, FakeOptions};
use support::{Cluster, Kprox, TOKEN, ok_stdout, require_tool, run};

fn get(url: &str) -> (u16, String) {
    let output = run("curl", &["-sS", "-w", "\n%{http_code}", url]);
    let text = ok_stdout(&output, "curl");
    let (body, code) = text.rsplit_once('\n').expect("code");
    (code.parse().expect("numeric code"), body.to_owned())
}

fn traffic(kprox: &Kprox, n: usize) {
    for _ in 0..n {
        let (code, _) = get(&kprox.url("/api/v1/namespaces/default/pods"));
        assert_eq!(code, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_the_metrics_and_they_count_traffic() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    traffic(&kprox, 5);
    let _ = get(&kprox.url("/api/v1/namespaces/default/pods/alpha/exec"));
    let (code, metrics) = get(&format!("{}/metrics", kprox.admin_url()));
    assert_eq!(code, 200);
    let file = cluster.dir.path().join("metrics.txt");
    std::fs::write(&file, &metrics).expect("write");
    let check = Command::new(require_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let endpoint = cluster.server.url();
    assert!(
        metrics.contains(&format!(
            r#"kprox_requests_total{{code="2xx",endpoint="{endpoint}",method="GET"}} 5"#
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kprox_filter_rejections_total{rule="reject-paths"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(r#"kprox_upstream_up{{endpoint="{endpoint}"}} 1"#)),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            r#"kprox_upstream_tls_handshakes_total{{endpoint="{endpoint}"}} 1"#
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(TOKEN),
        "a credential leaked into /metrics"
    );
    assert!(
        !metrics.contains("/api/v1"),
        "a request path became a label"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_catalogue_lists_exactly_the_exposed_metrics() {
    let cluster = Cluster::start().await;
    // Every context served, and one request under a context's prefix, so that every family
    // has a series.
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg(), "--all-contexts"]);
    traffic(&kprox, 1);
    let (code, _) = get(&kprox.url("/clusters/fake/version"));
    assert_eq!(code, 200, "a request under the current context's prefix");
    let (_, metrics) = get(&format!("{}/metrics", kprox.admin_url()));
    let exposed: BTreeSet<(String, String)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README");
    let table = readme
        .split("<!-- metrics:begin -->")
        .nth(1)
        .and_then(|t| t.split("<!-- metrics:end -->").next())
        .expect("catalogue markers");
    let documented: BTreeSet<(String, String)> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect();
    assert_eq!(documented, exposed, "README catalogue and /metrics differ");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_kprox() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let target = kprox.admin_url().trim_start_matches("http://").to_owned();
    let dir = cluster.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: kprox\n  static_configs:\n  - targets: ['{target}']\n")).expect("write");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut prometheus = Command::new(require_tool("prometheus"))
        .args([
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    traffic(&kprox, 3);
    let query = |q: &str| {
        let out = run(
            "curl",
            &[
                "-sS",
                "--get",
                "--data-urlencode",
                &format!("query={q}"),
                &format!("http://127.0.0.1:{port}/api/v1/query"),
            ],
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut up, mut requests) = (String::new(), 0.0);
    while Instant::now() < deadline {
        let u = query("up{job=\"kprox\"}");
        up = u["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let r = query("sum(kprox_requests_total)");
        requests = r["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if up == "1" && requests > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(up, "1", "Prometheus did not see kprox up");
    assert!(
        requests >= 3.0,
        "kprox_requests_total in Prometheus: {requests}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_follows_the_apiservers_and_livez_the_process() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let admin = kprox.admin_url();
    assert_eq!(get(&format!("{admin}/livez")).0, 200);
    assert_eq!(get(&format!("{admin}/readyz")).0, 200);
    cluster.server.set_behaviour(Behaviour::Refuse).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let (code, body) = loop {
        let (code, body) = get(&format!("{admin}/readyz"));
        if code == 503 || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no apiserver is in rotation"), "{body}");
    assert_eq!(get(&format!("{admin}/livez")).0, 200);
    let status: serde_json::Value =
        serde_json::from_str(&get(&format!("{admin}/status")).1).expect("json");
    assert_eq!(status["endpoints"][0]["up"], false);
    assert!(
        status["endpoints"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_names_requests_but_no_secret() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--access-log"]);
    let _ = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-H",
            "Authorization: Bearer client-secret-xyz",
            &kprox.url("/api/v1/namespaces/default/pods?limit=1"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !kprox.stderr().contains("kprox::access") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = kprox.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("kprox::access"))
        .unwrap_or_else(|| panic!("no access line: {log}"));
    assert!(
        line.contains("method=GET")
            && line.contains("path=/api/v1/namespaces/default/pods")
            && line.contains("status=200"),
        "{line}"
    );
    assert!(line.contains(&cluster.server.url()), "{line}");
    assert!(
        !log.contains("client-secret-xyz") && !log.contains(TOKEN),
        "a credential reached the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_in_chromium_shows_an_apiserver_going_down() {
    let cluster = kprox_testkit::FakeCluster::start(3, TOKEN, |n| FakeOptions {
        ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8 + 1)),
        ..Default::default()
    })
    .await
    .expect("fake apiservers");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig("c", &kubeconfig)
        .expect("kubeconfig");
    let servers = cluster.servers.as_slice();
    let list = servers
        .iter()
        .map(FakeApiServer::url)
        .collect::<Vec<_>>()
        .join(",");
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--server",
        &list,
    ]);
    let page = format!("{}/", kprox.admin_url());
    // Load through kprox, so that the charts have something to draw.
    traffic(&kprox, 30);
    let profile = dir.path().join("chromium-profile");
    let chromium = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push(page.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("chromium", &refs)
    };
    let dom = ok_stdout(&chromium(&["--dump-dom"]), "chromium --dump-dom");
    for server in servers {
        assert!(
            dom.contains(&format!("data-endpoint=\"{}\"", server.url())),
            "endpoint {} missing from the page: {dom}",
            server.url()
        );
    }
    assert_eq!(dom.matches("<tr class=\"up\"").count(), 3, "{dom}");

    servers[1].set_behaviour(Behaviour::Refuse).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dom = loop {
        let dom = ok_stdout(&chromium(&["--dump-dom"]), "chromium --dump-dom");
        if dom.contains(&format!(
            "<tr class=\"down\" data-endpoint=\"{}\"",
            servers[1].url()
        )) || Instant::now() > deadline
        {
            break dom;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        dom.contains(&format!(
            "<tr class=\"down\" data-endpoint=\"{}\"",
            servers[1].url()
        )),
        "the killed apiserver is not shown unhealthy: {dom}"
    );
    assert_eq!(dom.matches("<tr class=\"up\"").count(), 2);
    assert!(
        dom.contains("taken out of rotation"),
        "no failover listed: {dom}"
    );
    // The charts: drawn, one latency series pair per apiserver, the failover marked on each.
    for id in ["chart-rate", "chart-latency", "chart-watches"] {
        assert!(dom.contains(&format!("<svg id=\"{id}\"")), "no {id}: {dom}");
    }
    assert!(
        dom.matches("class=\"failover\"").count() >= 3,
        "the failover is not marked on the charts: {dom}"
    );
    for server in servers {
        assert!(
            dom.contains(&format!("data-series=\"{} p50\"", server.url())),
            "no latency line for {}: {dom}",
            server.url()
        );
    }

    let artefacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artefacts");
    std::fs::create_dir_all(&artefacts).expect("mkdir");
    let shot = artefacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    ok_stdout(
        &chromium(&[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1200",
        ]),
        "chromium --screenshot",
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot looks empty ({} bytes)",
        png.len()
    );
    println!("status page screenshot: {}", shot.display());
}

/// `name{labels} value` lines of a metric family, as (labels, value).
fn series(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_data_agrees_with_metrics_from_the_first_seconds() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let mut watch = Command::new(require_tool("curl"))
        .args([
            "-sSN",
            &kprox.url("/api/v1/namespaces/default/pods?watch=1"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl watch");
    traffic(&kprox, 30);
    let deadline = Instant::now() + Duration::from_secs(5);
    while kprox.metric("kprox_watches_open") != Some(1.0) {
        assert!(Instant::now() < deadline, "the watch never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Right after the traffic, well inside the first sampling interval of a chart.
    let (_, status) = get(&format!("{}/status", kprox.admin_url()));
    let (_, metrics) = get(&format!("{}/metrics", kprox.admin_url()));
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let total: f64 = series(&metrics, "kprox_requests_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(status["requests_total"].as_f64(), Some(total), "{status}");
    assert!(
        status["requests_per_second"].as_f64().unwrap_or(0.0) > 1.0,
        "30 requests just now, but the rate says {}",
        status["requests_per_second"]
    );
    assert_eq!(status["watches_open"], 1);
    // The charts' apiservers are the metric's, and its answered count shows in them.
    let answered = series(&metrics, "kprox_upstream_response_seconds_count");
    let labelled: Vec<String> = answered
        .iter()
        .map(|(labels, _)| {
            labels
                .trim_start_matches("{endpoint=\"")
                .trim_end_matches("\"}")
                .to_owned()
        })
        .collect();
    assert_eq!(labelled, [cluster.server.url()], "{metrics}");
    assert!(answered[0].1 >= 30.0, "{metrics}");
    let charted: Vec<&str> = status["charts"]["latency"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["endpoint"].as_str())
        .collect();
    assert_eq!(charted, [cluster.server.url()], "{status}");
    // After a sample or two, the last points are the gauges' values and a latency.
    std::thread::sleep(Duration::from_millis(6500));
    let (_, status) = get(&format!("{}/status", kprox.admin_url()));
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let charts = &status["charts"];
    let points = charts["seconds_ago"].as_array().map_or(0, Vec::len);
    assert!(points >= 3, "{charts}");
    assert_eq!(charts["watches_open"][points - 1], 1, "{charts}");
    let rates: Vec<f64> = charts["requests_per_second"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    assert!(
        rates.iter().any(|r| *r > 1.0),
        "the burst shows in the rate chart: {charts}"
    );
    let p50s: Vec<f64> = charts["latency"][0]["p50_ms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    assert!(
        !p50s.is_empty() && p50s.iter().all(|p| *p > 0.0 && *p < 1000.0),
        "{charts}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--log-format", "json", "--access-log"]);
    traffic(&kprox, 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !kprox.stderr().contains("kprox::access") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = kprox.stderr();
    let objects: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        objects
            .iter()
            .any(|o| o["target"] == "kprox::access" && o["status"] == 200),
        "{log}"
    );
    assert!(
        objects
            .iter()
            .all(|o| o["level"].is_string() && o["timestamp"].is_string()),
        "{log}"
    );
}
