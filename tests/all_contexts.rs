//! One kprox for every cluster (`--all-contexts`): `/clusters/<context>/` reaches that
//! context's cluster as that context's user, everything else the current context as before;
//! a context is set up on first use (its exec plugin never runs before); the filters judge the
//! path under the prefix; unknown contexts are a 404 `Status` naming the known ones; kubeconfig
//! changes are followed live; `kprox kubeconfig` gives kubectl one context per cluster.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kprox_testkit::{FakeApiServer, FakeOptions, Identity, KubeconfigBuilder};
use support::{Cluster, Kprox, kprox_output, ok_stdout, run, run_with_env};

const B_TOKEN: &str = "context-b-token-92d1";

/// Cluster A (the current context `a`, the shared test token) and cluster B (contexts `b`,
/// with its own token, and `lazy`, whose user is an exec plugin that logs every run).
struct Clusters {
    a: Cluster,
    b: FakeApiServer,
    kubeconfig: PathBuf,
    exec_log: PathBuf,
    token_file: PathBuf,
}

impl Clusters {
    async fn start() -> Self {
        let a = Cluster::start().await;
        let b = FakeApiServer::start(FakeOptions {
            tokens: vec![B_TOKEN.into()],
            ..FakeOptions::default()
        })
        .await
        .expect("cluster b starts");
        for pod in ["alpha", "only-in-b"] {
            b.store().add_pod("default", pod).expect("seed pod");
        }
        let dir = a.dir.path();
        let exec_log = dir.join("lazy-exec.log");
        let token_file = dir.join("lazy-token");
        std::fs::write(&token_file, B_TOKEN).expect("token file");
        let clusters = Self {
            kubeconfig: dir.join("all-contexts-kubeconfig"),
            exec_log,
            token_file,
            a,
            b,
        };
        clusters.write_kubeconfig("user-b", |builder| builder);
        clusters
    }

    /// Writes the kubeconfig with contexts a, b (as `b_user`: `user-b`, or `user-b2`, whose
    /// token cluster b refuses) and lazy, and whatever `more` adds.
    fn write_kubeconfig(
        &self,
        b_user: &str,
        more: impl FnOnce(KubeconfigBuilder) -> KubeconfigBuilder,
    ) {
        let plugin = kprox_testkit::write_exec_plugin(self.a.dir.path()).expect("plugin");
        let builder = KubeconfigBuilder::new()
            .cluster("cluster-a", &self.a.server.url(), &self.a.server.ca_pem())
            .cluster("cluster-b", &self.b.url(), &self.b.ca_pem())
            .user_token("user-a", support::TOKEN)
            .user_token("user-b", B_TOKEN)
            .user_token("user-b2", "not-a-token-cluster-b-accepts")
            .user_exec(
                "user-lazy",
                plugin.to_str().expect("utf8"),
                &[
                    (
                        "FAKE_EXEC_TOKEN_FILE",
                        self.token_file.to_str().expect("utf8"),
                    ),
                    ("FAKE_EXEC_LOG", self.exec_log.to_str().expect("utf8")),
                ],
                None,
            )
            .context("a", "cluster-a", "user-a")
            .context("b", "cluster-b", b_user)
            .context("lazy", "cluster-b", "user-lazy")
            .current("a");
        // Written whole, then renamed: kprox never reads half a file.
        let partial = self.kubeconfig.with_extension("partial");
        more(builder).write(&partial).expect("kubeconfig");
        std::fs::rename(&partial, &self.kubeconfig).expect("rename");
    }

    fn kprox(&self, args: &[&str]) -> Kprox {
        let config = self.a.dir.path().join("fast-reload.toml");
        std::fs::write(&config, "[kubeconfig]\nreload_interval = \"200ms\"\n").expect("write");
        let mut all = vec![
            "--kubeconfig",
            self.kubeconfig.to_str().expect("utf8"),
            "--config",
            config.to_str().expect("utf8"),
            "--all-contexts",
        ];
        all.extend_from_slice(args);
        Kprox::start(&all)
    }
}

