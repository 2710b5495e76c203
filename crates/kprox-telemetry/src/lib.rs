//! kprox-telemetry: logging setup today; Prometheus metrics, health endpoints and the admin
//! listener are built here next (see issue "Observability").

mod logging;

pub use logging::init_logging;
