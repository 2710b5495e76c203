//! Just enough of the Kubernetes protobuf encoding to accept what kubectl sends for the kinds
//! the fake stores: kubectl 1.32 creates built-in objects (`kubectl create configmap`) with
//! `Content-Type: application/vnd.kubernetes.protobuf`, as a real apiserver accepts.
//!
//! The envelope is the magic `k8s\0` followed by a `runtime.Unknown` message whose `raw` field
//! holds the object. Decoded: ConfigMaps, Secrets and Namespaces (metadata name, namespace,
//! labels, annotations; data; a Secret's type), Pods and Deployments (`kubectl run`, `kubectl
//! create deployment`: the pod spec's containers with their images, commands, ports and env),
//! Services (`kubectl expose`: ports, selector, type)
//! and SelfSubjectAccessReviews (`kubectl auth can-i`); anything else is refused with 415 by
//! the caller.

use serde_json::{Map, Value, json};

/// The media type kubectl uses.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

pub(crate) const MAGIC: &[u8] = b"k8s\0";

/// Decodes a protobuf-encoded object into its JSON form, or says why not.
pub fn decode_object(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf magic")?;
    let mut kind = String::new();
    let mut api_version = String::new();
    let mut raw: &[u8] = &[];
    for field in Fields::new(envelope) {
        match field? {
            (1, Wire::Bytes(type_meta)) => {
                for f in Fields::new(type_meta) {
                    match f? {
                        (1, Wire::Bytes(v)) => api_version = utf8(v)?,
                        (2, Wire::Bytes(v)) => kind = utf8(v)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(bytes)) => raw = bytes,
            _ => {}
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => config_map(raw),
        ("v1", "Namespace") => {
            let mut metadata = Map::new();
            for field in Fields::new(raw) {
                if let (1, Wire::Bytes(meta)) = field? {
                    metadata = object_meta(meta)?;
                }
            }
            Ok(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}))
        }
        ("v1", "Secret") => secret(raw),
        ("v1", "Pod") => pod(raw).map(unset_removed),
        ("apps/v1", "Deployment") => deployment(raw).map(unset_removed),
        ("v1", "Service") => service(raw).map(unset_removed),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => access_review(raw),
        _ => Err(format!(
            "protobuf decoding of {api_version}/{kind} is not supported by the fake"
        )),
    }
}

fn config_map(raw: &[u8]) -> Result<Value, String> {
    let mut metadata = Map::new();
    let mut data = Map::new();
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(meta)) => metadata = object_meta(meta)?,
            (2, Wire::Bytes(entry)) => {
                let (k, v) = map_entry(entry)?;
                data.insert(k, Value::String(v));
            }
            _ => {}
        }
    }
    Ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}))
}

/// Proto3 sends unset strings as empty ones (and an unset host port as 0): the JSON form leaves
/// them out, and a container port's protocol defaults to TCP, as the apiserver's defaulting does.
fn unset_removed(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|k, v| !(v.as_str() == Some("") || (k == "hostPort" && v == &json!(0))));
                if map.contains_key("containerPort") && !map.contains_key("protocol") {
                    map.insert("protocol".into(), json!("TCP"));
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// A Pod (`kubectl run`): metadata 1, spec 2.
fn pod(raw: &[u8]) -> Result<Value, String> {
    let mut out = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}});
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(meta)) => out["metadata"] = Value::Object(object_meta(meta)?),
            (2, Wire::Bytes(spec)) => out["spec"] = pod_spec(spec)?,
            _ => {}
        }
    }
    Ok(out)
}

