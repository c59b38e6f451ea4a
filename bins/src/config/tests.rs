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
    let DeployerConfig::Local(local) = &loaded.config.deployer else {
        panic!("{:?}", loaded.config.deployer)
    };
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

#[test]
fn ssh_and_ansible_deployers_need_ssh_targets_and_resolve_paths() {
    let ssh = "source:\n  file: eps.yaml\nedges:\n  - name: e1\n    ssh: {host: 10.0.0.1}\ndeployer:\n  ssh: {key: keys/id_ed25519, known_hosts: keys/known_hosts}\n";
    let loaded = parse(ssh).unwrap();
    let DeployerConfig::Ssh(settings) = &loaded.config.deployer else {
        panic!("{:?}", loaded.config.deployer)
    };
    assert_eq!(settings.key, Path::new("/etc/edgelb/keys/id_ed25519"));
    assert_eq!(settings.layout().master_socket, "/run/haproxy/master.sock");
    assert_eq!(loaded.config.deployer.batch_size(), 1);

    let msg = err(&ssh.replace("    ssh: {host: 10.0.0.1}\n", ""));
    assert!(
        msg.contains("deployer: ssh: edge \"e1\" has no ssh"),
        "{msg}"
    );

    let ansible = ssh.replace(
        "ssh: {key: keys/id_ed25519, known_hosts: keys/known_hosts}",
        "ansible: {private_key_file: k, known_hosts_file: kh}",
    );
    let loaded = parse(&ansible).unwrap();
    assert_eq!(loaded.config.deployer.batch_size(), usize::MAX);
    let msg = err(&ansible.replace("private_key_file", "private_key_fiel"));
    assert!(
        msg.contains("deployer.ansible") && msg.contains("private_key_fiel"),
        "{msg}"
    );
}

#[test]
fn kubernetes_sources_take_exactly_one_mode() {
    let base =
        "edges: [{name: e1, ssh: {host: 10.0.0.1}}]\ndeployer: {ssh: {key: k, known_hosts: kh}}\n";
    let lb =
        format!("source:\n  kubernetes:\n    load_balancer: {{class: example.com/lb}}\n{base}");
    let loaded = parse(&lb).unwrap();
    assert!(loaded.config.source.is_load_balancer());
    let named =
        format!("source:\n  kubernetes:\n    services: [{{service: kube-system/traefik}}]\n{base}");
    assert!(!parse(&named).unwrap().config.source.is_load_balancer());
    let both = format!("source:\n  kubernetes: {{}}\n{base}");
    assert!(err(&both).contains("exactly one of load_balancer and services"));
    let bad = format!(
        "source:\n  kubernetes:\n    services: [{{service: \"kube system/traefik\"}}]\n{base}"
    );
    let msg = err(&bad);
    assert!(
        msg.contains("source.kubernetes.services[0].service") && msg.contains("line 3"),
        "{msg}"
    );
}

#[test]
fn leader_election_settings() {
    let text = format!(
        "{MINIMAL}leader_election: {{lease: my-lease, namespace: edgelb, identity: pod-1}}\n"
    );
    let loaded = parse(&text).unwrap();
    let config = loaded.config.leader_election.unwrap().to_config().unwrap();
    assert_eq!(
        (
            config.lease_name.as_str(),
            config.namespace.as_str(),
            config.identity.as_str()
        ),
        ("my-lease", "edgelb", "pod-1")
    );
}

#[test]
fn the_deployment_configmap_holds_a_valid_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/configmap.yaml");
    // `load` reads a ConfigMap manifest's config.yaml, as `edgelb check` does.
    let loaded = LoadedConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.source.is_load_balancer());
    assert!(loaded.config.leader_election.is_some());
    assert!(matches!(loaded.config.deployer, DeployerConfig::Ssh(_)));
    assert!(loaded.config.http.listen.is_some());
}

#[test]
fn an_endpoints_file_given_as_the_config_is_recognised() {
    let msg = err("services:\n  - name: web\n    ports: [{name: http, listen: 80}]\n");
    assert!(
        msg.contains("this looks like an endpoints file") && msg.contains("source: {file: …}"),
        "{msg}"
    );
    // A config with a typo is not mistaken for one.
    let msg = err(&format!("{MINIMAL}services: []\n"));
    assert!(!msg.contains("endpoints file"), "{msg}");
}

#[test]
fn one_duration_grammar_for_every_setting() {
    let loaded = parse(&format!(
        "{MINIMAL}pipeline:\n  debounce: 1m30s\n  max_debounce: 2m\nhaproxy:\n  timeouts:\n    client: 1m30s\n"
    ))
    .unwrap();
    assert_eq!(
        loaded.config.pipeline.debounce,
        std::time::Duration::from_secs(90)
    );
    assert_eq!(loaded.config.haproxy.timeouts.client.as_millis(), 90_000);
    for key in ["pipeline:\n  debounce", "haproxy:\n  timeouts:\n    client"] {
        let msg = err(&format!("{MINIMAL}{key}: 1m30\n"));
        assert!(msg.contains("30 has no unit"), "{key}: {msg}");
    }
}

#[test]
fn an_encrypted_deploy_key_takes_its_passphrase_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "s3cret", "-C", "", "-f"])
        .arg(dir.path().join("id_ed25519"))
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        assert!(std::env::var_os("CI").is_none(), "ssh-keygen is missing");
        eprintln!("SKIP: ssh-keygen is not installed (apt-get install openssh-client)");
        return;
    }
    std::fs::write(dir.path().join("pass"), "s3cret\n").unwrap();
    let path = dir.path().join("config.yaml");
    let text = "source: {file: e.yaml}\nedges: [{name: e1, ssh: {host: 10.0.0.1}}]\ndeployer:\n  ssh: {key: id_ed25519, known_hosts: kh, key_passphrase_file: pass}\n";
    let key = |text: &str| {
        let loaded = LoadedConfig::parse(&path, text).unwrap();
        let DeployerConfig::Ssh(ssh) = &loaded.config.deployer else {
            panic!("{:?}", loaded.config.deployer)
        };
        ssh.client_key()
    };
    assert!(key(text).is_ok());
    let err = key(&text.replace(", key_passphrase_file: pass", ""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("it is encrypted and no passphrase was given")
            && err.contains("key_passphrase_file"),
        "{err}"
    );
}

#[test]
fn http_listen_takes_ip_port_and_says_so() {
    let loaded = parse(&format!("{MINIMAL}http:\n  listen: \"[::1]:9090\"\n")).unwrap();
    assert_eq!(
        loaded.config.http.listen,
        Some("[::1]:9090".parse().unwrap())
    );
    let msg = err(&format!("{MINIMAL}http:\n  listen: localhost:9090\n"));
    assert!(
        msg.contains("http.listen") && msg.contains("is not an IP:PORT address"),
        "{msg}"
    );
}
