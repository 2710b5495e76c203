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
        let mut args = vec![
            "-sS".to_owned(),
            "--max-time".into(),
            "10".into(),
            "--cacert".into(),
            self.ca.path().display().to_string(),
            "-w".into(),
            "\n%{http_code}".into(),
        ];
        for h in headers {
            args.push("-H".into());
            args.push((*h).to_owned());
        }
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
