//! `kprox demo` as a newcomer uses it in the first ten minutes: kubectl's everyday commands and
//! three Python client libraries, through kprox, against the demo's simulated cluster. Every
//! command must succeed and print what a real cluster would print, in shape.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{Kprox, ok_stdout, require_tool, run_with_env};

/// A demo, with exec and attach let through (`kprox` refuses them by default, as kubectl proxy
/// does; the demo's hints say how to allow them).
fn demo() -> Kprox {
    Kprox::start_exact(
        &[
            "demo",
            "--port",
            "0",
            "--admin-address",
            "127.0.0.1:0",
            "--reject-paths",
            "^$",
        ],
        &[],
    )
}

struct Kubectl {
    server: String,
    cache: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(demo: &Kprox) -> Self {
        Self {
            server: demo.url(""),
            cache: tempfile::tempdir().expect("cache"),
            dir: tempfile::tempdir().expect("dir"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(require_tool("kubectl"));
        command
            .args(["--server", &self.server, "--cache-dir"])
            .arg(self.cache.path())
            .args(["--request-timeout", "20s"])
            .args(args)
            .env("KUBECONFIG", "/dev/null")
            .current_dir(self.dir.path());
        command
    }

    fn output(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("kubectl runs")
    }

    /// Runs kubectl, requires success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        ok_stdout(
            &self.output(args, &[]),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    }
}

fn assert_has(text: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(text.contains(w), "expected {w:?} in:\n{text}");
    }
}

/// The words of the first line of a `kubectl get` table.
fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

