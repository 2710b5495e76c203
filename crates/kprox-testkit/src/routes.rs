//! What the fake apiserver answers: discovery, health, CRUD and watch on its store, plus two
//! test helpers under `/testkit/` (a large streamed blob and a request echo).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::body::{Body, ChannelBody, json_response, json_with_type, reason_for, status_response};
use crate::discovery;
use crate::store::{Resource, Store, StoreError};
use crate::table;
use crate::watch_stream::{self, WatchRequest, flag as query_flag, query_value};

/// Largest request body the fake accepts, like the apiserver.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Per-request facts the routes need besides the request itself.
#[derive(Debug, Clone)]
pub struct RouteContext {
    pub store: Arc<Store>,
    pub server_address: String,
    /// Break response bodies halfway (the `CloseMidBody` behaviour).
    pub cut_bodies: bool,
    /// Answer the benchmark paths with fixed bodies ([`crate::fixed`]).
    pub fixed_bodies: bool,
    /// How watch streams behave (bookmarks, faults).
    pub watch: Arc<watch_stream::WatchSettings>,
}

/// Paths anyone may read without credentials, as with the apiserver's public-info-viewer role.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/livez" | "/readyz" | "/healthz" | "/version")
}

/// Answers one request.
pub async fn route(ctx: RouteContext, request: Request<Incoming>) -> Response<Body> {
    if ctx.fixed_bodies
        && let Some(answer) = crate::fixed::answer(request.method(), request.uri().path())
    {
        // Read (and drop) what the client sent before answering, as an apiserver would.
        let _ = read_body(request.into_body()).await;
        return answer;
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();

    let body = match read_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let get = parts.method == Method::GET;
    // Bodies arrive as JSON or, from kubectl, as Kubernetes protobuf; answers are always JSON.
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let body = if !body.is_empty() && content_type.starts_with(crate::protobuf::CONTENT_TYPE) {
        match crate::protobuf::decode_object(&body) {
            Ok(object) => Bytes::from(object.to_string()),
            Err(why) => {
                return status_response(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    &why,
                );
            }
        }
    } else if !body.is_empty() && !content_type.contains("json") {
        return status_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got {content_type})"
            ),
        );
    } else {
        body
    };

    match path.as_str() {
        "/livez" | "/readyz" | "/healthz" if get => return text(StatusCode::OK, "ok"),
        "/version" if get => return json_response(StatusCode::OK, &discovery::version()),
        "/api" if get => {
            return if discovery::wants_aggregated(&accept) {
                json_with_type(
                    StatusCode::OK,
                    &discovery::aggregated_core(),
                    discovery::AGGREGATED_CONTENT_TYPE,
                )
            } else {
                json_response(
                    StatusCode::OK,
                    &discovery::core_versions(&ctx.server_address),
                )
            };
        }
        "/apis" if get => {
            return if discovery::wants_aggregated(&accept) {
                json_with_type(
                    StatusCode::OK,
                    &discovery::aggregated_groups(),
                    discovery::AGGREGATED_CONTENT_TYPE,
                )
            } else {
                json_response(StatusCode::OK, &discovery::group_list())
            };
        }
        "/api/v1" if get => return json_response(StatusCode::OK, &discovery::core_v1_resources()),
        "/testkit/blob" if get => return blob(&query, ctx.cut_bodies),
        "/testkit/redirect" => {
            // An apiserver (or an aggregated API behind it) may redirect; a proxy must relay it.
            let mut response = Response::new(crate::body::full(""));
            *response.status_mut() = StatusCode::FOUND;
            response.headers_mut().insert(
                header::LOCATION,
                header::HeaderValue::from_static("https://elsewhere.example/steal"),
            );
            return response;
        }
        "/testkit/echo" => {
            let mut response = echo(&parts, &body);
            if query_flag(&query, "hop-by-hop") {
                // Connection-specific headers a proxy must not pass on to its client.
                let headers = response.headers_mut();
                headers.insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("X-Upstream-Secret"),
                );
                headers.insert("x-upstream-secret", header::HeaderValue::from_static("1"));
                headers.insert("keep-alive", header::HeaderValue::from_static("timeout=5"));
                headers.insert(
                    header::PROXY_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"upstream\""),
                );
            }
            return response;
        }
        _ => {}
    }

    let Some(target) = Target::parse(&path) else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let result = match (&parts.method, &target.name) {
        (&Method::GET, _)
            if target.watch || (target.name.is_none() && query_flag(&query, "watch")) =>
        {
            let selector = LabelSelector::from_query(&query);
            // A watch on one object (`/watch/.../NAME`) is a watch on its collection narrowed
            // to that name, as the apiserver turns it into a field selector.
            let name = target.name.clone();
            return watch_stream::watch(
                ctx.store.clone(),
                &ctx.watch,
                WatchRequest {
                    resource: target.resource,
                    namespace: target.namespace.clone(),
                    keep: Arc::new(move |object: &Value| {
                        selector.matches(object)
                            && name
                                .as_deref()
                                .is_none_or(|n| object["metadata"]["name"] == n)
                    }),
                    query: query.clone(),
                    as_table: table::wants_table(&accept),
                    protobuf: wants_protobuf(&accept),
                },
            )
            .await;
        }
        (&Method::GET, None) => {
            let (items, rv) = ctx.store.list(target.resource, &target.namespace);
            let selector = LabelSelector::from_query(&query);
            let items: Vec<Value> = items.into_iter().filter(|o| selector.matches(o)).collect();
            if whole_protobuf(&accept, target.resource) && !ctx.cut_bodies {
                return protobuf_response(crate::protobuf_watch::encode_list_body(
                    target.resource.api_version(),
                    &format!("{}List", target.resource.kind()),
                    &items,
                    rv,
                ));
            }
            let value = if table::wants_table(&accept) {
                table::table(target.resource, &items, rv)
            } else {
                json!({"kind": format!("{}List", target.resource.kind()), "apiVersion": target.resource.api_version(),
                       "metadata": {"resourceVersion": rv.to_string()}, "items": items})
            };
            return list_response(value, ctx.cut_bodies);
        }
        (&Method::GET, Some(name)) => ctx
            .store
            .get(target.resource, &target.namespace, name)
            .map(|o| (StatusCode::OK, o)),
        (&Method::POST, None) => parse_json(&body).and_then(|object| {
            ctx.store
                .create(target.resource, &target.namespace, object)
                .map(|o| (StatusCode::CREATED, o))
        }),
        (&Method::PUT, Some(name)) => parse_json(&body).and_then(|object| {
            ctx.store
                .update(target.resource, &target.namespace, name, object)
                .map(|o| (StatusCode::OK, o))
        }),
        (&Method::DELETE, Some(name)) => ctx
            .store
            .delete(target.resource, &target.namespace, name)
            .map(|o| (StatusCode::OK, o)),
        _ => {
            return status_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            );
        }
    };
    match result {
        Ok((status, object)) => {
            if table::wants_table(&accept)
                && status == StatusCode::OK
                && parts.method == Method::GET
            {
                let rv = ctx.store.resource_version();
                return json_response(status, &table::table(target.resource, &[object], rv));
            }
            if whole_protobuf(&accept, target.resource) && parts.method == Method::GET {
                return protobuf_response(crate::protobuf_watch::encode_object_body(&object));
            }
            json_response(status, &object)
        }
        Err(error) => {
            let code = match error {
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                StoreError::AlreadyExists(_) => StatusCode::CONFLICT,
                StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            status_response(code, reason_for(code), &error.to_string())
        }
    }
}

