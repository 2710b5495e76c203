//! The REST verbs on a [`Target`]: list (JSON, Table or protobuf; label and field selectors),
//! watch, get, create, replace, patch (four kinds), delete and deletecollection, every write
//! with `dryRun=All`, `fieldManager` and `fieldValidation`; the `status` and `scale`
//! subresources, pod logs, and SelfSubjectAccessReviews.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{Body, json_response, reason_for, status_response};
use crate::body::{list_response, protobuf_response, wants_protobuf};
use crate::patch::PatchKind;
use crate::query;
use crate::selectors::Selectors;
use crate::store::{Resource, Store, StoreError, WriteOptions, describe};
use crate::table;
use crate::target::Target;
use crate::watch_stream::{self, WatchRequest};

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

/// What a handler needs from the request.
pub struct Call<'a> {
    pub method: &'a Method,
    pub query: &'a str,
    pub accept: &'a str,
    pub content_type: &'a str,
    pub user_agent: &'a str,
    pub body: Bytes,
}

/// A refused request: what its `Status` answer says.
#[derive(Debug)]
struct Refusal {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    fn response(self) -> Response<Body> {
        status_response(self.code, self.reason, &self.message)
    }
}

type Answer = Result<(StatusCode, Value), Refusal>;

fn store_error(error: StoreError) -> Refusal {
    let (code, reason) = match error {
        StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
        StoreError::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExists"),
        StoreError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
        StoreError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
    };
    Refusal::new(code, reason, error.to_string())
}

fn patch_error(error: crate::patch::PatchError) -> Refusal {
    store_error(error.into())
}

fn bad_request(message: &str) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn not_allowed() -> Response<Body> {
    status_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

/// Reads a body: JSON, Kubernetes protobuf (kubectl's typed clients send it) or YAML.
fn decode(call: &Call<'_>) -> Result<Value, Refusal> {
    let media = call
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if media.starts_with(crate::protobuf::CONTENT_TYPE) {
        return crate::protobuf::decode_object(&call.body).map_err(|why| {
            Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                why,
            )
        });
    }
    let yaml = media.ends_with("yaml");
    if !media.contains("json") && !yaml {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {media})"
            ),
        ));
    }
    if let Ok(value) = serde_json::from_slice::<Value>(&call.body) {
        return Ok(value);
    }
    let text = std::str::from_utf8(&call.body).ok();
    match text.filter(|_| yaml).map(serde_saphyr::from_str::<Value>) {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(bad_request(&format!("error decoding YAML: {e}"))),
        None => Err(bad_request(
            "the request body is not valid JSON (send application/json, or application/yaml)",
        )),
    }
}

