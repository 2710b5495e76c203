//! Only for you: another local user (here `nobody`, UID 65534, through `setpriv`) cannot use
//! kprox's loopback or unix-socket listener and act with your credentials — unlike kubectl
//! proxy, whose Host filter is not an access control (kubectl#142). The tests run as root,
//! which kprox always serves, so root is "the owner" here.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{Cluster, Kprox, require_tool, run};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// curl run as `nobody`; returns the body and the status code.
fn curl_as_nobody(args: &[&str]) -> (String, String) {
    require_tool("setpriv");
    let mut all = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "curl",
        "-sS",
        "-w",
        "\n%{http_code}",
    ];
    all.extend_from_slice(args);
    let out = run("setpriv", &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_owned(), code.to_owned())
}

fn curl_as_owner(args: &[&str]) -> String {
    let mut all = vec!["-sS", "-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&run("curl", &all).stdout).into_owned()
}

fn peer_user_rejections(kprox: &Kprox) -> f64 {
    let metrics = String::from_utf8_lossy(
        &run("curl", &["-sS", &format!("{}/metrics", kprox.admin_url())]).stdout,
    )
    .into_owned();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("kprox_filter_rejections_total{rule=\"peer-user\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_local_user_gets_403_over_tcp_and_the_unix_socket_and_the_owner_is_served() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&[]);
    let (body, code) = curl_as_nobody(&[&kprox.url(PODS)]);
    assert_eq!(code, "403", "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("a Status body");
    assert_eq!(status["kind"], "Status");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nobody (uid 65534)") && message.contains("--allow-user nobody"),
        "{message}"
    );
    assert_eq!(curl_as_owner(&[&kprox.url(PODS)]), "200");
    assert_eq!(
        cluster.server.requests_to(PODS).len(),
        1,
        "nobody's request reached the apiserver"
    );
    assert!(peer_user_rejections(&kprox) >= 1.0);
    assert!(
        kprox.stderr().contains("local user refused"),
        "{}",
        kprox.stderr()
    );

    // The unix socket: its file mode is the first gate; opened to everyone, the peer check
    // still refuses other users.
    let socket =
        std::env::temp_dir().join(format!("kprox-local-users-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let socket_arg = socket.display().to_string();
    let on_socket = Kprox::start_exact(
        &[
            "--kubeconfig",
            &cluster.kubeconfig_arg(),
            "--unix-socket",
            &socket_arg,
            "--admin-address",
            "127.0.0.1:0",
        ],
        &[],
    );
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (body, code) = curl_as_nobody(&[
        "--unix-socket",
        &socket_arg,
        &format!("http://localhost{PODS}"),
    ]);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("uid 65534"), "{body}");
    assert_eq!(
        curl_as_owner(&[
            "--unix-socket",
            &socket_arg,
            &format!("http://localhost{PODS}")
        ]),
        "200"
    );
    assert!(peer_user_rejections(&on_socket) >= 1.0);
    drop(on_socket);
    let _ = std::fs::remove_file(&socket);
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_user_and_allow_any_local_user_let_another_user_in() {
    let cluster = Cluster::start().await;
    for args in [
        &["--allow-user", "nobody"][..],
        // nobody's primary group (Debian's nogroup, 65534): a group allows its users.
        &["--allow-user", "%65534"][..],
        &["--allow-any-local-user"][..],
    ] {
        let kprox = cluster.kprox(args);
        let (body, code) = curl_as_nobody(&[&kprox.url(PODS)]);
        assert_eq!(code, "200", "{args:?}: {body}");
        assert_eq!(peer_user_rejections(&kprox), 0.0);
    }
}
