//! A connection whose first request is a watch is answered by kprox's own HTTP/1.1 writer
//! (crates/kprox-listener/src/watch_path.rs), without hyper's per-connection buffers. These
//! tests hold it to what hyper did: exact framing, keep-alive into the next request, the
//! client's `Connection: close`, refusals, pipelining, and a client that leaves.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::raw::{Framed, read_framed};
use support::{Cluster, Kprox};

fn json_lines(body: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// A connection to kprox whose reads give up after 10 s.
fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Sends `request`, then reads `count` responses off the same connection.
async fn exchange(kprox: &Kprox, request: String, count: usize) -> (Vec<Framed>, TcpStream) {
    let address = kprox.address.clone();
    tokio::task::spawn_blocking(move || {
        let mut stream = connect(&address);
        stream.write_all(request.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let responses = (0..count).map(|_| read_framed(&mut reader)).collect();
        assert!(reader.buffer().is_empty(), "bytes after the responses");
        (responses, stream)
    })
    .await
    .expect("exchange")
}

/// Sends `GET path` on a connection already used, and expects a `200` on it.
async fn next_ok(mut stream: TcpStream, path: &str) -> Framed {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let next = tokio::task::spawn_blocking(move || {
        stream
            .write_all(request.as_bytes())
            .expect("send the next request");
        read_framed(&mut BufReader::new(stream))
    })
    .await
    .expect("next");
    assert!(
        next.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        next.head
    );
    next
}

fn names(events: &[serde_json::Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_owned(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_streams_one_chunk_per_event_and_the_connection_serves_the_next_request() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let store = cluster.server.store().clone();
    let adder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.add_pod("default", "gamma").expect("add");
    });
    let watch = "GET /api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1 HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n";
    let (mut responses, stream) = exchange(&kprox, watch.to_owned(), 1).await;
    adder.await.expect("adder");
    let watched = responses.remove(0);
    assert!(
        watched.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        watched.head
    );
    assert_eq!(
        watched.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(watched.header("date").is_some(), "{}", watched.head);
    assert_eq!(watched.header("connection"), None, "{}", watched.head);
    assert_eq!(watched.header("content-length"), None, "{}", watched.head);
    assert_eq!(
        names(&json_lines(&watched.body)),
        [("ADDED", "alpha"), ("ADDED", "beta"), ("ADDED", "gamma")]
            .map(|(t, n)| (t.to_owned(), n.to_owned()))
    );
    // Every event in a chunk of its own (a client sees it as it happens), then the last chunk.
    assert_eq!(watched.chunks.len(), 4, "{:?}", watched.chunks);
    assert_eq!(watched.chunks.last(), Some(&0));

    // The same connection, kept alive, answers an ordinary request (hyper's from here on).
    let next = next_ok(stream, "/api/v1/namespaces/default/pods/alpha").await;
    let pod: serde_json::Value = serde_json::from_slice(&next.body).expect("a pod");
    assert_eq!(pod["metadata"]["name"], "alpha");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_with_connection_close_ends_with_the_connection() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let watch = "GET /api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (responses, mut stream) = exchange(&kprox, watch.to_owned(), 1).await;
    assert!(responses[0].head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(responses[0].header("connection").as_deref(), Some("close"));
    assert_eq!(json_lines(&responses[0].body).len(), 2);
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).map(|_| rest)
    })
    .await
    .expect("read");
    assert_eq!(
        rest.expect("a clean close").len(),
        0,
        "bytes after the last chunk"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_watch_gets_a_status_body_and_the_connection_stays_usable() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    // A Host outside --accept-hosts, then a good request on the same connection.
    let request =
        "GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    let (responses, stream) = exchange(&kprox, request.to_owned(), 1).await;
    let refused = &responses[0];
    assert!(
        refused.head.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{}",
        refused.head
    );
    assert_eq!(
        refused.header("content-length"),
        Some(refused.body.len().to_string())
    );
    let status: serde_json::Value = serde_json::from_slice(&refused.body).expect("Status");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 403);
    next_ok(stream, "/version").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_pipelined_behind_a_watch_is_answered_after_it_in_order() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let both = "GET /api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /api/v1/namespaces/default/pods/beta HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (responses, _stream) = exchange(&kprox, both.to_owned(), 2).await;
    assert!(responses[0].head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(json_lines(&responses[0].body).len(), 2);
    assert!(responses[1].head.starts_with("HTTP/1.1 200 OK\r\n"));
    let pod: serde_json::Value = serde_json::from_slice(&responses[1].body).expect("a pod");
    assert_eq!(pod["metadata"]["name"], "beta");
}

// A request sent while the watch streams (HTTP/1.1 pipelining) is kept, not read as part of
// the watch, and answered by hyper once the watch has ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_sent_while_a_watch_streams_is_answered_after_it() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let address = kprox.address.clone();
    let responses = tokio::task::spawn_blocking(move || {
        let mut stream = connect(&address);
        stream
            .write_all(b"GET /api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("watch");
        std::thread::sleep(Duration::from_millis(300));
        stream
            .write_all(b"GET /api/v1/namespaces/default/pods/alpha HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("the next request");
        let mut reader = BufReader::new(stream);
        [read_framed(&mut reader), read_framed(&mut reader)]
    })
    .await
    .expect("exchange");
    assert!(responses[0].head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(json_lines(&responses[0].body).len(), 2);
    assert!(
        responses[1].head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        responses[1].head
    );
    let pod: serde_json::Value = serde_json::from_slice(&responses[1].body).expect("a pod");
    assert_eq!(pod["metadata"]["name"], "alpha");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_its_watch_ends_it_upstream() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let watch = "GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let address = kprox.address.clone();
    let stream = tokio::task::spawn_blocking(move || {
        let mut stream = connect(&address);
        stream.write_all(watch.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("status line");
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        stream
    })
    .await
    .expect("watch");
    let store = cluster.server.store().clone();
    let kprox = tokio::task::spawn_blocking(move || {
        wait_for_metric(&kprox, "kprox_watches_open", 1.0);
        wait_for(|| store.watchers() == 1, "the apiserver to see the watch");
        drop(stream);
        wait_for_metric(&kprox, "kprox_watches_open", 0.0);
        wait_for(|| store.watchers() == 0, "the apiserver's watch to end");
        kprox
    })
    .await
    .expect("metrics");
    drop(kprox);
}

fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "waited 5 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_metric(kprox: &Kprox, name: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = kprox.metric(name);
        if value == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {value:?}, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
