//! Several fake apiservers that act as one cluster: one CA, one store (one etcd), one token,
//! and a kubeconfig that reaches them — the fixture of failover tests, the soak and the
//! convergence checker.

use std::path::Path;
use std::sync::Arc;

use crate::{FakeApiServer, FakeOptions, KubeconfigBuilder, Store, TestPki};

/// Apiservers of one cluster.
#[derive(Debug)]
pub struct FakeCluster {
    pub servers: Vec<FakeApiServer>,
    pub store: Arc<Store>,
    pub pki: Arc<TestPki>,
    token: String,
}

impl FakeCluster {
    /// Starts `replicas` apiservers sharing a new CA and store and accepting `token`;
    /// `options(i)` gives each its own options (the CA, store, token and a name are set here).
    pub async fn start(
        replicas: usize,
        token: &str,
        options: impl Fn(usize) -> FakeOptions,
    ) -> anyhow::Result<Self> {
        Self::start_with(replicas, token, options, false).await
    }

    /// Like [`FakeCluster::start`], every apiserver on the first one's port, as a real control
    /// plane's are (each on its own address, which `options` must give).
    pub async fn start_on_one_port(
        replicas: usize,
        token: &str,
        options: impl Fn(usize) -> FakeOptions,
    ) -> anyhow::Result<Self> {
        Self::start_with(replicas, token, options, true).await
    }

    async fn start_with(
        replicas: usize,
        token: &str,
        options: impl Fn(usize) -> FakeOptions,
        one_port: bool,
    ) -> anyhow::Result<Self> {
        let pki = Arc::new(TestPki::new("fake-cluster-ca")?);
        let store = Arc::new(Store::new());
        let mut servers: Vec<FakeApiServer> = Vec::with_capacity(replicas);
        for i in 0..replicas {
            let defaults = options(i);
            let port = match servers.first() {
                Some(first) if one_port => first.addr().port(),
                _ => defaults.port,
            };
            servers.push(
                FakeApiServer::start(FakeOptions {
                    port,
                    tokens: vec![token.to_owned()],
                    pki: Some(pki.clone()),
                    store: Some(store.clone()),
                    name: format!("apiserver-{i}"),
                    ..defaults
                })
                .await?,
            );
        }
        Ok(Self {
            servers,
            store,
            pki,
            token: token.to_owned(),
        })
    }

    /// The servers' URLs joined by commas, as `kprox --server` takes them.
    pub fn server_list(&self) -> String {
        self.servers
            .iter()
            .map(FakeApiServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Writes a kubeconfig (context `NAME`, the first server, the token) to `path`.
    pub fn write_kubeconfig(&self, name: &str, path: &Path) -> anyhow::Result<()> {
        let first = self
            .servers
            .first()
            .ok_or_else(|| anyhow::anyhow!("a cluster without apiservers"))?;
        KubeconfigBuilder::new()
            .cluster(name, &first.url(), &self.pki.ca_pem())
            .user_token(name, &self.token)
            .context(name, name, name)
            .current(name)
            .write(path)?;
        Ok(())
    }
}