/// A Deployment (`kubectl create deployment`): metadata 1, spec 2 {replicas 1, selector 2
/// {matchLabels 1}, template 3 {metadata 1, spec 2}, strategy 4 {type 1}, minReadySeconds 5,
/// revisionHistoryLimit 6, paused 7, progressDeadlineSeconds 9}.
fn deployment(raw: &[u8]) -> Result<Value, String> {
    let mut out =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}, "spec": {}});
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(meta)) => out["metadata"] = Value::Object(object_meta(meta)?),
            (2, Wire::Bytes(spec_raw)) => {
                let spec = &mut out["spec"];
                for f in Fields::new(spec_raw) {
                    match f? {
                        (1, Wire::Varint(n)) => spec["replicas"] = json!(n),
                        (2, Wire::Bytes(selector)) => {
                            let mut labels = Map::new();
                            for s in Fields::new(selector) {
                                if let (1, Wire::Bytes(entry)) = s? {
                                    let (k, v) = map_entry(entry)?;
                                    labels.insert(k, Value::String(v));
                                }
                            }
                            spec["selector"] = json!({"matchLabels": labels});
                        }
                        (3, Wire::Bytes(template)) => {
                            let mut t = json!({"metadata": {}, "spec": {}});
                            for tf in Fields::new(template) {
                                match tf? {
                                    (1, Wire::Bytes(meta)) => {
                                        t["metadata"] = Value::Object(object_meta(meta)?);
                                    }
                                    (2, Wire::Bytes(pod_spec_raw)) => {
                                        t["spec"] = pod_spec(pod_spec_raw)?;
                                    }
                                    _ => {}
                                }
                            }
                            spec["template"] = t;
                        }
                        (4, Wire::Bytes(strategy)) => {
                            let mut out = Map::new();
                            for sf in Fields::new(strategy) {
                                if let (1, Wire::Bytes(v)) = sf? {
                                    out.insert("type".into(), Value::String(utf8(v)?));
                                }
                            }
                            spec["strategy"] = Value::Object(out);
                        }
                        (5, Wire::Varint(n)) => spec["minReadySeconds"] = json!(n),
                        (6, Wire::Varint(n)) => spec["revisionHistoryLimit"] = json!(n),
                        (7, Wire::Varint(n)) => spec["paused"] = json!(n != 0),
                        (9, Wire::Varint(n)) => spec["progressDeadlineSeconds"] = json!(n),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A Service (`kubectl expose`, `kubectl create service`): metadata 1, spec 2 {ports 1
/// {name 1, protocol 2, port 3, targetPort 4 {type 1, intVal 2, strVal 3}, nodePort 5},
/// selector 2, clusterIP 3, type 4}.
fn service(raw: &[u8]) -> Result<Value, String> {
    let mut out = json!({"apiVersion": "v1", "kind": "Service", "metadata": {}, "spec": {}});
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(meta)) => out["metadata"] = Value::Object(object_meta(meta)?),
            (2, Wire::Bytes(spec_raw)) => {
                let (mut ports, mut selector) = (Vec::new(), Map::new());
                for f in Fields::new(spec_raw) {
                    match f? {
                        (1, Wire::Bytes(p)) => ports.push(service_port(p)?),
                        (2, Wire::Bytes(entry)) => {
                            let (k, v) = map_entry(entry)?;
                            selector.insert(k, Value::String(v));
                        }
                        (3, Wire::Bytes(v)) => out["spec"]["clusterIP"] = Value::String(utf8(v)?),
                        (4, Wire::Bytes(v)) => out["spec"]["type"] = Value::String(utf8(v)?),
                        _ => {}
                    }
                }
                out["spec"]["ports"] = Value::Array(ports);
                if !selector.is_empty() {
                    out["spec"]["selector"] = Value::Object(selector);
                }
            }
            _ => {}
        }
    }
    if out["spec"]["type"].is_null() {
        out["spec"]["type"] = json!("ClusterIP");
    }
    Ok(out)
}

fn service_port(raw: &[u8]) -> Result<Value, String> {
    let mut port = Map::new();
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(v)) => {
                port.insert("name".into(), Value::String(utf8(v)?));
            }
            (2, Wire::Bytes(v)) => {
                port.insert("protocol".into(), Value::String(utf8(v)?));
            }
            (3, Wire::Varint(n)) => {
                port.insert("port".into(), json!(n));
            }
            (4, Wire::Bytes(target)) => {
                let (mut kind, mut number, mut text) = (0, 0, String::new());
                for t in Fields::new(target) {
                    match t? {
                        (1, Wire::Varint(v)) => kind = v,
                        (2, Wire::Varint(v)) => number = v,
                        (3, Wire::Bytes(v)) => text = utf8(v)?,
                        _ => {}
                    }
                }
                let target = if kind == 1 {
                    json!(text)
                } else {
                    json!(number)
                };
                port.insert("targetPort".into(), target);
            }
            (5, Wire::Varint(n)) if n != 0 => {
                port.insert("nodePort".into(), json!(n));
            }
            _ => {}
        }
    }
    if !port.contains_key("protocol") {
        port.insert("protocol".into(), json!("TCP"));
    }
    Ok(Value::Object(port))
}

