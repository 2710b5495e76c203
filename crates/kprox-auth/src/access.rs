//! What kprox knows about the cluster it acts on, however it learned it (a kubeconfig, or the
//! pod's service account): where the apiserver is, how its certificate is verified, and how
//! requests are authenticated — before any credential is read.

use std::path::PathBuf;

use rustls_pki_types::CertificateDer;

use crate::client_cert::ClientIdentity;
use crate::{Impersonation, Secret};

/// How the apiserver's certificate is verified.
#[derive(Clone, Debug)]
pub struct ServerTrust {
    /// Trusted CA certificates.
    pub roots: Vec<CertificateDer<'static>>,
    /// Where the roots came from, for logs: a file, `certificate-authority-data`, `system`.
    pub roots_source: String,
    /// Name to verify the certificate against, instead of the URL's host (`tls-server-name`).
    pub server_name: Option<String>,
    /// `insecure-skip-tls-verify`: no verification at all.
    pub insecure: bool,
    /// The CA file, when the roots came from one: watched and reloaded when it changes.
    pub ca_file: Option<PathBuf>,
}

/// How requests are authenticated, before any credential is read.
#[derive(Clone, Debug)]
pub enum CredentialSpec {
    /// Anonymous.
    None,
    /// A fixed bearer token.
    Token(Secret<String>),
    /// A bearer token read from a file and re-read periodically.
    TokenFile(PathBuf),
    /// HTTP basic authentication.
    Basic {
        username: String,
        password: Secret<String>,
    },
    /// A credential plugin run as a command.
    Exec(Box<crate::exec::ExecPlugin>),
}

impl CredentialSpec {
    /// A description without secrets: `token`, `token file /path`, ...
    pub fn describe(&self) -> String {
        match self {
            Self::None => "none".to_owned(),
            Self::Token(_) => "bearer token".to_owned(),
            Self::TokenFile(path) => format!("token file {}", path.display()),
            Self::Basic { username, .. } => format!("basic auth as {username}"),
            Self::Exec(plugin) => format!("exec plugin {}", plugin.command),
        }
    }
}

/// Everything needed to reach and authenticate to the selected cluster.
#[derive(Clone, Debug)]
pub struct ClusterAccess {
    /// The kubeconfig file(s) read, for messages.
    pub source: String,
    pub context: String,
    pub cluster: String,
    pub user: String,
    /// The cluster's `server` URL.
    pub server: String,
    pub trust: ServerTrust,
    /// Client certificate for mutual TLS, if the user has one.
    pub identity: Option<ClientIdentity>,
    pub credential: CredentialSpec,
    /// Who to act as, if anyone.
    pub impersonation: Impersonation,
    /// The client certificate and key files, when the identity came from files: watched and
    /// reloaded when they change.
    pub identity_files: Option<(PathBuf, PathBuf)>,
    /// The cluster's `proxy-url` (an HTTP or SOCKS5 proxy to reach the apiserver through).
    pub proxy_url: Option<String>,
    /// True for the pod's service account (no kubeconfig, inside a pod).
    pub in_cluster: bool,
}
