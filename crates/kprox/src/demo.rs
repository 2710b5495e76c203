//! `kprox demo`: three simulated apiservers (one cluster, one CA) on 127.0.0.1-3 and kprox in
//! front of them on the usual port, so a newcomer can try kprox with curl and kubectl without a
//! cluster.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::Context as _;
use kprox_config::Config;
use kprox_testkit::{FakeApiServer, FakeOptions, KubeconfigBuilder, Store, TestPki};

use crate::run::serve_then;

const DEMO_TOKEN: &str = "kprox-demo-token";

/// Runs the demo until interrupted.
pub async fn run(config: anyhow::Result<Config>) -> anyhow::Result<()> {
    let pki = Arc::new(TestPki::new("kprox-demo-ca")?);
    // One cluster: three apiservers over one store, as over one etcd.
    let store = Arc::new(Store::new());
    for pod in ["web-0", "web-1", "db-0"] {
        store.add_pod("default", pod)?;
    }
    let mut servers = Vec::new();
    for n in 1..=3u8 {
        let server = FakeApiServer::start(FakeOptions {
            ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)),
            tokens: vec![DEMO_TOKEN.to_owned()],
            pki: Some(pki.clone()),
            store: Some(store.clone()),
            name: format!("demo-apiserver-{n}"),
            ..Default::default()
        })
        .await
        .with_context(|| format!("starting simulated apiserver {n}"))?;
        servers.push(server);
    }
    let dir = tempfile::Builder::new().prefix("kprox-demo-").tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    KubeconfigBuilder::new()
        .cluster("demo", &servers[0].url(), &pki.ca_pem())
        .user_token("demo", DEMO_TOKEN)
        .context("demo", "demo", "demo")
        .current("demo")
        .write(&kubeconfig)?;

    let mut config = config?;
    kprox_telemetry::init_logging(&config.log)?;
    config.kubeconfig.path = Some(kubeconfig.clone());
    config.kubeconfig.context = None;
    if config.upstream.servers.is_empty() {
        config.upstream.servers = servers.iter().map(FakeApiServer::url).collect();
    }
    let access = kprox_auth::load(&config.kubeconfig)?;
    let upstreams = config.upstream.servers.join(", ");
    serve_then(&config, &access, None, |address| {
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
        }
        eprintln!("stop with Ctrl-C");
    })
    .await
}
