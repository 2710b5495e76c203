//! The OpenAPI documents kubectl reads: `/openapi/v3` (the index of group versions) and
//! `/openapi/v3/{api/v1 | apis/G/V}` (OpenAPI 3.0), and `/openapi/v2` (Swagger 2.0, in JSON).
//!
//! What kubectl does with them: `apply`, `create`, `diff` and `edit` look up, in the v3
//! document of the object's group version, the PATCH operation of its kind and whether it takes
//! the `fieldValidation` parameter — if so, validation is left to the server and the schema is
//! never walked. `explain` renders the type's schema (found by `x-kubernetes-group-version-kind`).
//! A client-side `apply` builds a strategic merge patch from the v3 schema only when the PATCH
//! operation lists `application/strategic-merge-patch+json`; these documents leave it out, so
//! kubectl uses the patch merge keys compiled into it for the built-in types, which are the ones
//! [`crate::patch`] merges by. The v2 document is served in JSON only: kubectl asks for it in
//! protobuf (gnostic), gets 406 and carries on, since everything it needs is in v3.

use serde_json::{Map, Value, json};

use crate::resource_types::{Resource, group_versions};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// `GET /openapi/v3`. The documents depend on the type table only: built once.
pub fn v3_index() -> &'static Value {
    static INDEX: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut paths = Map::new();
        for (group, version) in group_versions() {
            let key = gv_key(group, version);
            let hash = crate::digest::digest(v3_document(group, version).to_string().as_bytes());
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash.to_ascii_uppercase())}),
            );
        }
        json!({"paths": paths})
    })
}

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The group version an `/openapi/v3/...` path names, if served.
pub fn v3_for_path(rest: &str) -> Option<Value> {
    group_versions()
        .into_iter()
        .find(|(g, v)| gv_key(g, v) == rest)
        .map(|(g, v)| v3_document(g, v))
}

/// The OpenAPI 3.0 document of one group version.
pub fn v3_document(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in Resource::all().filter(|r| r.group == group && r.version == version) {
        for (path, item) in operations(r, |name| json!({"schema": {"type": name}})) {
            paths.insert(path, item);
        }
        schemas.extend(type_schemas(r));
    }
    schemas.extend(common_schemas());
    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-kprox-testkit"},
        "paths": paths,
        "components": {"schemas": schemas}
    });
    with_refs(document, "#/components/schemas/")
}

/// `GET /openapi/v2` in JSON: every group version in one Swagger 2.0 document.
pub fn v2_document() -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for r in Resource::all() {
        for (path, item) in operations(r, |name| json!({"type": name})) {
            paths.insert(path, item);
        }
        definitions.extend(type_schemas(r));
    }
    definitions.extend(common_schemas());
    let document = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-kprox-testkit"},
        "paths": paths,
        "definitions": definitions
    });
    let mut document = with_refs(document, "#/definitions/");
    // Swagger 2.0 puts request bodies in parameters and media types in `consumes`.
    if let Some(paths) = document["paths"].as_object_mut() {
        for item in paths.values_mut() {
            if let Some(ops) = item.as_object_mut() {
                for op in ops.values_mut() {
                    if let Some(body) = op.as_object_mut().and_then(|o| o.remove("requestBody")) {
                        let content = body["content"].as_object().cloned().unwrap_or_default();
                        op["consumes"] = json!(content.keys().collect::<Vec<_>>());
                        let schema = content.values().next().map(|c| c["schema"].clone());
                        if let Some(params) = op["parameters"].as_array_mut() {
                            params.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
                        }
                    }
                    if let Some(responses) = op["responses"].as_object_mut() {
                        for response in responses.values_mut() {
                            let schema = response["content"]["application/json"]["schema"].clone();
                            *response = json!({"description": "OK", "schema": schema});
                        }
                    }
                }
            }
        }
    }
    document
}

/// Turns `{"$ref": "Name"}` into a full reference under `prefix`.
fn with_refs(mut value: Value, prefix: &str) -> Value {
    fn walk(value: &mut Value, prefix: &str) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get_mut("$ref")
                    && !target.starts_with('#')
                {
                    *target = format!("{prefix}{target}");
                }
                for v in map.values_mut() {
                    walk(v, prefix);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, prefix)),
            _ => {}
        }
    }
    walk(&mut value, prefix);
    value
}

