//! The fake apiserver's object store, generic over the types of [`crate::resource_types`]:
//! objects with the metadata the apiserver keeps (uid, resourceVersion, generation,
//! creationTimestamp, managedFields; finalizers hold a deletion with `deletionTimestamp`;
//! owner references cascade deletions, as the garbage collector does), writes that can be
//! dry runs, optimistic concurrency on `metadata.resourceVersion`, patches of every kind, and
//! the event history watches replay from.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::clock;
use crate::patch::{self, PatchError, PatchKind};
pub use crate::resource_types::Resource;

/// A change, as a watch reports it.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: &'static str,
    pub resource: Resource,
    pub namespace: String,
    pub resource_version: u64,
    pub object: Value,
}

/// Why a store operation failed, mapped to a Kubernetes `Status` by the server.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A write from a stale resourceVersion (409 Conflict).
    #[error(
        "Operation cannot be fulfilled on {0}: the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<PatchError> for StoreError {
    fn from(error: PatchError) -> Self {
        match error {
            PatchError::TestFailed(_) => Self::Conflict(error.to_string()),
            PatchError::Invalid(_) => Self::Invalid(error.to_string()),
        }
    }
}

/// How a write is made: `dryRun=All` computes the answer without storing it; `fieldManager`
/// names who wrote (recorded in `managedFields`).
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
}

type Key = (Resource, String, String);

struct State {
    objects: BTreeMap<Key, Value>,
    history: Vec<Event>,
    /// Events at or below this version were dropped: a watch from before it gets 410 Gone.
    compacted_to: u64,
    resource_version: u64,
    next_uid: u64,
}

/// Objects and their history. Cheap to share behind an `Arc`.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// Events the store remembers for watches that start from a past version.
pub const HISTORY_LIMIT: usize = 10_000;

