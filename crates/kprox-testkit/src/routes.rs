//! What the fake apiserver answers: health, discovery, OpenAPI, and the resource API
//! ([`crate::resource_api`]) on its store, plus test helpers under `/testkit/` (a large streamed
//! blob, a request echo, a redirect).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::body::{Body, ChannelBody, json_response, json_with_type, status_response};
use crate::resource_api::{self, Call, RouteContext};
use crate::target::Target;
use crate::watch_stream::{flag as query_flag, query_value};
use crate::{discovery, openapi};

/// Largest request body the fake accepts, like the apiserver.
const MAX_BODY: usize = 3 * 1024 * 1024;

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
    // The apiserver's router ignores trailing slashes (`/version/`, `/api/`).
    let path = if path.len() > 1 {
        path.trim_end_matches('/').to_owned()
    } else {
        path
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
        "/openapi/v3" if get => return json_response(StatusCode::OK, openapi::v3_index()),
        "/openapi/v2" if get => {
            // Asked for in protobuf (gnostic) first, kubectl carries on without it: see openapi.rs.
            return if accept.is_empty() || accept.contains("json") || accept.contains("*/*") {
                json_response(StatusCode::OK, &openapi::v2_document())
            } else {
                status_response(
                    StatusCode::NOT_ACCEPTABLE,
                    "NotAcceptable",
                    "the fake apiserver serves /openapi/v2 as application/json only",
                )
            };
        }
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
    if get {
        if let Some(document) = path
            .strip_prefix("/openapi/v3/")
            .and_then(openapi::v3_for_path)
        {
            return json_response(StatusCode::OK, &document);
        }
        if let Some(found) = group_version_document(&path) {
            return found;
        }
    }

    let Some(target) = Target::parse(&path) else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let header_text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let user_agent = header_text(header::USER_AGENT);
    let call = Call {
        method: &parts.method,
        query: &query,
        accept: &accept,
        content_type: if content_type.is_empty() {
            "application/json"
        } else {
            &content_type
        },
        user_agent: &user_agent,
        body,
    };
    resource_api::handle(&ctx, target, call).await
}

/// `GET /api/v1`, `/apis/{group}`, `/apis/{group}/{version}`.
fn group_version_document(path: &str) -> Option<Response<Body>> {
    if let Some(version) = path.strip_prefix("/api/") {
        return discovery::resource_list("", version).map(|d| json_response(StatusCode::OK, &d));
    }
    let rest = path.strip_prefix("/apis/")?;
    match rest.split_once('/') {
        None => discovery::group(rest).map(|d| json_response(StatusCode::OK, &d)),
        Some((group, version)) if !version.contains('/') => {
            discovery::resource_list(group, version).map(|d| json_response(StatusCode::OK, &d))
        }
        Some(_) => None,
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

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(crate::body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
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
                "bodyLength": body.len(), "bodySha": crate::digest::digest(body)}),
    )
}
