//! The upstream against real fake apiservers: connection reuse, stream limits, failover of
//! requests that were never sent, and certificate verification.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use kprox_testkit::{Behaviour, FakeApiServer, FakeOptions, TestPki};
use kprox_upstream::{
    ConnectSettings, ErrorKind, HealthSettings, Policy, PoolSettings, RequestBody, RetrySettings,
    TlsSettings, Upstream, UpstreamSettings,
};

const TOKEN: &str = "upstream-test-token";

fn settings(servers: Vec<String>, pki: &TestPki) -> UpstreamSettings {
    UpstreamSettings {
        servers,
        tls: Some(TlsSettings {
            roots: vec![pki.ca_der()],
            server_name: None,
            insecure: false,
            identity: None,
        }),
        connect: ConnectSettings {
            connect_timeout: Duration::from_secs(2),
            tls_handshake_timeout: Duration::from_secs(2),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(15),
            proxy: None,
        },
        pool: PoolSettings {
            max_streams: 100,
            spread_streams: 16,
            max_connections: 4,
            idle_timeout: Duration::from_secs(90),
        },
        policy: Policy::Failover,
        preferred: None,
        health: HealthSettings {
            interval: Duration::from_millis(400),
            timeout: Duration::from_millis(500),
            fall: 2,
            rise: 2,
            ejection_base: Duration::from_secs(1),
            ejection_max: Duration::from_secs(30),
        },
        retry: RetrySettings {
            budget_percent: 20,
            min_per_second: 10,
            retry_after_cap: Duration::from_secs(1),
            max_attempts: 3,
        },
        authorize: std::sync::Arc::new(|headers: &mut http::HeaderMap| {
            headers.insert(
                "authorization",
                http::HeaderValue::from_static("Bearer upstream-test-token"),
            );
        }),
        watch_resume: true,
        discover: false,
        metrics: std::sync::Arc::new(kprox_telemetry::Metrics::new("test")),
    }
}

async fn fake(options: FakeOptions) -> FakeApiServer {
    FakeApiServer::start(FakeOptions {
        tokens: vec![TOKEN.into()],
        ..options
    })
    .await
    .expect("fake apiserver starts")
}

fn get(path: &str) -> Request<RequestBody> {
    Request::get(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("request")
}

async fn status_and_body(upstream: &std::sync::Arc<Upstream>, path: &str) -> (StatusCode, Bytes) {
    let response = upstream.send(get(path)).await.expect("sent");
    let status = response.status();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes(),
    )
}

#[tokio::test]
async fn a_thousand_sequential_gets_reuse_one_http2_connection() {
    let server = fake(FakeOptions::default()).await;
    let upstream = Upstream::new(settings(vec![server.url()], server.pki())).expect("upstream");
    tokio::spawn(upstream.clone().run());
    for _ in 0..1000 {
        let (status, _) = status_and_body(&upstream, "/api/v1/namespaces/default/pods").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        server.tls_handshakes(),
        1,
        "one TLS handshake for 1000 GETs over HTTP/2"
    );
    assert_eq!(
        server.requests_to("/api/v1/namespaces/default/pods").len(),
        1000
    );
}

#[tokio::test]
async fn http1_only_apiservers_get_pooled_connections_too() {
    let server = fake(FakeOptions {
        http2: false,
        ..Default::default()
    })
    .await;
    let upstream = Upstream::new(settings(vec![server.url()], server.pki())).expect("upstream");
    tokio::spawn(upstream.clone().run());
    for _ in 0..200 {
        let (status, _) = status_and_body(&upstream, "/version").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(
        server.tls_handshakes() <= 2,
        "handshakes: {}",
        server.tls_handshakes()
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.version == http::Version::HTTP_11)
    );
}

