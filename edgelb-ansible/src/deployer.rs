//! [`AnsibleDeployer`]: one `ansible-playbook` run per batch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use edgelb_core::{DeployError, Deployer, Digest, EdgeNode, NodeConfig, NodeOutcome, SshTarget};
use edgelb_haproxy::HaproxyLayout;
use tempfile::TempDir;

use crate::assets::{DEPLOY_PLAYBOOK, LIVE_DIGEST_PLAYBOOK};
use crate::config::AnsibleDeployerConfig;
use crate::error::{Error, Result};
use crate::inventory::{GroupSettings, InventoryHost, inventory};
use crate::known_hosts::{known_hosts_file, read_source};
use crate::outcome::{HostContext, RunSummary, deploy_outcome, live_file_outcome, plan_outcome};
use crate::plan::NodePlan;
use crate::results::RunResults;
use crate::runner::{Finished, Invocation, find_ansible_playbook, run, tail};
use crate::workdir::WorkDir;

/// Deploys through `ansible-playbook`: each [`deploy`](Deployer::deploy) call is **one**
/// playbook run over the whole batch (see the [crate docs](crate) for what it does on each
/// edge). Give the pipeline a large [`PipelineConfig::batch_size`](edgelb_core::PipelineConfig)
/// (e.g. [`AnsibleDeployer::batch_size`]) so it sends every node in one call: Ansible's start-up
/// costs seconds, its per-host work runs in parallel (`--forks`).
///
/// Dropping the deployer closes its SSH master connections and removes its private
/// directory.
#[derive(Debug)]
pub struct AnsibleDeployer {
    config: AnsibleDeployerConfig,
    layout: HaproxyLayout,
    program: PathBuf,
    work: WorkDir,
}

/// A node ready for a run, or the outcome it already has.
enum Prepared<'a> {
    Run(&'a EdgeNode, &'a SshTarget),
    Done(DeployError),
}

impl AnsibleDeployer {
    /// Checks the settings, finds `ansible-playbook`, and writes the playbook, `ansible.cfg`,
    /// pinned host keys (and the key, when given as bytes) into a private directory.
    pub fn new(config: AnsibleDeployerConfig) -> Result<Self> {
        config.validate()?;
        let program = find_ansible_playbook(config.ansible_playbook.as_deref())?;
        let mut sources = Vec::new();
        if let Some(path) = &config.known_hosts_file {
            sources.push(read_source(path)?);
        }
        sources.push(("known_hosts".to_owned(), config.known_hosts.join("\n")));
        let known_hosts = known_hosts_file(&sources)?;
        let work = WorkDir::create(&config, &known_hosts)?;
        tracing::debug!(
            ansible_playbook = %program.display(),
            work_dir = %work.path().display(),
            "ansible deployer ready"
        );
        Ok(Self {
            layout: config.layout(),
            config,
            program,
            work,
        })
    }

    /// The settings.
    pub fn config(&self) -> &AnsibleDeployerConfig {
        &self.config
    }

    /// Where HAProxy lives on the edges.
    pub fn layout(&self) -> &HaproxyLayout {
        &self.layout
    }

    /// The `ansible-playbook` that runs.
    pub fn ansible_playbook(&self) -> &Path {
        &self.program
    }

    /// The deployer's private directory (playbook copy, `ansible.cfg`, control sockets).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The batch size to give the pipeline: every node in one run, up to `max_forks`
    /// hosts at once within it. (A larger batch still runs as one playbook.)
    pub fn batch_size(&self) -> usize {
        usize::MAX
    }

    /// Closes the SSH master connections kept for the next run (the next run opens new
    /// ones).
    pub async fn close_connections(&self) {
        self.work.close_masters().await;
    }

    /// What a deploy of `batch` would change on each node, with a unified diff, from one
    /// `ansible-playbook --check --diff` run. Nothing is written on the edges (and nothing is
    /// validated there either: `haproxy -c` runs only in a real deploy).
    pub async fn plan(&self, batch: &[NodeConfig]) -> Vec<NodePlan> {
        let outcomes = self
            .run_batch(batch, DEPLOY_PLAYBOOK, true, |ctx, results| {
                plan_outcome(ctx, results)
            })
            .await;
        outcomes
            .into_iter()
            .map(|(node, result)| NodePlan { node, result })
            .collect()
    }

