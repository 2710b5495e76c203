//! A small live cluster for `kprox demo`: a node, a `web` Deployment whose controller keeps a
//! ReplicaSet and its pods at the wanted count (a changed pod template rolls out a new
//! ReplicaSet), a `db-0` pod, a Service, a ConfigMap, a `default` ServiceAccount in every
//! namespace, and the events a real cluster records on the way — so `kubectl get`, `describe`,
//! `logs -f`, `scale`, `rollout status`, `exec` and `port-forward` show something real.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock;
use crate::store::{Resource, Store, StoreError, running_pod, suffix};

const NODE: &str = "demo-node";

/// Puts the demo's objects in `store`.
pub fn seed(store: &Store) -> Result<(), StoreError> {
    let now = clock::now();
    store.create(
        Resource::NODES,
        "",
        json!({
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": NODE}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "nodeInfo": {"kubeletVersion": "v1.32.0", "containerRuntimeVersion": "containerd://1.7.0",
                             "osImage": "kprox demo", "operatingSystem": "linux", "architecture": "amd64",
                             "kernelVersion": "6.1.0"}
            }
        }),
    )?;
    store.create(
        Resource::DEPLOYMENTS,
        "default",
        json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/nginx:1.27",
                                                           "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}
        }),
    )?;
    let mut db = running_pod("db-0", json!({"app": "db"}), "10.244.0.9");
    db["spec"]["containers"][0]["name"] = json!("db");
    db["spec"]["containers"][0]["image"] = json!("registry.k8s.io/postgres:16");
    db["spec"]["nodeName"] = json!(NODE);
    db["status"]["containerStatuses"][0]["name"] = json!("db");
    let db = store.create(Resource::PODS, "default", db)?;
    pod_started_events(store, &db);
    store.create(
        Resource::SERVICES,
        "default",
        json!({"metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}}),
    )?;
    store.create(
        Resource::CONFIG_MAPS,
        "default",
        json!({"metadata": {"name": "web-config"}, "data": {"greeting": "hello from kprox demo"}}),
    )?;
    reconcile(store);
    Ok(())
}

/// Runs the controllers on `store` until the task is dropped: after every change, and once a
/// second, the cluster is brought to what its objects ask for.
pub async fn run(store: Arc<Store>) {
    let mut changes = store.subscribe();
    loop {
        reconcile(&store);
        tokio::select! {
            changed = changes.recv() => {
                if matches!(changed, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One pass of every controller. Writes only what differs, so a pass over a settled cluster
/// changes nothing.
pub fn reconcile(store: &Store) {
    service_accounts(store);
    kubelet(store);
    let (deployments, _) = store.list(Resource::DEPLOYMENTS, "");
    for deployment in &deployments {
        deployment_controller(store, deployment);
    }
    let (replica_sets, _) = store.list(Resource::REPLICA_SETS, "");
    for rs in &replica_sets {
        replica_set_controller(store, rs);
    }
    let (deployments, _) = store.list(Resource::DEPLOYMENTS, "");
    for deployment in &deployments {
        deployment_status(store, deployment);
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn owned_by<'a>(objects: &'a [Value], owner: &Value) -> impl Iterator<Item = &'a Value> {
    let uid = owner["metadata"]["uid"].clone();
    objects.iter().filter(move |o| {
        o["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
    })
}

fn owner_reference(owner: &Value) -> Value {
    json!([{"apiVersion": owner["apiVersion"].clone(), "kind": owner["kind"].clone(),
            "name": owner["metadata"]["name"].clone(), "uid": owner["metadata"]["uid"].clone(),
            "controller": true, "blockOwnerDeletion": true}])
}

fn service_accounts(store: &Store) {
    let (namespaces, _) = store.list(Resource::NAMESPACES, "");
    for ns in namespaces {
        let name = text(&ns["metadata"]["name"]);
        if ns["metadata"]["deletionTimestamp"].is_null()
            && store
                .get(Resource::SERVICE_ACCOUNTS, name, "default")
                .is_err()
        {
            let _ = store.create(
                Resource::SERVICE_ACCOUNTS,
                name,
                json!({"metadata": {"name": "default"}}),
            );
        }
    }
}

/// Runs every pod not yet running (`kubectl run`, a pod created from a manifest) on the node.
fn kubelet(store: &Store) {
    let (pods, _) = store.list(Resource::PODS, "");
    for pod in pods.iter().filter(|p| p["status"]["phase"].is_null()) {
        let (namespace, name) = (
            text(&pod["metadata"]["namespace"]),
            text(&pod["metadata"]["name"]),
        );
        let mut running = pod.clone();
        let ip = format!("10.244.0.{}", 10 + store.resource_version() % 240);
        run_on_node(&mut running, &ip);
        if let Ok(updated) = store.update(Resource::PODS, namespace, name, running) {
            pod_started_events(store, &updated);
        }
    }
}

/// Puts `pod` on the node, running: a kubelet's status with one ready container status for
/// each container of its spec.
fn run_on_node(pod: &mut Value, ip: &str) {
    let name = text(&pod["metadata"]["name"]).to_owned();
    let template = running_pod(&name, Value::Null, ip);
    pod["spec"]["nodeName"] = json!(NODE);
    if pod["spec"]["restartPolicy"].is_null() {
        pod["spec"]["restartPolicy"] = json!("Always");
    }
    let started = template["status"]["startTime"].clone();
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"name": c["name"].clone(), "ready": true, "restartCount": 0, "started": true,
                        "image": c["image"].clone(), "imageID": "", "containerID": "containerd://demo",
                        "state": {"running": {"startedAt": started}}}))
        .collect();
    pod["status"] = template["status"].clone();
    pod["status"]["containerStatuses"] = json!(statuses);
}

/// The template hash a ReplicaSet of `template` is named and labelled by.
fn template_hash(template: &Value) -> String {
    let digest = crate::digest::digest(template.to_string().as_bytes());
    digest.chars().take(10).collect()
}

fn deployment_controller(store: &Store, deployment: &Value) {
    let namespace = text(&deployment["metadata"]["namespace"]);
    let name = text(&deployment["metadata"]["name"]);
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let template = &deployment["spec"]["template"];
    let hash = template_hash(template);
    let (all, _) = store.list(Resource::REPLICA_SETS, namespace);
    let owned: Vec<Value> = owned_by(&all, deployment).cloned().collect();
    let current_name = format!("{name}-{hash}");
    for old in owned
        .iter()
        .filter(|rs| rs["metadata"]["name"] != current_name.as_str())
    {
        let old_name = text(&old["metadata"]["name"]);
        if store
            .delete(Resource::REPLICA_SETS, namespace, old_name)
            .is_ok()
        {
            event(
                store,
                deployment,
                "ScalingReplicaSet",
                &format!(
                    "Scaled down replica set {old_name} from {} to 0",
                    old["spec"]["replicas"].as_i64().unwrap_or(0)
                ),
                "deployment-controller",
            );
        }
    }
    match owned
        .iter()
        .find(|rs| rs["metadata"]["name"] == current_name.as_str())
    {
        Some(rs) if rs["spec"]["replicas"].as_i64() != Some(replicas) => {
            let from = rs["spec"]["replicas"].as_i64().unwrap_or(0);
            let mut scaled = rs.clone();
            scaled["spec"]["replicas"] = json!(replicas);
            if store
                .update(Resource::REPLICA_SETS, namespace, &current_name, scaled)
                .is_ok()
            {
                let verb = if replicas > from { "up" } else { "down" };
                event(
                    store,
                    deployment,
                    "ScalingReplicaSet",
                    &format!("Scaled {verb} replica set {current_name} from {from} to {replicas}"),
                    "deployment-controller",
                );
            }
        }
        Some(_) => {}
        None => {
            let mut labels = template["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels["pod-template-hash"] = json!(hash);
            let mut pod_template = template.clone();
            pod_template["metadata"]["labels"] = labels.clone();
            let mut selector = deployment["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let rs = json!({
                "metadata": {"name": current_name, "labels": labels, "ownerReferences": owner_reference(deployment),
                             "annotations": {"deployment.kubernetes.io/revision": "1"}},
                "spec": {"replicas": replicas, "selector": selector, "template": pod_template}
            });
            if store.create(Resource::REPLICA_SETS, namespace, rs).is_ok() {
                event(
                    store,
                    deployment,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {current_name} from 0 to {replicas}"),
                    "deployment-controller",
                );
            }
        }
    }
}

fn replica_set_controller(store: &Store, rs: &Value) {
    let namespace = text(&rs["metadata"]["namespace"]);
    let name = text(&rs["metadata"]["name"]);
    let wanted = usize::try_from(rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0)).unwrap_or(0);
    let (pods, _) = store.list(Resource::PODS, namespace);
    let owned: Vec<&Value> = owned_by(&pods, rs).collect();
    for extra in owned.iter().skip(wanted) {
        let pod = text(&extra["metadata"]["name"]);
        if store.delete(Resource::PODS, namespace, pod).is_ok() {
            event(
                store,
                rs,
                "SuccessfulDelete",
                &format!("Deleted pod: {pod}"),
                "replicaset-controller",
            );
            event(
                store,
                extra,
                "Killing",
                &format!(
                    "Stopping container {}",
                    text(&extra["spec"]["containers"][0]["name"])
                ),
                "kubelet",
            );
        }
    }
    for n in owned.len()..wanted {
        let seed = store.resource_version() + n as u64;
        let pod_name = format!("{name}-{}", suffix(seed));
        let template = &rs["spec"]["template"];
        let ip = format!("10.244.0.{}", 10 + seed % 240);
        let mut pod = json!({"metadata": {"name": pod_name, "labels": template["metadata"]["labels"].clone()},
                             "spec": template["spec"].clone()});
        run_on_node(&mut pod, &ip);
        pod["metadata"]["ownerReferences"] = owner_reference(rs);
        if let Ok(created) = store.create(Resource::PODS, namespace, pod) {
            event(
                store,
                rs,
                "SuccessfulCreate",
                &format!("Created pod: {pod_name}"),
                "replicaset-controller",
            );
            pod_started_events(store, &created);
        }
    }
    let (pods, _) = store.list(Resource::PODS, namespace);
    let count = i64::try_from(owned_by(&pods, rs).count()).unwrap_or(0);
    let status = json!({"replicas": count, "fullyLabeledReplicas": count, "readyReplicas": count,
                        "availableReplicas": count, "observedGeneration": rs["metadata"]["generation"].clone()});
    if let Ok(mut current) = store.get(Resource::REPLICA_SETS, namespace, name)
        && current["status"] != status
    {
        current["status"] = status;
        let _ = store.update(Resource::REPLICA_SETS, namespace, name, current);
    }
}

fn deployment_status(store: &Store, deployment: &Value) {
    let namespace = text(&deployment["metadata"]["namespace"]);
    let name = text(&deployment["metadata"]["name"]);
    let (all, _) = store.list(Resource::REPLICA_SETS, namespace);
    let ready: i64 = owned_by(&all, deployment)
        .map(|rs| rs["status"]["readyReplicas"].as_i64().unwrap_or(0))
        .sum();
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "reason": reason, "message": message});
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"].clone(),
        "replicas": ready, "updatedReplicas": ready, "readyReplicas": ready, "availableReplicas": ready,
        "conditions": [condition("Available", "MinimumReplicasAvailable", "Deployment has minimum availability."),
                       condition("Progressing", "NewReplicaSetAvailable", &format!("ReplicaSet \"{name}-{}\" has successfully progressed.", template_hash(&deployment["spec"]["template"])))]
    });
    if ready != replicas {
        status["conditions"][1]["reason"] = json!("ReplicaSetUpdated");
    }
    // Timestamps only when the conditions change, so a settled deployment is left alone.
    let unchanged = |a: &Value, b: &Value| {
        let strip = |v: &Value| {
            let mut v = v.clone();
            for c in v["conditions"].as_array_mut().into_iter().flatten() {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastUpdateTime");
                    c.remove("lastTransitionTime");
                }
            }
            v
        };
        strip(a) == strip(b)
    };
    if let Ok(mut current) = store.get(Resource::DEPLOYMENTS, namespace, name)
        && !unchanged(&current["status"], &status)
    {
        let now = clock::now();
        for c in status["conditions"].as_array_mut().into_iter().flatten() {
            c["lastUpdateTime"] = json!(now);
            c["lastTransitionTime"] = json!(now);
        }
        current["status"] = status;
        let _ = store.update(Resource::DEPLOYMENTS, namespace, name, current);
    }
}

