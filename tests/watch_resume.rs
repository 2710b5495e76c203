//! Watch resume as clients meet it: a watch whose apiserver stream breaks is resumed only from a
//! point where nothing can be lost, and otherwise its client is told to start over. The fake
//! apiserver sends its initial events in key order with each object's own version (not in
//! version order, as the real watch cache does) and breaks a chosen stream after N events.

mod support;

use std::time::{Duration, Instant};

use kprox_testkit::Resource;
use serde_json::{Value, json};
use support::{Cluster, Kprox, ok_stdout, run};

/// The pods of every test: `alpha` and `beta` (from `Cluster::start`), then `p5` down to `p1`,
/// created in that order so that key order (alpha, beta, p1, ..., p5) and version order differ:
/// `p1` has the highest version of all.
const PODS: [&str; 7] = ["alpha", "beta", "p1", "p2", "p3", "p4", "p5"];

async fn cluster_with_pods() -> Cluster {
    let cluster = Cluster::start().await;
    for name in ["p5", "p4", "p3", "p2", "p1"] {
        cluster
            .server
            .store()
            .add_pod("default", name)
            .expect("seed pod");
    }
    cluster
}

/// The events of a JSON watch stream, one per line.
fn events(stream: &str) -> Vec<Value> {
    stream
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}")))
        .collect()
}

fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let name = e["object"]["metadata"]["name"].as_str().unwrap_or("");
            format!("{} {name}", e["type"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// Runs `curl -N` on a watch through kprox (in a thread, so the test can change the store
/// meanwhile) and returns what it printed.
fn curl_watch(kprox: &Kprox, path: &str) -> tokio::task::JoinHandle<String> {
    let url = kprox.url(path);
    tokio::task::spawn_blocking(move || {
        ok_stdout(
            &run("curl", &["-sS", "-N", "--max-time", "20", &url]),
            "curl watch",
        )
    })
}

/// Waits until the fake apiserver has `n` watches open.
async fn wait_for_watchers(cluster: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.server.store().watchers() < n {
        assert!(
            Instant::now() < deadline,
            "the watch never reached the apiserver"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn touch(cluster: &Cluster, name: &str, generation: u32) -> String {
    let store = cluster.server.store();
    let mut pod = store
        .get(Resource::PODS, "default", name)
        .expect("pod exists");
    pod["metadata"]["labels"] = json!({"touched": generation.to_string()});
    let updated = store
        .update(Resource::PODS, "default", name, pod)
        .expect("update");
    updated["metadata"]["resourceVersion"]
        .as_str()
        .expect("version")
        .to_owned()
}

const WATCH_LIST: &str =
    "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_broken_during_its_initial_events_tells_the_client_to_start_over() {
    for query in ["watch=1", "watch=1&resourceVersion=0", WATCH_LIST] {
        let cluster = cluster_with_pods().await;
        let kprox = cluster.kprox(&[]);
        // alpha, beta and p1 arrive; p1 has the highest version of all, so resuming from the
        // highest version seen would lose p2..p5 for ever.
        cluster.server.cut_next_watch_after(3);
        let out = curl_watch(&kprox, &format!("/api/v1/namespaces/default/pods?{query}"))
            .await
            .expect("curl");
        let events = events(&out);
        assert_eq!(
            summary(&events),
            ["ADDED alpha", "ADDED beta", "ADDED p1", "ERROR "],
            "{query}: {out}"
        );
        let error = &events[3]["object"];
        assert_eq!(error["kind"], "Status", "{query}");
        assert_eq!(error["code"], 500, "{query}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("initial events")),
            "{query}: {error}"
        );
        // kprox never re-sent the watch from a guessed version.
        let watches = cluster
            .server
            .requests_to("/api/v1/namespaces/default/pods?")
            .len();
        assert_eq!(watches, 1, "{query}: the watch was re-sent");
        assert_eq!(
            kprox.metric("kprox_watch_restarts_total"),
            Some(1.0),
            "{query}"
        );
        assert_eq!(
            kprox.metric("kprox_watch_resumes_total"),
            Some(0.0),
            "{query}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_list_broken_after_its_bookmark_is_resumed_without_repeats() {
    let cluster = cluster_with_pods().await;
    let kprox = cluster.kprox(&[]);
    // 7 initial events, the initial-events-end bookmark, one live event; then the stream breaks.
    cluster.server.cut_next_watch_after(PODS.len() + 2);
    let watch = curl_watch(
        &kprox,
        &format!("/api/v1/namespaces/default/pods?{WATCH_LIST}&timeoutSeconds=3"),
    );
    wait_for_watchers(&cluster, 1).await;
    let delivered = touch(&cluster, "alpha", 1);
    // This one is the cut: it reaches the client from the resumed stream.
    touch(&cluster, "beta", 1);
    // And this one after the resume.
    tokio::time::sleep(Duration::from_millis(800)).await;
    touch(&cluster, "p3", 1);
    let out = watch.await.expect("curl");
    let events = events(&out);
    let mut expected: Vec<String> = PODS.iter().map(|p| format!("ADDED {p}")).collect();
    expected.extend(
        [
            "BOOKMARK ",
            "MODIFIED alpha",
            "MODIFIED beta",
            "MODIFIED p3",
        ]
        .map(String::from),
    );
    assert_eq!(summary(&events), expected, "{out}");
    assert_eq!(
        events[PODS.len()]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // The resumed request: from the last delivered version, no initial events asked for.
    let sent: Vec<String> = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods?")
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let resumed = &sent[1];
    assert!(
        resumed.contains(&format!("resourceVersion={delivered}")),
        "{resumed}"
    );
    assert!(
        !resumed.contains("sendInitialEvents") && !resumed.contains("resourceVersionMatch"),
        "{resumed}"
    );
    assert!(resumed.contains("allowWatchBookmarks=true"), "{resumed}");
    assert_eq!(kprox.metric("kprox_watch_resumes_total"), Some(1.0));
    assert_eq!(kprox.metric("kprox_watch_restarts_total"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_true_and_legacy_watch_paths_are_counted_and_resumed() {
    for form in [
        "/api/v1/namespaces/default/pods?watch=True&resourceVersion={rv}&timeoutSeconds=3",
        "/api/v1/watch/namespaces/default/pods?resourceVersion={rv}&timeoutSeconds=3",
    ] {
        let cluster = cluster_with_pods().await;
        let kprox = cluster.kprox(&[]);
        let rv = cluster.server.store().resource_version().to_string();
        cluster.server.cut_next_watch_after(1);
        let watch = curl_watch(&kprox, &form.replace("{rv}", &rv));
        wait_for_watchers(&cluster, 1).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while kprox.metric("kprox_watches_open") != Some(1.0) {
            assert!(Instant::now() < deadline, "{form}: not counted as a watch");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        touch(&cluster, "alpha", 1);
        touch(&cluster, "p2", 1);
        let out = watch.await.expect("curl");
        assert_eq!(
            summary(&events(&out)),
            ["MODIFIED alpha", "MODIFIED p2"],
            "{form}: {out}"
        );
        assert_eq!(
            kprox.metric("kprox_watch_resumes_total"),
            Some(1.0),
            "{form}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_is_told_and_relists_when_the_initial_events_break() {
    let cluster = cluster_with_pods().await;
    let kprox = cluster.kprox(&[]);
    cluster.server.cut_next_watch_after(3);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/watch_from_scratch.py"
    );
    let python = support::require_python(&["kubernetes"]);
    let out = tokio::task::spawn_blocking({
        let url = kprox.url("");
        let python = python.to_str().expect("utf8").to_owned();
        move || ok_stdout(&run(&python, &[script, &url]), "python watch")
    })
    .await
    .expect("python");
    let result: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(result["error"], 500, "{out}");
    let relisted: Vec<&str> = result["relisted"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(relisted, PODS, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_watch_sees_every_change_once_across_a_broken_stream() {
    let cluster = cluster_with_pods().await;
    let kprox = cluster.kprox(&[]);
    let cache = cluster.dir.path().join("kubectl-cache");
    // kubectl lists, then watches from the list's version: the first change arrives, then
    // the stream breaks and kprox resumes it.
    cluster.server.cut_next_watch_after(1);
    let mut command = support::kubectl_command(
        &kprox,
        &cache,
        &["get", "pods", "--watch-only", "-o", "name"],
    );
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    wait_for_watchers(&cluster, 1).await;
    for (i, name) in ["p1", "p4", "beta"].into_iter().enumerate() {
        touch(&cluster, name, 1);
        tokio::time::sleep(Duration::from_millis(300 * (i as u64 + 1))).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().to_string();
    run("kill", &["-INT", &pid]);
    let output = child.wait_with_output().expect("kubectl output");
    let printed = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines,
        ["pod/p1", "pod/p4", "pod/beta"],
        "stdout {printed}, stderr {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(kprox.metric("kprox_watch_resumes_total"), Some(1.0));
}

/// Runs `curl -N` on a protobuf watch through kprox and returns the decoded frames (a frame
/// cut short fails the test).
fn curl_protobuf_watch(
    cluster: &Cluster,
    kprox: &Kprox,
    path: &str,
) -> tokio::task::JoinHandle<Vec<kprox_testkit::protobuf_watch::WatchFrame>> {
    let url = kprox.url(path);
    let file = cluster
        .dir
        .path()
        .join(format!("watch-{}.pb", rand_suffix()));
    tokio::task::spawn_blocking(move || {
        let file_arg = file.display().to_string();
        ok_stdout(
            &run(
                "curl",
                &[
                    "-sS",
                    "-N",
                    "--max-time",
                    "20",
                    "-H",
                    "Accept: application/vnd.kubernetes.protobuf, application/json",
                    "-o",
                    &file_arg,
                    &url,
                ],
            ),
            "curl protobuf watch",
        );
        let bytes = std::fs::read(&file).expect("read the stream");
        kprox_testkit::protobuf_watch::decode_stream(&bytes)
            .unwrap_or_else(|e| panic!("the client got a broken protobuf stream: {e}"))
    })
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn frame_summary(frames: &[kprox_testkit::protobuf_watch::WatchFrame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            let name = f.metadata.get("name").and_then(Value::as_str).unwrap_or("");
            format!("{} {name}", f.kind)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protobuf_watch_is_resumed_with_whole_frames_and_no_repeat() {
    let cluster = cluster_with_pods().await;
    let kprox = cluster.kprox(&[]);
    let rv = cluster.server.store().resource_version();
    cluster.server.cut_next_watch_after(2);
    let watch = curl_protobuf_watch(
        &cluster,
        &kprox,
        &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=3"),
    );
    wait_for_watchers(&cluster, 1).await;
    for name in ["p2", "alpha", "p5", "beta"] {
        touch(&cluster, name, 1);
    }
    let frames = watch.await.expect("curl");
    assert_eq!(
        frame_summary(&frames),
        [
            "MODIFIED p2",
            "MODIFIED alpha",
            "MODIFIED p5",
            "MODIFIED beta"
        ]
    );
    assert_eq!(frames[0].object_kind, "Pod");
    assert_eq!(kprox.metric("kprox_watch_resumes_total"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protobuf_watch_list_broken_in_its_initial_events_gets_an_error_frame() {
    let cluster = cluster_with_pods().await;
    let kprox = cluster.kprox(&[]);
    cluster.server.cut_next_watch_after(3);
    let frames = curl_protobuf_watch(
        &cluster,
        &kprox,
        &format!("/api/v1/namespaces/default/pods?{WATCH_LIST}"),
    )
    .await
    .expect("curl");
    assert_eq!(
        frame_summary(&frames),
        ["ADDED alpha", "ADDED beta", "ADDED p1", "ERROR "]
    );
    assert_eq!(frames[3].object_kind, "Status");
    assert_eq!(frames[3].code, Some(500));
    assert_eq!(kprox.metric("kprox_watch_restarts_total"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_resumed_on_a_lagging_replica_moves_to_one_that_is_not() {
    use kprox_testkit::FakeApiServer;
    // Ordered failover: the first replica serves while it is up, then the second, then the third.
    let fixture = support::FailoverCluster::start(3, &["alpha", "beta"], &[]).await;
    let kprox = &fixture.kprox;
    let (replicas, store) = (&fixture.cluster.servers, &fixture.cluster.store);
    let rv = store.resource_version();
    let watch = curl_watch(
        kprox,
        &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=6"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.watchers() < 1 {
        assert!(Instant::now() < deadline, "the watch never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second replica's watch cache stops here; one change reaches the client.
    replicas[1].lag_behind(true);
    let bump = |name: &str| {
        let mut pod = store.get(Resource::PODS, "default", name).expect("pod");
        pod["metadata"]["labels"] = json!({"bumped": "yes"});
        store
            .update(Resource::PODS, "default", name, pod)
            .expect("update");
    };
    bump("alpha");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The first replica dies: the resume goes to the lagging one, which waits 3 s and answers
    // 504 "Too large resource version"; kprox tries the third after Retry-After.
    replicas[0]
        .set_behaviour(kprox_testkit::Behaviour::Refuse)
        .await;
    bump("beta");
    let out = watch.await.expect("curl");
    assert_eq!(
        summary(&events(&out)),
        ["MODIFIED alpha", "MODIFIED beta"],
        "{out}"
    );
    let watches_at = |replica: &FakeApiServer| {
        replica
            .requests_to("/api/v1/namespaces/default/pods?")
            .len()
    };
    assert_eq!(
        watches_at(&replicas[1]),
        1,
        "the lagging replica was asked once"
    );
    assert_eq!(
        watches_at(&replicas[2]),
        1,
        "the resume moved to the third replica"
    );
    assert_eq!(kprox.metric("kprox_watch_resumes_total"), Some(2.0));
}
