//! Who kprox is to the apiserver: impersonation, kubectl's global credential flags, token
//! rotation, exec credential plugins and recovery from a 401.

mod support;

use support::{Cluster, Kprox, TOKEN, ok_stdout, run};

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
    let kprox = Kprox::start(&[
        "--kubeconfig",
        &cluster.kubeconfig_arg(),
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
    ok_stdout(
        &run(
            "curl",
            &["-sS", "--fail", "-o", "/dev/null", &kprox.url("/version")],
        ),
        "curl",
    );
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
    ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                "-o",
                "/dev/null",
                &kprox.url("/api/v1/namespaces/default/pods"),
            ],
        ),
        "curl",
    );
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
    ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                "-o",
                "/dev/null",
                &insecure.url("/version"),
            ],
        ),
        "curl",
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        insecure.stderr().contains("NOT verified"),
        "{}",
        insecure.stderr()
    );
}
