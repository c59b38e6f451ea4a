#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod ansible_cfg;
mod assets;
mod config;
mod deployer;
mod error;
mod inventory;
mod known_hosts;
mod outcome;
mod paths;
mod plan;
mod results;
mod runner;
mod ssh_wrapper;
mod workdir;

pub use assets::{
    CALLBACK_NAME, DEPLOY_PLAYBOOK, LIVE_DIGEST_PLAYBOOK, PLAYBOOK_FILES, RESULTS_ENV,
    export_playbook,
};
pub use config::{AnsibleDeployerConfig, PrivateKey};
pub use deployer::AnsibleDeployer;
pub use error::{Error, Result};
pub use inventory::GROUP;
pub use plan::{NodePlan, PlannedChange};
pub use runner::{ANSIBLE_PLAYBOOK, find_ansible_playbook};
