//! Every context of the kubeconfig in one daemon (`--all-contexts`): `/clusters/<context>/`
//! goes to that context's cluster as that context's user. A context is set up on its first
//! request — its credentials loaded (its exec plugin run), its upstream built and its health
//! checks, credential refreshes and TLS followers started under the lifecycle — so an unused
//! context costs nothing. The current context is the one the rest of kprox already serves.
//! A kubeconfig change ([`ServedContexts::refresh`], called by the reloader) drops the set-up
//! of every context that changed or left; its next request sets it up anew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::StatusCode;
use kprox_auth::ContextList;
use kprox_config::Config;
use kprox_listener::{ContextRefusal, Contexts, Forwarder, Tunnels};
use kprox_telemetry::admin::ContextStatus;
use kprox_telemetry::{IntCounter, Metrics};
use kprox_upstream::Upstream;
use tokio_util::sync::CancellationToken;

use crate::assembly::assemble;
use crate::lifecycle::Tasks;

/// A context whose set-up failed is tried again by a request after this long (an exec plugin
/// that fails is not run for every request).
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(5);

/// The contexts served under `/clusters/`.
#[derive(Debug)]
pub struct ServedContexts {
    /// The configuration every context starts from (its own context selected, no configured
    /// servers: each context's cluster names its own).
    base: Config,
    /// The kubeconfig's contexts, re-read on every reload.
    list: ArcSwap<ContextList>,
    /// The context the rest of kprox serves, its forwarder and its request counter.
    current: ArcSwap<Current>,
    /// The names of `list`, for routing each request without copying them.
    names: ArcSwap<Vec<String>>,
    set_up: Mutex<HashMap<String, Arc<Slot>>>,
    tasks: Tasks,
    metrics: Arc<Metrics>,
    tunnels: Arc<Tunnels>,
}

/// The current context as served under its own prefix.
#[derive(Debug)]
struct Current {
    name: String,
    forwarder: Forwarder,
    requests: IntCounter,
}

/// One context's set-up: started by its first request, shared by the requests that arrive
/// meanwhile.
#[derive(Debug)]
struct Slot {
    /// The kubeconfig digest it was set up from.
    digest: u64,
    started: Instant,
    ready: tokio::sync::OnceCell<Result<SetUp, String>>,
    /// Ends its background work when the context changes, leaves, or kprox stops.
    stop: CancellationToken,
    requests: IntCounter,
}

