//! exec, attach and port-forward through kprox with the real kubectl, over WebSocket and SPDY.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Cluster, Kprox, require_tool};

/// kubectl against kprox, with extra environment, optional stdin; returns (status ok, stdout, stderr).
fn kubectl(
    kprox: &Kprox,
    cache: &std::path::Path,
    env: &[(&str, &str)],
    stdin: Option<&str>,
    args: &[&str],
) -> (bool, String, String) {
    let mut command = Command::new(require_tool("kubectl"));
    command
        .args([
            "--server",
            &kprox.url(""),
            "--cache-dir",
            &cache.display().to_string(),
            "--request-timeout",
            "20s",
        ])
        .args(args)
        .env("KUBECONFIG", "/dev/null")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("kubectl starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("kubectl ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const WEBSOCKET: &[(&str, &str)] = &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true")];
const SPDY: &[(&str, &str)] = &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];

async fn exec_allowed() -> (Cluster, Kprox, tempfile::TempDir) {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&["--reject-paths", "^$"]);
    (cluster, kprox, tempfile::tempdir().expect("cache"))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_runs_over_websocket() {
    let (cluster, kprox, cache) = exec_allowed().await;
    let (ok, out, err) = kubectl(
        &kprox,
        cache.path(),
        WEBSOCKET,
        None,
        &["exec", "alpha", "--", "echo", "hello", "from", "websocket"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "hello from websocket\n");
    let (ok, out, err) = kubectl(
        &kprox,
        cache.path(),
        WEBSOCKET,
        Some("line one\nline two\n"),
        &["exec", "-i", "alpha", "--", "cat"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "line one\nline two\n");
    let upgrades: Vec<_> = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods/alpha/exec")
        .into_iter()
        .map(|r| r.headers.get("upgrade").map(|v| v.as_bytes().to_vec()))
        .collect();
    assert!(
        upgrades
            .iter()
            .all(|u| u.as_deref() == Some(&b"websocket"[..])),
        "{upgrades:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_runs_over_spdy() {
    let (cluster, kprox, cache) = exec_allowed().await;
    let (ok, out, err) = kubectl(
        &kprox,
        cache.path(),
        SPDY,
        None,
        &["exec", "alpha", "--", "echo", "over", "spdy"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "over spdy\n");
    let (ok, out, err) = kubectl(
        &kprox,
        cache.path(),
        SPDY,
        Some("spdy stdin\n"),
        &["exec", "-i", "alpha", "--", "cat"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "spdy stdin\n");
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods/alpha/exec");
    assert!(
        seen.iter()
            .all(|r| r.headers.get("upgrade").map(|v| v.as_bytes()) == Some(&b"SPDY/3.1"[..]))
    );
    // The tunnel carried kprox's credentials, not the client's (kubectl sent none).
    assert!(
        seen.iter()
            .all(|r| r.headers.get_all("authorization").iter().count() == 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_attach_reaches_the_container() {
    let (_cluster, kprox, cache) = exec_allowed().await;
    let (ok, out, err) = kubectl(
        &kprox,
        cache.path(),
        WEBSOCKET,
        Some("attached input\n"),
        &["attach", "-i", "alpha", "-c", "main", "--quiet"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "attached input\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_is_refused_by_default() {
    let cluster = Cluster::start().await;
    let kprox = Kprox::start(&["--kubeconfig", &cluster.kubeconfig_arg()]);
    let cache = tempfile::tempdir().expect("cache");
    for env in [WEBSOCKET, SPDY] {
        let (ok, out, err) = kubectl(
            &kprox,
            cache.path(),
            env,
            None,
            &["exec", "alpha", "--", "echo", "nope"],
        );
        assert!(!ok, "exec succeeded: {out}");
        assert!(out.is_empty());
        assert!(
            err.contains("403") || err.to_lowercase().contains("forbidden"),
            "{err}"
        );
    }
    assert!(
        cluster
            .server
            .requests_to("/api/v1/namespaces/default/pods/alpha/exec")
            .is_empty()
    );
}

/// Starts `kubectl port-forward alpha :80`, returns the child and the local port it chose.
fn port_forward(
    kprox: &Kprox,
    cache: &std::path::Path,
    websockets: bool,
) -> (std::process::Child, u16) {
    let mut child = Command::new(require_tool("kubectl"))
        .args([
            "--server",
            &kprox.url(""),
            "--cache-dir",
            &cache.display().to_string(),
            "port-forward",
            "alpha",
            "--address",
            "127.0.0.1",
            ":80",
        ])
        .env("KUBECONFIG", "/dev/null")
        .env(
            "KUBECTL_PORT_FORWARD_WEBSOCKETS",
            if websockets { "true" } else { "false" },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward starts");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("forwarding line");
    // "Forwarding from 127.0.0.1:PORT -> 80"
    let port = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output: {line:?}"));
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, port)
}

fn echo_through(port: u16, message: &[u8]) -> Vec<u8> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(message).expect("send");
    let mut received = vec![0u8; message.len()];
    stream.read_exact(&mut received).expect("echo");
    received
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_port_forward_carries_connections_over_websocket_and_spdy() {
    let (cluster, kprox, cache) = exec_allowed().await;
    for websockets in [true, false] {
        let (mut child, port) =
            tokio::task::block_in_place(|| port_forward(&kprox, cache.path(), websockets));
        for message in [&b"first connection"[..], &vec![b'z'; 200_000][..]] {
            let got = tokio::task::block_in_place(|| echo_through(port, message));
            assert_eq!(got, message, "websockets={websockets}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let seen = cluster
        .server
        .requests_to("/api/v1/namespaces/default/pods/alpha/portforward");
    let kinds: Vec<_> = seen
        .iter()
        .map(|r| {
            r.headers
                .get("upgrade")
                .map(|v| v.to_str().unwrap_or("?").to_owned())
        })
        .collect();
    assert!(
        kinds.contains(&Some("websocket".to_owned()))
            && kinds.contains(&Some("SPDY/3.1".to_owned())),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_tunnel_is_closed_after_the_tunnel_idle_timeout() {
    let cluster = Cluster::start().await;
    let config = cluster.dir.path().join("kprox.toml");
    std::fs::write(&config, "[listen]\ntunnel_idle_timeout = \"1s\"\n").expect("write");
    let kprox = cluster.kprox(&[
        "--reject-paths",
        "^$",
        "--config",
        &config.display().to_string(),
    ]);
    let cache = tempfile::tempdir().expect("cache");
    // stdin stays open and silent: the tunnel carries nothing either way.
    let (mut child, _stdin) = support::idle_exec_tunnel(&kprox, cache.path());
    let started = std::time::Instant::now();
    let ended = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(15) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let ended = ended.expect("the idle tunnel was never closed");
    assert!(
        ended >= Duration::from_millis(900),
        "closed before it was idle: {ended:?}"
    );
    assert!(
        kprox.stderr().contains("closing an idle tunnel") || ended < Duration::from_secs(10),
        "{}",
        kprox.stderr()
    );
}
