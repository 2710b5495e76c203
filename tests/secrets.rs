//! No secret in anything kprox prints: every credential kind, error paths and an upstream
//! redirect, with logs at trace level; stdout, stderr, error bodies and metrics are searched
//! for the token, the client key and the exec plugin's token.

mod support;

use kprox_testkit::FakeOptions;
use support::{Cluster, Kprox, TOKEN, ok_stdout, run};

/// Distinctive lines of a PEM private key (its body lines, not the armour).
fn key_fragments(key_pem: &str) -> Vec<String> {
    key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_owned)
        .collect()
}

fn assert_clean(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} contains a secret ({}…)",
            &secret[..8.min(secret.len())]
        );
    }
    assert!(
        !text.contains("PRIVATE KEY"),
        "{what} contains private key material"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_kprox_prints_at_trace_level_holds_a_secret() {
    let cluster = Cluster::start_with(FakeOptions {
        tokens: vec![TOKEN.into(), "exec-secret-token".into()],
        ..Default::default()
    })
    .await;
    let dir = cluster.dir.path();
    let client = cluster
        .server
        .pki()
        .client_cert("leaky", &[])
        .expect("cert");
    let plugin = kprox_testkit::write_exec_plugin(dir).expect("plugin");
    let exec_token = dir.join("exec-token");
    std::fs::write(&exec_token, "exec-secret-token").expect("write");
    let log = dir.join("exec.log");
    let kubeconfig = dir.join("all-kinds");
    kprox_testkit::KubeconfigBuilder::new()
        .cluster("fake", &cluster.server.url(), &cluster.server.ca_pem())
        .user_token("token-user", TOKEN)
        .user_cert("cert-user", &client.cert_pem, &client.key_pem)
        .user_exec(
            "exec-user",
            plugin.to_str().expect("utf8"),
            &[
                ("FAKE_EXEC_TOKEN_FILE", exec_token.to_str().expect("utf8")),
                ("FAKE_EXEC_LOG", log.to_str().expect("utf8")),
            ],
            None,
        )
        .context("token", "fake", "token-user")
        .context("cert", "fake", "cert-user")
        .context("exec", "fake", "exec-user")
        .current("token")
        .write(&kubeconfig)
        .expect("kubeconfig");
    let mut secrets = vec![
        TOKEN.to_owned(),
        "exec-secret-token".to_owned(),
        "client-secret-abc".to_owned(),
    ];
    secrets.extend(key_fragments(&client.key_pem));
    let kubeconfig = kubeconfig.display().to_string();

    for context in ["token", "cert", "exec"] {
        let kprox = Kprox::start_with_env(
            &[
                "--kubeconfig",
                &kubeconfig,
                "--context",
                context,
                "--access-log",
            ],
            &[("RUST_LOG", "trace")],
        );
        let mut printed = String::new();
        // A normal request, a request carrying the client's own token, a 401 path, a refused
        // path, and a redirect from the apiserver.
        for args in [
            vec![
                "-sS",
                "-i",
                kprox.url("/api/v1/namespaces/default/pods").leak() as &str,
            ],
            vec![
                "-sS",
                "-i",
                "-H",
                "Authorization: Bearer client-secret-abc",
                kprox.url("/version").leak(),
            ],
            vec![
                "-sS",
                "-i",
                kprox
                    .url("/api/v1/namespaces/default/pods/alpha/exec")
                    .leak(),
            ],
            vec!["-sS", "-i", kprox.url("/testkit/redirect").leak()],
        ] {
            printed.push_str(&ok_stdout(&run("curl", &args), "curl"));
        }
        let metrics = ok_stdout(
            &run("curl", &["-sS", &format!("{}/metrics", kprox.admin_url())]),
            "metrics",
        );
        let status = ok_stdout(
            &run("curl", &["-sS", &format!("{}/status", kprox.admin_url())]),
            "status",
        );
        cluster.server.set_tokens(vec![]);
        printed.push_str(&ok_stdout(
            &run(
                "curl",
                &[
                    "-sS",
                    "-i",
                    &kprox.url("/api/v1/namespaces/default/configmaps"),
                ],
            ),
            "curl 401",
        ));
        cluster
            .server
            .set_tokens(vec![TOKEN.into(), "exec-secret-token".into()]);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let stderr = kprox.stderr();
        assert!(
            stderr.contains("TRACE") || stderr.contains("DEBUG"),
            "logs were not verbose: {}",
            &stderr[..stderr.len().min(500)]
        );
        assert_clean(&format!("{context}: responses"), &printed, &secrets);
        assert_clean(&format!("{context}: metrics"), &metrics, &secrets);
        assert_clean(&format!("{context}: status"), &status, &secrets);
        assert_clean(&format!("{context}: logs"), &stderr, &secrets);
    }
    let print = support::kprox_output(
        &[
            "--kubeconfig",
            &kubeconfig,
            "--context",
            "exec",
            "config",
            "print",
        ],
        &[],
    );
    assert_clean(
        "config print",
        &String::from_utf8_lossy(&print.stdout),
        &secrets,
    );
}
