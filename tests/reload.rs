//! Live reload: SIGHUP and changed files apply new filters and contexts without dropping
//! connections; a bad new configuration is refused and the old one keeps serving.

mod support;

use std::process::Command;
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

fn hangup(kprox: &Kprox) {
    assert!(
        Command::new("kill")
            .args(["-HUP", &kprox.pid().to_string()])
            .status()
            .expect("kill")
            .success()
    );
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
    hangup(&kprox);
    eventually("the new filter", || post_status(&kprox, "after") == "403");
    cluster
        .server
        .store()
        .add_pod("default", "during-reload")
        .expect("add");

    // A broken configuration is refused; the last good one keeps serving.
    std::fs::write(&config, "[filter]\nreject_methods = ['(']\n").expect("write");
    hangup(&kprox);
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