/// A PodSpec: containers 2, restartPolicy 3, terminationGracePeriodSeconds 4, dnsPolicy 6,
/// nodeSelector 7, serviceAccountName 8, nodeName 10, initContainers 20 (volumes and the rest
/// are not kept).
fn pod_spec(raw: &[u8]) -> Result<Value, String> {
    let mut spec = Map::new();
    let mut containers = Vec::new();
    let mut init = Vec::new();
    let mut selector = Map::new();
    for field in Fields::new(raw) {
        match field? {
            (2, Wire::Bytes(c)) => containers.push(container(c)?),
            (20, Wire::Bytes(c)) => init.push(container(c)?),
            (3, Wire::Bytes(v)) => {
                spec.insert("restartPolicy".into(), Value::String(utf8(v)?));
            }
            (4, Wire::Varint(n)) => {
                spec.insert("terminationGracePeriodSeconds".into(), json!(n));
            }
            (6, Wire::Bytes(v)) => {
                spec.insert("dnsPolicy".into(), Value::String(utf8(v)?));
            }
            (7, Wire::Bytes(entry)) => {
                let (k, v) = map_entry(entry)?;
                selector.insert(k, Value::String(v));
            }
            (8, Wire::Bytes(v)) => {
                spec.insert("serviceAccountName".into(), Value::String(utf8(v)?));
            }
            (10, Wire::Bytes(v)) => {
                spec.insert("nodeName".into(), Value::String(utf8(v)?));
            }
            _ => {}
        }
    }
    spec.insert("containers".into(), Value::Array(containers));
    if !init.is_empty() {
        spec.insert("initContainers".into(), Value::Array(init));
    }
    if !selector.is_empty() {
        spec.insert("nodeSelector".into(), Value::Object(selector));
    }
    Ok(Value::Object(spec))
}

/// A Container: name 1, image 2, command 3, args 4, workingDir 5, ports 6 {name 1, hostPort 2,
/// containerPort 3, protocol 4}, env 7 {name 1, value 2}, imagePullPolicy 14.
fn container(raw: &[u8]) -> Result<Value, String> {
    let mut out = Map::new();
    let (mut command, mut args, mut ports, mut env) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(v)) => {
                out.insert("name".into(), Value::String(utf8(v)?));
            }
            (2, Wire::Bytes(v)) => {
                out.insert("image".into(), Value::String(utf8(v)?));
            }
            (3, Wire::Bytes(v)) => command.push(Value::String(utf8(v)?)),
            (4, Wire::Bytes(v)) => args.push(Value::String(utf8(v)?)),
            (5, Wire::Bytes(v)) => {
                out.insert("workingDir".into(), Value::String(utf8(v)?));
            }
            (6, Wire::Bytes(p)) => {
                let mut port = Map::new();
                for pf in Fields::new(p) {
                    match pf? {
                        (1, Wire::Bytes(v)) => {
                            port.insert("name".into(), Value::String(utf8(v)?));
                        }
                        (2, Wire::Varint(n)) => {
                            port.insert("hostPort".into(), json!(n));
                        }
                        (3, Wire::Varint(n)) => {
                            port.insert("containerPort".into(), json!(n));
                        }
                        (4, Wire::Bytes(v)) => {
                            port.insert("protocol".into(), Value::String(utf8(v)?));
                        }
                        _ => {}
                    }
                }
                ports.push(Value::Object(port));
            }
            (7, Wire::Bytes(e)) => {
                let (name, value) = map_entry(e)?;
                env.push(json!({"name": name, "value": value}));
            }
            (14, Wire::Bytes(v)) => {
                out.insert("imagePullPolicy".into(), Value::String(utf8(v)?));
            }
            _ => {}
        }
    }
    for (key, list) in [
        ("command", command),
        ("args", args),
        ("ports", ports),
        ("env", env),
    ] {
        if !list.is_empty() {
            out.insert(key.into(), Value::Array(list));
        }
    }
    out.insert("resources".into(), json!({}));
    Ok(Value::Object(out))
}

