//! `fake-apiserver`: runs the testkit's fake Kubernetes apiserver until interrupted, and writes a
//! kubeconfig that reaches it. For manual testing and benchmarks.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use kprox_testkit::{FakeApiServer, FakeOptions, KubeconfigBuilder};

/// A fake Kubernetes apiserver on a loopback address.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Loopback address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port (0 picks one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Bearer token to accept (a client certificate from the kubeconfig is accepted too).
    #[arg(long, default_value = "fake-token")]
    token: String,
    /// Write a kubeconfig reaching this server (with the token) to this file.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    plain: bool,
    /// Only HTTP/1.1 (no h2 in ALPN).
    #[arg(long)]
    http1_only: bool,
    /// Pods to create in the default namespace.
    #[arg(long, default_value_t = 3)]
    pods: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = FakeApiServer::start(FakeOptions {
        ip: args.ip,
        port: args.port,
        tls: !args.plain,
        http2: !args.http1_only,
        tokens: vec![args.token.clone()],
        ..Default::default()
    })
    .await?;
    for i in 0..args.pods {
        server.store().add_pod("default", &format!("pod-{i}"))?;
    }
    if let Some(path) = &args.kubeconfig {
        KubeconfigBuilder::new()
            .cluster("fake", &server.url(), &server.ca_pem())
            .user_token("fake-user", &args.token)
            .context("fake", "fake", "fake-user")
            .current("fake")
            .write(path)?;
    }
    println!("fake apiserver serving on {}", server.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
