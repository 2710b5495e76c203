//! The four kinds of PATCH the apiserver takes, applied to JSON objects:
//! - JSON patch (RFC 6902, `application/json-patch+json`): add, remove, replace, move, copy, test;
//! - JSON merge patch (RFC 7386, `application/merge-patch+json`): maps merged, `null` deletes,
//!   lists replaced;
//! - strategic merge patch (`application/strategic-merge-patch+json`, kubectl's default): like a
//!   merge patch, but the lists of the served types that carry a patch merge key (containers by
//!   `name`, container ports by `containerPort`, …) are merged element by element, `finalizers`
//!   is a set, and the directives `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/…` and
//!   `$setElementOrder/…` are honoured;
//! - server-side apply (`application/apply-patch+yaml`): the applied configuration merged into
//!   the live object the strategic way, and the field manager's set recorded in `managedFields`.
//!   Kept simple: no conflicts between managers are reported, and a field the manager stops
//!   applying is left in place.

use serde_json::{Map, Value, json};

/// A PATCH body's kind, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    /// The kind a content type names; `None` for anything else (the apiserver answers 415).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" => Some(Self::Apply),
            _ => None,
        }
    }

    /// Every content type accepted, as an `Unsupported Media Type` answer lists them.
    pub const ACCEPTED: &'static str = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";
}

impl PatchKind {
    /// Applies a patch of this kind to `doc`. An apply patch (which needs a field manager and
    /// may create the object, see [`apply`]) is merged the strategic way here.
    pub fn patch(self, doc: &Value, body: &Value) -> Result<Value, PatchError> {
        match self {
            Self::Json => json_patch(doc, body),
            Self::Merge => Ok(merge_patch(doc, body)),
            Self::Strategic | Self::Apply => strategic_merge(doc, body),
        }
    }
}

/// Why a patch could not be applied (the apiserver answers 422, or 409 for a failed `test`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is invalid: {0}")]
    Invalid(String),
    #[error("the test operation failed at {0}")]
    TestFailed(String),
}

// ---------------------------------------------------------------------------------------------
// JSON patch

/// Applies an RFC 6902 patch (an array of operations) to `doc`.
pub fn json_patch(doc: &Value, operations: &Value) -> Result<Value, PatchError> {
    let ops = operations
        .as_array()
        .ok_or_else(|| PatchError::Invalid("a JSON patch is an array of operations".into()))?;
    let mut doc = doc.clone();
    for op in ops {
        let name = op["op"]
            .as_str()
            .ok_or_else(|| PatchError::Invalid("an operation without \"op\"".into()))?;
        let path = pointer(op, "path")?;
        match name {
            "add" => add(&mut doc, &path, value_of(op)?)?,
            "remove" => {
                take(&mut doc, &path)?;
            }
            "replace" => {
                take(&mut doc, &path)?;
                add(&mut doc, &path, value_of(op)?)?;
            }
            "move" => {
                let from = pointer(op, "from")?;
                let moved = take(&mut doc, &from)?;
                add(&mut doc, &path, moved)?;
            }
            "copy" => {
                let from = pointer(op, "from")?;
                let copied = get(&doc, &from)?.clone();
                add(&mut doc, &path, copied)?;
            }
            "test" => {
                if get(&doc, &path)? != &value_of(op)? {
                    return Err(PatchError::TestFailed(join(&path)));
                }
            }
            other => return Err(PatchError::Invalid(format!("unknown op \"{other}\""))),
        }
    }
    Ok(doc)
}

fn value_of(op: &Value) -> Result<Value, PatchError> {
    op.get("value")
        .cloned()
        .ok_or_else(|| PatchError::Invalid("an operation without \"value\"".into()))
}

