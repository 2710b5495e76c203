//! The fake apiserver as curl sees it: TLS with its own CA, authentication, discovery in both
//! forms, and faults switched at run time.

use std::process::Command;
use std::time::{Duration, Instant};

use kprox_testkit::{Behaviour, FakeApiServer, FakeOptions};

const TOKEN: &str = "testkit-token";

struct Curl {
    ca: tempfile::NamedTempFile,
}

impl Curl {
    fn for_server(server: &FakeApiServer) -> Self {
        let ca = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(ca.path(), server.ca_pem()).expect("write ca");
        Self { ca }
    }

    /// Returns (status code, body).
    fn get(&self, url: &str, headers: &[&str]) -> (u16, String) {
        let extra: Vec<String> = headers
            .iter()
            .flat_map(|h| ["-H".to_owned(), (*h).to_owned()])
            .collect();
        self.run(url, &extra)
    }

    /// curl with `extra` arguments; returns (status code, body).
    fn run(&self, url: &str, extra: &[String]) -> (u16, String) {
        let mut args = vec![
            "-sS".to_owned(),
            "--max-time".into(),
            "10".into(),
            "--cacert".into(),
            self.ca.path().display().to_string(),
            "-w".into(),
            "\n%{http_code}".into(),
        ];
        args.extend(extra.iter().cloned());
        args.push(url.to_owned());
        let output = Command::new("curl")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("curl is required: {e}"));
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        (code.parse().unwrap_or(0), body.to_owned())
    }
}

