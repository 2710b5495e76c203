//! Errors of the auth crate: where credentials could not be found, read or used. Messages name
//! files and kubeconfig entries, never secret values.

use std::path::PathBuf;

/// Why credentials or the cluster to use could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No kubeconfig file was found and no in-cluster environment either.
    #[error("no kubeconfig found: {0}; fix: pass --kubeconfig FILE or set KUBECONFIG")]
    NoKubeconfig(String),
    /// The kubeconfig could not be read or parsed.
    #[error("{path}: cannot load kubeconfig: {reason}")]
    Kubeconfig { path: String, reason: String },
    /// A named context, cluster or user does not exist.
    #[error("{path}: {what} \"{name}\" not found; fix: {fix}")]
    NotFound {
        path: String,
        what: &'static str,
        name: String,
        fix: String,
    },
    /// A kubeconfig entry is unusable.
    #[error("{path}: {entry}: {reason}")]
    Invalid {
        path: String,
        entry: String,
        reason: String,
    },
    /// A file a kubeconfig entry names cannot be read.
    #[error("{entry}: cannot read {file}: {reason}")]
    File {
        entry: String,
        file: PathBuf,
        reason: String,
    },
    /// A credential kind kprox does not support yet.
    #[error("{path}: {entry}: {reason}")]
    Unsupported {
        path: String,
        entry: String,
        reason: String,
    },
}
