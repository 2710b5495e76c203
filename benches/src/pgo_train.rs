//! The training run of kprox's profile-guided build (scripts/build-release): a kprox built with
//! `-Cprofile-generate` serves the traffic it is built for — small requests on one and on many
//! connections, 1 MiB lists, writes, watches that receive events, TLS pass-through — against
//! the fake apiserver, and is then stopped with SIGTERM so it writes its profile as it exits.
//!
//! The mix, not the figures, is what matters here: code the run never reaches is built for size
//! and kept apart, so a path users take belongs in it. Every part must succeed, or the profile
//! would describe a kprox that answered errors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kprox_testkit::Resource;

use crate::load::{self, Target, Window};
use crate::subject::{Launch, Subject};
use crate::{TOKEN, apiserver_and_kubeconfig, tls_config, watches, workloads};

/// What the training run served.
#[derive(Debug, Default)]
pub struct Trained {
    /// Requests answered, over every workload.
    pub requests: u64,
    /// Watches that received an event.
    pub watches: usize,
}

/// Runs the training traffic through the kprox at `kprox` for about `seconds_per_part` per
/// part, then stops it; an error when any part fails or kprox does not exit cleanly.
pub async fn train(kprox: &Path, seconds_per_part: f64) -> anyhow::Result<Trained> {
    let (server, _dir, kubeconfig) = apiserver_and_kubeconfig("pgo-training-apiserver").await?;
    let passthrough_address = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    );
    let subject = Subject::kprox_with(
        kprox,
        &kubeconfig,
        &["--tcp-passthrough", &passthrough_address],
        &Launch::default(),
    )?;
    let proxied = Target::Plain(subject.address);
    let window = Window {
        warmup: Duration::ZERO,
        measure: Duration::from_secs_f64(seconds_per_part),
        at_least_per_connection: 1,
    };

    let mut trained = Trained::default();
    for workload in workloads() {
        let sample = load::drive(&proxied, &workload.spec, workload.connections, window).await?;
        anyhow::ensure!(
            sample.errors == 0 && sample.requests > 0,
            "{}: {} answered, {} failed",
            workload.name,
            sample.requests,
            sample.errors
        );
        trained.requests += sample.requests;
    }

    let passthrough = Target::Tls {
        addr: passthrough_address.parse()?,
        config: Arc::new(tls_config(&server)?),
        token: TOKEN.to_owned(),
    };
    let small = &workloads()[0];
    let sample = load::drive(&passthrough, &small.spec, 4, window).await?;
    anyhow::ensure!(
        sample.errors == 0 && sample.requests > 0,
        "TCP pass-through: {} answered, {} failed",
        sample.requests,
        sample.errors
    );
    trained.requests += sample.requests;

    let open = watches::open(&proxied, 200, 50).await?;
    server.store().create(
        Resource::CONFIG_MAPS,
        "default",
        serde_json::json!({"metadata": {"name": "pgo-training-event"}, "data": {"a": "b"}}),
    )?;
    trained.watches = open.wait_for(open.opened, Duration::from_secs(30)).await;
    anyhow::ensure!(
        trained.watches == open.opened,
        "{} of {} watches received the event",
        trained.watches,
        open.opened
    );
    drop(open);

    let status =
        tokio::task::spawn_blocking(move || subject.terminate(Duration::from_secs(30))).await??;
    anyhow::ensure!(status.success(), "kprox exited with {status} after SIGTERM");
    Ok(trained)
}
