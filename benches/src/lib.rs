//! kprox's side-by-side benchmark. One fake TLS apiserver serving fixed bodies; in each round a
//! fresh kprox and a fresh `kubectl proxy` in front of it; every workload run against the
//! apiserver directly, through kprox and through kubectl proxy, one after the other (A B C,
//! A B C, ...) so that machine drift hits all alike. Figures are medians over rounds.

pub mod convergence;
pub mod load;
pub mod pgo_train;
pub mod report;
pub mod slow_readers;
pub mod soak;
pub mod subject;
pub mod watches;
pub mod wrk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use kprox_testkit::{FakeApiServer, FakeOptions, KubeconfigBuilder, Resource, fixed};

use crate::load::{RequestSpec, Target};
pub use crate::report::{Record, Report, SlowReadRecord, StartRecord, WatchRecord};
use crate::subject::Subject;

/// The token the benchmark's apiserver accepts.
pub(crate) const TOKEN: &str = "bench-token-5c1e";

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The kprox binary (a release build for real figures).
    pub kprox: PathBuf,
    /// The kubectl binary.
    pub kubectl: PathBuf,
    pub rounds: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Each connection goes on until it has this many answers counted (see `load::Window`).
    pub at_least_per_connection: u64,
    /// Idle watches opened at once through each target.
    pub watches: usize,
    /// Run only the workloads whose name contains this (the watch workload is "idle watches").
    pub only: Option<String>,
    /// How kprox is started beyond its binary: environment and a wrapper such as a profiler.
    pub launch: subject::Launch,
    /// nginx, when installed: compared as a plain reverse proxy.
    pub nginx: Option<PathBuf>,
    /// HAProxy, when installed: compared in HTTP mode (HTTP/2 upstream) and TCP mode.
    pub haproxy: Option<PathBuf>,
    /// wrk, to generate the load instead of the built-in generator (`--generator wrk`).
    pub wrk: Option<PathBuf>,
    /// More kprox configurations measured beside the default one in the same rounds (a design
    /// or tuning change compared side by side), each under its own name.
    pub variants: Vec<Variant>,
}

/// A kprox configuration measured beside the default: `kprox <label>` in the tables.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    /// Environment added to the default launch's, e.g. `KPROX_RUNTIME__WORKER_THREADS=1`.
    pub env: Vec<(String, String)>,
    /// Another kprox binary (`binary=PATH`): an earlier build, to compare a design change.
    pub binary: Option<PathBuf>,
}

impl Variant {
    /// Parses `LABEL:KEY=VALUE[,KEY=VALUE...]` (the `--variant` argument); the key `binary`
    /// names another kprox binary, every other key is an environment variable.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (label, pairs) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not LABEL:KEY=VALUE[,KEY=VALUE...]"))?;
        let env = pairs
            .split(',')
            .map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("{pair:?} in {text:?} is not KEY=VALUE"))
            })
            .collect::<Result<Vec<(String, String)>, _>>()?;
        let (binary, env): (Vec<_>, Vec<_>) = env.into_iter().partition(|(key, _)| key == "binary");
        Ok(Self {
            name: format!("kprox {label}"),
            env,
            binary: binary.into_iter().next_back().map(|(_, path)| path.into()),
        })
    }
}

impl Options {
    /// A run short enough for CI: it proves the benchmark works, its figures mean nothing.
    pub fn smoke(kprox: PathBuf, kubectl: PathBuf) -> Self {
        Self {
            kprox,
            kubectl,
            rounds: 1,
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(300),
            at_least_per_connection: 1,
            watches: 20,
            only: None,
            launch: subject::Launch::default(),
            nginx: None,
            haproxy: None,
            wrk: None,
            variants: Vec::new(),
        }
    }
}

/// One workload: a request, sent on a number of connections at once.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub connections: usize,
    pub spec: RequestSpec,
}

/// The workloads, in the order they run.
pub fn workloads() -> Vec<Workload> {
    let get = |path| RequestSpec {
        method: Method::GET,
        path,
        body: Bytes::new(),
    };
    let post_body = {
        let object = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bench-post"},
            "data": {"value": "y".repeat(16 * 1024 - 80)},
        });
        Bytes::from(object.to_string())
    };
    vec![
        Workload {
            name: "small GET, 1 connection",
            connections: 1,
            spec: get(fixed::SMALL_LIST_PATH),
        },
        Workload {
            name: "small GET, 64 connections",
            connections: 64,
            spec: get(fixed::SMALL_LIST_PATH),
        },
        Workload {
            name: "1 MiB list, 64 connections",
            connections: 64,
            spec: get(fixed::LARGE_LIST_PATH),
        },
        Workload {
            name: "POST 16 KiB, 64 connections",
            connections: 64,
            spec: RequestSpec {
                method: Method::POST,
                path: fixed::SMALL_LIST_PATH,
                body: post_body,
            },
        },
    ]
}

