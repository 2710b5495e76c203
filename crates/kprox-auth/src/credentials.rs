//! The credentials in force right now, as a lock-free snapshot the request path reads, kept
//! fresh in the background and refreshed on demand:
//!
//! - a token file is re-read every minute (like client-go) and after a 401;
//! - an exec plugin runs once at start, again ahead of its credential's expiry, and after a 401;
//! - whatever the cause, one refresh runs at a time and every request that asked for it shares
//!   its result (single flight): a hundred concurrent 401s cause one plugin run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine;
use http::HeaderValue;

use crate::client_cert::{ClientIdentity, identity_from_pem};
use crate::exec::ExecPlugin;
use crate::{AuthError, CredentialSpec};

/// How often a token file is re-read (client-go: every minute).
pub const TOKEN_FILE_REFRESH: Duration = Duration::from_secs(60);

/// What is injected into each request. `Debug` never shows the header.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// The `Authorization` value, marked sensitive.
    pub authorization: Option<HeaderValue>,
    /// When the credential stops working, if it says.
    pub expires_at: Option<SystemTime>,
    /// Increases with every refresh; a request that got a 401 says which one it used.
    pub generation: u64,
}

impl Snapshot {
    /// Whether the credential has expired.
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= SystemTime::now())
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Reloads of a refreshable credential, for metrics.
#[derive(Debug, Default)]
pub struct RefreshCounts {
    /// Reloads that produced a credential (changed or not), the first load included.
    pub refreshes: AtomicU64,
    /// Reloads that failed; the previous credential stayed in use.
    pub failures: AtomicU64,
}

/// Where a refreshable credential comes from.
#[derive(Debug)]
enum Source {
    TokenFile(PathBuf),
    Exec(ExecPlugin),
}

/// Called with a new client certificate from an exec plugin, before the refresh that
/// produced it completes, so a retried request already uses it.
pub type IdentityListener = Box<dyn Fn(&ClientIdentity) + Send + Sync>;

/// Refreshes one credential, one at a time.
struct Refresher {
    source: Source,
    current: Arc<ArcSwap<Snapshot>>,
    counts: Arc<RefreshCounts>,
    serial: tokio::sync::Mutex<()>,
    /// The client certificate an exec plugin gave, if it gives one.
    identity: ArcSwap<Option<ClientIdentity>>,
    on_identity: std::sync::OnceLock<IdentityListener>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Refresher {
    async fn load(&self) -> Result<(Snapshot, Option<ClientIdentity>), AuthError> {
        match &self.source {
            Source::TokenFile(path) => Ok((bearer(&read_token_file(path).await?)?, None)),
            Source::Exec(plugin) => {
                let credential = plugin.run().await?;
                let identity = match &credential.client_certificate {
                    Some((cert, key)) => Some(
                        identity_from_pem(cert.expose().as_bytes(), key.expose().as_bytes())
                            .map_err(|e| AuthError::Invalid {
                                path: plugin.origin.clone(),
                                entry: format!("exec plugin `{}`", plugin.command),
                                reason: format!("its client certificate is unusable: {e}"),
                            })?,
                    ),
                    None => None,
                };
                let mut snapshot = match &credential.token {
                    Some(token) => bearer(token.expose())?,
                    None => Snapshot::default(),
                };
                snapshot.expires_at = credential.expires_at;
                Ok((snapshot, identity))
            }
        }
    }

    /// Replaces the credential unless a refresh newer than `seen` already happened; true when
    /// a credential newer than `seen` is in place afterwards.
    async fn refresh(&self, seen: u64) -> bool {
        let _one_at_a_time = self.serial.lock().await;
        let current = self.current.load_full();
        if current.generation != seen {
            return true;
        }
        match self.load().await {
            Ok((mut snapshot, identity)) => {
                snapshot.generation = current.generation + 1;
                if let Some(identity) = identity {
                    if let Some(listener) = self.on_identity.get() {
                        listener(&identity);
                    }
                    self.identity.store(Arc::new(Some(identity)));
                }
                if snapshot.authorization != current.authorization {
                    tracing::info!(
                        source = self.kind(),
                        "credential refreshed; new requests use the new one"
                    );
                }
                self.current.store(Arc::new(snapshot));
                self.counts.refreshes.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.counts.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "credential refresh failed; keeping the previous credential");
                false
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self.source {
            Source::TokenFile(_) => "token-file",
            Source::Exec(_) => "exec",
        }
    }
}

/// The current credentials; cheap to clone and share.
#[derive(Clone, Debug)]
pub struct Credentials {
    current: Arc<ArcSwap<Snapshot>>,
    /// `Impersonate-*` headers added to every request (fixed for the process).
    impersonation: Arc<[(http::HeaderName, HeaderValue)]>,
    description: Arc<str>,
    kind: &'static str,
    counts: Arc<RefreshCounts>,
    refresher: Option<Arc<Refresher>>,
}

impl Credentials {
    /// No credentials at all (plain-HTTP upstreams, anonymous access).
    pub fn none() -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            impersonation: Arc::from(Vec::new()),
            description: "none".into(),
            kind: "none",
            counts: Arc::new(RefreshCounts::default()),
            refresher: None,
        }
    }

