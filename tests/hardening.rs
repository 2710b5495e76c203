//! REFERENCE.md §3 items 14, 16, 17, 18, 20, 24, 25 and the response-splitting half of the
//! smuggling bar: limits, timeouts and malformed HTTP, each over a real socket to a real kprox,
//! with what the apiserver saw checked as well as what the client got.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kprox_testkit::{FakeOptions, RawApiServer};
use support::raw::{Raw, exchange_async};
use support::{Cluster, Kprox, TOKEN, require_tool};

/// Every limit small, so that each can be crossed in a second or two.
const TIGHT: &[(&str, &str)] = &[
    ("KPROX_LISTEN__LIMITS__HEADER_READ_TIMEOUT", "1s"),
    ("KPROX_LISTEN__LIMITS__IDLE_TIMEOUT", "1s"),
    ("KPROX_LISTEN__LIMITS__BODY_READ_TIMEOUT", "1s"),
    ("KPROX_LISTEN__LIMITS__WRITE_TIMEOUT", "1s"),
];

fn tight_kprox(cluster: &Cluster, args: &[&str]) -> Kprox {
    let kubeconfig = cluster.kubeconfig_arg();
    let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
    all.extend_from_slice(args);
    Kprox::start_with_env(&all, TIGHT)
}

fn assert_status(raw: &Raw, code: u16, what: &str) {
    assert_eq!(raw.status, code, "{what}: {}", raw.all);
    let body: serde_json::Value = serde_json::from_str(&raw.body)
        .unwrap_or_else(|e| panic!("{what}: the body is not a Status ({e}): {}", raw.body));
    assert_eq!(body["kind"], "Status", "{what}: {body}");
    assert_eq!(body["code"], code, "{what}: {body}");
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n")
}

// A field limit above hyper's default of 100 is hyper's ceiling too: 120 fields pass, 151 are
// answered 431 with a `Status` body.
#[tokio::test(flavor = "multi_thread")]
async fn a_field_limit_above_hypers_default_is_honoured_both_ways() {
    let cluster = Cluster::start().await;
    let kubeconfig = cluster.kubeconfig_arg();
    let kprox = Kprox::start_with_env(
        &["--kubeconfig", kubeconfig.as_str()],
        &[("KPROX_LISTEN__LIMITS__MAX_HEADERS", "150")],
    );
    let fields = |n: usize| -> String { (0..n).map(|i| format!("X-F-{i}: {i}\r\n")).collect() };
    let raw = exchange_async(
        &kprox.address,
        get(
            "/api/v1/namespaces/fields/pods",
            &(fields(120) + "Connection: close\r\n"),
        ),
    )
    .await;
    assert_eq!(raw.status, 200, "120 fields are under 150: {}", raw.head);
    let raw = exchange_async(
        &kprox.address,
        get("/api/v1/namespaces/over/pods", &fields(151)),
    )
    .await;
    assert_status(&raw, 431, "151 header fields");
    assert!(
        raw.body.contains("more than 150 header fields"),
        "{}",
        raw.body
    );
    assert!(
        cluster
            .server
            .requests_to("/api/v1/namespaces/over/")
            .is_empty(),
        "a refused request reached the apiserver"
    );
}