fn schema_name(r: Resource) -> String {
    let package = match r.group {
        "" => "core".to_owned(),
        g => g.split('.').next().unwrap_or(g).to_owned(),
    };
    format!("io.k8s.api.{package}.{}.{}", r.version, r.kind)
}

fn camel(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The paths of one type and their operations. `param_type` writes a parameter's type the way
/// the document's version does.
fn operations(r: Resource, param_type: impl Fn(&str) -> Value) -> Vec<(String, Value)> {
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let group_word = if r.group.is_empty() {
        "Core".to_owned()
    } else {
        camel(r.group.split('.').next().unwrap_or_default())
    };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let id = |verb: &str, suffix: &str| {
        format!(
            "{verb}{group_word}{}{scope}{}{suffix}",
            camel(r.version),
            r.kind
        )
    };
    let param = |name: &str, kind: &str, description: &str| {
        let mut p =
            json!({"name": name, "in": "query", "description": description, "uniqueItems": true});
        if let (Some(p), Some(t)) = (p.as_object_mut(), param_type(kind).as_object()) {
            p.extend(t.clone());
        }
        p
    };
    let write_params = || {
        vec![
            param(
                "dryRun",
                "string",
                "When present, indicates that modifications should not be persisted. Valid value: All",
            ),
            param(
                "fieldManager",
                "string",
                "The name of the actor making the change.",
            ),
            param(
                "fieldValidation",
                "string",
                "How the server treats unknown or duplicate fields: Ignore, Warn or Strict.",
            ),
        ]
    };
    let reference = json!({"$ref": schema_name(r)});
    let answer = |schema: &Value| json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}});
    let op = |verb: &str,
              action: &str,
              suffix: &str,
              params: Vec<Value>,
              body: Option<Value>,
              schema: &Value| {
        let mut operation = json!({
            "operationId": id(verb, suffix), "parameters": params, "responses": answer(schema),
            "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk.clone(),
            "tags": [format!("{}_{}", if r.group.is_empty() { "core" } else { r.group }, r.version)],
        });
        if let Some(body) = body {
            operation["requestBody"] = body;
        }
        operation
    };
    let json_body =
        json!({"content": {"application/json": {"schema": reference.clone()}}, "required": true});
    let patch_body = json!({"content": {
        "application/apply-patch+yaml": {"schema": {"$ref": format!("{META}.Patch")}},
        "application/json-patch+json": {"schema": {"$ref": format!("{META}.Patch")}},
        "application/merge-patch+json": {"schema": {"$ref": format!("{META}.Patch")}}
    }, "required": true});
    let list_schema = json!({"type": "object", "properties": {"items": {"type": "array", "items": reference.clone()}}});

    let base = r.group_version_path();
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let mut out = Vec::new();
    if r.review {
        out.push((
            collection,
            json!({"post": op("create", "post", "", write_params(), Some(json_body), &reference)}),
        ));
        return out;
    }
    let list_params = vec![
        param(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels.",
        ),
        param(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields.",
        ),
        param(
            "watch",
            "boolean",
            "Watch for changes to the described resources.",
        ),
        param(
            "resourceVersion",
            "string",
            "Which version of the collection to serve from.",
        ),
    ];
    out.push((
        collection.clone(),
        json!({
            "get": op("list", "list", "", list_params.clone(), None, &list_schema),
            "post": op("create", "post", "", write_params(), Some(json_body.clone()), &reference),
            "delete": op("deletecollection", "deletecollection", "", list_params.clone(), None, &reference),
        }),
    ));
    let mut patch_params = write_params();
    patch_params.push(param(
        "force",
        "boolean",
        "Force is going to \"force\" Apply requests.",
    ));
    out.push((
        format!("{collection}/{{name}}"),
        json!({
            "get": op("read", "get", "", Vec::new(), None, &reference),
            "put": op("replace", "put", "", write_params(), Some(json_body), &reference),
            "patch": op("patch", "patch", "", patch_params, Some(patch_body), &reference),
            "delete": op("delete", "delete", "", vec![param("dryRun", "string", "When present, indicates that modifications should not be persisted.")], None, &reference),
        }),
    ));
    if r.namespaced {
        out.push((
            format!("{base}/{}", r.plural),
            json!({"get": op("list", "list", "ForAllNamespaces", list_params, None, &list_schema)}),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Schemas

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn integer(description: &str) -> Value {
    json!({"type": "integer", "format": "int32", "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn string_map(description: &str) -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": description})
}

fn strings(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string", "default": ""}, "description": description})
}

fn list_of(item: &str, description: &str) -> Value {
    json!({"type": "array", "items": {"$ref": item}, "description": description})
}

fn keyed_list(item: &str, key: &str, description: &str) -> Value {
    let mut list = list_of(item, description);
    list["x-kubernetes-list-type"] = json!("map");
    list["x-kubernetes-list-map-keys"] = json!([key]);
    list["x-kubernetes-patch-merge-key"] = json!(key);
    list["x-kubernetes-patch-strategy"] = json!("merge");
    list
}

fn reference(name: &str, description: &str) -> Value {
    json!({"allOf": [{"$ref": name}], "default": {}, "description": description})
}

fn object(description: &str, fields: &[(&str, Value)]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    json!({"type": "object", "description": description, "properties": properties})
}

fn top(r: Resource, description: &str, fields: &[(&str, Value)]) -> (String, Value) {
    let mut all = vec![
        (
            "apiVersion",
            string("APIVersion defines the versioned schema of this representation of an object."),
        ),
        (
            "kind",
            string("Kind is a string value representing the REST resource this object represents."),
        ),
        (
            "metadata",
            reference(&format!("{META}.ObjectMeta"), "Standard object's metadata."),
        ),
    ];
    all.extend(fields.iter().cloned());
    let mut schema = object(description, &all);
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    (schema_name(r), schema)
}

const CORE: &str = "io.k8s.api.core.v1";

fn type_schemas(r: Resource) -> Vec<(String, Value)> {
    match r.kind {
        "ConfigMap" => vec![top(
            r,
            "ConfigMap holds configuration data for pods to consume.",
            &[
                ("data", string_map("Data contains the configuration data.")),
                (
                    "binaryData",
                    string_map("BinaryData contains the binary data, base64 encoded."),
                ),
                (
                    "immutable",
                    boolean(
                        "Immutable, if set to true, ensures that data stored in the ConfigMap cannot be updated.",
                    ),
                ),
            ],
        )],
        "Secret" => vec![top(
            r,
            "Secret holds secret data of a certain type.",
            &[
                (
                    "data",
                    string_map("Data contains the secret data, base64 encoded."),
                ),
                (
                    "stringData",
                    string_map(
                        "stringData allows specifying non-binary secret data in string form.",
                    ),
                ),
                (
                    "type",
                    string("Used to facilitate programmatic handling of secret data."),
                ),
                (
                    "immutable",
                    boolean(
                        "Immutable, if set to true, ensures that data stored in the Secret cannot be updated.",
                    ),
                ),
            ],
        )],
        "Namespace" => vec![top(
            r,
            "Namespace provides a scope for Names.",
            &[
                (
                    "spec",
                    object(
                        "Spec defines the behavior of the Namespace.",
                        &[(
                            "finalizers",
                            strings(
                                "Finalizers is an opaque list of values that must be empty to permanently remove object from storage.",
                            ),
                        )],
                    ),
                ),
                (
                    "status",
                    object(
                        "Status describes the current status of a Namespace.",
                        &[(
                            "phase",
                            string("Phase is the current lifecycle phase of the namespace."),
                        )],
                    ),
                ),
            ],
        )],
        "Pod" => vec![top(
            r,
            "Pod is a collection of containers that can run on a host.",
            &[
                (
                    "spec",
                    reference(
                        &format!("{CORE}.PodSpec"),
                        "Specification of the desired behavior of the pod.",
                    ),
                ),
                (
                    "status",
                    reference(
                        &format!("{CORE}.PodStatus"),
                        "Most recently observed status of the pod.",
                    ),
                ),
            ],
        )],
        "Service" => vec![top(
            r,
            "Service is a named abstraction of software service consisting of local port that the proxy listens on, and the selector that determines which pods will answer requests sent through the proxy.",
            &[
                (
                    "spec",
                    object(
                        "Spec defines the behavior of a service.",
                        &[
                            (
                                "type",
                                string(
                                    "type determines how the Service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName.",
                                ),
                            ),
                            (
                                "selector",
                                string_map(
                                    "Route service traffic to pods with label keys and values matching this selector.",
                                ),
                            ),
                            (
                                "clusterIP",
                                string("clusterIP is the IP address of the service."),
                            ),
                            (
                                "ports",
                                keyed_list(
                                    &format!("{CORE}.ServicePort"),
                                    "port",
                                    "The list of ports that are exposed by this service.",
                                ),
                            ),
                        ],
                    ),
                ),
                (
                    "status",
                    object("Most recently observed status of the service.", &[]),
                ),
            ],
        )],
        "Event" => vec![top(
            r,
            "Event is a report of an event somewhere in the cluster.",
            &[
                (
                    "involvedObject",
                    reference(
                        &format!("{CORE}.ObjectReference"),
                        "The object that this event is about.",
                    ),
                ),
                (
                    "reason",
                    string(
                        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                    ),
                ),
                (
                    "message",
                    string("A human-readable description of the status of this operation."),
                ),
                ("type", string("Type of this event (Normal, Warning).")),
                (
                    "count",
                    integer("The number of times this event has occurred."),
                ),
                (
                    "firstTimestamp",
                    string("The time at which the event was first recorded."),
                ),
                (
                    "lastTimestamp",
                    string(
                        "The time at which the most recent occurrence of this event was recorded.",
                    ),
                ),
                (
                    "source",
                    object(
                        "The component reporting this event.",
                        &[
                            (
                                "component",
                                string("Component from which the event is generated."),
                            ),
                            ("host", string("Node name on which the event is generated.")),
                        ],
                    ),
                ),
            ],
        )],
        "Deployment" | "ReplicaSet" => {
            let description = if r.kind == "Deployment" {
                "Deployment enables declarative updates for Pods and ReplicaSets."
            } else {
                "ReplicaSet ensures that a specified number of pod replicas are running at any given time."
            };
            let mut spec_fields = vec![
                (
                    "replicas",
                    integer("Number of desired pods. Defaults to 1."),
                ),
                (
                    "selector",
                    reference(&format!("{META}.LabelSelector"), "Label selector for pods."),
                ),
                (
                    "template",
                    reference(
                        &format!("{CORE}.PodTemplateSpec"),
                        "Template describes the pods that will be created.",
                    ),
                ),
            ];
            if r.kind == "Deployment" {
                spec_fields.push((
                    "strategy",
                    object(
                        "The deployment strategy to use to replace existing pods with new ones.",
                        &[(
                            "type",
                            string("Type of deployment: Recreate or RollingUpdate."),
                        )],
                    ),
                ));
            }
            vec![top(
                r,
                description,
                &[
                    (
                        "spec",
                        object("Specification of the desired behavior.", &spec_fields),
                    ),
                    (
                        "status",
                        object(
                            "Most recently observed status.",
                            &[
                                (
                                    "replicas",
                                    integer("Total number of non-terminated pods targeted."),
                                ),
                                (
                                    "readyReplicas",
                                    integer("The number of pods targeted with a Ready Condition."),
                                ),
                                (
                                    "availableReplicas",
                                    integer("Total number of available pods."),
                                ),
                                (
                                    "updatedReplicas",
                                    integer(
                                        "Total number of non-terminated pods that have the desired template spec.",
                                    ),
                                ),
                                (
                                    "observedGeneration",
                                    integer("The generation observed by the controller."),
                                ),
                            ],
                        ),
                    ),
                ],
            )]
        }
        "Node" => vec![top(
            r,
            "Node is a worker node in Kubernetes.",
            &[
                (
                    "spec",
                    object(
                        "Spec defines the behavior of a node.",
                        &[
                            (
                                "podCIDR",
                                string("PodCIDR represents the pod IP range assigned to the node."),
                            ),
                            (
                                "unschedulable",
                                boolean("Unschedulable controls node schedulability of new pods."),
                            ),
                        ],
                    ),
                ),
                (
                    "status",
                    object(
                        "Most recently observed status of the node.",
                        &[(
                            "conditions",
                            list_of(
                                &format!("{CORE}.NodeCondition"),
                                "Conditions is an array of current observed node conditions.",
                            ),
                        )],
                    ),
                ),
            ],
        )],
        "ServiceAccount" => vec![top(
            r,
            "ServiceAccount binds together a name understood by users, a principal that can be authenticated and authorized, and a set of secrets.",
            &[(
                "automountServiceAccountToken",
                boolean(
                    "Whether pods running as this service account should have an API token automatically mounted.",
                ),
            )],
        )],
        "EndpointSlice" => vec![top(
            r,
            "EndpointSlice represents a subset of the endpoints that implement a service.",
            &[
                (
                    "addressType",
                    string(
                        "addressType specifies the type of address carried by this EndpointSlice.",
                    ),
                ),
                (
                    "endpoints",
                    json!({"type": "array", "items": {"type": "object"}, "description": "endpoints is a list of unique endpoints in this slice."}),
                ),
                (
                    "ports",
                    json!({"type": "array", "items": {"type": "object"}, "description": "ports specifies the list of network ports exposed by each endpoint in this slice."}),
                ),
            ],
        )],
        "SelfSubjectAccessReview" => vec![top(
            r,
            "SelfSubjectAccessReview checks whether or the current user can perform an action.",
            &[
                (
                    "spec",
                    object(
                        "Spec holds information about the request being evaluated.",
                        &[
                            (
                                "resourceAttributes",
                                json!({"type": "object", "description": "ResourceAuthorizationAttributes describes information for a resource access request"}),
                            ),
                            (
                                "nonResourceAttributes",
                                json!({"type": "object", "description": "NonResourceAttributes describes information for a non-resource access request"}),
                            ),
                        ],
                    ),
                ),
                (
                    "status",
                    object(
                        "Status is filled in by the server and indicates whether the request is allowed or not.",
                        &[
                            (
                                "allowed",
                                boolean(
                                    "Allowed is required. True if the action would be allowed, false otherwise.",
                                ),
                            ),
                            (
                                "reason",
                                string(
                                    "Reason is optional. It indicates why a request was allowed or denied.",
                                ),
                            ),
                        ],
                    ),
                ),
            ],
        )],
        _ => Vec::new(),
    }
}

fn common_schemas() -> Vec<(String, Value)> {
    vec![
        (
            format!("{META}.ObjectMeta"),
            object(
                "ObjectMeta is metadata that all persisted resources must have.",
                &[
                    ("name", string("Name must be unique within a namespace.")),
                    (
                        "generateName",
                        string(
                            "GenerateName is an optional prefix, used by the server, to generate a unique name.",
                        ),
                    ),
                    (
                        "namespace",
                        string(
                            "Namespace defines the space within which each name must be unique.",
                        ),
                    ),
                    (
                        "uid",
                        string("UID is the unique in time and space value for this object."),
                    ),
                    (
                        "resourceVersion",
                        string(
                            "An opaque value that represents the internal version of this object.",
                        ),
                    ),
                    (
                        "generation",
                        json!({"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."}),
                    ),
                    (
                        "creationTimestamp",
                        string(
                            "CreationTimestamp is a timestamp representing the server time when this object was created.",
                        ),
                    ),
                    (
                        "deletionTimestamp",
                        string(
                            "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted.",
                        ),
                    ),
                    (
                        "labels",
                        string_map(
                            "Map of string keys and values that can be used to organize and categorize objects.",
                        ),
                    ),
                    (
                        "annotations",
                        string_map(
                            "Annotations is an unstructured key value map stored with a resource.",
                        ),
                    ),
                    (
                        "finalizers",
                        json!({"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "set", "description": "Must be empty before the object is deleted from the registry."}),
                    ),
                    (
                        "ownerReferences",
                        json!({"type": "array", "items": {"type": "object"}, "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge", "description": "List of objects depended by this object."}),
                    ),
                    (
                        "managedFields",
                        json!({"type": "array", "items": {"type": "object"}, "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow."}),
                    ),
                ],
            ),
        ),
        (
            format!("{META}.LabelSelector"),
            object(
                "A label selector is a label query over a set of resources.",
                &[
                    (
                        "matchLabels",
                        string_map("matchLabels is a map of {key,value} pairs."),
                    ),
                    (
                        "matchExpressions",
                        json!({"type": "array", "items": {"type": "object"}, "description": "matchExpressions is a list of label selector requirements."}),
                    ),
                ],
            ),
        ),
        (
            format!("{META}.Patch"),
            json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}),
        ),
        (
            format!("{CORE}.PodTemplateSpec"),
            object(
                "PodTemplateSpec describes the data a pod should have when created from a template",
                &[
                    (
                        "metadata",
                        reference(&format!("{META}.ObjectMeta"), "Standard object's metadata."),
                    ),
                    (
                        "spec",
                        reference(
                            &format!("{CORE}.PodSpec"),
                            "Specification of the desired behavior of the pod.",
                        ),
                    ),
                ],
            ),
        ),
        (
            format!("{CORE}.PodSpec"),
            object(
                "PodSpec is a description of a pod.",
                &[
                    (
                        "containers",
                        keyed_list(
                            &format!("{CORE}.Container"),
                            "name",
                            "List of containers belonging to the pod.",
                        ),
                    ),
                    (
                        "initContainers",
                        keyed_list(
                            &format!("{CORE}.Container"),
                            "name",
                            "List of initialization containers belonging to the pod.",
                        ),
                    ),
                    (
                        "nodeName",
                        string("NodeName indicates in which node this pod is scheduled."),
                    ),
                    (
                        "nodeSelector",
                        string_map(
                            "NodeSelector is a selector which must be true for the pod to fit on a node.",
                        ),
                    ),
                    (
                        "restartPolicy",
                        string(
                            "Restart policy for all containers within the pod: Always, OnFailure, Never.",
                        ),
                    ),
                    (
                        "serviceAccountName",
                        string(
                            "ServiceAccountName is the name of the ServiceAccount to use to run this pod.",
                        ),
                    ),
                    (
                        "volumes",
                        json!({"type": "array", "items": {"type": "object"}, "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge,retainKeys", "description": "List of volumes that can be mounted by containers belonging to the pod."}),
                    ),
                ],
            ),
        ),
        (
            format!("{CORE}.Container"),
            object(
                "A single application container that you want to run within a pod.",
                &[
                    (
                        "name",
                        string("Name of the container specified as a DNS_LABEL."),
                    ),
                    ("image", string("Container image name.")),
                    (
                        "imagePullPolicy",
                        string("Image pull policy: Always, Never, IfNotPresent."),
                    ),
                    ("command", strings("Entrypoint array.")),
                    ("args", strings("Arguments to the entrypoint.")),
                    (
                        "ports",
                        keyed_list(
                            &format!("{CORE}.ContainerPort"),
                            "containerPort",
                            "List of ports to expose from the container.",
                        ),
                    ),
                    (
                        "env",
                        keyed_list(
                            &format!("{CORE}.EnvVar"),
                            "name",
                            "List of environment variables to set in the container.",
                        ),
                    ),
                    (
                        "resources",
                        object(
                            "Compute Resources required by this container.",
                            &[
                                (
                                    "limits",
                                    string_map(
                                        "Limits describes the maximum amount of compute resources allowed.",
                                    ),
                                ),
                                (
                                    "requests",
                                    string_map(
                                        "Requests describes the minimum amount of compute resources required.",
                                    ),
                                ),
                            ],
                        ),
                    ),
                    (
                        "volumeMounts",
                        json!({"type": "array", "items": {"type": "object"}, "x-kubernetes-patch-merge-key": "mountPath", "x-kubernetes-patch-strategy": "merge", "description": "Pod volumes to mount into the container's filesystem."}),
                    ),
                ],
            ),
        ),
        (
            format!("{CORE}.ContainerPort"),
            object(
                "ContainerPort represents a network port in a single container.",
                &[
                    (
                        "containerPort",
                        integer("Number of port to expose on the pod's IP address."),
                    ),
                    (
                        "name",
                        string(
                            "If specified, this must be an IANA_SVC_NAME and unique within the pod.",
                        ),
                    ),
                    (
                        "protocol",
                        string("Protocol for port. Must be UDP, TCP, or SCTP."),
                    ),
                ],
            ),
        ),
        (
            format!("{CORE}.EnvVar"),
            object(
                "EnvVar represents an environment variable present in a Container.",
                &[
                    ("name", string("Name of the environment variable.")),
                    (
                        "value",
                        string(
                            "Variable references $(VAR_NAME) are expanded using the previously defined environment variables.",
                        ),
                    ),
                ],
            ),
        ),
        (
            format!("{CORE}.ServicePort"),
            object(
                "ServicePort contains information on service's port.",
                &[
                    ("name", string("The name of this port within the service.")),
                    (
                        "port",
                        integer("The port that will be exposed by this service."),
                    ),
                    (
                        "targetPort",
                        json!({"x-kubernetes-int-or-string": true, "description": "Number or name of the port to access on the pods targeted by the service."}),
                    ),
                    ("protocol", string("The IP protocol for this port.")),
                ],
            ),
        ),
        (
            format!("{CORE}.ObjectReference"),
            object(
                "ObjectReference contains enough information to let you inspect or modify the referred object.",
                &[
                    ("kind", string("Kind of the referent.")),
                    ("name", string("Name of the referent.")),
                    ("namespace", string("Namespace of the referent.")),
                    ("uid", string("UID of the referent.")),
                ],
            ),
        ),
        (
            format!("{CORE}.PodStatus"),
            object(
                "PodStatus represents information about the status of a pod.",
                &[
                    (
                        "phase",
                        string("The phase of a Pod: Pending, Running, Succeeded, Failed, Unknown."),
                    ),
                    ("podIP", string("podIP address allocated to the pod.")),
                    (
                        "hostIP",
                        string(
                            "hostIP holds the IP address of the host to which the pod is assigned.",
                        ),
                    ),
                    (
                        "startTime",
                        string(
                            "RFC 3339 date and time at which the object was acknowledged by the Kubelet.",
                        ),
                    ),
                    (
                        "conditions",
                        json!({"type": "array", "items": {"type": "object"}, "x-kubernetes-patch-merge-key": "type", "x-kubernetes-patch-strategy": "merge", "description": "Current service state of pod."}),
                    ),
                    (
                        "containerStatuses",
                        json!({"type": "array", "items": {"type": "object"}, "description": "The list has one entry per container in the manifest."}),
                    ),
                ],
            ),
        ),
        (
            format!("{CORE}.NodeCondition"),
            object(
                "NodeCondition contains condition information for a node.",
                &[
                    ("type", string("Type of node condition.")),
                    (
                        "status",
                        string("Status of the condition, one of True, False, Unknown."),
                    ),
                ],
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_operation_takes_field_validation_and_names_its_kind() {
        let doc = v3_document("", "v1");
        let path = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(path["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        let params: Vec<&str> = path["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"fieldValidation"), "{params:?}");
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"]["x-kubernetes-group-version-kind"].is_array());
        assert_eq!(
            doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["allOf"]
                [0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
    }

    #[test]
    fn the_index_points_at_every_group_version() {
        let index = v3_index();
        for key in ["api/v1", "apis/apps/v1", "apis/authorization.k8s.io/v1"] {
            let url = index["paths"][key]["serverRelativeURL"]
                .as_str()
                .expect(key);
            assert!(
                url.starts_with(&format!("/openapi/v3/{key}?hash=")),
                "{url}"
            );
            assert!(v3_for_path(key).is_some());
        }
        let v2 = v2_document();
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
    }
}