    /// Loads the credential `spec` names, once (an error here stops start-up or refuses a
    /// reload). Nothing runs in the background: [`Credentials::keep_fresh`] is the work that
    /// keeps a refreshable one fresh, for the caller's lifecycle to run.
    pub async fn load(spec: &CredentialSpec) -> Result<Self, AuthError> {
        let mut credentials = Self::none();
        credentials.description = spec.describe().into();
        let source = match spec {
            CredentialSpec::None => return Ok(credentials),
            CredentialSpec::Token(token) => {
                credentials.kind = "token";
                credentials.current.store(Arc::new(bearer(token.expose())?));
                return Ok(credentials);
            }
            CredentialSpec::Basic { username, password } => {
                credentials.kind = "basic";
                let raw = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                credentials
                    .current
                    .store(Arc::new(sensitive(&format!("Basic {encoded}"))?));
                return Ok(credentials);
            }
            CredentialSpec::TokenFile(path) => Source::TokenFile(path.clone()),
            CredentialSpec::Exec(plugin) => Source::Exec((**plugin).clone()),
        };
        let refresher = Arc::new(Refresher {
            source,
            current: credentials.current.clone(),
            counts: credentials.counts.clone(),
            serial: tokio::sync::Mutex::new(()),
            identity: ArcSwap::from_pointee(None),
            on_identity: std::sync::OnceLock::new(),
        });
        credentials.kind = refresher.kind();
        let (mut first, identity) = refresher.load().await?;
        first.generation = 1;
        refresher.identity.store(Arc::new(identity));
        credentials.current.store(Arc::new(first));
        refresher.counts.refreshes.fetch_add(1, Ordering::Relaxed);
        credentials.refresher = Some(refresher);
        Ok(credentials)
    }

    /// What keeps a refreshable credential fresh: a token file re-read every
    /// [`TOKEN_FILE_REFRESH`], an exec plugin run again ahead of its credential's expiry.
    /// `None` for a fixed credential. The future ends by itself once the last clone of these
    /// credentials is dropped (a reload replaced them); dropping it stops the refreshes, and a
    /// plugin run in progress with them.
    pub fn keep_fresh(&self) -> Option<impl Future<Output = ()> + Send + 'static + use<>> {
        let refresher = self.refresher.as_ref()?;
        let token_file = matches!(refresher.source, Source::TokenFile(_));
        let refresher = Arc::downgrade(refresher);
        Some(async move {
            if token_file {
                reread_periodically(refresher, TOKEN_FILE_REFRESH).await;
            } else {
                refresh_ahead_of_expiry(refresher).await;
            }
        })
    }

    /// Adds `Impersonate-*` headers to every request.
    pub fn with_impersonation(
        mut self,
        impersonation: &crate::Impersonation,
    ) -> Result<Self, AuthError> {
        self.impersonation = Arc::from(impersonation.headers()?);
        Ok(self)
    }

    /// Puts kprox's credential and impersonation on a request: exactly one `Authorization`
    /// (replacing any), and kprox's `Impersonate-*` headers.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        self.apply_snapshot(headers, &self.snapshot());
    }

    /// Like [`Credentials::apply`], with a snapshot the caller holds (to know its generation).
    pub fn apply_snapshot(&self, headers: &mut http::HeaderMap, snapshot: &Snapshot) {
        crate::inject(headers, snapshot);
        for (name, value) in self.impersonation.iter() {
            headers.append(name.clone(), value.clone());
        }
    }

    /// Who kprox impersonates, for messages: `alice (groups: devs)`, or empty.
    pub fn impersonating(&self) -> String {
        let user = self
            .impersonation
            .iter()
            .find(|(n, _)| n == "impersonate-user")
            .and_then(|(_, v)| v.to_str().ok())
            .unwrap_or_default();
        let groups: Vec<&str> = self
            .impersonation
            .iter()
            .filter(|(n, _)| n == "impersonate-group")
            .filter_map(|(_, v)| v.to_str().ok())
            .collect();
        match (user.is_empty(), groups.is_empty()) {
            (true, _) => String::new(),
            (false, true) => user.to_owned(),
            (false, false) => format!("{user} (groups: {})", groups.join(", ")),
        }
    }

    /// The credentials to use for the next request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The credentials to use, refreshed first if they have expired.
    pub async fn fresh_snapshot(&self) -> Arc<Snapshot> {
        let snapshot = self.snapshot();
        if snapshot.expired()
            && let Some(refresher) = &self.refresher
        {
            refresher.refresh(snapshot.generation).await;
            return self.snapshot();
        }
        snapshot
    }

    /// Whether a 401 can be answered by reloading the credential.
    pub fn refreshable(&self) -> bool {
        self.refresher.is_some()
    }

    /// After the apiserver refused the credential of generation `seen`: reloads it once for
    /// all the requests that saw the refusal. True when a newer credential is in place.
    pub async fn refresh_after_rejection(&self, seen: u64) -> bool {
        match &self.refresher {
            Some(refresher) => refresher.refresh(seen).await,
            None => false,
        }
    }

    /// The kind of source (`none`, `token`, `token-file`, `basic`, `exec`), a metrics label.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Reload counts.
    pub fn refresh_counts(&self) -> &RefreshCounts {
        &self.counts
    }

    /// Where the credentials come from, without secrets.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The client certificate the credential source gives (an exec plugin), if any.
    pub fn client_identity(&self) -> Option<ClientIdentity> {
        self.refresher
            .as_ref()
            .and_then(|r| (**r.identity.load()).clone())
    }

    /// Registers who applies a renewed client certificate (the upstream's TLS). Only one.
    pub fn on_identity_change(&self, listener: IdentityListener) {
        if let Some(refresher) = &self.refresher {
            let _ = refresher.on_identity.set(listener);
        }
    }

    /// When the current credential expires, if it says.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.snapshot().expires_at
    }
}

