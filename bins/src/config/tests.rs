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
fn edges_take_pools_and_inline_services_take_pool_and_address() {
    let text = MINIMAL
        .replace("name: local", "name: local\n    pools: [public, default]")
        .replace(
            "  file: eps.yaml",
            "  services: [{name: web, pool: public, address: \"2001:db8::1\", ports: [{name: https, listen: 443}]}]",
        );
    let loaded = parse(&text).unwrap();
    let edge = &loaded.config.edges[0];
    assert!(edge.in_pool("public") && edge.in_pool("default") && !edge.in_pool("x"));
    let SourceConfig::Services(services) = &loaded.config.source else {
        panic!("{:?}", loaded.config.source)
    };
    assert_eq!(services[0].pool.as_deref(), Some("public"));
    assert_eq!(services[0].address, Some("2001:db8::1".parse().unwrap()));
}

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
fn health_and_dns_endpoint_settings_are_read_and_checked() {
    let loaded = parse(&format!(
        "{MINIMAL}health:\n  interval: 1s\n  timeout: 500ms\n  fall: 4\n  rise: 1\n"
    ))
    .unwrap();
    let health = loaded.config.health.to_health_config();
    assert_eq!(
        (health.interval, health.timeout, health.fall, health.rise),
        (
            std::time::Duration::from_secs(1),
            std::time::Duration::from_millis(500),
            4,
            1
        )
    );
    assert!(health.enabled, "on by default");
    let msg = err(&format!("{MINIMAL}health:\n  fall: 0\n"));
    assert!(msg.contains("health: fall"), "{msg}");
    let msg = err(&format!("{MINIMAL}health:\n  interval: 1ms\n"));
    assert!(msg.contains("health: interval"), "{msg}");

    // A DNSEndpoint lives in the cluster: not with a file source.
    let msg = err(&format!(
        "{MINIMAL}dns_endpoint:\n  hostnames: [example.com]\n"
    ));
    assert!(msg.contains("needs a Kubernetes source"), "{msg}");
    let kube = "source:\n  kubernetes:\n    load_balancer: {}\nedges:\n  - name: e1\n    ssh: {host: 192.0.2.1}\ndeployer:\n  local: {}\n";
    let with_dns = |dns: &str| format!("{kube}dns_endpoint:\n{dns}");
    let msg = err(&with_dns("  hostnames: [\"bad name\"]\n"));
    assert!(
        msg.contains("dns_endpoint") && msg.contains("hostname"),
        "{msg}"
    );
    let loaded = parse(&with_dns("  hostnames: [\"*.example.com\"]\n  ttl: 30s\n")).unwrap();
    let dns = loaded.config.dns_endpoint.unwrap().to_config();
    assert_eq!(dns.hostnames, vec!["*.example.com"]);
    assert_eq!(dns.ttl, std::time::Duration::from_secs(30));
}

