//! Shared by the renderer's integration tests: snapshot builders, the rendered variants that
//! the golden and `haproxy -c` tests both cover, and a runner for `haproxy -c`.
#![allow(dead_code)] // each test binary uses a different part
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panics are the failures

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use edgelb_core::{EdgeNode, PortSpec, ProxyProtocol, Renderer, ServiceKey, Snapshot};
use edgelb_haproxy::{Balance, HaproxyRenderer, HealthCheck, RenderOptions, SlotOptions};

/// `namespace/name`.
pub fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

/// A port with endpoints given as `"10.0.0.1:8443"` (ready) or `"~10.0.0.1:8443"` (draining).
pub fn port(listen_port: u16, proxy: ProxyProtocol, endpoints: &[&str]) -> PortSpec {
    let mut port = PortSpec::new(listen_port, proxy);
    for e in endpoints {
        let (draining, addr) = match e.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, *e),
        };
        let addr: SocketAddr = addr.parse().unwrap();
        let ep = if draining {
            edgelb_core::Endpoint::draining(addr.ip(), addr.port())
        } else {
            edgelb_core::Endpoint::ready(addr.ip(), addr.port())
        };
        port.add_endpoint(ep);
    }
    port
}

/// A snapshot from `(service, port name, port)` triples.
pub fn snapshot(ports: Vec<(&str, &str, PortSpec)>) -> Snapshot {
    let mut snap = Snapshot::default();
    for (svc, name, p) in ports {
        snap.insert_port(key(svc), name, p).unwrap();
    }
    snap
}

/// `n` services with `per_service` endpoints each, listening from port 10000 up.
pub fn many_services(n: usize, per_service: usize) -> Snapshot {
    let mut snap = Snapshot::default();
    for s in 0..n {
        let mut p = PortSpec::new(10_000 + s as u16, ProxyProtocol::V2);
        for e in 0..per_service {
            let i = s * per_service + e;
            let ip = std::net::Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
            p.add_endpoint(edgelb_core::Endpoint::ready(ip.into(), 8443));
        }
        snap.insert_port(key(&format!("ns-{s}/svc-{s}")), "web", p)
            .unwrap();
    }
    snap
}

/// One rendered variant: a name, the renderer options, and the renders to do in order (the
/// last one is the result; earlier ones build up slot memory).
pub struct Variant {
    pub name: &'static str,
    pub options: RenderOptions,
    pub node: EdgeNode,
    pub steps: Vec<Snapshot>,
}

impl Variant {
    fn new(name: &'static str, steps: Vec<Snapshot>) -> Self {
        Self {
            name,
            options: RenderOptions::default(),
            node: EdgeNode::new("edge-1"),
            steps,
        }
    }

    /// Renders every step with one renderer and returns each text.
    pub fn render_all(&self) -> Vec<String> {
        self.render_all_with(self.options.clone())
    }

    /// [`Variant::render_all`] with other options (a stats socket in a tempdir, say).
    pub fn render_all_with(&self, options: RenderOptions) -> Vec<String> {
        let renderer = HaproxyRenderer::new(options).unwrap();
        self.steps
            .iter()
            .map(|s| renderer.render(s, &self.node).unwrap().text)
            .collect()
    }

    /// The last step's text.
    pub fn render(&self) -> String {
        self.render_all().pop().unwrap()
    }
}

