//! Property: whatever names, addresses and ports a snapshot or node holds (hostile ones
//! included: newlines, spaces, `#`, quotes, non-ASCII, very long), the renderer either
//! returns an error or produces a config that the real `haproxy -c` accepts, and renders it
//! the same way every time.
//!
//! 64 cases by default (each `haproxy -c` takes about 65 ms; `PROPTEST_CASES=1000` explores
//! more). Without `haproxy` the renderer half still runs and the `haproxy -c` half is skipped
//! with a message, unless `CI` is set: then the test fails with the command to install it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panics are the failures

mod render_support;

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use edgelb_core::{EdgeNode, EndpointState, PortSpec, ProxyProtocol, ServiceKey, Snapshot};
use edgelb_haproxy::{Balance, HaproxyRenderer, HealthCheck, RenderOptions, SlotOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use render_support::{find_haproxy, haproxy_check, options_in};

/// Names that must never reach a config as they are.
const HOSTILE: &[&str] = &[
    "",
    " ",
    "a b",
    "web\nlisten evil\n    bind :1",
    "a\rb",
    "a\tb",
    "x#comment",
    "\"quoted\"",
    "'single'",
    "é",
    "名前",
    "a_b",
    "-lead",
    "trail-",
    ".dot",
    "a/b",
    "a;b",
    "$(reboot)",
    "`id`",
    "a\\b",
    "a\0b",
    "{{ node.name }}",
    "{% raw %}",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        60 => "[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?",
        1 => prop::sample::select(HOSTILE).prop_map(str::to_owned),
        1 => "\\PC{0,30}",
        1 => any::<String>(),
        1 => "[a-z]{250,300}",
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        40 => any::<IpAddr>(),
        1 => prop::sample::select(vec![
            "0.0.0.0", "::", "127.0.0.1", "255.255.255.255", "224.0.0.1", "fe80::1",
            "::ffff:10.0.0.1", "::1", "ff02::1",
        ])
        .prop_map(|s| s.parse().unwrap()),
    ]
}

fn endpoint_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        80 => (ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port)),
        // IPv6 with flow info and zone ids.
        1 => any::<SocketAddrV6>().prop_map(SocketAddr::V6),
    ]
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    (
        prop_oneof![20 => any::<u16>(), 1 => 1u16..=2, 1 => Just(0u16)],
        prop::sample::select(vec![
            ProxyProtocol::V2,
            ProxyProtocol::V1,
            ProxyProtocol::None,
        ]),
        prop::collection::vec((endpoint_addr(), any::<bool>()), 0..12),
    )
        .prop_map(|(listen_port, proxy, eps)| {
            let mut p = PortSpec::new(listen_port, proxy);
            for (addr, draining) in eps {
                let state = if draining {
                    EndpointState::Draining
                } else {
                    EndpointState::Ready
                };
                p.endpoints.insert(addr, state);
            }
            p
        })
}

fn bind() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec![
            ":{p}", "*:{p}", "127.0.0.1:{p}", "[::1]:{p}", ":::{p}", "ipv6@:{p}", "ipv4@:{p}",
            "[2001:db8::1]:{p}", "ipv4@0.0.0.0:{p}", "[::]:{p}", "/run/edgelb-{p}.sock",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "ipv6@10.0.0.1:{p}", "host.example:{p}", ":{p} ssl", "{p}", "fd@3", "unix@/run/../x",
            ":0", "*", "@", "[", ":", "[10.0.0.1]:{p}", ":{p}\n",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,20}",
    ]
}

