//! The convergence checker: clients modelled on client-go's reflector keep a cache of
//! ConfigMaps through kprox while three fake apiservers (one store, like one etcd) are killed,
//! stalled, lagged, compacted, sent GOAWAY and cut mid-stream at random, and the objects are
//! created, updated and deleted all along. At the end every client's cache must equal the
//! store. Lost objects (missing or stale), ghosts (kept after their deletion) and duplicated
//! events (one seen twice) are counted per kind of client.
//!
//! Four kinds, as real clients come: JSON or protobuf watch streams, each as list+watch (LIST,
//! then watch from its version) or as WatchList (`sendInitialEvents=true`: the initial events
//! collected aside and swapped in at the `k8s.io/initial-events-end` bookmark). Like the
//! reflector, a client re-watches from its last version after a clean end or a broken stream,
//! starts over (relist, or a new WatchList) after an `ERROR` event or a 410, and treats a
//! WatchList that ends before its bookmark as not started.
//!
//! Used by `tests/convergence.rs` (a short run) and `kprox-bench convergence` (the long one,
//! whose figures go to `benches/results/convergence.*`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use kprox_testkit::protobuf_watch;
use kprox_testkit::{Behaviour, FakeApiServer, FakeCluster, FakeOptions, Resource, Store};
use serde_json::{Value, json};

use crate::load::{Target, connect};
use crate::subject::{Launch, Subject};

const TOKEN: &str = "convergence-token-41d7";
const NAMESPACE: &str = "converge";
/// Objects the mutations choose among.
const NAMES: usize = 40;

/// What to run.
#[derive(Clone, Debug)]
pub struct ConvergenceOptions {
    pub kprox: PathBuf,
    /// Clients of each of the four kinds.
    pub watches_per_kind: usize,
    /// Faults injected in all.
    pub faults: usize,
    /// Time between two faults.
    pub fault_every: Duration,
    /// Creates, updates and deletes per second.
    pub mutations_per_second: f64,
    /// How long the clients get, once the faults stop, to catch up.
    pub settle: Duration,
}

/// How a client's watch stream is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

/// How a client starts its cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    ListWatch,
    WatchList,
}

/// A kind of client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub encoding: Encoding,
    pub mode: Mode,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind {
            encoding: Encoding::Json,
            mode: Mode::ListWatch,
        },
        Kind {
            encoding: Encoding::Json,
            mode: Mode::WatchList,
        },
        Kind {
            encoding: Encoding::Protobuf,
            mode: Mode::ListWatch,
        },
        Kind {
            encoding: Encoding::Protobuf,
            mode: Mode::WatchList,
        },
    ];

    pub fn name(self) -> String {
        let encoding = match self.encoding {
            Encoding::Json => "JSON",
            Encoding::Protobuf => "protobuf",
        };
        let mode = match self.mode {
            Mode::ListWatch => "list+watch",
            Mode::WatchList => "WatchList",
        };
        format!("{encoding} {mode}")
    }
}

/// What one kind of client saw, summed over its clients.
#[derive(Clone, Debug, Default)]
pub struct KindReport {
    pub kind: String,
    pub clients: usize,
    /// Watch requests made (first ones and re-watches).
    pub watches: u64,
    pub events: u64,
    /// Starts over after an ERROR, a 410 or a WatchList broken before its bookmark.
    pub restarts: u64,
    /// Objects of the store missing from a client's cache, or older there.
    pub lost: u64,
    /// Objects in a client's cache that the store no longer has.
    pub ghosts: u64,
    /// Events a client had already applied.
    pub duplicated: u64,
}

/// The run's result.
#[derive(Clone, Debug, Default)]
pub struct ConvergenceReport {
    pub seconds: f64,
    pub mutations: u64,
    pub faults: Vec<(String, u64)>,
    pub kinds: Vec<KindReport>,
    /// Whether every cache equalled the store within the settle time.
    pub converged: bool,
}

