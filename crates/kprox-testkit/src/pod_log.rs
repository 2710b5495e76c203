//! `GET .../pods/{name}/log`: a container's log, as the kubelet serves it behind the apiserver.
//! The fake container writes one access-log line every [`EVERY`] seconds from its start, so a
//! log grows while you watch it; `follow` streams new lines as they are written, and
//! `tailLines`, `sinceSeconds`, `timestamps`, `limitBytes` and `container` work as they do.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use serde_json::Value;

use crate::body::{Body, ChannelBody, full, status_response};
use crate::clock;
use crate::query;
use crate::store::{Resource, Store};

/// Seconds between two lines of a fake container's log.
pub const EVERY: i64 = 2;

/// At most this many lines are kept, like a rotated log file.
const KEPT: i64 = 1000;

/// The `n`th line of `container` in `pod` (lines count from 0 at the container's start).
fn line(pod: &str, container: &str, n: i64, start: i64, timestamps: bool) -> String {
    let at = clock::format_seconds(start + n * EVERY);
    let paths = [
        "/",
        "/healthz",
        "/api/items",
        "/static/app.js",
        "/api/items/42",
    ];
    let path = paths[usize::try_from(n.rem_euclid(5)).unwrap_or(0)];
    let status = if n % 17 == 16 { 404 } else { 200 };
    let text = format!(
        "{at} {pod}/{container} 10.0.0.{} \"GET {path} HTTP/1.1\" {status} {} line={n}\n",
        n % 200 + 2,
        512 + n % 97 * 13
    );
    if timestamps {
        format!("{at} {text}")
    } else {
        text
    }
}

fn started(pod: &Value) -> i64 {
    pod["status"]["startTime"]
        .as_str()
        .or_else(|| pod["metadata"]["creationTimestamp"].as_str())
        .and_then(clock::parse)
        .unwrap_or_else(clock::now_seconds)
}

/// Answers a log request for `name` in `namespace`.
pub fn answer(store: &Arc<Store>, namespace: &str, name: &str, raw_query: &str) -> Response<Body> {
    let pod = match store.get(Resource::PODS, namespace, name) {
        Ok(pod) => pod,
        Err(error) => {
            return status_response(StatusCode::NOT_FOUND, "NotFound", &error.to_string());
        }
    };
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let container = match query::value(raw_query, "container") {
        Some(c) if containers.contains(&c) => c,
        Some(c) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("container {c} is not valid for pod {name}"),
            );
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                ),
            );
        }
    };
    let start = started(&pod);
    let now = clock::now_seconds();
    let written = ((now - start) / EVERY + 1).max(0);
    let mut first = (written - KEPT).max(0);
    if let Some(since) = query::value(raw_query, "sinceSeconds").and_then(|v| v.parse::<i64>().ok())
    {
        first = first.max((now - since - start + EVERY - 1) / EVERY);
    }
    if let Some(tail) = query::value(raw_query, "tailLines").and_then(|v| v.parse::<i64>().ok()) {
        first = first.max(written - tail.max(0));
    }
    let timestamps = query::flag(raw_query, "timestamps");
    let limit = query::value(raw_query, "limitBytes").and_then(|v| v.parse::<usize>().ok());
    let mut text: String = (first..written)
        .map(|n| line(name, &container, n, start, timestamps))
        .collect();
    if let Some(mut limit) = limit.filter(|l| *l < text.len()) {
        // At a character boundary: a name may hold multi-byte characters.
        while !text.is_char_boundary(limit) {
            limit -= 1;
        }
        text.truncate(limit);
    }
    let follow = query::flag(raw_query, "follow");
    let body = if follow && limit.is_none() {
        let (tx, body) = ChannelBody::channel(8);
        let (store, namespace, name) = (store.clone(), namespace.to_owned(), name.to_owned());
        tokio::spawn(async move {
            if tx.send(Ok(Bytes::from(text))).await.is_err() {
                return;
            }
            let mut next = written;
            loop {
                let due = start + next * EVERY;
                let wait = (due - clock::now_seconds()).max(0);
                tokio::time::sleep(Duration::from_secs(u64::try_from(wait).unwrap_or(0))).await;
                // The stream ends when the pod goes, as the kubelet's does.
                if store.get(Resource::PODS, &namespace, &name).is_err() {
                    return;
                }
                let chunk = line(&name, &container, next, start, timestamps);
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
                next += 1;
            }
        });
        body
    } else {
        full(text)
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bytes_cuts_at_a_character_boundary() {
        let store = Arc::new(Store::new());
        store.add_pod("default", "héllo-wörld").expect("pod");
        for limit in 0..40 {
            let response = answer(
                &store,
                "default",
                "héllo-wörld",
                &format!("limitBytes={limit}"),
            );
            assert_eq!(response.status(), StatusCode::OK);
        }
    }

    #[test]
    fn lines_carry_their_pod_container_and_time() {
        let text = line("web-0", "main", 3, 0, true);
        assert!(
            text.starts_with("1970-01-01T00:00:06Z 1970-01-01T00:00:06Z web-0/main "),
            "{text}"
        );
        assert!(text.ends_with("line=3\n"));
    }
}