// §3.16: too many or too large headers → 431; a 16 KiB bearer JWT still passes.
#[tokio::test(flavor = "multi_thread")]
async fn headers_over_the_limits_get_431_and_a_16_kib_token_passes() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&[]);

    let jwt = format!("Authorization: Bearer {}\r\n", "e".repeat(16 * 1024));
    let raw = exchange_async(
        &kprox.address,
        get(
            "/api/v1/namespaces/jwt/pods",
            &(jwt + "Connection: close\r\n"),
        ),
    )
    .await;
    assert_eq!(raw.status, 200, "a 16 KiB token must pass: {}", raw.head);
    let seen = cluster.server.requests_to("/api/v1/namespaces/jwt/pods");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get_all("authorization").iter().count(),
        1,
        "exactly one Authorization upstream"
    );
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {TOKEN}"));

    let many: String = (0..101).map(|i| format!("X-Many-{i}: {i}\r\n")).collect();
    let raw = exchange_async(&kprox.address, get("/api/v1/namespaces/many/pods", &many)).await;
    assert_status(&raw, 431, "101 header fields");
    assert!(
        raw.body.contains("listen.limits.max_headers"),
        "{}",
        raw.body
    );

    let big = format!("X-Big: {}\r\n", "b".repeat(70 * 1024));
    let raw = exchange_async(&kprox.address, get("/api/v1/namespaces/big/pods", &big)).await;
    assert_status(&raw, 431, "a 70 KiB header");
    assert!(
        raw.body.contains("listen.limits.max_header_bytes"),
        "{}",
        raw.body
    );

    // Past hyper's hard ceiling (twice the limit) the head is never even parsed.
    let huge = format!("X-Huge: {}\r\n", "h".repeat(300 * 1024));
    let raw = exchange_async(&kprox.address, get("/api/v1/namespaces/huge/pods", &huge)).await;
    assert_eq!(raw.status, 431, "{}", raw.head);

    // A head over the field count that arrives in two parts: the answer comes after the first,
    // the second is read and dropped, and the connection ends cleanly (not reset under the
    // client before it has read the answer).
    let address = kprox.address.clone();
    let (ended, received) = tokio::task::spawn_blocking(move || {
        let first: String = (0..150).map(|i| format!("X-Split-{i}: {i}\r\n")).collect();
        let rest: String = (150..180)
            .map(|i| format!("X-Split-{i}: {i}\r\n"))
            .collect();
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let start = "GET /api/v1/namespaces/split/pods HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        stream
            .write_all(format!("{start}{first}").as_bytes())
            .expect("send the first part");
        std::thread::sleep(Duration::from_millis(200));
        stream
            .write_all(format!("{rest}\r\n").as_bytes())
            .expect("send the rest");
        let mut received = Vec::new();
        let ended = stream.read_to_end(&mut received).map(|_| ());
        (ended, String::from_utf8_lossy(&received).into_owned())
    })
    .await
    .expect("split exchange");
    assert!(
        ended.is_ok(),
        "the connection must end cleanly: {ended:?}: {received}"
    );
    assert!(received.starts_with("HTTP/1.1 431 "), "{received}");
    assert!(received.contains("listen.limits.max_headers"), "{received}");

    for namespace in ["many", "big", "huge", "split"] {
        assert!(
            cluster
                .server
                .requests_to(&format!("/api/v1/namespaces/{namespace}/"))
                .is_empty(),
            "{namespace}: a refused request reached the apiserver"
        );
    }
}

