//! Discovery documents kubectl reads before anything else: `/version`, `/api`, `/api/v1`,
//! `/apis`, `/apis/{group}[/{version}]`, in the legacy form and the aggregated
//! (apidiscovery.k8s.io/v2) form — all from the type table in [`crate::resource_types`].

use serde_json::{Value, json};

use crate::resource_types::{Resource, group_versions};

/// The content type of an aggregated discovery answer.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The version the fake claims to be.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-kprox-testkit",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// Whether the client asked for aggregated discovery (kubectl does, and falls back).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList")
}

/// `GET /api` in the legacy form.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn verbs(r: Resource) -> Vec<&'static str> {
    if r.review {
        return vec!["create"];
    }
    let mut verbs = vec![
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    if r == Resource::NAMESPACES {
        verbs.retain(|v| *v != "deletecollection");
    }
    verbs
}

/// Subresources of a type: name, kind, verbs.
fn subresources(r: Resource) -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    let status = ("status", r.kind, vec!["get", "patch", "update"]);
    match r.plural {
        "pods" => vec![
            ("attach", "PodAttachOptions", vec!["create", "get"]),
            ("exec", "PodExecOptions", vec!["create", "get"]),
            ("log", "Pod", vec!["get"]),
            (
                "portforward",
                "PodPortForwardOptions",
                vec!["create", "get"],
            ),
            status,
        ],
        "deployments" | "replicasets" => {
            vec![("scale", "Scale", vec!["get", "patch", "update"]), status]
        }
        "namespaces" | "services" | "nodes" => vec![status],
        _ => Vec::new(),
    }
}

fn in_group_version(group: &str, version: &str) -> impl Iterator<Item = Resource> {
    let (group, version) = (group.to_owned(), version.to_owned());
    Resource::all().filter(move |r| r.group == group && r.version == version)
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`: the resources there; `None` if not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in in_group_version(group, version) {
        let mut entry = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                               "kind": r.kind, "verbs": verbs(r)});
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for (sub, kind, verbs) in subresources(r) {
            let mut entry = json!({"name": format!("{}/{sub}", r.plural), "singularName": "",
                                   "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
            if sub == "scale" {
                entry["group"] = json!("autoscaling");
                entry["version"] = json!("v1");
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

fn group_entry(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions.clone(), "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// `GET /apis` in the legacy form.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(group_entry).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`; `None` if not served.
pub fn group(group: &str) -> Option<Value> {
    groups().contains(&group).then(|| {
        let mut entry = group_entry(group);
        entry["kind"] = json!("APIGroup");
        entry["apiVersion"] = json!("v1");
        entry
    })
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| {
            let resources: Vec<Value> = in_group_version(g, v)
                .map(|r| {
                    let subs: Vec<Value> = subresources(r)
                        .into_iter()
                        .map(|(sub, kind, verbs)| {
                            let (sg, sv) = if sub == "scale" { ("autoscaling", "v1") } else { (g, v) };
                            json!({"subresource": sub, "responseKind": {"group": sg, "version": sv, "kind": kind}, "verbs": verbs})
                        })
                        .collect();
                    let mut entry = json!({"resource": r.plural, "singularResource": r.singular,
                           "responseKind": {"group": g, "version": v, "kind": r.kind},
                           "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                           "verbs": verbs(r)});
                    if !r.short_names.is_empty() {
                        entry["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        entry["categories"] = json!(r.categories);
                    }
                    if !subs.is_empty() {
                        entry["subresources"] = json!(subs);
                    }
                    entry
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// `GET /api` in the aggregated form.
pub fn aggregated_core() -> Value {
    json!({
        "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
        "items": [aggregated_group("")]
    })
}

/// `GET /apis` in the aggregated form.
pub fn aggregated_groups() -> Value {
    let items: Vec<Value> = groups().into_iter().map(aggregated_group).collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_type_is_discoverable() {
        let core = resource_list("", "v1").expect("core");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for name in [
            "pods",
            "pods/log",
            "configmaps",
            "secrets",
            "events",
            "namespaces",
            "nodes",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        let apps = resource_list("apps", "v1").expect("apps");
        assert_eq!(apps["groupVersion"], "apps/v1");
        assert!(resource_list("batch", "v1").is_none());
        let listed: Vec<Value> = group_list()["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(listed.iter().any(|g| g["name"] == "authorization.k8s.io"));
        assert!(group("apps").is_some() && group("batch").is_none());
        assert_eq!(
            aggregated_groups()["items"].as_array().map(Vec::len),
            Some(listed.len())
        );
    }
}
