//! Exec credential plugins (`client.authentication.k8s.io/v1` and `v1beta1`): the kubeconfig
//! names a command (`aws eks get-token`, `gke-gcloud-auth-plugin`, `kubelogin`, ...) that prints
//! an `ExecCredential` with a token (or a client certificate) and its expiry.
//!
//! kprox has no terminal: plugins run non-interactively (`interactiveMode: Always` is refused
//! with a clear error), with a timeout, stdin closed, stderr captured for error messages. The
//! credential printed on stdout never appears in an error.

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::{AuthError, Secret};

/// How a plugin may interact with a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interactive {
    Never,
    IfAvailable,
    Always,
}

/// A plugin as the kubeconfig describes it.
#[derive(Clone)]
pub struct ExecPlugin {
    pub api_version: String,
    pub command: String,
    pub args: Vec<String>,
    /// Extra environment, on top of kprox's own.
    pub env: Vec<(String, String)>,
    pub install_hint: Option<String>,
    pub interactive: Interactive,
    /// `KUBERNETES_EXEC_INFO.spec.cluster`, when `provideClusterInfo` is set.
    pub cluster_info: Option<serde_json::Value>,
    /// Longest a run may take.
    pub timeout: Duration,
    /// For messages: the kubeconfig and user that named the plugin.
    pub origin: String,
}

impl std::fmt::Debug for ExecPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Arguments and environment can carry secrets (some plugins take a key as an argument).
        f.debug_struct("ExecPlugin")
            .field("command", &self.command)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct ExecCredential {
    pub token: Option<Secret<String>>,
    /// PEM certificate and key, when the plugin authenticates with a client certificate.
    pub client_certificate: Option<(Secret<String>, Secret<String>)>,
    pub expires_at: Option<SystemTime>,
}

#[derive(Deserialize)]
struct Output {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "clientCertificateData", default)]
    client_certificate_data: Option<String>,
    #[serde(rename = "clientKeyData", default)]
    client_key_data: Option<String>,
    #[serde(rename = "expirationTimestamp", default)]
    expiration_timestamp: Option<String>,
}