// §3.24: request bodies over the cap (the apiserver's 3 MiB) → 413; bodies up to it pass.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_cap_get_413_and_never_reach_the_apiserver() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&[]);
    let cap = 3 * 1024 * 1024;

    // Declared too large: refused before a byte of the body is read.
    let raw = exchange_async(
        &kprox.address,
        format!(
            "POST /api/v1/namespaces/declared/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            cap + 1
        ),
    )
    .await;
    assert_status(&raw, 413, "Content-Length over the cap");
    assert!(
        raw.body.contains("listen.limits.max_body_bytes"),
        "{}",
        raw.body
    );
    assert!(
        cluster
            .server
            .requests_to("/api/v1/namespaces/declared/")
            .is_empty()
    );

    // Chunked, no length declared: cut off at the cap, still 413.
    let address = kprox.address.clone();
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(b"POST /testkit/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("head");
        let chunk = format!("10000\r\n{}\r\n", "c".repeat(0x10000));
        // 4 MiB in 64 KiB chunks; kprox may stop reading (and close) once past the cap.
        for _ in 0..64 {
            if stream.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let mut received = Vec::new();
        let _ = stream.read_to_end(&mut received);
        String::from_utf8_lossy(&received).into_owned()
    })
    .await
    .expect("chunked upload");
    assert!(
        raw.starts_with("HTTP/1.1 413"),
        "a chunked body over the cap: {raw}"
    );
    assert!(raw.contains("\"kind\":\"Status\""), "{raw}");

    // Exactly the cap: forwarded whole.
    let body = "x".repeat(cap);
    let raw = exchange_async(
        &kprox.address,
        format!(
            "POST /testkit/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.head);
    let echoed: serde_json::Value = serde_json::from_str(&raw.body).expect("echo json");
    assert_eq!(echoed["bodyLength"], cap);
}

/// A smuggling attempt, with a second request hidden where a lenient parser would find it.
struct Attempt {
    name: &'static str,
    bytes: String,
}

/// The namespace of the visible request; each attempt's own (`{NS}` in the corpus).
const NS: &str = "{NS}";

fn smuggling_corpus() -> Vec<Attempt> {
    let hidden = "GET /api/v1/namespaces/smuggled/pods HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let post = format!("POST /api/v1/namespaces/{NS}/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let attempt = |name: &'static str, bytes: String| Attempt { name, bytes };
    vec![
        attempt(
            "Content-Length then Transfer-Encoding",
            format!(
                "{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        attempt(
            "Transfer-Encoding then Content-Length",
            format!(
                "{post}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        attempt(
            "two different Content-Lengths",
            format!(
                "{post}Content-Length: 0\r\nContent-Length: {}\r\n\r\n{hidden}",
                hidden.len()
            ),
        ),
        attempt(
            "two equal Content-Lengths",
            format!(
                "{post}Content-Length: {0}\r\nContent-Length: {0}\r\n\r\n{hidden}",
                hidden.len()
            ),
        ),
        attempt(
            "a Content-Length list",
            format!("{post}Content-Length: 0, {}\r\n\r\n{hidden}", hidden.len()),
        ),
        attempt(
            "a signed Content-Length",
            format!("{post}Content-Length: +0\r\n\r\n{hidden}"),
        ),
        attempt(
            "a hex Content-Length",
            format!("{post}Content-Length: 0x0\r\n\r\n{hidden}"),
        ),
        attempt(
            "a negative Content-Length",
            format!("{post}Content-Length: -1\r\n\r\n{hidden}"),
        ),
        attempt(
            "an overflowing Content-Length",
            format!("{post}Content-Length: 99999999999999999999999\r\n\r\n{hidden}"),
        ),
        attempt(
            "a chunk size that is not hex",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nzz\r\n{hidden}"),
        ),
        attempt(
            "an overflowing chunk size",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n{hidden}"),
        ),
        attempt(
            "a negative chunk size",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n-5\r\n{hidden}"),
        ),
        attempt(
            "an unknown transfer coding",
            format!("{post}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        attempt(
            "chunked not last",
            format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        attempt(
            "an obs-folded Transfer-Encoding",
            format!("{post}Transfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        attempt(
            "an obs-folded header",
            format!("{post}X-Folded: a\r\n\tb\r\nContent-Length: 0\r\n\r\n{hidden}"),
        ),
        attempt(
            "space before the colon",
            format!(
                "{post}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        attempt(
            "bare LF line endings",
            format!(
                "POST /api/v1/namespaces/{NS}/configmaps HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 0\n\n{hidden}"
            ),
        ),
        attempt(
            "a bare CR in a header value",
            format!("{post}X-Split: a\rContent-Length: 0\r\n\r\n{hidden}"),
        ),
        attempt(
            "a NUL in a header value",
            format!("{post}X-Nul: a\0b\r\nContent-Length: 0\r\n\r\n{hidden}"),
        ),
    ]
}

// §3.14: Content-Length with Transfer-Encoding, duplicate/odd Content-Length, bad chunk sizes,
// obs-fold, space before colon, bare LF, NUL/CR in values: 400 (or the connection closed),
// never forwarded ambiguously — the hidden second request never reaches the apiserver, and
// the visible one reaches it only when its head was sound and its chunked body turned out
// broken, and then as a stream kprox aborts (the client still gets 400).
#[tokio::test(flavor = "multi_thread")]
async fn smuggling_attempts_are_refused_and_never_forwarded() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&[]);
    let mut failures = Vec::new();
    for (i, attempt) in smuggling_corpus().into_iter().enumerate() {
        let namespace = format!("attempt-{i}");
        let raw = exchange_async(&kprox.address, attempt.bytes.replace(NS, &namespace)).await;
        let answers = raw.all.matches("HTTP/1.1 ").count();
        let refused = raw.status == 400 || (raw.status == 0 && raw.all.is_empty());
        if !refused || answers > 1 {
            failures.push(format!(
                "{}: status {} with {answers} answers: {:?}",
                attempt.name,
                raw.status,
                raw.all.chars().take(200).collect::<String>()
            ));
        }
        if raw.status == 400 && !raw.body.is_empty() {
            assert!(
                raw.body.contains("\"kind\":\"Status\""),
                "{}: {}",
                attempt.name,
                raw.body
            );
        }
        let broken_chunks = attempt.name.contains("chunk size");
        let forwarded = cluster
            .server
            .requests_to(&format!("/api/v1/namespaces/{namespace}/"));
        if !forwarded.is_empty() && !broken_chunks {
            failures.push(format!("{}: forwarded {forwarded:?}", attempt.name));
        }
    }
    // Nothing was created by any of them.
    let created = Command::new(require_tool("curl"))
        .args(["-sS", &kprox.url("/api/v1/configmaps")])
        .output()
        .expect("curl");
    let listed = String::from_utf8_lossy(&created.stdout);
    assert!(
        !listed.contains("attempt-"),
        "an attempt created an object: {listed}"
    );
    let smuggled = cluster.server.requests_to("/api/v1/namespaces/smuggled/");
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    assert!(
        smuggled.is_empty(),
        "a hidden request reached the apiserver: {smuggled:?}"
    );
    // kprox is still fine.
    let raw = exchange_async(
        &kprox.address,
        get("/api/v1/namespaces", "Connection: close\r\n"),
    )
    .await;
    assert_eq!(raw.status, 200);
}

// Response splitting: an apiserver answer with a bare CR, a folded header or a NUL in a header
// is never relayed; the client gets a 502 Status and none of the injected header.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_upstream_header_is_refused_not_relayed() {
    let answers: [(&str, &[u8]); 3] = [
        (
            "bare CR",
            b"HTTP/1.1 200 OK\r\nX-Evil: a\rSet-Cookie: injected=1\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "obs-fold",
            b"HTTP/1.1 200 OK\r\nX-Evil: a\r\n Set-Cookie: injected=1\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "NUL",
            b"HTTP/1.1 200 OK\r\nX-Evil: a\0Set-Cookie: injected=1\r\nContent-Length: 2\r\n\r\nok",
        ),
    ];
    for (what, answer) in answers {
        let upstream = RawApiServer::start(answer.to_vec())
            .await
            .expect("raw upstream");
        let dir = tempfile::tempdir().expect("dir");
        let kubeconfig = token_kubeconfig(dir.path(), &upstream.url(), &upstream.ca_pem());
        let kprox = Kprox::start(&["--kubeconfig", &kubeconfig.display().to_string()]);
        let raw = exchange_async(
            &kprox.address,
            get("/api/v1/namespaces", "Connection: close\r\n"),
        )
        .await;
        assert_status(&raw, 502, what);
        assert!(
            !raw.all.to_ascii_lowercase().contains("injected"),
            "{what}: the injected header reached the client: {}",
            raw.all
        );
    }
}

/// A kubeconfig reaching `server` (trusting `ca_pem`) with a token, written into `dir`.
fn token_kubeconfig(dir: &std::path::Path, server: &str, ca_pem: &str) -> std::path::PathBuf {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("ca");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: a-token\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
            ca.display()
        ),
    )
    .expect("kubeconfig");
    kubeconfig
}

// Upstream connect timeout: an apiserver whose accept queue is full drops the SYN, so the TCP
// connect hangs (on loopback, no packet leaves the machine). kprox gives up after
// upstream.connect_timeout and answers a Status at once instead of hanging the client.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_upstream_connect_is_cut_at_the_connect_timeout() {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("inet");
    // Fill the accept queue (never accepted): further SYNs are dropped.
    let fillers: Vec<TcpStream> = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    assert!(!fillers.is_empty(), "could not fill the accept queue");
    let probe = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    assert!(
        probe.is_err(),
        "the accept queue is not full: connects still complete"
    );

    let dir = tempfile::tempdir().expect("dir");
    let pki = kprox_testkit::TestPki::new("hang-ca").expect("pki");
    let kubeconfig = token_kubeconfig(dir.path(), &format!("https://{addr}"), &pki.ca_pem());
    let kprox = Kprox::start_with_env(
        &["--kubeconfig", &kubeconfig.display().to_string()],
        &[("KPROX_UPSTREAM__CONNECT_TIMEOUT", "300ms")],
    );
    let started = Instant::now();
    let raw = exchange_async(&kprox.address, get("/version", "Connection: close\r\n")).await;
    let elapsed = started.elapsed();
    assert!(
        raw.status == 504 || raw.status == 503,
        "a hanging connect: {}",
        raw.all
    );
    assert!(raw.body.contains("\"kind\":\"Status\""), "{}", raw.body);
    assert!(
        elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    drop(fillers);
}

/// Reads until the peer closes; returns the bytes and how long it took.
/// A connection to `address` with a 4 KiB receive buffer, so that a client that does not read
/// pushes back on kprox at once.
fn small_window_connection(address: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let addr: std::net::SocketAddr = address.parse().expect("address");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}

fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut received = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return (received, started.elapsed()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (received, started.elapsed()),
        }
    }
    panic!("the connection stayed open for {limit:?}");
}