fn curl(url: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["-sS", "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = ok_stdout(&run("curl", &args), "curl");
    let (body, code) = out.rsplit_once('\n').expect("status line");
    (body.to_owned(), code.to_owned())
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_json(kprox: &Kprox) -> serde_json::Value {
    let body = ok_stdout(
        &run("curl", &["-sS", &format!("{}/status", kprox.admin_url())]),
        "curl /status",
    );
    serde_json::from_str(&body).expect("status JSON")
}

fn context_state(kprox: &Kprox, name: &str) -> String {
    status_json(kprox)["contexts"]
        .as_array()
        .expect("contexts")
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["state"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

fn runs(log: &Path) -> usize {
    kprox_testkit::exec_plugin_runs(log)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_prefix_reaches_its_context_as_its_user_and_unprefixed_paths_the_current_one() {
    let clusters = Clusters::start().await;
    let kprox = clusters.kprox(&[]);

    // Drop-in: no prefix, the current context (a).
    let (_, code) = curl(&kprox.url("/api/v1/namespaces/default/pods/beta"), &[]);
    assert_eq!(code, "200", "the current context, unprefixed");

    let (body, code) = curl(
        &kprox.url("/clusters/b/api/v1/namespaces/default/pods/only-in-b"),
        &[],
    );
    assert_eq!(code, "200", "context b: {body}");
    let seen = clusters
        .b
        .requests_to("/api/v1/namespaces/default/pods/only-in-b")
        .pop()
        .expect("the request reached cluster b without the prefix");
    assert_eq!(seen.identity(), Identity::Token(B_TOKEN.into()), "b's user");
    let (_, code) = curl(
        &kprox.url("/clusters/a/api/v1/namespaces/default/pods/only-in-b"),
        &[],
    );
    assert_eq!(code, "404", "context a is cluster a, which has no such pod");
    let (_, code) = curl(
        &kprox.url("/clusters/a/api/v1/namespaces/default/pods/alpha"),
        &[],
    );
    assert_eq!(code, "200", "the current context under its own prefix");

    // The filters judge the path under the prefix: no way around them.
    for spelling in [
        "/clusters/b/api/v1/namespaces/default/pods/alpha/exec?command=id",
        "/clusters/b/api/v1/namespaces/default/pods/alpha%2Fexec?command=id",
        "/clusters/b/./api/v1/namespaces/default/pods/alpha/attach",
    ] {
        let (_, code) = curl(&kprox.url(spelling), &["-X", "POST"]);
        assert_eq!(code, "403", "{spelling}");
    }

    // An unknown context: 404, a Status naming the ones there are.
    let (body, code) = curl(&kprox.url("/clusters/staging/api/v1/pods"), &[]);
    assert_eq!(code, "404");
    let status: serde_json::Value = serde_json::from_str(&body).expect("Status JSON");
    assert_eq!(status["kind"], "Status");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("a, b, lazy"), "{message}");

    // Metrics and the status page show each context.
    let metrics = ok_stdout(
        &run("curl", &["-sS", &format!("{}/metrics", kprox.admin_url())]),
        "curl /metrics",
    );
    assert!(
        metrics.contains("kprox_context_requests_total{context=\"b\"} 4"),
        "{metrics}"
    );
    assert_eq!(context_state(&kprox, "a"), "current");
    assert_eq!(context_state(&kprox, "b"), "serving");
    assert_eq!(context_state(&kprox, "lazy"), "not used yet");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unused_context_never_runs_its_exec_plugin_and_the_first_request_sets_it_up() {
    let clusters = Clusters::start().await;
    let kprox = clusters.kprox(&[]);
    let (_, code) = curl(
        &kprox.url("/clusters/b/api/v1/namespaces/default/pods"),
        &[],
    );
    assert_eq!(code, "200");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&clusters.exec_log), 0, "lazy's plugin ran before use");

    // Several first requests at once: one set-up, one plugin run.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = kprox.url("/clusters/lazy/api/v1/namespaces/default/pods/only-in-b");
            std::thread::spawn(move || curl(&url, &[]).1)
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().expect("thread"), "200");
    }
    assert_eq!(
        runs(&clusters.exec_log),
        1,
        "one set-up for concurrent first requests"
    );
    assert_eq!(context_state(&kprox, "lazy"), "serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn contexts_added_changed_and_removed_in_the_kubeconfig_are_followed_live() {
    let clusters = Clusters::start().await;
    let kprox = clusters.kprox(&[]);
    let (_, code) = curl(
        &kprox.url("/clusters/b/api/v1/namespaces/default/pods"),
        &[],
    );
    assert_eq!(code, "200");

    // Added: context c (cluster a as user a).
    clusters.write_kubeconfig("user-b", |k| k.context("c", "cluster-a", "user-a"));
    eventually("context c served", || {
        curl(
            &kprox.url("/clusters/c/api/v1/namespaces/default/pods/beta"),
            &[],
        )
        .1 == "200"
    });

    // Changed: b's user now has a token cluster b refuses; the set-up is replaced, so the
    // apiserver's 401 comes back (the old credential would still have worked).
    clusters.write_kubeconfig("user-b2", |k| k.context("c", "cluster-a", "user-a"));
    eventually("context b follows its new user", || {
        curl(
            &kprox.url("/clusters/b/api/v1/namespaces/default/pods"),
            &[],
        )
        .1 == "401"
    });

    // Removed: back to a, b (its first user) and lazy only.
    clusters.write_kubeconfig("user-b", |k| k);
    eventually("context c gone", || {
        curl(
            &kprox.url("/clusters/c/api/v1/namespaces/default/pods"),
            &[],
        )
        .1 == "404"
    });
    let (_, code) = curl(
        &kprox.url("/clusters/b/api/v1/namespaces/default/pods"),
        &[],
    );
    assert_eq!(code, "200", "b is served as its user again");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_uses_every_context_through_the_kubeconfig_kprox_prints() {
    let clusters = Clusters::start().await;
    // The filters off for this one, so that exec (an upgrade) can be tried under the prefix.
    let kprox = clusters.kprox(&["--disable-filter"]);
    let port = kprox.address.rsplit(':').next().expect("port").to_owned();
    let out = kprox_output(
        &[
            "kubeconfig",
            "--kubeconfig",
            clusters.kubeconfig.to_str().expect("utf8"),
            "--port",
            &port,
        ],
        &[],
    );
    let text = ok_stdout(&out, "kprox kubeconfig");
    assert!(
        !text.contains(B_TOKEN) && !text.contains(support::TOKEN),
        "no credentials: {text}"
    );
    let home = tempfile::tempdir().expect("home");
    let generated = home.path().join("kprox.yaml");
    std::fs::write(&generated, &text).expect("write");
    let kubectl = |args: &[&str]| {
        let mut all = vec!["--request-timeout", "20s"];
        all.extend_from_slice(args);
        run_with_env(
            "kubectl",
            &all,
            &[
                ("KUBECONFIG", generated.to_str().expect("utf8")),
                ("HOME", home.path().to_str().expect("utf8")),
            ],
        )
    };
    let names = |context: &str| {
        ok_stdout(
            &kubectl(&["--context", context, "get", "pods", "-o", "name"]),
            &format!("kubectl --context {context} get pods"),
        )
    };
    assert_eq!(
        names("b").split_whitespace().collect::<Vec<_>>(),
        ["pod/alpha", "pod/only-in-b"]
    );
    assert_eq!(
        names("a").split_whitespace().collect::<Vec<_>>(),
        ["pod/alpha", "pod/beta"]
    );
    let current = ok_stdout(&kubectl(&["config", "current-context"]), "current-context");
    assert_eq!(current.trim(), "a", "the current context is kept");

    // kubectl's discovery cache is per context: kubectl names its directory by the server
    // URL, path included (HOST_PORT/clusters/<context>).
    let cache = home.path().join(".kube/cache/discovery");
    for context in ["a", "b"] {
        let dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
            .expect("discovery cache")
            .map(|e| e.expect("entry").path().join("clusters").join(context))
            .filter(|dir| dir.is_dir())
            .collect();
        assert_eq!(
            dirs.len(),
            1,
            "a discovery cache for context {context} under {}",
            cache.display()
        );
    }

    // The Python client, through the same kubeconfig and a context.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/list_in_context.py"
    );
    for (context, pods) in [
        ("a", r#"["alpha", "beta"]"#),
        ("b", r#"["alpha", "only-in-b"]"#),
    ] {
        let listed = ok_stdout(
            &run(
                support::require_python(&["kubernetes"])
                    .to_str()
                    .expect("utf8"),
                &[script, generated.to_str().expect("utf8"), context],
            ),
            "python list_in_context.py",
        );
        assert_eq!(
            listed.trim(),
            pods,
            "the Python client in context {context}"
        );
    }

    // kubectl get -w in context b sees a pod created in cluster b.
    let mut watch = std::process::Command::new(support::require_tool("kubectl"))
        .args(["--context", "b", "get", "pods", "-w", "-o", "name"])
        .env("KUBECONFIG", &generated)
        .env("HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        watch.stdout.take().expect("stdout"),
    ));
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "pod/alpha", "the watch lists first");
    clusters
        .b
        .store()
        .add_pod("default", "gamma")
        .expect("add pod");
    let seen: Vec<String> = lines
        .map_while(Result::ok)
        .take_while(|l| l != "pod/gamma")
        .collect();
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(
        seen,
        ["pod/only-in-b"],
        "then the new pod, and nothing else"
    );

    // Upgrades under each prefix, over WebSocket (kubectl's default) and SPDY: exec, and
    // port-forward through the fake's echoing port.
    for context in ["a", "b"] {
        for websockets in ["true", "false"] {
            let env = [
                ("KUBECONFIG", generated.to_str().expect("utf8")),
                ("HOME", home.path().to_str().expect("utf8")),
                ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets),
                ("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets),
            ];
            let said = format!("hi from {context}");
            let exec = ok_stdout(
                &run_with_env(
                    "kubectl",
                    &["--context", context, "exec", "alpha", "--", "echo", &said],
                    &env,
                ),
                &format!("kubectl exec in {context}, websockets={websockets}"),
            );
            assert_eq!(
                exec.trim(),
                said,
                "exec in {context}, websockets={websockets}"
            );
            let echoed = port_forward_echo(context, &env, said.as_bytes());
            assert_eq!(
                echoed,
                said.as_bytes(),
                "port-forward in {context}, websockets={websockets}"
            );
        }
    }
}

/// `kubectl --context CONTEXT port-forward alpha :80` with `env`; sends `message` through the
/// forwarded port and returns what came back.
fn port_forward_echo(context: &str, env: &[(&str, &str)], message: &[u8]) -> Vec<u8> {
    let mut forward = std::process::Command::new(support::require_tool("kubectl"))
        .args([
            "--context",
            context,
            "port-forward",
            "alpha",
            "--address",
            "127.0.0.1",
            ":80",
        ])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let mut forwarded = std::io::BufReader::new(forward.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut forwarded, &mut line).expect("forwarding line");
    // kubectl says "Handling connection for 80" on stdout later: keep reading it.
    std::thread::spawn(move || for _ in std::io::BufRead::lines(forwarded) {});
    let port: u16 = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output: {line:?}"));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("forwarded port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    std::io::Write::write_all(&mut stream, message).expect("send");
    let mut echoed = vec![0u8; message.len()];
    std::io::Read::read_exact(&mut stream, &mut echoed).expect("echo");
    let _ = forward.kill();
    let _ = forward.wait();
    echoed
}

#[test]
fn kprox_kubeconfig_refuses_what_no_kubeconfig_can_name() {
    let out = kprox_output(
        &["kubeconfig", "--port", "0", "--kubeconfig", "/dev/null"],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--port"), "{stderr}");
}

/// The desktop's user unit (deploy/systemd/kprox.service) serves every context: its own
/// ExecStart, socket-activated as systemd would, with the user's ~/.kube/config.
#[tokio::test(flavor = "multi_thread")]
async fn the_user_unit_serves_every_context_under_socket_activation() {
    let clusters = Clusters::start().await;
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join(".kube")).expect(".kube");
    std::fs::copy(&clusters.kubeconfig, home.path().join(".kube/config")).expect("config");
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/kprox.service"),
    )
    .expect("unit");
    let exec_start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec_start.split_whitespace();
    assert_eq!(words.next(), Some("%h/.cargo/bin/kprox"));
    // The unit's own arguments; the admin port is the tests' (8002 may be taken here).
    let args: Vec<&str> = words
        .map(|w| {
            if w == "127.0.0.1:8002" {
                "127.0.0.1:0"
            } else {
                w
            }
        })
        .collect();
    assert!(args.contains(&"--all-contexts"), "{exec_start}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(support::require_tool("systemd-socket-activate"))
        .args(["-l", &address, env!("CARGO_BIN_EXE_kprox")])
        .args(&args)
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("systemd-socket-activate");
    let url = format!("http://{address}/clusters/b/api/v1/namespaces/default/pods/only-in-b");
    let mut code = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while code != "200" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        code = support::status_of(&url);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        code, "200",
        "context b through the socket-activated user unit"
    );
}