#[derive(Debug, Clone)]
struct Case {
    ports: Vec<(String, String, String, PortSpec)>,
    node_name: String,
    binds: Vec<(bool, String)>,
    replace_default_bind: bool,
    balance: Balance,
    checks: bool,
    slots: SlotOptions,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((name(), name(), name(), port_spec()), 1..4),
        name(),
        prop::collection::vec((any::<bool>(), bind()), 0..3),
        any::<bool>(),
        prop::sample::select(vec![
            Balance::Roundrobin,
            Balance::Leastconn,
            Balance::Source,
            Balance::First,
        ]),
        any::<bool>(),
        (0u32..6, 1u32..10),
    )
        .prop_map(
            |(ports, node_name, binds, replace_default_bind, balance, checks, (spare, block))| {
                Case {
                    ports,
                    node_name,
                    binds,
                    replace_default_bind,
                    balance,
                    checks,
                    slots: SlotOptions {
                        min_spare: spare,
                        block,
                    },
                }
            },
        )
}

impl Case {
    /// The snapshot, built field by field so nothing is validated on the way in.
    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        for (ns, svc, port_name, spec) in &self.ports {
            snap.services
                .entry(ServiceKey {
                    namespace: ns.clone(),
                    name: svc.clone(),
                })
                .or_default()
                .ports
                .insert(port_name.clone(), spec.clone());
        }
        snap
    }

    fn node(&self) -> EdgeNode {
        let mut node = EdgeNode::new(self.node_name.clone());
        node.replace_default_bind = self.replace_default_bind;
        for (spec, template) in self.ports.iter().map(|p| &p.3).zip(&self.binds) {
            let (on_this_port, bind) = template;
            let port = if *on_this_port { spec.listen_port } else { 1 };
            node = node.with_bind(spec.listen_port, bind.replace("{p}", &port.to_string()));
        }
        node
    }

    fn options(&self) -> RenderOptions {
        RenderOptions {
            balance: self.balance,
            health_check: HealthCheck {
                enabled: self.checks,
                ..HealthCheck::default()
            },
            slots: self.slots.clone(),
            ..RenderOptions::default()
        }
    }
}

#[test]
fn any_input_is_rejected_or_accepted_by_haproxy() {
    let haproxy = find_haproxy();
    if haproxy.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "haproxy is not installed but CI is set, so this check must run; install haproxy: apt-get install haproxy"
            );
        }
        eprintln!(
            "SKIPPED the haproxy -c half of any_input_is_rejected_or_accepted_by_haproxy: haproxy not found on PATH (install haproxy: apt-get install haproxy)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // PROPTEST_CASES=1000 explores further; the default keeps the run near 5 seconds.
    let cases = match std::env::var_os("PROPTEST_CASES") {
        Some(_) => Config::default().cases,
        None => 64,
    };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let (rendered, rejected) = (Cell::new(0u32), Cell::new(0u32));
    runner
        .run(&case(), |case| {
            let options = options_in(dir.path(), case.options());
            let snapshot = case.snapshot();
            let node = case.node();
            let renderer = HaproxyRenderer::new(options.clone()).unwrap();
            match renderer.render_config(&snapshot, &node) {
                Err(err) => {
                    rejected.set(rejected.get() + 1);
                    let message = err.to_string();
                    prop_assert!(!message.is_empty());
                    // An error names what it rejected; it never carries a raw newline from
                    // the input into a log line unescaped.
                    prop_assert!(!message.contains("listen evil\n"), "{}", message);
                }
                Ok(config) => {
                    rendered.set(rendered.get() + 1);
                    let again = HaproxyRenderer::new(options)
                        .unwrap()
                        .render_config(&snapshot, &node)
                        .unwrap();
                    prop_assert_eq!(&again, &config, "a fresh renderer rendered differently");
                    prop_assert!(config.text.is_ascii(), "non-ASCII reached the config");
                    if let Some(bin) = &haproxy {
                        haproxy_check(bin, dir.path(), "case", &config.text)
                            .map_err(TestCaseError::fail)?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let (rendered, rejected) = (rendered.get(), rejected.get());
    eprintln!("{rendered} cases rendered (and checked by haproxy), {rejected} rejected");
    assert!(
        rendered >= 8,
        "too few valid cases ({rendered}) to mean anything"
    );
    assert!(
        rejected >= 8,
        "too few hostile cases ({rejected}) to mean anything"
    );
}
