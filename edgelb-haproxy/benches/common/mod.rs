//! What the benchmarks of this crate share: big snapshots and finding haproxy.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use edgelb_core::{Endpoint, PortSpec, ProxyProtocol, ServiceKey, Snapshot};

/// `services` services `ns-<i>/svc-<i>`, port `websecure` listening on `first_port + i`,
/// with `per_service` ready endpoints each.
pub fn snapshot(services: usize, per_service: usize, first_port: u16) -> Snapshot {
    let mut snap = Snapshot::default();
    for s in 0..services {
        let mut port = PortSpec::new(first_port + s as u16, ProxyProtocol::V2);
        for e in 0..per_service {
            let i = (s * per_service + e) as u32;
            let ip = Ipv4Addr::from(0x0a00_0000 | i);
            port.add_endpoint(Endpoint::ready(ip.into(), 8443));
        }
        let key = ServiceKey::new(format!("ns-{s}"), format!("svc-{s}")).expect("valid key");
        snap.insert_port(key, "websecure", port)
            .expect("valid port name");
    }
    snap
}

/// haproxy on PATH or in the usual sbin directories.
pub fn find_haproxy() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
}
