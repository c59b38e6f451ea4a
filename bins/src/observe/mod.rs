//! Observability: Prometheus metrics and the health endpoints.

pub mod metrics;
pub mod server;
