//! kprox-testkit: a realistic fake Kubernetes apiserver and the certificates and kubeconfigs
//! to reach it. Used by kprox's tests, benchmarks and `kprox demo`; never by the proxy itself.
//!
//! The fake serves HTTPS on 127.0.0.x with its own CA, authenticates client certificates and
//! bearer tokens, answers discovery the way kubectl expects, keeps pods, configmaps and
//! namespaces in memory with list/get/create/update/delete and chunked watches, logs every
//! request, counts TLS handshakes and connections, and can be switched into faults
//! ([`Behaviour`]) at run time.

mod behaviour;
mod body;
mod certs;
mod cluster;
mod discovery;
mod exec_plugin;
pub mod fixed;
mod kubeconfig;
mod protobuf;
pub mod protobuf_watch;
mod proxies;
mod raw_apiserver;
mod routes;
mod server;
mod spdy;
mod store;
mod streaming;
mod table;
mod watch_stream;

pub use behaviour::Behaviour;
pub use certs::{CertifiedPem, TestPki};
pub use cluster::FakeCluster;
pub use exec_plugin::{exec_plugin_runs, write_exec_plugin};
pub use kubeconfig::KubeconfigBuilder;
pub use proxies::{ProxyKind, TunnelProxy};
pub use raw_apiserver::RawApiServer;
pub use routes::digest;
pub use server::{FakeApiServer, FakeOptions, Identity, LoggedRequest};
pub use store::{HISTORY_LIMIT, Resource, Store, StoreError};
