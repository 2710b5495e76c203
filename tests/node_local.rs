//! Node-local mode (deploy/kubernetes/node-local.yaml): kprox on a node in front of the
//! control plane must never lend its own identity. Token agents go through the L7 port with
//! `--client-credentials forward` and are seen as themselves; clients with their own client
//! certificates (the kubelet) go through the TCP pass-through port, TLS untouched.

mod support;

use kprox_testkit::Identity;
use support::{Cluster, Kprox, ok_stdout, run};

const AGENT_TOKEN: &str = "node-agent-token-51c0";

/// A cluster whose kubeconfig user — kprox's identity — is a client certificate the fake
/// accepts, which is the dangerous case: on a connection of kprox's, that certificate would
/// win over any client token.
async fn cluster_with_kprox_certificate() -> (Cluster, String) {
    let cluster = Cluster::start().await;
    cluster
        .server
        .set_tokens(vec![support::TOKEN.to_owned(), AGENT_TOKEN.to_owned()]);
    let issued = cluster
        .server
        .pki()
        .client_cert("system:serviceaccount:kprox:kprox", &[])
        .expect("client certificate");
    let kubeconfig = cluster.dir.path().join("kprox-cert-kubeconfig");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
        .user_cert("kprox", &issued.cert_pem, &issued.key_pem)
        .context("fake", "fake", "kprox")
        .current("fake")
        .write(&kubeconfig)
        .expect("kubeconfig");
    (cluster, kubeconfig.display().to_string())
}

fn curl_code(url: &str, headers: &[&str]) -> String {
    let mut args = vec!["-sS", "-o", "/dev/null", "-w", "%{http_code}"];
    for header in headers {
        args.extend(["-H", header]);
    }
    args.push(url);
    ok_stdout(&run("curl", &args), "curl")
}

