//! The load generator: `connections` HTTP/1.1 connections, each sending one request after the
//! other for a fixed time (as wrk does), with the warm-up excluded from every figure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

/// Where the load goes: a proxy's plain HTTP port, or the apiserver itself over TLS with the
/// credential a proxy would add.
#[derive(Clone, Debug)]
pub enum Target {
    Plain(SocketAddr),
    Tls {
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        token: String,
    },
}

/// One kind of request.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub method: Method,
    pub path: &'static str,
    pub body: Bytes,
}

/// What one timed run measured.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Requests answered with a 2xx after the warm-up.
    pub requests: u64,
    /// Failed requests (transport errors and non-2xx) after the warm-up.
    pub errors: u64,
    /// Seconds measured (the run less its warm-up).
    pub seconds: f64,
    /// Latency of every measured request, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Quantiles as an external generator (wrk) reported them: (quantile, milliseconds).
    pub reported_quantiles_ms: Vec<(f64, f64)>,
}

impl Sample {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.seconds.max(f64::EPSILON)
    }

    /// The latency at quantile `q` (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return self
                .reported_quantiles_ms
                .iter()
                .find(|(reported, _)| (reported - q).abs() < 1e-9)
                .map_or(f64::NAN, |(_, ms)| *ms);
        }
        let index = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[index.min(self.latencies_us.len() - 1)]) / 1000.0
    }
}

/// A connected HTTP/1.1 client for `target`.
pub async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    match target {
        Target::Plain(addr) => {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            handshake(TokioIo::new(stream)).await
        }
        Target::Tls { addr, config, .. } => {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let name = ServerName::try_from("localhost")?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, stream)
                .await?;
            handshake(TokioIo::new(tls)).await
        }
    }
}

async fn handshake<T>(io: TokioIo<T>) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A request for `spec` as it goes to `target`.
pub fn request(target: &Target, spec: &RequestSpec) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder()
        .method(spec.method.clone())
        .uri(spec.path)
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "application/json");
    if !spec.body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    if let Target::Tls { token, .. } = target {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    Ok(builder.body(Full::new(spec.body.clone()))?)
}

/// How long a run lasts.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Requests sent before this is over are not counted.
    pub warmup: Duration,
    /// Then requests are counted for this long...
    pub measure: Duration,
    /// ...and, on each connection, until at least this many were answered (the smoke run's
    /// window is shorter than one slow answer on a loaded machine). 0 for real figures.
    pub at_least_per_connection: u64,
}

/// Runs `connections` connections against `target` for the `window`.
pub async fn drive(
    target: &Target,
    spec: &RequestSpec,
    connections: usize,
    window: Window,
) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let measured_from = start + window.warmup;
    let end = measured_from + window.measure;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let target = target.clone();
        let spec = spec.clone();
        let at_least = window.at_least_per_connection;
        tasks.push(tokio::spawn(async move {
            one_connection(&target, &spec, measured_from, end, at_least).await
        }));
    }
    let mut total = Sample::default();
    for task in tasks {
        let sample = task.await??;
        total.requests += sample.requests;
        total.errors += sample.errors;
        total.latencies_us.extend(sample.latencies_us);
    }
    total.seconds = measured_from.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    Ok(total)
}

async fn one_connection(
    target: &Target,
    spec: &RequestSpec,
    measured_from: Instant,
    end: Instant,
    at_least: u64,
) -> anyhow::Result<Sample> {
    let mut sample = Sample::default();
    let mut sender = None;
    while Instant::now() < end || sample.requests + sample.errors < at_least {
        let client = match sender.as_mut() {
            Some(client) => client,
            None => sender.insert(connect(target).await?),
        };
        let sent = Instant::now();
        let outcome = async {
            let response = client.send_request(request(target, spec)?).await?;
            let ok = response.status().is_success();
            response.into_body().collect().await?;
            anyhow::Ok(ok)
        }
        .await;
        let counted = sent >= measured_from;
        match outcome {
            Ok(true) if counted => {
                sample.requests += 1;
                let micros = sent.elapsed().as_micros();
                sample
                    .latencies_us
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            Ok(true) => {}
            Ok(false) => sample.errors += u64::from(counted),
            Err(_) => {
                sample.errors += u64::from(counted);
                sender = None;
            }
        }
    }
    Ok(sample)
}