#[tokio::test]
async fn watches_at_the_stream_limit_make_a_new_connection_instead_of_queueing() {
    let server = fake(FakeOptions {
        max_concurrent_streams: Some(3),
        ..Default::default()
    })
    .await;
    let upstream = Upstream::new(settings(vec![server.url()], server.pki())).expect("upstream");
    tokio::spawn(upstream.clone().run());
    // Learn the limit: the first connection's SETTINGS arrive with its first response.
    status_and_body(&upstream, "/version").await;
    let mut watches = Vec::new();
    for _ in 0..3 {
        let response = upstream
            .send(get("/api/v1/namespaces/default/pods?watch=1"))
            .await
            .expect("watch");
        assert_eq!(response.status(), StatusCode::OK);
        watches.push(response);
    }
    // All three streams of the first connection are held by watches; a GET must still answer.
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        status_and_body(&upstream, "/version"),
    )
    .await;
    assert!(answered.is_ok(), "a GET queued behind watches");
    assert_eq!(server.tls_handshakes(), 2, "a second connection was opened");
    drop(watches);
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_connections_spread_requests_but_watches_pack() {
    let server = fake(FakeOptions::default()).await;
    let mut spread = settings(vec![server.url()], server.pki());
    spread.pool.spread_streams = 2;
    spread.pool.max_connections = 3;
    let upstream = Upstream::new(spread).expect("upstream");
    tokio::spawn(upstream.clone().run());
    status_and_body(&upstream, "/version").await;

    // Thirty watches: one connection holds them all.
    let mut watches = Vec::new();
    for _ in 0..30 {
        let response = upstream
            .send(get("/api/v1/namespaces/default/pods?watch=1"))
            .await
            .expect("watch");
        watches.push(response);
    }
    assert_eq!(
        server.tls_handshakes(),
        1,
        "watches pack onto one connection"
    );

    // Slow requests in waves: each finds the busy connection and asks for another, up to 3.
    server
        .set_behaviour(kprox_testkit::Behaviour::Slow(Duration::from_millis(150)))
        .await;
    for _ in 0..4 {
        let wave: Vec<_> = (0..12)
            .map(|_| {
                let upstream = upstream.clone();
                tokio::spawn(async move { status_and_body(&upstream, "/version").await.0 })
            })
            .collect();
        for request in wave {
            assert_eq!(request.await.expect("request"), StatusCode::OK);
        }
    }
    assert_eq!(
        server.tls_handshakes(),
        3,
        "busy traffic spread over max_connections connections, and no further"
    );
    drop(watches);
}