/// The write options of a request, or a 400 for a value the apiserver refuses.
fn write_options(call: &Call<'_>, delete_body: Option<&Value>) -> Result<WriteOptions, Refusal> {
    let mut dry_run = match query::value(call.query, "dryRun").as_deref() {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(bad_request(&format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            )));
        }
    };
    if let Some(body) = delete_body {
        dry_run |= body["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    }
    match query::value(call.query, "fieldValidation").as_deref() {
        None | Some("Ignore" | "Warn" | "Strict") => {}
        Some(other) => {
            return Err(bad_request(&format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
    }
    // Without `fieldManager`, the apiserver names the writer after its User-Agent's program.
    let agent = call.user_agent.split('/').next().unwrap_or_default();
    let field_manager = query::value(call.query, "fieldManager")
        .or_else(|| (!agent.is_empty()).then(|| agent.to_owned()));
    Ok(WriteOptions {
        dry_run,
        field_manager,
    })
}

/// Answers a request on `target`.
pub async fn handle(ctx: &RouteContext, target: Target, call: Call<'_>) -> Response<Body> {
    let selectors = match Selectors::from_query(call.query) {
        Ok(s) => s,
        Err(e) => return bad_request(&e.to_string()).response(),
    };
    if let Some(sub) = target.subresource.clone() {
        return subresource(ctx, &target, &sub, &call);
    }
    if target.resource.review {
        return review(&target, &call);
    }
    let wants_watch =
        target.watch || (target.name.is_none() && watch_stream::flag(call.query, "watch"));
    if call.method == Method::GET && wants_watch {
        let name = target.name.clone();
        return watch_stream::watch(
            ctx.store.clone(),
            &ctx.watch,
            WatchRequest {
                resource: target.resource,
                namespace: target.namespace.clone(),
                keep: Arc::new(move |object: &Value| {
                    selectors.matches(object)
                        && name
                            .as_deref()
                            .is_none_or(|n| object["metadata"]["name"] == n)
                }),
                query: call.query.to_owned(),
                as_table: table::wants_table(call.accept),
                protobuf: wants_protobuf(call.accept),
            },
        )
        .await;
    }
    let resource = target.resource;
    let namespace = target.namespace.as_str();
    let answer: Answer = match (call.method, target.name.as_deref()) {
        (&Method::GET, None) => return list(ctx, &target, &selectors, &call),
        (&Method::GET, Some(name)) => ctx
            .store
            .get(resource, namespace, name)
            .map(|o| (StatusCode::OK, o))
            .map_err(store_error),
        (&Method::POST, None) => decode(&call).and_then(|object| {
            let options = write_options(&call, None)?;
            ctx.store
                .create_with(resource, namespace, object, &options)
                .map(|o| (StatusCode::CREATED, o))
                .map_err(store_error)
        }),
        (&Method::PUT, Some(name)) => decode(&call).and_then(|object| {
            let options = write_options(&call, None)?;
            ctx.store
                .update_with(resource, namespace, name, object, &options)
                .map(|o| (StatusCode::OK, o))
                .map_err(store_error)
        }),
        (&Method::PATCH, Some(name)) => patch(ctx, &target, name, &call),
        (&Method::DELETE, Some(name)) => {
            let body: Option<Value> = serde_json::from_slice(&call.body).ok();
            write_options(&call, body.as_ref()).and_then(|options| {
                ctx.store
                    .delete_with(resource, namespace, name, &options)
                    .map(|o| (StatusCode::OK, o))
                    .map_err(store_error)
            })
        }
        (&Method::DELETE, None) => {
            let body: Option<Value> = serde_json::from_slice(&call.body).ok();
            write_options(&call, body.as_ref()).map(|options| {
                let (items, rv) = ctx.store.list(resource, namespace);
                let deleted: Vec<Value> = items
                    .into_iter()
                    .filter(|o| selectors.matches(o))
                    .filter_map(|o| {
                        let (ns, name) = (o["metadata"]["namespace"].as_str().unwrap_or_default(), o["metadata"]["name"].as_str()?);
                        ctx.store.delete_with(resource, ns, name, &options).ok()
                    })
                    .collect();
                (
                    StatusCode::OK,
                    json!({"kind": format!("{}List", resource.kind()), "apiVersion": resource.api_version(),
                           "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
                )
            })
        }
        _ => return not_allowed(),
    };
    match answer {
        Ok((status, object)) => {
            if call.method == Method::GET && table::wants_table(call.accept) {
                let rv = ctx.store.resource_version();
                let include = query::value(call.query, "includeObject").unwrap_or_default();
                return json_response(
                    status,
                    &table::table_with(resource, &[object], rv, &include),
                );
            }
            if call.method == Method::GET && whole_protobuf(call.accept, resource) {
                return protobuf_response(crate::protobuf_watch::encode_object_body(&object));
            }
            json_response(status, &object)
        }
        Err(refusal) => refusal.response(),
    }
}

fn whole_protobuf(accept: &str, resource: Resource) -> bool {
    wants_protobuf(accept) && crate::protobuf_watch::encodes_whole(resource.kind())
}

fn list(
    ctx: &RouteContext,
    target: &Target,
    selectors: &Selectors,
    call: &Call<'_>,
) -> Response<Body> {
    let accept = call.accept;
    let resource = target.resource;
    let (items, rv) = ctx.store.list(resource, &target.namespace);
    let items: Vec<Value> = items.into_iter().filter(|o| selectors.matches(o)).collect();
    if whole_protobuf(accept, resource) && !ctx.cut_bodies {
        return protobuf_response(crate::protobuf_watch::encode_list_body(
            &resource.api_version(),
            &format!("{}List", resource.kind()),
            &items,
            rv,
        ));
    }
    let value = if table::wants_table(accept) {
        let include = query::value(call.query, "includeObject").unwrap_or_default();
        table::table_with(resource, &items, rv, &include)
    } else {
        json!({"kind": format!("{}List", resource.kind()), "apiVersion": resource.api_version(),
               "metadata": {"resourceVersion": rv.to_string()}, "items": items})
    };
    list_response(value, ctx.cut_bodies)
}

fn patch_kind(call: &Call<'_>) -> Result<PatchKind, Refusal> {
    PatchKind::from_content_type(call.content_type).ok_or_else(|| {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                PatchKind::ACCEPTED
            ),
        )
    })
}

fn patch(ctx: &RouteContext, target: &Target, name: &str, call: &Call<'_>) -> Answer {
    let kind = patch_kind(call)?;
    let body = decode(call)?;
    // Conflicts between managers are not tracked, so `force` changes nothing here.
    let options = write_options(call, None)?;
    ctx.store
        .patch(
            target.resource,
            (&target.namespace, name),
            kind,
            &body,
            &options,
        )
        .map(|(o, created)| {
            (
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                o,
            )
        })
        .map_err(store_error)
}

fn subresource(ctx: &RouteContext, target: &Target, sub: &str, call: &Call<'_>) -> Response<Body> {
    let Some(name) = target.name.as_deref() else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let (resource, namespace) = (target.resource, target.namespace.as_str());
    match (resource.plural, sub) {
        ("pods", "log") if call.method == Method::GET => {
            crate::pod_log::answer(&ctx.store, namespace, name, call.query)
        }
        ("deployments" | "replicasets", "scale") => scale(ctx, target, name, call),
        (_, "status")
            if [
                "pods",
                "namespaces",
                "services",
                "nodes",
                "deployments",
                "replicasets",
            ]
            .contains(&resource.plural) =>
        {
            let answer = match *call.method {
                Method::GET => ctx
                    .store
                    .get(resource, namespace, name)
                    .map_err(store_error),
                Method::PUT | Method::PATCH => status_write(ctx, target, name, call),
                _ => return not_allowed(),
            };
            match answer {
                Ok(object) => json_response(StatusCode::OK, &object),
                Err(refusal) => refusal.response(),
            }
        }
        _ => status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} not found", describe(resource, &format!("{name}/{sub}"))),
        ),
    }
}

/// A write to `status`: only the status changes, whatever else the body says.
fn status_write(
    ctx: &RouteContext,
    target: &Target,
    name: &str,
    call: &Call<'_>,
) -> Result<Value, Refusal> {
    let (resource, namespace) = (target.resource, target.namespace.as_str());
    let old = ctx
        .store
        .get(resource, namespace, name)
        .map_err(store_error)?;
    let body = decode(call)?;
    let written = if *call.method == Method::PUT {
        body
    } else {
        patch_kind(call)?.patch(&old, &body).map_err(patch_error)?
    };
    let mut object = old;
    object["status"] = written["status"].clone();
    if let Some(rv) = written["metadata"]["resourceVersion"]
        .as_str()
        .filter(|_| *call.method == Method::PUT)
    {
        object["metadata"]["resourceVersion"] = json!(rv);
    }
    let options = write_options(call, None)?;
    ctx.store
        .update_with(resource, namespace, name, object, &options)
        .map_err(store_error)
}

/// `autoscaling/v1` `Scale` of a workload (`kubectl scale` reads and patches it).
fn scale(ctx: &RouteContext, target: &Target, name: &str, call: &Call<'_>) -> Response<Body> {
    let (resource, namespace) = (target.resource, target.namespace.as_str());
    let as_scale = |o: &Value| {
        let labels = o["spec"]["selector"]["matchLabels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let selector: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
               "metadata": {"name": name, "namespace": namespace, "uid": o["metadata"]["uid"].clone(),
                            "resourceVersion": o["metadata"]["resourceVersion"].clone(),
                            "creationTimestamp": o["metadata"]["creationTimestamp"].clone()},
               "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(1)},
               "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector.join(",")}})
    };
    let old = match ctx.store.get(resource, namespace, name) {
        Ok(o) => o,
        Err(e) => return store_error(e).response(),
    };
    let current = as_scale(&old);
    let wanted = match *call.method {
        Method::GET => return json_response(StatusCode::OK, &current),
        Method::PUT => decode(call),
        Method::PATCH => patch_kind(call).and_then(|kind| {
            let body = decode(call)?;
            kind.patch(&current, &body).map_err(patch_error)
        }),
        _ => return not_allowed(),
    };
    let wanted = match wanted {
        Ok(w) => w,
        Err(refusal) => return refusal.response(),
    };
    let Some(replicas) = wanted["spec"]["replicas"].as_i64().filter(|r| *r >= 0) else {
        return status_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "spec.replicas: Invalid value: must be greater than or equal to 0",
        );
    };
    let mut object = old;
    object["spec"]["replicas"] = json!(replicas);
    let options = match write_options(call, None) {
        Ok(o) => o,
        Err(refusal) => return refusal.response(),
    };
    match ctx
        .store
        .update_with(resource, namespace, name, object, &options)
    {
        Ok(updated) => json_response(StatusCode::OK, &as_scale(&updated)),
        Err(e) => store_error(e).response(),
    }
}

/// A SelfSubjectAccessReview: the demo cluster allows whoever got in everything.
fn review(target: &Target, call: &Call<'_>) -> Response<Body> {
    if *call.method != Method::POST || target.name.is_some() {
        return not_allowed();
    }
    let mut review = match decode(call) {
        Ok(v) => v,
        Err(refusal) => return refusal.response(),
    };
    if !review["spec"].is_object() {
        return status_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            reason_for(StatusCode::UNPROCESSABLE_ENTITY),
            "spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        );
    }
    review["kind"] = json!(target.resource.kind());
    review["apiVersion"] = json!(target.resource.api_version());
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] =
        json!({"allowed": true, "reason": "the fake apiserver allows every authenticated request"});
    let mut response = json_response(StatusCode::CREATED, &review);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, private"),
    );
    response
}