    /// Checks each node and turns the batch into run entries and early outcomes, in order.
    fn prepare<'a>(&self, nodes: impl Iterator<Item = &'a EdgeNode>) -> Vec<Prepared<'a>> {
        let mut seen = BTreeSet::new();
        nodes
            .map(|node| {
                if !seen.insert(node.name.as_str()) {
                    return Prepared::Done(settings_error(
                        node,
                        "the node is listed twice in one batch".into(),
                    ));
                }
                match check_node(node) {
                    Ok(ssh) => Prepared::Run(node, ssh),
                    Err(error) => Prepared::Done(error),
                }
            })
            .collect()
    }

    /// One run over `batch` with `playbook`; `map` turns each host's results into its
    /// outcome. Returns one (node, outcome) per entry of `batch`, in order.
    async fn run_batch<T>(
        &self,
        batch: &[NodeConfig],
        playbook: &str,
        check: bool,
        map: impl Fn(&HostContext<'_>, &[crate::results::TaskResult]) -> Result<T, DeployError>,
    ) -> Vec<(String, Result<T, DeployError>)> {
        let prepared = self.prepare(batch.iter().map(|c| &c.node));
        let runnable: Vec<(&EdgeNode, &SshTarget, &NodeConfig)> = prepared
            .iter()
            .zip(batch)
            .filter_map(|(p, c)| match p {
                Prepared::Run(node, ssh) => Some((*node, *ssh, c)),
                Prepared::Done(_) => None,
            })
            .collect();

        let run = if runnable.is_empty() {
            None
        } else {
            Some(self.execute(playbook, check, &runnable).await)
        };

        prepared
            .into_iter()
            .zip(batch)
            .map(|(p, c)| {
                let name = c.node.name.clone();
                let result = match (p, &run) {
                    (Prepared::Done(error), _) => Err(error),
                    (Prepared::Run(_, ssh), Some(Ok((results, summary)))) => {
                        let ctx = HostContext {
                            node: &name,
                            user: &ssh.user,
                            connect_timeout: self.config.connect_timeout,
                            run: summary,
                        };
                        map(&ctx, results.host(&name))
                    }
                    (Prepared::Run(..), Some(Err(message))) => Err(DeployError::Step {
                        node: name.clone(),
                        step: "running ansible-playbook".into(),
                        message: message.clone(),
                    }),
                    (Prepared::Run(..), None) => Err(DeployError::Step {
                        node: name.clone(),
                        step: "running ansible-playbook".into(),
                        message: "not run".into(),
                    }),
                };
                (name, result)
            })
            .collect()
    }

    /// Writes the run's files, runs `ansible-playbook`, and reads its results. `Err` is a
    /// run that could not start (it applies to every node).
    async fn execute(
        &self,
        playbook: &str,
        check: bool,
        nodes: &[(&EdgeNode, &SshTarget, &NodeConfig)],
    ) -> std::result::Result<(RunResults, RunSummary), String> {
        let run_dir = self.work.new_run().map_err(|e| e.to_string())?;
        let hosts = write_configs(&run_dir, nodes)
            .await
            .map_err(|e| e.to_string())?;
        self.run_playbook(&run_dir, playbook, check, &hosts).await
    }

    /// Writes the inventory, runs `playbook` over `hosts`, and reads the results.
    async fn run_playbook(
        &self,
        run_dir: &TempDir,
        playbook: &str,
        check: bool,
        hosts: &[InventoryHost],
    ) -> std::result::Result<(RunResults, RunSummary), String> {
        let inventory_path = run_dir.path().join("inventory.json");
        let doc = inventory(
            hosts,
            &GroupSettings {
                layout: &self.layout,
                python_interpreter: self.config.python_interpreter.as_deref(),
                r#become: self.config.r#become,
            },
        );
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        tokio::fs::write(&inventory_path, text)
            .await
            .map_err(|e| format!("writing {}: {e}", inventory_path.display()))?;
        let results_path = run_dir.path().join("results.jsonl");
        let forks = hosts.len().clamp(1, self.config.max_forks);
        let playbook_path = self.work.assets.join(playbook);

        tracing::info!(
            playbook,
            hosts = hosts.len(),
            forks,
            check,
            "running ansible-playbook"
        );
        let finished = run(&Invocation {
            program: &self.program,
            ansible_cfg: &self.work.ansible_cfg,
            playbook: &playbook_path,
            inventory: &inventory_path,
            results: &results_path,
            cwd: run_dir.path(),
            home: &self.work.home,
            forks,
            check,
            timeout: self.config.run_timeout,
        })
        .await
        .map_err(|e| e.to_string())?;

        let text = tokio::fs::read_to_string(&results_path)
            .await
            .unwrap_or_default();
        let results = RunResults::parse(&text);
        let summary = summarize(&finished, self.config.run_timeout);
        log_run(playbook, &finished, &results, &summary);
        Ok((results, summary))
    }
}

/// The node's SSH target, if the node can be deployed to.
fn check_node(node: &EdgeNode) -> Result<&SshTarget, DeployError> {
    node.validate()
        .map_err(|e| settings_error(node, e.to_string()))?;
    node.ssh.as_ref().ok_or_else(|| {
        settings_error(
            node,
            "it has no ssh address; the Ansible deployer reaches every edge over SSH".into(),
        )
    })
}

fn settings_error(node: &EdgeNode, message: String) -> DeployError {
    DeployError::Step {
        node: node.name.clone(),
        step: "checking the node's settings".into(),
        message,
    }
}

