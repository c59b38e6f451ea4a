//! Rendered configs against the real HAProxy: `haproxy -c -f` must accept every variant, and
//! a running HAProxy must turn a spare slot into a live server through its runtime API.
//!
//! Without `haproxy` these tests print SKIPPED and pass, unless `CI` is set: then they fail
//! with the command to install it (`apt-get install haproxy`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panics are the failures

mod render_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgelb_core::{EdgeNode, ProxyProtocol, Renderer};
use edgelb_haproxy::{HaproxyRenderer, RenderOptions, SlotOptions};
use render_support::{
    haproxy_check, many_services, options_in, port, require_haproxy, snapshot, variants,
};

#[test]
fn haproxy_accepts_every_variant() {
    let Some(bin) = require_haproxy("haproxy_accepts_every_variant") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for v in variants() {
        let texts = v.render_all_with(options_in(dir.path(), v.options.clone()));
        for (i, text) in texts.iter().enumerate() {
            let name = format!("{}_{}", v.name, i + 1);
            checked += 1;
            if let Err(e) = haproxy_check(&bin, dir.path(), &name, text) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 10, "only {checked} configs checked");
}

#[test]
fn haproxy_accepts_big_and_unusual_shapes() {
    let Some(bin) = require_haproxy("haproxy_accepts_big_and_unusual_shapes") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = EdgeNode::new("edge-1");
    let cases: Vec<(&str, RenderOptions, edgelb_core::Snapshot)> = vec![
        (
            "hundred_services",
            RenderOptions::default(),
            many_services(100, 10),
        ),
        (
            "big_backend_big_blocks",
            RenderOptions {
                slots: SlotOptions {
                    min_spare: 500,
                    block: 1000,
                },
                ..RenderOptions::default()
            },
            many_services(1, 3000),
        ),
        (
            "no_spares_block_of_one",
            RenderOptions {
                slots: SlotOptions {
                    min_spare: 0,
                    block: 1,
                },
                ..RenderOptions::default()
            },
            snapshot(vec![
                ("a/b", "p", port(80, ProxyProtocol::V2, &["10.0.0.1:80"])),
                // No endpoints and no spares: a backend without servers.
                ("a/b", "q", port(81, ProxyProtocol::V1, &[])),
            ]),
        ),
        (
            "long_names",
            RenderOptions::default(),
            snapshot(vec![(
                &format!("{}/{}", "n".repeat(253), "s".repeat(253)),
                &"p".repeat(253),
                port(65535, ProxyProtocol::V2, &["[fd00::ffff]:65535"]),
            )]),
        ),
    ];
    for (name, opts, snap) in cases {
        let renderer = HaproxyRenderer::new(options_in(dir.path(), opts)).unwrap();
        let text = renderer.render(&snap, &node).unwrap().text;
        haproxy_check(&bin, dir.path(), name, &text).unwrap();
    }

    // The checker itself notices a broken config.
    let renderer = HaproxyRenderer::new(options_in(dir.path(), RenderOptions::default())).unwrap();
    let text = renderer.render(&many_services(1, 1), &node).unwrap().text;
    let broken = format!("{text}    bogus-keyword 1\n");
    assert!(haproxy_check(&bin, dir.path(), "broken", &broken).is_err());
}

/// HAProxy assigns the ids of servers that have none by searching for the next free one,
/// which is quadratic in a backend's size: 100,000 servers took `haproxy -c` 101 s, past the
/// SSH deployer's 30 s step timeout. The template gives every server its slot number as `id`
/// (the very id HAProxy would pick), and the check is linear: about a second per 100,000.
#[test]
fn a_backend_of_50000_servers_validates_well_within_the_step_timeout() {
    let Some(bin) = require_haproxy("a_backend_of_50000_servers_validates") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let renderer = HaproxyRenderer::new(options_in(dir.path(), RenderOptions::default())).unwrap();
    let text = renderer
        .render(&many_services(1, 50_000), &EdgeNode::new("edge-1"))
        .unwrap()
        .text;
    let started = Instant::now();
    haproxy_check(&bin, dir.path(), "fifty_thousand", &text).unwrap();
    let took = started.elapsed();
    println!("haproxy -c on one backend of 50,000 servers: {took:?}");
    // Quadratic, this took about 20 s; linear, well under one.
    assert!(took < Duration::from_secs(10), "haproxy -c took {took:?}");
}

/// A running HAProxy, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM to the master (by its PID) stops it and its worker; SIGKILL if it lingers.
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runtime_api(socket: &Path, command: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// `(addr, port, admin state, user weight)` of a server in `show servers state`.
fn server_state(socket: &Path, backend: &str, server: &str) -> (String, String, u32, u32) {
    let answer = runtime_api(socket, &format!("show servers state {backend}"));
    // Columns: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state
    // srv_uweight srv_iweight … srv_port (19th) …
    let line = answer
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|w| w.len() > 18 && w[3] == server)
        .unwrap_or_else(|| panic!("{server} not in:\n{answer}"));
    (
        line[4].to_owned(),
        line[18].to_owned(),
        line[6].parse().unwrap(),
        line[7].parse().unwrap(),
    )
}

#[test]
fn runtime_api_turns_a_spare_slot_into_a_live_server() {
    let Some(bin) = require_haproxy("runtime_api_turns_a_spare_slot_into_a_live_server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let listen_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut node =
        EdgeNode::new("edge-1").with_bind(listen_port, format!("127.0.0.1:{listen_port}"));
    node.replace_default_bind = true;
    let opts = RenderOptions {
        maxconn: Some(256),
        ..options_in(dir.path(), RenderOptions::default())
    };
    let socket = dir.path().join("admin.sock");
    let renderer = HaproxyRenderer::new(opts).unwrap();
    let snap = snapshot(vec![(
        "web/app",
        "http",
        port(
            listen_port,
            ProxyProtocol::V2,
            &["127.0.0.1:9", "~127.0.0.2:9"],
        ),
    )]);
    let text = renderer.render(&snap, &node).unwrap().text;
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, &text).unwrap();

    let child = Command::new(&bin)
        .arg("-W")
        .arg("-S")
        .arg(dir.path().join("master.sock"))
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "haproxy did not open {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let be = "be_web_app_http";
    // Ready endpoint: weight 1, no admin flags. Draining: weight 0 from the config.
    assert_eq!(
        server_state(&socket, be, "s001"),
        ("127.0.0.1".into(), "9".into(), 0, 1)
    );
    assert_eq!(
        server_state(&socket, be, "s002"),
        ("127.0.0.2".into(), "9".into(), 0, 0)
    );
    // Spare: placeholder address, in maintenance because the config disabled it.
    let (addr, port_no, admin, _) = server_state(&socket, be, "s003");
    assert_eq!((addr.as_str(), port_no.as_str()), ("127.0.0.1", "1"));
    assert_ne!(admin, 0, "a spare slot must start in maintenance");

    // The runtime API gives it an IPv6 endpoint and makes it ready: no reload needed.
    let answer = runtime_api(
        &socket,
        &format!("set server {be}/s003 addr fd00::9 port 8443; set server {be}/s003 state ready"),
    );
    assert!(answer.contains("IP changed"), "{answer}");
    let (addr, port_no, admin, weight) = server_state(&socket, be, "s003");
    assert_eq!((addr.as_str(), port_no.as_str()), ("fd00::9", "8443"));
    assert_eq!(
        admin & 1,
        0,
        "no longer forced into maintenance (admin {admin})"
    );
    assert_eq!(weight, 1);
    // And the runtime equivalent of a draining render.
    runtime_api(&socket, &format!("set server {be}/s001 weight 0"));
    assert_eq!(server_state(&socket, be, "s001").3, 0);
}