#[derive(Debug)]
struct SetUp {
    forwarder: Forwarder,
    upstream: Arc<Upstream>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ServedContexts {
    /// Serves the contexts of the kubeconfig `config` names; `current` is the context already
    /// served (named `current_name`).
    pub fn new(
        config: &Config,
        current_name: &str,
        current: Forwarder,
        tasks: &Tasks,
        metrics: Arc<Metrics>,
        tunnels: Arc<Tunnels>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let list = kprox_auth::contexts(&config.kubeconfig)
            .context("--all-contexts needs a kubeconfig to read the contexts from")?;
        let mut base = config.clone();
        base.upstream.servers.clear();
        base.upstream.discover = false;
        base.kubeconfig.follow_context = false;
        Ok(Self {
            base,
            names: ArcSwap::from_pointee(names_of(&list)),
            list: ArcSwap::from_pointee(list),
            current: ArcSwap::from_pointee(Current {
                name: current_name.to_owned(),
                forwarder: current,
                requests: metrics.context_requests(current_name),
            }),
            set_up: Mutex::new(HashMap::new()),
            tasks: tasks.clone(),
            metrics,
            tunnels,
        })
    }

    /// After the kubeconfig (or the configuration) changed: the contexts are read again, and
    /// every set-up context that changed or left is dropped (its background work ends; a
    /// request in flight on it finishes). `current` is the current context after the reload.
    pub fn refresh(&self, config: &Config, current_name: &str, current: Forwarder) {
        let list = match kprox_auth::contexts(&config.kubeconfig) {
            Ok(list) => list,
            Err(error) => {
                tracing::error!(%error, "the kubeconfig's contexts cannot be read; the contexts served stay as they were");
                return;
            }
        };
        self.current.store(Arc::new(Current {
            name: current_name.to_owned(),
            forwarder: current,
            requests: self.metrics.context_requests(current_name),
        }));
        let mut set_up = self.lock();
        set_up.retain(|name, slot| {
            let keep = list.get(name).is_some_and(|c| c.digest == slot.digest);
            if !keep {
                tracing::info!(context = %name, "context changed or removed in the kubeconfig: its connections close, its next request sets it up anew");
            }
            keep
        });
        drop(set_up);
        self.names.store(Arc::new(names_of(&list)));
        self.list.store(Arc::new(list));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.set_up.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of `name`, created (not yet set up) when there is none or its set-up failed a
    /// while ago.
    fn slot(&self, name: &str, digest: u64) -> Arc<Slot> {
        let mut set_up = self.lock();
        if let Some(slot) = set_up.get(name) {
            let failed = matches!(slot.ready.get(), Some(Err(_)));
            if slot.digest == digest && !(failed && slot.started.elapsed() >= RETRY_FAILED_AFTER) {
                return slot.clone();
            }
        }
        let slot = Arc::new(Slot {
            digest,
            started: Instant::now(),
            ready: tokio::sync::OnceCell::new(),
            stop: self.tasks.child(),
            requests: self.metrics.context_requests(name),
        });
        set_up.insert(name.to_owned(), slot.clone());
        slot
    }

    /// Sets `name` up: the same assembly as start-up, with that context selected.
    async fn set_up(&self, name: &str, stop: &CancellationToken) -> anyhow::Result<SetUp> {
        use anyhow::Context as _;
        let mut config = self.base.clone();
        config.kubeconfig.context = Some(name.to_owned());
        let access = kprox_auth::load(&config.kubeconfig).context("the kubeconfig")?;
        let parts = assemble(&config, &access).await?;
        let (upstream, credentials) =
            crate::wiring::upstream(&config, &access, &parts, &self.metrics)?;
        let forwarder = crate::wiring::forwarder(
            &config,
            &upstream,
            credentials,
            &self.tunnels,
            &self.metrics,
        );
        self.tasks.spawn_until(stop.clone(), upstream.clone().run());
        parts.follow(
            &upstream,
            &self.tasks,
            stop,
            config.kubeconfig.reload_interval.get(),
        );
        tracing::info!(context = %name, servers = ?upstream.endpoint_urls(), "context set up on its first request");
        Ok(SetUp {
            forwarder,
            upstream,
        })
    }

    /// Every context for the status page.
    pub fn status(&self) -> Vec<ContextStatus> {
        let list = self.list.load();
        let current = self.current.load();
        let set_up = self.lock();
        list.contexts
            .iter()
            .map(|entry| {
                let slot = set_up.get(&entry.name);
                let requests = slot.map_or(0, |s| s.requests.get());
                let (state, upstream) = match slot.and_then(|s| s.ready.get()) {
                    _ if entry.name == current.name => ("current".to_owned(), None),
                    Some(Ok(ready)) => ("serving".to_owned(), Some(ready.upstream.clone())),
                    Some(Err(error)) => (format!("failed: {error}"), None),
                    None if slot.is_some() => ("setting up".to_owned(), None),
                    None => ("not used yet".to_owned(), None),
                };
                let views = upstream.map(|u| u.endpoint_views()).unwrap_or_default();
                ContextStatus {
                    name: entry.name.clone(),
                    state,
                    apiservers_up: views.iter().filter(|v| v.up).count(),
                    apiservers: views.len(),
                    requests,
                }
            })
            .collect()
    }
}

impl Contexts for ServedContexts {
    fn names(&self) -> Arc<Vec<String>> {
        self.names.load_full()
    }

    fn forwarder<'a>(
        &'a self,
        context: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Forwarder, ContextRefusal>> + Send + 'a>,
    > {
        Box::pin(async move {
            let Some(digest) = self.list.load().get(context).map(|c| c.digest) else {
                return Err(ContextRefusal {
                    status: StatusCode::NOT_FOUND,
                    message: format!("the kubeconfig has no context {context}"),
                });
            };
            let current = self.current.load();
            if current.name == context {
                current.requests.inc();
                return Ok(current.forwarder.clone());
            }
            let slot = self.slot(context, digest);
            slot.requests.inc();
            let ready = slot
                .ready
                .get_or_init(|| async {
                    self.set_up(context, &slot.stop)
                        .await
                        .map_err(|error| format!("{error:#}"))
                })
                .await;
            match ready {
                Ok(ready) => Ok(ready.forwarder.clone()),
                Err(error) => {
                    tracing::warn!(context, %error, "context cannot be set up");
                    Err(ContextRefusal {
                        status: StatusCode::BAD_GATEWAY,
                        message: format!("kprox cannot reach context {context}: {error}"),
                    })
                }
            }
        })
    }
}

fn names_of(list: &ContextList) -> Vec<String> {
    list.contexts.iter().map(|c| c.name.clone()).collect()
}