/// The variants both the golden and the `haproxy -c` tests cover.
pub fn variants() -> Vec<Variant> {
    use ProxyProtocol::{None as NoProxy, V1, V2};
    let mut out = Vec::new();

    out.push(Variant::new(
        "several_services",
        vec![snapshot(vec![
            (
                "kube-system/traefik",
                "web",
                port(80, V2, &["10.42.0.7:8000", "10.42.1.9:8000"]),
            ),
            (
                "kube-system/traefik",
                "websecure",
                port(443, V2, &["10.42.1.9:8443", "10.42.0.7:8443"]),
            ),
            ("mail/postfix", "smtp", port(25, V1, &["10.42.2.3:2525"])),
            (
                "games/minecraft",
                "game",
                port(25565, NoProxy, &["10.42.3.1:25565"]),
            ),
        ])],
    ));

    out.push(Variant::new(
        "ipv6",
        vec![snapshot(vec![(
            "web/front",
            "https",
            port(
                443,
                V2,
                &[
                    "[fd00::1]:8443",
                    "[2001:db8::2]:8443",
                    "10.0.0.1:8443",
                    "[::ffff:10.0.0.2]:8443",
                ],
            ),
        )])],
    ));
    let last = out.len() - 1;
    out[last].node = EdgeNode::new("edge-v6")
        .with_bind(443, "ipv6@:443")
        .with_bind(443, "[2001:db8::10]:443");

    out.push(Variant::new(
        "empty_backends",
        vec![snapshot(vec![
            ("web/idle", "http", port(8080, V2, &[])),
            ("web/idle", "https", port(8443, NoProxy, &[])),
            ("web/busy", "http", port(80, V2, &["10.0.0.1:80"])),
        ])],
    ));

    out.push(Variant::new(
        "proxy_versions",
        vec![snapshot(vec![
            ("proxy/svc", "v2", port(1002, V2, &["10.0.0.2:80"])),
            ("proxy/svc", "v1", port(1001, V1, &["10.0.0.1:80"])),
            ("proxy/svc", "none", port(1000, NoProxy, &["10.0.0.3:80"])),
        ])],
    ));

    let mut overrides = Variant::new(
        "bind_overrides",
        vec![snapshot(vec![
            ("kube-system/traefik", "web", port(80, V2, &["10.0.0.1:80"])),
            (
                "kube-system/traefik",
                "websecure",
                port(443, V2, &["10.0.0.1:443"]),
            ),
        ])],
    );
    let mut node = EdgeNode::new("edge-2")
        .with_bind(443, "203.0.113.10:443")
        .with_bind(443, "ipv6@:443")
        .with_bind(443, ":443")
        .with_bind(80, "203.0.113.10:80");
    node.replace_default_bind = true;
    overrides.node = node;
    out.push(overrides);

    out.push(Variant::new(
        "draining",
        vec![snapshot(vec![(
            "web/app",
            "http",
            port(
                80,
                V2,
                &[
                    "10.0.0.1:80",
                    "~10.0.0.2:80",
                    "10.0.0.3:80",
                    "~[fd00::4]:80",
                ],
            ),
        )])],
    ));

    // Slot stability: five endpoints; then .2 and .4 leave; then .9 arrives (lowest free
    // slot) and .4 comes back (its old slot). The others never move.
    let eps = |list: &[&str]| snapshot(vec![("web/app", "http", port(80, V2, list))]);
    out.push(Variant::new(
        "slot_stability",
        vec![
            eps(&[
                "10.0.0.1:80",
                "10.0.0.2:80",
                "10.0.0.3:80",
                "10.0.0.4:80",
                "10.0.0.5:80",
            ]),
            eps(&["10.0.0.1:80", "10.0.0.3:80", "10.0.0.5:80"]),
            eps(&[
                "10.0.0.1:80",
                "10.0.0.3:80",
                "10.0.0.4:80",
                "10.0.0.5:80",
                "10.0.0.9:80",
            ]),
        ],
    ));

    let mut custom = Variant::new(
        "custom_options",
        vec![snapshot(vec![
            (
                "web/app",
                "http",
                port(80, V2, &["10.0.0.1:80", "~10.0.0.2:80"]),
            ),
            ("web/app", "raw", port(81, NoProxy, &["10.0.0.1:81"])),
        ])],
    );
    custom.options = RenderOptions {
        maxconn: None,
        httpclient_system_ca: true,
        balance: Balance::Leastconn,
        hard_stop_after: "1h".parse().unwrap(),
        health_check: HealthCheck {
            enabled: false,
            ..HealthCheck::default()
        },
        slots: SlotOptions {
            min_spare: 1,
            block: 4,
        },
        ..RenderOptions::default()
    };
    custom.options.timeouts.connect = "500ms".parse().unwrap();
    custom.options.timeouts.tunnel = "2h".parse().unwrap();
    out.push(custom);

    for balance in [Balance::Source, Balance::First] {
        let mut v = Variant::new(
            if balance == Balance::Source {
                "balance_source"
            } else {
                "balance_first"
            },
            vec![snapshot(vec![(
                "web/app",
                "http",
                port(80, V1, &["10.0.0.1:80"]),
            )])],
        );
        v.options.balance = balance;
        out.push(v);
    }

    // loadBalancerSourceRanges (one line, several lines, nobody) and ClientIP affinity.
    let mut fields = snapshot(vec![
        ("web/open", "http", port(80, V2, &["10.0.0.1:80"])),
        ("web/office", "http", port(8080, V2, &["10.0.0.2:80"])),
        ("web/office", "https", port(8443, V2, &["10.0.0.2:443"])),
        ("web/partners", "tcp", port(9000, V1, &["10.0.0.3:9000"])),
        ("web/closed", "tcp", port(9001, NoProxy, &["10.0.0.4:9001"])),
    ]);
    let key = |s: &str| s.parse::<edgelb_core::ServiceKey>().unwrap();
    let svc = fields.services.get_mut(&key("web/office")).unwrap();
    svc.source_ranges = Some(
        edgelb_core::normalize_source_ranges(
            ["192.168.1.7/24", "fd00::/8", "203.0.113.7"]
                .map(|t| edgelb_core::parse_source_range(t).unwrap()),
        )
        .unwrap(),
    );
    svc.session_affinity = Some(edgelb_core::SessionAffinity::client_ip(600).unwrap());
    let partners: Vec<edgelb_core::IpNet> = (0..120u32)
        .map(|i| {
            edgelb_core::IpNet::from(std::net::IpAddr::from(
                (0x0a00_0000 + (i << 8)).to_be_bytes(),
            ))
        })
        .collect();
    let svc = fields.services.get_mut(&key("web/partners")).unwrap();
    svc.source_ranges = Some(edgelb_core::normalize_source_ranges(partners).unwrap());
    svc.session_affinity = Some(edgelb_core::SessionAffinity::default());
    fields
        .services
        .get_mut(&key("web/closed"))
        .unwrap()
        .source_ranges = Some(Vec::new());
    out.push(Variant::new("service_fields", vec![fields]));

    out
}