fn last_identity(cluster: &Cluster, path: &str) -> (Identity, kprox_testkit::LoggedRequest) {
    let request = cluster
        .server
        .requests_to(path)
        .pop()
        .unwrap_or_else(|| panic!("no request to {path} reached the apiserver"));
    (request.identity(), request)
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_client_credentials_are_the_clients_own_and_nothing_of_kproxs() {
    let (cluster, kubeconfig) = cluster_with_kprox_certificate().await;
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &kubeconfig,
        "--client-credentials",
        "forward",
    ]);
    let pods = "/api/v1/namespaces/default/pods";

    // An agent with its own token is seen as itself, with no certificate of kprox's.
    let agent = format!("Authorization: Bearer {AGENT_TOKEN}");
    assert_eq!(curl_code(&kprox.url(pods), &[&agent]), "200");
    let (identity, _) = last_identity(&cluster, pods);
    assert_eq!(identity, Identity::Token(AGENT_TOKEN.to_owned()));

    // Impersonation claims are still removed.
    let path = "/api/v1/namespaces/default/pods/alpha";
    assert_eq!(
        curl_code(
            &kprox.url(path),
            &[
                &agent,
                "Impersonate-User: admin",
                "Impersonate-Group: system:masters"
            ]
        ),
        "200"
    );
    let (identity, request) = last_identity(&cluster, path);
    assert_eq!(identity, Identity::Token(AGENT_TOKEN.to_owned()));
    assert!(
        !request
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("impersonate-")),
        "{:?}",
        request.headers
    );

    // A client with no credentials arrives anonymous — never as kprox — and gets the
    // apiserver's own answer.
    let path = "/api/v1/namespaces/default/configmaps";
    assert_eq!(curl_code(&kprox.url(path), &[]), "401");
    let (identity, _) = last_identity(&cluster, path);
    assert_eq!(identity, Identity::Anonymous);

    // kprox's own identity is still used for its health checks (here anonymous-safe /readyz
    // over connections without kprox's certificate), so the apiserver stays in rotation.
    assert_eq!(curl_code(&kprox.url("/version"), &[]), "200");
    assert!(
        cluster
            .server
            .requests_to(pods)
            .iter()
            .chain(&cluster.server.requests_to("/readyz"))
            .all(|r| r.client_cert_der.is_none()),
        "a connection presented kprox's client certificate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_mode_refuses_to_be_combined_with_pass_client_credentials() {
    let (_cluster, kubeconfig) = cluster_with_kprox_certificate().await;
    let out = support::kprox_output(
        &[
            "--kubeconfig",
            &kubeconfig,
            "--port",
            "0",
            "--admin-address",
            "off",
            "--client-credentials",
            "forward",
            "--pass-client-credentials",
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listen.client_credentials") && stderr.contains("choose one"),
        "{stderr}"
    );
}

/// Two apiservers of one cluster, kprox in front with a TCP pass-through port (failover
/// policy, so the first apiserver serves while it is healthy), and a node's client certificate.
struct PassthroughSetup {
    cluster: kprox_testkit::FakeCluster,
    dir: tempfile::TempDir,
    kprox: Kprox,
    port: u16,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    cert_der: Vec<u8>,
}

async fn passthrough_setup() -> PassthroughSetup {
    let support::FailoverCluster {
        cluster,
        dir,
        kprox,
    } = support::FailoverCluster::start(2, &["alpha"], &["--tcp-passthrough", "127.0.0.1:0"]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let port = loop {
        if let Some(port) = kprox.stderr().lines().find_map(|l| {
            l.strip_prefix("TCP pass-through on 127.0.0.1:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        }) {
            break port;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pass-through line: {}",
            kprox.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let node = cluster
        .pki
        .client_cert("system:node:node-1", &["system:nodes"])
        .expect("node certificate");
    let (ca, cert, key) = (
        dir.path().join("ca.crt"),
        dir.path().join("node.crt"),
        dir.path().join("node.key"),
    );
    std::fs::write(&ca, cluster.pki.ca_pem()).expect("write");
    std::fs::write(&cert, &node.cert_pem).expect("write");
    std::fs::write(&key, &node.key_pem).expect("write");
    PassthroughSetup {
        cert_der: node.cert_der().to_vec(),
        cluster,
        dir,
        kprox,
        port,
        ca,
        cert,
        key,
    }
}

impl PassthroughSetup {
    /// curl through the pass-through port with the node's certificate, verifying the
    /// apiserver as `localhost` (every apiserver certificate names it: the SAN requirement).
    fn curl(&self, path: &str) -> String {
        let url = format!("https://localhost:{}{path}", self.port);
        let args = [
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--cacert",
            self.ca.to_str().expect("utf8"),
            "--cert",
            self.cert.to_str().expect("utf8"),
            "--key",
            self.key.to_str().expect("utf8"),
            &url,
        ];
        String::from_utf8_lossy(&run("curl", &args).stdout).into_owned()
    }

    /// How many requests to `path` with the node's certificate apiserver `n` has seen.
    fn node_requests(&self, n: usize, path: &str) -> usize {
        self.cluster.servers[n]
            .requests_to(path)
            .iter()
            .filter(|r| r.identity() == Identity::Certificate(self.cert_der.clone()))
            .count()
    }

    /// A kubeconfig for kubectl that reaches the cluster through the pass-through port.
    fn kubeconfig(&self) -> String {
        let path = self.dir.path().join("node-kubeconfig");
        kprox_testkit::KubeconfigBuilder::new()
            .cluster_with_ca_file(
                "node",
                &format!("https://localhost:{}", self.port),
                self.ca.to_str().expect("utf8"),
            )
            .user_cert_files(
                "node",
                self.cert.to_str().expect("utf8"),
                self.key.to_str().expect("utf8"),
            )
            .context("node", "node", "node")
            .current("node")
            .write(&path)
            .expect("kubeconfig");
        path.display().to_string()
    }

    fn kubectl_get_pods(&self) -> std::process::Output {
        let cache = self.dir.path().join("kubectl-cache");
        run(
            "kubectl",
            &[
                "--kubeconfig",
                &self.kubeconfig(),
                "--cache-dir",
                cache.to_str().expect("utf8"),
                "--request-timeout",
                "5s",
                "get",
                "pods",
                "-o",
                "name",
            ],
        )
    }

    fn metrics(&self) -> String {
        ok_stdout(
            &run(
                "curl",
                &["-sS", &format!("{}/metrics", self.kprox.admin_url())],
            ),
            "curl /metrics",
        )
    }

    /// Waits until kprox has taken apiserver `n` out of rotation.
    fn wait_ejected(&self, n: usize) {
        let line = format!(
            "kprox_upstream_up{{endpoint=\"{}\"}} 0",
            self.cluster.servers[n].url()
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.metrics().contains(&line) {
            assert!(
                std::time::Instant::now() < deadline,
                "apiserver {n} was never ejected: {}",
                self.kprox.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test(flavor = "multi_thread")]
async fn the_nodes_own_certificate_reaches_the_apiserver_through_the_pass_through_port() {
    let setup = passthrough_setup().await;
    assert_eq!(setup.curl(PODS), "200", "{}", setup.kprox.stderr());
    assert_eq!(setup.node_requests(0, PODS), 1);
    let seen = setup.cluster.servers[0]
        .requests_to(PODS)
        .pop()
        .expect("request");
    assert!(
        !seen.headers.contains_key("authorization"),
        "kprox added a credential to a pass-through connection"
    );
    let out = setup.kubectl_get_pods();
    assert_eq!(ok_stdout(&out, "kubectl get pods"), "pod/alpha\n");
    assert_eq!(setup.node_requests(0, PODS), 2);

    let metrics = setup.metrics();
    let first = setup.cluster.servers[0].url();
    let opened = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "kprox_passthrough_connections_total{{endpoint=\"{first}\"}} "
            ))
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(opened >= 2.0, "{metrics}");
    assert!(
        metrics.contains(&format!(
            "kprox_passthrough_bytes_total{{direction=\"to_client\",endpoint=\"{first}\"}}"
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_apiserver_in_use_dies_new_connections_and_kubectl_land_on_a_healthy_one_within_two_seconds()
 {
    let setup = passthrough_setup().await;
    assert_eq!(setup.curl(PODS), "200");
    assert_eq!(setup.node_requests(0, PODS), 1);
    setup.cluster.servers[0]
        .set_behaviour(kprox_testkit::Behaviour::Refuse)
        .await;
    let killed = std::time::Instant::now();
    let out = setup.kubectl_get_pods();
    assert_eq!(ok_stdout(&out, "kubectl get pods"), "pod/alpha\n");
    assert_eq!(setup.curl(PODS), "200");
    let took = killed.elapsed();
    assert!(
        took < std::time::Duration::from_secs(2),
        "took {took:?} to reach a healthy apiserver"
    );
    assert_eq!(setup.node_requests(1, PODS), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apiserver_that_accepts_tcp_but_is_not_ready_gets_no_new_connections_and_loses_its_open_ones()
 {
    use std::io::Read as _;
    let setup = passthrough_setup().await;
    assert_eq!(setup.curl(PODS), "200");
    // A connection spliced to the first apiserver and left open.
    let mut open = std::net::TcpStream::connect(("127.0.0.1", setup.port)).expect("connect");
    std::thread::sleep(std::time::Duration::from_millis(200));
    setup.cluster.servers[0]
        .set_behaviour(kprox_testkit::Behaviour::Unready)
        .await;
    setup.wait_ejected(0);
    open.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    assert_eq!(
        open.read(&mut byte)
            .expect("the connection is closed, not left hanging"),
        0,
        "the open connection to the unready apiserver was not closed"
    );
    let before = setup.node_requests(0, PODS);
    for _ in 0..10 {
        assert_eq!(setup.curl(PODS), "200");
    }
    assert_eq!(
        setup.node_requests(0, PODS),
        before,
        "the unready apiserver got connections"
    );
    assert_eq!(setup.node_requests(1, PODS), 10);
}