fn secret(raw: &[u8]) -> Result<Value, String> {
    use base64::Engine as _;
    let mut metadata = Map::new();
    let mut data = Map::new();
    let mut kind = Value::Null;
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(meta)) => metadata = object_meta(meta)?,
            (2, Wire::Bytes(entry)) => {
                let (k, v) = map_entry_bytes(entry)?;
                let encoded = base64::engine::general_purpose::STANDARD.encode(v);
                data.insert(k, Value::String(encoded));
            }
            (3, Wire::Bytes(v)) => kind = Value::String(utf8(v)?),
            _ => {}
        }
    }
    Ok(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": data, "type": kind}),
    )
}

/// A SelfSubjectAccessReview's spec: resource attributes {namespace 1, verb 2, group 3,
/// version 4, resource 5, subresource 6, name 7} or non-resource ones {path 1, verb 2}.
fn access_review(raw: &[u8]) -> Result<Value, String> {
    const RESOURCE: &[&str] = &[
        "namespace",
        "verb",
        "group",
        "version",
        "resource",
        "subresource",
        "name",
    ];
    const NON_RESOURCE: &[&str] = &["path", "verb"];
    let mut spec = Map::new();
    for field in Fields::new(raw) {
        let (2, Wire::Bytes(spec_raw)) = field? else {
            continue;
        };
        for f in Fields::new(spec_raw) {
            let (key, names, attrs) = match f? {
                (1, Wire::Bytes(attrs)) => ("resourceAttributes", RESOURCE, attrs),
                (2, Wire::Bytes(attrs)) => ("nonResourceAttributes", NON_RESOURCE, attrs),
                _ => continue,
            };
            let mut out = Map::new();
            for a in Fields::new(attrs) {
                if let (tag, Wire::Bytes(v)) = a?
                    && let Some(name) = usize::try_from(tag)
                        .ok()
                        .and_then(|t| t.checked_sub(1))
                        .and_then(|i| names.get(i))
                {
                    out.insert((*name).to_owned(), Value::String(utf8(v)?));
                }
            }
            spec.insert(key.to_owned(), Value::Object(out));
        }
    }
    Ok(
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "metadata": {}, "spec": spec}),
    )
}

pub(crate) fn object_meta(raw: &[u8]) -> Result<Map<String, Value>, String> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(v)) => {
                meta.insert("name".into(), Value::String(utf8(v)?));
            }
            (3, Wire::Bytes(v)) => {
                meta.insert("namespace".into(), Value::String(utf8(v)?));
            }
            (6, Wire::Bytes(v)) => {
                meta.insert("resourceVersion".into(), Value::String(utf8(v)?));
            }
            (11, Wire::Bytes(entry)) => {
                let (k, v) = map_entry(entry)?;
                labels.insert(k, Value::String(v));
            }
            (12, Wire::Bytes(entry)) => {
                let (k, v) = map_entry(entry)?;
                annotations.insert(k, Value::String(v));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(meta)
}

fn map_entry_bytes(raw: &[u8]) -> Result<(String, Vec<u8>), String> {
    let (mut key, mut value) = (String::new(), Vec::new());
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(v)) => key = utf8(v)?,
            (2, Wire::Bytes(v)) => value = v.to_vec(),
            _ => {}
        }
    }
    Ok((key, value))
}

fn map_entry(raw: &[u8]) -> Result<(String, String), String> {
    let (mut key, mut value) = (String::new(), String::new());
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(v)) => key = utf8(v)?,
            (2, Wire::Bytes(v)) => value = utf8(v)?,
            _ => {}
        }
    }
    Ok((key, value))
}

pub(crate) fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_owned())
}

pub(crate) enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over the top-level fields of one message.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(rest: &'a [u8]) -> Self {
        Self {
            rest,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or("truncated varint")?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn next_field(&mut self) -> Result<(u64, Wire<'a>), String> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.rest = self.rest.get(8..).ok_or("truncated fixed64")?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                if len > self.rest.len() {
                    return Err("truncated length-delimited field".into());
                }
                let (bytes, rest) = self.rest.split_at(len);
                self.rest = rest;
                Wire::Bytes(bytes)
            }
            5 => {
                self.rest = self.rest.get(4..).ok_or("truncated fixed32")?;
                Wire::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((key >> 3, wire))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let item = self.next_field();
        self.failed = item.is_err();
        Some(item)
    }
}