// §3.17: slowloris on headers — closed within header_read_timeout (1 s here).
#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off_at_the_header_timeout() {
    let cluster = Cluster::start().await;
    let kprox = tight_kprox(&cluster, &[]);
    let address = kprox.address.clone();
    let (elapsed, received) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .write_all(b"GET /api/v1/namespaces/slow/pods HTTP/1.1\r\n")
            .expect("line");
        let started = Instant::now();
        // One header line every 200 ms, forever (the write fails once kprox closes).
        let mut writer = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            for i in 0..100 {
                std::thread::sleep(Duration::from_millis(200));
                if writer
                    .write_all(format!("X-Drip-{i}: x\r\n").as_bytes())
                    .is_err()
                {
                    break;
                }
            }
        });
        let (received, _) = read_until_closed(&mut stream, Duration::from_secs(10));
        (started.elapsed(), received)
    })
    .await
    .expect("slow client");
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
    assert!(!String::from_utf8_lossy(&received).contains("200 OK"));
    assert!(
        cluster
            .server
            .requests_to("/api/v1/namespaces/slow/")
            .is_empty()
    );
}

// §3.17: slowloris on the body — 408 Status (or closed) within body_read_timeout (1 s here).
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_gets_408_at_the_body_timeout() {
    let cluster = Cluster::start().await;
    let kprox = tight_kprox(&cluster, &[]);
    let address = kprox.address.clone();
    let (elapsed, received) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .write_all(
                b"POST /testkit/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n",
            )
            .expect("head");
        let started = Instant::now();
        let mut writer = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(200));
                if writer.write_all(b"x").is_err() {
                    break;
                }
            }
        });
        let (received, _) = read_until_closed(&mut stream, Duration::from_secs(10));
        (
            started.elapsed(),
            String::from_utf8_lossy(&received).into_owned(),
        )
    })
    .await
    .expect("slow client");
    assert!(elapsed < Duration::from_secs(4), "closed after {elapsed:?}");
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(
        received.contains("listen.limits.body_read_timeout"),
        "{received}"
    );
}

