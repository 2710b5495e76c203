//! kprox forwarding one apiserver, driven by curl and wget over real sockets.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kprox_testkit::{Behaviour, FakeOptions};
use support::{Cluster, Kprox, TOKEN, fetch_ok, memory_kib, ok_stdout, run};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_gets_discovery_and_lists_through_kprox() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let api = json(&ok_stdout(
        &run("curl", &["-sS", "--fail", &kprox.url("/api")]),
        "curl /api",
    ));
    assert_eq!(api["kind"], "APIVersions");
    let pods = json(&ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                &kprox.url("/api/v1/namespaces/default/pods"),
            ],
        ),
        "curl pods",
    ));
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn wget_gets_a_pod() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let pod = json(&ok_stdout(
        &run(
            "wget",
            &[
                "-q",
                "-O",
                "-",
                &kprox.url("/api/v1/namespaces/default/pods/alpha"),
            ],
        ),
        "wget pod",
    ));
    assert_eq!(pod["metadata"]["name"], "alpha");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_and_wget_post_create_objects() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let url = kprox.url("/api/v1/namespaces/default/configmaps");
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-curl"},"data":{"k":"v"}}"#;
    let created = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data",
                body,
                &url,
            ],
        ),
        "curl POST",
    );
    assert_eq!(json(&created)["metadata"]["name"], "from-curl");
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-wget"}}"#;
    let created = ok_stdout(
        &run(
            "wget",
            &[
                "-q",
                "-O",
                "-",
                "--header=Content-Type: application/json",
                &format!("--post-data={body}"),
                &url,
            ],
        ),
        "wget POST",
    );
    assert_eq!(json(&created)["metadata"]["name"], "from-wget");
    cluster
        .server
        .store()
        .get(kprox_testkit::Resource::CONFIG_MAPS, "default", "from-curl")
        .expect("stored");
    cluster
        .server
        .store()
        .get(kprox_testkit::Resource::CONFIG_MAPS, "default", "from-wget")
        .expect("stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_follows_a_watch_stream() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let url = kprox.url("/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=2");
    let store = cluster.server.store().clone();
    let adder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        store.add_pod("default", "gamma").expect("add");
    });
    let output =
        tokio::task::spawn_blocking(move || run("curl", &["-sS", "-N", "--max-time", "10", &url]))
            .await
            .expect("curl");
    adder.await.expect("adder");
    let text = ok_stdout(&output, "curl watch");
    let events: Vec<serde_json::Value> = text.lines().map(json).collect();
    let names: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["object"]["metadata"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("ADDED", "alpha"), ("ADDED", "beta"), ("ADDED", "gamma")]
    );
}