#[tokio::test]
async fn a_request_refused_by_one_endpoint_goes_to_the_next() {
    let pki = std::sync::Arc::new(TestPki::new("shared").expect("pki"));
    let down = fake(FakeOptions {
        pki: Some(pki.clone()),
        ..Default::default()
    })
    .await;
    let up = fake(FakeOptions {
        ip: "127.0.0.2".parse().expect("ip"),
        pki: Some(pki.clone()),
        ..Default::default()
    })
    .await;
    down.set_behaviour(Behaviour::Refuse).await;
    let upstream = Upstream::new(settings(vec![down.url(), up.url()], &pki)).expect("upstream");
    tokio::spawn(upstream.clone().run());
    for _ in 0..20 {
        let (status, _) = status_and_body(&upstream, "/version").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(up.requests_to("/version").len(), 20);
    assert_eq!(down.requests_to("/version").len(), 0);
}

#[tokio::test]
async fn all_endpoints_refusing_is_an_error_that_says_so() {
    let server = fake(FakeOptions::default()).await;
    server.set_behaviour(Behaviour::Refuse).await;
    let upstream = Upstream::new(settings(vec![server.url()], server.pki())).expect("upstream");
    tokio::spawn(upstream.clone().run());
    let error = upstream.send(get("/version")).await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::NoEndpoint);
    assert_eq!(error.http_status(), 503);
    assert!(
        error.to_string().contains("no apiserver is reachable"),
        "{error}"
    );
    assert!(error.to_string().contains("refused"), "{error}");
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused_with_a_tls_error() {
    let server = fake(FakeOptions::default()).await;
    let other = TestPki::new("someone-else").expect("pki");
    let upstream = Upstream::new(settings(vec![server.url()], &other)).expect("upstream");
    tokio::spawn(upstream.clone().run());
    let error = upstream
        .send(get("/version"))
        .await
        .expect_err("unverified");
    assert_eq!(error.kind(), ErrorKind::Tls);
    assert!(error.to_string().contains("certificate"), "{error}");
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn tls_server_name_verifies_one_name_across_addresses() {
    let server = fake(FakeOptions {
        extra_names: vec!["apiserver.example".into()],
        ..Default::default()
    })
    .await;
    let mut s = settings(vec![server.url()], server.pki());
    if let Some(tls) = s.tls.as_mut() {
        tls.server_name = Some("apiserver.example".into());
    }
    let upstream = Upstream::new(s).expect("upstream");
    tokio::spawn(upstream.clone().run());
    assert_eq!(
        status_and_body(&upstream, "/version").await.0,
        StatusCode::OK
    );

    let mut wrong = settings(vec![server.url()], server.pki());
    if let Some(tls) = wrong.tls.as_mut() {
        tls.server_name = Some("not-in-the-cert.example".into());
    }
    let upstream = Upstream::new(wrong).expect("upstream");
    tokio::spawn(upstream.clone().run());
    assert_eq!(
        upstream
            .send(get("/version"))
            .await
            .expect_err("wrong name")
            .kind(),
        ErrorKind::Tls
    );
}

#[tokio::test]
async fn goaway_moves_new_requests_to_a_new_connection_without_errors() {
    let server = fake(FakeOptions::default()).await;
    let upstream = Upstream::new(settings(vec![server.url()], server.pki())).expect("upstream");
    tokio::spawn(upstream.clone().run());
    assert_eq!(
        status_and_body(&upstream, "/version").await.0,
        StatusCode::OK
    );
    server.goaway();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        assert_eq!(
            status_and_body(&upstream, "/version").await.0,
            StatusCode::OK
        );
    }
    assert_eq!(server.tls_handshakes(), 2);
}

#[tokio::test]
async fn every_endpoint_is_verified_against_the_first_urls_dns_name() {
    let pki = std::sync::Arc::new(TestPki::new("named").expect("pki"));
    let first = fake(FakeOptions {
        pki: Some(pki.clone()),
        ..Default::default()
    })
    .await;
    // The second apiserver's certificate names only the cluster's DNS name, not its address.
    let second = fake(FakeOptions {
        ip: "127.0.0.2".parse().expect("ip"),
        pki: Some(pki.clone()),
        only_names: Some(vec!["localhost".into()]),
        ..Default::default()
    })
    .await;
    let servers = vec![
        format!("https://localhost:{}", first.addr().port()),
        second.url(),
    ];
    let upstream = Upstream::new(settings(servers, &pki)).expect("upstream");
    tokio::spawn(upstream.clone().run());
    first.set_behaviour(Behaviour::Refuse).await;
    let (status, _) = status_and_body(&upstream, "/version").await;
    assert_eq!(status, StatusCode::OK, "127.0.0.2 verified as localhost");
    assert_eq!(second.requests_to("/version").len(), 1);
}

/// A new connection's stream limit is the server's, not HTTP/2's default, from its very first
/// request: requests that a stale limit put on a full connection would wait inside the HTTP/2
/// client behind watches that never end (the hang behind "5 of 6,287 GETs").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_new_connection_never_queues_behind_the_servers_stream_limit() {
    let server = fake(FakeOptions {
        max_concurrent_streams: Some(5),
        ..Default::default()
    })
    .await;
    let rv = server.store().resource_version();
    let watch = format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}");
    // The race is a matter of microseconds: run it often enough to lose it.
    for round in 0..20 {
        let upstream = Upstream::new(settings(vec![server.url()], server.pki())).expect("upstream");
        tokio::spawn(upstream.clone().run());
        // One request opens the connection; then everything at once, as after a GOAWAY.
        status_and_body(&upstream, "/version").await;
        let mut tasks = Vec::new();
        for i in 0..30 {
            let upstream = upstream.clone();
            let path = if i % 3 == 0 {
                "/api/v1/namespaces/default/pods".to_owned()
            } else {
                watch.clone()
            };
            tasks.push(tokio::spawn(async move {
                let response =
                    tokio::time::timeout(Duration::from_secs(3), upstream.send(get(&path)))
                        .await
                        .map_err(|_| format!("{path}: no answer within 3 s"))?
                        .map_err(|e| format!("{path}: {e}"))?;
                // Watches stay open until the round ends.
                Ok::<_, String>(response)
            }));
        }
        let mut open = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(response) => open.push(response),
                Err(e) => panic!("round {round}: {e} ({} answered)", open.len()),
            }
        }
        assert!(open.iter().all(|r| r.status() == StatusCode::OK));
    }
}