// §3.17: a client that does not read its response — closed within write_timeout (1 s here),
// long before the 64 MiB response could have been delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_cut_off_at_the_write_timeout() {
    let cluster = Cluster::start().await;
    let kprox = tight_kprox(&cluster, &[]);
    let size: usize = 64 << 20;
    let address = kprox.address.clone();
    let received = tokio::task::spawn_blocking(move || {
        let mut stream = small_window_connection(&address);
        stream
            .write_all(
                format!("GET /testkit/blob?bytes={size} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    .as_bytes(),
            )
            .expect("request");
        // Do not read for 4 s: kprox's writes stall and its write timeout (1 s) fires.
        std::thread::sleep(Duration::from_secs(4));
        let (received, _) = read_until_closed(&mut stream, Duration::from_secs(20));
        received.len()
    })
    .await
    .expect("slow reader");
    assert!(
        received < size / 2,
        "the whole response was kept for a client that did not read ({received} bytes)"
    );
    let open = kprox.metric("kprox_listener_connections_open");
    assert_eq!(
        open,
        Some(0.0),
        "the cut-off connection is still counted open"
    );
}

// §3.17 on the watch path (crates/kprox-listener/src/watch_path.rs, kprox's own writer): a
// watch whose client stops reading is cut off at the write timeout too, and the apiserver's
// watch ends with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_client_that_stops_reading_is_cut_off_at_the_write_timeout() {
    let cluster = Cluster::start().await;
    let kprox = tight_kprox(&cluster, &[]);
    let store = cluster.server.store().clone();
    let address = kprox.address.clone();
    let watcher = tokio::task::spawn_blocking(move || {
        let mut stream = small_window_connection(&address);
        stream
            .write_all(get("/api/v1/namespaces/default/configmaps?watch=1", "").as_bytes())
            .expect("request");
        // Do not read for 4 s while the events pour in: the write timeout (1 s) fires.
        std::thread::sleep(Duration::from_secs(4));
        read_until_closed(&mut stream, Duration::from_secs(20))
            .0
            .len()
    });
    // 200 events of 64 KiB: 12.5 MiB, far more than the sockets and windows between hold.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let value = "x".repeat(64 * 1024);
    for i in 0..200 {
        store
            .create(
                kprox_testkit::Resource::CONFIG_MAPS,
                "default",
                serde_json::json!({"metadata": {"name": format!("big-{i}")}, "data": {"v": value}}),
            )
            .expect("create");
    }
    let received = watcher.await.expect("slow watcher");
    assert!(
        received < 200 * 64 * 1024 / 2,
        "the whole stream was kept for a client that did not read ({received} bytes)"
    );
    assert_eq!(kprox.metric("kprox_listener_connections_open"), Some(0.0));
    assert_eq!(kprox.metric("kprox_watches_open"), Some(0.0));
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.watchers() > 0 {
        assert!(
            Instant::now() < deadline,
            "the apiserver's watch never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Keep-alive: an idle connection is closed after idle_timeout (1 s here), one that never sent
// anything too.
#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_close_at_the_idle_timeout() {
    let cluster = Cluster::start().await;
    let kprox = tight_kprox(&cluster, &[]);
    let address = kprox.address.clone();
    tokio::task::spawn_blocking(move || {
        let mut silent = TcpStream::connect(&address).expect("connect");
        let (_, elapsed) = read_until_closed(&mut silent, Duration::from_secs(5));
        assert!(
            elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(3),
            "a silent connection closed after {elapsed:?}"
        );

        let mut used = TcpStream::connect(&address).expect("connect");
        used.write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("request");
        let started = Instant::now();
        let (received, _) = read_until_closed(&mut used, Duration::from_secs(5));
        let elapsed = started.elapsed();
        assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
        assert!(
            elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(3),
            "an idle keep-alive connection closed after {elapsed:?}"
        );
    })
    .await
    .expect("idle client");
}

// §3.18: a watch and an exec session outlive every timeout (all 1 s here; the 90-minute
// watch of the bar, scaled down): quiet for 3 s, both still deliver.
#[tokio::test(flavor = "multi_thread")]
async fn watches_and_exec_sessions_outlive_every_timeout() {
    let cluster = Cluster::start().await;
    cluster
        .server
        .store()
        .create(
            kprox_testkit::Resource::NAMESPACES,
            "",
            serde_json::json!({"metadata": {"name": "quiet"}}),
        )
        .expect("namespace");
    let kprox = tight_kprox(&cluster, &["--reject-paths", "^$"]);

    let address = kprox.address.clone();
    let watch = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .write_all(b"GET /api/v1/namespaces/quiet/configmaps?watch=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("watch");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains("after-the-quiet") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let create = Command::new(require_tool("curl"))
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"after-the-quiet"}}"#,
            &kprox.url("/api/v1/namespaces/quiet/configmaps"),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&create.stdout), "201");
    let seen = watch.await.expect("watch");
    assert!(
        seen.contains("\"type\":\"ADDED\""),
        "the watch ended early: {seen}"
    );

    // An exec session whose stdin stays quiet for 3 s.
    let cache = tempfile::tempdir().expect("cache");
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "(sleep 3; echo still-here) | '{}' --server '{}' --cache-dir '{}' exec -i alpha -- cat",
            require_tool("kubectl").display(),
            kprox.url(""),
            cache.path().display()
        ))
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("kubectl exec");
    assert!(
        output.status.success(),
        "exec: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "still-here\n");
}