/// A resource URL: `/api/v1/{resource}`, `/api/v1/namespaces/{ns}/{resource}[/{name}]`,
/// `/api/v1/namespaces[/{name}]`.
#[derive(Debug)]
struct Target {
    resource: Resource,
    namespace: String,
    name: Option<String>,
    /// Named by the legacy watch form (`/api/v1/watch/...`, ruby kubeclient's).
    watch: bool,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        // The legacy watch form: `/api/v1/watch/REST` is a watch of `/api/v1/REST`.
        let legacy = ["/api/v1/watch/", "/apis/discovery.k8s.io/v1/watch/"]
            .into_iter()
            .find_map(|prefix| {
                let rest = path.strip_prefix(prefix)?;
                Some(format!("{}{rest}", prefix.trim_end_matches("watch/")))
            });
        if let Some(path) = legacy {
            return Self::parse(&path)
                .filter(|t| !t.watch)
                .map(|t| Self { watch: true, ..t });
        }
        if let Some(rest) = path.strip_prefix("/apis/discovery.k8s.io/v1/") {
            let parts: Vec<&str> = rest.split('/').collect();
            let (namespace, name) = match parts.as_slice() {
                ["endpointslices"] => ("", None),
                ["namespaces", ns, "endpointslices"] => (*ns, None),
                ["namespaces", ns, "endpointslices", name] => (*ns, Some(*name)),
                _ => return None,
            };
            return Some(Self {
                resource: Resource::EndpointSlices,
                namespace: namespace.to_owned(),
                name: name.map(str::to_owned),
                watch: false,
            });
        }
        let rest = path.strip_prefix("/api/v1/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let target = |resource: &str, namespace: &str, name: Option<&str>| {
            let resource =
                Resource::from_plural(resource).filter(|r| *r != Resource::EndpointSlices)?;
            if resource.namespaced() == namespace.is_empty() && name.is_some() {
                return None;
            }
            Some(Self {
                resource,
                namespace: namespace.to_owned(),
                name: name.map(str::to_owned),
                watch: false,
            })
        };
        match parts.as_slice() {
            ["namespaces"] => target("namespaces", "", None),
            ["namespaces", name] => target("namespaces", "", Some(name)),
            ["namespaces", ns, resource] if *resource != "namespaces" => target(resource, ns, None),
            ["namespaces", ns, resource, name] if *resource != "namespaces" => {
                target(resource, ns, Some(name))
            }
            [resource] => target(resource, "", None),
            _ => None,
        }
    }
}

