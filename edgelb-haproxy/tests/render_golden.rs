//! Golden-file tests of the HAProxy renderer: each variant's output must equal
//! `tests/golden/<name>.cfg` byte for byte. After an intended change, regenerate them with
//! `UPDATE_GOLDEN=1 cargo test -p edgelb-haproxy --test render_golden` and review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panics are the failures

mod render_support;

use std::path::PathBuf;

use edgelb_core::{EdgeNode, ProxyProtocol, Renderer};
use edgelb_haproxy::{HaproxyRenderer, RenderOptions};
use render_support::{port, snapshot, variants};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.cfg"))
}

/// Compares `actual` with the golden file, or rewrites it with `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_GOLDEN=1 cargo test -p edgelb-haproxy --test render_golden",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: output differs from {} at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             --- full output ---\n{actual}\n\
             If the change is intended, run UPDATE_GOLDEN=1 cargo test -p edgelb-haproxy --test render_golden",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line),
        );
    }
}

#[test]
fn variants_match_their_golden_files() {
    for v in variants() {
        let texts = v.render_all();
        if texts.len() == 1 {
            check_golden(v.name, &texts[0]);
        } else {
            for (i, text) in texts.iter().enumerate() {
                check_golden(&format!("{}_{}", v.name, i + 1), text);
            }
        }
    }
}

/// The server lines of a rendered config, as `(slot, address)` of live servers.
fn live_slots(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter(|l| !l.ends_with(" disabled"))
        .map(|l| {
            let mut words = l.split(' ');
            (
                words.next().unwrap().to_owned(),
                words.next().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn endpoints_keep_their_slots_across_renders() {
    let v = variants()
        .into_iter()
        .find(|v| v.name == "slot_stability")
        .unwrap();
    let texts = v.render_all();
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(s, a)| (s.to_string(), a.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        live_slots(&texts[0]),
        pairs(&[
            ("s001", "10.0.0.1:80"),
            ("s002", "10.0.0.2:80"),
            ("s003", "10.0.0.3:80"),
            ("s004", "10.0.0.4:80"),
            ("s005", "10.0.0.5:80"),
        ])
    );
    assert_eq!(
        live_slots(&texts[1]),
        pairs(&[
            ("s001", "10.0.0.1:80"),
            ("s003", "10.0.0.3:80"),
            ("s005", "10.0.0.5:80"),
        ])
    );
    assert_eq!(
        live_slots(&texts[2]),
        pairs(&[
            ("s001", "10.0.0.1:80"),
            ("s003", "10.0.0.3:80"),
            ("s004", "10.0.0.4:80"),
            ("s005", "10.0.0.5:80"),
            // Not s002: 10.0.0.2 left it one change ago, so it is still reserved (disabled
            // at 10.0.0.2) while a truly free slot exists.
            ("s006", "10.0.0.9:80"),
        ])
    );
    // The slot count stayed put the whole time.
    for text in &texts {
        assert_eq!(text.matches("    server ").count(), 16, "{text}");
    }
}

#[test]
fn same_snapshot_same_bytes_on_any_renderer_and_every_node_same_servers() {
    for v in variants() {
        let last = v.steps.last().unwrap();
        let fresh_a = HaproxyRenderer::new(v.options.clone()).unwrap();
        let fresh_b = HaproxyRenderer::new(v.options.clone()).unwrap();
        let a = fresh_a.render(last, &v.node).unwrap();
        assert_eq!(a, fresh_a.render(last, &v.node).unwrap(), "{}", v.name);
        assert_eq!(a, fresh_b.render(last, &v.node).unwrap(), "{}", v.name);

        // Another node: different binds, identical backends.
        let other = EdgeNode::new("edge-other").with_bind(80, "ipv6@:80");
        let b = fresh_a.render(last, &other).unwrap();
        let servers = |t: &str| {
            t.lines()
                .filter(|l| l.starts_with("    server ") || l.starts_with("backend "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert!(!servers(&a.text).is_empty());
        assert_eq!(servers(&a.text), servers(&b.text), "{}", v.name);
    }
}

#[test]
fn user_template_overrides_and_extends_the_builtin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("haproxy.cfg.j2"),
        "{% extends \"builtin/haproxy.cfg.j2\" %}\n\
         {% block global_extra %}\n    nbthread 2\n{% endblock %}\n\
         {% block defaults_extra %}\n    option log-health-checks\n{% endblock %}\n\
         {% block extra %}\n\n{% include \"stats.j2\" %}\n{% endblock %}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("stats.j2"),
        "listen stats\n    mode http\n    bind 127.0.0.1:8404\n    stats enable\n",
    )
    .unwrap();
    let opts = RenderOptions {
        template_dir: Some(dir.path().to_owned()),
        ..RenderOptions::default()
    };
    let renderer = HaproxyRenderer::new(opts).unwrap();
    let snap = snapshot(vec![(
        "web/app",
        "http",
        port(80, ProxyProtocol::V2, &["10.0.0.1:80"]),
    )]);
    let text = renderer
        .render(&snap, &EdgeNode::new("edge-1"))
        .unwrap()
        .text;
    check_golden("user_template", &text);
}
