//! Choosing context, cluster and user from kubeconfig files written by the testkit.

use kprox_auth::{CredentialSpec, load};
use kprox_config::KubeconfigConfig;
use kprox_testkit::{KubeconfigBuilder, TestPki};

fn selection(path: &std::path::Path) -> KubeconfigConfig {
    KubeconfigConfig {
        path: Some(path.to_owned()),
        ..Default::default()
    }
}

fn two_contexts(dir: &std::path::Path) -> std::path::PathBuf {
    let pki = TestPki::new("ca").expect("pki");
    let client = pki.client_cert("alice", &["devs"]).expect("cert");
    std::fs::write(dir.join("ca.crt"), pki.ca_pem()).expect("write ca");
    std::fs::write(dir.join("token"), "file-token\n").expect("write token");
    let path = dir.join("config");
    KubeconfigBuilder::new()
        .cluster("prod", "https://127.0.0.1:6443", &pki.ca_pem())
        .tls_server_name("kubernetes")
        .cluster_with_ca_file("staging", "https://127.0.0.2:6443", "ca.crt")
        .user_token("alice-token", "secret-value")
        .user_token_file("bob", "token")
        .user_cert("carol", &client.cert_pem, &client.key_pem)
        .context("prod", "prod", "alice-token")
        .context("staging", "staging", "bob")
        .context("certs", "prod", "carol")
        .current("prod")
        .write(&path)
        .expect("write kubeconfig");
    path
}

#[test]
fn the_current_context_is_used_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let access = load(&selection(&two_contexts(dir.path()))).expect("loads");
    assert_eq!(access.context, "prod");
    assert_eq!(access.server, "https://127.0.0.1:6443");
    assert_eq!(access.trust.server_name.as_deref(), Some("kubernetes"));
    assert_eq!(access.trust.roots.len(), 1);
    assert!(matches!(access.credential, CredentialSpec::Token(_)));
    assert!(
        !format!("{access:?}").contains("secret-value"),
        "Debug must not show the token"
    );
}

#[test]
fn relative_files_resolve_against_the_kubeconfig_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sel = selection(&two_contexts(dir.path()));
    sel.context = Some("staging".into());
    let access = load(&sel).expect("loads");
    assert_eq!(
        access.trust.roots_source,
        dir.path().join("ca.crt").display().to_string()
    );
    match access.credential {
        CredentialSpec::TokenFile(path) => assert_eq!(path, dir.path().join("token")),
        other => panic!("expected a token file, got {other:?}"),
    }
}

#[test]
fn a_client_certificate_user_yields_an_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sel = selection(&two_contexts(dir.path()));
    sel.context = Some("certs".into());
    let access = load(&sel).expect("loads");
    let identity = access.identity.expect("identity");
    assert_eq!(identity.chain.len(), 1);
    assert!(
        !format!("{identity:?}").contains("PRIVATE"),
        "Debug must not show the key"
    );
}

#[test]
fn an_unknown_context_names_the_file_and_the_choices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = two_contexts(dir.path());
    let mut sel = selection(&path);
    sel.context = Some("nope".into());
    let message = load(&sel).expect_err("unknown").to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("context \"nope\" not found"), "{message}");
    assert!(message.contains("prod, staging, certs"), "{message}");
}

#[test]
fn a_missing_kubeconfig_is_a_clear_error() {
    let message = load(&selection(std::path::Path::new("/nonexistent/kubeconfig")))
        .expect_err("missing")
        .to_string();
    assert_eq!(
        message,
        "/nonexistent/kubeconfig: cannot load kubeconfig: the file does not exist"
    );
}

#[test]
fn a_removed_auth_provider_is_refused_with_its_replacement_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    auth-provider:\n      name: gcp\n      config: {}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
    )
    .expect("write");
    let message = load(&selection(&path))
        .expect_err("unsupported")
        .to_string();
    assert!(
        message.contains("gcp auth-provider is not supported")
            && message.contains("fix: use the gke-gcloud-auth-plugin exec plugin"),
        "{message}"
    );
}

#[test]
fn client_certificate_files_are_read_relative_to_the_kubeconfig() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new("ca").expect("pki");
    let client = pki.client_cert("dave", &[]).expect("cert");
    std::fs::write(dir.path().join("dave.crt"), &client.cert_pem).expect("cert");
    std::fs::write(dir.path().join("dave.key"), &client.key_pem).expect("key");
    let path = dir.path().join("config");
    KubeconfigBuilder::new()
        .cluster("c", "https://127.0.0.1:6443", &pki.ca_pem())
        .user_cert_files("dave", "dave.crt", "dave.key")
        .context("c", "c", "dave")
        .current("c")
        .write(&path)
        .expect("write");
    let identity = load(&selection(&path))
        .expect("loads")
        .identity
        .expect("identity");
    assert_eq!(identity.chain[0], client.cert_der());

    std::fs::remove_file(dir.path().join("dave.key")).expect("remove key");
    let message = load(&selection(&path))
        .expect_err("key missing")
        .to_string();
    assert!(
        message.contains("client-key") && message.contains("dave.key"),
        "{message}"
    );
}

fn kubeconfig_with_user(dir: &std::path::Path, user_yaml: &str) -> std::path::PathBuf {
    let path = dir.join("config");
    std::fs::write(
        &path,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n{user_yaml}contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"),
    )
    .expect("write");
    path
}

#[test]
fn an_oidc_auth_provider_uses_its_id_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = kubeconfig_with_user(
        dir.path(),
        "    auth-provider:\n      name: oidc\n      config:\n        id-token: oidc-id-token-value\n        idp-issuer-url: https://issuer.example\n",
    );
    match load(&selection(&path)).expect("loads").credential {
        CredentialSpec::Token(token) => assert_eq!(token.expose(), "oidc-id-token-value"),
        other => panic!("expected the id-token, got {other:?}"),
    }
}

#[tokio::test]
async fn an_always_interactive_exec_plugin_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = kubeconfig_with_user(
        dir.path(),
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/true\n      interactiveMode: Always\n",
    );
    let access = load(&selection(&path)).expect("loads");
    let error = kprox_auth::Credentials::load(&access.credential)
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("interactiveMode is Always")
            && error.to_string().contains("without a terminal"),
        "{error}"
    );
}
