//! Observability: Prometheus metrics and the health endpoints.

pub mod edge_poller;
pub mod edge_traffic;
pub mod metrics;
pub mod server;

#[cfg(test)]
mod monitoring_tests;
