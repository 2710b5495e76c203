//! Listeners other machines can reach must be protected: client certificates over TLS, a client
//! bearer token, or an explicit and loudly logged opt-out.

mod support;

use support::{Cluster, Kprox, TOKEN, ok_stdout, run};

/// kprox bound to 0.0.0.0 reports `0.0.0.0:PORT`; clients here reach it on 127.0.0.1.
fn local(kprox: &Kprox, scheme: &str, path: &str) -> String {
    let port = kprox
        .address
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or_default();
    format!("{scheme}://127.0.0.1:{port}{path}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_token_protects_a_remote_listener_and_never_reaches_the_apiserver() {
    let cluster = Cluster::start().await;
    let token_file = cluster.dir.path().join("client-token");
    std::fs::write(&token_file, "client-secret-123\n").expect("write");
    let kprox = cluster.kprox(&[
        "--address",
        "0.0.0.0",
        "--client-token-file",
        &token_file.display().to_string(),
    ]);
    assert!(kprox.address.starts_with("0.0.0.0:"), "{}", kprox.address);
    let url = local(&kprox, "http", "/version");

    let denied = ok_stdout(&run("curl", &["-sS", "-w", "\n%{http_code}", &url]), "curl");
    assert!(denied.ends_with("\n401"), "{denied}");
    let wrong = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Authorization: Bearer client-secret-124",
                &url,
            ],
        ),
        "curl",
    );
    assert_eq!(wrong, "401");
    let allowed = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Authorization: Bearer client-secret-123",
                &url,
            ],
        ),
        "curl",
    );
    assert_eq!(allowed, "200");
    let seen = cluster.server.requests_to("/version");
    assert_eq!(seen.len(), 1, "refused requests reached the apiserver");
    let auth: Vec<_> = seen[0]
        .headers
        .get_all("authorization")
        .iter()
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(
        auth,
        [format!("Bearer {TOKEN}")],
        "the client's token must not reach the apiserver"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_protect_a_remote_tls_listener() {
    let cluster = Cluster::start().await;
    let pki = kprox_testkit::TestPki::new("kprox-clients").expect("pki");
    let server = pki
        .server_cert(&["127.0.0.1", "localhost"])
        .expect("server cert");
    let client = pki.client_cert("laptop", &[]).expect("client cert");
    let dir = cluster.dir.path();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let (ca, cert, key) = (
        file("clients-ca.pem", &pki.ca_pem()),
        file("server.pem", &server.cert_pem),
        file("server.key", &server.key_pem),
    );
    let (client_cert, client_key) = (
        file("client.pem", &client.cert_pem),
        file("client.key", &client.key_pem),
    );
    let kprox = cluster.kprox(&[
        "--address",
        "0.0.0.0",
        "--tls-cert-file",
        &cert,
        "--tls-private-key-file",
        &key,
        "--client-ca-file",
        &ca,
    ]);
    let url = local(&kprox, "https", "/api/v1/namespaces/default/pods");
    let without = run("curl", &["-sS", "--cacert", &ca, &url]);
    assert!(
        !without.status.success(),
        "a client without a certificate got through"
    );
    let pods = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "--fail",
                "--cacert",
                &ca,
                "--cert",
                &client_cert,
                "--key",
                &client_key,
                &url,
            ],
        ),
        "curl with client cert",
    );
    assert!(pods.contains("alpha"), "{pods}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_explicit_opt_out_serves_and_warns() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&[
        "--address",
        "0.0.0.0",
        "--insecure-allow-unauthenticated-remote",
    ]);
    let code = ok_stdout(
        &run(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &local(&kprox, "http", "/version"),
            ],
        ),
        "curl",
    );
    assert_eq!(code, "200");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        kprox.stderr().contains("WITHOUT client authentication"),
        "{}",
        kprox.stderr()
    );
}
