//! The `ansible.cfg` the deployer runs with: the shipped callback plugin and role, pinned host
//! keys with strict checking, the deploy key, and the speed settings (ControlPersist
//! connection reuse, pipelining).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::assets::CALLBACK_NAME;
use crate::paths::text;

/// What goes into the generated `ansible.cfg`. Every path is absolute and plain
/// ([`check_plain_path`](crate::paths::check_plain_path)).
#[derive(Debug, Clone)]
pub(crate) struct CfgSettings<'a> {
    /// Where the playbooks were written (holds `callback_plugins/` and `roles/`).
    pub assets_dir: &'a Path,
    /// Ansible's local temp dir.
    pub local_tmp: &'a Path,
    /// ssh's `ControlPath` directory.
    pub control_dir: &'a Path,
    /// The `ssh` Ansible runs ([`ssh_wrapper`](crate::ssh_wrapper)).
    pub ssh_executable: &'a Path,
    /// The pinned host keys.
    pub known_hosts: &'a Path,
    /// The deploy key, if one is configured.
    pub private_key: Option<&'a Path>,
    /// ssh's connect timeout.
    pub connect_timeout: Duration,
    /// ControlPersist; zero turns connection reuse off.
    pub control_persist: Duration,
    /// Ansible pipelining.
    pub pipelining: bool,
}

/// The `ssh_args` line: host keys strictly from our file only, no prompts.
pub(crate) fn ssh_args(s: &CfgSettings<'_>) -> String {
    let mut args = Vec::new();
    if s.control_persist.is_zero() {
        args.push("-o ControlMaster=no".to_owned());
    } else {
        args.push("-o ControlMaster=auto".to_owned());
        args.push(format!(
            "-o ControlPersist={}s",
            s.control_persist.as_secs().max(1)
        ));
    }
    args.push(format!("-o UserKnownHostsFile={}", text(s.known_hosts)));
    args.push("-o GlobalKnownHostsFile=/dev/null".to_owned());
    args.push("-o StrictHostKeyChecking=yes".to_owned());
    args.push("-o UpdateHostKeys=no".to_owned());
    args.push("-o CheckHostIP=no".to_owned());
    args.push("-o BatchMode=yes".to_owned());
    if s.private_key.is_some() {
        args.push("-o IdentitiesOnly=yes".to_owned());
    }
    args.push("-o ServerAliveInterval=15".to_owned());
    args.push("-o ServerAliveCountMax=3".to_owned());
    args.join(" ")
}

/// The whole file.
pub(crate) fn ansible_cfg(s: &CfgSettings<'_>) -> String {
    let mut out = String::new();
    // `write!` to a String cannot fail.
    let _ = writeln!(
        out,
        "# Written by edgelb-ansible; regenerated for every deployer."
    );
    let _ = writeln!(out, "[defaults]");
    let _ = writeln!(out, "callbacks_enabled = {CALLBACK_NAME}");
    let _ = writeln!(
        out,
        "callback_plugins = {}",
        text(&s.assets_dir.join("callback_plugins"))
    );
    let _ = writeln!(out, "roles_path = {}", text(&s.assets_dir.join("roles")));
    let _ = writeln!(out, "local_tmp = {}", text(s.local_tmp));
    let _ = writeln!(out, "host_key_checking = True");
    let _ = writeln!(out, "gathering = explicit");
    let _ = writeln!(out, "retry_files_enabled = False");
    let _ = writeln!(out, "interpreter_python = auto_silent");
    let _ = writeln!(out, "nocolor = True");
    let _ = writeln!(out, "nocows = True");
    let _ = writeln!(out, "deprecation_warnings = False");
    let _ = writeln!(out, "timeout = {}", s.connect_timeout.as_secs().max(1));
    // Diffs of whole configs in plans (the default stops at 100 KiB).
    let _ = writeln!(out, "max_diff_size = {}", 64 * 1024 * 1024);
    if let Some(key) = s.private_key {
        let _ = writeln!(out, "private_key_file = {}", text(key));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "[ssh_connection]");
    let _ = writeln!(
        out,
        "pipelining = {}",
        if s.pipelining { "True" } else { "False" }
    );
    let _ = writeln!(out, "control_path_dir = {}", text(s.control_dir));
    let _ = writeln!(out, "ssh_executable = {}", text(s.ssh_executable));
    let _ = writeln!(out, "ssh_args = {}", ssh_args(s));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CfgSettings<'static> {
        CfgSettings {
            assets_dir: Path::new("/tmp/edgelb-ans-x/ansible"),
            local_tmp: Path::new("/tmp/edgelb-ans-x/tmp"),
            control_dir: Path::new("/tmp/edgelb-ans-x/cp"),
            ssh_executable: Path::new("/tmp/edgelb-ans-x/bin/ssh"),
            known_hosts: Path::new("/tmp/edgelb-ans-x/known_hosts"),
            private_key: Some(Path::new("/tmp/edgelb-ans-x/id")),
            connect_timeout: Duration::from_secs(10),
            control_persist: Duration::from_secs(60),
            pipelining: true,
        }
    }

    #[test]
    fn strict_pinned_host_keys_and_connection_reuse() {
        let cfg = ansible_cfg(&settings());
        for line in [
            "callbacks_enabled = edgelb_json\n",
            "callback_plugins = /tmp/edgelb-ans-x/ansible/callback_plugins\n",
            "roles_path = /tmp/edgelb-ans-x/ansible/roles\n",
            "host_key_checking = True\n",
            "private_key_file = /tmp/edgelb-ans-x/id\n",
            "timeout = 10\n",
            "pipelining = True\n",
            "control_path_dir = /tmp/edgelb-ans-x/cp\n",
        ] {
            assert!(cfg.contains(line), "missing {line:?} in\n{cfg}");
        }
        let args = ssh_args(&settings());
        for arg in [
            "-o ControlMaster=auto",
            "-o ControlPersist=60s",
            "-o UserKnownHostsFile=/tmp/edgelb-ans-x/known_hosts",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o StrictHostKeyChecking=yes",
            "-o BatchMode=yes",
            "-o IdentitiesOnly=yes",
        ] {
            assert!(args.contains(arg), "missing {arg} in {args}");
        }
        assert!(!args.contains("StrictHostKeyChecking=no"));
    }

    #[test]
    fn zero_persist_turns_reuse_off_and_no_key_keeps_ssh_defaults() {
        let s = CfgSettings {
            control_persist: Duration::ZERO,
            private_key: None,
            pipelining: false,
            ..settings()
        };
        let cfg = ansible_cfg(&s);
        assert!(cfg.contains("-o ControlMaster=no"), "{cfg}");
        assert!(!cfg.contains("ControlPersist"), "{cfg}");
        assert!(!cfg.contains("private_key_file"), "{cfg}");
        assert!(!cfg.contains("IdentitiesOnly"), "{cfg}");
        assert!(cfg.contains("pipelining = False"), "{cfg}");
    }
}
