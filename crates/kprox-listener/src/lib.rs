//! kprox-listener: the client side of kprox.
//!
//! [`serve`] accepts connections on a [`Listener`] and hands each request to a [`Handler`];
//! [`Pipeline`] is kprox's handler: it normalises the path, serves static files, applies the
//! API prefix and the [`Filter`], and hands the request to the [`Forwarder`], which removes
//! hop-by-hop headers and client credentials, adds kprox's credentials and streams the exchange
//! with the apiserver — upgrades included, as [`Tunnels`] — answering failures with Kubernetes
//! `Status` bodies.

mod body;
mod client_auth;
mod client_io;
mod contexts;
mod drain;
pub mod filter;
mod forward;
mod handler;
mod head_scan;
pub mod hop_by_hop;
mod k8s_status;
mod local_users;
pub mod normalise;
mod observe;
mod passthrough;
mod peer_user;
mod pipeline;
mod request_body;
mod request_head;
mod rewind;
pub mod sanitise;
mod serve;
mod splice;
mod stream;
pub mod tls;
pub mod upgrade;
mod watch_path;
mod workers;
mod www;

pub use body::{BoxError, IncomingBody, ProxyBody, full};
pub use client_auth::ClientToken;
pub use client_io::ConnectionTimeouts;
pub use contexts::{CLUSTERS_SEGMENT, ContextRefusal, Contexts, Route, route};
pub use drain::Drain;
pub use filter::Filter;
pub use forward::{ForwardSettings, Forwarder, Identity};
pub use handler::Handler;
pub use k8s_status::{reason, status_response};
pub use local_users::LocalUsers;
pub use passthrough::{PassthroughSettings, serve_passthrough};
pub use pipeline::Pipeline;
pub use request_body::BodyLimits;
pub use request_head::HeadLimits;
pub use serve::{Listener, ServeSettings, serve};
pub use upgrade::Tunnels;
pub use workers::Workers;
pub use www::StaticFiles;
