//! The reload path of a deploy (`deploy/reload.rs`), through [`apply_config`] on a host whose
//! HAProxy master fails reloads, or never shows them, on purpose.
// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use edgelb_core::{Applied, DeployError, RenderedConfig};

use crate::deploy::apply_config;
use crate::edge_host::{EdgeHost, ExecOutput};
use crate::layout::HaproxyLayout;

/// A host whose master fails its first `fail_first` reloads (the failure counter moves and
/// no fresh worker starts), or, when `silent`, takes `reload` without ever showing it.
#[derive(Default)]
struct MasterHost {
    files: Mutex<HashMap<String, Vec<u8>>>,
    /// (reloads, failed reloads) as `show proc` reports them.
    counters: Mutex<(u32, u32)>,
    fail_first: u32,
    silent: bool,
    /// Each `show proc` takes this long (a round trip over a link; 0: answers at once).
    round_trip: Duration,
    /// After a reload, this many `show proc` are refused (the master re-executing).
    refuse_after_reload: usize,
    refusals_left: AtomicUsize,
    /// `show proc` requests in flight now, and the most at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl MasterHost {
    fn with_live(text: &str, fail_first: u32, silent: bool) -> Self {
        let host = Self {
            fail_first,
            silent,
            ..Self::default()
        };
        host.files.lock().unwrap().insert(
            HaproxyLayout::default().config_path,
            text.as_bytes().to_vec(),
        );
        host
    }

    fn live(&self) -> String {
        let files = self.files.lock().unwrap();
        String::from_utf8(files[&HaproxyLayout::default().config_path].clone()).unwrap()
    }
}

#[async_trait]
impl EdgeHost for MasterHost {
    fn node(&self) -> &str {
        "edge-r"
    }
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, DeployError> {
        Ok(self.files.lock().unwrap().get(path).cloned())
    }
    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DeployError> {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_owned(), contents.to_vec());
        Ok(())
    }
    async fn rename(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let mut files = self.files.lock().unwrap();
        let data = files.remove(from).unwrap();
        files.insert(to.to_owned(), data);
        Ok(())
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let mut files = self.files.lock().unwrap();
        let data = files[from].clone();
        files.insert(to.to_owned(), data);
        Ok(())
    }
    async fn remove_file(&self, path: &str) -> Result<(), DeployError> {
        self.files.lock().unwrap().remove(path);
        Ok(())
    }
    async fn exec(&self, _argv: &[String]) -> Result<ExecOutput, DeployError> {
        // `haproxy -c` and the listen-port check's readers: everything is valid, no port is
        // held.
        Ok(ExecOutput {
            status: Some(0),
            stdout: String::new(),
            stderr: String::new(),
        })
    }
    async fn socket_command(&self, _socket: &str, command: &str) -> Result<String, DeployError> {
        if command != "reload" && !self.round_trip.is_zero() {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.round_trip).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        if command != "reload"
            && self
                .refusals_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(DeployError::Step {
                node: self.node().to_owned(),
                step: "reaching haproxy's master socket".into(),
                message: "connection refused".into(),
            });
        }
        let mut counters = self.counters.lock().unwrap();
        if command == "reload" {
            self.refusals_left
                .store(self.refuse_after_reload, Ordering::SeqCst);
            if !self.silent {
                counters.0 += 1;
                if counters.0 <= self.fail_first {
                    counters.1 += 1;
                }
            }
            return Ok(String::new());
        }
        let (reloads, failed) = *counters;
        // A failed reload leaves the previous worker serving, one reload older.
        let age = u32::from(failed > 0 && reloads == failed);
        Ok(format!(
            "#<PID> <type> <reloads> <uptime> <version>\n1 master {reloads} [failed: {failed}] 0d 2.6\n# workers\n{} worker {age} 0d 2.6\n",
            100 + reloads
        ))
    }
}

fn layout() -> HaproxyLayout {
    HaproxyLayout {
        reload_timeout: Duration::from_millis(200),
        ..HaproxyLayout::default()
    }
}

const OLD: &str = "global\n    master-worker\n\nfrontend fe_80\n    bind :80\n";
const NEW: &str = "global\n    master-worker\n\nfrontend fe_81\n    bind :81\n";