/// The apiserver proxies are measured against (fixed bodies, one token), and a kubeconfig for
/// it in a directory that lasts as long as the returned `TempDir`.
pub(crate) async fn apiserver_and_kubeconfig(
    name: &str,
) -> anyhow::Result<(FakeApiServer, tempfile::TempDir, PathBuf)> {
    let server = FakeApiServer::start(FakeOptions {
        tokens: vec![TOKEN.to_owned()],
        fixed_bodies: true,
        name: name.to_owned(),
        ..FakeOptions::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    KubeconfigBuilder::new()
        .cluster("bench", &server.url(), &server.ca_pem())
        .user_token("bench", TOKEN)
        .context("bench", "bench", "bench")
        .current("bench")
        .write(&kubeconfig)?;
    Ok((server, dir, kubeconfig))
}

/// Runs the whole benchmark.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let (server, _dir, kubeconfig) = apiserver_and_kubeconfig("bench-apiserver").await?;
    let direct = Target::Tls {
        addr: server.addr(),
        config: Arc::new(tls_config(&server)?),
        token: TOKEN.to_owned(),
    };

    let mut report = Report::new(options);
    for round in 0..options.rounds {
        if round > 0 {
            // The previous round's 10,000 watches and its proxies are still being torn down
            // (20,000 sockets closing): let the machine settle before timing the next starts.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // Its TCP pass-through port on a free port of its own: the same process, the same
        // apiserver, TLS end to end between the load generator and the apiserver.
        let passthrough_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let passthrough_address = format!("127.0.0.1:{passthrough_port}");
        let kprox = Subject::kprox_with(
            &options.kprox,
            &kubeconfig,
            &["--tcp-passthrough", &passthrough_address],
            &options.launch,
        )?;
        let passthrough = Target::Tls {
            addr: passthrough_address.parse()?,
            config: Arc::new(tls_config(&server)?),
            token: TOKEN.to_owned(),
        };
        let kubectl = Subject::kubectl_proxy(&options.kubectl, &kubeconfig)?;
        let variants = options
            .variants
            .iter()
            .map(|variant| {
                let mut launch = options.launch.clone();
                launch.env.extend(variant.env.iter().cloned());
                let binary = variant.binary.as_ref().unwrap_or(&options.kprox);
                Subject::kprox(binary, &kubeconfig, &launch)
                    .map(|subject| (variant.name.as_str(), subject))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let nginx_dir = tempfile::tempdir()?;
        let nginx = options
            .nginx
            .as_ref()
            .map(|binary| {
                Subject::nginx(
                    binary,
                    nginx_dir.path(),
                    server.addr(),
                    &server.ca_pem(),
                    TOKEN,
                )
            })
            .transpose()?;
        let haproxy_dir = tempfile::tempdir()?;
        let haproxy = options
            .haproxy
            .as_ref()
            .map(|binary| {
                Subject::haproxy(
                    binary,
                    haproxy_dir.path(),
                    server.addr(),
                    &server.ca_pem(),
                    TOKEN,
                )
            })
            .transpose()?;
        for subject in [&kprox, &kubectl] {
            tokio::time::sleep(Duration::from_millis(200)).await;
            report.starts.push(StartRecord {
                subject: subject.name.to_owned(),
                round,
                startup_ms: subject.startup.as_secs_f64() * 1000.0,
                idle_rss_kib: subject.memory_kib()?.0,
            });
        }
        let selected = |name: &str| {
            options
                .only
                .as_deref()
                .is_none_or(|only| name.contains(only))
        };
        for workload in workloads().into_iter().filter(|w| selected(w.name)) {
            let mut targets: Vec<(&str, Target, Option<&Subject>)> = vec![
                ("direct", direct.clone(), None),
                ("kprox", Target::Plain(kprox.address), Some(&kprox)),
                ("kprox pass-through", passthrough.clone(), Some(&kprox)),
            ];
            for (name, subject) in &variants {
                targets.push((name, Target::Plain(subject.address), Some(subject)));
            }
            targets.extend([(
                "kubectl proxy",
                Target::Plain(kubectl.address),
                Some(&kubectl),
            )]);
            if let Some(nginx) = &nginx {
                targets.push(("nginx", Target::Plain(nginx.address), Some(nginx)));
            }
            if let Some((haproxy, tcp)) = &haproxy {
                targets.push(("haproxy", Target::Plain(haproxy.address), Some(haproxy)));
                targets.push((
                    "haproxy tcp",
                    Target::Tls {
                        addr: *tcp,
                        config: Arc::new(tls_config(&server)?),
                        token: TOKEN.to_owned(),
                    },
                    Some(haproxy),
                ));
            }
            for (name, target, subject) in targets {
                let cpu_before = subject.map(Subject::cpu_seconds).transpose()?;
                let switches_before = subject.map(Subject::context_switches).transpose()?;
                let window = load::Window {
                    warmup: options.warmup,
                    measure: options.measure,
                    at_least_per_connection: options.at_least_per_connection,
                };
                let sample = match &options.wrk {
                    None => {
                        load::drive(&target, &workload.spec, workload.connections, window).await?
                    }
                    Some(wrk) => {
                        let (wrk, target, spec) =
                            (wrk.clone(), target.clone(), workload.spec.clone());
                        let connections = workload.connections;
                        tokio::task::spawn_blocking(move || {
                            wrk::drive(&wrk, &target, &spec, connections, window)
                        })
                        .await??
                    }
                };
                let cpu_after = subject.map(Subject::cpu_seconds).transpose()?;
                let switches_after = subject.map(Subject::context_switches).transpose()?;
                // The warm-up's requests used CPU too; scale to the measured share.
                let share = sample.seconds / (sample.seconds + options.warmup.as_secs_f64());
                let per_request = |used: f64| used * share / (sample.requests.max(1) as f64);
                let cpu_per_10k = cpu_before
                    .zip(cpu_after)
                    .map(|(before, after)| per_request(after - before) * 10_000.0);
                let switches_per_request = switches_before
                    .zip(switches_after)
                    .map(|(before, after)| per_request(after.saturating_sub(before) as f64));
                report.records.push(Record {
                    workload: workload.name.to_owned(),
                    subject: name.to_owned(),
                    round,
                    requests_per_second: sample.requests_per_second(),
                    p50_ms: sample.quantile_ms(0.50),
                    p99_ms: sample.quantile_ms(0.99),
                    requests: sample.requests,
                    errors: sample.errors,
                    cpu_seconds_per_10k: cpu_per_10k,
                    switches_per_request,
                    peak_rss_kib: subject.map(|s| s.memory_kib().map(|m| m.1)).transpose()?,
                });
            }
        }
        if selected(SLOW_READERS_WORKLOAD) {
            let mut subjects = vec![&kprox, &kubectl];
            subjects.extend(nginx.as_ref());
            subjects.extend(haproxy.as_ref().map(|(http, _)| http));
            for subject in subjects {
                report.slow_reads.push(slow_readers(subject, round).await?);
            }
        }
        // Through the proxies only: the figure is the proxy's memory, and 10,000 direct TLS
        // watches would need 20,000 descriptors in this one process (the fake runs here too).
        for subject in [&kprox, &kubectl] {
            if !selected(WATCH_WORKLOAD) {
                break;
            }
            report
                .watches
                .push(idle_watches(&server, subject, round, options.watches).await?);
        }
    }
    Ok(report)
}

/// The slow-reader workload's name, as `--only` matches it.
pub const SLOW_READERS_WORKLOAD: &str = "1 MiB list, 64 slow readers";

/// How long the slow readers read before the proxy is weighed.
const SLOW_READ_WINDOW: Duration = Duration::from_secs(3);

/// Weighs the proxy, starts the slow readers, weighs it again mid-response.
async fn slow_readers(subject: &Subject, round: usize) -> anyhow::Result<SlowReadRecord> {
    let pace = slow_readers::Pace::DEFAULT;
    let rss_before_kib = subject.memory_kib()?.0;
    let readers = slow_readers::start(subject.address, fixed::LARGE_LIST_PATH, pace);
    tokio::time::sleep(SLOW_READ_WINDOW).await;
    let rss_kib = subject.memory_kib()?.0;
    let record = SlowReadRecord {
        subject: subject.name.to_owned(),
        round,
        readers: pace.readers,
        started: readers.started(),
        taken_bytes: readers.taken(),
        rss_before_kib,
        rss_kib,
    };
    drop(readers);
    // Let the proxy see the readers go before the next one is weighed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(record)
}

/// The idle-watch workload's name, as `--only` matches it.
pub const WATCH_WORKLOAD: &str = "idle watches";

/// Opens the watches, weighs the proxy, sends one event and counts the watches that saw it.
async fn idle_watches(
    server: &FakeApiServer,
    subject: &Subject,
    round: usize,
    count: usize,
) -> anyhow::Result<WatchRecord> {
    let started = std::time::Instant::now();
    let open = watches::open(&Target::Plain(subject.address), count, 200).await?;
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_kib = subject.memory_kib()?.0;
    let event_name = format!("bench-event-{round}-{}", subject.name.replace(' ', "-"));
    server.store().create(
        Resource::CONFIG_MAPS,
        "default",
        serde_json::json!({"metadata": {"name": event_name}, "data": {"round": round.to_string()}}),
    )?;
    let received = open.wait_for(open.opened, Duration::from_secs(30)).await;
    Ok(WatchRecord {
        subject: subject.name.to_owned(),
        round,
        watches: open.opened,
        received,
        rss_kib,
        open_seconds,
    })
}

/// A TLS client configuration trusting the fake apiserver's CA, speaking HTTP/1.1.
pub(crate) fn tls_config(server: &FakeApiServer) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.pki().ca_der())?;
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The path of `program` (searched in `PATH` unless it is a path already), or a clear error
/// when it is not installed.
pub fn which(program: &std::path::Path) -> anyhow::Result<PathBuf> {
    if program.components().count() > 1 {
        return Ok(program.to_owned());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} is not installed; the benchmark compares kprox with kubectl proxy",
                program.display()
            )
        })
}