/// Where `haproxy` is: on `PATH`, or in `/usr/sbin` / `/usr/local/sbin` (Debian installs it
/// there, outside a normal user's `PATH`).
pub fn find_haproxy() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
}

/// `haproxy`, or `None` after printing why the test is skipped. With `CI` set, a missing
/// haproxy fails the test instead: CI must run these checks.
pub fn require_haproxy(test: &str) -> Option<PathBuf> {
    match find_haproxy() {
        Some(bin) => Some(bin),
        None if std::env::var_os("CI").is_some() => panic!(
            "{test}: haproxy is not installed but CI is set, so this check must run; install haproxy: apt-get install haproxy"
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: haproxy not found on PATH (install haproxy: apt-get install haproxy)"
            );
            None
        }
    }
}

/// Options whose stats socket lives in `dir`, so `haproxy -c` needs no `/run/haproxy`.
pub fn options_in(dir: &Path, mut options: RenderOptions) -> RenderOptions {
    options.socket_dirs = vec![dir.display().to_string()];
    options.stats_socket = dir.join("admin.sock").display().to_string();
    options
}

/// Runs `haproxy -c -f` on `text`; `Err` carries haproxy's output.
pub fn haproxy_check(bin: &Path, dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let file = dir.join(format!("{name}.cfg"));
    std::fs::write(&file, text).unwrap();
    let out = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "haproxy -c rejected {name} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
