//! Where the upstream's TLS settings come from, decided in one place for start-up, reloads,
//! rotated files and renewed exec-plugin certificates: the kubeconfig's trust (CA data or a CA
//! file, an in-cluster `ca.crt` included, server name, insecure), and the client certificate —
//! an exec plugin's winning over the kubeconfig's (inline or from files).
//!
//! A file that cannot be read or parsed mid-rotation keeps the previous material in use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kprox_auth::{
    ClientIdentity, ClusterAccess, Credentials, identity_from_pem, parse_certificates,
};
use kprox_upstream::{TlsSettings, Upstream};
use tokio_util::sync::CancellationToken;

/// The inputs of the upstream's TLS settings.
#[derive(Clone, Debug)]
pub struct TlsSource {
    access: ClusterAccess,
    /// An exec plugin's client certificate, when it gives one.
    credentials: Credentials,
    /// False when clients' own credentials are forwarded: a certificate of kprox's on the
    /// connections would win over their tokens (the apiserver's x509 authenticator runs
    /// first), so none is presented.
    present_identity: bool,
}

/// What the settings were made of, to tell whether a reload changed them (new settings drain
/// the upstream's connections, so an unchanged reload must not apply them).
#[derive(Debug, PartialEq, Eq)]
pub struct TlsInputs {
    files: Vec<Vec<u8>>,
    roots: Vec<Vec<u8>>,
    server_name: Option<String>,
    insecure: bool,
    identity_chain: Option<Vec<Vec<u8>>>,
}

impl TlsSource {
    pub fn new(access: &ClusterAccess, credentials: &Credentials, present_identity: bool) -> Self {
        Self {
            access: access.clone(),
            credentials: credentials.clone(),
            present_identity,
        }
    }

    /// The files the material is read from, followed for rotation.
    fn files(&self) -> Vec<&PathBuf> {
        let identity_files = self
            .access
            .identity_files
            .iter()
            .filter(|_| self.present_identity);
        self.access
            .trust
            .ca_file
            .iter()
            .chain(identity_files.flat_map(|(c, k)| [c, k]))
            .collect()
    }

    fn read_files(&self) -> Vec<Vec<u8>> {
        self.files()
            .into_iter()
            .map(|path| std::fs::read(path).unwrap_or_default())
            .collect()
    }

    pub fn inputs(&self) -> TlsInputs {
        let identity = self.identity_now().ok().flatten();
        TlsInputs {
            files: self.read_files(),
            roots: self.access.trust.roots.iter().map(|c| c.to_vec()).collect(),
            server_name: self.access.trust.server_name.clone(),
            insecure: self.access.trust.insecure,
            identity_chain: identity.map(|i| i.chain.iter().map(|c| c.to_vec()).collect()),
        }
    }

    /// The client certificate in force: the exec plugin's, else the kubeconfig's files read
    /// now, else the kubeconfig's inline one.
    fn identity_now(&self) -> Result<Option<ClientIdentity>, String> {
        if !self.present_identity {
            return Ok(None);
        }
        if let Some(identity) = self.credentials.client_identity() {
            return Ok(Some(identity));
        }
        match (&self.access.identity_files, &self.access.identity) {
            (Some((cert, key)), _) => {
                let cert_pem =
                    std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
                let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
                identity_from_pem(&cert_pem, &key_pem)
                    .map(Some)
                    .map_err(|e| format!("{}: {e}", cert.display()))
            }
            (None, identity) => Ok(identity.clone()),
        }
    }

    /// The settings as they are now (files read again).
    pub fn settings(&self) -> Result<TlsSettings, String> {
        self.settings_with(self.identity_now()?)
    }

    fn settings_with(&self, identity: Option<ClientIdentity>) -> Result<TlsSettings, String> {
        let trust = &self.access.trust;
        let roots = match &trust.ca_file {
            Some(path) => parse_certificates(
                &std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?,
            None => trust.roots.clone(),
        };
        Ok(TlsSettings {
            roots,
            server_name: trust.server_name.clone(),
            insecure: trust.insecure,
            identity: identity.map(|i| (i.chain, i.key.expose().clone_key())),
        })
    }

    /// Keeps `upstream`'s TLS current until `stop`: a renewed exec-plugin certificate goes to
    /// it before the refresh completes, and changed files are picked up every `every`.
    pub async fn follow(self, upstream: Arc<Upstream>, every: Duration, stop: CancellationToken) {
        if self.present_identity && self.credentials.client_identity().is_some() {
            let source = self.clone();
            let upstream = Arc::downgrade(&upstream);
            let stop = stop.clone();
            self.credentials
                .on_identity_change(Box::new(move |identity| {
                    let Some(upstream) = upstream.upgrade().filter(|_| !stop.is_cancelled())
                    else {
                        return;
                    };
                    let applied = source
                        .settings_with(Some(identity.clone()))
                        .and_then(|settings| {
                            upstream.reload_tls(&settings).map_err(|e| e.to_string())
                        });
                    if let Err(error) = applied {
                        tracing::warn!(%error, "the exec plugin's new client certificate cannot be used; keeping the previous");
                    }
                }));
        }
        if self.files().is_empty() {
            return;
        }
        let mut last = self.read_files();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let now = self.read_files();
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
