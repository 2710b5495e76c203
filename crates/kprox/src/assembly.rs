//! What a configuration and a cluster's access decide, computed in one place for start-up and
//! for every reload: the apiservers, the credentials, where TLS material comes from, and the
//! request filter. Start-up builds the running stack from these parts (wiring.rs); a reload
//! assembles new parts and applies them whole, or refuses them whole (live_reload.rs). No step
//! of start-up has a second copy.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context as _;
use kprox_auth::{ClusterAccess, CredentialSpec, Credentials};
use kprox_config::{ClientCredentials, Config};
use kprox_listener::Filter;

use kprox_upstream::Upstream;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::Tasks;
use crate::tls_source::TlsSource;

/// The parts, checked and loaded, not yet in use.
#[derive(Debug)]
pub struct Parts {
    /// The apiserver URLs, each one parsed.
    pub servers: Vec<String>,
    pub credentials: Credentials,
    /// `None` when the apiservers are plain `http://` (no TLS, and no credentials).
    pub tls: Option<TlsSource>,
    pub filter: Filter,
}

impl Parts {
    /// Keeps the parts in use live until `until` is cancelled: the credential refreshed (token
    /// file re-read, exec plugin run ahead of expiry) and the TLS files and exec-plugin
    /// certificates followed (every `every`), each a task of the lifecycle.
    pub fn follow(
        self,
        upstream: &Arc<Upstream>,
        tasks: &Tasks,
        until: &CancellationToken,
        every: std::time::Duration,
    ) {
        if let Some(refresh) = self.credentials.keep_fresh() {
            tasks.spawn_until(until.clone(), refresh);
        }
        if let Some(tls) = self.tls {
            let follow = tls.follow(upstream.clone(), every, until.clone());
            tasks.spawn_until(until.clone(), follow);
        }
    }
}

/// The apiserver URLs: configured ones, else the kubeconfig cluster's server.
pub fn servers(config: &Config, access: &ClusterAccess) -> Vec<String> {
    if config.upstream.servers.is_empty() {
        vec![access.server.clone()]
    } else {
        config.upstream.servers.clone()
    }
}

/// Assembles the parts for `config` and `access`: loads the credentials (an exec plugin runs),
/// compiles the filter and checks every apiserver URL and the TLS material.
pub async fn assemble(config: &Config, access: &ClusterAccess) -> anyhow::Result<Parts> {
    let servers = servers(config, access);
    for server in &servers {
        kprox_upstream::Endpoint::parse(server).with_context(|| format!("apiserver {server}"))?;
    }
    let plain_http = servers.iter().any(|s| s.starts_with("http://"));
    if access.trust.insecure {
        tracing::warn!(
            cluster = %access.cluster,
            "insecure-skip-tls-verify is set: the apiserver's identity is NOT verified and anyone on the network path can read and change your traffic, credentials included"
        );
    }
    // Credentials never travel in clear text.
    let credentials = if plain_http {
        if !matches!(access.credential, CredentialSpec::None) || access.identity.is_some() {
            tracing::warn!(
                "the apiserver URL is plain http://: kprox will not send credentials to it"
            );
        }
        Credentials::none()
    } else {
        Credentials::load(&access.credential)
            .await
            .context("loading credentials")?
            .with_impersonation(&access.impersonation)?
    };
    let forward = config.listen.client_credentials == ClientCredentials::Forward;
    if forward {
        if config.upstream.discover && matches!(access.credential, CredentialSpec::None) {
            anyhow::bail!(
                "upstream.discover with listen.client_credentials = forward needs a bearer token for kprox's own requests: kprox presents no client certificate of its own in forward mode (it would win over clients' tokens); fix: give the kubeconfig user a token, or turn discovery off"
            );
        }
        tracing::info!(
            "client credentials are forwarded: each client's own Authorization reaches the apiserver, kprox adds neither its token nor its client certificate; kprox's credentials serve only its health checks and discovery"
        );
    }
    let tls = (!plain_http).then(|| TlsSource::new(access, &credentials, !forward));
    if let Some(tls) = &tls {
        tls.settings()
            .map_err(|e| anyhow::anyhow!("TLS material: {e}"))?;
    }
    tracing::info!(
        context = %access.context, cluster = %access.cluster, user = %access.user,
        credential = credentials.describe(),
        client_certificate = !forward && (access.identity.is_some() || credentials.client_identity().is_some()),
        impersonating = credentials.impersonating(),
        servers = ?servers, "upstream selected"
    );
    if config.filter.pass_client_credentials {
        tracing::warn!(
            "pass-client-credentials is on: clients' own Authorization and Impersonate-* headers reach the apiserver"
        );
    }
    Ok(Parts {
        servers,
        credentials,
        tls,
        filter: filter(config)?,
    })
}

/// The request filter: the configured one, and a pod IP the listener is bound to accepted as a
/// Host (clients name it, and it cannot be the name of a web page's origin).
fn filter(config: &Config) -> anyhow::Result<Filter> {
    let mut filter = Filter::new(&config.filter).context("compiling the filters")?;
    let address = config.listen.address;
    if config.listen.unix_socket.is_none() && !address.is_loopback() && !address.is_unspecified() {
        let host = match address {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        filter.accept_host_exactly(&host);
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(filter: &Filter, host: &str) -> bool {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, host.parse().expect("host"));
        filter
            .check(&http::Method::GET, "/api", &headers, None, false)
            .is_ok()
    }

    #[test]
    fn a_pod_ip_listener_accepts_its_ip_as_host_and_loopback_adds_nothing() {
        let mut config = kprox_config::load(&kprox_config::Sources {
            file: None,
            environment: false,
            flags: kprox_config::raw::RawConfig::default(),
        })
        .expect("defaults");
        config.listen.address = "10.244.0.7".parse().expect("ip");
        assert!(accepts(
            &filter(&config).expect("filter"),
            "10.244.0.7:8001"
        ));
        config.listen.address = "127.0.0.1".parse().expect("ip");
        assert!(!accepts(
            &filter(&config).expect("filter"),
            "10.244.0.7:8001"
        ));
        assert!(accepts(&filter(&config).expect("filter"), "localhost:8001"));
    }
}