async fn server() -> FakeApiServer {
    FakeApiServer::start(FakeOptions {
        tokens: vec![TOKEN.into()],
        ..Default::default()
    })
    .await
    .expect("starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_credentials_get_a_401_status_but_health_is_public() {
    let server = server().await;
    let curl = Curl::for_server(&server);
    let url = server.url();
    let (code, body) = tokio::task::spawn_blocking(move || {
        curl.get(&format!("{url}/api/v1/namespaces/default/pods"), &[])
    })
    .await
    .expect("curl");
    assert_eq!(code, 401);
    assert!(
        body.contains("\"kind\":\"Status\"") && body.contains("Unauthorized"),
        "{body}"
    );
    let curl = Curl::for_server(&server);
    let url = server.url();
    let (code, _) = tokio::task::spawn_blocking(move || curl.get(&format!("{url}/readyz"), &[]))
        .await
        .expect("curl");
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_comes_in_the_form_asked_for() {
    let server = server().await;
    let curl = Curl::for_server(&server);
    let url = server.url();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (legacy, aggregated) = tokio::task::spawn_blocking(move || {
        let legacy = curl.get(&format!("{url}/api"), &[&auth]);
        let aggregated = curl.get(&format!("{url}/api"), &[&auth, "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"]);
        (legacy, aggregated)
    })
    .await
    .expect("curl");
    assert!(
        legacy.1.contains("\"kind\":\"APIVersions\""),
        "{}",
        legacy.1
    );
    assert!(
        aggregated.1.contains("\"kind\":\"APIGroupDiscoveryList\""),
        "{}",
        aggregated.1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_slow_faults_apply_at_once() {
    let server = server().await;
    server.set_behaviour(Behaviour::Status(503)).await;
    let curl = Curl::for_server(&server);
    let url = server.url();
    let (code, body) =
        tokio::task::spawn_blocking(move || curl.get(&format!("{url}/version"), &[]))
            .await
            .expect("curl");
    assert_eq!(code, 503);
    assert!(body.contains("ServiceUnavailable"), "{body}");

    server
        .set_behaviour(Behaviour::Slow(Duration::from_millis(400)))
        .await;
    let curl = Curl::for_server(&server);
    let url = server.url();
    let started = Instant::now();
    let (code, _) = tokio::task::spawn_blocking(move || curl.get(&format!("{url}/version"), &[]))
        .await
        .expect("curl");
    assert_eq!(code, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread")]
async fn refuse_closes_the_port_and_healthy_reopens_it() {
    let server = server().await;
    server.set_behaviour(Behaviour::Refuse).await;
    let refused = tokio::net::TcpStream::connect(server.addr()).await;
    assert_eq!(
        refused.expect_err("refused").kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    server.set_behaviour(Behaviour::Healthy).await;
    tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("accepting again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_from_a_compacted_version_gets_410_gone() {
    let server = server().await;
    let old = server.store().resource_version();
    server.store().add_pod("default", "p").expect("add");
    server.store().compact();
    let curl = Curl::for_server(&server);
    let url = server.url();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (code, body) = tokio::task::spawn_blocking(move || {
        curl.get(
            &format!("{url}/api/v1/namespaces/default/pods?watch=1&resourceVersion={old}"),
            &[&auth],
        )
    })
    .await
    .expect("curl");
    assert_eq!(code, 200);
    assert!(
        body.contains("\"type\":\"ERROR\"") && body.contains("\"code\":410"),
        "{body}"
    );
}

/// The events of a finished JSON watch stream: (type, name, resourceVersion).
fn watch_events(body: &str) -> Vec<(String, String, u64)> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("an event per line");
            let meta = &event["object"]["metadata"];
            (
                event["type"].as_str().unwrap_or_default().to_owned(),
                meta["name"].as_str().unwrap_or_default().to_owned(),
                meta["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .or_else(|| event["object"]["code"].as_u64())
                    .unwrap_or(0),
            )
        })
        .collect()
}

async fn curl_get(server: &FakeApiServer, path: &str) -> (u16, String) {
    let curl = Curl::for_server(server);
    let url = format!("{}{path}", server.url());
    let auth = format!("Authorization: Bearer {TOKEN}");
    tokio::task::spawn_blocking(move || curl.get(&url, &[&auth]))
        .await
        .expect("curl")
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_behave_like_the_watch_cache() {
    let server = server().await;
    // Created in reverse key order: the initial events (key order) are not in version order.
    for name in ["c", "b", "a"] {
        server.store().add_pod("default", name).expect("pod");
    }
    let pods = "/api/v1/namespaces/default/pods";
    let (code, body) = curl_get(&server, &format!("{pods}?watch=True&timeoutSeconds=1")).await;
    assert_eq!(code, 200);
    let initial = watch_events(&body);
    let names: Vec<&str> = initial.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(
        initial[0].2 > initial[2].2,
        "versions follow creation, not key order"
    );

    // WatchList: validated as the apiserver does, and ended by its bookmark.
    let (code, body) = curl_get(&server, &format!("{pods}?watch=1&sendInitialEvents=true")).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("allowWatchBookmarks"), "{body}");
    let (code, body) = curl_get(
        &server,
        &format!("{pods}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"),
    )
    .await;
    assert_eq!(code, 200);
    let events = watch_events(&body);
    assert_eq!(events.len(), 4, "{body}");
    assert_eq!(events[3].0, "BOOKMARK");
    assert_eq!(events[3].2, server.store().resource_version());
    assert!(
        body.contains("\"k8s.io/initial-events-end\":\"true\""),
        "{body}"
    );

    // The legacy watch path, from a version: only what came after.
    let rv = server.store().resource_version();
    server.store().add_pod("default", "d").expect("pod");
    let (code, body) = curl_get(
        &server,
        &format!("/api/v1/watch/namespaces/default/pods?resourceVersion={rv}&timeoutSeconds=1"),
    )
    .await;
    assert_eq!(code, 200);
    let events = watch_events(&body);
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!((events[0].0.as_str(), events[0].1.as_str()), ("ADDED", "d"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_version_is_gone_once_the_history_moves_on_and_a_lagging_replica_answers_504() {
    let server = server().await;
    let first = server.store().resource_version();
    for n in 0..=kprox_testkit::HISTORY_LIMIT {
        server
            .store()
            .add_pod("default", &format!("p{n}"))
            .expect("pod");
    }
    let (code, body) = curl_get(
        &server,
        &format!(
            "/api/v1/namespaces/default/pods?watch=1&resourceVersion={first}&timeoutSeconds=1"
        ),
    )
    .await;
    assert_eq!(code, 200);
    let events = watch_events(&body);
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!((events[0].0.as_str(), events[0].2), ("ERROR", 410));

    server.lag_behind(true);
    server.store().add_pod("default", "newer").expect("pod");
    let newer = server.store().resource_version();
    let started = Instant::now();
    let (code, body) = curl_get(
        &server,
        &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={newer}"),
    )
    .await;
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("ResourceVersionTooLarge"), "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the replica did not wait for its cache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn configmaps_and_pods_come_in_protobuf_when_asked_for_first() {
    let server = server().await;
    server.store().add_pod("default", "alpha").expect("pod");
    server
        .store()
        .create(
            kprox_testkit::Resource::CONFIG_MAPS,
            "default",
            serde_json::json!({"metadata": {"name": "settings", "labels": {"a": "b"}}, "data": {"k": "v"}}),
        )
        .expect("configmap");
    let ca = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(ca.path(), server.ca_pem()).expect("ca");
    let fetch = |path: &str| {
        let headers = tempfile::NamedTempFile::new().expect("temp");
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(ca.path())
            .args([
                "-H",
                &format!("Authorization: Bearer {TOKEN}"),
                "-H",
                "Accept: application/vnd.kubernetes.protobuf, application/json",
                "-D",
            ])
            .arg(headers.path())
            .arg(format!("{}{path}", server.url()))
            .output()
            .unwrap_or_else(|e| panic!("curl is required: {e}"));
        let head = std::fs::read_to_string(headers.path())
            .expect("headers")
            .to_ascii_lowercase();
        (output.stdout, head)
    };
    let (body, head) = fetch("/api/v1/namespaces/default/configmaps");
    assert!(
        head.contains("content-type: application/vnd.kubernetes.protobuf"),
        "{head}"
    );
    let list = kprox_testkit::protobuf_watch::decode_list_body(&body).expect("a protobuf list");
    assert_eq!(list.kind, "ConfigMapList");
    assert_eq!(
        list.resource_version,
        server.store().resource_version().to_string()
    );
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0]["name"], "settings");
    assert_eq!(list.items[0]["labels"]["a"], "b");
    let (body, head) = fetch("/api/v1/namespaces/default/configmaps/settings");
    assert!(
        head.contains("content-type: application/vnd.kubernetes.protobuf"),
        "{head}"
    );
    assert!(body.starts_with(b"k8s\0"), "not an envelope");
    // A Pod in protobuf carries what kubectl exec and port-forward read: its phase and
    // containers.
    let (body, head) = fetch("/api/v1/namespaces/default/pods/alpha");
    assert!(
        head.contains("content-type: application/vnd.kubernetes.protobuf"),
        "{head}"
    );
    for needle in [
        &b"Running"[..],
        b"main",
        b"registry.k8s.io/pause:3.10",
        b"alpha",
    ] {
        assert!(
            body.windows(needle.len()).any(|w| w == needle),
            "{} missing from the protobuf pod",
            String::from_utf8_lossy(needle)
        );
    }
    let (body, head) = fetch("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices");
    assert!(
        head.contains("content-type: application/vnd.kubernetes.protobuf"),
        "{head}"
    );
    let list = kprox_testkit::protobuf_watch::decode_list_body(&body).expect("a protobuf list");
    assert_eq!(list.kind, "EndpointSliceList");
}

/// curl with a method, headers and a body; returns (status code, body).
async fn curl_send(
    server: &FakeApiServer,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let curl = Curl::for_server(server);
    let url = format!("{}{path}", server.url());
    let mut args: Vec<String> = vec!["-X".into(), method.into()];
    for h in headers {
        args.push("-H".into());
        args.push((*h).to_owned());
    }
    if !body.is_empty() {
        args.push("--data-binary".into());
        args.push(body.to_owned());
    }
    tokio::task::spawn_blocking(move || {
        let mut all: Vec<String> = vec!["-H".into(), format!("Authorization: Bearer {TOKEN}")];
        all.extend(args);
        curl.run(&url, &all)
    })
    .await
    .expect("curl")
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_patch_in_four_ways_honour_dry_run_and_refuse_stale_versions() {
    let server = server().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let json = "Content-Type: application/json";
    let (code, created) = curl_send(
        &server,
        "POST",
        cms,
        &[json],
        r#"{"metadata":{"name":"a"},"data":{"k":"v"}}"#,
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    let item = format!("{cms}/a");
    for (kind, body) in [
        ("strategic-merge-patch+json", r#"{"data":{"s":"1"}}"#),
        ("merge-patch+json", r#"{"data":{"m":"2"}}"#),
        (
            "json-patch+json",
            r#"[{"op":"add","path":"/data/j","value":"3"}]"#,
        ),
    ] {
        let (code, text) = curl_send(
            &server,
            "PATCH",
            &item,
            &[&format!("Content-Type: application/{kind}")],
            body,
        )
        .await;
        assert_eq!(code, 200, "{kind}: {text}");
    }
    let (code, text) = curl_send(
        &server,
        "PATCH",
        &format!("{item}?fieldManager=me"),
        &["Content-Type: application/apply-patch+yaml"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  y: '4'\n",
    )
    .await;
    assert_eq!(code, 200, "a YAML apply patch: {text}");
    let (_, text) = curl_get(&server, &item).await;
    let object: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        object["data"],
        serde_json::json!({"k": "v", "s": "1", "m": "2", "j": "3", "y": "4"})
    );
    assert!(
        object["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|m| m
                .iter()
                .any(|e| e["manager"] == "me" && e["operation"] == "Apply"))
    );

    let (code, text) = curl_send(&server, "PATCH", &item, &["Content-Type: text/plain"], "x").await;
    assert_eq!(code, 415, "{text}");
    let (code, _) = curl_send(
        &server,
        "PATCH",
        &format!("{item}?dryRun=All"),
        &["Content-Type: application/merge-patch+json"],
        r#"{"data":{"k":"dry"}}"#,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = curl_send(&server, "DELETE", &format!("{item}?dryRun=All"), &[], "").await;
    assert_eq!(code, 200);
    let (_, text) = curl_get(&server, &item).await;
    assert!(
        text.contains(r#""k":"v""#),
        "dry runs changed nothing: {text}"
    );
    let (code, text) = curl_send(
        &server,
        "PATCH",
        &format!("{item}?dryRun=Some"),
        &["Content-Type: application/merge-patch+json"],
        "{}",
    )
    .await;
    assert_eq!(code, 400, "{text}");

    // An update from the version created, long since changed: 409 Conflict.
    let (code, text) = curl_send(&server, "PUT", &item, &[json], &created.to_string()).await;
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("\"reason\":\"Conflict\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_reviews_logs_and_trailing_slashes_answer_as_an_apiserver_does() {
    let server = server().await;
    server.store().add_pod("default", "web-0").expect("pod");
    for path in [
        "/version/",
        "/api/",
        "/apis/",
        "/api/v1/namespaces/default/pods/",
    ] {
        let (code, text) = curl_get(&server, path).await;
        assert_eq!(code, 200, "{path}: {text}");
    }
    let (code, index) = curl_get(&server, "/openapi/v3").await;
    assert_eq!(code, 200);
    let index: serde_json::Value = serde_json::from_str(&index).expect("json");
    let apps = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .expect("apps/v1 listed");
    let (code, document) = curl_get(&server, apps).await;
    assert_eq!(code, 200);
    assert!(
        document.contains("\"openapi\":\"3.0.0\"")
            && document.contains("io.k8s.api.apps.v1.Deployment")
    );
    let (code, _) = curl_send(
        &server,
        "GET",
        "/openapi/v2",
        &["Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf"],
        "",
    )
    .await;
    assert_eq!(code, 406, "v2 is served in JSON only");

    let (code, review) = curl_send(&server, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", &["Content-Type: application/json"],
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"create","resource":"pods"}}}"#).await;
    assert_eq!(code, 201, "{review}");
    assert!(review.contains("\"allowed\":true"), "{review}");

    let (code, log) = curl_get(
        &server,
        "/api/v1/namespaces/default/pods/web-0/log?tailLines=1&timestamps=true",
    )
    .await;
    assert_eq!(code, 200, "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("web-0/main"), "{log}");
    let (code, text) = curl_get(
        &server,
        "/api/v1/namespaces/default/pods/web-0/log?container=nope",
    )
    .await;
    assert_eq!(code, 400, "{text}");

    let (code, table) = curl_send(
        &server,
        "GET",
        "/api/v1/namespaces/default/pods",
        &["Accept: application/json;as=Table;v=v1;g=meta.k8s.io"],
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert!(!table.contains("<unknown>"), "ages are computed: {table}");
    let (code, selected) = curl_get(
        &server,
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dnope",
    )
    .await;
    assert_eq!(code, 200);
    assert!(selected.contains("\"items\":[]"), "{selected}");
}
