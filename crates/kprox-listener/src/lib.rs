//! kprox-listener: the client side of kprox.
//!
//! [`serve`] accepts connections on a [`Listener`] and hands each request to a [`Handler`];
//! [`Forwarder`] is the handler's core: it applies the API prefix, removes hop-by-hop headers
//! and client credentials, adds kprox's credentials and streams the exchange with the
//! apiserver, answering failures with Kubernetes `Status` bodies.

mod body;
mod forward;
pub mod hop_by_hop;
pub mod sanitise;
mod serve;
mod status;

pub use body::{BoxError, ProxyBody, full};
pub use forward::{ForwardSettings, Forwarder};
pub use serve::{Handler, Listener, ServeSettings, serve};
pub use status::{reason, status_response};
