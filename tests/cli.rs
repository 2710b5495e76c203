//! kprox's command line as users and scripts meet it: the startup line, layered configuration,
//! `config print|check`, bad input, unix sockets, the API prefix, and signals.

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Command, Output};

use support::{Cluster, Kprox, TOKEN, fetch_ok, ok_stdout, run, status_of};

use support::kprox_output as kprox;

/// Asserts a failed run with exactly one line on stderr, and returns that line.
fn one_line_error(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected failure; stdout {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_owned();
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one error line, got:\n{stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn the_startup_line_reports_the_real_port() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let (ip, port) = kprox.address.rsplit_once(':').expect("ip:port");
    assert_eq!(ip, "127.0.0.1");
    assert_ne!(port.parse::<u16>().expect("numeric port"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_overrides_the_file_and_flags_override_both() {
    let cluster = Cluster::start().await;
    let config = cluster.dir.path().join("kprox.toml");
    std::fs::write(&config, "[listen]\naddress = \"127.0.0.2\"\n").expect("write");
    let file_only = cluster.kprox(&["--config", &config.display().to_string()]);
    assert!(
        file_only.address.starts_with("127.0.0.2:"),
        "{}",
        file_only.address
    );
    let env = Kprox::start_with_env(
        &[
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--config",
            &config.display().to_string(),
        ],
        &[("KPROX_LISTEN__ADDRESS", "127.0.0.3")],
    );
    assert!(env.address.starts_with("127.0.0.3:"), "{}", env.address);
    let flag = Kprox::start_with_env(
        &[
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--config",
            &config.display().to_string(),
            "--address",
            "127.0.0.4",
        ],
        &[("KPROX_LISTEN__ADDRESS", "127.0.0.3")],
    );
    assert!(flag.address.starts_with("127.0.0.4:"), "{}", flag.address);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_print_shows_the_effective_config_without_secrets() {
    let cluster = Cluster::start().await;
    let output = kprox(
        &[
            "config",
            "print",
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--port",
            "9123",
        ],
        &[("KPROX_LOG__LEVEL", "debug")],
    );
    let text = ok_stdout(&output, "config print");
    assert!(text.contains("port = 9123"), "{text}");
    assert!(text.contains("level = \"debug\""), "{text}");
    assert!(
        text.contains("credential: bearer token (value redacted)"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "the token leaked into config print");
    // The printed configuration is itself a valid configuration file.
    let body: String = text
        .lines()
        .take_while(|l| !l.starts_with("# kubeconfig"))
        .collect::<Vec<_>>()
        .join("\n");
    let file = cluster.dir.path().join("printed.toml");
    std::fs::write(&file, body).expect("write");
    let again = kprox(
        &[
            "config",
            "print",
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--config",
            &file.display().to_string(),
        ],
        &[],
    );
    assert!(ok_stdout(&again, "reprint").contains("port = 9123"));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_accepts_a_good_setup_and_reaches_the_apiserver() {
    let cluster = Cluster::start().await;
    let text = ok_stdout(
        &kprox(
            &["config", "check", "--kubeconfig", &cluster.kubeconfig_arg()],
            &[],
        ),
        "config check",
    );
    assert!(text.contains("configuration OK"), "{text}");
    assert!(text.contains("certificate verified"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_that_does_not_match_is_a_clear_error() {
    let cluster = Cluster::start().await;
    let other = kprox_testkit::TestPki::new("not-the-cluster-ca").expect("pki");
    let path = cluster.dir.path().join("wrong-ca");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster("fake", &cluster.server.url(), &other.ca_pem())
        .user_token("u", TOKEN)
        .context("c", "fake", "u")
        .current("c")
        .write(&path)
        .expect("write");
    let line = one_line_error(&kprox(
        &[
            "config",
            "check",
            "--kubeconfig",
            &path.display().to_string(),
        ],
        &[],
    ));
    assert!(line.starts_with("error: "), "{line}");
    assert!(
        line.contains("TLS handshake failed") && line.contains("certificate"),
        "{line}"
    );
    assert_eq!(
        cluster.server.request_count(),
        0,
        "nothing may be sent to an unverified server"
    );

    // Serving, the same mismatch answers a 502 Status naming the cause.
    let kprox = Kprox::start(&["--kubeconfig", &path.display().to_string()]);
    let text = ok_stdout(
        &run(
            "curl",
            &["-sS", "-w", "\n%{http_code}", &kprox.url("/version")],
        ),
        "curl",
    );
    assert!(text.ends_with("\n502"), "{text}");
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "{text}"
    );
}

#[test]
fn a_missing_kubeconfig_is_a_one_line_error() {
    let line = one_line_error(&kprox(&["--kubeconfig", "/nonexistent/kubeconfig"], &[]));
    assert_eq!(
        line,
        "error: /nonexistent/kubeconfig: cannot load kubeconfig: the file does not exist"
    );
}

#[test]
fn no_kubeconfig_at_all_says_how_to_give_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let line = one_line_error(&kprox(&[], &[("HOME", &home.path().display().to_string())]));
    assert!(
        line.contains("no kubeconfig found") && line.contains("--kubeconfig"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_context_names_it_and_the_choices() {
    let cluster = Cluster::start().await;
    let line = one_line_error(&kprox(
        &[
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--context",
            "nope",
        ],
        &[],
    ));
    assert!(
        line.contains("context \"nope\" not found; fix: use one of: fake"),
        "{line}"
    );
}

#[test]
fn a_malformed_toml_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[listen\nport = 1\n").expect("write");
    let line = one_line_error(&kprox(
        &["--config", &path.display().to_string(), "config", "check"],
        &[],
    ));
    assert!(
        line.starts_with(&format!("error: {}", path.display())),
        "{line}"
    );
}

#[test]
fn an_unknown_key_names_the_file_the_key_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[upstream]\nconect_timeout = \"1s\"\n").expect("write");
    let line = one_line_error(&kprox(
        &["--config", &path.display().to_string(), "config", "check"],
        &[],
    ));
    assert!(
        line.contains(&format!(
            "{}: key `upstream.conect_timeout`: unknown key; fix:",
            path.display()
        )),
        "{line}"
    );
    assert!(line.contains("connect_timeout"), "{line}");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let line = one_line_error(&kprox(
        &["config", "check"],
        &[("KPROX_LISTEN__PORT", "eighty")],
    ));
    assert!(line.contains("KPROX_LISTEN__PORT"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_worker_threads_sets_the_serving_threads() {
    let cluster = Cluster::start().await;
    for threads in ["1", "3"] {
        let kprox = Kprox::start_with_env(
            &["--kubeconfig", &cluster.kubeconfig_arg()],
            &[("KPROX_RUNTIME__WORKER_THREADS", threads)],
        );
        fetch_ok(&kprox.url("/version"));
        let logged = format!("worker_threads={threads}");
        let stderr = kprox.stderr();
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("runtime ready") && l.split_whitespace().any(|w| w == logged)),
            "{stderr}"
        );
    }
    let line = one_line_error(&kprox(
        &["config", "check"],
        &[("KPROX_RUNTIME__WORKER_THREADS", "5000")],
    ));
    assert!(line.contains("runtime.worker_threads"), "{line}");
    assert!(line.contains("0 for one per CPU"), "{line}");
}

#[test]
fn a_unix_socket_with_a_custom_port_is_refused() {
    let line = one_line_error(&kprox(
        &[
            "--unix-socket",
            "/tmp/kprox-never.sock",
            "--port",
            "9000",
            "config",
            "check",
        ],
        &[],
    ));
    assert!(line.contains("listen.unix_socket"), "{line}");
}

/// kprox serving `cluster` on the unix socket `socket` only (no admin listener).
fn start_on_unix_socket(cluster: &Cluster, socket: &std::path::Path) -> Kprox {
    Kprox::start_exact(
        &[
            "--admin-address",
            "off",
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--unix-socket",
            &socket.display().to_string(),
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_is_private_replaces_a_stale_one_and_serves_curl() {
    let cluster = Cluster::start().await;
    let socket = cluster.dir.path().join("kprox.sock");
    // A stale socket left by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    let kprox = start_on_unix_socket(&cluster, &socket);
    assert_eq!(kprox.address, socket.display().to_string());
    let meta = std::fs::metadata(&socket).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let pods = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                "--unix-socket",
                &socket.display().to_string(),
                "http://localhost/api/v1/namespaces/default/pods",
            ],
        ),
        "curl",
    );
    assert!(pods.contains("alpha"));
    drop(kprox);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_prefix_is_stripped_and_paths_outside_it_are_404() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--api-prefix", "/k8s"]);
    let text = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                &kprox.url("/k8s/api/v1/namespaces/default/pods/alpha"),
            ],
        ),
        "curl",
    );
    assert!(text.contains("\"alpha\""));
    assert_eq!(
        cluster
            .server
            .requests_to("/api/v1/namespaces/default/pods/alpha")
            .len(),
        1
    );
    let outside = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "-w",
                "\n%{http_code}",
                &kprox.url("/api/v1/namespaces/default/pods"),
            ],
        ),
        "curl",
    );
    assert!(outside.ends_with("\n404"), "{outside}");
    assert!(outside.contains("\"kind\":\"Status\""), "{outside}");
    let lookalike = status_of(&kprox.url("/k8sfoo/api"));
    assert_eq!(lookalike, "404");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_kprox_cleanly() {
    let cluster = Cluster::start().await;
    let mut kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    kprox.signal("TERM");
    let exit = kprox.child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn the_demo_serves_three_simulated_apiservers_to_curl_and_kubectl() {
    let demo = Kprox::start_exact(
        &["demo", "--port", "0", "--admin-address", "127.0.0.1:0"],
        &[],
    );
    let address = demo.address.clone();
    let pods = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                &format!("http://{address}/api/v1/namespaces/default/pods"),
            ],
        ),
        "curl",
    );
    // The web deployment's pods (named after their replica set) and a standalone one.
    for name in ["\"web-", "\"db-0\""] {
        assert!(pods.contains(name), "{pods}");
    }
    let cache = tempfile::tempdir().expect("cache");
    let out = support::run_with_env(
        "kubectl",
        &[
            "--server",
            &format!("http://{address}"),
            "--cache-dir",
            &cache.path().display().to_string(),
            "get",
            "pods",
        ],
        &[("KUBECONFIG", "/dev/null")],
    );
    assert!(ok_stdout(&out, "kubectl").contains("db-0"));
    let hints = demo.stderr();
    assert!(
        hints.contains(&format!("curl http://{address}/version")),
        "{hints}"
    );
    assert!(
        hints.contains("127.0.0.2") && hints.contains("127.0.0.3"),
        "{hints}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_skip_tls_verify_works_and_warns_loudly() {
    let cluster = Cluster::start().await;
    let path = cluster.dir.path().join("insecure");
    kprox_testkit::KubeconfigBuilder::new()
        .insecure_cluster("fake", &cluster.server.url())
        .user_token("u", TOKEN)
        .context("c", "fake", "u")
        .current("c")
        .write(&path)
        .expect("write");
    let kprox = Kprox::start(&["--kubeconfig", &path.display().to_string()]);
    fetch_ok(&kprox.url("/version"));
    let stderr = kprox.stderr();
    assert!(
        stderr.contains("WARN")
            && stderr.contains("insecure-skip-tls-verify")
            && stderr.contains("NOT verified"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keepalive_turns_on_tcp_keepalive_for_client_connections() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--keepalive", "7s"]);
    let client = std::net::TcpStream::connect(&kprox.address).expect("connect");
    let local = client.local_addr().expect("local address");
    // ss shows the server side's keepalive timer for the connection from our port.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let out = ok_stdout(
            &run(
                "ss",
                &["-tno", "state", "established", &format!("dst = {local}")],
            ),
            "ss",
        );
        if out.contains("keepalive") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no keepalive timer on kprox's side: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_requests_refuses_new_ones_ends_watches_and_exits_zero() {
    let cluster = Cluster::start().await;
    let config = cluster.dir.path().join("grace.toml");
    std::fs::write(&config, "[listen]\nshutdown_grace = \"2s\"\n").expect("write");
    let mut kprox = cluster.kprox(&[
        "--config",
        &config.display().to_string(),
        "--log-level",
        "debug",
    ]);
    let admin = kprox.admin_url();
    // A watch, and a request the apiserver is slow to answer, both in flight at SIGTERM.
    let watch_url = kprox.url("/api/v1/namespaces/default/pods?watch=1");
    let watch =
        std::thread::spawn(move || run("curl", &["-sS", "-N", "--max-time", "20", &watch_url]));
    // The watch must be streaming before the apiserver turns slow.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods?watch=1")
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch never reached the apiserver"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    cluster
        .server
        .set_behaviour(kprox_testkit::Behaviour::Slow(
            std::time::Duration::from_millis(1200),
        ))
        .await;
    let slow_url = kprox.url("/api/v1/namespaces/default/pods/alpha");
    let slow = std::thread::spawn(move || run("curl", &["-sS", "-w", "\n%{http_code}", &slow_url]));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let signalled = std::time::Instant::now();
    kprox.signal("TERM");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ready = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{admin}/readyz"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&ready.stdout),
        "503",
        "/readyz during shutdown"
    );
    let refused = std::net::TcpStream::connect(&kprox.address);
    assert!(
        refused.is_err(),
        "a new connection was accepted after SIGTERM"
    );
    let slow = slow.join().expect("slow request");
    let slow_text = String::from_utf8_lossy(&slow.stdout).into_owned();
    assert!(
        slow_text.ends_with("\n200") && slow_text.contains("\"alpha\""),
        "the request in flight was not completed: {slow_text:?}"
    );
    let watch = watch.join().expect("watch");
    assert!(
        watch.status.success(),
        "the watch did not end cleanly: {}",
        String::from_utf8_lossy(&watch.stderr)
    );
    assert!(
        String::from_utf8_lossy(&watch.stdout).contains("\"alpha\""),
        "watch output: {:?} / {:?}; kprox: {}",
        String::from_utf8_lossy(&watch.stdout),
        String::from_utf8_lossy(&watch.stderr),
        kprox.stderr()
    );
    let exit = kprox.child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit}");
    let took = signalled.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(8),
        "shutdown took {took:?}"
    );
}

// Everything at once when SIGTERM comes: a watch and an exec tunnel open, and a reload in
// progress whose exec plugin is still running (it hangs). kprox ends the reload and the
// plugin (as client-go does, the plugin process itself: a grandchild it started is its own),
// drains, ends the streams, waits for every background task, and exits 0 within the grace.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_reload_with_a_running_exec_plugin_streams_and_tunnels_exits_zero() {
    let cluster = Cluster::start().await;
    let dir = cluster.dir.path();
    let plugin = kprox_testkit::write_exec_plugin(dir).expect("plugin");
    let token_file = dir.join("exec-token");
    std::fs::write(&token_file, TOKEN).expect("write");
    let log = dir.join("exec.log");
    let kubeconfig = dir.join("exec-kubeconfig");
    let write_kubeconfig = |hang: bool| {
        let mut env = vec![
            ("FAKE_EXEC_TOKEN_FILE", token_file.to_str().expect("utf8")),
            ("FAKE_EXEC_LOG", log.to_str().expect("utf8")),
        ];
        if hang {
            env.push(("FAKE_EXEC_HANG", "1"));
        }
        kprox_testkit::KubeconfigBuilder::new()
            .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
            .user_exec("robot", plugin.to_str().expect("utf8"), &env, None)
            .context("fake", "fake", "robot")
            .current("fake")
            .write(&kubeconfig)
            .expect("kubeconfig");
    };
    write_kubeconfig(false);
    let config = dir.join("grace.toml");
    std::fs::write(
        &config,
        "[listen]\nshutdown_grace = \"2s\"\n[log]\nlevel = \"info\"\n",
    )
    .expect("write");
    let mut kprox = Kprox::start(&[
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--config",
        &config.display().to_string(),
        "--reject-paths",
        "^$",
    ]);
    fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));

    let watch_url = kprox.url("/api/v1/namespaces/default/pods?watch=1");
    let watch =
        std::thread::spawn(move || run("curl", &["-sS", "-N", "--max-time", "20", &watch_url]));
    let cache = tempfile::tempdir().expect("cache");
    let (mut tunnel, _stdin) = support::idle_exec_tunnel(&kprox, cache.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods/alpha/exec")
        .is_empty()
        || cluster
            .server
            .requests_to("/api/v1/namespaces/default/pods?watch=1")
            .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch and the tunnel never reached the apiserver: {}",
            kprox.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // A reload whose exec plugin never finishes.
    write_kubeconfig(true);
    let runs = kprox_testkit::exec_plugin_runs(&log);
    kprox.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kprox_testkit::exec_plugin_runs(&log) == runs {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never ran the plugin"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let plugin_running = || {
        Command::new("pgrep")
            .args(["-f", plugin.to_str().expect("utf8")])
            .output()
            .expect("pgrep")
            .status
            .success()
    };
    assert!(plugin_running(), "the plugin is mid-run at SIGTERM");

    let signalled = std::time::Instant::now();
    kprox.signal("TERM");
    let exit = kprox.child.wait().expect("wait");
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit}: {}", kprox.stderr());
    assert!(
        took < std::time::Duration::from_secs(2 + 3),
        "shutdown took {took:?}"
    );
    assert!(
        kprox.stderr().contains("every background task finished"),
        "{}",
        kprox.stderr()
    );
    assert!(!plugin_running(), "the exec plugin outlived kprox");
    let watch = watch.join().expect("watch");
    assert!(
        watch.status.success(),
        "the watch did not end cleanly: {}",
        String::from_utf8_lossy(&watch.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while tunnel.try_wait().expect("try_wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tunnel outlived kprox"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Tests that leave the admin address at its default (127.0.0.1:8002) take turns, so that
/// which of them finds 8002 free is decided by the test, not by the scheduler.
static DEFAULT_ADMIN_ADDRESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `/livez` on the admin URL kprox printed answers 200.
fn admin_answers(kprox: &Kprox) -> String {
    let admin = kprox.admin_url();
    assert_eq!(status_of(&format!("{admin}/livez")), "200", "{admin}");
    admin
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_with_default_flags_both_serve_with_their_own_admin_listener() {
    let _turn = DEFAULT_ADMIN_ADDRESS.lock().await;
    let (first_cluster, second_cluster) = (Cluster::start().await, Cluster::start().await);
    // As `kprox --port 8001 &` then `kprox --context other --port 8003`, with free ports for
    // the proxies so that the test never depends on 8001 or 8003 being free.
    let first = Kprox::start_exact(
        &[
            "--kubeconfig",
            &first_cluster.kubeconfig_arg(),
            "--port",
            "0",
        ],
        &[],
    );
    let second = Kprox::start_exact(
        &[
            "--kubeconfig",
            &second_cluster.kubeconfig_arg(),
            "--port",
            "0",
        ],
        &[],
    );
    let (first_admin, second_admin) = (admin_answers(&first), admin_answers(&second));
    assert_ne!(first_admin, second_admin);
    for kprox in [&first, &second] {
        fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));
    }
    // Whichever found 8002 taken said so, and where it went instead.
    let moved: Vec<_> = [&first, &second]
        .into_iter()
        .filter(|k| k.stderr().contains("is in use"))
        .collect();
    assert!(!moved.is_empty(), "8002 cannot be free for both");
    for kprox in moved {
        let stderr = kprox.stderr();
        assert!(
            stderr.contains("the admin listener is on http://127.0.0.1:")
                && stderr.contains(&kprox.admin_url()),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn port_8002_serves_with_the_admin_listener_moved_aside() {
    let _turn = DEFAULT_ADMIN_ADDRESS.lock().await;
    let cluster = Cluster::start().await;
    let kprox = Kprox::start_exact(
        &["--kubeconfig", &cluster.kubeconfig_arg(), "--port", "8002"],
        &[],
    );
    assert_eq!(kprox.address, "127.0.0.1:8002");
    fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));
    let admin = admin_answers(&kprox);
    assert_ne!(admin, "http://127.0.0.1:8002");
    assert!(kprox.stderr().contains("is in use"), "{}", kprox.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_admin_address_that_is_taken_fails_with_one_line() {
    let cluster = Cluster::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let output = kprox(
        &[
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--port",
            "0",
            "--admin-address",
            &address,
        ],
        &[],
    );
    let line = one_line_error(&output);
    assert!(
        line.contains(&format!("admin.address: cannot listen on {address}"))
            && line.contains("in use"),
        "{line}"
    );
}

/// Runs `kprox ARGS` and returns its stdout, which must be non-empty.
fn kprox_prints(args: &[&str]) -> String {
    let output = kprox(args, &[]);
    assert!(output.status.success(), "kprox {args:?}: {output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(!text.is_empty(), "kprox {args:?} printed nothing");
    text
}

#[test]
fn completion_scripts_complete_kprox_flags_in_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        support::require_tool(shell);
        let script = dir.path().join(format!("kprox.{shell}"));
        std::fs::write(&script, kprox_prints(&["completion", shell])).expect("write");
        let script = script.display().to_string();
        // Each shell loads the script as a user's rc file would and completes `--kubec`.
        let (program, args): (&str, Vec<String>) = match shell {
            "bash" => (
                "bash",
                vec![
                    "-c".into(),
                    format!(
                        "source {script}; COMP_WORDS=(kprox --kubec); COMP_CWORD=1; _kprox kprox --kubec kprox; printf '%s\\n' \"${{COMPREPLY[@]}}\""
                    ),
                ],
            ),
            "fish" => (
                "fish",
                vec![
                    "-c".into(),
                    format!("source {script}; complete -C 'kprox --kubec'"),
                ],
            ),
            // zsh completes only in an interactive line editor; parsing the script and
            // finding its completion function is what a test can do.
            _ => (
                "zsh",
                vec![
                    "-c".into(),
                    format!("autoload -U compinit; compinit -u; source {script}; whence -w _kprox"),
                ],
            ),
        };
        let out = ok_stdout(
            &run(
                program,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            ),
            shell,
        );
        let expected = if shell == "zsh" {
            "_kprox: function"
        } else {
            "--kubeconfig"
        };
        assert!(out.contains(expected), "{shell}: {out}");
    }
}

#[test]
fn the_man_page_renders_with_man_and_lists_the_flags() {
    support::require_tool("man");
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("kprox.1");
    std::fs::write(&page, kprox_prints(&["man"])).expect("write");
    let rendered = ok_stdout(
        &support::run_with_env(
            "man",
            &["-l", &page.display().to_string()],
            &[("MANPAGER", "cat"), ("MANWIDTH", "100")],
        ),
        "man -l",
    );
    for needle in [
        "kprox",
        "--reject-paths",
        "--admin-address",
        "--kubeconfig",
        "demo",
    ] {
        assert!(
            rendered.contains(needle),
            "{needle} missing from:\n{rendered}"
        );
    }
}

/// The accept-queue length (`ss`'s Send-Q) of the TCP socket listening on `address`.
fn listen_backlog(address: &str) -> u64 {
    listen_backlog_in(
        &["-ltnH", "state", "listening"],
        |field| field == address,
        1,
    )
}

/// The backlog of the unix-socket listener kprox bound for `socket` (`ss -lx`: netid, Recv-Q,
/// Send-Q, path). `ss` names a unix socket by the path it was bound at: kprox binds it in a
/// private directory beside `socket` (`.kprox-sock-*/s`) and renames it into place.
fn unix_listen_backlog(socket: &std::path::Path) -> u64 {
    let parent = socket.parent().expect("the socket is in a directory");
    let staging = format!("{}/.kprox-sock-", parent.display());
    listen_backlog_in(
        &["-lxH", "state", "listening"],
        |field| field.starts_with(&staging),
        2,
    )
}

/// Runs `ss args` and reads field `backlog_field` (Send-Q, which is the backlog of a listening
/// socket) of the line with a field that `names` says names the listener.
fn listen_backlog_in(args: &[&str], names: impl Fn(&str) -> bool, backlog_field: usize) -> u64 {
    let ss = support::require_tool("ss");
    let output = std::process::Command::new(ss)
        .args(args)
        .output()
        .expect("ss runs");
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = table
        .lines()
        .find(|line| line.split_whitespace().any(&names))
        .unwrap_or_else(|| panic!("no such listener in:\n{table}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields
        .get(backlog_field)
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// A burst of new connections larger than a 128-entry accept queue (200 watches opened at once)
/// lost SYNs and made clients wait a second for the retransmission; kprox listens as kubectl
/// proxy does, with the kernel's `somaxconn`.
#[tokio::test(flavor = "multi_thread")]
async fn every_listener_queues_a_burst_of_connections_as_large_as_the_kernel_allows() {
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("somaxconn")
        .trim()
        .parse()
        .expect("a number");
    let expected = somaxconn.min(4096);
    assert!(expected > 128, "this machine's somaxconn is {somaxconn}");
    let cluster = Cluster::start().await;
    let kprox = Kprox::start_exact(
        &[
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--port",
            "0",
            "--admin-address",
            "127.0.0.1:0",
        ],
        &[],
    );
    fetch_ok(&kprox.url("/api/v1/namespaces/default/pods"));
    let admin = admin_answers(&kprox);
    let admin_address = admin.trim_start_matches("http://");
    assert_eq!(listen_backlog(&kprox.address), expected, "proxy listener");
    assert_eq!(listen_backlog(admin_address), expected, "admin listener");
    drop(kprox);

    let socket = cluster.dir.path().join("burst.sock");
    let _unix_socket_kprox = start_on_unix_socket(&cluster, &socket);
    assert_eq!(
        unix_listen_backlog(&socket),
        expected,
        "unix-socket listener"
    );
}
