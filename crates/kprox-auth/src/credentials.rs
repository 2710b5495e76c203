//! The credentials in force right now, as a lock-free snapshot the request path reads, kept
//! fresh by background providers (a token file is re-read every minute, like client-go).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use http::HeaderValue;

use crate::{AuthError, CredentialSpec};

/// How often a token file is re-read (client-go: every minute).
pub const TOKEN_FILE_REFRESH: Duration = Duration::from_secs(60);

/// What is injected into each request. `Debug` never shows the header.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// The `Authorization` value, marked sensitive.
    pub authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
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
}

/// Reloads of a refreshable credential, for metrics.
#[derive(Debug, Default)]
pub struct RefreshCounts {
    /// Reloads that produced a credential (changed or not).
    pub refreshes: std::sync::atomic::AtomicU64,
    /// Reloads that failed; the previous credential stayed in use.
    pub failures: std::sync::atomic::AtomicU64,
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
        }
    }

    /// Starts the provider for `spec`: reads the credential once (an error here stops startup)
    /// and, for refreshable sources, keeps it fresh in a background task that ends when the last
    /// clone of the returned value is dropped.
    pub async fn start(spec: &CredentialSpec) -> Result<Self, AuthError> {
        let snapshot = match spec {
            CredentialSpec::None => Snapshot::default(),
            CredentialSpec::Token(token) => bearer(token.expose())?,
            CredentialSpec::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                sensitive(&format!("Basic {encoded}"))?
            }
            CredentialSpec::TokenFile(path) => bearer(&read_token_file(path).await?)?,
        };
        let kind = match spec {
            CredentialSpec::None => "none",
            CredentialSpec::Token(_) => "token",
            CredentialSpec::TokenFile(_) => "token-file",
            CredentialSpec::Basic { .. } => "basic",
        };
        let credentials = Self {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
            impersonation: Arc::from(Vec::new()),
            description: spec.describe().into(),
            kind,
            counts: Arc::new(RefreshCounts::default()),
        };
        if let CredentialSpec::TokenFile(path) = spec {
            tokio::spawn(refresh_token_file(
                Arc::downgrade(&credentials.current),
                credentials.counts.clone(),
                path.clone(),
                TOKEN_FILE_REFRESH,
            ));
        }
        Ok(credentials)
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
        crate::inject(headers, &self.snapshot());
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

    /// The kind of source (`none`, `token`, `token-file`, `basic`), a metrics label.
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

async fn refresh_token_file(
    target: Weak<ArcSwap<Snapshot>>,
    counts: Arc<RefreshCounts>,
    path: PathBuf,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await; // the first tick is immediate; the file was just read
    loop {
        ticker.tick().await;
        let Some(target) = target.upgrade() else {
            return;
        };
        match read_token_file(&path).await.and_then(|t| bearer(&t)) {
            Ok(snapshot) => {
                let changed = target.load().authorization != snapshot.authorization;
                target.store(Arc::new(snapshot));
                counts
                    .refreshes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if changed {
                    tracing::info!(file = %path.display(), "bearer token file changed; new requests use the new token");
                }
            }
            // Keep the last good token: a rotation in progress may briefly leave no file.
            Err(error) => {
                counts
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%error, "keeping the previous token");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[tokio::test]
    async fn a_static_token_becomes_a_sensitive_bearer_header() {
        let credentials = Credentials::start(&CredentialSpec::Token(Secret::new("abc".into())))
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
        let credentials = Credentials::start(&CredentialSpec::TokenFile(path.clone()))
            .await
            .expect("starts");
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
        let error = Credentials::start(&CredentialSpec::TokenFile(path.clone()))
            .await
            .expect_err("empty");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }
}