fn sensitive(value: &str) -> Result<Snapshot, AuthError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| AuthError::Invalid {
        path: String::new(),
        entry: "credential".to_owned(),
        reason: "contains characters not allowed in an HTTP header".to_owned(),
    })?;
    header.set_sensitive(true);
    Ok(Snapshot {
        authorization: Some(header),
        expires_at: None,
        generation: 0,
    })
}

fn bearer(token: &str) -> Result<Snapshot, AuthError> {
    sensitive(&format!("Bearer {}", token.trim()))
}

async fn read_token_file(path: &Path) -> Result<String, AuthError> {
    let file_error = |reason: String| AuthError::File {
        entry: "tokenFile".to_owned(),
        file: PathBuf::from(path),
        reason,
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| file_error(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(file_error("the file is empty".to_owned()));
    }
    Ok(token.to_owned())
}

/// Re-reads a token file every `every`, keeping the last good token when a read fails (a
/// rotation in progress may briefly leave no file).
async fn reread_periodically(refresher: Weak<Refresher>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await; // the first tick is immediate; the file was just read
    loop {
        ticker.tick().await;
        let Some(refresher) = refresher.upgrade() else {
            return;
        };
        let seen = refresher.current.load().generation;
        refresher.refresh(seen).await;
    }
}

/// Runs an exec plugin again before its credential expires: at 80% of the remaining lifetime,
/// at most 5 minutes early; retries every few seconds when a run fails.
async fn refresh_ahead_of_expiry(refresher: Weak<Refresher>) {
    loop {
        let wait = {
            let Some(refresher) = refresher.upgrade() else {
                return;
            };
            let Some(expires_at) = refresher.current.load().expires_at else {
                return;
            };
            let left = expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let early = (left / 5).min(Duration::from_secs(300));
            left - early
        };
        tokio::time::sleep(wait).await;
        let Some(refresher) = refresher.upgrade() else {
            return;
        };
        let seen = refresher.current.load().generation;
        if !refresher.refresh(seen).await {
            drop(refresher);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[tokio::test]
    async fn a_static_token_becomes_a_sensitive_bearer_header() {
        let credentials = Credentials::load(&CredentialSpec::Token(Secret::new("abc".into())))
            .await
            .expect("starts");
        let snapshot = credentials.snapshot();
        let header = snapshot.authorization.as_ref().expect("set");
        assert_eq!(header, "Bearer abc");
        assert!(header.is_sensitive());
        assert!(!format!("{snapshot:?}").contains("abc"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_token_file_is_used_within_a_minute_and_a_vanished_one_keeps_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").expect("write");
        let credentials = Credentials::load(&CredentialSpec::TokenFile(path.clone()))
            .await
            .expect("starts");
        tokio::spawn(credentials.keep_fresh().expect("a token file is refreshed"));
        assert_eq!(
            credentials.snapshot().authorization.as_ref().expect("set"),
            "Bearer first"
        );

        std::fs::write(&path, "second").expect("write");
        tokio::time::sleep(TOKEN_FILE_REFRESH + Duration::from_millis(10)).await;
        // Let the refresher's file read (on the blocking pool) finish.
        for _ in 0..100 {
            if credentials.snapshot().authorization.as_ref().expect("set") == "Bearer second" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            credentials.snapshot().authorization.as_ref().expect("set"),
            "Bearer second"
        );

        std::fs::remove_file(&path).expect("remove");
        tokio::time::sleep(TOKEN_FILE_REFRESH * 2).await;
        assert_eq!(
            credentials.snapshot().authorization.as_ref().expect("set"),
            "Bearer second"
        );
    }

    #[tokio::test]
    async fn an_empty_token_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").expect("write");
        let error = Credentials::load(&CredentialSpec::TokenFile(path.clone()))
            .await
            .expect_err("empty");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }
}
