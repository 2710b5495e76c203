//! Live reload, on SIGHUP and when the config file or kubeconfig changes: new apiservers,
//! filters, credentials, TLS material and log level take effect without dropping a connection
//! or a request in flight. The new parts are assembled exactly as start-up assembles them
//! (assembly.rs) and applied whole; when any part fails, the reload is refused with one log
//! line and the previous configuration keeps serving. Listening addresses need a restart
//! (said in the log).
//!
//! Without `--follow-context`, the context kprox started with stays selected even if the
//! kubeconfig's current-context changes; with it, kprox follows `kubectl config use-context`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kprox_auth::{ClusterAccess, Credentials};
use kprox_config::Config;
use kprox_listener::Pipeline;
use kprox_upstream::Upstream;
use tokio_util::sync::CancellationToken;

use crate::assembly::{Parts, assemble};
use crate::cli::ProxyFlags;
use crate::contexts::ServedContexts;
use crate::lifecycle::Tasks;
use crate::tls_source::{TlsInputs, TlsSource};
use crate::wiring::Stack;

/// The running configuration, and what a reload replaces in the stack.
pub struct Reloader {
    /// What the configuration is loaded from; `None` when it cannot be reloaded (the demo).
    flags: Option<ProxyFlags>,
    config: Config,
    /// The context pinned at start when not following the kubeconfig's current-context.
    pinned_context: Option<String>,
    upstream: Arc<Upstream>,
    pipeline: Arc<Pipeline>,
    credentials: Arc<arc_swap::ArcSwap<Credentials>>,
    /// What the TLS settings in force were made of.
    tls_inputs: Option<TlsInputs>,
    /// Ends the followers of the configuration in force: its TLS material and its
    /// credential's refreshes.
    follower: CancellationToken,
    /// Spawns the followers (they end at shutdown).
    tasks: Tasks,
    /// The contexts served under `/clusters/` (`--all-contexts`), told of every reload.
    contexts: Option<Arc<ServedContexts>>,
    /// The context the configuration in force selected.
    current_context: String,
}

impl Reloader {
    /// Takes over the start-up configuration and starts following its TLS material.
    pub fn start(
        flags: Option<&ProxyFlags>,
        config: &Config,
        access: &ClusterAccess,
        parts: Parts,
        stack: &Stack,
        tasks: &Tasks,
        contexts: Option<Arc<ServedContexts>>,
    ) -> Self {
        let pinned_context = (!config.kubeconfig.follow_context
            && config.kubeconfig.context.is_none()
            && !access.context.is_empty())
        .then(|| access.context.clone());
        let mut reloader = Self {
            flags: flags.cloned(),
            config: config.clone(),
            pinned_context,
            upstream: stack.upstream.clone(),
            pipeline: stack.pipeline.clone(),
            credentials: stack.credentials.clone(),
            tls_inputs: None,
            follower: tasks.child(),
            tasks: tasks.clone(),
            contexts,
            current_context: access.context.clone(),
        };
        reloader.tls_inputs = parts.tls.as_ref().map(TlsSource::inputs);
        reloader.follow(parts);
        reloader
    }

    /// Follows the TLS material of `parts` (its files and exec-plugin renewals) and keeps its
    /// credential fresh, until the next reload or shutdown.
    fn follow(&mut self, parts: Parts) {
        self.follower.cancel();
        self.follower = self.tasks.child();
        let every = self.config.kubeconfig.reload_interval.get();
        parts.follow(&self.upstream, &self.tasks, &self.follower, every);
    }

    /// The files whose change triggers a reload: the config file and the kubeconfig(s).
    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.flags.iter().filter_map(|f| f.config.clone()).collect();
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

    /// Loads and assembles everything anew, then applies it; refuses (and logs why) on any
    /// error, before anything changed.
    pub async fn reload(&mut self, why: &str) {
        let assembled = self.assemble().await;
        if let Ok((_, access, _)) = &assembled {
            self.current_context = access.context.clone();
        }
        if let Some(contexts) = &self.contexts {
            // The other contexts follow the kubeconfig even when the current one's reload fails.
            let config = assembled.as_ref().map_or(&self.config, |(c, _, _)| c);
            contexts.refresh(
                config,
                &self.current_context,
                self.pipeline.forwarder().clone(),
            );
        }
        let (config, access, parts) = match assembled {
            Ok(assembled) => assembled,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), trigger = why, "reload refused: the previous configuration keeps serving");
                return;
            }
        };
        // Nothing below fails: the servers were parsed and the TLS material read by assemble.
        if let Err(error) = self.upstream.set_servers(&parts.servers) {
            tracing::error!(%error, trigger = why, "reload refused: the apiserver list cannot be used");
            return;
        }
        let inputs = parts.tls.as_ref().map(TlsSource::inputs);
        if inputs != self.tls_inputs
            && let Some(tls) = &parts.tls
        {
            // New settings drain the connections made with the old ones.
            let applied = tls.settings().and_then(|settings| {
                self.upstream
                    .reload_tls(&settings)
                    .map_err(|e| e.to_string())
            });
            if let Err(error) = applied {
                tracing::error!(%error, "new TLS settings refused; the previous ones stay");
            }
        }
        self.tls_inputs = inputs;
        self.credentials.store(Arc::new(parts.credentials.clone()));
        self.pipeline.set_filter(parts.filter.clone());
        let servers = parts.servers.clone();
        self.follow(parts);
        if config.listen != self.config.listen
            || config.admin != self.config.admin
            || config.passthrough != self.config.passthrough
        {
            tracing::warn!("listening addresses changed; they take effect at the next restart");
        }
        let without_servers = |config: &Config| {
            let mut upstream = config.upstream.clone();
            upstream.servers.clear();
            upstream
        };
        if without_servers(&config) != without_servers(&self.config) {
            tracing::info!(
                "apiserver connection settings other than the server list take effect at the next restart"
            );
        }
        tracing::info!(trigger = why, context = %access.context, ?servers, "configuration reloaded");
        self.config = config;
    }

    /// The new configuration, cluster access and parts, each step as at start-up.
    async fn assemble(&self) -> anyhow::Result<(Config, ClusterAccess, Parts)> {
        use anyhow::Context as _;
        let flags = self
            .flags
            .as_ref()
            .context("this configuration cannot be reloaded")?;
        let mut config = flags
            .load_config()
            .context("the new configuration is invalid")?;
        if config.kubeconfig.context.is_none() {
            config.kubeconfig.context = self.pinned_context.clone();
        }
        let access =
            kprox_auth::load(&config.kubeconfig).context("the kubeconfig cannot be used")?;
        let parts = assemble(&config, &access).await?;
        kprox_telemetry::set_log_level(&config.log.level).context("invalid log level")?;
        Ok((config, access, parts))
    }

    /// Reloads on SIGHUP and whenever a watched file changes, until `stop`.
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
