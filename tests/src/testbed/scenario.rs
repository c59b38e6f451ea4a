//! Building blocks of testbed scenarios: snapshots over the testbed's backends, the real
//! renderer with test-friendly options, a pipeline config with fast retries.

use std::net::SocketAddr;
use std::time::Duration;

use edgelb_core::{Endpoint, PipelineConfig, PortSpec, ProxyProtocol, ServiceKey, Snapshot};
use edgelb_haproxy::{ConfigDuration, HaproxyRenderer, RenderOptions};

use super::cluster::Backend;

/// The port the test service listens on at the edges.
pub const LISTEN_PORT: u16 = 8080;

/// One service, `default/web` port `http` on [`LISTEN_PORT`], PROXY v2, with `backends` as
/// ready endpoints.
pub fn web_snapshot(backends: &[&Backend]) -> Snapshot {
    web_snapshot_on(LISTEN_PORT, backends)
}

/// [`web_snapshot`] listening on `listen_port` instead.
pub fn web_snapshot_on(listen_port: u16, backends: &[&Backend]) -> Snapshot {
    let endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    web_snapshot_of(listen_port, &endpoints)
}

/// [`web_snapshot_on`] with its ready endpoints given by address.
pub fn web_snapshot_of(listen_port: u16, endpoints: &[SocketAddr]) -> Snapshot {
    let mut port = PortSpec::new(listen_port, ProxyProtocol::V2);
    for e in endpoints {
        port.add_endpoint(Endpoint::ready(e.ip(), e.port()));
    }
    let mut snapshot = Snapshot::default();
    snapshot
        .insert_port(
            ServiceKey::new("default", "web").expect("valid key"),
            "http",
            port,
        )
        .expect("valid port name");
    snapshot
}

/// The real renderer, with a short `hard-stop-after` so reloads in tests do not pile up old
/// workers.
pub fn renderer() -> HaproxyRenderer {
    HaproxyRenderer::new(RenderOptions {
        hard_stop_after: ConfigDuration::from_secs(10),
        ..RenderOptions::default()
    })
    .expect("renderer options are valid")
}

/// A pipeline that applies snapshots fast and retries failed nodes after 300 ms.
pub fn fast_pipeline() -> PipelineConfig {
    PipelineConfig {
        debounce: Duration::from_millis(20),
        max_debounce: Duration::from_millis(200),
        backoff_initial: Duration::from_millis(300),
        backoff_max: Duration::from_secs(2),
        ..PipelineConfig::default()
    }
}