fn pointer(op: &Value, field: &str) -> Result<Vec<String>, PatchError> {
    let text = op[field]
        .as_str()
        .ok_or_else(|| PatchError::Invalid(format!("an operation without \"{field}\"")))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let rest = text
        .strip_prefix('/')
        .ok_or_else(|| PatchError::Invalid(format!("\"{text}\" is not a JSON pointer")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn join(path: &[String]) -> String {
    path.iter().fold(String::new(), |acc, p| acc + "/" + p)
}

fn missing(path: &[String]) -> PatchError {
    PatchError::Invalid(format!("doc is missing path: \"{}\"", join(path)))
}

fn index_of(token: &str, len: usize, allow_end: bool) -> Option<usize> {
    if allow_end && token == "-" {
        return Some(len);
    }
    let index: usize = token.parse().ok()?;
    (index < len || (allow_end && index == len)).then_some(index)
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, PatchError> {
    let mut at = doc;
    for token in path {
        at = match at {
            Value::Object(map) => map.get(token),
            Value::Array(list) => index_of(token, list.len(), false).and_then(|i| list.get(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(at)
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    path: &[String],
) -> Result<(&'a mut Value, String), PatchError> {
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| PatchError::Invalid("the whole document cannot be removed".into()))?;
    let mut at = doc;
    for token in parents {
        at = match at {
            Value::Object(map) => map.get_mut(token),
            Value::Array(list) => {
                let len = list.len();
                index_of(token, len, false).and_then(move |i| list.get_mut(i))
            }
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok((at, last.clone()))
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(list) => {
            let index = index_of(&last, list.len(), true).ok_or_else(|| missing(path))?;
            list.insert(index, value);
            Ok(())
        }
        _ => Err(missing(path)),
    }
}

fn take(doc: &mut Value, path: &[String]) -> Result<Value, PatchError> {
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(map) => map.remove(&last).ok_or_else(|| missing(path)),
        Value::Array(list) => {
            let index = index_of(&last, list.len(), false).ok_or_else(|| missing(path))?;
            Ok(list.remove(index))
        }
        _ => Err(missing(path)),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON merge patch

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut out = match doc {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            out.remove(key);
        } else {
            let merged = merge_patch(out.get(key).unwrap_or(&Value::Null), value);
            out.insert(key.clone(), merged);
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch

/// How a list is patched, by its field name and where it sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// Elements are maps merged by this key.
    MergeBy(&'static str),
    /// A set of primitives: the patch's values are added.
    Union,
    /// The patch's list replaces the old one.
    Replace,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The patch merge keys of the served types (their Go types' `patchMergeKey` tags).
fn list_strategy(parents: &[String], field: &str) -> ListStrategy {
    let parent = parents.last().map(String::as_str).unwrap_or_default();
    match field {
        f if CONTAINER_LISTS.contains(&f) => ListStrategy::MergeBy("name"),
        "env" | "volumes" | "imagePullSecrets" => ListStrategy::MergeBy("name"),
        "volumeMounts" => ListStrategy::MergeBy("mountPath"),
        "volumeDevices" => ListStrategy::MergeBy("devicePath"),
        "ports" if CONTAINER_LISTS.contains(&parent) => ListStrategy::MergeBy("containerPort"),
        "ports" if parent == "spec" => ListStrategy::MergeBy("port"),
        "conditions" => ListStrategy::MergeBy("type"),
        "ownerReferences" => ListStrategy::MergeBy("uid"),
        "hostAliases" => ListStrategy::MergeBy("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeBy("topologyKey"),
        "finalizers" if parent == "metadata" => ListStrategy::Union,
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge patch to `doc`.
pub fn strategic_merge(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    Ok(merge_map(doc, patch, &mut Vec::new())?.unwrap_or_else(|| json!({})))
}

/// `None`: the map is deleted (`$patch: delete`).
fn merge_map(
    doc: &Value,
    patch: &Value,
    parents: &mut Vec<String>,
) -> Result<Option<Value>, PatchError> {
    let Value::Object(patch) = patch else {
        return Ok(Some(patch.clone()));
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            return Ok(Some(Value::Object(replaced)));
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Invalid(format!(
                "unknown patch directive \"{other}\""
            )));
        }
    }
    let mut out = match doc {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<&Value> = value.as_array().into_iter().flatten().collect();
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|v| !remove.contains(&v));
            }
            continue;
        }
        if value.is_null() {
            out.remove(key);
            continue;
        }
        let old = out.get(key).cloned().unwrap_or(Value::Null);
        let merged = match value {
            Value::Object(_) => {
                parents.push(key.clone());
                let merged = merge_map(&old, value, parents);
                parents.pop();
                merged?
            }
            Value::Array(items) => Some(merge_list(
                &old,
                items,
                list_strategy(parents, key),
                key,
                parents,
            )?),
            _ => Some(value.clone()),
        };
        match merged {
            Some(v) => out.insert(key.clone(), v),
            None => out.remove(key),
        };
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        out.retain(|k, _| keep.iter().any(|kept| kept == k));
    }
    Ok(Some(Value::Object(out)))
}

fn merge_list(
    old: &Value,
    items: &[Value],
    strategy: ListStrategy,
    field: &str,
    parents: &mut Vec<String>,
) -> Result<Value, PatchError> {
    // `[{"$patch": "replace"}, …]` replaces the list whatever its strategy.
    let replace = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let rest: Vec<Value> = items
        .iter()
        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("replace"))
        .cloned()
        .collect();
    let old: Vec<Value> = old.as_array().cloned().unwrap_or_default();
    if replace {
        return Ok(Value::Array(rest));
    }
    match strategy {
        ListStrategy::Replace => Ok(Value::Array(rest)),
        ListStrategy::Union => {
            let mut out = old;
            for item in rest {
                if !out.contains(&item) {
                    out.push(item);
                }
            }
            Ok(Value::Array(out))
        }
        ListStrategy::MergeBy(merge_key) => {
            let mut out = old;
            for item in rest {
                let Some(key_value) = item.get(merge_key).cloned() else {
                    return Err(PatchError::Invalid(format!(
                        "an element of {field} has no merge key {merge_key}"
                    )));
                };
                let position = out
                    .iter()
                    .position(|o| o.get(merge_key) == Some(&key_value));
                parents.push(field.to_owned());
                let merged = match position {
                    Some(i) => merge_map(&out[i], &item, parents),
                    None => merge_map(&Value::Null, &item, parents),
                };
                parents.pop();
                match (merged?, position) {
                    (Some(v), Some(i)) => out[i] = v,
                    (Some(v), None) => out.push(v),
                    (None, Some(i)) => {
                        out.remove(i);
                    }
                    (None, None) => {}
                }
            }
            Ok(Value::Array(out))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server-side apply

/// Applies `applied` for `manager` onto `live` (`None`: the object is created by the apply).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    now: &str,
) -> Result<Value, PatchError> {
    if !applied.is_object() || !(applied["metadata"].is_object() || applied["metadata"].is_null()) {
        return Err(PatchError::Invalid(
            "an applied configuration is an object, and so is its metadata".into(),
        ));
    }
    let mut object = strategic_merge(live.unwrap_or(&json!({})), applied)?;
    let entry = json!({
        "manager": manager, "operation": "Apply", "apiVersion": applied["apiVersion"].clone(),
        "time": now, "fieldsType": "FieldsV1", "fieldsV1": field_set(applied, &mut Vec::new()),
    });
    record_manager(&mut object, entry);
    Ok(object)
}

/// Records an `Update` by `manager` that wrote `written` (the body of a create, update or patch).
/// `object` must be a map with a map (or no) `metadata`; anything else is left alone.
pub fn record_update(object: &mut Value, written: &Value, manager: &str, now: &str) {
    if !object.is_object() || !(object["metadata"].is_object() || object["metadata"].is_null()) {
        return;
    }
    let entry = json!({
        "manager": manager, "operation": "Update", "apiVersion": object["apiVersion"].clone(),
        "time": now, "fieldsType": "FieldsV1", "fieldsV1": field_set(written, &mut Vec::new()),
    });
    record_manager(object, entry);
}

fn record_manager(object: &mut Value, entry: Value) {
    let managed = &mut object["metadata"]["managedFields"];
    let mut entries: Vec<Value> = managed.as_array().cloned().unwrap_or_default();
    entries.retain(|e| !(e["manager"] == entry["manager"] && e["operation"] == entry["operation"]));
    entries.push(entry);
    *managed = Value::Array(entries);
}

/// The fields a configuration sets, in the apiserver's `FieldsV1` form: `f:name` for a map key,
/// `k:{"name":"main"}` for a list element known by its merge key.
fn field_set(value: &Value, parents: &mut Vec<String>) -> Value {
    let Value::Object(map) = value else {
        return json!({});
    };
    let mut out = Map::new();
    for (key, v) in map {
        if key.starts_with('$')
            || (parents.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "status"))
            || (parents.len() == 1
                && parents[0] == "metadata"
                && matches!(
                    key.as_str(),
                    "name" | "namespace" | "managedFields" | "resourceVersion"
                ))
        {
            continue;
        }
        let inner = match v {
            Value::Object(_) => {
                parents.push(key.clone());
                let set = field_set(v, parents);
                parents.pop();
                set
            }
            Value::Array(items) => match list_strategy(parents, key) {
                ListStrategy::MergeBy(merge_key) => {
                    let mut elements = Map::new();
                    parents.push(key.clone());
                    for item in items {
                        let id =
                            json!({merge_key: item.get(merge_key).cloned().unwrap_or(Value::Null)});
                        let mut set = field_set(item, parents);
                        if let Value::Object(m) = &mut set {
                            m.insert(".".into(), json!({}));
                        }
                        elements.insert(format!("k:{id}"), set);
                    }
                    parents.pop();
                    Value::Object(elements)
                }
                _ => json!({}),
            },
            _ => json!({}),
        };
        out.insert(format!("f:{key}"), inner);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "main", "image": "nginx:1", "ports": [{"containerPort": 80}],
                 "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "busybox"}
            ]}}}
        })
    }

    #[test]
    fn json_patch_operations_follow_rfc_6902() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x"});
        let ops = json!([
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e~1f"},
            {"op": "remove", "path": "/a/b/1"},
            {"op": "test", "path": "/c", "value": "y"}
        ]);
        assert_eq!(
            json_patch(&doc, &ops).expect("applies"),
            json!({"a": {"b": [0, 2, 3]}, "c": "y", "e/f": "y"})
        );
        let failing = json!([{"op": "test", "path": "/c", "value": "z"}]);
        assert_eq!(
            json_patch(&doc, &failing),
            Err(PatchError::TestFailed("/c".into()))
        );
        let bad = json!([{"op": "remove", "path": "/nope"}]);
        assert!(matches!(
            json_patch(&doc, &bad),
            Err(PatchError::Invalid(_))
        ));
        assert!(json_patch(&doc, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]});
        let patch = json!({"a": "z", "c": {"f": null}, "list": [3]});
        assert_eq!(
            merge_patch(&doc, &patch),
            json!({"a": "z", "c": {"d": "e"}, "list": [3]})
        );
    }

    #[test]
    fn strategic_merge_merges_containers_by_name_and_ports_by_container_port() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "main"}, {"name": "sidecar"}],
            "containers": [{"name": "main", "image": "nginx:2",
                            "ports": [{"containerPort": 443}],
                            "env": [{"name": "B", "value": "2"}]}]
        }}}});
        let out = strategic_merge(&deployment(), &patch).expect("applies");
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(2), "{out}");
        assert_eq!(containers[0]["image"], "nginx:2");
        assert_eq!(
            containers[0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 443}])
        );
        assert_eq!(containers[0]["env"].as_array().map(Vec::len), Some(2));
        assert_eq!(containers[1]["image"], "busybox");
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn strategic_merge_directives() {
        let patch = json!({
            "metadata": {"finalizers": ["b", "a"], "labels": {"app": null, "tier": "front"}},
            "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}
        });
        let out = strategic_merge(&deployment(), &patch).expect("applies");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(out["metadata"]["labels"], json!({"tier": "front"}));
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(1));

        let replace = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "x"}]}}}});
        let out = strategic_merge(&deployment(), &replace).expect("applies");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );

        let delete_from = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = strategic_merge(&deployment(), &delete_from).expect("applies");
        assert_eq!(out["metadata"]["finalizers"], json!([]));

        let retain = json!({"spec": {"$retainKeys": ["template"], "template": {}}});
        let out = strategic_merge(&deployment(), &retain).expect("applies");
        assert!(out["spec"].get("replicas").is_none());

        let keyless = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(strategic_merge(&deployment(), &keyless).is_err());
    }

    #[test]
    fn service_ports_merge_by_port() {
        let service = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        let patch = json!({"spec": {"ports": [{"port": 443, "name": "https"}]}});
        let out = strategic_merge(&service, &patch).expect("applies");
        assert_eq!(out["spec"]["ports"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn apply_merges_and_records_the_manager() {
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}});
        let created = apply(None, &applied, "kubectl", "2026-12-02T00:00:00Z").expect("applies");
        assert_eq!(created["data"]["k"], "v");
        let managed = &created["metadata"]["managedFields"];
        assert_eq!(managed[0]["manager"], "kubectl");
        assert_eq!(managed[0]["operation"], "Apply");
        assert_eq!(
            managed[0]["fieldsV1"],
            json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
        );
        let again = json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "cm"}, "data": {"k": "w", "j": "x"}});
        let updated =
            apply(Some(&created), &again, "kubectl", "2026-12-02T00:00:01Z").expect("applies");
        assert_eq!(updated["data"], json!({"k": "w", "j": "x"}));
        assert_eq!(
            updated["metadata"]["managedFields"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert!(apply(None, &json!([1]), "m", "t").is_err());
    }

    #[test]
    fn content_types_name_their_kind() {
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchKind::Strategic)
        );
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml"),
            Some(PatchKind::Apply)
        );
        assert_eq!(PatchKind::from_content_type("application/json"), None);
    }
}
