//! `kprox [flags]`: load config and kubeconfig, assemble and build the stack, print the
//! startup line that scripts parse, serve until SIGINT or SIGTERM, then shut down in order
//! under one [`Lifecycle`]. Every background task of the process starts here, from the
//! lifecycle's handle, and none from a constructor.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use kprox_config::Config;
use kprox_listener::Workers;
use tokio_util::sync::CancellationToken;

use crate::admin_status::LiveAdmin;
use crate::assembly::assemble;
use crate::cli::ProxyFlags;
use crate::contexts::ServedContexts;
use crate::lifecycle::Lifecycle;
use crate::live_reload::Reloader;
use crate::wiring;

/// Runs the proxy with `config`, loaded from `flags` (which live reload loads again).
/// Connections are served on `workers` (`runtimes.rs`).
pub async fn run(
    flags: &ProxyFlags,
    config: anyhow::Result<Config>,
    workers: Arc<Workers>,
) -> anyhow::Result<()> {
    let config = config?;
    kprox_telemetry::init_logging(&config.log)?;
    let access = kprox_auth::load(&config.kubeconfig)?;
    serve_then(&config, &access, Some(flags), workers, |_| {}).await
}

/// Assembles and builds the stack for `access`, binds, announces and serves until a signal,
/// calling `on_serving` with the bound address once the startup line is out. Reloads from
/// `reload_with` when given. Connections are served on `workers`.
pub async fn serve_then(
    config: &Config,
    access: &kprox_auth::ClusterAccess,
    reload_with: Option<&ProxyFlags>,
    workers: Arc<Workers>,
    on_serving: impl FnOnce(&str),
) -> anyhow::Result<()> {
    // Bound first: a busy address is the likeliest start-up failure, and it is reported
    // before any work (or log line) of the stack's.
    let listener = wiring::bind(config).await?;
    let admin = wiring::bind_admin(config).await?;
    let passthrough = wiring::bind_passthrough(config).await?;
    let parts = assemble(config, access).await?;
    let mut stack = wiring::build(config, access, &parts).await?;
    tracing::info!(worker_threads = workers.len().max(1), "runtime ready");
    stack.serve_settings.workers = workers.clone();
    if config.filter.disable {
        tracing::warn!(
            "request filter is disabled, this is dangerous: any web page you visit can use your cluster credentials (XSRF)"
        );
    }
    let lifecycle = Lifecycle::default();
    let tasks = lifecycle.tasks();
    let stopping = tasks.stopping();
    let shutdown = shutdown_signal()?;
    // Registered before the startup line so that SIGHUP never kills kprox.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // Health checks, idle sweeps and discovery, until shutdown.
    tasks.spawn(stack.upstream.clone().run());
    let contexts = if config.kubeconfig.all_contexts {
        let contexts = Arc::new(ServedContexts::new(
            config,
            &access.context,
            stack.pipeline.forwarder().clone(),
            &tasks,
            stack.metrics.clone(),
            stack.tunnels.clone(),
        )?);
        stack.pipeline.serve_contexts(contexts.clone());
        tracing::info!(contexts = %kprox_listener::Contexts::names(&*contexts).join(", "), current = %access.context, "serving every kubeconfig context under /clusters/<context>/");
        Some(contexts)
    } else {
        None
    };
    // The client token file (`listen.client_token_file`) is re-read like kprox's own.
    if let Some(refresh) = stack.client_token.as_ref().and_then(|t| t.keep_fresh()) {
        tasks.spawn(refresh);
    }
    let reloader = Reloader::start(
        reload_with,
        config,
        access,
        parts,
        &stack,
        &tasks,
        contexts.clone(),
    );
    if reload_with.is_some() {
        tasks.spawn(reloader.run(hangup));
    }
    // The admin listener keeps answering (503 on /readyz) until the proxy has drained.
    let admin_stop = CancellationToken::new();
    if let Some(admin) = admin {
        let address = admin.local_addr()?;
        let source = Arc::new(LiveAdmin {
            upstream: stack.upstream.clone(),
            credentials: stack.credentials.clone(),
            client_token: stack.client_token.clone(),
            tunnels: stack.tunnels.clone(),
            contexts,
            listening_on: listener.describe(),
            started: std::time::Instant::now(),
            shutting_down: stopping.clone(),
        });
        tasks.spawn_to_end(kprox_telemetry::admin::serve(
            admin,
            stack.metrics.clone(),
            source,
            admin_stop.clone().cancelled_owned(),
        ));
        // On stderr, so stdout keeps kubectl proxy's single startup line.
        eprintln!("Admin listener on http://{address} (status page, /metrics, /livez, /readyz)");
    }
    // Pass-through connections close with the tunnels, once the proxy has drained.
    let passthrough_close = CancellationToken::new();
    if let Some(passthrough) = passthrough {
        let address = passthrough.local_addr()?;
        tasks.spawn_to_end(kprox_listener::serve_passthrough(
            passthrough,
            stack.upstream.clone(),
            kprox_listener::PassthroughSettings {
                close_on_ejection: config.passthrough.close_on_ejection,
            },
            workers.clone(),
            stopping.clone().cancelled_owned(),
            passthrough_close.clone().cancelled_owned(),
        ));
        eprintln!("TCP pass-through on {address} (TLS untouched, to a healthy apiserver)");
        tracing::info!(%address, "TCP pass-through listening");
    }
    {
        let stopping = stopping.clone();
        tasks.spawn(async move {
            shutdown.await;
            crate::systemd::stopping();
            stopping.cancel();
        });
    }
    // kubectl proxy's exact line; scripts parse it to learn the port.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "Starting to serve on {}", listener.describe())?;
    stdout.flush()?;
    on_serving(&listener.describe());
    // Ready for systemd once kprox has heard from an apiserver (or given up waiting for one:
    // a desktop session must not hang on an unreachable cluster).
    {
        let upstream = stack.upstream.clone();
        let address = listener.describe();
        tasks.spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !upstream.heard_from_an_apiserver() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            crate::systemd::ready(&format!("serving on {address}"));
        });
        crate::systemd::start_watchdog();
    }
    drop(tasks);
    tracing::info!(address = %listener.describe(), "serving");
    // Stops accepting at the signal, drains requests in flight (ending watches) within the
    // grace period.
    kprox_listener::serve(
        listener,
        stack.pipeline.clone(),
        stack.serve_settings,
        stopping.cancelled_owned(),
    )
    .await;
    stack.pipeline.forwarder().tunnels().close_all();
    passthrough_close.cancel();
    admin_stop.cancel();
    if let Some(path) = &config.listen.unix_socket {
        let _ = std::fs::remove_file(path);
    }
    lifecycle.stop();
    if tokio::time::timeout(Duration::from_secs(5), lifecycle.finished())
        .await
        .is_err()
    {
        tracing::warn!("stopped with background work still running after 5 s");
    } else {
        tracing::info!("stopped: every background task finished");
    }
    Ok(())
}

/// Registers for SIGINT and SIGTERM now (so a signal right after the startup line is not
/// lost) and returns a future that resolves on the first of them.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}