/// Writes each node's rendered config into the run directory and describes its host.
async fn write_configs(
    run_dir: &TempDir,
    nodes: &[(&EdgeNode, &SshTarget, &NodeConfig)],
) -> Result<Vec<InventoryHost>> {
    let configs = run_dir.path().join("configs");
    tokio::fs::create_dir(&configs)
        .await
        .map_err(|e| Error::io(format!("creating {}", configs.display()), e))?;
    let mut hosts = Vec::with_capacity(nodes.len());
    for (node, ssh, config) in nodes {
        // Node names are validated: letters, digits, '-' and '.', no leading dot.
        let path = configs.join(format!("{}.cfg", node.name));
        tokio::fs::write(&path, config.config.text.as_bytes())
            .await
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        hosts.push(InventoryHost {
            name: node.name.clone(),
            ssh: (*ssh).clone(),
            config_src: Some(path),
            config_sha256: Some(Digest::of(config.config.text.as_bytes()).to_string()),
        });
    }
    Ok(hosts)
}

/// How the run ended, for hosts without a final result.
fn summarize(finished: &Finished, timeout: Duration) -> RunSummary {
    RunSummary {
        timed_out: finished.status.is_none().then_some(timeout),
        exit: match finished.status {
            Some(status) => match status.code() {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".to_owned(),
            },
            None => format!("killed after {}s", timeout.as_secs()),
        },
        stderr_tail: tail(&finished.stderr, 5),
    }
}

fn log_run(playbook: &str, finished: &Finished, results: &RunResults, summary: &RunSummary) {
    tracing::debug!(playbook, stdout = %finished.stdout, stderr = %finished.stderr, "ansible-playbook output");
    for line in &results.unreadable {
        tracing::warn!(playbook, line = %line, "unreadable line in the results of ansible-playbook");
    }
    // 0: all ok; 2: a host failed; 4: a host was unreachable (both reported per node).
    let expected = matches!(
        finished.status.and_then(|s| s.code()),
        Some(0) | Some(2) | Some(4)
    );
    if !expected || !results.finished {
        tracing::warn!(
            playbook,
            exit = %summary.exit,
            seconds = finished.elapsed.as_secs_f64(),
            stderr = %tail(&finished.stderr, 20),
            "ansible-playbook did not finish normally"
        );
    } else {
        tracing::info!(
            playbook,
            exit = %summary.exit,
            seconds = finished.elapsed.as_secs_f64(),
            "ansible-playbook finished"
        );
    }
}

#[async_trait]
impl Deployer for AnsibleDeployer {
    async fn deploy(&self, batch: &[NodeConfig]) -> Vec<NodeOutcome> {
        self.run_batch(batch, DEPLOY_PLAYBOOK, false, deploy_outcome)
            .await
            .into_iter()
            .map(|(node, result)| {
                // The pipeline logs the outcome once, with its context.
                match &result {
                    Ok(applied) => tracing::debug!(node = %node, %applied, "deployed"),
                    Err(e) => tracing::debug!(node = %node, kind = e.kind(), "deploy failed"),
                }
                NodeOutcome { node, result }
            })
            .collect()
    }

    async fn live_digest(&self, node: &EdgeNode) -> Result<Option<Digest>, DeployError> {
        Ok(self
            .read_live_file(node)
            .await?
            .as_deref()
            .and_then(edgelb_core::live_digest_of))
    }

    /// Read with the same playbook as the digest, so `edgelb plan` diffs and a starting
    /// controller carries on from the edge's server slots with this deployer too.
    async fn live_config(&self, node: &EdgeNode) -> Result<Option<String>, DeployError> {
        Ok(self
            .read_live_file(node)
            .await?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl AnsibleDeployer {
    /// The live config file of `node` (`None` when there is none), from one run of the
    /// read-back playbook.
    async fn read_live_file(&self, node: &EdgeNode) -> Result<Option<Vec<u8>>, DeployError> {
        let ssh = check_node(node)?;
        let host = InventoryHost {
            name: node.name.clone(),
            ssh: ssh.clone(),
            config_src: None,
            config_sha256: None,
        };
        let step = |message: String| DeployError::Step {
            node: node.name.clone(),
            step: "running ansible-playbook".into(),
            message,
        };
        let run_dir = self.work.new_run().map_err(|e| step(e.to_string()))?;
        let (results, summary) = self
            .run_playbook(&run_dir, LIVE_DIGEST_PLAYBOOK, false, &[host])
            .await
            .map_err(step)?;
        let ctx = HostContext {
            node: &node.name,
            user: &ssh.user,
            connect_timeout: self.config.connect_timeout,
            run: &summary,
        };
        live_file_outcome(&ctx, results.host(&node.name))
    }
}

impl Drop for AnsibleDeployer {
    fn drop(&mut self) {
        self.work.close_masters_blocking();
    }
}

#[cfg(test)]
mod tests;
