//! The fake apiserver's watch streams, as a real apiserver's watch cache sends them
//! (REFERENCE.md §4), because kprox's resume depends on every one of these details:
//!
//! - **initial events**: a watch with no resourceVersion, `"0"`, or `sendInitialEvents=true`
//!   starts with one synthetic `ADDED` per object, in key order (namespace, name), each with
//!   its own object's resourceVersion — so the burst is not ordered by version;
//! - **WatchList** (`sendInitialEvents=true`): refused with 422 unless `allowWatchBookmarks=true`
//!   and `resourceVersionMatch=NotOlderThan`, as the apiserver validates it; the initial events
//!   end with a `BOOKMARK` annotated `k8s.io/initial-events-end: "true"` at the list's version;
//! - **bookmarks** every [`WatchSettings::bookmark_every`] when `allowWatchBookmarks`;
//! - **history**: a watch from a version older than the compacted history gets an `ERROR`
//!   event with a 410 `Status`;
//! - **a lagging replica**: [`WatchSettings::lag_at`] freezes this replica's watch cache; a
//!   watch from a newer version waits 3 s, then gets 504 "Too large resource version"
//!   (reason `Timeout`, cause `ResourceVersionTooLarge`, `Retry-After: 1`);
//! - **faults on demand**: [`WatchSettings::cut_next_after`] resets the next watch stream
//!   after that many events (the apiserver dying mid-stream, at a chosen point).
//!
//! Booleans in the query are read as apimachinery reads them (see [`flag`]). A client whose
//! `Accept` puts protobuf first gets protobuf frames (`protobuf_watch.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{Body, ChannelBody, status_response};
use crate::store::{Event, Resource, Store, matches};
use crate::table;

/// The annotation that ends a WatchList's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// How long a replica whose watch cache is behind waits for it before answering 504, as the
/// apiserver does.
pub const LAG_WAIT: Duration = Duration::from_secs(3);

/// How the fake's watches behave; shared by every request of one fake apiserver.
#[derive(Debug, Default)]
pub struct WatchSettings {
    /// The next watch stream to start is reset after this many events (0: none). One-shot.
    cut_next_after: AtomicUsize,
    /// This replica's watch cache is stuck at this version (0: up to date): a watch from a
    /// newer version waits [`LAG_WAIT`], then gets 504 "Too large resource version".
    lagging_at: AtomicU64,
    /// With `allowWatchBookmarks`, a `BOOKMARK` this often (`None`: only WatchList's).
    pub bookmark_every: Option<Duration>,
}

impl WatchSettings {
    /// Settings with bookmarks this often (see [`Self::bookmark_every`]).
    pub fn new(bookmark_every: Option<Duration>) -> Self {
        Self {
            cut_next_after: AtomicUsize::new(0),
            lagging_at: AtomicU64::new(0),
            bookmark_every,
        }
    }

    /// Resets the next watch stream that starts after it has sent `events` events.
    pub fn cut_next_after(&self, events: usize) {
        self.cut_next_after.store(events, Ordering::SeqCst);
    }

    /// Freezes this replica's watch cache at `version` (`None`: it catches up).
    pub fn lag_at(&self, version: Option<u64>) {
        // 0 means "up to date", so a cache frozen at version 0 is stored as 1.
        self.lagging_at
            .store(version.map_or(0, |v| v.max(1)), Ordering::SeqCst);
    }

    fn lagging_at(&self) -> Option<u64> {
        Some(self.lagging_at.load(Ordering::SeqCst)).filter(|v| *v > 0)
    }

    fn take_cut(&self) -> Option<usize> {
        Some(self.cut_next_after.swap(0, Ordering::SeqCst)).filter(|n| *n > 0)
    }
}

/// The first value of `key` in a query string (`key` alone has the value `""`).
pub fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

