//! The playbooks, role, module and callback plugin shipped with the crate. They live in
//! `edgelb-ansible/ansible/` (usable by hand from the repo) and are embedded here, written to
//! the deployer's private directory at run time.

use std::path::Path;

use crate::error::{Error, Result};

/// The deploy playbook (`--check --diff` plans).
pub const DEPLOY_PLAYBOOK: &str = "deploy.yml";
/// The playbook that reads live configs back.
pub const LIVE_DIGEST_PLAYBOOK: &str = "live_digest.yml";
/// The callback plugin's name (`callbacks_enabled`).
pub const CALLBACK_NAME: &str = "edgelb_json";
/// The environment variable naming the file the callback plugin writes its JSON lines to.
pub const RESULTS_ENV: &str = "EDGELB_ANSIBLE_RESULTS";

/// Every embedded file: its path under `ansible/` and its contents.
pub const PLAYBOOK_FILES: &[(&str, &str)] = &[
    (DEPLOY_PLAYBOOK, include_str!("../ansible/deploy.yml")),
    (
        LIVE_DIGEST_PLAYBOOK,
        include_str!("../ansible/live_digest.yml"),
    ),
    (
        "callback_plugins/edgelb_json.py",
        include_str!("../ansible/callback_plugins/edgelb_json.py"),
    ),
    (
        "roles/edgelb_haproxy/defaults/main.yml",
        include_str!("../ansible/roles/edgelb_haproxy/defaults/main.yml"),
    ),
    (
        "roles/edgelb_haproxy/tasks/main.yml",
        include_str!("../ansible/roles/edgelb_haproxy/tasks/main.yml"),
    ),
    (
        "roles/edgelb_haproxy/tasks/deploy.yml",
        include_str!("../ansible/roles/edgelb_haproxy/tasks/deploy.yml"),
    ),
    (
        "roles/edgelb_haproxy/tasks/plan.yml",
        include_str!("../ansible/roles/edgelb_haproxy/tasks/plan.yml"),
    ),
    (
        "roles/edgelb_haproxy/tasks/live_digest.yml",
        include_str!("../ansible/roles/edgelb_haproxy/tasks/live_digest.yml"),
    ),
    (
        "roles/edgelb_haproxy/library/edgelb_haproxy_master.py",
        include_str!("../ansible/roles/edgelb_haproxy/library/edgelb_haproxy_master.py"),
    ),
];

/// Writes the playbooks, role, module and callback plugin under `dir` (created if needed),
/// e.g. to run them by hand on a machine without the repository.
pub fn export_playbook(dir: &Path) -> Result<()> {
    for (relative, contents) in PLAYBOOK_FILES {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&path, contents)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    /// Files under `ansible/` that only serve hand use, not embedded.
    const HAND_ONLY: &[&str] = &["ansible.cfg", "inventory.example.yml"];

    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "__pycache__") {
                    continue;
                }
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_str().unwrap();
                out.insert(rel.to_owned());
            }
        }
    }

    #[test]
    fn every_shipped_file_is_embedded_and_exports() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ansible");
        let mut on_disk = BTreeSet::new();
        walk(&root, &root, &mut on_disk);
        for hand in HAND_ONLY {
            assert!(on_disk.remove(*hand), "{hand} is documented as shipped");
        }
        let embedded: BTreeSet<String> = PLAYBOOK_FILES
            .iter()
            .map(|(p, _)| (*p).to_owned())
            .collect();
        assert_eq!(on_disk, embedded);

        let dir = tempfile::tempdir().unwrap();
        export_playbook(dir.path()).unwrap();
        for (relative, contents) in PLAYBOOK_FILES {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(relative)).unwrap(),
                *contents
            );
        }
    }

    #[test]
    fn every_task_that_decides_an_outcome_names_its_step() {
        let tasks = PLAYBOOK_FILES
            .iter()
            .find(|(p, _)| p.ends_with("tasks/deploy.yml"))
            .unwrap()
            .1;
        for step in crate::outcome::DEPLOY_STEPS {
            assert!(
                tasks.contains(&format!("edgelb_step: {step}\n")),
                "tasks/deploy.yml has no task with edgelb_step {step}"
            );
        }
    }
}
