//! Which object a resource URL names, for every type in [`crate::resource_types`]:
//! `/api/v1/{plural}`, `/api/v1/{plural}/{name}[/{sub}]` (cluster-scoped),
//! `/api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]`, the same under `/apis/{group}/{version}`,
//! and the legacy watch form (`/api/v1/watch/...`, ruby kubeclient's). Trailing slashes are
//! ignored, as the apiserver's router ignores them.

use crate::store::Resource;

/// A resource URL's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource: Resource,
    /// Empty for cluster-scoped types and for lists across all namespaces.
    pub namespace: String,
    pub name: Option<String>,
    /// `status`, `scale`, `log`, … after the name.
    pub subresource: Option<String>,
    /// Named by the legacy watch form.
    pub watch: bool,
}

impl Target {
    /// Parses a path; `None` if it names nothing served.
    pub fn parse(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        let (group, rest) = if let Some(rest) = path.strip_prefix("/api/") {
            ("", rest)
        } else {
            let rest = path.strip_prefix("/apis/")?;
            rest.split_once('/')?
        };
        let (version, rest) = rest.split_once('/')?;
        let mut parts: Vec<&str> = rest.split('/').collect();
        let watch = parts.first() == Some(&"watch");
        if watch {
            parts.remove(0);
        }
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let find = |plural: &str| Resource::find(group, version, plural);
        let namespaced_type = |plural: &str| find(plural).filter(|r| r.namespaced());
        let cluster_type = |plural: &str| find(plural).filter(|r| !r.namespaced());
        let target =
            |resource: Resource, namespace: &str, name: Option<&str>, sub: Option<&str>| Self {
                resource,
                namespace: namespace.to_owned(),
                name: name.map(str::to_owned),
                subresource: sub.map(str::to_owned),
                watch,
            };
        let parsed = match parts.as_slice() {
            // A namespace's own collection, or something in one.
            ["namespaces", ns, plural, rest @ ..] if namespaced_type(plural).is_some() => {
                let resource = namespaced_type(plural)?;
                match rest {
                    [] => target(resource, ns, None, None),
                    [name] => target(resource, ns, Some(name), None),
                    [name, sub] => target(resource, ns, Some(name), Some(sub)),
                    _ => return None,
                }
            }
            // Every namespace's objects of a namespaced type.
            [plural] => target(find(plural)?, "", None, None),
            [plural, name] => target(cluster_type(plural)?, "", Some(name), None),
            [plural, name, sub] => target(cluster_type(plural)?, "", Some(name), Some(sub)),
            _ => return None,
        };
        if parsed.watch && parsed.subresource.is_some() {
            return None;
        }
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parts = (Resource, String, Option<String>, Option<String>, bool);

    fn parse(path: &str) -> Option<Parts> {
        Target::parse(path).map(|t| (t.resource, t.namespace, t.name, t.subresource, t.watch))
    }

    #[test]
    fn paths_of_every_shape() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            parse("/api/v1/namespaces/default/pods/web-0/log"),
            Some((
                Resource::PODS,
                "default".into(),
                some("web-0"),
                some("log"),
                false
            ))
        );
        assert_eq!(
            parse("/apis/apps/v1/namespaces/default/deployments/"),
            Some((Resource::DEPLOYMENTS, "default".into(), None, None, false))
        );
        assert_eq!(
            parse("/api/v1/namespaces/kube-system"),
            Some((
                Resource::NAMESPACES,
                String::new(),
                some("kube-system"),
                None,
                false
            ))
        );
        assert_eq!(
            parse("/api/v1/namespaces/kube-system/status"),
            Some((
                Resource::NAMESPACES,
                String::new(),
                some("kube-system"),
                some("status"),
                false
            ))
        );
        assert_eq!(
            parse("/api/v1/watch/namespaces/default/configmaps"),
            Some((Resource::CONFIG_MAPS, "default".into(), None, None, true))
        );
        assert_eq!(
            parse("/api/v1/pods"),
            Some((Resource::PODS, String::new(), None, None, false))
        );
        assert_eq!(
            parse("/api/v1/pods/web-0"),
            None,
            "a namespaced type needs its namespace"
        );
        assert_eq!(
            parse("/apis/apps/v1/namespaces/default/pods"),
            None,
            "pods are core"
        );
        assert_eq!(parse("/api/v1/namespaces/default/pods//x"), None);
        assert_eq!(parse("/api/v2/pods"), None);
        assert_eq!(
            parse("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"),
            Some((
                Resource::ENDPOINT_SLICES,
                "default".into(),
                some("kubernetes"),
                None,
                false
            ))
        );
    }
}