const SUPPORTED: &[&str] = &[
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// Most stderr kept for an error message.
const STDERR_LIMIT: usize = 2048;

impl ExecPlugin {
    fn error(&self, reason: String) -> AuthError {
        AuthError::Invalid {
            path: self.origin.clone(),
            entry: format!("exec plugin `{}`", self.command),
            reason,
        }
    }

    /// Checks what can be checked before running it.
    pub fn validate(&self) -> Result<(), AuthError> {
        if !SUPPORTED.contains(&self.api_version.as_str()) {
            return Err(self.error(format!(
                "apiVersion `{}` is not supported; fix: use client.authentication.k8s.io/v1",
                self.api_version
            )));
        }
        if self.interactive == Interactive::Always {
            return Err(self.error("interactiveMode is Always, but kprox runs without a terminal; fix: log in with the plugin first, or use a plugin mode that needs no prompt".to_owned()));
        }
        Ok(())
    }

    /// Runs the plugin once.
    pub async fn run(&self) -> Result<ExecCredential, AuthError> {
        self.validate()?;
        let mut info = json!({"apiVersion": self.api_version, "kind": "ExecCredential", "spec": {"interactive": false}});
        if let Some(cluster) = &self.cluster_info {
            info["spec"]["cluster"] = cluster.clone();
        }
        let mut command = tokio::process::Command::new(&self.command);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("KUBERNETES_EXEC_INFO", info.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            let hint = self
                .install_hint
                .as_deref()
                .map(|h| format!("; {}", h.trim()))
                .unwrap_or_default();
            if e.kind() == std::io::ErrorKind::NotFound {
                self.error(format!("the command was not found{hint}"))
            } else {
                self.error(format!("cannot run it: {e}{hint}"))
            }
        })?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| self.error("no stdout".to_owned()))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| self.error("no stderr".to_owned()))?;
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (a, b, status) = tokio::join!(
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait()
            );
            a.and(b).and(status).map(|status| (status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(self.error(format!("running it failed: {e}"))),
            // Dropping the future kills the child (kill_on_drop).
            Err(_) => return Err(self.error(format!("it did not finish within {:?} and was stopped; fix: check that it does not wait for input, or raise kubeconfig.exec_timeout", self.timeout))),
        };
        let stderr_text = String::from_utf8_lossy(&err[..err.len().min(STDERR_LIMIT)])
            .trim()
            .to_owned();
        if !status.success() {
            let said = if stderr_text.is_empty() {
                String::new()
            } else {
                format!(": {stderr_text}")
            };
            return Err(self.error(format!("it exited with {status}{said}")));
        }
        // Never quote stdout in errors: it is where the credential is.
        let output: Output = serde_json::from_slice(&out).map_err(|e| {
            self.error(format!(
                "its output is not an ExecCredential (JSON error at line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if output.kind != "ExecCredential" || output.api_version != self.api_version {
            return Err(self.error(format!(
                "it printed kind `{}` apiVersion `{}`, expected ExecCredential {}",
                output.kind, output.api_version, self.api_version
            )));
        }
        let status = output
            .status
            .ok_or_else(|| self.error("its ExecCredential has no status".to_owned()))?;
        let expires_at = match status.expiration_timestamp.as_deref() {
            Some(text) => Some(crate::rfc3339::parse(text).ok_or_else(|| {
                self.error(format!(
                    "expirationTimestamp `{text}` is not an RFC 3339 time"
                ))
            })?),
            None => None,
        };
        let client_certificate = match (status.client_certificate_data, status.client_key_data) {
            (Some(cert), Some(key)) => Some((Secret::new(cert), Secret::new(key))),
            (None, None) => None,
            _ => return Err(self.error(
                "it gave a client certificate without its key, or a key without its certificate"
                    .to_owned(),
            )),
        };
        let token = status.token.filter(|t| !t.is_empty()).map(Secret::new);
        if token.is_none() && client_certificate.is_none() {
            return Err(self.error(
                "its ExecCredential has neither a token nor a client certificate".to_owned(),
            ));
        }
        Ok(ExecCredential {
            token,
            client_certificate,
            expires_at,
        })
    }
}

/// The plugin described by a kubeconfig `exec` section.
pub fn from_kubeconfig(
    exec: &kube_client::config::ExecConfig,
    cluster: &kube_client::config::Cluster,
    origin: &str,
    timeout: Duration,
) -> Result<ExecPlugin, AuthError> {
    let invalid = |reason: &str| AuthError::Invalid {
        path: origin.to_owned(),
        entry: "exec".to_owned(),
        reason: reason.to_owned(),
    };
    let command = exec
        .command
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("has no command"))?;
    let api_version = exec.api_version.clone().ok_or_else(|| {
        invalid("has no apiVersion; fix: set apiVersion: client.authentication.k8s.io/v1")
    })?;
    let interactive = match exec.interactive_mode {
        Some(kube_client::config::ExecInteractiveMode::Never) => Interactive::Never,
        Some(kube_client::config::ExecInteractiveMode::Always) => Interactive::Always,
        Some(kube_client::config::ExecInteractiveMode::IfAvailable) | None => {
            Interactive::IfAvailable
        }
    };
    let env = exec
        .env
        .iter()
        .flatten()
        .filter_map(|pair| {
            Some((
                pair.get("name")?.clone(),
                pair.get("value").cloned().unwrap_or_default(),
            ))
        })
        .collect();
    let cluster_info = exec.provide_cluster_info.then(|| {
        let mut info = json!({"server": cluster.server});
        if let Some(data) = &cluster.certificate_authority_data {
            info["certificate-authority-data"] = json!(data);
        }
        if let Some(name) = &cluster.tls_server_name {
            info["tls-server-name"] = json!(name);
        }
        if let Some(insecure) = cluster.insecure_skip_tls_verify {
            info["insecure-skip-tls-verify"] = json!(insecure);
        }
        if let Some(config) = cluster
            .extensions
            .iter()
            .flatten()
            .find(|e| e.name == "client.authentication.k8s.io/exec")
        {
            info["config"] = config.extension.clone();
        }
        info
    });
    Ok(ExecPlugin {
        api_version,
        command,
        args: exec.args.clone().unwrap_or_default(),
        env,
        install_hint: exec.install_hint.clone(),
        interactive,
        cluster_info,
        timeout,
        origin: origin.to_owned(),
    })
}
