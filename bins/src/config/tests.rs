use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<LoadedConfig> {
    LoadedConfig::parse(Path::new("/etc/edgelb/config.yaml"), text)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const MINIMAL: &str =
    "source:\n  file: eps.yaml\nedges:\n  - name: local\ndeployer:\n  local: {}\n";

#[test]
fn minimal_config_resolves_relative_paths() {
    let loaded = parse(MINIMAL).unwrap();
    match &loaded.config.source {
        SourceConfig::File(p) => assert_eq!(p, Path::new("/etc/edgelb/eps.yaml")),
        other => panic!("{other:?}"),
    }
    let DeployerConfig::Local(local) = &loaded.config.deployer;
    assert_eq!(local.config_path, "/etc/haproxy/haproxy.cfg");
}

#[test]
fn unknown_keys_name_the_file_line_and_key() {
    let msg = err(&MINIMAL.replace(
        "  - name: local\n",
        "  - name: local\n    pubic_addresses: []\n",
    ));
    assert!(msg.starts_with("/etc/edgelb/config.yaml: "), "{msg}");
    assert!(
        msg.contains("pubic_addresses") && msg.contains("line 5"),
        "{msg}"
    );
    let msg = err(&format!("{MINIMAL}pipline: {{}}\n"));
    assert!(msg.contains("pipline") && msg.contains("line 7"), "{msg}");
}

#[test]
fn bad_values_are_explained() {
    let msg = err(&format!("{MINIMAL}pipeline:\n  debounce: 5 seconds\n"));
    assert!(
        msg.contains("pipeline.debounce: invalid duration") && msg.contains("line 8"),
        "{msg}"
    );
    let msg = err(&MINIMAL.replace("name: local", "name: \"local edge\""));
    assert!(
        msg.contains("edges[0]") && msg.contains("invalid node name"),
        "{msg}"
    );
    let msg = err(&MINIMAL.replace("local: {}", "local: {config_path: \"/etc/h;x\"}"));
    assert!(
        msg.contains("deployer: local") && msg.contains("haproxy config path"),
        "{msg}"
    );
}

#[test]
fn the_local_deployer_takes_exactly_one_edge() {
    let msg = err(&MINIMAL.replace("  - name: local\n", "  - name: a\n  - name: b\n"));
    assert!(msg.contains("exactly one edge"), "{msg}");
    let msg = err(&MINIMAL.replace("edges:\n  - name: local\n", "edges: []\n"));
    assert!(msg.contains("at least one edge"), "{msg}");
}

#[test]
fn the_shipped_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !name.contains("endpoints") {
            LoadedConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 1);
}
