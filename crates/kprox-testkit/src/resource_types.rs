//! The resource types the fake serves, one entry each: where they live in the API, how
//! discovery names them, how `kubectl get` prints them and how strategic merge patch merges
//! their lists. Everything else — URLs, discovery, OpenAPI, Tables, the store — reads this
//! table, so adding a type is adding one entry to [`TYPES`].

use serde_json::{Value, json};

use crate::clock;

/// One column of a type's Table, as `kubectl get` prints it.
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    /// The OpenAPI type of the cell: `string`, `integer` or `date`.
    pub format: &'static str,
    /// 0 always shown, 1 with `-o wide`.
    pub priority: u8,
    pub cell: fn(&Value) -> Value,
}

/// A resource type.
#[derive(Debug)]
pub struct ResourceType {
    /// The API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// `all` puts the type in `kubectl get all`.
    pub categories: &'static [&'static str],
    /// Whether `metadata.generation` counts changes to the spec (workloads have one).
    pub generation: bool,
    /// Whether the type is a review: created, answered, never stored (SelfSubjectAccessReview).
    pub review: bool,
    pub columns: &'static [Column],
}

/// A resource type, by reference into [`TYPES`]; compared by group and plural.
#[derive(Clone, Copy)]
pub struct Resource(&'static ResourceType);

impl std::ops::Deref for Resource {
    type Target = ResourceType;
    fn deref(&self) -> &ResourceType {
        self.0
    }
}

impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Resource {}
impl PartialOrd for Resource {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Resource {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}
impl std::hash::Hash for Resource {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}
impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.plural)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        Ok(())
    }
}

impl Resource {
    pub const PODS: Self = Self(&TYPES[0]);
    pub const CONFIG_MAPS: Self = Self(&TYPES[1]);
    pub const NAMESPACES: Self = Self(&TYPES[2]);
    pub const ENDPOINT_SLICES: Self = Self(&TYPES[3]);
    pub const SECRETS: Self = Self(&TYPES[4]);
    pub const SERVICES: Self = Self(&TYPES[5]);
    pub const EVENTS: Self = Self(&TYPES[6]);
    pub const DEPLOYMENTS: Self = Self(&TYPES[7]);
    pub const REPLICA_SETS: Self = Self(&TYPES[8]);
    pub const NODES: Self = Self(&TYPES[9]);
    pub const SERVICE_ACCOUNTS: Self = Self(&TYPES[10]);
    pub const SELF_SUBJECT_ACCESS_REVIEWS: Self = Self(&TYPES[11]);

    fn key(&self) -> (&'static str, &'static str) {
        (self.0.group, self.0.plural)
    }

    /// Every type served.
    pub fn all() -> impl Iterator<Item = Self> {
        TYPES.iter().map(Self)
    }

    /// The type at `group`/`version` named `plural` in URLs.
    pub fn find(group: &str, version: &str, plural: &str) -> Option<Self> {
        Self::all().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The type of a core (`v1`) plural, as the old API had it.
    pub fn from_plural(plural: &str) -> Option<Self> {
        Self::find("", "v1", plural)
    }

    /// The group/version objects carry (`v1`, `apps/v1`).
    pub fn api_version(self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The object kind.
    pub fn kind(self) -> &'static str {
        self.0.kind
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        self.0.namespaced
    }

    /// The URL prefix of the type's group version: `/api/v1`, `/apis/apps/v1`.
    pub fn group_version_path(self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

/// The group versions served, core first, each once.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in Resource::all() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn name(o: &Value) -> Value {
    o["metadata"]["name"].clone()
}

fn age(o: &Value) -> Value {
    json!(clock::age(o["metadata"]["creationTimestamp"].as_str()))
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len) + v.as_array().map_or(0, Vec::len)
}

fn text_or(v: &Value, fallback: &str) -> Value {
    json!(v.as_str().unwrap_or(fallback))
}

fn number(v: &Value) -> Value {
    json!(v.as_i64().unwrap_or(0))
}

const NAME: Column = Column {
    name: "Name",
    format: "string",
    priority: 0,
    cell: name,
};

const AGE: Column = Column {
    name: "Age",
    format: "date",
    priority: 0,
    cell: age,
};

fn pod_ready(o: &Value) -> Value {
    let statuses = o["status"]["containerStatuses"].as_array();
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
    json!(format!("{ready}/{total}"))
}

fn pod_restarts(o: &Value) -> Value {
    let restarts: i64 = o["status"]["containerStatuses"].as_array().map_or(0, |s| {
        s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
    });
    json!(restarts)
}

fn pod_status(o: &Value) -> Value {
    if o["metadata"]["deletionTimestamp"].is_string() {
        return json!("Terminating");
    }
    text_or(&o["status"]["phase"], "Pending")
}

fn service_ports(o: &Value) -> Value {
    let ports: Vec<String> = o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                p["port"].as_i64().unwrap_or(0),
                p["protocol"].as_str().unwrap_or("TCP")
            )
        })
        .collect();
    json!(if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    })
}