impl ConvergenceReport {
    pub fn faults_total(&self) -> u64 {
        self.faults.iter().map(|(_, n)| n).sum()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "seconds": self.seconds,
            "mutations": self.mutations,
            "faults": self.faults.iter().map(|(k, n)| json!({"fault": k, "count": n})).collect::<Vec<_>>(),
            "faults_total": self.faults_total(),
            "converged": self.converged,
            "kinds": self.kinds.iter().map(|k| json!({
                "kind": k.kind, "clients": k.clients, "watches": k.watches, "events": k.events,
                "restarts": k.restarts, "lost": k.lost, "ghosts": k.ghosts, "duplicated": k.duplicated,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "Convergence: {} faults in {:.0} s, {} mutations; every cache equal to the store: {}\n\n",
            self.faults_total(),
            self.seconds,
            self.mutations,
            if self.converged { "yes" } else { "**no**" }
        );
        out.push_str("| clients | count | watch requests | events | starts over | lost | ghosts | duplicated |\n|---|---|---|---|---|---|---|---|\n");
        for k in &self.kinds {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | **{}** | **{}** | **{}** |\n",
                k.kind, k.clients, k.watches, k.events, k.restarts, k.lost, k.ghosts, k.duplicated
            ));
        }
        out.push_str("\n| fault | count |\n|---|---|\n");
        for (fault, n) in &self.faults {
            out.push_str(&format!("| {fault} | {n} |\n"));
        }
        out
    }

    /// What went wrong, if anything.
    pub fn verdict(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.converged {
            problems.push("some caches never equalled the store".to_owned());
        }
        for k in &self.kinds {
            if k.lost + k.ghosts + k.duplicated > 0 {
                problems.push(format!(
                    "{}: {} lost, {} ghosts, {} duplicated",
                    k.kind, k.lost, k.ghosts, k.duplicated
                ));
            }
        }
        problems
    }
}

/// One client's cache: object name → resourceVersion.
#[derive(Debug, Default)]
struct Cache {
    objects: HashMap<String, u64>,
}

#[derive(Debug, Default)]
struct Counters {
    watches: AtomicU64,
    events: AtomicU64,
    restarts: AtomicU64,
    duplicated: AtomicU64,
}

/// One decoded event.
struct Event {
    kind: String,
    name: String,
    version: Option<u64>,
    initial_events_end: bool,
}

fn json_event(line: &[u8]) -> Option<Event> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let meta = &value["object"]["metadata"];
    Some(Event {
        kind: value["type"].as_str()?.to_owned(),
        name: meta["name"].as_str().unwrap_or_default().to_owned(),
        version: meta["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok()),
        initial_events_end: meta["annotations"]["k8s.io/initial-events-end"] == "true",
    })
}

