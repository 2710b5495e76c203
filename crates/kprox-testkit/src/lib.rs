//! kprox-testkit: a realistic fake Kubernetes apiserver and the certificates and kubeconfigs
//! to reach it. Used by kprox's tests, benchmarks and `kprox demo`; never by the proxy itself.
//!
//! The fake serves HTTPS on 127.0.0.x with its own CA, authenticates client certificates and
//! bearer tokens, answers discovery and OpenAPI the way kubectl expects, keeps the types of
//! [`resource_types`] in memory with list/get/create/update/patch/delete, dry runs, selectors,
//! Tables and chunked watches, serves pod logs, exec, attach and port-forward, logs every
//! request, counts TLS handshakes and connections, and can be switched into faults
//! ([`Behaviour`]) at run time. [`workloads`] makes it look like a small live cluster.

mod behaviour;
mod body;
mod certs;
pub mod clock;
mod cluster;
mod digest;
mod discovery;
mod exec_plugin;
pub mod fixed;
mod kubeconfig;
mod openapi;
pub mod patch;
mod pod_log;
mod protobuf;
pub mod protobuf_watch;
mod proxies;
mod query;
mod raw_apiserver;
mod resource_api;
pub mod resource_types;
mod routes;
mod selectors;
mod server;
mod spdy;
mod store;
mod streaming;
mod table;
mod target;
mod watch_stream;
pub mod workloads;

pub use behaviour::Behaviour;
pub use certs::{CertifiedPem, TestPki};
pub use cluster::FakeCluster;
pub use digest::digest;
pub use exec_plugin::{exec_plugin_runs, write_exec_plugin};
pub use kubeconfig::KubeconfigBuilder;
pub use proxies::{ProxyKind, TunnelProxy};
pub use raw_apiserver::RawApiServer;
pub use server::{FakeApiServer, FakeOptions, Identity, LoggedRequest};
pub use store::{HISTORY_LIMIT, Resource, Store, StoreError, WriteOptions};
