//! The renderer with placed Services: pools pick what an edge renders, an address replaces
//! the `:PORT` bind, and what collides on an edge is refused before it reaches the edge.

use edgelb_core::{EdgeNode, Endpoint, PortSpec, ProxyProtocol, ServiceKey, Snapshot};

use super::*;

fn placed(services: &[(&str, Option<&str>, Option<&str>, u16)]) -> Snapshot {
    let mut s = Snapshot::default();
    for (name, pool, address, port) in services {
        let key = ServiceKey::new("ns", *name).unwrap();
        s.insert_port(
            key.clone(),
            "https",
            PortSpec::new(*port, ProxyProtocol::V2)
                .with_endpoint(Endpoint::ready("10.0.0.1".parse().unwrap(), 8443)),
        )
        .unwrap();
        let spec = s.services.get_mut(&key).unwrap();
        spec.pool = pool.map(str::to_owned);
        spec.address = address.map(|a| a.parse().unwrap());
    }
    s
}

fn lines_with(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_services_share_a_port_on_two_addresses_of_one_edge() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let snap = placed(&[
        ("web", None, Some("192.0.2.1"), 443),
        ("api", None, Some("2001:db8::7"), 443),
        ("plain", None, None, 80),
    ]);
    // The node's extra binds for 443 belong to Services without an address.
    let node = EdgeNode::new("edge-1").with_bind(443, "ipv6@:443");
    let out = r.render_config(&snap, &node).unwrap().text;
    assert_eq!(
        lines_with(&out, "frontend "),
        [
            "frontend fe_80",
            "frontend fe_443_192.0.2.1",
            "frontend fe_443_2001-db8--7"
        ]
    );
    assert_eq!(
        lines_with(&out, "bind "),
        ["bind :80", "bind 192.0.2.1:443", "bind [2001:db8::7]:443"]
    );
}

#[test]
fn an_edge_renders_only_the_services_of_its_pools() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let snap = placed(&[
        ("web", Some("public"), None, 443),
        ("admin", Some("internal"), None, 443),
        ("dflt", None, None, 80),
    ]);
    let public = r
        .render_config(&snap, &EdgeNode::new("edge-1").with_pool("public"))
        .unwrap()
        .text;
    assert_eq!(lines_with(&public, "backend "), ["backend be_ns_web_https"]);
    let both = EdgeNode::new("edge-2")
        .with_pool("internal")
        .with_pool("default");
    let out = r.render_config(&snap, &both).unwrap().text;
    assert_eq!(
        lines_with(&out, "backend "),
        ["backend be_ns_admin_https", "backend be_ns_dflt_https"]
    );
}

#[test]
fn services_of_two_pools_that_collide_on_a_shared_edge_are_refused_there() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let snap = placed(&[
        ("web", Some("public"), None, 443),
        ("admin", Some("internal"), Some("192.0.2.1"), 443),
    ]);
    let shared = EdgeNode::new("edge-1")
        .with_pool("public")
        .with_pool("internal");
    let err = r.render_config(&snap, &shared).unwrap_err().to_string();
    assert!(
        err.contains("ns/admin:https") && err.contains("ns/web:https"),
        "{err}"
    );
    r.render_config(&snap, &EdgeNode::new("edge-2").with_pool("public"))
        .unwrap();
}