/// Sends a raw HTTP/1.1 request and returns the stream positioned after the response headers.
fn raw_request(address: &str, request: &str) -> (BufReader<TcpStream>, String) {
    let mut stream = TcpStream::connect(address).expect("connect to kprox");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    (reader, head)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_event_reaches_the_client_within_50ms() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let rv = cluster.server.store().resource_version();
    let request = format!(
        "GET /api/v1/namespaces/default/pods?watch=1&resourceVersion={rv} HTTP/1.1\r\nHost: localhost\r\n\r\n"
    );
    let address = kprox.address.clone();
    let (mut reader, head) = tokio::task::spawn_blocking(move || raw_request(&address, &request))
        .await
        .expect("request");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut delays = Vec::new();
    for i in 0..5 {
        let store = cluster.server.store().clone();
        let (delay, reader_back) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            store
                .add_pod("default", &format!("timed-{i}"))
                .expect("add");
            // Chunked framing: a size line, then the event line.
            let mut line = String::new();
            while !line.contains("timed-") {
                line.clear();
                reader.read_line(&mut line).expect("event");
            }
            (started.elapsed(), reader)
        })
        .await
        .expect("timing");
        reader = reader_back;
        delays.push(delay);
    }
    delays.sort();
    let median = delays[delays.len() / 2];
    assert!(
        median < Duration::from_millis(50),
        "median watch event delay {median:?} (all: {delays:?})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_are_rewritten_and_the_query_is_kept_byte_for_byte() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let query = "labelSelector=app%3Dalpha%2Cenv%20in%20(a%2Cb)&limit=5&x=%2F%3F";
    let url = kprox.url(&format!("/api/v1/namespaces/default/pods?{query}"));
    let output = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            "-H",
            "Authorization: Bearer client-supplied",
            "-H",
            "Impersonate-User: admin",
            "-H",
            "IMPERSONATE-GROUP: system:masters",
            "-H",
            "X-Remote-User: admin",
            "-H",
            "Connection: X-Drop-Me, Authorization",
            "-H",
            "X-Drop-Me: 1",
            "-H",
            "Keep-Alive: timeout=5",
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            "-H",
            "X-Custom: kept",
            &url,
        ],
    );
    ok_stdout(&output, "curl with headers");
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("request reached the apiserver");
    assert_eq!(seen.uri, format!("/api/v1/namespaces/default/pods?{query}"));
    let auth: Vec<_> = seen.headers.get_all("authorization").iter().collect();
    assert_eq!(
        auth,
        [format!("Bearer {TOKEN}").as_str()],
        "exactly one Authorization, kprox's own"
    );
    for gone in [
        "impersonate-user",
        "impersonate-group",
        "x-remote-user",
        "x-drop-me",
        "keep-alive",
        "connection",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the apiserver"
        );
    }
    assert_eq!(
        seen.headers.get("x-custom").map(|v| v.as_bytes()),
        Some(&b"kept"[..])
    );
    assert_eq!(
        seen.headers.get("x-forwarded-for").map(|v| v.as_bytes()),
        Some(&b"203.0.113.9, 127.0.0.1"[..])
    );
    // HTTP/2 upstream: the apiserver's authority travels as :authority.
    assert_eq!(seen.version, http::Version::HTTP_2);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_is_the_apiservers_over_http1() {
    let cluster = Cluster::start_with(FakeOptions {
        http2: false,
        ..Default::default()
    })
    .await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    fetch_ok(&kprox.url("/version"));
    let seen = cluster
        .server
        .requests_to("/version")
        .pop()
        .expect("reached");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(
        seen.headers.get("host").map(|v| v.as_bytes()),
        Some(cluster.server.addr().to_string().as_bytes())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_sequential_gets_cost_a_handful_of_tls_handshakes() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let address = kprox.address.clone();
    tokio::task::spawn_blocking(move || {
        // One keep-alive client connection, 1000 requests in sequence.
        let mut stream = TcpStream::connect(&address).expect("connect");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        for _ in 0..1000 {
            stream
                .write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("send");
            let mut length = 0usize;
            let mut status = String::new();
            reader.read_line(&mut status).expect("status");
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("header");
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().expect("length");
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
        }
    })
    .await
    .expect("client");
    let handshakes = cluster.server.tls_handshakes();
    println!("TLS handshakes for 1000 GETs: {handshakes}");
    assert!(handshakes <= 2, "{handshakes} TLS handshakes for 1000 GETs");
}

// The first health check goes at once (even with checks a minute apart), so the connection a
// first request needs is open before it arrives, and that request uses it.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_connection_is_opened_at_start_and_serves_the_first_request() {
    let cluster = Cluster::start().await;
    let config = cluster.dir.path().join("kprox.toml");
    std::fs::write(&config, "[upstream]\nhealth_check_interval = \"60s\"\n").expect("write");
    let kprox = cluster.kprox(&["--config", &config.display().to_string()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cluster.server.requests_to("/readyz").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no health check within 5 s of start, with no request made"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cluster.server.tls_handshakes(), 1, "one connection opened");
    fetch_ok(&kprox.url("/version"));
    assert_eq!(
        cluster.server.tls_handshakes(),
        1,
        "the first request used the connection opened at start"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mib_response_streams_with_flat_memory() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    // Warm up so the baseline includes connections, TLS state and buffers.
    fetch_ok(&kprox.url("/testkit/blob?bytes=1048576"));
    let (before, _) = memory_kib(kprox.pid());
    let url = kprox.url("/testkit/blob?bytes=104857600");
    let output = tokio::task::spawn_blocking(move || {
        run(
            "curl",
            &[
                "-sS",
                "--fail",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                &url,
            ],
        )
    })
    .await
    .expect("curl");
    let size = ok_stdout(&output, "curl 100 MiB");
    assert_eq!(size.trim(), "104857600");
    let (after, _) = memory_kib(kprox.pid());
    println!("kprox peak RSS: {before} KiB before, {after} KiB after a 100 MiB response");
    assert!(
        after < before + 32 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_apiserver_answers_a_status_body() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    cluster.server.set_behaviour(Behaviour::Refuse).await;
    let output = run(
        "curl",
        &[
            "-sS",
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
            &kprox.url("/api/v1/namespaces/default/pods"),
        ],
    );
    let text = ok_stdout(&output, "curl");
    let (head, rest) = text.split_once("\r\n\r\n").expect("headers");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let (body, code) = rest.rsplit_once('\n').expect("code line");
    assert_eq!(code, "503");
    let status = json(body);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["apiVersion"], "v1");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["code"], 503);
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert!(
        status["message"].as_str().unwrap_or("").contains("refused"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_apiserver_past_the_connect_timeout_answers_504() {
    let cluster = Cluster::start().await;
    cluster.server.set_behaviour(Behaviour::Blackhole).await;
    let config = cluster.dir.path().join("kprox.toml");
    std::fs::write(&config, "[upstream]\ntls_handshake_timeout = \"300ms\"\n").expect("write");
    let kprox = cluster.kprox(&["--config", &config.display().to_string()]);
    let text = ok_stdout(
        &run(
            "curl",
            &["-sS", "-w", "\n%{http_code}", &kprox.url("/version")],
        ),
        "curl",
    );
    let (body, code) = text.rsplit_once('\n').expect("code");
    assert_eq!(code, "504", "{body}");
    assert_eq!(json(body)["reason"], "Timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_cut_by_the_apiserver_is_cut_for_the_client_too() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    cluster.server.set_behaviour(Behaviour::CloseMidBody).await;
    let output = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            &kprox.url("/testkit/blob?bytes=1048576"),
        ],
    );
    assert!(
        !output.status.success(),
        "curl must see a broken transfer, not a clean end"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_from_the_kubeconfig_authenticates() {
    let cluster = Cluster::start_with(FakeOptions {
        tokens: vec![],
        ..Default::default()
    })
    .await;
    let client = cluster
        .server
        .pki()
        .client_cert("e2e-user", &["devs"])
        .expect("cert");
    let path = cluster.dir.path().join("cert-kubeconfig");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
        .user_cert("cert-user", &client.cert_pem, &client.key_pem)
        .context("fake", "fake", "cert-user")
        .current("fake")
        .write(&path)
        .expect("write");
    let kprox = Kprox::start(&["--kubeconfig", &path.display().to_string()]);
    fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("reached");
    assert!(seen.client_cert);
    assert!(!seen.headers.contains_key("authorization"));
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_never_sent_to_a_plain_http_apiserver() {
    let cluster = Cluster::start_with(FakeOptions {
        tls: false,
        require_auth: false,
        ..Default::default()
    })
    .await;
    let path = cluster.dir.path().join("plain-kubeconfig");
    std::fs::write(
        &path,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster:\n    server: {}\nusers:\n- name: u\n  user:\n    token: {TOKEN}\ncontexts:\n- name: p\n  context:\n    cluster: p\n    user: u\ncurrent-context: p\n", cluster.server.url()),
    )
    .expect("write");
    let kprox = Kprox::start(&["--kubeconfig", &path.display().to_string()]);
    fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("reached");
    assert!(
        !seen.headers.contains_key("authorization"),
        "a token went over plain HTTP"
    );
    assert!(
        kprox.stderr().contains("will not send credentials"),
        "{}",
        kprox.stderr()
    );
}