fn ready_of(o: &Value) -> Value {
    json!(format!(
        "{}/{}",
        o["status"]["readyReplicas"].as_i64().unwrap_or(0),
        o["spec"]["replicas"].as_i64().unwrap_or(1)
    ))
}

fn event_object(o: &Value) -> Value {
    let object = &o["involvedObject"];
    json!(format!(
        "{}/{}",
        object["kind"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        object["name"].as_str().unwrap_or_default()
    ))
}

fn event_last_seen(o: &Value) -> Value {
    let at = o["lastTimestamp"]
        .as_str()
        .or_else(|| o["eventTime"].as_str())
        .or_else(|| o["metadata"]["creationTimestamp"].as_str());
    json!(clock::age(at))
}

fn node_status(o: &Value) -> Value {
    let ready = o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    json!(if ready { "Ready" } else { "NotReady" })
}

fn endpoints_of(o: &Value) -> Value {
    let addresses: Vec<&str> = o["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    json!(if addresses.is_empty() {
        "<unset>".to_owned()
    } else {
        addresses.join(",")
    })
}

/// The table. The `Resource` constants above index into it: append new types at the end.
pub static TYPES: [ResourceType; 12] = [
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        generation: false,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "Ready",
                format: "string",
                priority: 0,
                cell: pod_ready,
            },
            Column {
                name: "Status",
                format: "string",
                priority: 0,
                cell: pod_status,
            },
            Column {
                name: "Restarts",
                format: "integer",
                priority: 0,
                cell: pod_restarts,
            },
            AGE,
            Column {
                name: "IP",
                format: "string",
                priority: 1,
                cell: |o| text_or(&o["status"]["podIP"], "<none>"),
            },
            Column {
                name: "Node",
                format: "string",
                priority: 1,
                cell: |o| text_or(&o["spec"]["nodeName"], "<none>"),
            },
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        generation: false,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "Data",
                format: "integer",
                priority: 0,
                cell: |o| json!(count(&o["data"]) + count(&o["binaryData"])),
            },
            AGE,
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        generation: false,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "Status",
                format: "string",
                priority: 0,
                cell: |o| text_or(&o["status"]["phase"], "Active"),
            },
            AGE,
        ],
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        generation: false,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "AddressType",
                format: "string",
                priority: 0,
                cell: |o| o["addressType"].clone(),
            },
            Column {
                name: "Endpoints",
                format: "string",
                priority: 0,
                cell: endpoints_of,
            },
            AGE,
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        generation: false,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "Type",
                format: "string",
                priority: 0,
                cell: |o| text_or(&o["type"], "Opaque"),
            },
            Column {
                name: "Data",
                format: "integer",
                priority: 0,
                cell: |o| json!(count(&o["data"])),
            },
            AGE,
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        generation: false,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "Type",
                format: "string",
                priority: 0,
                cell: |o| text_or(&o["spec"]["type"], "ClusterIP"),
            },
            Column {
                name: "Cluster-IP",
                format: "string",
                priority: 0,
                cell: |o| text_or(&o["spec"]["clusterIP"], "<none>"),
            },
            Column {
                name: "External-IP",
                format: "string",
                priority: 0,
                cell: |_| json!("<none>"),
            },
            Column {
                name: "Port(s)",
                format: "string",
                priority: 0,
                cell: service_ports,
            },
            AGE,
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        generation: false,
        review: false,
        columns: &[
            Column {
                name: "Last Seen",
                format: "string",
                priority: 0,
                cell: event_last_seen,
            },
            Column {
                name: "Type",
                format: "string",
                priority: 0,
                cell: |o| text_or(&o["type"], "Normal"),
            },
            Column {
                name: "Reason",
                format: "string",
                priority: 0,
                cell: |o| o["reason"].clone(),
            },
            Column {
                name: "Object",
                format: "string",
                priority: 0,
                cell: event_object,
            },
            Column {
                name: "Message",
                format: "string",
                priority: 0,
                cell: |o| o["message"].clone(),
            },
        ],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        generation: true,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "Ready",
                format: "string",
                priority: 0,
                cell: ready_of,
            },
            Column {
                name: "Up-to-date",
                format: "integer",
                priority: 0,
                cell: |o| number(&o["status"]["updatedReplicas"]),
            },
            Column {
                name: "Available",
                format: "integer",
                priority: 0,
                cell: |o| number(&o["status"]["availableReplicas"]),
            },
            AGE,
        ],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        generation: true,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "Desired",
                format: "integer",
                priority: 0,
                cell: |o| number(&o["spec"]["replicas"]),
            },
            Column {
                name: "Current",
                format: "integer",
                priority: 0,
                cell: |o| number(&o["status"]["replicas"]),
            },
            Column {
                name: "Ready",
                format: "integer",
                priority: 0,
                cell: |o| number(&o["status"]["readyReplicas"]),
            },
            AGE,
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        generation: false,
        review: false,
        columns: &[
            NAME,
            Column {
                name: "Status",
                format: "string",
                priority: 0,
                cell: node_status,
            },
            Column {
                name: "Roles",
                format: "string",
                priority: 0,
                cell: |_| json!("<none>"),
            },
            AGE,
            Column {
                name: "Version",
                format: "string",
                priority: 0,
                cell: |o| o["status"]["nodeInfo"]["kubeletVersion"].clone(),
            },
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        generation: false,
        review: false,
        columns: &[NAME, AGE],
    },
    ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        generation: false,
        review: true,
        columns: &[],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_constants_point_at_their_entries() {
        let named = [
            (Resource::PODS, "Pod"),
            (Resource::CONFIG_MAPS, "ConfigMap"),
            (Resource::NAMESPACES, "Namespace"),
            (Resource::ENDPOINT_SLICES, "EndpointSlice"),
            (Resource::SECRETS, "Secret"),
            (Resource::SERVICES, "Service"),
            (Resource::EVENTS, "Event"),
            (Resource::DEPLOYMENTS, "Deployment"),
            (Resource::REPLICA_SETS, "ReplicaSet"),
            (Resource::NODES, "Node"),
            (Resource::SERVICE_ACCOUNTS, "ServiceAccount"),
            (
                Resource::SELF_SUBJECT_ACCESS_REVIEWS,
                "SelfSubjectAccessReview",
            ),
        ];
        for (resource, kind) in named {
            assert_eq!(resource.kind(), kind);
        }
        assert_eq!(named.len(), TYPES.len(), "every entry has a constant");
    }

    #[test]
    fn types_are_found_by_group_version_and_plural() {
        assert_eq!(
            Resource::find("apps", "v1", "deployments"),
            Some(Resource::DEPLOYMENTS)
        );
        assert_eq!(Resource::find("", "v1", "deployments"), None);
        assert_eq!(Resource::DEPLOYMENTS.api_version(), "apps/v1");
        assert_eq!(Resource::PODS.group_version_path(), "/api/v1");
        let gvs = group_versions();
        assert_eq!(gvs.first(), Some(&("", "v1")));
        assert!(gvs.contains(&("apps", "v1")));
    }
}
