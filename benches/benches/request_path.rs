//! Microbenchmarks of the work kprox adds to every request: judging it against the filters,
//! normalising its path, sanitising its headers and adding the credential, and choosing the
//! apiserver. `cargo bench -p kprox-bench --bench request_path`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, header};
use kprox_config::FilterConfig;
use kprox_listener::{Filter, hop_by_hop, normalise::normalise, sanitise};
use kprox_telemetry::Metrics;
use kprox_upstream::balancer::{Balancer, Load};
use kprox_upstream::{Health, HealthSettings, Policy, Signal};

const PATH_ONLY: &str = "/api/v1/namespaces/default/pods";

fn client_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8001"));
    headers.insert(header::USER_AGENT, HeaderValue::from_static("curl/8.11.1"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer client-own-token"),
    );
    headers
}

fn filters(c: &mut Criterion) {
    let filter =
        Filter::new(&FilterConfig::kubectl_defaults()).expect("the default filters compile");
    let headers = client_headers();
    c.bench_function("filter: default rules, accepted GET", |b| {
        b.iter(|| {
            black_box(filter.check(
                black_box(&Method::GET),
                black_box(PATH_ONLY),
                black_box(&headers),
                None,
                false,
            ))
        })
    });
    c.bench_function("filter: default rules, rejected exec", |b| {
        b.iter(|| {
            black_box(filter.check(
                black_box(&Method::POST),
                black_box("/api/v1/namespaces/default/pods/web/exec"),
                black_box(&headers),
                None,
                true,
            ))
        })
    });
}

fn paths(c: &mut Criterion) {
    c.bench_function("normalise: clean path", |b| {
        b.iter(|| black_box(normalise(black_box(PATH_ONLY))))
    });
    c.bench_function("normalise: dot segments and escapes", |b| {
        b.iter(|| {
            black_box(normalise(black_box(
                "/api/v1/./namespaces/%64efault/../default/pods",
            )))
        })
    });
}

fn headers(c: &mut Criterion) {
    let snapshot = kprox_auth::Snapshot {
        authorization: HeaderValue::from_str("Bearer kprox-own-token-0123456789")
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            }),
        ..kprox_auth::Snapshot::default()
    };
    c.bench_function(
        "headers: hop-by-hop, strip client credentials, inject",
        |b| {
            b.iter_batched_ref(
                client_headers,
                |headers| {
                    hop_by_hop::strip(headers);
                    sanitise::strip_client_credentials(headers);
                    kprox_auth::inject(headers, &snapshot);
                },
                criterion::BatchSize::SmallInput,
            )
        },
    );
}

/// Stands for the upstream's endpoint state: what choosing an endpoint reads.
struct Candidate {
    health: Health,
    load: Arc<Load>,
}

fn candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|_| Candidate {
            health: Health::new(health_settings()),
            load: Arc::new(Load::default()),
        })
        .collect()
}

fn health_settings() -> HealthSettings {
    HealthSettings {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        fall: 3,
        rise: 2,
        ejection_base: Duration::from_secs(5),
        ejection_max: Duration::from_secs(300),
    }
}

fn endpoints(c: &mut Criterion) {
    for n in [3, 10] {
        let endpoints = candidates(n);
        for (name, policy) in [
            ("least-request", Policy::LeastRequest),
            ("round-robin", Policy::RoundRobin),
        ] {
            let balancer = Balancer::new(policy);
            c.bench_function(&format!("balancer: {name}, {n} apiservers"), |b| {
                b.iter(|| {
                    black_box(balancer.order(
                        black_box(&endpoints),
                        |e| e.health.is_up(),
                        |e| &e.load,
                        None,
                    ))
                })
            });
        }
    }
}

fn health(c: &mut Criterion) {
    let health = Health::new(health_settings());
    c.bench_function(
        "health: a request answered by an apiserver that is up",
        |b| b.iter(|| black_box(health.record(black_box(Signal::RequestOk)))),
    );
}

fn metrics(c: &mut Criterion) {
    let metrics = Metrics::new("bench");
    let endpoints: Vec<_> = (1..=3)
        .map(|i| metrics.endpoint_requests(&format!("https://10.0.0.{i}:6443")))
        .collect();
    c.bench_function("metrics: count a request answered by an apiserver", |b| {
        b.iter(|| metrics.request(&Method::GET, black_box(200), Some(black_box(&endpoints[2]))))
    });
}

/// The accept-time check of who opened a loopback connection (one sock_diag lookup of the
/// exact 4-tuple), on a real connection, with the other 1,000 connections open beside it so
/// that the kernel's socket table is not empty.
fn peer_user(c: &mut Criterion) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let address = listener.local_addr().expect("address");
    let mut open = Vec::new();
    for _ in 0..1_000 {
        let client = std::net::TcpStream::connect(address).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        open.push((client, server));
    }
    let (client, server) = &open[0];
    let (local, peer) = (
        server.local_addr().expect("local"),
        client.local_addr().expect("peer"),
    );
    let users = kprox_listener::LocalUsers::new(&[]).expect("users");
    c.bench_function("local users: judge a loopback TCP connection", |b| {
        b.iter(|| black_box(users.judge_tcp(black_box(local), black_box(peer))))
    });
}

criterion_group!(
    request_path,
    filters,
    paths,
    headers,
    endpoints,
    health,
    metrics,
    peer_user
);
criterion_main!(request_path);
