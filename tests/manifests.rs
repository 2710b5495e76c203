//! The Kubernetes manifests in deploy/kubernetes are valid YAML with the fields Kubernetes
//! requires, and the kprox arguments they use are arguments kprox accepts.

mod support;

use std::process::Command;

use serde_json::Value;

fn documents(name: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    assert!(!docs.is_empty());
    for doc in &docs {
        assert!(
            doc["apiVersion"].is_string() && doc["kind"].is_string(),
            "{name}: a document lacks apiVersion or kind: {doc}"
        );
        assert!(
            doc["metadata"]["name"].is_string(),
            "{name}: a {} has no name",
            doc["kind"]
        );
    }
    docs
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// Checks that kprox accepts `args` (flags and configuration), without a cluster.
fn kprox_accepts(args: &[Value]) {
    let mut args: Vec<&str> = args
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    args.extend(["config", "print"]);
    let out = support::kprox_output(&args, &[("KUBECONFIG", "/nonexistent")]);
    assert!(
        out.status.success(),
        "kprox refuses {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_kprox_container(container: &Value) {
    assert!(
        container["image"]
            .as_str()
            .is_some_and(|i| i.contains("kprox"))
    );
    assert!(container["readinessProbe"]["httpGet"]["path"] == "/readyz");
    assert!(container["livenessProbe"]["httpGet"]["path"] == "/livez");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(container["securityContext"]["runAsUser"], 65532);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    kprox_accepts(container["args"].as_array().expect("args"));
}

#[test]
fn the_sidecar_pod_runs_kprox_as_a_native_sidecar() {
    let docs = documents("sidecar.yaml");
    let pod = kind(&docs, "Pod");
    let kprox = &pod["spec"]["initContainers"][0];
    assert_eq!(
        kprox["restartPolicy"], "Always",
        "a native sidecar is an init container that restarts"
    );
    check_kprox_container(kprox);
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert!(pod["spec"]["containers"][0]["name"].is_string());
}

#[test]
fn the_node_local_daemonset_discovers_the_control_plane_with_the_rbac_it_needs() {
    let docs = documents("node-local.yaml");
    let daemonset = kind(&docs, "DaemonSet");
    let spec = &daemonset["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(
        daemonset["spec"]["selector"]["matchLabels"],
        daemonset["spec"]["template"]["metadata"]["labels"]
    );
    let container = &spec["containers"][0];
    check_kprox_container(container);
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    // Never kprox's identity for node agents: the kubelet's certificate through the TCP
    // pass-through port, each agent's own token through the L7 port.
    for arg in [
        "--discover",
        "--tcp-passthrough=127.0.0.1:7445",
        "--client-credentials=forward",
        "--port=7446",
    ] {
        assert!(args.contains(&arg), "{arg} missing from {args:?}");
    }
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--pass-client-credentials")),
        "{args:?}"
    );
    // Every port kprox listens on is declared, and the probes use the admin port.
    let ports: Vec<u64> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert_eq!(ports, [7445, 7446, 7447]);
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], 7447);
    let role = kind(&docs, "Role");
    let rule = &role["rules"][0];
    assert_eq!(rule["apiGroups"][0], "discovery.k8s.io");
    assert_eq!(rule["resources"][0], "endpointslices");
    for verb in ["list", "watch"] {
        assert!(
            rule["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .any(|v| v == verb),
            "{verb}"
        );
    }
    let binding = kind(&docs, "RoleBinding");
    assert_eq!(binding["subjects"][0]["name"], spec["serviceAccountName"]);
}

#[test]
fn the_podmonitor_scrapes_the_admin_port() {
    let docs = documents("podmonitor.yaml");
    let monitor = kind(&docs, "PodMonitor");
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["path"],
        "/metrics"
    );
}

#[test]
fn the_release_build_the_dockerfile_runs_works_outside_docker() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("RUN scripts/build-release"),
        "the Dockerfile must build with scripts/build-release"
    );
    assert!(
        dockerfile.contains("USER 65532:65532") && dockerfile.contains(r#"ENTRYPOINT ["kprox"]"#)
    );
    let out = Command::new(root.join("scripts/build-release"))
        .current_dir(&root)
        .output()
        .expect("build-release");
    assert!(
        out.status.success(),
        "release build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = root.join(String::from_utf8_lossy(&out.stdout).trim());
    // Profile-guided: the training run served its traffic, and what ships is the optimised
    // build, not the instrumented one (which would write profiles wherever it runs).
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.lines().any(|l| l.starts_with("kprox-pgo-train: ")
            && l.contains(" requests answered, 200 watches received their event")),
        "no training run in the build's output: {said}"
    );
    let bytes = std::fs::read(&binary).expect("read the release binary");
    assert!(
        !bytes.windows(15).any(|w| w == b"__llvm_prf_cnts"),
        "the release binary is the instrumented one"
    );
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .expect("run the release binary");
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("kprox "),
        "{}",
        String::from_utf8_lossy(&version.stdout)
    );
    let help = Command::new(&binary).arg("--help").output().expect("help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--accept-hosts"));
    // The container's kprox carries no simulated cluster, and says so in one line.
    let demo = Command::new(&binary).arg("demo").output().expect("demo");
    let said = String::from_utf8_lossy(&demo.stderr);
    assert!(
        !demo.status.success()
            && said.contains("built without `kprox demo`")
            && said.lines().count() == 1,
        "{said}"
    );
}
