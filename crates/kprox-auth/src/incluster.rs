//! Inside a pod, without a kubeconfig: the apiserver from `KUBERNETES_SERVICE_HOST` /
//! `KUBERNETES_SERVICE_PORT`, the service account's projected token (re-read every minute and
//! after a 401, so kubelet rotations are followed) and CA (reloaded when it changes).

use std::path::Path;

use kprox_config::KubeconfigConfig;

use crate::access::{ClusterAccess, CredentialSpec, ServerTrust};
use crate::client_cert::parse_certificates;
use crate::{AuthError, Impersonation};

/// Loads the in-cluster identity from `dir` (normally
/// `/var/run/secrets/kubernetes.io/serviceaccount`).
pub fn load(dir: &Path, selection: &KubeconfigConfig) -> Result<ClusterAccess, AuthError> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
    let port = std::env::var("KUBERNETES_SERVICE_PORT")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "443".to_owned());
    if host.is_empty() {
        return Err(AuthError::NoKubeconfig(
            "KUBERNETES_SERVICE_HOST is empty".to_owned(),
        ));
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let source = format!("in-cluster service account ({})", dir.display());
    let token = dir.join("token");
    if !token.exists() {
        return Err(AuthError::File { entry: source, file: token, reason: "the service account token is missing; fix: mount a service account token, or give kprox a kubeconfig".to_owned() });
    }
    let ca = dir.join("ca.crt");
    let pem = std::fs::read(&ca).map_err(|e| AuthError::File {
        entry: source.clone(),
        file: ca.clone(),
        reason: e.to_string(),
    })?;
    let roots = parse_certificates(&pem).map_err(|e| AuthError::Invalid {
        path: ca.display().to_string(),
        entry: "ca.crt".to_owned(),
        reason: e,
    })?;
    let impersonation = Impersonation {
        user: selection.impersonate_user.clone(),
        uid: selection.impersonate_uid.clone(),
        groups: selection.impersonate_groups.clone(),
        extra: Vec::new(),
    };
    Ok(ClusterAccess {
        source,
        context: "in-cluster".to_owned(),
        cluster: "in-cluster".to_owned(),
        user: "service account".to_owned(),
        server: format!("https://{host}:{port}"),
        trust: ServerTrust {
            roots,
            roots_source: ca.display().to_string(),
            server_name: selection.tls_server_name.clone(),
            insecure: false,
            ca_file: Some(ca),
        },
        identity: None,
        credential: CredentialSpec::TokenFile(token),
        impersonation,
        identity_files: None,
        proxy_url: None,
        in_cluster: true,
    })
}