/// Everything `run` would refuse (or choke on) once started, the config refuses offline, so
/// `edgelb check` refuses it too.
#[test]
fn what_run_would_refuse_the_config_refuses() {
    let base =
        "edges: [{name: e1, ssh: {host: 10.0.0.1}}]\ndeployer: {ssh: {key: k, known_hosts: kh}}\n";
    let cases = [
        // `run` panicked adding this to an Instant.
        (
            format!("{MINIMAL}pipeline: {{resync: 200000000000000d}}\n"),
            "pipeline.resync: invalid duration \"200000000000000d\": it is too large",
        ),
        (
            MINIMAL.replace("name: local", &format!("name: {}", "e".repeat(252))),
            "longer than 63",
        ),
        (
            format!(
                "source:\n  kubernetes:\n    services: [{{service: a/b, ports: [{{port: web, listen_port: 0}}]}}]\n{base}"
            ),
            "listen port 0",
        ),
        (
            format!(
                "source:\n  kubernetes:\n    services: [{{service: a/b, ports: [{{port: \"web\\nx\"}}]}}]\n{base}"
            ),
            "invalid port name \"web\\nx\"",
        ),
        (
            format!("source:\n  kubernetes:\n    load_balancer: {{class: \"\"}}\n{base}"),
            "class: it is empty",
        ),
        // A port no service uses yet: `run` froze the edge when one appeared.
        (
            MINIMAL.replace(
                "name: local",
                "name: local\n    extra_binds: {9999: [\"edge.example.com:9999\"]}",
            ),
            "host names",
        ),
        (
            MINIMAL.replace(
                "name: local",
                "name: local\n    extra_binds: {80: [/etc/passwd]}",
            ),
            "socket_dirs",
        ),
        (
            format!("{MINIMAL}haproxy: {{stats_socket: /etc/passwd}}\n"),
            "socket_dirs",
        ),
        (
            format!("{MINIMAL}leader_election: {{lease_duration: 5s, renew_deadline: 10s}}\n"),
            "retry_period < renew_deadline < lease_duration",
        ),
        (
            MINIMAL.replace(
                "  file: eps.yaml",
                "  services: [{name: web, ports: [{name: http, listen: 80}, {name: http, listen: 81}]}]",
            ),
            "is used twice",
        ),
        (
            MINIMAL.replace("name: local", "name: local\n    pools: [\"Public Pool\"]"),
            "pool of node local",
        ),
        (
            MINIMAL.replace(
                "  file: eps.yaml",
                "  services: [{name: web, address: 0.0.0.0, ports: [{name: http, listen: 80}]}]",
            ),
            "every address",
        ),
    ];
    for (text, expected) in cases {
        let msg = err(&text);
        assert!(msg.contains(expected), "expected {expected:?} in: {msg}");
        assert!(msg.len() < 2_000 && !msg.contains('\n'), "{msg}");
    }
}

#[test]
fn hostile_config_files_cost_bounded_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    // Over the size cap: refused unread.
    std::fs::write(&path, format!("{MINIMAL}# {}\n", "x".repeat(2 << 20))).unwrap();
    let msg = LoadedConfig::load(&path).unwrap_err().to_string();
    assert!(msg.contains("more than the limit"), "{msg}");
    // Deep nesting and aliases: refused by the budget, in linear time.
    std::fs::write(&path, format!("{MINIMAL}x: {}\n", "[".repeat(160_000))).unwrap();
    let msg = LoadedConfig::load(&path).unwrap_err().to_string();
    assert!(msg.contains("32 levels"), "{msg}");
    let eps: Vec<String> = (0..20_000)
        .map(|i| format!("\"10.0.{}.{}:80\"", i / 250, i % 250 + 1))
        .collect();
    let mut bomb = format!(
        "source:\n  services:\n    - name: s0\n      ports:\n        - {{name: p0, listen: 1, endpoints: &a [{}]}}\n",
        eps.join(", ")
    );
    for j in 1..500 {
        bomb.push_str(&format!(
            "        - {{name: p{j}, listen: {}, endpoints: *a}}\n",
            j + 1
        ));
    }
    bomb.push_str("edges: [{name: local}]\ndeployer: {local: {}}\n");
    std::fs::write(&path, bomb).unwrap();
    let msg = LoadedConfig::load(&path).unwrap_err().to_string();
    assert!(msg.contains("alias"), "{msg}");
    // A FIFO: refused, not waited on.
    let fifo = dir.path().join("fifo.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let msg = LoadedConfig::load(&fifo).unwrap_err().to_string();
    assert!(msg.contains("not a regular file"), "{msg}");
}