impl Store {
    /// A store with the namespaces every cluster has and their `default` service accounts.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        let store = Self {
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                history: Vec::new(),
                compacted_to: 0,
                resource_version: 100,
                next_uid: 1,
            }),
            events,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = store.create(Resource::NAMESPACES, "", json!({"metadata": {"name": ns}}));
        }
        store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would be a testkit bug; keep serving regardless.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// Adds a running pod named `name` in `namespace`.
    pub fn add_pod(&self, namespace: &str, name: &str) -> Result<Value, StoreError> {
        self.create(
            Resource::PODS,
            namespace,
            running_pod(name, json!({"app": name}), "10.0.0.7"),
        )
    }

    /// Lists objects (all namespaces when `namespace` is empty), with the list's version.
    pub fn list(&self, resource: Resource, namespace: &str) -> (Vec<Value>, u64) {
        let state = self.lock();
        let items = state
            .objects
            .iter()
            .filter(|((r, ns, _), _)| *r == resource && (namespace.is_empty() || ns == namespace))
            .map(|(_, v)| v.clone())
            .collect();
        (items, state.resource_version)
    }

    /// Gets one object.
    pub fn get(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, StoreError> {
        self.lock()
            .objects
            .get(&(resource, namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| StoreError::NotFound(describe(resource, name)))
    }

    /// Creates an object, filling in its metadata.
    pub fn create(
        &self,
        resource: Resource,
        namespace: &str,
        object: Value,
    ) -> Result<Value, StoreError> {
        self.create_with(resource, namespace, object, &WriteOptions::default())
    }

    /// Creates an object as `options` say.
    pub fn create_with(
        &self,
        resource: Resource,
        namespace: &str,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Value, StoreError> {
        let mut state = self.lock();
        self.insert_new(&mut state, resource, namespace, object, options)
    }

    /// Replaces an existing object.
    pub fn update(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> Result<Value, StoreError> {
        self.update_with(resource, namespace, name, object, &WriteOptions::default())
    }

    /// Replaces an existing object as `options` say; a `metadata.resourceVersion` in the body
    /// must be the current one.
    pub fn update_with(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<Value, StoreError> {
        if object_name(&object)? != name {
            return Err(StoreError::Invalid(
                "the name in the body does not match the URL".into(),
            ));
        }
        let mut state = self.lock();
        let old = current(&state, resource, namespace, name)?;
        if let Some(manager) = &options.field_manager {
            let written = object.clone();
            patch::record_update(&mut object, &written, manager, &clock::now());
        }
        self.replace(&mut state, resource, namespace, &old, object, options)
    }

    /// Patches an object; an apply patch creates it when it does not exist. Returns the object
    /// and whether it was created.
    pub fn patch(
        &self,
        resource: Resource,
        target: (&str, &str),
        kind: PatchKind,
        body: &Value,
        options: &WriteOptions,
    ) -> Result<(Value, bool), StoreError> {
        let (namespace, name) = target;
        let mut state = self.lock();
        let old = current(&state, resource, namespace, name);
        let now = clock::now();
        if kind == PatchKind::Apply {
            let manager = options.field_manager.as_deref().ok_or_else(|| {
                StoreError::Invalid(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                )
            })?;
            if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                return Err(StoreError::Invalid(
                    "the name of the applied object does not match the URL".into(),
                ));
            }
            let live = old.as_ref().ok();
            let mut object = patch::apply(live, body, manager, &now)?;
            object["metadata"]["name"] = json!(name);
            return match old {
                Ok(old) => self
                    .replace(&mut state, resource, namespace, &old, object, options)
                    .map(|o| (o, false)),
                Err(_) => self
                    .insert_new(&mut state, resource, namespace, object, options)
                    .map(|o| (o, true)),
            };
        }
        let old = old?;
        let mut object = kind.patch(&old, body)?;
        well_formed(&object)?;
        // A patch that names no resourceVersion applies to whatever is current.
        if body["metadata"]["resourceVersion"].is_null() || kind == PatchKind::Json {
            object["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        }
        if let Some(manager) = &options.field_manager {
            patch::record_update(&mut object, body, manager, &now);
        }
        self.replace(&mut state, resource, namespace, &old, object, options)
            .map(|o| (o, false))
    }

    /// Deletes an object and returns it; one with finalizers is only marked for deletion.
    pub fn delete(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, StoreError> {
        self.delete_with(resource, namespace, name, &WriteOptions::default())
    }

    /// Deletes as `options` say.
    pub fn delete_with(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        options: &WriteOptions,
    ) -> Result<Value, StoreError> {
        let mut state = self.lock();
        let old = current(&state, resource, namespace, name)?;
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            let mut marked = old.clone();
            if marked["metadata"]["deletionTimestamp"].is_null() {
                marked["metadata"]["deletionTimestamp"] = json!(clock::now());
            }
            return self.replace(&mut state, resource, namespace, &old, marked, options);
        }
        if options.dry_run {
            return Ok(old);
        }
        Ok(self.remove(&mut state, resource, namespace, name))
    }

    /// Forgets history up to now: watches from an older version get `410 Gone`.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.compacted_to = state.resource_version;
        state.history.clear();
    }

    /// Watches open on this store now (each holds a receiver until its stream ends).
    pub fn watchers(&self) -> usize {
        self.events.receiver_count()
    }

    /// A receiver of every change from now on (the demo's controllers follow it).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Events after `since` for a resource, plus a receiver for later ones; `Err` when `since`
    /// is older than the compacted history. Taken under one lock so nothing falls in between.
    pub fn watch_from(
        &self,
        resource: Resource,
        namespace: &str,
        since: u64,
    ) -> Result<(Vec<Event>, broadcast::Receiver<Event>), u64> {
        let state = self.lock();
        if since < state.compacted_to {
            return Err(state.compacted_to);
        }
        let past = state
            .history
            .iter()
            .filter(|e| e.resource_version > since && matches(e, resource, namespace))
            .cloned()
            .collect();
        Ok((past, self.events.subscribe()))
    }

    fn insert_new(
        &self,
        state: &mut State,
        resource: Resource,
        namespace: &str,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<Value, StoreError> {
        well_formed(&object)?;
        if resource.namespaced() && namespace.is_empty() {
            return Err(StoreError::Invalid(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        if let Some(body_ns) = object["metadata"]["namespace"].as_str()
            && resource.namespaced()
            && !body_ns.is_empty()
            && body_ns != namespace
        {
            return Err(StoreError::Invalid(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        if resource.namespaced()
            && resource != Resource::EVENTS
            && !state.objects.contains_key(&(
                Resource::NAMESPACES,
                String::new(),
                namespace.to_owned(),
            ))
        {
            return Err(StoreError::NotFound(describe(
                Resource::NAMESPACES,
                namespace,
            )));
        }
        if object["metadata"]["name"]
            .as_str()
            .is_none_or(str::is_empty)
            && let Some(prefix) = object["metadata"]["generateName"].as_str()
        {
            object["metadata"]["name"] = json!(format!("{prefix}{}", suffix(state.next_uid)));
        }
        let name = object_name(&object)?;
        let key = (resource, namespace.to_owned(), name.clone());
        if state.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists(describe(resource, &name)));
        }
        let uid = state.next_uid;
        if !options.dry_run {
            state.next_uid += 1;
        }
        object["kind"] = json!(resource.kind());
        object["apiVersion"] = json!(resource.api_version());
        let now = clock::now();
        if let Some(manager) = &options.field_manager
            && object["metadata"]["managedFields"].is_null()
        {
            let written = object.clone();
            patch::record_update(&mut object, &written, manager, &now);
        }
        let meta = &mut object["metadata"];
        if resource.namespaced() {
            meta["namespace"] = json!(namespace);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{uid:012}"));
        meta["creationTimestamp"] = json!(now);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
        }
        if resource.generation {
            meta["generation"] = json!(1);
        }
        if resource == Resource::SERVICES
            && object["spec"]["clusterIP"]
                .as_str()
                .is_none_or(str::is_empty)
            && object["spec"]["type"] != "ExternalName"
        {
            object["spec"]["clusterIP"] =
                json!(format!("10.96.{}.{}", uid / 250 % 250, uid % 250 + 2));
        }
        if resource == Resource::NAMESPACES {
            object["status"] = json!({"phase": "Active"});
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        if resource.review {
            return Ok(object);
        }
        if options.dry_run {
            return Ok(object);
        }
        state.resource_version += 1;
        let rv = state.resource_version;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        state.objects.insert(key, object.clone());
        self.record(state, "ADDED", resource, namespace, rv, object.clone());
        Ok(object)
    }

    /// Stores `object` in place of `old` (same key), keeping what the server owns.
    fn replace(
        &self,
        state: &mut State,
        resource: Resource,
        namespace: &str,
        old: &Value,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<Value, StoreError> {
        well_formed(&object)?;
        let name = object_name(old)?;
        if object_name(&object)? != name {
            return Err(StoreError::Invalid(
                "the name of an object cannot be changed".into(),
            ));
        }
        let sent = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !sent.is_empty() && Some(sent) != old["metadata"]["resourceVersion"].as_str() {
            return Err(StoreError::Conflict(describe(resource, &name)));
        }
        object["kind"] = json!(resource.kind());
        object["apiVersion"] = json!(resource.api_version());
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "managedFields",
        ] {
            if let Some(value) = old["metadata"].get(field)
                && (field != "managedFields" || object["metadata"][field].is_null())
                && (field != "deletionTimestamp" || object["metadata"][field].is_null())
            {
                object["metadata"][field] = value.clone();
            }
        }
        if resource.generation {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = old["spec"] != object["spec"];
            object["metadata"]["generation"] = json!(generation + i64::from(changed));
        }
        if resource == Resource::NAMESPACES && object["status"].is_null() {
            object["status"] = old["status"].clone();
        }
        let finalized = object["metadata"]["deletionTimestamp"].is_string()
            && object["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        if options.dry_run {
            return Ok(object);
        }
        if finalized {
            // The last finalizer is gone from an object being deleted: it goes now.
            return Ok(self.remove(state, resource, namespace, &name));
        }
        state.resource_version += 1;
        let rv = state.resource_version;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        state
            .objects
            .insert((resource, namespace.to_owned(), name), object.clone());
        self.record(state, "MODIFIED", resource, namespace, rv, object.clone());
        Ok(object)
    }

    /// Removes an object, and what it owns (by owner reference) or contains (a namespace's).
    fn remove(&self, state: &mut State, resource: Resource, namespace: &str, name: &str) -> Value {
        let key = (resource, namespace.to_owned(), name.to_owned());
        let Some(mut object) = state.objects.remove(&key) else {
            return Value::Null;
        };
        state.resource_version += 1;
        let rv = state.resource_version;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(state, "DELETED", resource, namespace, rv, object.clone());
        let uid = object["metadata"]["uid"].clone();
        let dependents: Vec<Key> = state
            .objects
            .iter()
            .filter(|((r, ns, _), o)| {
                let owned = o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid));
                let contained = resource == Resource::NAMESPACES && r.namespaced() && ns == name;
                owned || contained
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (r, ns, n) in dependents {
            self.remove(state, r, &ns, &n);
        }
        object
    }

    fn record(
        &self,
        state: &mut State,
        kind: &'static str,
        resource: Resource,
        namespace: &str,
        rv: u64,
        object: Value,
    ) {
        let event = Event {
            kind,
            resource,
            namespace: namespace.to_owned(),
            resource_version: rv,
            object,
        };
        state.history.push(event.clone());
        // A bounded history, as the watch cache keeps about 75 s of it: a watch from a version
        // older than what is kept gets 410 Gone.
        if state.history.len() > HISTORY_LIMIT {
            let dropped: Vec<Event> = state.history.drain(..HISTORY_LIMIT / 10).collect();
            if let Some(last) = dropped.last() {
                state.compacted_to = state.compacted_to.max(last.resource_version);
            }
        }
        // No receiver is not an error: nobody is watching.
        let _ = self.events.send(event);
    }
}

fn current(
    state: &State,
    resource: Resource,
    namespace: &str,
    name: &str,
) -> Result<Value, StoreError> {
    state
        .objects
        .get(&(resource, namespace.to_owned(), name.to_owned()))
        .cloned()
        .ok_or_else(|| StoreError::NotFound(describe(resource, name)))
}

/// A running pod as a kubelet reports it.
pub fn running_pod(name: &str, labels: Value, ip: &str) -> Value {
    let started = clock::now();
    json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}],
                 "nodeName": "fake-node", "restartPolicy": "Always", "serviceAccountName": "default"},
        "status": {"phase": "Running", "podIP": ip, "hostIP": "10.0.0.1", "startTime": started,
                   "qosClass": "BestEffort",
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started},
                                  {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
                                  {"type": "PodScheduled", "status": "True", "lastTransitionTime": started}],
                   "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                     "image": "registry.k8s.io/pause:3.10", "imageID": "", "started": true,
                     "containerID": "containerd://0000", "state": {"running": {"startedAt": started}}}]}
    })
}

/// Five characters for a generated name, from a number (`generateName` and pod suffixes).
pub fn suffix(n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
    (0..5)
        .map(|_| {
            let c = ALPHABET[usize::try_from(x % 27).unwrap_or(0)];
            x /= 27;
            char::from(c)
        })
        .collect()
}

/// Whether an event belongs to a watch on `resource` in `namespace` (empty: all namespaces).
pub fn matches(event: &Event, resource: Resource, namespace: &str) -> bool {
    event.resource == resource && (namespace.is_empty() || event.namespace == namespace)
}

/// The shape every stored object has: a map whose `metadata`, `spec` and `status` are maps
/// when present (the server writes into them, and a write into a string would be a panic).
fn well_formed(object: &Value) -> Result<(), StoreError> {
    if !object.is_object() {
        return Err(StoreError::Invalid("the body is not an object".into()));
    }
    for field in ["metadata", "spec", "status"] {
        let value = &object[field];
        if !value.is_null() && !value.is_object() {
            return Err(StoreError::Invalid(format!(
                "{field}: Invalid value: must be an object"
            )));
        }
    }
    for field in ["labels", "annotations"] {
        let value = &object["metadata"][field];
        let strings = value
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string));
        if !value.is_null() && !strings {
            return Err(StoreError::Invalid(format!(
                "metadata.{field}: Invalid value: must be a map of strings"
            )));
        }
    }
    Ok(())
}