fn pod_started_events(store: &Store, pod: &Value) {
    let name = text(&pod["metadata"]["name"]);
    event(
        store,
        pod,
        "Scheduled",
        &format!(
            "Successfully assigned {}/{name} to {NODE}",
            text(&pod["metadata"]["namespace"])
        ),
        "default-scheduler",
    );
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let (c, image) = (text(&container["name"]), text(&container["image"]));
        event(
            store,
            pod,
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
            "kubelet",
        );
        event(
            store,
            pod,
            "Created",
            &format!("Created container: {c}"),
            "kubelet",
        );
        event(
            store,
            pod,
            "Started",
            &format!("Started container {c}"),
            "kubelet",
        );
    }
}

/// Records a `Normal` event about `object`, now.
pub fn event(store: &Store, object: &Value, reason: &str, message: &str, component: &str) {
    event_at(store, object, &clock::now(), reason, message, component);
}

fn event_at(
    store: &Store,
    object: &Value,
    now: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let meta = &object["metadata"];
    let namespace = meta["namespace"].as_str().unwrap_or("default");
    let name = format!(
        "{}.{}",
        text(&meta["name"]),
        suffix(store.resource_version())
    );
    let _ = store.create(
        Resource::EVENTS,
        namespace,
        json!({
            "metadata": {"name": name},
            "involvedObject": {"kind": object["kind"].clone(), "namespace": namespace, "name": meta["name"].clone(),
                               "uid": meta["uid"].clone(), "apiVersion": object["apiVersion"].clone(),
                               "resourceVersion": meta["resourceVersion"].clone()},
            "reason": reason, "message": message, "type": "Normal", "count": 1,
            "source": {"component": component, "host": if component == "kubelet" { NODE } else { "" }},
            "firstTimestamp": now, "lastTimestamp": now, "reportingComponent": component,
            "reportingInstance": ""
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web_pods(store: &Store) -> Vec<Value> {
        let (pods, _) = store.list(Resource::PODS, "default");
        pods.into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "web")
            .collect()
    }

    #[test]
    fn the_deployment_gets_its_pods_and_settles() {
        let store = Store::new();
        seed(&store).expect("seeds");
        for _ in 0..3 {
            reconcile(&store);
        }
        assert_eq!(web_pods(&store).len(), 2);
        let deployment = store
            .get(Resource::DEPLOYMENTS, "default", "web")
            .expect("web");
        assert_eq!(deployment["status"]["availableReplicas"], 2);
        assert_eq!(
            deployment["status"]["observedGeneration"],
            deployment["metadata"]["generation"]
        );
        let settled = store.resource_version();
        reconcile(&store);
        assert_eq!(
            store.resource_version(),
            settled,
            "a settled cluster is left alone"
        );
        assert!(
            store
                .get(Resource::SERVICE_ACCOUNTS, "default", "default")
                .is_ok()
        );
        let (events, _) = store.list(Resource::EVENTS, "default");
        assert!(events.iter().any(|e| e["reason"] == "ScalingReplicaSet"));
        assert!(events.iter().any(|e| e["reason"] == "Started"));
    }

    #[test]
    fn scaling_and_a_new_template_roll_the_pods() {
        let store = Store::new();
        seed(&store).expect("seeds");
        let mut deployment = store
            .get(Resource::DEPLOYMENTS, "default", "web")
            .expect("web");
        deployment["spec"]["replicas"] = json!(3);
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        store
            .update(Resource::DEPLOYMENTS, "default", "web", deployment)
            .expect("update");
        for _ in 0..3 {
            reconcile(&store);
        }
        let pods = web_pods(&store);
        assert_eq!(pods.len(), 3);
        assert!(
            pods.iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:2")
        );
        let (sets, _) = store.list(Resource::REPLICA_SETS, "default");
        assert_eq!(sets.len(), 1, "the old replica set is gone");
    }
}
