//! Follows the files TLS depends on — the CA file (an in-cluster `ca.crt` included) and client
//! certificate/key files — and hands changed material to the upstream, which drains
//! connections made with the old one. A file that cannot be read or parsed mid-rotation keeps
//! the previous material in use.

use std::path::PathBuf;
use std::sync::Weak;
use std::time::Duration;

use kprox_auth::{ClusterAccess, identity_from_pem, parse_certificates};
use kprox_upstream::{TlsSettings, Upstream};

/// What to watch, from the cluster access.
pub struct TlsFiles {
    ca_file: Option<PathBuf>,
    identity_files: Option<(PathBuf, PathBuf)>,
    access: ClusterAccess,
}

impl TlsFiles {
    /// `None` when no TLS material comes from files.
    pub fn of(access: &ClusterAccess) -> Option<Self> {
        let ca_file = access.trust.ca_file.clone();
        let identity_files = access.identity_files.clone();
        (ca_file.is_some() || identity_files.is_some()).then(|| Self {
            ca_file,
            identity_files,
            access: access.clone(),
        })
    }

    fn read(&self) -> Vec<Vec<u8>> {
        let mut contents = Vec::new();
        for path in self
            .ca_file
            .iter()
            .chain(self.identity_files.iter().flat_map(|(c, k)| [c, k]))
        {
            contents.push(std::fs::read(path).unwrap_or_default());
        }
        contents
    }

    pub fn settings(&self) -> Result<TlsSettings, String> {
        let roots = match &self.ca_file {
            Some(path) => parse_certificates(
                &std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?,
            None => self.access.trust.roots.clone(),
        };
        let identity = match (&self.identity_files, &self.access.identity) {
            (Some((cert, key)), _) => {
                let cert_pem =
                    std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
                let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
                let identity = identity_from_pem(&cert_pem, &key_pem)
                    .map_err(|e| format!("{}: {e}", cert.display()))?;
                Some((identity.chain, identity.key.expose().clone_key()))
            }
            (None, Some(identity)) => {
                Some((identity.chain.clone(), identity.key.expose().clone_key()))
            }
            (None, None) => None,
        };
        Ok(TlsSettings {
            roots,
            server_name: self.access.trust.server_name.clone(),
            insecure: self.access.trust.insecure,
            identity,
        })
    }

    /// Checks the files every `every`; stops when the upstream is gone or a live reload has
    /// moved `epoch` past `mine` (it then watches the new configuration's files).
    pub async fn watch(
        self,
        upstream: Weak<Upstream>,
        every: Duration,
        epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
        mine: u64,
    ) {
        let mut last = self.read();
        loop {
            tokio::time::sleep(every).await;
            let Some(upstream) = upstream.upgrade() else {
                return;
            };
            if epoch.load(std::sync::atomic::Ordering::Acquire) != mine {
                return;
            }
            let now = self.read();
            if now == last {
                continue;
            }
            match self.settings() {
                Ok(settings) => match upstream.reload_tls(&settings) {
                    Ok(()) => last = now,
                    Err(error) => {
                        tracing::warn!(%error, "new TLS material refused; keeping the previous")
                    }
                },
                // A rotation in progress (one file written, not the other): try again later.
                Err(error) => {
                    tracing::warn!(%error, "TLS files changed but cannot be used yet; keeping the previous material")
                }
            }
        }
    }
}