#[test]
fn limits_section_sets_the_endpoints_file_cap() {
    let loaded = parse(&format!(
        "{MINIMAL}limits: {{endpoints_file_bytes: 5000000}}\n"
    ))
    .unwrap();
    assert_eq!(loaded.config.limits.endpoints_file_bytes, 5_000_000);
    assert_eq!(
        parse(MINIMAL).unwrap().config.limits.endpoints_file_bytes,
        1 << 20
    );
    let msg = err(&format!("{MINIMAL}limits: {{endpoints_file_bytes: 0}}\n"));
    assert!(msg.contains("limits.endpoints_file_bytes"), "{msg}");
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

#[test]
fn edge_stats_settings_are_read_and_checked() {
    let defaults = parse(MINIMAL).unwrap().config.edge_stats;
    assert!(defaults.enabled, "on by default");
    assert_eq!(defaults.interval, std::time::Duration::from_secs(15));
    let loaded = parse(&format!(
        "{MINIMAL}edge_stats:\n  enabled: false\n  interval: 1s\n  timeout: 500ms\n"
    ))
    .unwrap();
    let stats = loaded.config.edge_stats;
    assert!(!stats.enabled);
    assert_eq!(
        (stats.interval, stats.timeout),
        (
            std::time::Duration::from_secs(1),
            std::time::Duration::from_millis(500)
        )
    );
    let msg = err(&format!("{MINIMAL}edge_stats:\n  interval: 1ms\n"));
    assert!(msg.contains("edge_stats: interval"), "{msg}");
    let msg = err(&format!("{MINIMAL}edge_stats:\n  every: 1s\n"));
    assert!(msg.contains("every"), "{msg}");
}

#[test]
fn edge_resources_replace_the_edges_list() {
    let text = "source:\n  kubernetes: {load_balancer: {}}\nedge_resources:\n  namespace: edges\n  restart_debounce: 2s\ndeployer:\n  ssh: {key: k, known_hosts: kh}\n";
    let loaded = parse(text).unwrap();
    let resources = loaded.config.edge_resources.clone().unwrap();
    assert_eq!(resources.namespace(), "edges");
    assert_eq!(
        resources.restart_debounce,
        std::time::Duration::from_secs(2)
    );
    assert!(loaded.config.edges.is_empty());

    let both = text.replace(
        "deployer:",
        "edges: [{name: e1, ssh: {host: 10.0.0.1}}]\ndeployer:",
    );
    assert!(
        err(&both).contains("either edges or edge_resources"),
        "{}",
        err(&both)
    );
    let neither = text.replace(
        "edge_resources:\n  namespace: edges\n  restart_debounce: 2s\n",
        "",
    );
    assert!(
        err(&neither).contains("set edge_resources"),
        "{}",
        err(&neither)
    );
    let local = text.replace("ssh: {key: k, known_hosts: kh}", "local: {}");
    assert!(
        err(&local).contains("local deployer serves this machine only"),
        "{}",
        err(&local)
    );
    let bad_ns = text.replace("namespace: edges", "namespace: Edges");
    assert!(
        err(&bad_ns).contains("edge_resources.namespace"),
        "{}",
        err(&bad_ns)
    );
}

#[test]
fn status_write_pace_is_read_and_checked() {
    let base =
        "edges: [{name: e1, ssh: {host: 10.0.0.1}}]\ndeployer: {ssh: {key: k, known_hosts: kh}}\n";
    let lb = |status: &str| {
        format!(
            "source:\n  kubernetes:\n    load_balancer: {{class: example.com/lb}}\n{status}{base}"
        )
    };
    let defaults = parse(&lb("")).unwrap().config.source.status_config();
    assert_eq!(defaults, edgelb_kube::StatusConfig::default());
    let set = parse(&lb("    status: {qps: 50, burst: 20, max_in_flight: 4}\n"))
        .unwrap()
        .config
        .source
        .status_config();
    assert_eq!((set.qps, set.burst, set.max_in_flight), (50, 20, 4));
    let msg = err(&lb("    status: {qps: 0}\n"));
    assert!(msg.contains("kubernetes.status"), "{msg}");
    let msg = err(&lb("    status: {max_in_flight: 1000}\n"));
    assert!(msg.contains("max_in_flight: at most 256"), "{msg}");
    let msg = err(&lb("    status: {rate: 5}\n"));
    assert!(msg.contains("rate"), "{msg}");
}
