//! How kprox reads a request path, as a table: each spelling sent byte for byte over a real
//! socket, with the verdict the client gets and what the apiserver saw. The rule (README,
//! "Paths"): the filters judge the path as the apiserver reads it (every escape decoded, `//`
//! merged, dot segments resolved); the path is forwarded exactly as sent unless its own
//! segments have `//`, `.` or `..`; truly ambiguous spellings are refused with 400.

mod support;

use support::raw::exchange_async;
use support::{Cluster, ok_stdout, run};

/// What kprox does with a spelling.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    /// 403 from the filter (the default `--reject-paths`).
    Refused,
    /// 400: no single reading of the path exists.
    Ambiguous,
    /// Reaches the apiserver byte for byte.
    Forwarded,
    /// Reaches the apiserver with its segments resolved, as this path.
    ForwardedAs(&'static str),
}

use Verdict::{Ambiguous, Forwarded, ForwardedAs, Refused};

const POD: &str = "/api/v1/namespaces/default/pods/alpha";

fn table() -> Vec<(String, Verdict)> {
    let pod = |rest: &str| format!("{POD}{rest}");
    let row = |path: &str, verdict| (path.to_owned(), verdict);
    vec![
        // exec and attach, however they are spelt
        (pod("/exec"), Refused),
        (pod("/attach"), Refused),
        (pod("/exec/"), Refused),
        (pod("%2Fexec"), Refused),
        (pod("%2fexec"), Refused),
        (pod("%2F%2Fexec"), Refused),
        (pod("%2Fattach"), Refused),
        (pod("/%65xec"), Refused),
        (pod("/%65%78%65%63"), Refused),
        (pod("/%61ttach"), Refused),
        (pod("//exec"), Refused),
        row("/api/v1/namespaces/default/pods//alpha//exec", Refused),
        row("//api/v1/namespaces/default/pods/alpha/exec", Refused),
        (pod("/./exec"), Refused),
        (pod("/%2e/exec"), Refused),
        (pod("/x/../exec"), Refused),
        (pod("/x/%2e%2e/exec"), Refused),
        (pod("/x/%2E%2E/exec"), Refused),
        (pod("/EXEC"), Refused),
        (pod("/Exec"), Refused),
        (pod("/%45xec"), Refused),
        (pod("/aTTach"), Refused),
        row("/API/v1/namespaces/default/pods/alpha/exec", Refused),
        row(
            "/api/v1/nodes/node-1/proxy/exec/default/alpha/main",
            Refused,
        ),
        row(
            "/api/v1/nodes/node-1/proxy/%65xec/default/alpha/main",
            Refused,
        ),
        row("/api/v1/nodes/node-1/proxy/run/default/alpha/main", Refused),
        row(
            "/api/v1/nodes/node-1/proxy/portForward/default/alpha",
            Refused,
        ),
        // no single reading: refused whatever the filter says
        (pod("/exec%00"), Ambiguous),
        // a decoded newline would stop `.*` in the reject-paths regexes (found by fuzzing)
        (pod("%0Ax/attach"), Ambiguous),
        (pod("%0d/exec"), Ambiguous),
        (pod("/exec;jsessionid=1"), Ambiguous),
        (pod("/exec%3B"), Ambiguous),
        (pod("\\exec"), Ambiguous),
        (pod("%5Cexec"), Ambiguous),
        (pod("/x%2F..%2Fexec"), Ambiguous),
        (pod("/x%2F%2e%2e%2Fexec"), Ambiguous),
        (pod("/%zzexec"), Ambiguous),
        (pod("/%6"), Ambiguous),
        row(
            "/api/v1/namespaces/default/services/web/proxy/a%2F/../b",
            Ambiguous,
        ),
        // everything else reaches the apiserver exactly as sent
        row(
            "/api/v1/namespaces/default/services/rabbitmq:15672/proxy/api/queues/%2F",
            Forwarded,
        ),
        row(
            "/api/v1/namespaces/default/services/rabbitmq:15672/proxy/api/queues/%2f/orders",
            Forwarded,
        ),
        row(
            "/api/v1/namespaces/default/services/web/proxy/search%3Fq%3Dexec",
            Forwarded,
        ),
        row("/api/v1/namespaces/default/configmaps/a%2Db", Forwarded),
        (pod("/log"), Forwarded),
        (pod("/%6cog"), Forwarded),
        // the default rule is kubectl's regex, unanchored at its end
        (pod("/executions"), Refused),
        row("/api/v1/namespaces/default/pods/", Forwarded),
        // the client's own `//` and dot segments are resolved (kubectl proxy redirects to
        // the same clean path)
        row(
            "/api/v1/namespaces//default/pods",
            ForwardedAs("/api/v1/namespaces/default/pods"),
        ),
        row(
            "/api/v1/namespaces/default/./pods",
            ForwardedAs("/api/v1/namespaces/default/pods"),
        ),
        row(
            "/api/v1/x/../namespaces/default/pods",
            ForwardedAs("/api/v1/namespaces/default/pods"),
        ),
        row(
            "/api/v1/namespaces/default/%2e/pods/%6cist",
            ForwardedAs("/api/v1/namespaces/default/pods/list"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_gets_its_verdict_and_forwarded_paths_arrive_byte_for_byte() {
    let cluster = Cluster::start().await;
    let kprox = cluster.kprox(&[]);
    let mut wrong = Vec::new();
    for (path, verdict) in table() {
        let before = cluster.server.requests().len();
        let request = format!(
            "POST {path}?command=id HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let raw = exchange_async(&kprox.address, request).await;
        // The apiserver's log of this exchange (kprox's own /readyz checks left out).
        let seen: Vec<String> = cluster.server.requests()[before..]
            .iter()
            .map(|r| r.uri.clone())
            .filter(|uri| !uri.starts_with("/readyz") && !uri.starts_with("/livez"))
            .collect();
        let ok = match verdict {
            Refused => raw.status == 403 && seen.is_empty(),
            Ambiguous => raw.status == 400 && seen.is_empty(),
            Forwarded => seen == [format!("{path}?command=id")] && raw.status != 400,
            ForwardedAs(clean) => seen == [format!("{clean}?command=id")] && raw.status != 400,
        };
        if !ok {
            wrong.push(format!(
                "{path}: wanted {verdict:?}, got {} and the apiserver saw {seen:?}",
                raw.status
            ));
        }
        if matches!(verdict, Refused | Ambiguous) {
            assert!(
                raw.all.contains("\"kind\":\"Status\""),
                "{path}: {}",
                raw.all
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encoded_slash_passes_with_the_filter_disabled_and_through_curl() {
    let cluster = Cluster::start().await;
    let path = "/api/v1/namespaces/default/services/rabbitmq:15672/proxy/api/queues/%2F";
    for args in [&[][..], &["--disable-filter"][..]] {
        let kprox = cluster.kprox(args);
        let out = ok_stdout(
            &run(
                "curl",
                &[
                    "-sS",
                    "--path-as-is",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &kprox.url(path),
                ],
            ),
            "curl",
        );
        assert_ne!(out, "400", "{args:?}");
        assert!(
            cluster.server.requests().iter().any(|r| r.uri == path),
            "{args:?}: the apiserver never saw {path}"
        );
    }
}
