//! Who kprox is to the apiserver: impersonation, kubectl's global credential flags, token
//! rotation, exec credential plugins and recovery from a 401.

mod support;

use support::{Cluster, Kprox, TOKEN, fetch_ok, ok_stdout, run};

fn header_values(request: &kprox_testkit::LoggedRequest, name: &str) -> Vec<String> {
    request
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn as_flags_impersonate_and_client_impersonation_is_replaced() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&[
        "--as",
        "alice",
        "--as-group",
        "devs",
        "--as-group",
        "ops",
        "--as-uid",
        "1001",
    ]);
    ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                "-o",
                "/dev/null",
                "-H",
                "Impersonate-User: mallory",
                "-H",
                "Impersonate-Group: system:masters",
                &kprox.url("/version"),
            ],
        ),
        "curl",
    );
    let seen = cluster
        .server
        .requests_to("/version")
        .pop()
        .expect("reached");
    assert_eq!(header_values(&seen, "impersonate-user"), ["alice"]);
    assert_eq!(header_values(&seen, "impersonate-group"), ["devs", "ops"]);
    assert_eq!(header_values(&seen, "impersonate-uid"), ["1001"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubeconfig_user_with_as_impersonates() {
    let cluster = Cluster::start().await;
    let path = cluster.dir.path().join("as-kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {TOKEN}\n    as: bob\n    as-groups: [readers]\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
            cluster.server.url(),
            base64_of(&cluster.server.ca_pem())
        ),
    )
    .expect("write");
    let kprox = Kprox::start(&["--kubeconfig", &path.display().to_string()]);
    fetch_ok(&kprox.url("/version"));
    let seen = cluster
        .server
        .requests_to("/version")
        .pop()
        .expect("reached");
    assert_eq!(header_values(&seen, "impersonate-user"), ["bob"]);
    assert_eq!(header_values(&seen, "impersonate-group"), ["readers"]);
}

fn base64_of(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("base64")
        .args(["-w", "0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    String::from_utf8(child.wait_with_output().expect("base64").stdout).expect("utf8")
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectls_global_flags_override_the_kubeconfig() {
    let cluster = Cluster::start_with(kprox_testkit::FakeOptions {
        extra_names: vec!["api.kprox.test".into()],
        ..Default::default()
    })
    .await;
    cluster
        .server
        .set_tokens(vec![TOKEN.into(), "flag-token".into()]);
    // A kubeconfig with no CA and no credential at all.
    let bare = cluster.dir.path().join("bare");
    std::fs::write(
        &bare,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n", cluster.server.url()),
    )
    .expect("write");
    let ca = cluster.dir.path().join("ca.pem");
    std::fs::write(&ca, cluster.server.ca_pem()).expect("write ca");
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &bare.display().to_string(),
        "--certificate-authority",
        &ca.display().to_string(),
        "--token",
        "flag-token",
        "--tls-server-name",
        "api.kprox.test",
    ]);
    fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("reached");
    assert_eq!(header_values(&seen, "authorization"), ["Bearer flag-token"]);

    let insecure = Kprox::start(&[
        "--kubeconfig",
        &bare.display().to_string(),
        "--insecure-skip-tls-verify",
        "--token",
        "flag-token",
    ]);
    fetch_ok(&insecure.url("/version"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        insecure.stderr().contains("NOT verified"),
        "{}",
        insecure.stderr()
    );
}

/// A cluster whose user authenticates with the fake exec plugin.
struct ExecSetup {
    cluster: Cluster,
    token_file: std::path::PathBuf,
    log: std::path::PathBuf,
    kubeconfig: String,
}

impl ExecSetup {
    async fn start(extra_env: &[(&str, &str)]) -> Self {
        let cluster = Cluster::start().await;
        let dir = cluster.dir.path();
        let plugin = kprox_testkit::write_exec_plugin(dir).expect("plugin");
        let token_file = dir.join("exec-token");
        std::fs::write(&token_file, "exec-token-1").expect("token");
        cluster.server.set_tokens(vec!["exec-token-1".into()]);
        let log = dir.join("exec.log");
        let mut env = vec![
            ("FAKE_EXEC_TOKEN_FILE", token_file.to_str().expect("utf8")),
            ("FAKE_EXEC_LOG", log.to_str().expect("utf8")),
        ];
        env.extend_from_slice(extra_env);
        let path = dir.join("exec-kubeconfig");
        kprox_testkit::KubeconfigBuilder::new()
            .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
            .user_exec(
                "plugin-user",
                plugin.to_str().expect("utf8"),
                &env,
                Some("install it with: make fake-plugin"),
            )
            .context("fake", "fake", "plugin-user")
            .current("fake")
            .write(&path)
            .expect("kubeconfig");
        Self {
            cluster,
            token_file,
            log,
            kubeconfig: path.display().to_string(),
        }
    }

    fn runs(&self) -> usize {
        kprox_testkit::exec_plugin_runs(&self.log)
    }

    /// The apiserver now accepts only `token`, and the plugin hands it out.
    fn rotate(&self, token: &str) {
        std::fs::write(&self.token_file, token).expect("token");
        self.cluster.server.set_tokens(vec![token.into()]);
    }
}

async fn concurrent_gets(kprox: &Kprox, n: usize) -> Vec<u16> {
    let url = kprox.url("/api/v1/namespaces/default/pods");
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                let out = run(
                    "curl",
                    &["-sS", "-o", "/dev/null", "-w", "%{http_code}", &url],
                );
                String::from_utf8_lossy(&out.stdout)
                    .parse::<u16>()
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.expect("task"));
    }
    codes
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_plugin_runs_once_for_a_hundred_concurrent_first_requests() {
    let setup = ExecSetup::start(&[]).await;
    let kprox = Kprox::start(&["--kubeconfig", &setup.kubeconfig]);
    let codes = concurrent_gets(&kprox, 100).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    assert_eq!(setup.runs(), 1);
    let seen = setup
        .cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("reached");
    assert_eq!(
        header_values(&seen, "authorization"),
        ["Bearer exec-token-1"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_refreshes_the_exec_credential_once_and_the_client_never_sees_it() {
    let setup = ExecSetup::start(&[]).await;
    let kprox = Kprox::start(&["--kubeconfig", &setup.kubeconfig]);
    assert_eq!(concurrent_gets(&kprox, 1).await, [200]);
    setup.rotate("exec-token-2");
    let codes = concurrent_gets(&kprox, 20).await;
    assert!(codes.iter().all(|c| *c == 200), "clients saw {codes:?}");
    assert_eq!(setup.runs(), 2, "one plugin run for all the 401s");
    // A POST with a small body is replayed too.
    setup.rotate("exec-token-3");
    let body = r#"{"metadata":{"name":"after-rotation"}}"#;
    let out = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/json",
            "--data",
            body,
            &kprox.url("/api/v1/namespaces/default/configmaps"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    assert_eq!(setup.runs(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_exec_credential_is_renewed_before_it_expires() {
    let setup = ExecSetup::start(&[("FAKE_EXEC_TTL", "3")]).await;
    let kprox = Kprox::start(&["--kubeconfig", &setup.kubeconfig]);
    assert_eq!(setup.runs(), 1);
    let started = std::time::Instant::now();
    while setup.runs() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "not renewed before expiry"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(concurrent_gets(&kprox, 5).await, [200; 5]);
}

#[test]
fn a_hung_exec_plugin_times_out_with_a_clear_error() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let setup = runtime.block_on(ExecSetup::start(&[("FAKE_EXEC_HANG", "1")]));
    let config = setup.cluster.dir.path().join("short.toml");
    std::fs::write(&config, "[kubeconfig]\nexec_timeout = \"1s\"\n").expect("write");
    let started = std::time::Instant::now();
    let out = support::kprox_output(
        &[
            "--kubeconfig",
            &setup.kubeconfig,
            "--config",
            &config.display().to_string(),
            "--port",
            "0",
            "--admin-address",
            "off",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did not finish within 1s") && stderr.contains("fake-exec-plugin"),
        "{stderr}"
    );
}

#[test]
fn a_failing_or_missing_exec_plugin_says_why() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let setup = runtime.block_on(ExecSetup::start(&[(
        "FAKE_EXEC_FAIL",
        "error: you must log in first",
    )]));
    let out = support::kprox_output(&["--kubeconfig", &setup.kubeconfig, "config", "check"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("you must log in first"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("exec-token-1"),
        "the credential leaked: {stderr}"
    );

    let missing = setup
        .kubeconfig
        .replace("exec-kubeconfig", "missing-kubeconfig");
    let text = std::fs::read_to_string(&setup.kubeconfig)
        .expect("read")
        .replace("fake-exec-plugin", "no-such-plugin");
    std::fs::write(&missing, text).expect("write");
    let out = support::kprox_output(&["--kubeconfig", &missing, "config", "check"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was not found") && stderr.contains("install it with: make fake-plugin"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_file_is_reread_once_on_a_401_with_no_failed_request() {
    let cluster = Cluster::start().await;
    let token_file = cluster.dir.path().join("sa-token");
    std::fs::write(&token_file, TOKEN).expect("token");
    let path = cluster.dir.path().join("token-file-kubeconfig");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
        .user_token_file("sa", token_file.to_str().expect("utf8"))
        .context("fake", "fake", "sa")
        .current("fake")
        .write(&path)
        .expect("kubeconfig");
    let kprox = Kprox::start(&["--kubeconfig", &path.display().to_string()]);
    assert_eq!(concurrent_gets(&kprox, 3).await, [200; 3]);
    // The projected token rotates: new file content, old token no longer accepted.
    std::fs::write(&token_file, "rotated-token").expect("token");
    cluster.server.set_tokens(vec!["rotated-token".into()]);
    let codes = concurrent_gets(&kprox, 20).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let admin = kprox.admin_url();
    let metrics = ok_stdout(
        &run("curl", &["-sS", &format!("{admin}/metrics")]),
        "metrics",
    );
    // The first read at start, and exactly one re-read for all twenty 401s.
    assert!(
        metrics.contains(r#"kprox_credential_refreshes_total{source="token-file"} 2"#),
        "{metrics}"
    );
}

/// Writes a service account directory the way the kubelet does: files behind a `..data`
/// symlink that is swapped atomically on rotation.
fn projected(dir: &std::path::Path, version: &str, token: &str, ca_pem: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("token"), token).expect("token");
    std::fs::write(data.join("ca.crt"), ca_pem).expect("ca");
    std::fs::write(data.join("namespace"), "default").expect("namespace");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
    for name in ["token", "ca.crt", "namespace"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_pod_without_kubeconfig_the_service_account_is_used_and_its_rotation_followed() {
    let cluster = Cluster::start().await;
    let sa = cluster.dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).expect("mkdir");
    projected(&sa, "2026_11_30_01", "sa-token-1", &cluster.server.ca_pem());
    cluster.server.set_tokens(vec!["sa-token-1".into()]);
    let home = tempfile::tempdir().expect("home");
    let port = cluster.server.addr().port().to_string();
    let kprox = Kprox::start_with_env(
        &[],
        &[
            ("HOME", home.path().to_str().expect("utf8")),
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
            (
                "KPROX_KUBECONFIG__SERVICE_ACCOUNT_DIR",
                sa.to_str().expect("utf8"),
            ),
        ],
    );
    assert_eq!(concurrent_gets(&kprox, 2).await, [200; 2]);
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("reached");
    assert_eq!(header_values(&seen, "authorization"), ["Bearer sa-token-1"]);

    // The kubelet rotates the projected token.
    projected(&sa, "2026_11_30_02", "sa-token-2", &cluster.server.ca_pem());
    cluster.server.set_tokens(vec!["sa-token-2".into()]);
    let codes = concurrent_gets(&kprox, 10).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("reached");
    assert_eq!(header_values(&seen, "authorization"), ["Bearer sa-token-2"]);

    let (home_dir, sa_dir) = (home.path().display().to_string(), sa.display().to_string());
    let check = support::kprox_output(
        &["config", "check"],
        &[
            ("HOME", &home_dir),
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
            ("KPROX_KUBECONFIG__SERVICE_ACCOUNT_DIR", &sa_dir),
        ],
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("in-cluster service account"),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!out.contains("sa-token"), "the token leaked: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_client_certificate_is_used_by_new_connections() {
    let cluster = Cluster::start_with(kprox_testkit::FakeOptions {
        tokens: vec![],
        ..Default::default()
    })
    .await;
    let dir = cluster.dir.path();
    let (first, cert, key) = cluster.client_cert_files("robot", "robot");
    let second = cluster
        .server
        .pki()
        .client_cert("robot", &[])
        .expect("cert");
    let path = dir.join("cert-kubeconfig");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
        .user_cert_files(
            "robot",
            cert.to_str().expect("utf8"),
            key.to_str().expect("utf8"),
        )
        .context("fake", "fake", "robot")
        .current("fake")
        .write(&path)
        .expect("kubeconfig");
    let config = dir.join("fast-reload.toml");
    std::fs::write(&config, "[kubeconfig]\nreload_interval = \"200ms\"\n").expect("write");
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &path.display().to_string(),
        "--config",
        &config.display().to_string(),
    ]);
    assert_eq!(concurrent_gets(&kprox, 1).await, [200]);
    let used = |server: &kprox_testkit::FakeApiServer| {
        server
            .requests_to("/api/v1/namespaces/default/pods")
            .pop()
            .and_then(|r| r.client_cert_der)
            .expect("a client certificate")
    };
    assert_eq!(used(&cluster.server), first.cert_der().to_vec());

    std::fs::write(&key, &second.key_pem).expect("key");
    std::fs::write(&cert, &second.cert_pem).expect("cert");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        assert_eq!(concurrent_gets(&kprox, 1).await, [200]);
        if used(&cluster.server) == second.cert_der().to_vec() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never used"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeconfig_files_merge_as_kubectl_merges_them() {
    let cluster = Cluster::start().await;
    let dir = cluster.dir.path();
    // The first file sets the current context and a cluster; the second redefines that cluster
    // (ignored: the first file wins) and adds the user and context.
    let first = dir.join("first.yaml");
    let second = dir.join("second.yaml");
    std::fs::write(&first, format!("apiVersion: v1\nkind: Config\ncurrent-context: merged\nclusters:\n- name: shared\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n", cluster.server.url(), base64_of(&cluster.server.ca_pem()))).expect("write");
    std::fs::write(&second, format!("apiVersion: v1\nkind: Config\ncurrent-context: other\nclusters:\n- name: shared\n  cluster:\n    server: https://127.0.0.9:1\nusers:\n- name: u\n  user:\n    token: {TOKEN}\ncontexts:\n- name: merged\n  context:\n    cluster: shared\n    user: u\n")).expect("write");
    let list = format!("{}:{}", first.display(), second.display());
    let view = support::run_with_env(
        "kubectl",
        &[
            "config",
            "view",
            "--flatten",
            "-o",
            "jsonpath={.current-context} {.clusters[0].cluster.server}",
        ],
        &[("KUBECONFIG", &list)],
    );
    let kubectl_says = ok_stdout(&view, "kubectl config view");
    let print = support::kprox_output(&["config", "print"], &[("KUBECONFIG", &list)]);
    let kprox_says = String::from_utf8_lossy(&print.stdout).into_owned();
    let (context, server) = kubectl_says.split_once(' ').expect("two values");
    assert_eq!(context, "merged");
    assert!(
        kprox_says.contains(&format!("context: {context} ")),
        "{kprox_says}"
    );
    assert!(
        kprox_says.contains(&format!("servers: {server}")),
        "kubectl: {kubectl_says}; kprox: {kprox_says}"
    );
    let kprox = Kprox::start_with_env(&[], &[("KUBECONFIG", &list)]);
    assert_eq!(concurrent_gets(&kprox, 1).await, [200]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_ca_file_is_reloaded() {
    let cluster = Cluster::start().await;
    let dir = cluster.dir.path();
    let ca = dir.join("ca.pem");
    // Start with a CA that did not sign the apiserver: requests fail verification.
    std::fs::write(
        &ca,
        kprox_testkit::TestPki::new("stale").expect("pki").ca_pem(),
    )
    .expect("write");
    let path = dir.join("ca-file-kubeconfig");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster_with_ca_file("fake", &cluster.server.url(), ca.to_str().expect("utf8"))
        .user_token("u", TOKEN)
        .context("fake", "fake", "u")
        .current("fake")
        .write(&path)
        .expect("kubeconfig");
    let config = dir.join("fast-reload.toml");
    std::fs::write(&config, "[kubeconfig]\nreload_interval = \"200ms\"\n").expect("write");
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &path.display().to_string(),
        "--config",
        &config.display().to_string(),
    ]);
    assert_ne!(concurrent_gets(&kprox, 1).await, [200]);
    std::fs::write(&ca, cluster.server.ca_pem()).expect("rotate CA");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while concurrent_gets(&kprox, 1).await != [200] {
        assert!(
            std::time::Instant::now() < deadline,
            "the new CA was never used"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_plugin_client_certificate_authenticates() {
    let cluster = Cluster::start_with(kprox_testkit::FakeOptions {
        tokens: vec![],
        ..Default::default()
    })
    .await;
    let (first, cert, key) = cluster.client_cert_files("exec-robot", "exec");
    let (path, log) = cluster.exec_cert_kubeconfig(&cert, &key, None);
    let kprox = Kprox::start(&["--kubeconfig", &path.display().to_string()]);
    assert_eq!(concurrent_gets(&kprox, 1).await, [200]);
    let last_cert = || {
        cluster
            .server
            .requests_to("/api/v1/namespaces/default/pods")
            .pop()
            .and_then(|r| r.client_cert_der)
            .expect("a client certificate")
    };
    assert_eq!(last_cert(), first.cert_der().to_vec());
    assert!(
        cluster
            .server
            .requests_to("/api/v1/namespaces/default/pods")
            .iter()
            .all(|r| !r.headers.contains_key("authorization"))
    );
    assert_eq!(kprox_testkit::exec_plugin_runs(&log), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_url_tunnels_through_http_connect_and_socks5_proxies() {
    let cluster = Cluster::start().await;
    for kind in [
        kprox_testkit::ProxyKind::HttpConnect,
        kprox_testkit::ProxyKind::Socks5,
    ] {
        let proxy = kprox_testkit::TunnelProxy::start(kind)
            .await
            .expect("proxy");
        let path = cluster.dir.path().join(format!("proxied-{kind:?}"));
        kprox_testkit::KubeconfigBuilder::new()
            .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
            .proxy_url(&proxy.url())
            .user_token("u", TOKEN)
            .context("fake", "fake", "u")
            .current("fake")
            .write(&path)
            .expect("kubeconfig");
        let kprox = Kprox::start(&["--kubeconfig", &path.display().to_string()]);
        assert_eq!(concurrent_gets(&kprox, 3).await, [200; 3], "{kind:?}");
        assert!(
            proxy.tunnels() >= 1,
            "{kind:?}: no tunnel went through the proxy"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn provide_cluster_info_hands_the_plugin_the_cluster() {
    let setup = ExecSetup::start(&[]).await;
    let info = setup.cluster.dir.path().join("exec-info.json");
    let text = std::fs::read_to_string(&setup.kubeconfig).expect("read");
    let text = text.replace(
        "      interactiveMode: Never\n",
        "      interactiveMode: Never\n      provideClusterInfo: true\n",
    );
    let text = text.replace(
        "      env:\n",
        &format!(
            "      env:\n      - name: \"FAKE_EXEC_INFO_OUT\"\n        value: \"{}\"\n",
            info.display()
        ),
    );
    std::fs::write(&setup.kubeconfig, text).expect("write");
    let _kprox = Kprox::start(&["--kubeconfig", &setup.kubeconfig]);
    let given: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info).expect("info written")).expect("json");
    assert_eq!(given["kind"], "ExecCredential");
    assert_eq!(given["spec"]["interactive"], false);
    assert_eq!(
        given["spec"]["cluster"]["server"],
        setup.cluster.server.url()
    );
    assert!(given["spec"]["cluster"]["certificate-authority-data"].is_string());
}