// §3.20: kprox offers no HTTP/2 to clients (no h2c, no ALPN h2): an HTTP/2 preface gets no
// HTTP/2 session, nothing reaches the apiserver, and kprox keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_preface_gets_no_http2_session() {
    let cluster = Cluster::start_with(FakeOptions::default()).await;
    let kprox = cluster.kprox(&[]);
    let before = cluster.server.request_count();
    let raw = exchange_async(
        &kprox.address,
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_owned(),
    )
    .await;
    // An HTTP/2 SETTINGS frame would start with a 3-byte length and type 0x04.
    assert!(
        raw.all.is_empty() || raw.all.starts_with("HTTP/1.1 "),
        "kprox spoke something other than HTTP/1.1: {:?}",
        raw.all
    );
    assert_eq!(cluster.server.request_count(), before);
    let raw = exchange_async(&kprox.address, get("/version", "Connection: close\r\n")).await;
    assert_eq!(raw.status, 200);
}

// §3.25: an exec tunnel blasting into a slow reader: kprox's memory stays bounded by
// backpressure (kubectl → kprox → apiserver), and every byte arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_into_a_slow_reader_keeps_memory_bounded() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--reject-paths", "^$"]);
    let cache = tempfile::tempdir().expect("cache");
    let total: usize = 64 << 20;
    let mut child =
        support::kubectl_command(&kprox, cache.path(), &["exec", "-i", "alpha", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl exec");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let block = vec![b'z'; 64 * 1024];
        for _ in 0..total / block.len() {
            if stdin.write_all(&block).is_err() {
                return;
            }
        }
    });
    let (base_hwm, _) = support::memory_kib(kprox.pid());
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 16 * 1024];
    let mut read = 0usize;
    // Slow phase: 16 KiB every 20 ms (~0.8 MiB/s) for 4 s, while the writer pushes 64 MiB.
    let slow_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < slow_until {
        read += stdout.read(&mut buf).expect("read");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (slow_hwm, _) = support::memory_kib(kprox.pid());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read the rest");
    read += rest.len();
    writer.join().expect("writer");
    let _ = child.wait();
    assert_eq!(read, total, "every byte arrives");
    let grown_mib = slow_hwm.saturating_sub(base_hwm) as f64 / 1024.0;
    println!(
        "kprox peak RSS grew {grown_mib:.1} MiB while {total} bytes queued behind a slow reader"
    );
    assert!(
        grown_mib < 16.0,
        "kprox buffered for the slow reader: peak RSS grew {grown_mib:.1} MiB"
    );
}

