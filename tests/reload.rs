//! Live reload: SIGHUP and changed files apply new filters and contexts without dropping
//! connections; a bad new configuration is refused and the old one keeps serving.

mod support;

use std::time::{Duration, Instant};

use support::{Cluster, Kprox, TOKEN, fetch_ok, ok_stdout, run};

fn post_status(kprox: &Kprox, name: &str) -> String {
    let body = format!(r#"{{"metadata":{{"name":"{name}"}}}}"#);
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
            &body,
            &kprox.url("/api/v1/namespaces/default/configmaps"),
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_new_filters_without_dropping_a_watch_and_refuses_a_bad_config() {
    let cluster = Cluster::start().await;
    let config = cluster.dir.path().join("kprox.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").expect("write");
    let kprox = cluster.kprox(&["--config", &config.display().to_string()]);
    assert_eq!(post_status(&kprox, "before"), "201");
    // A watch open across the reload.
    let watch_url = kprox.url("/api/v1/namespaces/default/pods?watch=1");
    let watch =
        std::thread::spawn(move || run("curl", &["-sS", "-N", "--max-time", "4", &watch_url]));
    std::thread::sleep(Duration::from_millis(300));

    std::fs::write(
        &config,
        "[log]\nlevel = \"info\"\n[filter]\nreject_methods = ['^POST$']\n",
    )
    .expect("write");
    kprox.signal("HUP");
    eventually("the new filter", || post_status(&kprox, "after") == "403");
    cluster
        .server
        .store()
        .add_pod("default", "during-reload")
        .expect("add");

    // A broken configuration is refused; the last good one keeps serving.
    std::fs::write(&config, "[filter]\nreject_methods = ['(']\n").expect("write");
    kprox.signal("HUP");
    eventually("the refusal in the log", || {
        kprox.stderr().contains("reload refused")
    });
    assert_eq!(post_status(&kprox, "still-refused"), "403");
    fetch_ok(&kprox.url("/version"));

    let watch = watch.join().expect("watch");
    let events = String::from_utf8_lossy(&watch.stdout);
    assert!(
        events.contains("during-reload"),
        "the watch did not survive the reload: {events}"
    );
}

fn two_clusters_kubeconfig(a: &Cluster, b: &Cluster, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("two-contexts");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster("a", &a.server.url(), &a.server.ca_pem())
        .cluster("b", &b.server.url(), &b.server.ca_pem())
        .user_token("u", TOKEN)
        .context("a", "a", "u")
        .context("b", "b", "u")
        .current("a")
        .write(&path)
        .expect("kubeconfig");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_context_switches_with_kubectl_config_use_context() {
    let (a, b) = (Cluster::start().await, Cluster::start().await);
    let kubeconfig = two_clusters_kubeconfig(&a, &b, a.dir.path());
    let fast = a.dir.path().join("fast.toml");
    std::fs::write(&fast, "[kubeconfig]\nreload_interval = \"200ms\"\n").expect("write");
    let kubeconfig_arg = kubeconfig.display().to_string();
    let following = Kprox::start(&[
        "--kubeconfig",
        &kubeconfig_arg,
        "--config",
        &fast.display().to_string(),
        "--follow-context",
    ]);
    let pinned = Kprox::start(&[
        "--kubeconfig",
        &kubeconfig_arg,
        "--config",
        &fast.display().to_string(),
    ]);
    let get = |kprox: &Kprox| fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));
    get(&following);
    get(&pinned);
    assert_eq!(
        a.server
            .requests_to("/api/v1/namespaces/default/pods")
            .len(),
        2
    );

    let switched = support::run_with_env(
        "kubectl",
        &[
            "config",
            "use-context",
            "b",
            "--kubeconfig",
            &kubeconfig_arg,
        ],
        &[],
    );
    ok_stdout(&switched, "kubectl config use-context");
    eventually("kprox following the new context", || {
        get(&following);
        !b.server
            .requests_to("/api/v1/namespaces/default/pods")
            .is_empty()
    });
    // Without --follow-context kprox stays with the context it started with.
    std::thread::sleep(Duration::from_millis(600));
    let before = a
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .len();
    get(&pinned);
    assert_eq!(
        a.server
            .requests_to("/api/v1/namespaces/default/pods")
            .len(),
        before + 1,
        "the pinned kprox moved"
    );
    assert!(
        following.stderr().contains("configuration reloaded"),
        "{}",
        following.stderr()
    );
}

/// How many reloads kprox has applied, from its log.
fn reloads(kprox: &Kprox) -> usize {
    kprox.stderr().matches("configuration reloaded").count()
}

/// Changes nothing but the bytes of `config` (a comment), sends SIGHUP and waits until kprox
/// says it applied the reload.
fn reload_after_touching(kprox: &Kprox, config: &std::path::Path) {
    let before = reloads(kprox);
    let mut text = std::fs::read_to_string(config).expect("read config");
    text.push_str(&format!("# touched {before}\n"));
    std::fs::write(config, text).expect("write config");
    kprox.signal("HUP");
    eventually("the reload", || reloads(kprox) > before);
}

// A sidecar bound to its pod IP accepts that IP as a Host at start-up; a reload must rebuild
// the filter the same way, or the sidecar answers 403 once its config file changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_on_its_pod_ip_is_still_served_after_its_config_changes() {
    let mut pod = support::pod_network::PodNetwork::create("10.244.0.7");
    let cluster = pod.cluster();
    let config = cluster.dir.path().join("kprox.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").expect("write");
    let kprox = pod.kprox(&[
        "--kubeconfig",
        &cluster.kubeconfig_arg(),
        "--config",
        &config.display().to_string(),
        "--address",
        "10.244.0.7",
        "--insecure-allow-unauthenticated-remote",
    ]);
    assert!(
        kprox.address.starts_with("10.244.0.7:"),
        "{}",
        kprox.address
    );
    let code = || {
        let out = pod.curl(&[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &kprox.url("/api/v1/namespaces/default/pods"),
        ]);
        ok_stdout(&out, "curl in the pod network")
    };
    assert_eq!(code(), "200", "{}", kprox.stderr());
    reload_after_touching(&kprox, &config);
    assert_eq!(code(), "200", "after the reload: {}", kprox.stderr());
}

