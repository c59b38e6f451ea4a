//! Unit tests of the renderer as a whole: template loading and errors, validation, the trait
//! boundary. Output shapes are covered by the golden files in `tests/golden`.

use std::net::SocketAddr;

use edgelb_core::{
    EdgeNode, Endpoint, PortSpec, ProxyProtocol, Renderer, ServiceKey, ServiceSpec, Snapshot,
};

use super::*;

fn snap() -> Snapshot {
    let mut s = Snapshot::default();
    s.insert_port(
        ServiceKey::new("web", "app").unwrap(),
        "http",
        PortSpec::new(80, ProxyProtocol::V2)
            .with_endpoint(Endpoint::ready("10.0.0.1".parse().unwrap(), 8080)),
    )
    .unwrap();
    s
}

fn node() -> EdgeNode {
    EdgeNode::new("edge-1")
}

fn with_template(source: &str) -> (tempfile::TempDir, Result<HaproxyRenderer>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(TEMPLATE_NAME), source).unwrap();
    let opts = RenderOptions {
        template_dir: Some(dir.path().to_owned()),
        ..RenderOptions::default()
    };
    let r = HaproxyRenderer::new(opts);
    (dir, r)
}

#[test]
fn missing_template_dir_or_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = HaproxyRenderer::new(RenderOptions {
        template_dir: Some(missing.clone()),
        ..RenderOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("does not exist"), "{err}");

    let err = HaproxyRenderer::new(RenderOptions {
        template_dir: Some(dir.path().to_owned()),
        ..RenderOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&dir.path().join(TEMPLATE_NAME).display().to_string()),
        "{err}"
    );
    assert!(err.contains("is missing"), "{err}");
}

#[test]
fn user_template_replaces_the_builtin() {
    let (_dir, r) = with_template("# mine for {{ node.name }}\n");
    let out = r.unwrap().render_config(&snap(), &node()).unwrap();
    assert!(out.text.ends_with("\n# mine for edge-1\n"), "{}", out.text);
}

#[test]
fn a_template_that_drops_the_source_ranges_is_refused_for_services_that_have_them() {
    // Overrides the frontends block without the ACL lines.
    let (_dir, r) = with_template(
        "{% extends \"builtin/haproxy.cfg.j2\" %}{% block frontends %}{% for fe in frontends %}\nfrontend {{ fe.name }}\n    default_backend {{ fe.backend }}\n{% endfor %}{% endblock %}",
    );
    let r = r.unwrap();
    // Without ranges it renders.
    r.render_config(&snap(), &node()).unwrap();
    let mut guarded = snap();
    let key = ServiceKey::new("web", "app").unwrap();
    guarded.services.get_mut(&key).unwrap().source_ranges =
        Some(vec!["10.0.0.0/8".parse().unwrap()]);
    let err = r.render_config(&guarded, &node()).unwrap_err().to_string();
    assert!(err.contains("web/app:http has source ranges"), "{err}");
    // The built-in template restricts it.
    let builtin = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let text = builtin.render_config(&guarded, &node()).unwrap().text;
    assert!(text.contains("    acl edgelb_source_allowed src -u 1000080000 10.0.0.0/8\n"));
    assert!(text.contains("    tcp-request connection reject if !edgelb_source_allowed\n"));
}

#[test]
fn syntax_errors_fail_at_build_with_path_and_line() {
    let (dir, r) = with_template("global\n{% for x in %}\n");
    let err = r.unwrap_err().to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains(":2)"), "line number missing: {err}");
    assert!(
        err.contains("2 | {% for x in %}"),
        "source line missing: {err}"
    );
}

#[test]
fn undefined_variables_are_errors_found_at_build() {
    let (_dir, r) = with_template(
        "{% for be in backends %}{% for s in be.servers %}{{ s.adress }}{% endfor %}{% endfor %}",
    );
    let err = r.unwrap_err().to_string();
    assert!(err.contains("undefined"), "{err}");
    assert!(err.contains(":1)"), "{err}");
    let (_dir, r) = with_template("{{ global.stats_sockett }}");
    assert!(r.is_err());
}