/// Runs slowhttptest (Debian's) in `mode` against `url` for at most `seconds`; returns its CSV
/// rows (seconds, closed, pending, connected, service available) and its exit status line.
fn slowhttptest(mode: &str, url: &str, seconds: u32, extra: &[&str]) -> (Vec<Vec<u64>>, String) {
    let dir = tempfile::tempdir().expect("dir");
    let prefix = dir.path().join("report");
    let length = seconds.to_string();
    let output = Command::new(require_tool("slowhttptest"))
        .args([
            mode, "-c", "40", "-r", "40", "-l", &length, "-p", "2", "-g", "-o",
        ])
        .arg(&prefix)
        .args(["-u", url])
        .args(extra)
        .output()
        .expect("slowhttptest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let csv = std::fs::read_to_string(prefix.with_extension("csv"))
        .unwrap_or_else(|e| panic!("slowhttptest wrote no report ({e}): {stdout}"));
    let rows = csv
        .lines()
        .skip(1)
        .map(|line| {
            line.split(',')
                .filter_map(|v| v.trim().parse().ok())
                .collect()
        })
        .filter(|row: &Vec<u64>| row.len() == 5)
        .collect();
    let exit = stdout
        .lines()
        .find(|l| l.contains("Exit status"))
        .unwrap_or_default()
        .to_owned();
    (rows, exit)
}

// §3.17 with the attack tool itself: slowloris (-H) and slow body (-B) connections are closed by
// kprox within its timeouts while a probe is still served; slow readers (-X) are cut off and
// reset, so neither kprox nor the kernel keeps sending to them.
#[tokio::test(flavor = "multi_thread")]
async fn slowhttptest_attacks_are_cut_off_and_service_stays_up() {
    let cluster = Cluster::start().await;
    let kprox = tight_kprox(&cluster, &[]);
    let base = kprox.url("");

    for (mode, path, extra) in [
        ("-H", "/api/v1/namespaces", &["-i", "1", "-x", "8"][..]),
        (
            "-B",
            "/api/v1/namespaces/default/configmaps",
            &["-i", "1", "-x", "8", "-s", "100000"][..],
        ),
    ] {
        let url = format!("{base}{path}");
        let started = Instant::now();
        let (rows, exit) = tokio::task::spawn_blocking(move || slowhttptest(mode, &url, 20, extra))
            .await
            .expect("slowhttptest");
        let elapsed = started.elapsed();
        // slowhttptest stops early once every connection is gone (kprox's timeouts are 1 s).
        assert!(
            exit.contains("No open connections left"),
            "{mode}: {exit} after {elapsed:?}: {rows:?}"
        );
        assert!(
            elapsed < Duration::from_secs(10),
            "{mode}: took {elapsed:?}"
        );
        assert!(
            rows.iter().all(|row| row[4] > 0),
            "{mode}: service became unavailable: {rows:?}"
        );
        let peak = rows.iter().map(|row| row[3]).max().unwrap_or(0);
        assert!(peak >= 30, "{mode}: the attack never got going: {rows:?}");
    }

    // Slow read: slowhttptest counts its sockets as connected to the end, so look at kprox.
    let url = format!("{base}/testkit/blob?bytes={}", 64 << 20);
    let attack = tokio::task::spawn_blocking(move || {
        slowhttptest(
            "-X",
            &url,
            10,
            &["-k", "1", "-n", "1", "-w", "1", "-y", "512", "-z", "5"],
        )
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during = kprox
        .metric("kprox_listener_connections_open")
        .unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = kprox.metric("kprox_listener_connections_open");
    let port = kprox
        .address
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let lingering = Command::new(require_tool("ss"))
        .args(["-Htn", "state", "fin-wait-1", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .expect("ss");
    let lingering = String::from_utf8_lossy(&lingering.stdout).lines().count();
    attack.await.expect("slow read attack");
    assert!(
        during >= 10.0,
        "the slow-read attack never got going ({during} open)"
    );
    assert_eq!(after, Some(0.0), "slow readers still held by kprox");
    assert_eq!(
        lingering, 0,
        "the kernel still sends to {lingering} cut-off slow readers"
    );
}

// tests/README.md maps every item of REFERENCE.md §3 to the tests that prove it; the map must
// cover all 25 items and name only tests that exist.
#[test]
fn the_security_bar_map_names_real_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let map = std::fs::read_to_string(root.join("tests/README.md")).expect("tests/README.md");
    let items: Vec<u32> = map
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(
        items,
        (1..=25).collect::<Vec<_>>(),
        "every §3 item, in order"
    );
    let mut named = 0;
    for reference in map.split('`').filter(|s| {
        s.split_once("::")
            .is_some_and(|(file, name)| !file.contains(' ') && !name.contains(' '))
    }) {
        let (file, name) = reference.split_once("::").unwrap_or_default();
        let source = match std::fs::read_to_string(root.join(format!("tests/{file}.rs"))) {
            Ok(source) => source,
            // `normalise::tests::properties` and friends live in crates, not tests/.
            Err(_) => continue,
        };
        assert!(
            source.contains(&format!("fn {name}(")),
            "tests/README.md names {reference}, which does not exist"
        );
        named += 1;
    }
    assert!(named >= 30, "only {named} test references found");
}
