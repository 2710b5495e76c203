//! What the admin listener reports, read from the live components: the upstream's endpoints and
//! health changes, the credentials' source and reloads, the tunnels.

use std::sync::Arc;
use std::time::Instant;

use kprox_auth::Credentials;
use kprox_listener::Tunnels;
use kprox_telemetry::admin::{AdminSource, AdminStatus, CredentialStatus, HealthEvent};
use kprox_telemetry::{CredentialSnapshot, EndpointSnapshot, Snapshot};
use kprox_upstream::Upstream;

/// The binary's [`AdminSource`].
#[derive(Debug)]
pub struct LiveAdmin {
    pub upstream: Arc<Upstream>,
    pub credentials: Arc<arc_swap::ArcSwap<Credentials>>,
    pub client_token: Option<Credentials>,
    pub tunnels: Arc<Tunnels>,
    /// The kubeconfig's contexts, with `--all-contexts`.
    pub contexts: Option<Arc<crate::contexts::ServedContexts>>,
    pub listening_on: String,
    pub started: Instant,
    /// Set when shutdown starts: kprox is no longer ready.
    pub shutting_down: tokio_util::sync::CancellationToken,
}

impl LiveAdmin {
    /// Every apiserver, as the metrics and the status page show it.
    fn endpoints(&self) -> Vec<EndpointSnapshot> {
        let now = Instant::now();
        self.upstream
            .endpoint_views()
            .into_iter()
            .map(|e| EndpointSnapshot {
                url: e.url,
                up: e.up,
                in_flight: e.in_flight as u64,
                latency_seconds: e.latency.as_secs_f64(),
                requests: e.requests,
                connections_open: e.connections_open as u64,
                connections_opened: e.connections_opened,
                tls_handshakes: e.tls_handshakes,
                ejections: e.ejections,
                last_error_seconds_ago: e
                    .last_error
                    .as_ref()
                    .map(|(at, _)| now.duration_since(*at).as_secs()),
                last_error: e.last_error.map(|(_, text)| text).unwrap_or_default(),
                passthrough_open: e.passthrough.open,
                passthrough_opened: e.passthrough.opened,
                passthrough_failed: e.passthrough.failed,
                passthrough_bytes_to_apiserver: e.passthrough.bytes_to_apiserver,
                passthrough_bytes_to_client: e.passthrough.bytes_to_client,
            })
            .collect()
    }
}

impl AdminSource for LiveAdmin {
    fn snapshot(&self) -> Snapshot {
        let retries = self.upstream.retries();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let mut credentials = vec![CredentialSnapshot {
            source: self.credentials.load().kind().to_owned(),
            refreshes: load(&self.credentials.load().refresh_counts().refreshes),
            failures: load(&self.credentials.load().refresh_counts().failures),
        }];
        if let Some(token) = &self.client_token {
            credentials.push(CredentialSnapshot {
                source: "client-token-file".to_owned(),
                refreshes: load(&token.refresh_counts().refreshes),
                failures: load(&token.refresh_counts().failures),
            });
        }
        Snapshot {
            endpoints: self.endpoints(),
            retries_not_sent: load(&retries.not_sent),
            retries_reset: load(&retries.reset),
            retries_unavailable: load(&retries.unavailable),
            watch_resumes: self.upstream.watch_resumes(),
            watch_restarts: self.upstream.watch_restarts_told(),
            tunnels_open: self.tunnels.open() as u64,
            credentials,
        }
    }

    fn admin_status(&self) -> AdminStatus {
        let now = Instant::now();
        AdminStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            listening_on: self.listening_on.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            tunnels_open: self.tunnels.open() as u64,
            credential: CredentialStatus {
                source: self.credentials.load().describe().to_owned(),
                expiry: expiry_text(self.credentials.load().expires_at()),
            },
            endpoints: self.endpoints(),
            recent_events: self
                .upstream
                .recent_changes()
                .into_iter()
                .map(|c| HealthEvent {
                    seconds_ago: now.duration_since(c.at).as_secs(),
                    endpoint: c.endpoint,
                    change: if c.up {
                        "back in rotation".to_owned()
                    } else {
                        "taken out of rotation".to_owned()
                    },
                })
                .collect(),
            contexts: self
                .contexts
                .as_ref()
                .map(|c| c.status())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn ready(&self) -> Result<(), String> {
        if self.shutting_down.is_cancelled() {
            return Err("shutting down".to_owned());
        }
        if !self.upstream.any_up() {
            return Err("no apiserver is in rotation".to_owned());
        }
        Ok(())
    }
}

/// How the status page says when the credential in force expires.
fn expiry_text(expires_at: Option<std::time::SystemTime>) -> String {
    let Some(at) = expires_at else {
        return "none (static or re-read from its file)".to_owned();
    };
    match at.duration_since(std::time::SystemTime::now()) {
        Ok(left) => format!("expires in {} s (renewed ahead of time)", left.as_secs()),
        Err(past) => format!(
            "expired {} s ago (renewed on next use)",
            past.duration().as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn the_expiry_reads_as_time_left_or_past() {
        assert!(expiry_text(None).starts_with("none"));
        let soon = expiry_text(Some(SystemTime::now() + Duration::from_secs(90)));
        assert!(
            soon.starts_with("expires in 89 s") || soon.starts_with("expires in 90 s"),
            "{soon}"
        );
        let past = expiry_text(Some(SystemTime::now() - Duration::from_secs(30)));
        assert!(
            past.starts_with("expired 30 s ago") || past.starts_with("expired 29 s ago"),
            "{past}"
        );
    }
}