#[test]
fn includes_cannot_leave_the_template_dir() {
    let (_dir, r) = with_template("{% include \"../etc/passwd\" %}");
    let err = r.unwrap_err().to_string();
    assert!(err.contains("without '..'"), "{err}");
    let (_dir, r) = with_template("{% include \"/etc/passwd\" %}");
    assert!(r.is_err());
}

#[test]
fn invalid_options_fail_at_build() {
    let err = HaproxyRenderer::new(RenderOptions {
        stats_socket: "admin.sock".into(),
        ..RenderOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("stats_socket"), "{err}");
}

#[test]
fn hostile_names_are_rejected_not_pasted() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    for (ns, name, port_name) in [
        ("web", "app\nlisten evil", "http"),
        ("web ns", "app", "http"),
        ("web", "app", "http#x"),
        ("web", "app", "a\"b"),
        ("wéb", "app", "http"),
    ] {
        let mut s = Snapshot::default();
        let mut spec = ServiceSpec::default();
        spec.ports
            .insert(port_name.into(), PortSpec::new(80, ProxyProtocol::V2));
        // Built field by field to get past ServiceKey::new.
        s.services.insert(
            ServiceKey {
                namespace: ns.into(),
                name: name.into(),
            },
            spec,
        );
        let err = r.render_config(&s, &node()).unwrap_err();
        assert!(matches!(err, Error::Validation { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("snapshot rejected: invalid"),
            "{err}"
        );
    }
    let err = r
        .render_config(&snap(), &EdgeNode::new("edge 1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("edge node \"edge 1\" rejected"), "{err}");
}

#[test]
fn unusable_addresses_and_binds_are_rejected() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let mut s = snap();
    let key = ServiceKey::new("web", "app").unwrap();
    s.services
        .get_mut(&key)
        .unwrap()
        .ports
        .get_mut("http")
        .unwrap()
        .add_endpoint(Endpoint::ready("0.0.0.0".parse().unwrap(), 80));
    let err = r.render_config(&s, &node()).unwrap_err().to_string();
    assert!(
        err.contains("invalid endpoint address \"0.0.0.0:80\""),
        "{err}"
    );
    assert!(err.contains("web/app:http"), "{err}");

    let err = r
        .render_config(&snap(), &node().with_bind(80, "edge.example:80"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("host names"), "{err}");
}

#[test]
fn trait_errors_name_the_node() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let err = Renderer::render(&r, &snap(), &node().with_bind(80, "fd@3")).unwrap_err();
    match err {
        edgelb_core::Error::Render { node, message, .. } => {
            assert_eq!(node, "edge-1");
            assert!(message.contains("fd@3"), "{message}");
        }
        other => panic!("expected Error::Render, got {other:?}"),
    }
}

#[test]
fn trait_errors_keep_the_validation_error_they_come_from() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let bad_node = EdgeNode::new("edge-1").with_bind(80, "fd@3");
    let err = Renderer::render(&r, &snap(), &bad_node).unwrap_err();
    let source = std::error::Error::source(&err).expect("the renderer's error is kept");
    assert!(
        source.downcast_ref::<crate::Error>().is_some(),
        "{source:?}"
    );
    // A snapshot that fails edgelb-core's validation keeps that error one level further down.
    let mut invalid = snap();
    for svc in invalid.services.values_mut() {
        for port in svc.ports.values_mut() {
            port.listen_port = 0;
        }
    }
    let err = Renderer::render(&r, &invalid, &node()).unwrap_err();
    let source = std::error::Error::source(&err).expect("the renderer's error is kept");
    match source.downcast_ref::<crate::Error>() {
        Some(crate::Error::Validation { source, .. }) => assert!(
            matches!(source, edgelb_core::Error::InvalidSnapshot(why) if why.contains("listen port 0")),
            "{source:?}"
        ),
        other => panic!("expected Error::Validation, got {other:?}"),
    }
}

