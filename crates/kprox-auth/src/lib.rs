//! kprox-auth: who kprox is to the apiserver.
//!
//! [`load`] reads the kubeconfig and returns a [`ClusterAccess`]: the server, how to verify it
//! ([`ServerTrust`]), a client certificate ([`ClientIdentity`]) and how requests authenticate
//! ([`CredentialSpec`]). [`Credentials`] turns the spec into a lock-free [`Snapshot`] kept fresh
//! in the background, and [`inject`] puts it on requests. Secrets are wrapped in [`Secret`] and
//! never appear in `Debug` output or errors.

mod access;
mod client_cert;
mod context_list;
mod credentials;
mod error;
pub mod exec;
mod impersonate;
mod incluster;
mod inject;
mod kubeconfig;
mod rfc3339;
mod secret;

pub use access::{ClusterAccess, CredentialSpec, ServerTrust};
pub use client_cert::{ClientIdentity, identity_from_pem, parse_certificates, parse_private_key};
pub use context_list::{ContextEntry, ContextList, contexts};
pub use credentials::{Credentials, RefreshCounts, Snapshot, TOKEN_FILE_REFRESH};
pub use error::AuthError;
pub use impersonate::Impersonation;
pub use inject::inject;
pub use kubeconfig::{load, parse, select};
pub use secret::Secret;