/// A boolean query parameter as apimachinery converts it: absent, `0` or `false` (any case)
/// is false; anything else, the empty value included, is true (`watch=True`, `watch=t`).
pub fn flag(query: &str, key: &str) -> bool {
    query_value(query, key).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// What one watch request asks for.
#[derive(Clone)]
pub struct WatchRequest {
    pub resource: Resource,
    pub namespace: String,
    /// Only objects this keeps (label and field selectors).
    pub keep: Arc<dyn Fn(&Value) -> bool + Send + Sync>,
    pub query: String,
    /// Table rows (kubectl get -w) instead of objects.
    pub as_table: bool,
    /// Protobuf frames (the client's Accept puts protobuf first) instead of JSON lines.
    pub protobuf: bool,
}

fn invalid(message: &str) -> Response<Body> {
    status_response(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
}

/// The apiserver's answer to a watch from a version newer than its watch cache, once it has
/// waited [`LAG_WAIT`] for the cache to catch up.
fn too_large_resource_version(requested: u64, current: u64) -> Response<Body> {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("Too large resource version: {requested}, current: {current}"),
        "reason": "Timeout",
        "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
        "code": 504,
    });
    let mut response = crate::body::json_response(StatusCode::GATEWAY_TIMEOUT, &status);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// A chunked watch stream: one JSON event per line (or protobuf frame), flushed as it happens.
pub async fn watch(
    store: Arc<Store>,
    settings: &WatchSettings,
    request: WatchRequest,
) -> Response<Body> {
    let query = request.query.as_str();
    let send_initial = flag(query, "sendInitialEvents");
    let bookmarks = flag(query, "allowWatchBookmarks");
    let version = query_value(query, "resourceVersion").filter(|v| !v.is_empty());
    if send_initial {
        if !bookmarks {
            return invalid(
                "allowWatchBookmarks: Required value: sendInitialEvents requires setting allowWatchBookmarks to true",
            );
        }
        if query_value(query, "resourceVersionMatch") != Some("NotOlderThan") {
            return invalid(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            );
        }
    }
    let since: Option<u64> = match version {
        Some("0") | None => None,
        Some(_) if send_initial => None,
        Some(v) => match v.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                return invalid(&format!(
                    "resourceVersion: Invalid value: \"{v}\": must be a number"
                ));
            }
        },
    };
    if let (Some(requested), Some(cache)) = (since, settings.lagging_at())
        && requested > cache
    {
        tokio::time::sleep(LAG_WAIT).await;
        if let Some(cache) = settings.lagging_at()
            && requested > cache
        {
            return too_large_resource_version(requested, cache);
        }
    }
    let timeout = query_value(query, "timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (resource, namespace, keep) = (request.resource, request.namespace.clone(), request.keep);

    // The initial events: the current state, in key order, each with its own version.
    let (initial, start) = match since {
        Some(rv) => (Vec::new(), rv),
        None => {
            let (items, rv) = store.list(resource, &namespace);
            let events = items
                .into_iter()
                .filter(|o| keep(o))
                .map(|object| Event {
                    kind: "ADDED",
                    resource,
                    namespace: namespace.clone(),
                    resource_version: object_version(&object).unwrap_or(rv),
                    object,
                })
                .collect::<Vec<_>>();
            (events, rv)
        }
    };
    let end_bookmark = send_initial.then(|| bookmark(resource, start, true));
    let (as_table, protobuf) = (request.as_table, request.protobuf);
    let encode = move |kind: &str, object: &Value, rv: u64| {
        if protobuf {
            return crate::protobuf_watch::encode_event(kind, object);
        }
        let object = if as_table && kind != "BOOKMARK" && kind != "ERROR" {
            table::table(resource, std::slice::from_ref(object), rv)
        } else {
            object.clone()
        };
        Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
    };
    let (tx, body) = ChannelBody::channel(64);
    let cut_after = settings.take_cut();
    let bookmark_every = settings.bookmark_every.filter(|_| bookmarks);
    match store.watch_from(resource, &namespace, start) {
        Err(_) => {
            let gone = crate::body::status_object(
                StatusCode::GONE,
                "Expired",
                &format!("too old resource version: {start}"),
            );
            let line = encode("ERROR", &gone, start);
            tokio::spawn(async move {
                let _ = tx.send(Ok(line)).await;
            });
        }
        Ok((past, mut live)) => {
            tokio::spawn(async move {
                let mut sent = 0usize;
                // Sends one event, or resets the stream when the cut is due.
                let send = |line: Bytes, sent: &mut usize| {
                    *sent += 1;
                    let cut = cut_after.is_some_and(|n| *sent > n);
                    let tx = tx.clone();
                    async move {
                        if cut {
                            // Let the events already sent reach the client first, as they do
                            // when a real apiserver dies: resetting the stream at once would
                            // make the server discard its unsent frames.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let _ = tx
                                .send(Err(std::io::Error::other("fake apiserver: watch cut")))
                                .await;
                            return false;
                        }
                        tx.send(Ok(line)).await.is_ok()
                    }
                };
                let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
                let mut last = start;
                for event in &initial {
                    if !send(
                        encode(event.kind, &event.object, event.resource_version),
                        &mut sent,
                    )
                    .await
                    {
                        return;
                    }
                }
                if let Some(end) = &end_bookmark
                    && !send(encode("BOOKMARK", end, start), &mut sent).await
                {
                    return;
                }
                for event in &past {
                    last = last.max(event.resource_version);
                    if keep(&event.object)
                        && !send(
                            encode(event.kind, &event.object, event.resource_version),
                            &mut sent,
                        )
                        .await
                    {
                        return;
                    }
                }
                let mut ticks = bookmark_every.map(|every| {
                    let mut interval =
                        tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    interval
                });
                loop {
                    let next = async {
                        match deadline {
                            Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
                            None => Some(live.recv().await),
                        }
                    };
                    let tick = async {
                        match &mut ticks {
                            Some(interval) => {
                                interval.tick().await;
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        received = next => match received {
                            None => return, // timeoutSeconds reached: end cleanly
                            Some(Ok(event)) => {
                                if event.resource_version > last && matches(&event, resource, &namespace) {
                                    last = event.resource_version;
                                    if keep(&event.object)
                                        && !send(encode(event.kind, &event.object, event.resource_version), &mut sent).await
                                    {
                                        return;
                                    }
                                }
                            }
                            Some(Err(_)) => return, // lagged or closed: end, the client re-watches
                        },
                        () = tick => {
                            if !send(encode("BOOKMARK", &bookmark(resource, last, false), last), &mut sent).await {
                                return;
                            }
                        }
                        () = tx.closed() => return,
                    }
                }
            });
        }
    }
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(if protobuf {
            crate::protobuf_watch::STREAM_CONTENT_TYPE
        } else {
            "application/json"
        }),
    );
    response
}

/// An object's own `metadata.resourceVersion`.
fn object_version(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

/// A `BOOKMARK` object: only the kind and a version (and the end-of-initial-events mark).
fn bookmark(resource: Resource, rv: u64, initial_events_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
    }
    json!({"kind": resource.kind(), "apiVersion": resource.api_version(), "metadata": metadata})
}