#[test]
fn gone_services_free_their_slot_memory() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let mut s = snap();
    let port = |eps: &[&str]| {
        let mut p = PortSpec::new(80, ProxyProtocol::V2);
        for e in eps {
            let a = addr(e);
            p.add_endpoint(Endpoint::ready(a.ip(), a.port()));
        }
        p
    };
    let key = ServiceKey::new("web", "app").unwrap();
    s.insert_port(key.clone(), "http", port(&["10.0.0.2:1", "10.0.0.1:1"]))
        .unwrap();
    r.render_config(&s, &node()).unwrap();
    s.insert_port(key.clone(), "http", port(&["10.0.0.2:1"]))
        .unwrap();
    let kept = r.render_config(&s, &node()).unwrap().text;
    assert!(kept.contains("server s002 10.0.0.2:1 "), "{kept}");
    // The service goes away and comes back: it starts afresh.
    r.render_config(&Snapshot::default(), &node()).unwrap();
    let fresh = r.render_config(&s, &node()).unwrap().text;
    assert!(fresh.contains("server s001 10.0.0.2:1 "), "{fresh}");
}

#[test]
fn renderer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HaproxyRenderer>();
}

#[test]
fn workers_drop_root_into_a_chroot_and_log_by_default() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let text = r.render_config(&snap(), &node()).unwrap().text;
    for line in [
        "\n    user haproxy\n",
        "\n    group haproxy\n",
        "\n    chroot /var/lib/haproxy\n",
        "\n    log /dev/log local0\n",
        "\n    log global\n    option tcplog\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    let off = HaproxyRenderer::new(RenderOptions {
        run_as: None,
        log: None,
        ..RenderOptions::default()
    })
    .unwrap();
    let text = off.render_config(&snap(), &node()).unwrap().text;
    for word in ["user ", "group ", "chroot ", "log ", "tcplog"] {
        assert!(!text.contains(word), "{word:?} rendered:\n{text}");
    }
    let no_jail = HaproxyRenderer::new(RenderOptions {
        run_as: Some(RunAs {
            chroot: None,
            ..RunAs::default()
        }),
        ..RenderOptions::default()
    })
    .unwrap();
    let text = no_jail.render_config(&snap(), &node()).unwrap().text;
    assert!(text.contains("    user haproxy\n") && !text.contains("chroot"));
}

#[test]
fn every_server_line_carries_its_slot_number_as_id() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    let text = r.render_config(&snap(), &node()).unwrap().text;
    assert!(
        text.contains("    server s001 10.0.0.1:8080 id 1 check "),
        "{text}"
    );
    assert!(
        text.contains("    server s008 127.0.0.1:1 id 8 check "),
        "{text}"
    );
}

#[test]
fn sockets_outside_the_allowed_directories_are_refused() {
    let err = HaproxyRenderer::new(RenderOptions {
        stats_socket: "/etc/passwd".into(),
        ..RenderOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("stats_socket") && err.contains("socket_dirs"),
        "{err}"
    );
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    for bind in ["/etc/passwd", "unix@/etc/shadow"] {
        let err = r
            .render_config(&snap(), &node().with_bind(80, bind))
            .unwrap_err()
            .to_string();
        assert!(err.contains("socket_dirs"), "{bind}: {err}");
    }
}

#[test]
fn a_bad_extra_bind_fails_before_any_service_uses_its_port() {
    let r = HaproxyRenderer::new(RenderOptions::default()).unwrap();
    // Port 9999 is in no service of the snapshot.
    let edge = node().with_bind(9999, "edge.example.com:9999");
    let err = r.render_config(&snap(), &edge).unwrap_err().to_string();
    assert!(err.contains("host names"), "{err}");
    let err = RenderOptions::default()
        .validate_node(&edge)
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen port 9999"), "{err}");
}

#[test]
fn a_template_that_loops_too_long_runs_out_of_fuel() {
    let (_dir, r) = with_template(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    );
    let err = r.unwrap_err().to_string();
    assert!(err.contains("fuel") && err.contains("loop"), "{err}");
}

#[test]
fn the_output_buffer_is_sized_with_room_for_the_digest_line_and_capped() {
    // 5,000 backends of 16 slots: 85,000 items, about 5.5 MiB rendered.
    assert!(output_estimate(85_000) > 6 * 1024 * 1024);
    assert!(
        output_estimate(0) >= 1024,
        "room for the digest line of an empty config"
    );
    assert_eq!(output_estimate(u64::MAX), 256 * 1024 * 1024);
}
