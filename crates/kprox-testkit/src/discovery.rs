//! Discovery documents kubectl reads before anything else: `/version`, `/api`, `/api/v1`,
//! `/apis`, in the legacy form and the aggregated (apidiscovery.k8s.io/v2) form.

use serde_json::{Value, json};

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

/// `GET /apis` in the legacy form: no groups beyond the core one.
pub fn group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
}

struct ResourceInfo {
    name: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    verbs: &'static [&'static str],
}

const VERBS: &[&str] = &["create", "delete", "get", "list", "update", "watch"];

const RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        name: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
        verbs: VERBS,
    },
    ResourceInfo {
        name: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
        verbs: VERBS,
    },
    ResourceInfo {
        name: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short: &["po"],
        verbs: VERBS,
    },
];

/// `GET /api/v1`: the core resources.
pub fn core_v1_resources() -> Value {
    let mut resources: Vec<Value> = RESOURCES
        .iter()
        .map(|r| {
            json!({"name": r.name, "singularName": r.singular, "namespaced": r.namespaced,
                   "kind": r.kind, "verbs": r.verbs, "shortNames": r.short})
        })
        .collect();
    for sub in ["exec", "attach", "portforward", "log"] {
        resources.push(json!({"name": format!("pods/{sub}"), "singularName": "", "namespaced": true,
                              "kind": if sub == "log" { "Pod" } else { "PodExecOptions" },
                              "verbs": if sub == "log" { vec!["get"] } else { vec!["create", "get"] }}));
    }
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
}

/// `GET /api` in the aggregated form.
pub fn aggregated_core() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|r| {
            json!({"resource": r.name, "singularResource": r.singular,
                   "responseKind": {"group": "", "version": "v1", "kind": r.kind},
                   "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                   "shortNames": r.short, "verbs": r.verbs})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
        "items": [{"metadata": {"creationTimestamp": null},
                   "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}]}]
    })
}

/// `GET /apis` in the aggregated form: no groups.
pub fn aggregated_groups() -> Value {
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": []})
}