/// An equality label selector (`app=web,tier=front`); empty matches everything.
#[derive(Clone, Debug, Default)]
struct LabelSelector(Vec<(String, String)>);

impl LabelSelector {
    fn from_query(query: &str) -> Self {
        let Some(raw) = query_value(query, "labelSelector") else {
            return Self::default();
        };
        let decoded = raw
            .replace("%3D", "=")
            .replace("%3d", "=")
            .replace("%2F", "/")
            .replace("%2f", "/")
            .replace("%2C", ",")
            .replace("%2c", ",");
        Self(
            decoded
                .split(',')
                .filter_map(|term| term.split_once('='))
                .map(|(k, v)| {
                    (
                        k.trim_end_matches('=').to_owned(),
                        v.trim_start_matches('=').to_owned(),
                    )
                })
                .collect(),
        )
    }

    fn matches(&self, object: &Value) -> bool {
        self.0
            .iter()
            .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v))
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, Response<Body>> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(status_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "request body too large or unreadable",
        )),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, StoreError> {
    serde_json::from_slice(body)
        .map_err(|e| StoreError::Invalid(format!("request body is not JSON: {e}")))
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(crate::body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A list, sent in one piece or (cut) as half a body followed by a broken connection.
/// Whether the client's `Accept` puts protobuf first (kubelets and controllers do; the
/// apiserver answers in the first type it can).
fn wants_protobuf(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.trim().starts_with(crate::protobuf::CONTENT_TYPE))
}

/// Whether to answer a list or an object of `resource` in protobuf: asked for first, and a kind
/// the fake encodes whole (others are answered in JSON, see `protobuf_watch.rs`).
fn whole_protobuf(accept: &str, resource: Resource) -> bool {
    wants_protobuf(accept) && crate::protobuf_watch::encodes_whole(resource.kind())
}

fn protobuf_response(body: Bytes) -> Response<Body> {
    let mut response = Response::new(crate::body::full(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(crate::protobuf_watch::CONTENT_TYPE),
    );
    response
}

fn list_response(value: Value, cut: bool) -> Response<Body> {
    if !cut {
        return json_response(StatusCode::OK, &value);
    }
    let bytes = Bytes::from(value.to_string());
    cut_stream(bytes.slice(..bytes.len() / 2), "application/json")
}

fn cut_stream(first: Bytes, content_type: &'static str) -> Response<Body> {
    let (tx, body) = ChannelBody::channel(2);
    tokio::spawn(async move {
        let _ = tx.send(Ok(first)).await;
        // Give the bytes time to leave before the break.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx
            .send(Err(std::io::Error::other("testkit: body cut on purpose")))
            .await;
    });
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// `GET /testkit/blob?bytes=N`: N bytes (default 1 MiB), streamed in 64 KiB chunks without
/// holding them in memory.
fn blob(query: &str, cut: bool) -> Response<Body> {
    let total: u64 = query_value(query, "bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20);
    let limit = if cut { total / 2 } else { total };
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let (tx, body) = ChannelBody::channel(4);
    tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < limit {
            let n = (limit - sent).min(chunk.len() as u64) as usize;
            if tx.send(Ok(chunk.slice(..n))).await.is_err() {
                return;
            }
            sent += n as u64;
        }
        if cut {
            let _ = tx
                .send(Err(std::io::Error::other("testkit: body cut on purpose")))
                .await;
        }
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(total));
    response
}

/// `/testkit/echo`: the request as the fake saw it.
fn echo(parts: &http::request::Parts, body: &Bytes) -> Response<Body> {
    let mut headers: Vec<Value> = Vec::new();
    for (name, value) in &parts.headers {
        headers.push(json!([
            name.as_str(),
            String::from_utf8_lossy(value.as_bytes())
        ]));
    }
    json_response(
        StatusCode::OK,
        &json!({"method": parts.method.as_str(), "uri": parts.uri.to_string(), "headers": headers,
                "bodyLength": body.len(), "bodySha": simple_digest(body)}),
    )
}

/// A cheap content fingerprint (FNV-1a) so tests can compare bodies without shipping them back.
fn simple_digest(data: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Public for tests that compare a body they sent with what the fake received.
pub fn digest(data: &[u8]) -> String {
    simple_digest(data)
}