#[test]
fn a_newcomer_session_with_kubectl_works_from_get_to_delete() {
    let demo = demo();
    let k = Kubectl::new(&demo);

    // Looking around.
    let pods = k.ok(&["get", "pods"]);
    assert_eq!(
        header(&pods),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let db = pods
        .lines()
        .find(|l| l.starts_with("db-0 "))
        .unwrap_or_else(|| panic!("{pods}"));
    let cells: Vec<&str> = db.split_whitespace().collect();
    assert_eq!(cells[1..4], ["1/1", "Running", "0"], "{db}");
    assert!(
        cells[4].ends_with('s') || cells[4].ends_with('m'),
        "an age, not <unknown>: {db}"
    );
    assert_eq!(
        pods.lines().filter(|l| l.starts_with("web-")).count(),
        2,
        "{pods}"
    );
    assert_has(
        &k.ok(&["get", "all"]),
        &[
            "service/web",
            "deployment.apps/web",
            "replicaset.apps/web-",
            "2/2",
        ],
    );
    assert_has(&k.ok(&["get", "nodes"]), &["demo-node", "Ready", "v1.32.0"]);
    assert_has(
        &k.ok(&["get", "namespaces"]),
        &["default", "kube-system", "Active"],
    );
    let described = k.ok(&["describe", "pod", "db-0"]);
    assert_has(
        &described,
        &[
            "Name:",
            "db-0",
            "Node:",
            "demo-node",
            "Events:",
            "Scheduled",
            "Started",
        ],
    );
    assert_has(
        &k.ok(&["describe", "deployment", "web"]),
        &["Replicas:", "2 desired", "ScalingReplicaSet"],
    );
    let events = k.ok(&["events"]);
    assert_eq!(header(&events)[..2], ["LAST", "SEEN"]);
    assert_has(&events, &["Scheduled", "Pod/db-0"]);
    assert_has(
        &k.ok(&["get", "events", "--sort-by=.lastTimestamp"]),
        &["Started"],
    );
    assert_has(
        &k.ok(&["api-resources"]),
        &["deployments", "apps/v1", "selfsubjectaccessreviews"],
    );

    // explain reads the OpenAPI v3 schema.
    assert_has(
        &k.ok(&["explain", "configmap"]),
        &["KIND:       ConfigMap", "FIELDS:", "data"],
    );
    assert_has(
        &k.ok(&["explain", "pods.spec.containers"]),
        &["FIELD: containers <[]Container>", "image"],
    );

    // apply: client-side twice, then server-side; diff honours dryRun.
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  greeting: hi\n";
    let file = k.write("cm.yaml", manifest);
    assert_has(&k.ok(&["apply", "-f", &file]), &["configmap/hello created"]);
    assert_has(
        &k.ok(&["apply", "-f", &file]),
        &["configmap/hello unchanged"],
    );
    assert_eq!(k.ok(&["diff", "-f", &file]), "", "nothing to diff");
    let changed = k.write(
        "cm.yaml",
        &manifest.replace("greeting: hi", "greeting: hello"),
    );
    let diff = k.output(&["diff", "-f", &changed], &[]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "kubectl diff exits 1 when there are differences"
    );
    assert_has(
        &String::from_utf8_lossy(&diff.stdout),
        &["-  greeting: hi", "+  greeting: hello"],
    );
    let data = |k: &Kubectl| k.ok(&["get", "cm", "hello", "-o", "jsonpath={.data}"]);
    assert_eq!(data(&k), r#"{"greeting":"hi"}"#, "diff changed nothing");
    assert_has(
        &k.ok(&["apply", "--server-side", "-f", &changed]),
        &["configmap/hello serverside-applied"],
    );
    assert_eq!(data(&k), r#"{"greeting":"hello"}"#);

    // patch (three kinds), label, annotate, edit.
    assert_has(
        &k.ok(&["patch", "cm", "hello", "-p", r#"{"data":{"a":"1"}}"#]),
        &["configmap/hello patched"],
    );
    k.ok(&[
        "patch",
        "cm",
        "hello",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    k.ok(&[
        "patch",
        "cm",
        "hello",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/c","value":"3"}]"#,
    ]);
    assert_eq!(data(&k), r#"{"a":"1","b":"2","c":"3","greeting":"hello"}"#);
    assert_has(
        &k.ok(&["label", "cm", "hello", "tier=front"]),
        &["configmap/hello labeled"],
    );
    assert_has(
        &k.ok(&["annotate", "cm", "hello", "owner=me"]),
        &["configmap/hello annotated"],
    );
    assert_has(&k.ok(&["get", "cm", "-l", "tier=front"]), &["hello"]);
    let unchanged = k.output(&["edit", "cm", "hello"], &[("EDITOR", "true")]);
    ok_stdout(&unchanged, "kubectl edit");
    assert_has(
        &String::from_utf8_lossy(&unchanged.stderr),
        &["Edit cancelled, no changes made."],
    );
    let editor = k.write(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n",
    );
    let chmod = Command::new("chmod")
        .args(["+x", &editor])
        .status()
        .expect("chmod");
    assert!(chmod.success());
    let edited = k.output(&["edit", "cm", "hello"], &[("EDITOR", &editor)]);
    assert_has(
        &ok_stdout(&edited, "kubectl edit"),
        &["configmap/hello edited"],
    );
    assert!(data(&k).contains(r#""greeting":"edited""#));

    // Workloads: logs, rollout, scale, a new image, create and run.
    let logs = k.ok(&["logs", "db-0"]);
    assert!(
        logs.lines().count() >= 1 && logs.lines().all(|l| l.contains("db-0/db")),
        "{logs}"
    );
    assert_has(
        &k.ok(&["rollout", "status", "deployment/web", "--timeout", "20s"]),
        &["successfully rolled out"],
    );
    assert_has(
        &k.ok(&["scale", "deployment", "web", "--replicas", "3"]),
        &["deployment.apps/web scaled"],
    );
    k.ok(&["rollout", "status", "deployment/web", "--timeout", "20s"]);
    assert_has(&k.ok(&["get", "deployment", "web"]), &["3/3"]);
    assert_has(
        &k.ok(&[
            "set",
            "image",
            "deployment/web",
            "web=registry.k8s.io/nginx:1.28",
        ]),
        &["image updated"],
    );
    k.ok(&["rollout", "status", "deployment/web", "--timeout", "20s"]);
    let images = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(
        images.split_whitespace().collect::<Vec<_>>(),
        ["registry.k8s.io/nginx:1.28"; 3]
    );
    assert_has(
        &k.ok(&["create", "deployment", "api", "--image=nginx"]),
        &["deployment.apps/api created"],
    );
    k.ok(&["rollout", "status", "deployment/api", "--timeout", "20s"]);
    assert_has(
        &k.ok(&[
            "expose",
            "deployment",
            "api",
            "--port",
            "80",
            "--target-port",
            "8080",
        ]),
        &["service/api exposed"],
    );
    assert_has(&k.ok(&["get", "service", "api"]), &["ClusterIP", "80/TCP"]);
    assert_has(
        &k.ok(&["run", "box", "--image=busybox", "--", "sleep", "3600"]),
        &["pod/box created"],
    );
    wait_for(
        || k.ok(&["get", "pod", "box"]).contains("Running"),
        "pod box running",
    );
    assert_has(
        &k.ok(&["create", "namespace", "team-a"]),
        &["namespace/team-a created"],
    );
    assert_has(
        &k.ok(&["create", "secret", "generic", "s1", "--from-literal=k=v"]),
        &["secret/s1 created"],
    );
    assert_has(
        &k.ok(&[
            "create",
            "cm",
            "dry",
            "--from-literal=a=b",
            "--dry-run=server",
        ]),
        &["configmap/dry created (server dry run)"],
    );
    let absent = k.output(&["get", "cm", "dry"], &[]);
    assert!(!absent.status.success(), "a server dry run stores nothing");
    assert_has(
        &String::from_utf8_lossy(&absent.stderr),
        &["NotFound", "\"dry\" not found"],
    );

    // auth, exec, port-forward.
    assert_eq!(k.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    assert_eq!(
        k.ok(&["exec", "db-0", "--", "echo", "hi", "there"]),
        "hi there\n"
    );
    port_forward_echoes(&k);

    // logs -f streams lines as the container writes them.
    follow_logs_grow(&k);

    // delete, and it is gone.
    assert_has(
        &k.ok(&["delete", "cm", "hello"]),
        &["configmap \"hello\" deleted"],
    );
    assert!(!k.output(&["get", "cm", "hello"], &[]).status.success());
    assert_has(
        &k.ok(&["delete", "deployment", "api"]),
        &["deployment.apps \"api\" deleted"],
    );
    wait_for(
        || !k.ok(&["get", "pods", "-o", "name"]).contains("pod/api-"),
        "the deployment's pods go with it",
    );
}

fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn port_forward_echoes(k: &Kubectl) {
    let mut child = k
        .command(&["port-forward", "pod/db-0", ":5432"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let port = loop {
        let n = stdout.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "port-forward ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        // "Forwarding from 127.0.0.1:PORT -> 5432"
        if let Some(port) = text
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse::<u16>().ok())
        {
            break port;
        }
    };
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"ping through port-forward")
        .expect("write");
    let mut echoed = vec![0u8; 25];
    stream
        .read_exact(&mut echoed)
        .expect("the forwarded port echoes");
    assert_eq!(&echoed, b"ping through port-forward");
    let _ = child.kill();
    let _ = child.wait();
}

fn follow_logs_grow(k: &Kubectl) {
    let mut child = k
        .command(&["logs", "-f", "--tail", "1", "db-0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let mut stdout = child.stdout.take().expect("stdout");
    let start = Instant::now();
    let mut text = String::new();
    let mut buf = [0u8; 1024];
    while text.lines().count() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "logs -f stopped growing: {text}"
        );
        let n = stdout.read(&mut buf).expect("read");
        assert!(n > 0, "logs -f ended early: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let numbers: Vec<u64> = text
        .lines()
        .filter_map(|l| l.rsplit("line=").next()?.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "{text}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "lines in order, as written: {text}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_demo_hints_say_how_to_let_exec_through_and_exec_is_refused_without_it() {
    let demo = Kprox::start_exact(
        &["demo", "--port", "0", "--admin-address", "127.0.0.1:0"],
        &[],
    );
    // The hints follow the startup line.
    wait_for(
        || demo.stderr().contains("stop with Ctrl-C"),
        "the demo's hints",
    );
    assert_has(
        &demo.stderr(),
        &["logs -f deployment/web", "--reject-paths '^$'"],
    );
    let k = Kubectl::new(&demo);
    let refused = k.output(&["exec", "db-0", "--", "echo", "hi"], &[]);
    assert!(!refused.status.success());
    assert_has(
        &String::from_utf8_lossy(&refused.stderr),
        &["Forbidden", "--reject-paths"],
    );
}

#[test]
fn python_kubernetes_kr8s_and_lightkube_list_watch_and_patch_through_the_demo() {
    let demo = demo();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/demo_clients.py");
    let out = run_with_env(
        support::require_python(&["kubernetes", "kr8s", "lightkube"])
            .to_str()
            .expect("utf8"),
        &[script.to_str().expect("utf8"), &demo.url("")],
        &[],
    );
    let text = ok_stdout(&out, "python demo_clients.py");
    let results: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let libraries: Vec<&str> = results
        .iter()
        .filter_map(|r| r["library"].as_str())
        .collect();
    assert_eq!(libraries, ["kubernetes", "kr8s", "lightkube"]);
    for result in &results {
        let pods: Vec<&str> = result["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        assert!(pods.contains(&"db-0"), "{result}");
        assert_eq!(
            pods.iter().filter(|p| p.starts_with("web-")).count(),
            2,
            "{result}"
        );
        let last = result["watched"].as_array().and_then(|w| w.last()).cloned();
        assert_eq!(
            last,
            Some(serde_json::json!(["MODIFIED", "patched"])),
            "the watch saw the patch: {result}"
        );
        assert_eq!(result["final"]["step"], "patched", "{result}");
    }
    assert_eq!(
        results[1]["version"], "v1.32.0-kprox-testkit",
        "kr8s asks for /version/"
    );
    let managers = results[2]["managers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        managers.contains(&serde_json::json!("lightkube-demo")),
        "server-side apply recorded its manager"
    );
}
