//! Shared helpers for kprox's end-to-end tests: a fake cluster with a kubeconfig, the kprox
//! binary started as a real process, and the real clients (curl, wget, kubectl, python) run
//! against it. A missing client is a test failure, never a skip.

#![allow(dead_code)]

pub mod pod_network;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kprox_testkit::{FakeApiServer, FakeOptions, KubeconfigBuilder};

/// The token the fake cluster accepts and the kubeconfig carries.
pub const TOKEN: &str = "e2e-token-7f3a9c";

/// A fake apiserver and a kubeconfig that reaches it with a token.
pub struct Cluster {
    pub server: FakeApiServer,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with(FakeOptions::default()).await
    }

    pub async fn start_with(options: FakeOptions) -> Self {
        let server = FakeApiServer::start(FakeOptions {
            tokens: vec![TOKEN.into()],
            ..options
        })
        .await
        .expect("fake apiserver starts");
        for pod in ["alpha", "beta"] {
            server.store().add_pod("default", pod).expect("seed pod");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        KubeconfigBuilder::new()
            .cluster("fake", &server.url(), &server.ca_pem())
            .user_token("e2e", TOKEN)
            .context("fake", "fake", "e2e")
            .current("fake")
            .write(&kubeconfig)
            .expect("write kubeconfig");
        Self {
            server,
            dir,
            kubeconfig,
        }
    }

    pub fn kubeconfig_arg(&self) -> String {
        self.kubeconfig.display().to_string()
    }

    /// Starts kprox with this cluster's kubeconfig and `args`.
    pub fn kprox(&self, args: &[&str]) -> Kprox {
        let kubeconfig = self.kubeconfig_arg();
        let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
        all.extend_from_slice(args);
        Kprox::start(&all)
    }

    /// Issues a client certificate for `user` and writes it to `STEM.crt` and `STEM.key` in
    /// the cluster's directory; returns the certificate and the two paths.
    pub fn client_cert_files(
        &self,
        user: &str,
        stem: &str,
    ) -> (kprox_testkit::CertifiedPem, PathBuf, PathBuf) {
        let issued = self
            .server
            .pki()
            .client_cert(user, &[])
            .expect("client certificate");
        let (cert, key) = (
            self.dir.path().join(format!("{stem}.crt")),
            self.dir.path().join(format!("{stem}.key")),
        );
        std::fs::write(&cert, &issued.cert_pem).expect("write certificate");
        std::fs::write(&key, &issued.key_pem).expect("write key");
        (issued, cert, key)
    }
}

impl Cluster {
    /// Writes `exec-cert-kubeconfig`: the fake exec plugin hands out the client certificate in
    /// `cert`/`key`; the CA is inline, or `ca_file` when given. Returns the kubeconfig and the
    /// plugin's run log.
    pub fn exec_cert_kubeconfig(
        &self,
        cert: &Path,
        key: &Path,
        ca_file: Option<&Path>,
    ) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        let plugin = kprox_testkit::write_exec_plugin(dir).expect("plugin");
        let log = dir.join("exec.log");
        let path = dir.join("exec-cert-kubeconfig");
        let builder = match ca_file {
            None => {
                KubeconfigBuilder::new().cluster("fake", &self.server.url(), &self.server.ca_pem())
            }
            Some(file) => KubeconfigBuilder::new().cluster_with_ca_file(
                "fake",
                &self.server.url(),
                file.to_str().expect("utf8"),
            ),
        };
        builder
            .user_exec(
                "robot",
                plugin.to_str().expect("utf8"),
                &[
                    ("FAKE_EXEC_CERT_FILE", cert.to_str().expect("utf8")),
                    ("FAKE_EXEC_KEY_FILE", key.to_str().expect("utf8")),
                    ("FAKE_EXEC_LOG", log.to_str().expect("utf8")),
                ],
                None,
            )
            .context("fake", "fake", "robot")
            .current("fake")
            .write(&path)
            .expect("kubeconfig");
        (path, log)
    }
}

/// Several apiservers of one cluster on 127.0.0.1, 127.0.0.2, ... (one CA, one store, the
/// test token), with kprox in front of all of them under the failover policy — the first
/// apiserver serves while it is healthy, then the second — and `args`.
pub struct FailoverCluster {
    pub cluster: kprox_testkit::FakeCluster,
    pub dir: tempfile::TempDir,
    pub kprox: Kprox,
}

impl FailoverCluster {
    pub async fn start(replicas: usize, pods: &[&str], args: &[&str]) -> Self {
        use std::net::{IpAddr, Ipv4Addr};
        let cluster = kprox_testkit::FakeCluster::start(replicas, TOKEN, |n| FakeOptions {
            ip: IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                u8::try_from(n + 1).expect("few replicas"),
            )),
            ..Default::default()
        })
        .await
        .expect("apiservers");
        for pod in pods {
            cluster.store.add_pod("default", pod).expect("pod");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        cluster
            .write_kubeconfig("cluster", &kubeconfig)
            .expect("kubeconfig");
        let config = dir.path().join("kprox.toml");
        std::fs::write(&config, "[upstream]\npolicy = \"failover\"\n").expect("config");
        let (kubeconfig, config) = (
            kubeconfig.display().to_string(),
            config.display().to_string(),
        );
        let mut all = vec![
            "--kubeconfig",
            kubeconfig.as_str(),
            "--config",
            config.as_str(),
        ];
        let servers = cluster.server_list();
        all.extend(["--server", servers.as_str()]);
        all.extend_from_slice(args);
        let kprox = Kprox::start(&all);
        Self {
            cluster,
            dir,
            kprox,
        }
    }
}

