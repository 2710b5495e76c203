//! The fake apiserver's object store: pods, configmaps and namespaces with resourceVersions, and
//! the event history watches replay from. Not a real apiserver: no validation beyond names, no
//! field selectors, no patch.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The resources the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Pods,
    ConfigMaps,
    Namespaces,
    /// `discovery.k8s.io/v1` EndpointSlices (kprox discovers apiservers from them).
    EndpointSlices,
}

impl Resource {
    /// Parses the plural name used in URLs.
    pub fn from_plural(plural: &str) -> Option<Self> {
        match plural {
            "pods" => Some(Self::Pods),
            "configmaps" => Some(Self::ConfigMaps),
            "namespaces" => Some(Self::Namespaces),
            "endpointslices" => Some(Self::EndpointSlices),
            _ => None,
        }
    }

    /// The object kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Pods => "Pod",
            Self::ConfigMaps => "ConfigMap",
            Self::Namespaces => "Namespace",
            Self::EndpointSlices => "EndpointSlice",
        }
    }

    /// The group/version objects carry.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::EndpointSlices => "discovery.k8s.io/v1",
            _ => "v1",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Self::Namespaces)
    }
}

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
    #[error("{0}")]
    Invalid(String),
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

/// A fixed timestamp keeps output reproducible; kubectl shows ages relative to it.
const CREATED: &str = "2026-01-01T00:00:00Z";

impl Store {
    /// An empty store with the `default` and `kube-system` namespaces.
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
        for ns in ["default", "kube-system"] {
            let _ = store.create(Resource::Namespaces, "", json!({"metadata": {"name": ns}}));
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
            Resource::Pods,
            namespace,
            json!({
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
                         "nodeName": "fake-node"},
                "status": {"phase": "Running", "podIP": "10.0.0.7",
                           "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                             "image": "registry.k8s.io/pause:3.10", "imageID": "", "started": true,
                             "state": {"running": {"startedAt": CREATED}}}]}
            }),
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
        mut object: Value,
    ) -> Result<Value, StoreError> {
        let name = object_name(&object)?;
        let mut state = self.lock();
        let key = (resource, namespace.to_owned(), name.clone());
        if state.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists(describe(resource, &name)));
        }
        state.resource_version += 1;
        let rv = state.resource_version;
        let uid = state.next_uid;
        state.next_uid += 1;
        object["kind"] = json!(resource.kind());
        object["apiVersion"] = json!(resource.api_version());
        let meta = &mut object["metadata"];
        if resource.namespaced() {
            meta["namespace"] = json!(namespace);
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{uid:012}"));
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(CREATED);
        if resource == Resource::Namespaces {
            object["status"] = json!({"phase": "Active"});
        }
        state.objects.insert(key, object.clone());
        self.record(&mut state, "ADDED", resource, namespace, rv, object.clone());
        Ok(object)
    }

    /// Replaces an existing object.
    pub fn update(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        mut object: Value,
    ) -> Result<Value, StoreError> {
        if object_name(&object)? != name {
            return Err(StoreError::Invalid(
                "the name in the body does not match the URL".into(),
            ));
        }
        let mut state = self.lock();
        let key = (resource, namespace.to_owned(), name.to_owned());
        let old = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(describe(resource, name)))?;
        state.resource_version += 1;
        let rv = state.resource_version;
        object["kind"] = json!(resource.kind());
        object["apiVersion"] = json!(resource.api_version());
        for field in ["uid", "creationTimestamp", "namespace"] {
            if let Some(value) = old["metadata"].get(field) {
                object["metadata"][field] = value.clone();
            }
        }
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        state.objects.insert(key, object.clone());
        self.record(
            &mut state,
            "MODIFIED",
            resource,
            namespace,
            rv,
            object.clone(),
        );
        Ok(object)
    }

    /// Deletes an object and returns it.
    pub fn delete(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, StoreError> {
        let mut state = self.lock();
        let mut object = state
            .objects
            .remove(&(resource, namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| StoreError::NotFound(describe(resource, name)))?;
        state.resource_version += 1;
        let rv = state.resource_version;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(
            &mut state,
            "DELETED",
            resource,
            namespace,
            rv,
            object.clone(),
        );
        Ok(object)
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

/// Whether an event belongs to a watch on `resource` in `namespace` (empty: all namespaces).
pub fn matches(event: &Event, resource: Resource, namespace: &str) -> bool {
    event.resource == resource && (namespace.is_empty() || event.namespace == namespace)
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

fn describe(resource: Resource, name: &str) -> String {
    let plural = match resource {
        Resource::Pods => "pods",
        Resource::ConfigMaps => "configmaps",
        Resource::Namespaces => "namespaces",
        Resource::EndpointSlices => "endpointslices",
    };
    format!("{plural} \"{name}\"")
}