fn protobuf_event(frame: protobuf_watch::WatchFrame) -> Event {
    let text = |key: &str| {
        frame
            .metadata
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let initial_events_end = frame
        .metadata
        .get("annotations")
        .is_some_and(|a| a["k8s.io/initial-events-end"] == "true");
    Event {
        version: text("resourceVersion").parse().ok(),
        name: text("name"),
        kind: frame.kind,
        initial_events_end,
    }
}

/// What a client does next.
enum Next {
    /// Watch again from the cache's version.
    Rewatch,
    /// Start over: relist, or a new WatchList.
    StartOver,
}

/// A reflector: keeps `cache` equal to the apiserver's ConfigMaps until `stop`.
async fn reflector(
    target: Target,
    kind: Kind,
    cache: Arc<Mutex<Cache>>,
    counters: Arc<Counters>,
    stop: tokio::sync::watch::Receiver<bool>,
    seed: u64,
) {
    let mut version: Option<u64> = None;
    let mut start_over = true;
    let mut round = seed;
    while !*stop.borrow() {
        round = round
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let Ok(mut sender) = connect(&target).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if start_over && kind.mode == Mode::ListWatch {
            match list(&mut sender, kind.encoding).await {
                Some((objects, list_version)) => {
                    *cache.lock().unwrap_or_else(|p| p.into_inner()) = Cache { objects };
                    version = Some(list_version);
                    start_over = false;
                }
                None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let watch_list = start_over && kind.mode == Mode::WatchList;
        // client-go's reflector: watches of 5 to 10 minutes; here 3 to 8 s, so clean ends happen.
        let timeout = 3 + round % 6;
        let mut query = format!("watch=1&allowWatchBookmarks=true&timeoutSeconds={timeout}");
        if watch_list {
            query.push_str("&sendInitialEvents=true&resourceVersionMatch=NotOlderThan");
        } else if let Some(v) = version {
            query.push_str(&format!("&resourceVersion={v}"));
        }
        counters.watches.fetch_add(1, Ordering::Relaxed);
        let next = watch(
            &mut sender,
            kind,
            &query,
            watch_list,
            &cache,
            &counters,
            &mut version,
        )
        .await;
        if matches!(next, Next::StartOver) {
            counters.restarts.fetch_add(1, Ordering::Relaxed);
            start_over = true;
        } else if watch_list {
            // A WatchList that got its bookmark continues as a plain watch.
            start_over = version.is_none();
        }
    }
}

/// LIST, in the client's encoding: object name → version, and the list's version.
async fn list(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    encoding: Encoding,
) -> Option<(HashMap<String, u64>, u64)> {
    let accept = match encoding {
        Encoding::Json => "application/json",
        Encoding::Protobuf => "application/vnd.kubernetes.protobuf, application/json",
    };
    let request = Request::get(format!("/api/v1/namespaces/{NAMESPACE}/configmaps"))
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, accept)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let body = response.into_body().collect().await.ok()?.to_bytes();
    if encoding == Encoding::Protobuf {
        let list = protobuf_watch::decode_list_body(&body).ok()?;
        let objects = list
            .items
            .iter()
            .filter_map(|meta| {
                Some((
                    meta.get("name")?.as_str()?.to_owned(),
                    meta.get("resourceVersion")?.as_str()?.parse().ok()?,
                ))
            })
            .collect();
        return Some((objects, list.resource_version.parse().ok()?));
    }
    let list: Value = serde_json::from_slice(&body).ok()?;
    let version = list["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
    let objects = list["items"]
        .as_array()?
        .iter()
        .filter_map(|item| {
            let meta = &item["metadata"];
            Some((
                meta["name"].as_str()?.to_owned(),
                meta["resourceVersion"].as_str()?.parse().ok()?,
            ))
        })
        .collect();
    Some((objects, version))
}

/// One watch request, applied to the cache event by event.
#[allow(clippy::too_many_arguments)]
async fn watch(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    kind: Kind,
    query: &str,
    watch_list: bool,
    cache: &Mutex<Cache>,
    counters: &Counters,
    version: &mut Option<u64>,
) -> Next {
    let accept = match kind.encoding {
        Encoding::Json => "application/json",
        Encoding::Protobuf => "application/vnd.kubernetes.protobuf, application/json",
    };
    let Ok(request) = Request::get(format!("/api/v1/namespaces/{NAMESPACE}/configmaps?{query}"))
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, accept)
        .body(Full::new(Bytes::new()))
    else {
        return Next::StartOver;
    };
    let Ok(response) = sender.send_request(request).await else {
        return if watch_list {
            Next::StartOver
        } else {
            Next::Rewatch
        };
    };
    match response.status() {
        StatusCode::OK => {}
        StatusCode::GONE => return Next::StartOver,
        _ => {
            // 503 with every apiserver down, 504 from a lagging replica: again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return if watch_list {
                Next::StartOver
            } else {
                Next::Rewatch
            };
        }
    }
    let mut body = response.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    // A WatchList's initial events, swapped in at its bookmark.
    let mut initial: Option<HashMap<String, u64>> = watch_list.then(HashMap::new);
    // (name, version) applied by this stream: a repeat is a duplicate.
    let mut applied: HashSet<(String, u64)> = HashSet::new();
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            // A clean end or a broken stream: re-watch from the last version (a WatchList
            // still collecting its initial events starts over).
            None | Some(Err(_)) => {
                return if initial.is_some() {
                    Next::StartOver
                } else {
                    Next::Rewatch
                };
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        let mut events = Vec::new();
        match kind.encoding {
            Encoding::Json => {
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    match json_event(&line) {
                        Some(event) => events.push(event),
                        None => return Next::StartOver,
                    }
                }
            }
            Encoding::Protobuf => {
                while let Some(frame) = protobuf_watch::take_frame(&mut buffer) {
                    match frame {
                        Ok(frame) => events.push(protobuf_event(frame)),
                        Err(_) => return Next::StartOver,
                    }
                }
            }
        }
        for event in events {
            counters.events.fetch_add(1, Ordering::Relaxed);
            match event.kind.as_str() {
                // Whatever its code: the reflector starts over.
                "ERROR" => return Next::StartOver,
                "BOOKMARK" => {
                    if let Some(objects) = initial.take() {
                        if !event.initial_events_end {
                            initial = Some(objects);
                            continue;
                        }
                        cache.lock().unwrap_or_else(|p| p.into_inner()).objects = objects;
                    }
                    if let Some(v) = event.version {
                        *version = Some(version.map_or(v, |old| old.max(v)));
                    }
                }
                "ADDED" | "MODIFIED" | "DELETED" => {
                    let Some(v) = event.version else { continue };
                    if let Some(objects) = initial.as_mut() {
                        objects.insert(event.name, v);
                        continue;
                    }
                    if !applied.insert((event.name.clone(), v)) {
                        counters.duplicated.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                    let known = cache.objects.get(&event.name).copied();
                    if event.kind == "DELETED" {
                        if known.is_none_or(|k| k >= v) {
                            counters.duplicated.fetch_add(1, Ordering::Relaxed);
                        }
                        cache.objects.remove(&event.name);
                    } else if known.is_some_and(|k| k >= v) {
                        counters.duplicated.fetch_add(1, Ordering::Relaxed);
                    } else {
                        cache.objects.insert(event.name, v);
                    }
                    drop(cache);
                    *version = Some(version.map_or(v, |old| old.max(v)));
                }
                _ => {}
            }
        }
    }
}

/// A small random number source (no dependency needed for fault choice).
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

fn object(name: &str, n: u64) -> Value {
    json!({"metadata": {"name": name}, "data": {"n": n.to_string()}})
}

/// Creates, updates and deletes ConfigMaps until `stop`.
async fn mutate(
    store: Arc<Store>,
    per_second: f64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let every = Duration::from_secs_f64(1.0 / per_second.max(0.1));
    let mut done = 0u64;
    while !*stop.borrow() {
        let name = format!("cm-{}", dice.next(NAMES as u64));
        let exists = store.get(Resource::CONFIG_MAPS, NAMESPACE, &name).is_ok();
        let outcome = match (exists, dice.next(4)) {
            (false, _) => store.create(Resource::CONFIG_MAPS, NAMESPACE, object(&name, done)),
            (true, 0) => store.delete(Resource::CONFIG_MAPS, NAMESPACE, &name),
            (true, _) => store.update(Resource::CONFIG_MAPS, NAMESPACE, &name, object(&name, done)),
        };
        if outcome.is_ok() {
            done += 1;
        }
        tokio::time::sleep(every).await;
    }
    done
}

/// Faults, each on a replica not already faulted, until `count` have been injected.
async fn inject_faults(
    servers: Arc<Vec<FakeApiServer>>,
    store: Arc<Store>,
    count: usize,
    every: Duration,
    counts: Arc<Mutex<HashMap<&'static str, u64>>>,
) {
    let mut dice = Dice(0x2545_f491_4f6c_dd1d);
    let busy: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut injected = 0;
    while injected < count {
        tokio::time::sleep(every).await;
        let free: Vec<usize> = {
            let busy = busy.lock().unwrap_or_else(|p| p.into_inner());
            (0..servers.len()).filter(|i| !busy.contains(i)).collect()
        };
        // At most two replicas faulted at once: one stays whole, as a real control plane's would.
        if free.len() <= 1 {
            continue;
        }
        let victim = free[dice.next(free.len() as u64) as usize];
        let name: &'static str = match dice.next(8) {
            0 => "connections killed",
            1 => "down for 1 s",
            2 => "stalled for 1.5 s",
            3 => "watch cache lagging for 2 s",
            4 => "GOAWAY",
            5 => "history compacted",
            _ => "next watch cut after a few events",
        };
        injected += 1;
        *counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default() += 1;
        let (servers, store, busy) = (servers.clone(), store.clone(), busy.clone());
        let events = 1 + dice.next(12) as usize;
        busy.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(victim);
        tasks.push(tokio::spawn(async move {
            let server = &servers[victim];
            match name {
                "connections killed" => server.kill_connections(),
                "down for 1 s" => {
                    server.set_behaviour(Behaviour::Refuse).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    server.set_behaviour(Behaviour::Healthy).await;
                }
                "stalled for 1.5 s" => {
                    server
                        .set_behaviour(Behaviour::Slow(Duration::from_secs(3)))
                        .await;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    server.set_behaviour(Behaviour::Healthy).await;
                }
                "watch cache lagging for 2 s" => {
                    server.lag_behind(true);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    server.lag_behind(false);
                }
                "GOAWAY" => server.goaway(),
                "history compacted" => store.compact(),
                _ => server.cut_next_watch_after(events),
            }
            busy.lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&victim);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// The store's ConfigMaps: name → resourceVersion.
fn truth(store: &Store) -> HashMap<String, u64> {
    store
        .list(Resource::CONFIG_MAPS, NAMESPACE)
        .0
        .iter()
        .filter_map(|o| {
            let meta = &o["metadata"];
            Some((
                meta["name"].as_str()?.to_owned(),
                meta["resourceVersion"].as_str()?.parse().ok()?,
            ))
        })
        .collect()
}

/// (lost, ghosts) of one cache against the truth.
fn compare(cache: &HashMap<String, u64>, truth: &HashMap<String, u64>) -> (u64, u64) {
    let lost = truth
        .iter()
        .filter(|(name, v)| cache.get(*name).is_none_or(|c| c < v))
        .count();
    let ghosts = cache
        .keys()
        .filter(|name| !truth.contains_key(*name))
        .count();
    (lost as u64, ghosts as u64)
}

/// Runs the checker against the kprox binary in `options`.
pub async fn run(options: &ConvergenceOptions) -> anyhow::Result<ConvergenceReport> {
    let cluster = FakeCluster::start(3, TOKEN, |_| FakeOptions {
        bookmark_every: Some(Duration::from_secs(2)),
        ..FakeOptions::default()
    })
    .await?;
    let store = cluster.store.clone();
    // Objects live in a namespace that exists, as the apiserver requires.
    store.create(
        Resource::NAMESPACES,
        "",
        json!({"metadata": {"name": NAMESPACE}}),
    )?;
    for i in 0..NAMES / 2 {
        store.create(
            Resource::CONFIG_MAPS,
            NAMESPACE,
            object(&format!("cm-{i}"), 0),
        )?;
    }
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig("converge", &kubeconfig)?;
    let kprox = Subject::kprox_with(
        &options.kprox,
        &kubeconfig,
        &["--server", &cluster.server_list()],
        &Launch::default(),
    )?;
    let target = Target::Plain(kprox.address);
    let started = Instant::now();

    let (stop_clients, clients_stop) = tokio::sync::watch::channel(false);
    let (stop_mutations, mutations_stop) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for (k, kind) in Kind::ALL.into_iter().enumerate() {
        let counters = Arc::new(Counters::default());
        let mut caches = Vec::new();
        for i in 0..options.watches_per_kind {
            let cache = Arc::new(Mutex::new(Cache::default()));
            caches.push(cache.clone());
            tokio::spawn(reflector(
                target.clone(),
                kind,
                cache,
                counters.clone(),
                clients_stop.clone(),
                (k * 100_000 + i) as u64 + 1,
            ));
        }
        clients.push((kind, counters, caches));
    }
    let mutations = tokio::spawn(mutate(
        store.clone(),
        options.mutations_per_second,
        mutations_stop,
    ));
    let servers = Arc::new(cluster.servers);
    let fault_counts: Arc<Mutex<HashMap<&'static str, u64>>> = Arc::default();
    inject_faults(
        servers.clone(),
        store.clone(),
        options.faults,
        options.fault_every,
        fault_counts.clone(),
    )
    .await;
    // The faults are over: every replica whole again, then the last mutations, then quiet.
    for server in servers.iter() {
        server.set_behaviour(Behaviour::Healthy).await;
        server.lag_behind(false);
    }
    stop_mutations.send_replace(true);
    let mutations = mutations.await?;
    let truth = truth(&store);
    let deadline = Instant::now() + options.settle;
    let converged = loop {
        let all_equal = clients.iter().all(|(_, _, caches)| {
            caches.iter().all(|c| {
                compare(&c.lock().unwrap_or_else(|p| p.into_inner()).objects, &truth) == (0, 0)
            })
        });
        if all_equal {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop_clients.send_replace(true);
    let kinds = clients
        .iter()
        .map(|(kind, counters, caches)| {
            let (mut lost, mut ghosts) = (0, 0);
            for cache in caches {
                let (l, g) = compare(
                    &cache.lock().unwrap_or_else(|p| p.into_inner()).objects,
                    &truth,
                );
                lost += l;
                ghosts += g;
            }
            KindReport {
                kind: kind.name(),
                clients: caches.len(),
                watches: counters.watches.load(Ordering::Relaxed),
                events: counters.events.load(Ordering::Relaxed),
                restarts: counters.restarts.load(Ordering::Relaxed),
                lost,
                ghosts,
                duplicated: counters.duplicated.load(Ordering::Relaxed),
            }
        })
        .collect();
    let mut faults: Vec<(String, u64)> = fault_counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, n)| ((*k).to_owned(), *n))
        .collect();
    faults.sort();
    drop(kprox);
    Ok(ConvergenceReport {
        seconds: started.elapsed().as_secs_f64(),
        mutations,
        faults,
        kinds,
        converged,
    })
}