fn object_name(object: &Value) -> Result<String, StoreError> {
    match object["metadata"]["name"].as_str() {
        Some(name) if !name.is_empty() && name.len() <= 253 && !name.contains('/') => {
            Ok(name.to_owned())
        }
        _ => Err(StoreError::Invalid(
            "metadata.name is required and must be a valid name".into(),
        )),
    }
}

/// `pods "web-0"` or `deployments.apps "web"`, as the apiserver names an object in errors.
pub fn describe(resource: Resource, name: &str) -> String {
    if resource.group.is_empty() {
        format!("{} \"{name}\"", resource.plural)
    } else {
        format!("{}.{} \"{name}\"", resource.plural, resource.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"metadata": {"name": name}, "data": {"k": "v"}})
    }

    #[test]
    fn writes_fill_metadata_and_dry_runs_store_nothing() {
        let store = Store::new();
        let dry = WriteOptions {
            dry_run: true,
            field_manager: None,
        };
        let before = store.resource_version();
        let answer = store
            .create_with(Resource::CONFIG_MAPS, "default", cm("a"), &dry)
            .expect("dry create");
        assert_eq!(answer["metadata"]["namespace"], "default");
        assert_eq!(store.resource_version(), before);
        assert!(store.get(Resource::CONFIG_MAPS, "default", "a").is_err());

        let created = store
            .create(Resource::CONFIG_MAPS, "default", cm("a"))
            .expect("create");
        assert!(created["metadata"]["uid"].is_string());
        assert!(created["metadata"]["creationTimestamp"].is_string());
        let rv = created["metadata"]["resourceVersion"].clone();
        let (patched, created_now) = store
            .patch(
                Resource::CONFIG_MAPS,
                ("default", "a"),
                PatchKind::Merge,
                &json!({"data": {"k": "w"}}),
                &dry,
            )
            .expect("dry patch");
        assert!(!created_now);
        assert_eq!(patched["data"]["k"], "w");
        let stored = store
            .get(Resource::CONFIG_MAPS, "default", "a")
            .expect("get");
        assert_eq!(stored["data"]["k"], "v");
        assert_eq!(stored["metadata"]["resourceVersion"], rv);
        store
            .delete_with(Resource::CONFIG_MAPS, "default", "a", &dry)
            .expect("dry delete");
        assert!(store.get(Resource::CONFIG_MAPS, "default", "a").is_ok());
    }

    #[test]
    fn a_stale_resource_version_conflicts() {
        let store = Store::new();
        let created = store
            .create(Resource::CONFIG_MAPS, "default", cm("a"))
            .expect("create");
        let mut first = created.clone();
        first["data"]["k"] = json!("1");
        store
            .update(Resource::CONFIG_MAPS, "default", "a", first)
            .expect("fresh update");
        let mut stale = created;
        stale["data"]["k"] = json!("2");
        assert!(matches!(
            store.update(Resource::CONFIG_MAPS, "default", "a", stale),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn finalizers_hold_a_deletion_until_they_are_removed() {
        let store = Store::new();
        let mut object = cm("held");
        object["metadata"]["finalizers"] = json!(["example.com/hold"]);
        store
            .create(Resource::CONFIG_MAPS, "default", object)
            .expect("create");
        let marked = store
            .delete(Resource::CONFIG_MAPS, "default", "held")
            .expect("delete");
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        assert!(store.get(Resource::CONFIG_MAPS, "default", "held").is_ok());
        store
            .patch(
                Resource::CONFIG_MAPS,
                ("default", "held"),
                PatchKind::Merge,
                &json!({"metadata": {"finalizers": null}}),
                &WriteOptions::default(),
            )
            .expect("patch");
        assert!(store.get(Resource::CONFIG_MAPS, "default", "held").is_err());
    }

    #[test]
    fn generation_counts_spec_changes_and_owners_cascade() {
        let store = Store::new();
        let deployment = store
            .create(
                Resource::DEPLOYMENTS,
                "default",
                json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}}),
            )
            .expect("create");
        assert_eq!(deployment["metadata"]["generation"], 1);
        let options = WriteOptions::default();
        let (scaled, _) = store
            .patch(
                Resource::DEPLOYMENTS,
                ("default", "web"),
                PatchKind::Strategic,
                &json!({"spec": {"replicas": 3}}),
                &options,
            )
            .expect("patch");
        assert_eq!(scaled["metadata"]["generation"], 2);
        let (labelled, _) = store
            .patch(
                Resource::DEPLOYMENTS,
                ("default", "web"),
                PatchKind::Strategic,
                &json!({"metadata": {"labels": {"a": "b"}}}),
                &options,
            )
            .expect("patch");
        assert_eq!(labelled["metadata"]["generation"], 2);
        let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                            "uid": deployment["metadata"]["uid"].clone(), "controller": true}]);
        store
            .create(
                Resource::PODS,
                "default",
                json!({"metadata": {"name": "web-x", "ownerReferences": owner}}),
            )
            .expect("create pod");
        store
            .delete(Resource::DEPLOYMENTS, "default", "web")
            .expect("delete");
        assert!(store.get(Resource::PODS, "default", "web-x").is_err());
    }

    #[test]
    fn malformed_objects_and_patches_are_refused_not_stored() {
        let store = Store::new();
        for body in [
            json!("a string"),
            json!({"metadata": "x"}),
            json!({"metadata": {"name": "a", "labels": {"n": 1}}}),
            json!({"metadata": {"name": "a"}, "spec": [1]}),
        ] {
            assert!(
                matches!(
                    store.create(Resource::PODS, "default", body.clone()),
                    Err(StoreError::Invalid(_))
                ),
                "{body}"
            );
        }
        store
            .create(Resource::CONFIG_MAPS, "default", cm("a"))
            .expect("create");
        let options = WriteOptions {
            dry_run: false,
            field_manager: Some("m".into()),
        };
        for (kind, body) in [
            (
                PatchKind::Json,
                json!([{"op": "replace", "path": "", "value": "x"}]),
            ),
            (
                PatchKind::Json,
                json!([{"op": "replace", "path": "/metadata", "value": 1}]),
            ),
            (PatchKind::Merge, json!({"metadata": "x"})),
            (PatchKind::Strategic, json!({"metadata": ["x"]})),
            (PatchKind::Apply, json!({"metadata": "x"})),
        ] {
            assert!(
                store
                    .patch(
                        Resource::CONFIG_MAPS,
                        ("default", "a"),
                        kind,
                        &body,
                        &options
                    )
                    .is_err(),
                "{kind:?} {body}"
            );
        }
        assert_eq!(
            store
                .get(Resource::CONFIG_MAPS, "default", "a")
                .expect("kept")["data"]["k"],
            "v"
        );
    }

    #[test]
    fn apply_creates_then_updates_and_needs_a_manager() {
        let store = Store::new();
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let manager = WriteOptions {
            dry_run: false,
            field_manager: Some("kubectl".into()),
        };
        let (_, created) = store
            .patch(
                Resource::CONFIG_MAPS,
                ("default", "a"),
                PatchKind::Apply,
                &applied,
                &manager,
            )
            .expect("apply creates");
        assert!(created);
        let (_, created) = store
            .patch(
                Resource::CONFIG_MAPS,
                ("default", "a"),
                PatchKind::Apply,
                &applied,
                &manager,
            )
            .expect("apply updates");
        assert!(!created);
        assert!(matches!(
            store.patch(
                Resource::CONFIG_MAPS,
                ("default", "a"),
                PatchKind::Apply,
                &applied,
                &WriteOptions::default()
            ),
            Err(StoreError::Invalid(_))
        ));
        assert!(
            store
                .create(Resource::CONFIG_MAPS, "nowhere", cm("b"))
                .is_err(),
            "a namespace that does not exist refuses objects"
        );
    }
}
