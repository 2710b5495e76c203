//! The clients people point at kprox: kubectl and the official Python client.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Cluster, Kprox, kubectl, ok_stdout, require_tool};

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_gets_pods_and_raw_version() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let cache = tempfile::tempdir().expect("cache");
    let pods = ok_stdout(
        &kubectl(&kprox, cache.path(), &["get", "pods"]),
        "kubectl get pods",
    );
    let lines: Vec<&str> = pods.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATUS"),
        "{pods}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("alpha ") && l.contains("Running")),
        "{pods}"
    );
    assert!(lines.iter().any(|l| l.starts_with("beta ")), "{pods}");

    let version = ok_stdout(
        &kubectl(&kprox, cache.path(), &["get", "--raw", "/version"]),
        "kubectl get --raw",
    );
    let version: serde_json::Value = serde_json::from_str(&version).expect("json");
    assert_eq!(version["gitVersion"], "v1.32.0-kprox-testkit");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_creates_a_configmap() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let cache = tempfile::tempdir().expect("cache");
    let out = ok_stdout(
        &kubectl(
            &kprox,
            cache.path(),
            &[
                "create",
                "configmap",
                "settings",
                "--from-literal=color=blue",
            ],
        ),
        "kubectl create",
    );
    assert_eq!(out.trim(), "configmap/settings created");
    let stored = cluster
        .server
        .store()
        .get(kprox_testkit::Resource::CONFIG_MAPS, "default", "settings")
        .expect("stored");
    assert_eq!(stored["data"]["color"], "blue");
    let listed = ok_stdout(
        &kubectl(
            &kprox,
            cache.path(),
            &[
                "get",
                "configmap",
                "settings",
                "-o",
                "jsonpath={.data.color}",
            ],
        ),
        "kubectl get cm",
    );
    assert_eq!(listed, "blue");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_pods_watch_sees_a_new_pod() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let cache = tempfile::tempdir().expect("cache");
    let kubectl_path = require_tool("kubectl");
    let mut child = Command::new(kubectl_path)
        .args([
            "--server",
            &kprox.url(""),
            "--cache-dir",
            &cache.path().display().to_string(),
            "get",
            "pods",
            "--watch",
            "--output-watch-events",
        ])
        .env("KUBECONFIG", "/dev/null")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // Wait for the initial list, then add a pod and wait for its event.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l: &String| l.contains("beta")) {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|_| panic!("no initial list; saw {seen:?}"));
        seen.push(line);
    }
    cluster
        .server
        .store()
        .add_pod("default", "gamma")
        .expect("add");
    while !seen.iter().any(|l| l.contains("gamma")) {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|_| panic!("no watch event; saw {seen:?}"));
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let event = seen
        .iter()
        .find(|l| l.contains("gamma"))
        .expect("gamma line");
    assert!(event.starts_with("ADDED"), "{event}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_lists_and_watches_pods() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let python = support::require_python(&["kubernetes"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/list_and_watch.py"
    );
    let mut child = Command::new(python)
        .args([script, &kprox.url(""), "delta"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut ready = String::new();
    reader.read_line(&mut ready).expect("ready line");
    assert!(
        ready.contains("\"ready\": true"),
        "python client did not list: {ready}"
    );
    cluster
        .server
        .store()
        .add_pod("default", "delta")
        .expect("add");
    let mut result = String::new();
    reader.read_line(&mut result).expect("result line");
    let status = child.wait().expect("python ends");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(status.success(), "python failed: {stderr}");
    let result: serde_json::Value =
        serde_json::from_str(&result).unwrap_or_else(|e| panic!("{e}: {result} {stderr}"));
    assert_eq!(result["listed"], serde_json::json!(["alpha", "beta"]));
    assert_eq!(result["watched"], serde_json::json!([["ADDED", "delta"]]));
}
