//! `kprox demo`: three simulated apiservers (one cluster, one CA) on 127.0.0.1-3 and kprox in
//! front of them on the usual port, so a newcomer can try kprox with curl and kubectl without a
//! cluster.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context as _;
use kprox_config::Config;
use kprox_testkit::{FakeApiServer, FakeCluster, FakeOptions};

use crate::run::serve_then;

const DEMO_TOKEN: &str = "kprox-demo-token";

/// Runs the demo until interrupted.
pub async fn run(
    config: anyhow::Result<Config>,
    workers: std::sync::Arc<kprox_listener::Workers>,
) -> anyhow::Result<()> {
    // One cluster: three apiservers over one store, as over one etcd.
    let cluster = FakeCluster::start(3, DEMO_TOKEN, |n| FakeOptions {
        ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, u8::try_from(n + 1).unwrap_or(1))),
        ..Default::default()
    })
    .await
    .context("starting the simulated apiservers")?;
    // A node, a deployment with its pods, a service, events — and the controllers that keep
    // them alive while the demo runs.
    kprox_testkit::workloads::seed(&cluster.store)?;
    let controllers = tokio::spawn(kprox_testkit::workloads::run(cluster.store.clone()));
    let dir = tempfile::Builder::new().prefix("kprox-demo-").tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig("demo", &kubeconfig)?;
    let servers = &cluster.servers;

    let mut config = config?;
    kprox_telemetry::init_logging(&config.log)?;
    config.kubeconfig.path = Some(kubeconfig.clone());
    config.kubeconfig.context = None;
    if config.upstream.servers.is_empty() {
        config.upstream.servers = servers.iter().map(FakeApiServer::url).collect();
    }
    let access = kprox_auth::load(&config.kubeconfig)?;
    let upstreams = config.upstream.servers.join(", ");
    let served = serve_then(&config, &access, None, workers, |address| {
        let base = if address.starts_with('/') {
            format!("--unix-socket {address} http://localhost")
        } else {
            format!("http://{address}")
        };
        eprintln!("kprox demo: simulated apiservers at {upstreams}");
        eprintln!("try, in another terminal:");
        eprintln!("  curl {base}/version");
        eprintln!("  curl {base}/api/v1/namespaces/default/pods");
        eprintln!("  curl -N '{base}/api/v1/namespaces/default/pods?watch=1'");
        if !address.starts_with('/') {
            eprintln!("  kubectl --server {base} get pods");
            eprintln!(
                "  kubectl --server {base} create configmap hello --from-literal=greeting=hi"
            );
            eprintln!("  kubectl --server {base} logs -f deployment/web");
            eprintln!(
                "  kubectl --server {base} exec db-0 -- echo hi   (refused unless kprox runs with --reject-paths '^$', as with kubectl proxy)"
            );
        }
        eprintln!("stop with Ctrl-C");
    })
    .await;
    controllers.abort();
    served
}
