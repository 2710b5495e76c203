//! `kprox [flags]`: load config and kubeconfig, build the stack, print the startup line that
//! scripts parse, serve until SIGINT or SIGTERM.

use std::io::Write as _;

use std::sync::Arc;

use kprox_config::{Config, Sources};

use crate::status::LiveStatus;

use crate::cli::ProxyFlags;
use crate::wiring;

/// Loads the layered configuration for these flags.
pub fn load_config(flags: &ProxyFlags) -> anyhow::Result<Config> {
    Ok(kprox_config::load(&Sources {
        file: flags.config.as_deref(),
        environment: true,
        flags: flags.to_raw(),
    })?)
}

/// Runs the proxy with `config`, loaded from `flags` (which live reload loads again).
pub async fn run(flags: &ProxyFlags, config: anyhow::Result<Config>) -> anyhow::Result<()> {
    let config = config?;
    kprox_telemetry::init_logging(&config.log)?;
    let access = kprox_auth::load(&config.kubeconfig)?;
    serve_then(&config, &access, Some(flags), |_| {}).await
}

/// Builds the stack for `access`, binds, announces and serves until a signal.
/// Like [`serve`], calling `on_serving` with the bound address once the startup line is out.
pub async fn serve_then(
    config: &Config,
    access: &kprox_auth::ClusterAccess,
    reload_with: Option<&crate::cli::ProxyFlags>,
    on_serving: impl FnOnce(&str),
) -> anyhow::Result<()> {
    // Bound first: a busy address is the likeliest start-up failure, and it is reported
    // before any work (or log line) of the stack's.
    let listener = wiring::bind(config).await?;
    let admin = wiring::bind_admin(config).await?;
    let stack = wiring::build(config, access).await?;
    tracing::info!(
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "runtime ready"
    );
    if config.filter.disable {
        tracing::warn!(
            "request filter is disabled, this is dangerous: any web page you visit can use your cluster credentials (XSRF)"
        );
    }
    let shutdown = shutdown_signal()?;
    // Registered before the startup line so that SIGHUP never kills kprox.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    if let Some(flags) = reload_with {
        tokio::spawn(crate::live_reload::Reloader::new(flags, config, access, &stack).run(hangup));
    }
    let shutting_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One signal stops both listeners; the admin listener keeps answering (503 on /readyz)
    // until the proxy has drained.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
    let when_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    if let Some(admin) = admin {
        let address = admin.local_addr()?;
        let source = Arc::new(LiveStatus {
            upstream: stack.upstream.clone(),
            credentials: stack.credentials_handle.clone(),
            client_token: stack.client_token.clone(),
            tunnels: stack.tunnels.clone(),
            listening_on: listener.describe(),
            started: std::time::Instant::now(),
            shutting_down: shutting_down.clone(),
        });
        tokio::spawn(kprox_telemetry::admin::serve(
            admin,
            stack.metrics.clone(),
            source,
            when_stopped(admin_stopped),
        ));
        // On stderr, so stdout keeps kubectl proxy's single startup line.
        eprintln!("Admin listener on http://{address} (status page, /metrics, /livez, /readyz)");
    }
    {
        let shutting_down = shutting_down.clone();
        tokio::spawn(async move {
            shutdown.await;
            crate::systemd::stopping();
            shutting_down.store(true, std::sync::atomic::Ordering::Relaxed);
            stop.send_replace(true);
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
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while !upstream.heard_from_an_apiserver() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            crate::systemd::ready(&format!("serving on {address}"));
        });
        crate::systemd::start_watchdog();
    }
    tracing::info!(address = %listener.describe(), "serving");
    kprox_listener::serve(
        listener,
        stack.pipeline.clone(),
        stack.serve_settings,
        when_stopped(stopped),
    )
    .await;
    stack.pipeline.forwarder().tunnels().close_all();
    stop_admin.send_replace(true);
    if let Some(path) = &config.listen.unix_socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
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
