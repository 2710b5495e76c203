//! kprox-telemetry: what kprox tells its operators.
//!
//! [`Metrics`] holds every Prometheus family (pre-resolved handles for the request path, values
//! copied from other components at scrape time); [`init_logging`] sets up text or JSON logs;
//! [`admin`] serves `/metrics`, `/livez`, `/readyz`, the status page and its JSON on a separate
//! listener, since the apiserver owns those paths on the proxied port.

pub mod admin;
mod charts;
pub mod history;
mod html;
mod logging;
mod metrics;

pub use logging::{init_logging, set_log_level};
pub use metrics::{
    BUCKETS, CODE_CLASSES, CredentialSnapshot, EndpointRequests, EndpointSnapshot, KINDS, METHODS,
    Metrics, NO_ENDPOINT, RULES, Snapshot,
};
pub use prometheus::IntCounter;
