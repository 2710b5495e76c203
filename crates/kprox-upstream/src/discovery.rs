//! Following the apiserver set: the `kubernetes` service's EndpointSlices in `default` list the
//! apiservers' addresses; kprox watches them through its own credentials and replaces its
//! endpoint set when they change. The configured servers seed the set, and the set is never
//! left empty: a slice with no ready address is ignored.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use serde::Deserialize;

use crate::ResponseBody;

/// The answer to a discovery GET: its status and body, or why there is none.
pub(crate) type Answer =
    Pin<Box<dyn Future<Output = Result<(StatusCode, ResponseBody), String>> + Send>>;

/// What discovery needs of the upstream: the narrow seam that keeps this file free of it.
pub(crate) trait DiscoveryTarget: Send + Sync + 'static {
    /// `GET path` with kprox's own credentials.
    fn get(self: Arc<Self>, path: String) -> Answer;
    /// Replaces the set of apiservers.
    fn set_servers(self: Arc<Self>, urls: &[String]) -> Result<(), String>;
}

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes";

#[derive(Deserialize)]
struct SliceList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Slice>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct Slice {
    #[serde(default)]
    endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    ports: Vec<SlicePort>,
}

#[derive(Deserialize)]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Conditions,
}

#[derive(Deserialize, Default)]
struct Conditions {
    /// Unset means ready, as Kubernetes defines it.
    ready: Option<bool>,
}

#[derive(Deserialize)]
struct SlicePort {
    #[serde(default)]
    name: Option<String>,
    port: Option<u16>,
}

/// The apiserver URLs a list of slices names, in a stable order.
fn urls(list: &SliceList) -> Vec<String> {
    let mut urls = Vec::new();
    for slice in &list.items {
        let port = slice
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some("https"))
            .or_else(|| slice.ports.first())
            .and_then(|p| p.port);
        let Some(port) = port else { continue };
        for endpoint in slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.ready != Some(false))
        {
            for address in &endpoint.addresses {
                let host = if address.contains(':') {
                    format!("[{address}]")
                } else {
                    address.clone()
                };
                urls.push(format!("https://{host}:{port}"));
            }
        }
    }
    urls.sort();
    urls.dedup();
    urls
}

async fn list<T: DiscoveryTarget>(upstream: &Arc<T>) -> Result<SliceList, String> {
    let (status, body) = upstream.clone().get(SLICES.to_owned()).await?;
    let bytes: Bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!(
            "listing the kubernetes EndpointSlices answered {status}"
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the EndpointSlice list is not JSON ({e})"))
}

/// Lists and watches the slices until the upstream is dropped.
pub(crate) async fn follow<T: DiscoveryTarget>(upstream: Weak<T>) {
    let mut failures = 0u32;
    loop {
        let Some(strong) = upstream.upgrade() else {
            return;
        };
        let listed = list(&strong).await;
        let resource_version = match listed {
            Ok(list) => {
                failures = 0;
                let found = urls(&list);
                if found.is_empty() {
                    tracing::warn!(
                        "the kubernetes EndpointSlices list no ready apiserver; keeping the current set"
                    );
                } else if let Err(error) = strong.clone().set_servers(&found) {
                    tracing::warn!(%error, "cannot use the discovered apiservers");
                }
                list.metadata.resource_version
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%error, "apiserver discovery failed; keeping the current set and retrying");
                }
                drop(strong);
                tokio::time::sleep(Duration::from_secs(u64::from(failures.min(6)) * 5)).await;
                continue;
            }
        };
        // Watch from the list; any change means: list again.
        let path =
            format!("{SLICES}&watch=1&allowWatchBookmarks=true&resourceVersion={resource_version}");
        if let Ok((status, mut body)) = strong.clone().get(path).await
            && status.is_success()
        {
            drop(strong);
            while let Some(Ok(frame)) = body.frame().await {
                if frame
                    .data_ref()
                    .is_some_and(|d| !d.windows(10).any(|w| w == b"\"BOOKMARK\""))
                {
                    break;
                }
            }
        } else {
            drop(strong);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_addresses_of_the_https_port_become_urls() {
        let list: SliceList = serde_json::from_str(
            r#"{"metadata":{"resourceVersion":"7"},"items":[{"addressType":"IPv4",
                "endpoints":[{"addresses":["10.0.0.2"],"conditions":{"ready":true}},
                             {"addresses":["10.0.0.1"]},
                             {"addresses":["10.0.0.3"],"conditions":{"ready":false}}],
                "ports":[{"name":"https","port":6443,"protocol":"TCP"}]},
               {"addressType":"IPv6","endpoints":[{"addresses":["fd00::1"]}],"ports":[{"name":"https","port":6443}]}]}"#,
        )
        .expect("json");
        assert_eq!(
            urls(&list),
            [
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443",
                "https://[fd00::1]:6443"
            ]
        );
        assert_eq!(list.metadata.resource_version, "7");
    }
}
