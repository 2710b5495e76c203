//! Live reload, on SIGHUP and when the config file or kubeconfig changes: new apiservers,
//! filters, credentials, TLS material and log level take effect without dropping a connection
//! or a request in flight. An invalid new configuration is refused with one log line and the
//! previous one keeps serving. Listening addresses need a restart (said in the log).
//!
//! Without `--follow-context`, the context kprox started with stays selected even if the
//! kubeconfig's current-context changes; with it, kprox follows `kubectl config use-context`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kprox_auth::{ClusterAccess, Credentials};
use kprox_config::Config;
use kprox_listener::{Filter, Pipeline};
use kprox_upstream::Upstream;

use crate::cli::ProxyFlags;
use crate::reload::TlsFiles;
use crate::run::load_config;
use crate::wiring::Stack;

/// What a reload changes.
pub struct Reloader {
    flags: ProxyFlags,
    config: Config,
    access: ClusterAccess,
    /// The context pinned at start when not following the kubeconfig's current-context.
    pinned_context: Option<String>,
    upstream: Arc<Upstream>,
    pipeline: Arc<Pipeline>,
    credentials: Arc<arc_swap::ArcSwap<Credentials>>,
    tls_epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Reloader {
    pub fn new(flags: &ProxyFlags, config: &Config, access: &ClusterAccess, stack: &Stack) -> Self {
        let pinned_context = (!config.kubeconfig.follow_context
            && config.kubeconfig.context.is_none()
            && !access.context.is_empty())
        .then(|| access.context.clone());
        Self {
            flags: flags.clone(),
            config: config.clone(),
            access: access.clone(),
            pinned_context,
            upstream: stack.upstream.clone(),
            pipeline: stack.pipeline.clone(),
            credentials: stack.credentials_handle.clone(),
            tls_epoch: stack.tls_epoch.clone(),
        }
    }

    /// The files whose change triggers a reload: the config file and the kubeconfig(s).
    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.flags.config.iter().cloned().collect();
        match &self.config.kubeconfig.path {
            Some(path) => files.push(path.clone()),
            None => match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
                Some(list) => files.extend(std::env::split_paths(&list)),
                None => files.extend(
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")),
                ),
            },
        }
        files
    }

    fn fingerprint(&self) -> Vec<Vec<u8>> {
        self.watched_files()
            .iter()
            .map(|f| std::fs::read(f).unwrap_or_default())
            .collect()
    }

    /// Loads everything anew and applies what changed; refuses (and logs why) on any error.
    pub async fn reload(&mut self, why: &str) {
        let mut config = match load_config(&self.flags) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), trigger = why, "reload refused: the new configuration is invalid; the previous one keeps serving");
                return;
            }
        };
        if config.kubeconfig.context.is_none() {
            config.kubeconfig.context = self.pinned_context.clone();
        }
        let access = match kprox_auth::load(&config.kubeconfig) {
            Ok(access) => access,
            Err(error) => {
                tracing::error!(%error, trigger = why, "reload refused: the kubeconfig cannot be used; the previous one keeps serving");
                return;
            }
        };
        let servers = crate::wiring::servers(&config, &access);
        let plain_http = servers.iter().any(|s| s.starts_with("http://"));
        let credentials = if plain_http {
            Ok(Credentials::none())
        } else {
            match Credentials::start(&access.credential).await {
                Ok(c) => c.with_impersonation(&access.impersonation),
                Err(e) => Err(e),
            }
        };
        let credentials = match credentials {
            Ok(credentials) => credentials,
            Err(error) => {
                tracing::error!(%error, trigger = why, "reload refused: the new credentials cannot be loaded; the previous ones keep serving");
                return;
            }
        };
        let filter = match Filter::new(&config.filter) {
            Ok(filter) => filter,
            Err(error) => {
                tracing::error!(%error, trigger = why, "reload refused: a filter does not compile");
                return;
            }
        };
        if let Err(error) = kprox_telemetry::set_log_level(&config.log.level) {
            tracing::error!(%error, trigger = why, "reload refused: invalid log level");
            return;
        }
        if let Err(error) = self.upstream.set_servers(&servers) {
            tracing::error!(%error, trigger = why, "reload refused: the apiserver list cannot be used");
            return;
        }
        let tls_changed = access.trust.roots != self.access.trust.roots
            || access.trust.server_name != self.access.trust.server_name
            || access.trust.insecure != self.access.trust.insecure
            || access.identity.as_ref().map(|i| &i.chain)
                != self.access.identity.as_ref().map(|i| &i.chain)
            || access.trust.ca_file != self.access.trust.ca_file
            || access.identity_files != self.access.identity_files;
        if tls_changed && !plain_http {
            let settings = kprox_upstream::TlsSettings {
                roots: access.trust.roots.clone(),
                server_name: access.trust.server_name.clone(),
                insecure: access.trust.insecure,
                identity: access
                    .identity
                    .as_ref()
                    .map(|i| (i.chain.clone(), i.key.expose().clone_key())),
            };
            if let Err(error) = self.upstream.reload_tls(&settings) {
                tracing::error!(%error, "new TLS settings refused; the previous ones stay");
            }
            // The old configuration's file watcher stops; the new one's starts.
            let epoch = self.tls_epoch.fetch_add(1, Ordering::AcqRel) + 1;
            if let Some(files) = TlsFiles::of(&access) {
                tokio::spawn(files.watch(
                    Arc::downgrade(&self.upstream),
                    config.kubeconfig.reload_interval.get(),
                    self.tls_epoch.clone(),
                    epoch,
                ));
            }
        }
        self.credentials.store(Arc::new(credentials));
        self.pipeline.set_filter(filter);
        if config.listen != self.config.listen || config.admin != self.config.admin {
            tracing::warn!("listening addresses changed; they take effect at the next restart");
        }
        tracing::info!(trigger = why, context = %access.context, servers = ?servers, "configuration reloaded");
        self.config = config;
        self.access = access;
    }

    /// Reloads on SIGHUP and whenever a watched file changes, until the process ends.
    pub async fn run(mut self, mut hangup: tokio::signal::unix::Signal) {
        let every = self
            .config
            .kubeconfig
            .reload_interval
            .get()
            .max(Duration::from_millis(100));
        let mut seen = self.fingerprint();
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    self.reload("SIGHUP").await;
                    seen = self.fingerprint();
                }
                () = tokio::time::sleep(every) => {
                    let now = self.fingerprint();
                    if now != seen {
                        seen = now;
                        self.reload("a configuration file changed").await;
                    }
                }
            }
        }
    }
}