/// A running kprox process; killed when dropped.
pub struct Kprox {
    pub child: Child,
    /// `127.0.0.1:PORT` from the startup line.
    pub address: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Kprox {
    /// Starts `kprox --port 0 ARGS...` and waits for `Starting to serve on ...`.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        // A free admin port too, so parallel tests never collide on the default 8002.
        let mut all = vec!["--port", "0", "--admin-address", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start_exact(&all, env)
    }

    /// Starts `kprox ARGS...` with no port or admin address of the tests' own, as a user
    /// would type it, and waits for the startup line.
    pub fn start_exact(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kprox"));
        command.args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        Self::spawn(command)
    }

    /// Spawns `command` (kprox, or a wrapper that execs it) and waits for the startup line.
    pub fn spawn(mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !command.get_envs().any(|(k, _)| k == "KUBECONFIG") {
            command.env_remove("KUBECONFIG");
        }
        if !command.get_envs().any(|(k, _)| k == "RUST_LOG") {
            command.env_remove("RUST_LOG");
        }
        let mut child = command.spawn().expect("kprox starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(address) = first.strip_prefix("Starting to serve on ") else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "kprox did not start: stdout {first:?}, stderr {}",
                stderr.lock().unwrap_or_else(|p| p.into_inner())
            );
        };
        let address = address.to_owned();
        // Keep draining stdout so kprox never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            address,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The value of an unlabelled metric on kprox's admin listener.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let url = format!("{}/metrics", self.admin_url());
        ok_stdout(&run("curl", &["-sS", &url]), "curl /metrics")
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The admin listener's base URL, from the line kprox prints on stderr.
    pub fn admin_url(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(url) = self.stderr().lines().find_map(|l| {
                l.strip_prefix("Admin listener on ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            }) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "kprox printed no admin listener line: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `HUP`, ...) with kill(1), as a user or systemd would.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} {}", self.pid());
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Kprox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs kprox to completion (subcommands such as `config check`, and starts that must fail),
/// without the caller's `KUBECONFIG` or `RUST_LOG` unless `env` sets them.
pub fn kprox_output(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kprox"));
    command
        .args(args)
        .stdin(Stdio::null())
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("kprox runs")
}

/// Fails the test loudly when a client the test needs is not installed.
pub fn require_tool(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("`{tool}` is required by this test but is not installed; run .ci/run (or the README's test command), which installs it"))
}

/// Fails the test loudly unless `python3` and the named Python packages are installed; returns
/// the interpreter. (A missing package would otherwise surface as a script that never prints.)
pub fn require_python(modules: &[&str]) -> PathBuf {
    let python = require_tool("python3");
    let probe = Command::new(&python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .expect("python runs");
    assert!(
        probe.status.success(),
        "the Python packages {modules:?} are required by this test; run .ci/run (or scripts/install-test-tools), which installs them: {}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    python
}

/// Runs a command to completion with a timeout, returning its output.
pub fn run(program: &str, args: &[&str]) -> Output {
    run_with_env(program, args, &[])
}

pub fn run_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let path = require_tool(program);
    let mut command = Command::new(path);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    wait_with_timeout(child, Duration::from_secs(60), program)
}

fn wait_with_timeout(mut child: Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "{what} timed out; stdout {}, stderr {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// stdout as text, asserting success.
pub fn ok_stdout(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): stdout {} stderr {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `kubectl exec -i alpha -- cat` through kprox with stdin open and silent: a tunnel that
/// carries nothing either way while the returned stdin is kept.
pub fn idle_exec_tunnel(kprox: &Kprox, cache: &Path) -> (Child, Option<std::process::ChildStdin>) {
    let mut child = kubectl_command(kprox, cache, &["exec", "-i", "alpha", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl");
    let stdin = child.stdin.take();
    (child, stdin)
}

/// A kubectl command against kprox with its own discovery cache, for callers that need its
/// pipes (stdin fed slowly, stdout read slowly).
pub fn kubectl_command(kprox: &Kprox, cache: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(require_tool("kubectl"));
    command
        .args(["--server", &kprox.url(""), "--cache-dir"])
        .arg(cache)
        .args(args)
        .env("KUBECONFIG", "/dev/null");
    command
}

/// A kubectl invocation against kprox, with its own discovery cache.
pub fn kubectl(kprox: &Kprox, cache: &Path, args: &[&str]) -> Output {
    let server = kprox.url("");
    let cache = cache.display().to_string();
    let mut full = vec![
        "--server",
        &server,
        "--cache-dir",
        &cache,
        "--request-timeout",
        "20s",
    ];
    full.extend_from_slice(args);
    // An empty KUBECONFIG directory keeps the developer's own config out of the test.
    run_with_env("kubectl", &full, &[("KUBECONFIG", "/dev/null")])
}

/// Peak resident memory (VmHWM) and current (VmRSS) of a process, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let (rss, peak) = kprox_bench::subject::memory_kib(pid).expect("proc status");
    (peak, rss)
}

/// GETs `url` with curl, failing the test unless the answer is 2xx; returns nothing.
pub fn fetch_ok(url: &str) {
    ok_stdout(
        &run("curl", &["-sS", "--fail", "-o", "/dev/null", url]),
        &format!("curl {url}"),
    );
}

/// GETs `url` with curl and returns the status code as text (`"200"`).
pub fn status_of(url: &str) -> String {
    ok_stdout(
        &run(
            "curl",
            &["-sS", "-o", "/dev/null", "-w", "%{http_code}", url],
        ),
        &format!("curl {url}"),
    )
}
