//! REFERENCE.md §3, the security bar: each attack sent over a real socket to a real kprox,
//! with the outcome asserted on both sides (what the client got, what the apiserver saw).

mod support;

use std::net::TcpStream;
use std::time::Duration;

use kprox_testkit::FakeOptions;
use support::raw::exchange_async;
use support::{Cluster, Kprox, TOKEN, ok_stdout, run, status_of};

async fn started() -> (Cluster, Kprox) {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    (cluster, kprox)
}

// §3.3: foreign, empty or mismatched Host / absolute-form authority → 403 (DNS rebinding).
#[tokio::test(flavor = "multi_thread")]
async fn foreign_missing_or_mismatched_hosts_are_refused() {
    let (cluster, kprox) = started().await;
    let a = &kprox.address;
    for (request, why) in [
        (
            "GET /api HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            "foreign host",
        ),
        (
            "GET /api HTTP/1.1\r\nHost: localhost.evil.example:8001\r\nConnection: close\r\n\r\n",
            "lookalike host",
        ),
        (
            "GET /api HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
            "empty host",
        ),
        ("GET /api HTTP/1.1\r\nConnection: close\r\n\r\n", "no host"),
        (
            "GET http://evil.example/api HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            "absolute target, other authority",
        ),
    ] {
        let raw = exchange_async(a, request.to_owned()).await;
        assert!(raw.status == 403 || raw.status == 400, "{why}: {}", raw.all);
    }
    assert_eq!(
        cluster.server.requests_to("/api").len(),
        0,
        "a refused request reached the apiserver"
    );

    let raw = exchange_async(
        a,
        "GET /api HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(raw.status_reason(), "Forbidden");
    assert!(
        raw.body.contains("accept-hosts"),
        "the rejection names the rule: {}",
        raw.body
    );

    // kubectl proxy rejects [::1]:8001 (kubernetes#77496); kprox accepts it.
    let raw = exchange_async(
        a,
        "GET /api HTTP/1.1\r\nHost: [::1]:8001\r\nConnection: close\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.all);
}

// §3.4: foreign Origin or Sec-Fetch-Site: cross-site on an unsafe method or upgrade → 403;
// never Access-Control-Allow-Origin: * from kprox.
#[tokio::test(flavor = "multi_thread")]
async fn cross_site_writes_and_upgrades_are_refused() {
    let (cluster, kprox) = started().await;
    let a = &kprox.address;
    let body = r#"{"metadata":{"name":"xsrf"}}"#;
    for extra in [
        "Origin: https://evil.example\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Origin: null\r\n",
    ] {
        let request = format!(
            "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let raw = exchange_async(a, request).await;
        assert_eq!(raw.status, 403, "{extra}: {}", raw.all);
        let ws = format!(
            "GET /api/v1/namespaces/default/pods/alpha/log HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let raw = exchange_async(a, ws).await;
        assert_eq!(raw.status, 403, "websocket with {extra}: {}", raw.all);
    }
    assert!(
        cluster
            .server
            .store()
            .get(kprox_testkit::Resource::CONFIG_MAPS, "default", "xsrf")
            .is_err()
    );

    // The same page may still read, and kprox adds no CORS header.
    let raw = exchange_async(a, "GET /api HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n".to_owned()).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("access-control-allow-origin"), None);
}

// §3.5 and §3.6: every encoding trick on .../exec is refused or normalised before the filter,
// node-proxy exec routes and WebSocket-GET exec are covered by the default deny.
#[tokio::test(flavor = "multi_thread")]
async fn exec_path_tricks_never_reach_the_apiserver() {
    let (cluster, kprox) = started().await;
    let a = &kprox.address;
    let base = "/api/v1/namespaces/default/pods/alpha";
    let tricks = [
        format!("{base}/exec"),
        "/api/v1/namespaces/default/pods//alpha//exec".to_owned(),
        format!("{base}/./exec"),
        format!("{base}/x/../exec"),
        format!("{base}%2Fexec"),
        format!("{base}/%65xec"),
        format!("{base}/%65%78%65%63"),
        format!("{base}/exec/"),
        format!("{base}/exec;jsessionid=1"),
        format!("{base}/exec%3B"),
        format!("{base}\\exec"),
        format!("{base}/exec%00"),
        format!("{base}/%2e/exec"),
        format!("{base}/attach"),
        "/api/v1/nodes/node-1/proxy/exec/default/alpha/main".to_owned(),
        "/api/v1/nodes/node-1/proxy/run/default/alpha/main".to_owned(),
        "/api/v1/nodes/node-1/proxy/portForward/default/alpha".to_owned(),
        "/api/v1/nodes/node-1/proxy/attach/default/alpha/main".to_owned(),
    ];
    for path in &tricks {
        for method in ["POST", "GET"] {
            let request = format!(
                "{method} {path}?command=id&stdout=true HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let raw = exchange_async(a, request).await;
            assert!(
                raw.status == 403 || raw.status == 400,
                "{method} {path} answered {}",
                raw.status
            );
        }
        let ws = format!(
            "GET {path}?command=id HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
        );
        let raw = exchange_async(a, ws).await;
        assert!(
            raw.status == 403 || raw.status == 400,
            "websocket GET {path} answered {}",
            raw.status
        );
    }
    // Case: the apiserver's paths are case-sensitive, so EXEC is not exec; kprox refuses it
    // all the same (reject-paths compare case-insensitively: no real route differs by case).
    let raw = exchange_async(a, format!("POST {base}/EXEC HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(raw.status, 403, "{}", raw.all);
    let seen: Vec<String> = cluster
        .server
        .requests()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    for uri in &seen {
        let path = uri.split('?').next().unwrap_or_default();
        assert!(
            !path.ends_with("/exec") && !path.contains("/exec/") && !path.contains("proxy/"),
            "reached the apiserver: {uri}"
        );
    }
}

// §3.7, §3.8, §3.9: exactly one Authorization, kprox's; every Impersonate-* (any case,
// repeated) and X-Remote-* removed; Connection cannot remove what kprox adds.
#[tokio::test(flavor = "multi_thread")]
async fn client_identity_headers_never_reach_the_apiserver() {
    let (cluster, kprox) = started().await;
    let request = "GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: localhost\r\n\
        Authorization: Bearer stolen\r\nauthorization: Basic YWRtaW46YWRtaW4=\r\n\
        Impersonate-User: admin\r\nimpersonate-user: root\r\nIMPERSONATE-GROUP: system:masters\r\n\
        Impersonate-Uid: 0\r\nImpersonate-Extra-Scopes: all\r\nX-Remote-User: admin\r\nx-remote-group: system:masters\r\n\
        Connection: close, Authorization, Impersonate-User\r\n\r\n";
    let raw = exchange_async(&kprox.address, request.to_owned()).await;
    assert_eq!(raw.status, 200, "{}", raw.all);
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("reached");
    let auth: Vec<_> = seen
        .headers
        .get_all("authorization")
        .iter()
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(auth, [format!("Bearer {TOKEN}")]);
    for name in seen.headers.keys() {
        assert!(
            !name.as_str().starts_with("impersonate-") && !name.as_str().starts_with("x-remote-"),
            "{name} reached the apiserver"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pass_client_credentials_restores_kubectls_forwarding() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--pass-client-credentials"]);
    assert!(
        kprox.stderr().contains("pass-client-credentials is on") || {
            std::thread::sleep(Duration::from_millis(200));
            kprox.stderr().contains("pass-client-credentials is on")
        }
    );
    let raw = exchange_async(&kprox.address, "GET /version HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer client-own\r\nImpersonate-User: bob\r\nConnection: close\r\n\r\n".to_owned()).await;
    assert_eq!(raw.status, 200);
    let seen = cluster
        .server
        .requests_to("/version")
        .pop()
        .expect("reached");
    assert_eq!(
        seen.headers.get("authorization").map(|v| v.as_bytes()),
        Some(&b"Bearer client-own"[..])
    );
    assert_eq!(
        seen.headers.get("impersonate-user").map(|v| v.as_bytes()),
        Some(&b"bob"[..])
    );
    // Without a client credential, kprox's own is used.
    exchange_async(
        &kprox.address,
        "GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_owned(),
    )
    .await;
    let seen = cluster
        .server
        .requests_to("/version")
        .pop()
        .expect("reached");
    assert_eq!(
        seen.headers
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("").to_owned()),
        Some(format!("Bearer {TOKEN}"))
    );
}

// §3.15: hop-by-hop headers stripped in both directions.
#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let cluster = Cluster::start_with(FakeOptions {
        http2: false,
        ..Default::default()
    })
    .await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let request = "GET /testkit/echo?hop-by-hop=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Client-Secret\r\n\
        X-Client-Secret: 1\r\nKeep-Alive: timeout=9\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\r\n";
    let raw = exchange_async(&kprox.address, request.to_owned()).await;
    assert_eq!(raw.status, 200, "{}", raw.all);
    let seen = cluster
        .server
        .requests_to("/testkit/echo")
        .pop()
        .expect("reached");
    for gone in [
        "x-client-secret",
        "keep-alive",
        "proxy-authorization",
        "te",
        "proxy-connection",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "request header {gone} reached the apiserver"
        );
    }
    for gone in ["x-upstream-secret", "keep-alive", "proxy-authenticate"] {
        assert_eq!(
            raw.header(gone),
            None,
            "response header {gone} reached the client"
        );
    }
}

// §3.1: an upgrade answered without 101: response relayed, client connection closed, and the
// request pipelined behind it never reaches the apiserver (CVE-2018-1002105).
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_upgrade_closes_the_connection_and_drops_pipelined_bytes() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--reject-paths", "^$"]);
    let request = "GET /api/v1/namespaces/default/pods/nonexistent/exec?command=id HTTP/1.1\r\nHost: localhost\r\n\
        Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n\
        GET /api/v1/namespaces/default/secrets HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let raw = exchange_async(&kprox.address, request.to_owned()).await;
    assert_eq!(raw.status, 404, "{}", raw.all);
    assert_eq!(
        raw.all.matches("HTTP/1.1 ").count(),
        1,
        "the pipelined request was answered: {}",
        raw.all
    );
    assert_eq!(
        raw.header("connection").map(|c| c.to_ascii_lowercase()),
        Some("close".to_owned())
    );
    assert!(
        cluster
            .server
            .requests_to("/api/v1/namespaces/default/secrets")
            .is_empty(),
        "pipelined bytes reached the apiserver"
    );
}

// §3.2: only websocket and SPDY/3.1 upgrades; h2c and others rejected.
#[tokio::test(flavor = "multi_thread")]
async fn h2c_and_unknown_upgrades_are_refused() {
    let (cluster, kprox) = started().await;
    for upgrade in ["h2c", "foo/1", "websocket, h2c", "TLS/1.2"] {
        let request = format!(
            "GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        );
        let raw = exchange_async(&kprox.address, request).await;
        assert_eq!(raw.status, 400, "{upgrade}: {}", raw.all);
        assert!(raw.body.contains("not supported"), "{}", raw.body);
    }
    assert!(cluster.server.requests_to("/version").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn static_files_are_served_with_types_and_no_way_out() {
    let cluster = Cluster::start().await;
    let www = cluster.dir.path().join("www");
    std::fs::create_dir_all(www.join("css")).expect("mkdir");
    std::fs::write(www.join("index.html"), "<h1>kprox</h1>").expect("write");
    std::fs::write(www.join("css/site.css"), "h1 { color: teal }").expect("write");
    std::fs::write(cluster.dir.path().join("secret.txt"), "do not serve").expect("write");
    let kprox = cluster.kprox(&["--www", &www.display().to_string(), "--www-prefix", "/ui/"]);
    let page = ok_stdout(
        &run("curl", &["-sS", "--fail", "-D", "-", &kprox.url("/ui/")]),
        "curl index",
    );
    assert!(
        page.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{page}"
    );
    assert!(page.contains("<h1>kprox</h1>"));
    let css = ok_stdout(
        &run(
            "curl",
            &["-sS", "--fail", "-D", "-", &kprox.url("/ui/css/site.css")],
        ),
        "curl css",
    );
    assert!(
        css.to_ascii_lowercase().contains("content-type: text/css"),
        "{css}"
    );
    for escape in [
        "/ui/../secret.txt",
        "/ui/%2e%2e/secret.txt",
        "/ui/css/../../secret.txt",
        "/ui/..%2fsecret.txt",
    ] {
        let out = ok_stdout(
            &run("curl", &["-sS", "--path-as-is", &kprox.url(escape)]),
            "curl escape",
        );
        assert!(
            !out.contains("do not serve"),
            "{escape} escaped the directory"
        );
    }
    let missing = status_of(&kprox.url("/ui/nope.html"));
    assert_eq!(missing, "404");
}

#[tokio::test(flavor = "multi_thread")]
async fn append_server_path_prefixes_the_kubeconfig_servers_path() {
    let cluster = Cluster::start().await;
    let path = cluster.dir.path().join("with-path");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster(
            "fake",
            &format!("{}/clusters/one", cluster.server.url()),
            &cluster.server.ca_pem(),
        )
        .user_token("u", TOKEN)
        .context("c", "fake", "u")
        .current("c")
        .write(&path)
        .expect("write");
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &path.display().to_string(),
        "--append-server-path",
    ]);
    let _ = run(
        "curl",
        &["-sS", "-o", "/dev/null", &kprox.url("/api/v1/pods?limit=1")],
    );
    assert_eq!(
        cluster
            .server
            .requests_to("/clusters/one/api/v1/pods")
            .len(),
        1,
        "{:?}",
        cluster
            .server
            .requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_remote_address_is_refused_without_an_explicit_opt_in() {
    let output = support::kprox_output(&["--address", "0.0.0.0", "config", "check"], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("key `listen.address`")
            && stderr.contains("--insecure-allow-unauthenticated-remote"),
        "{stderr}"
    );
}

// §3.19: a connection flood past the cap is answered 503 at once; the admin listener answers.
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_get_503_and_the_admin_listener_still_answers() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--max-connections", "3"]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&kprox.address).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let begun = std::time::Instant::now();
    let raw = exchange_async(
        &kprox.address,
        "GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(raw.status, 503, "{}", raw.all);
    assert_eq!(raw.header("retry-after").as_deref(), Some("1"));
    assert!(
        begun.elapsed() < Duration::from_secs(1),
        "the refusal took {:?}",
        begun.elapsed()
    );
    let admin = kprox.admin_url();
    let begun = std::time::Instant::now();
    let live = ok_stdout(
        &run(
            "curl",
            &["-sS", "--max-time", "1", &format!("{admin}/livez")],
        ),
        "admin",
    );
    assert_eq!(live.trim(), "ok");
    assert!(begun.elapsed() < Duration::from_secs(1));
    let metrics = ok_stdout(
        &run("curl", &["-sS", &format!("{admin}/metrics")]),
        "metrics",
    );
    assert!(
        metrics.contains("kprox_listener_rejections_total 1"),
        "{metrics}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let raw = exchange_async(
        &kprox.address,
        "GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(raw.status, 200, "capacity came back: {}", raw.all);
}

// §3.11: an upstream redirect is relayed, never followed with credentials.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_redirect_is_relayed_not_followed() {
    let (cluster, kprox) = started().await;
    let raw = exchange_async(
        &kprox.address,
        "GET /testkit/redirect HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(raw.status, 302, "{}", raw.all);
    assert_eq!(
        raw.header("location").as_deref(),
        Some("https://elsewhere.example/steal")
    );
    let seen: Vec<String> = cluster
        .server
        .requests()
        .into_iter()
        .map(|r| r.uri)
        .filter(|u| !u.starts_with("/readyz"))
        .collect();
    assert_eq!(seen, ["/testkit/redirect"], "kprox followed the redirect");
}