#[tokio::test(start_paused = true)]
async fn a_reload_that_takes_puts_the_new_file_live() {
    let old = RenderedConfig::from_body(OLD.to_owned());
    let host = MasterHost::with_live(&old.text, 0, false);
    let new = RenderedConfig::from_body(NEW.to_owned());
    assert_eq!(
        apply_config(&host, &layout(), &new).await,
        Ok(Applied::Reloaded)
    );
    assert_eq!(host.live(), new.text);
    let files = host.files.lock().unwrap();
    assert_eq!(files[&layout().prev_path()], old.text.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn a_failed_reload_is_rolled_back_to_the_previous_file() {
    let old = RenderedConfig::from_body(OLD.to_owned());
    let host = MasterHost::with_live(&old.text, 1, false);
    let err = apply_config(&host, &layout(), &RenderedConfig::from_body(NEW.to_owned()))
        .await
        .unwrap_err();
    match &err {
        DeployError::ReloadFailed {
            node,
            message,
            rolled_back,
        } => {
            assert_eq!(node, "edge-r");
            assert!(message.contains("could not start a worker"), "{message}");
            assert!(rolled_back, "{err}");
        }
        other => panic!("expected ReloadFailed, got {other:?}"),
    }
    assert_eq!(host.live(), old.text, "the previous file is live again");
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_never_shows_up_fails_within_the_timeout_and_says_so() {
    let old = RenderedConfig::from_body(OLD.to_owned());
    let host = MasterHost::with_live(&old.text, 0, true);
    let err = apply_config(&host, &layout(), &RenderedConfig::from_body(NEW.to_owned()))
        .await
        .unwrap_err();
    match &err {
        DeployError::ReloadFailed {
            message,
            rolled_back,
            ..
        } => {
            assert!(
                message.starts_with("no reload showed up in the master's `show proc` within 0.2s"),
                "{message}"
            );
            // Reloading the previous file does not show up either.
            assert!(
                message.contains("restoring the previous config failed too"),
                "{message}"
            );
            assert!(!rolled_back, "{err}");
        }
        other => panic!("expected ReloadFailed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_first_deploy_without_a_previous_file_cannot_roll_back() {
    let host = MasterHost {
        fail_first: 1,
        ..MasterHost::default()
    };
    let err = apply_config(&host, &layout(), &RenderedConfig::from_body(NEW.to_owned()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::ReloadFailed { message, rolled_back: false, .. }
            if message.contains("there was no previous file to restore")),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_is_confirmed_through_refusals_with_a_bounded_number_of_show_proc_in_flight() {
    let old = RenderedConfig::from_body(OLD.to_owned());
    let host = MasterHost {
        round_trip: Duration::from_millis(40),
        refuse_after_reload: 6,
        ..MasterHost::with_live(&old.text, 0, false)
    };
    let new = RenderedConfig::from_body(NEW.to_owned());
    let layout = HaproxyLayout {
        reload_timeout: Duration::from_secs(5),
        ..HaproxyLayout::default()
    };
    assert_eq!(
        apply_config(&host, &layout, &new).await,
        Ok(Applied::Reloaded)
    );
    assert_eq!(host.live(), new.text);
    let most = host.most_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&most),
        "show proc in flight at once: {most}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_master_that_stays_refused_is_unconfirmed_and_the_previous_file_put_back() {
    let old = RenderedConfig::from_body(OLD.to_owned());
    // Refused (40 × 40 ms) for far longer than the 0.2 s reload timeout after every reload,
    // the rollback's included.
    let host = MasterHost {
        round_trip: Duration::from_millis(40),
        refuse_after_reload: 40,
        ..MasterHost::with_live(&old.text, 0, false)
    };
    let err = apply_config(&host, &layout(), &RenderedConfig::from_body(NEW.to_owned()))
        .await
        .unwrap_err();
    match &err {
        DeployError::ReloadFailed { message, .. } => {
            let (first, _) = message.split_once("; restoring").unwrap();
            assert!(first.contains("connection refused"), "{message}");
            assert!(first.ends_with("within 0.2s"), "{message}");
        }
        other => panic!("expected ReloadFailed, got {other:?}"),
    }
    assert_eq!(host.live(), old.text, "the previous file is put back");
}
