//! Fixed answers for the benchmark: a ConfigMap list of about 4 KiB, one of about 1 MiB, and the
//! answer to a ConfigMap create, rendered once and served from memory so that the fake upstream
//! spends as little as possible per request and every proxy under test is measured alike.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{Body, full};

/// The namespace whose ConfigMap list is the small (~4 KiB) answer.
pub const SMALL_LIST_PATH: &str = "/api/v1/namespaces/bench/configmaps";
/// The namespace whose ConfigMap list is the large (~1 MiB) answer.
pub const LARGE_LIST_PATH: &str = "/api/v1/namespaces/bench-large/configmaps";

/// The fixed answer for `method` on `path`, if it is one of the benchmark's.
pub(crate) fn answer(method: &Method, path: &str) -> Option<Response<Body>> {
    let (status, body) = match (method, path) {
        (&Method::GET, SMALL_LIST_PATH) => (StatusCode::OK, small_list().clone()),
        (&Method::GET, LARGE_LIST_PATH) => (StatusCode::OK, large_list().clone()),
        (&Method::POST, SMALL_LIST_PATH) => (StatusCode::CREATED, created().clone()),
        _ => return None,
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Some(response)
}

fn small_list() -> &'static Bytes {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    BODY.get_or_init(|| list("bench", 4 * 1024))
}

fn large_list() -> &'static Bytes {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    BODY.get_or_init(|| list("bench-large", 1024 * 1024))
}

fn created() -> &'static Bytes {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    BODY.get_or_init(|| Bytes::from(config_map("bench", 0, 64).to_string()))
}

fn config_map(namespace: &str, index: usize, value_len: usize) -> Value {
    json!({
        "metadata": {
            "name": format!("config-{index:05}"),
            "namespace": namespace,
            "uid": format!("00000000-0000-4000-8000-{index:012}"),
            "resourceVersion": (1000 + index).to_string(),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "data": {"value": "x".repeat(value_len)},
    })
}

/// A ConfigMapList of about `target` bytes.
fn list(namespace: &str, target: usize) -> Bytes {
    let mut items = Vec::new();
    let mut size = 200;
    while size < target {
        let item = config_map(namespace, items.len(), 256);
        size += item.to_string().len() + 1;
        items.push(item);
    }
    let list = json!({
        "kind": "ConfigMapList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "2000"},
        "items": items,
    });
    Bytes::from(list.to_string())
}
