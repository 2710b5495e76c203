//! kprox under systemd: the units pass `systemd-analyze verify`, socket activation serves on
//! the socket systemd passes, and the notify protocol says READY=1 and STOPPING=1.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Cluster, ok_stdout, require_tool, run};

fn units_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd")
}

/// Copies a unit into `dir` with ExecStart pointing at the kprox under test.
fn staged(dir: &std::path::Path, source: &std::path::Path, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(source)
        .expect("unit")
        .replace("%h/.cargo/bin/kprox", env!("CARGO_BIN_EXE_kprox"))
        .replace("/usr/local/bin/kprox", env!("CARGO_BIN_EXE_kprox"));
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn verify(args: &[&str], env: &[(&str, &str)]) {
    let mut command = Command::new(require_tool("systemd-analyze"));
    command.arg("verify").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {args:?}: {stderr}"
    );
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tempfile::tempdir().expect("runtime dir");
    let service = staged(
        dir.path(),
        &units_dir().join("kprox.service"),
        "kprox.service",
    );
    let socket = staged(
        dir.path(),
        &units_dir().join("kprox.socket"),
        "kprox.socket",
    );
    let runtime_dir = runtime.path().to_str().expect("utf8");
    verify(
        &[
            "--user",
            socket.to_str().expect("utf8"),
            service.to_str().expect("utf8"),
        ],
        &[("XDG_RUNTIME_DIR", runtime_dir)],
    );
    let system_dir = tempfile::tempdir().expect("tempdir");
    let system = staged(
        system_dir.path(),
        &units_dir().join("system/kprox.service"),
        "kprox.service",
    );
    verify(&[system.to_str().expect("utf8")], &[]);
    // The check can fail: a misspelt directive is reported.
    std::fs::write(
        dir.path().join("broken.service"),
        "[Service]\nExecStart=/bin/true\nNoNewPrivilege=yes\n",
    )
    .expect("write");
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            dir.path().join("broken.service").to_str().expect("utf8"),
        ])
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NoNewPrivilege"),
        "verify did not catch a typo"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_activation_serves_on_the_passed_socket() {
    let cluster = Cluster::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = Command::new(require_tool("systemd-socket-activate"))
        .args([
            "-l",
            &address,
            env!("CARGO_BIN_EXE_kprox"),
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--admin-address",
            "off",
        ])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate");
    // The socket exists before kprox runs; the first connection starts it.
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("http://{address}/api/v1/namespaces/default/pods");
    let fetch =
        std::thread::spawn(move || run("curl", &["-sS", "--fail", "--max-time", "20", &url]));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("startup line");
    assert_eq!(line.trim_end(), format!("Starting to serve on {address}"));
    let pods = ok_stdout(
        &fetch.join().expect("curl"),
        "curl through the activated socket",
    );
    assert!(pods.contains("alpha"));
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn kprox_notifies_systemd_ready_and_stopping() {
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let kprox = support::Kprox::start_with_env(
        &["--kubeconfig", &cluster.kubeconfig_arg()],
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf8"))],
    );
    let mut buffer = [0u8; 512];
    let n = socket.recv(&mut buffer).expect("a notification");
    let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(
        message.contains("READY=1") && message.contains("STATUS=serving on"),
        "{message}"
    );
    // Ready means an apiserver has answered.
    assert!(
        !cluster.server.requests_to("/readyz").is_empty() || !cluster.server.requests().is_empty()
    );
    kprox.signal("TERM");
    let n = socket.recv(&mut buffer).expect("a notification");
    assert!(String::from_utf8_lossy(&buffer[..n]).contains("STOPPING=1"));
}