// Start-up gives the exec plugin's client certificate to the TLS layer; a reload that changes
// the TLS settings (here the CA moves from inline data to a file) must keep doing so.
#[tokio::test(flavor = "multi_thread")]
async fn an_exec_plugin_client_certificate_is_kept_across_a_reload() {
    let cluster = Cluster::start_with(kprox_testkit::FakeOptions {
        tokens: vec![],
        ..Default::default()
    })
    .await;
    let (_, cert, key) = cluster.client_cert_files("exec-robot", "exec");
    let (kubeconfig, _) = cluster.exec_cert_kubeconfig(&cert, &key, None);
    let kubeconfig = kubeconfig.display().to_string();
    let config = cluster.dir.path().join("kprox.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").expect("write");
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &kubeconfig,
        "--config",
        &config.display().to_string(),
    ]);
    let pods = kprox.url("/api/v1/namespaces/default/pods");
    let code = || {
        ok_stdout(
            &run(
                "curl",
                &["-sS", "-o", "/dev/null", "-w", "%{http_code}", &pods],
            ),
            "curl",
        )
    };
    assert_eq!(code(), "200", "{}", kprox.stderr());

    let ca = cluster.dir.path().join("ca.crt");
    std::fs::write(&ca, cluster.server.ca_pem()).expect("write CA");
    let before = reloads(&kprox);
    cluster.exec_cert_kubeconfig(&cert, &key, Some(&ca));
    kprox.signal("HUP");
    eventually("the reload", || reloads(&kprox) > before);
    assert_eq!(code(), "200", "after the reload: {}", kprox.stderr());
    let last = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods")
        .pop()
        .expect("a request");
    assert!(
        last.client_cert_der.is_some(),
        "the request after the reload carried no client certificate"
    );
}

// The status page reads the credentials in force: after a reload to an exec plugin whose
// credential expires, it names the plugin and shows when the credential expires.
#[tokio::test(flavor = "multi_thread")]
async fn the_status_shows_the_reloaded_credentials_and_their_expiry() {
    let cluster = Cluster::start().await;
    let config = cluster.dir.path().join("kprox.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").expect("write");
    let kprox = cluster.kprox(&["--config", &config.display().to_string()]);
    let status = || -> serde_json::Value {
        let body = ok_stdout(
            &run("curl", &["-sS", &format!("{}/status", kprox.admin_url())]),
            "curl /status",
        );
        serde_json::from_str(&body).expect("status JSON")
    };
    assert_eq!(
        status()["credential"]["source"],
        "bearer token",
        "{}",
        status()
    );

    let dir = cluster.dir.path();
    let plugin = kprox_testkit::write_exec_plugin(dir).expect("plugin");
    let token_file = dir.join("exec-token");
    std::fs::write(&token_file, TOKEN).expect("write");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
        .user_exec(
            "robot",
            plugin.to_str().expect("utf8"),
            &[
                ("FAKE_EXEC_TOKEN_FILE", token_file.to_str().expect("utf8")),
                ("FAKE_EXEC_TTL", "3600"),
            ],
            None,
        )
        .context("fake", "fake", "robot")
        .current("fake")
        .write(&cluster.kubeconfig)
        .expect("kubeconfig");
    let before = reloads(&kprox);
    kprox.signal("HUP");
    eventually("the reload", || reloads(&kprox) > before);
    fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));
    let now = status();
    let source = now["credential"]["source"].as_str().unwrap_or_default();
    assert!(source.starts_with("exec plugin "), "{now}");
    let expiry = now["credential"]["expiry"].as_str().unwrap_or_default();
    assert!(
        expiry.contains("expires in") && !expiry.contains("none"),
        "the exec credential's expiry is shown: {now}"
    );
}
