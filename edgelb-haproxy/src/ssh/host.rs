//! [`SshHost`]: an edge reached over SSH, as an [`EdgeHost`].

use std::sync::Arc;

use async_trait::async_trait;
use edgelb_core::{DeployError, EdgeNode};

use super::credentials::SshCredentials;
use super::options::SshOptions;
use super::prompt::PromptSlot;
use super::quote::command_line;
use super::session::{Endpoint, Session};
use super::sftp::Sftp;
use super::stage_ahead::{
    STAGE_LIVE_CHANGED, STAGE_REJECTED, STAGE_SWAPPED_UNSTAMPED, stage_input,
};
use crate::edge_host::{EdgeHost, ExecOutput, FileStamp, StageSwap, Staged};
use crate::error::{Error, Result};
use crate::live_cache::LiveCache;

/// Exit status of the read script when the file does not exist.
const MISSING: u32 = 100;
/// `sh -c` scripts are constants; paths reach them as positional arguments (`$1`, `$2`),
/// quoted like every other argument, so nothing variable is ever parsed by a shell.
const READ_SCRIPT: &str = r#"test -e "$1" || exit 100; exec cat -- "$1""#;
const WRITE_SCRIPT: &str = r#"umask 022 && exec cat > "$1""#;
/// An edge host reached over one persistent SSH session.
///
/// The session opens on first use (or [`SshHost::connect`]), is reused by every later step
/// and deploy, is kept alive with keepalives, and is reopened transparently when it died.
/// Commands run through the login shell with every argument shell-quoted; files move over
/// SFTP (or `cat` over exec, see [`FileTransfer`](super::FileTransfer)); HAProxy's sockets are
/// reached through SSH stream-local forwarding (`direct-streamlocal@openssh.com`), so the edge
/// needs nothing but sshd and haproxy.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use edgelb_core::{EdgeNode, SshTarget};
/// use edgelb_haproxy::ssh::{ClientKey, KnownHosts, SshCredentials, SshHost, SshOptions};
/// use edgelb_haproxy::EdgeHost;
///
/// let node = EdgeNode::new("edge-1").with_ssh(SshTarget::new("203.0.113.10"));
/// let creds = SshCredentials::new(
///     ClientKey::from_file("/etc/edgelb/id_ed25519", None)?,
///     KnownHosts::from_file("/etc/edgelb/known_hosts")?,
/// );
/// let host = SshHost::new(&node, creds, SshOptions::default())?;
/// let out = host.exec(&["haproxy".into(), "-v".into()]).await?;
/// println!("{}", out.stdout);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SshHost {
    session: Arc<Session>,
    /// The runtime-API channel kept open between changes (`ssh/prompt.rs`).
    prompt: Arc<PromptSlot>,
    /// The live file as the last deploy left it (see [`LiveCache`]).
    cache: Arc<LiveCache>,
}

impl std::fmt::Debug for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ep = self.session.endpoint();
        f.debug_struct("SshHost")
            .field("node", &ep.node)
            .field("host", &ep.host)
            .field("port", &ep.port)
            .field("user", &ep.user)
            .finish()
    }
}

impl SshHost {
    /// An SSH host for `node`, which must have an SSH target and pass
    /// [`EdgeNode::validate`]. Nothing connects until the first step.
    pub fn new(node: &EdgeNode, credentials: SshCredentials, options: SshOptions) -> Result<Self> {
        node.validate().map_err(|e| Error::InvalidInput {
            what: "edge node",
            value: node.name.clone(),
            reason: e.to_string(),
        })?;
        let ssh = node.ssh.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "edge node",
            value: node.name.clone(),
            reason: "it has no `ssh` target (host, port, user); the SSH deployer needs one".into(),
        })?;
        let endpoint = Endpoint {
            node: node.name.clone(),
            host: ssh.host.clone(),
            port: ssh.port,
            user: ssh.user.clone(),
        };
        Ok(Self {
            session: Arc::new(Session::new(endpoint, credentials, options)),
            prompt: Arc::default(),
            cache: Arc::default(),
        })
    }

    /// Opens the session now (it otherwise opens on first use): checks reachability, the
    /// host key and our login in one go.
    pub async fn connect(&self) -> Result<(), DeployError> {
        self.session.connection().await.map(|_| ())
    }

    /// Whether a session is open right now.
    pub async fn is_connected(&self) -> bool {
        self.session.is_connected().await
    }

    /// Closes the session; the next step opens a new one.
    pub async fn disconnect(&self) {
        self.session.disconnect().await;
    }

    /// The options this host was built with.
    pub fn options(&self) -> &SshOptions {
        self.session.options()
    }

    /// `(host, port, user)` this host logs in to.
    pub fn target(&self) -> (&str, u16, &str) {
        let ep = self.session.endpoint();
        (&ep.host, ep.port, &ep.user)
    }

    fn quoted(&self, step: &str, argv: &[&str]) -> Result<String, DeployError> {
        command_line(argv).map_err(|i| DeployError::Step {
            node: self.node().to_owned(),
            step: step.to_owned(),
            message: format!(
                "argument {i} holds a NUL byte and cannot be passed to a remote command"
            ),
        })
    }

    /// Runs `argv` (quoted) and fails unless it exits 0.
    async fn run_ok(
        &self,
        step: &str,
        argv: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<(), DeployError> {
        let line = self.quoted(step, argv)?;
        let out = self.session.exec(step, &line, stdin).await?;
        if out.status == Some(0) {
            return Ok(());
        }
        Err(DeployError::Step {
            node: self.node().to_owned(),
            step: step.to_owned(),
            message: format!(
                "exit status {}: {}",
                out.status
                    .map_or("none (killed?)".to_owned(), |s| s.to_string()),
                out.into_exec_output().message()
            ),
        })
    }
}

#[async_trait]
impl EdgeHost for SshHost {
    fn node(&self) -> &str {
        &self.session.endpoint().node
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, DeployError> {
        let step = format!("reading {path}");
        let read = |sftp: Arc<Sftp>| async move { sftp.read(path).await };
        if let Some(bytes) = self.session.with_sftp(&step, true, read).await? {
            return Ok(bytes);
        }
        let line = self.quoted(&step, &["sh", "-c", READ_SCRIPT, "sh", path])?;
        let out = self.session.exec(&step, &line, None).await?;
        match out.status {
            Some(0) => Ok(Some(out.stdout)),
            Some(MISSING) => Ok(None),
            _ => Err(DeployError::Step {
                node: self.node().to_owned(),
                step,
                message: out.into_exec_output().message(),
            }),
        }
    }

    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DeployError> {
        let step = format!("writing {path}");
        let write = |sftp: Arc<Sftp>| async move { sftp.write(path, contents).await };
        if let Some(()) = self.session.with_sftp(&step, true, write).await? {
            return Ok(());
        }
        self.run_ok(
            &step,
            &["sh", "-c", WRITE_SCRIPT, "sh", path],
            Some(contents),
        )
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let step = format!("renaming {from} to {to}");
        // Not repeatable: a rename that went through before the channel failed would fail.
        let rename = |sftp: Arc<Sftp>| async move {
            if !sftp.can_rename() {
                return Ok(false); // no atomic rename over SFTP: mv does it
            }
            sftp.rename(from, to).await.map(|()| true)
        };
        if let Some(true) = self.session.with_sftp(&step, false, rename).await? {
            return Ok(());
        }
        self.run_ok(&step, &["mv", "-f", "--", from, to], None)
            .await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), DeployError> {
        let step = format!("copying {from} to {to}");
        let copy = |sftp: Arc<Sftp>| async move {
            match sftp.read(from).await? {
                Some(bytes) => sftp.write(to, &bytes).await.map(|()| true),
                None => Ok(false),
            }
        };
        match self.session.with_sftp(&step, true, copy).await? {
            Some(true) => Ok(()),
            Some(false) => Err(DeployError::Step {
                node: self.node().to_owned(),
                step,
                message: format!("{from} does not exist"),
            }),
            None => self.run_ok(&step, &["cp", "--", from, to], None).await,
        }
    }

    async fn remove_file(&self, path: &str) -> Result<(), DeployError> {
        let step = format!("removing {path}");
        let remove = |sftp: Arc<Sftp>| async move { sftp.remove(path).await };
        if let Some(()) = self.session.with_sftp(&step, true, remove).await? {
            return Ok(());
        }
        self.run_ok(&step, &["rm", "-f", "--", path], None).await
    }

    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, DeployError> {
        let program = argv.first().map_or("", String::as_str);
        let step = format!("running {program}");
        if argv.is_empty() {
            return Err(DeployError::Step {
                node: self.node().to_owned(),
                step,
                message: "empty command".into(),
            });
        }
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        let line = self.quoted(&step, &words)?;
        Ok(self
            .session
            .exec(&step, &line, None)
            .await?
            .into_exec_output())
    }

    async fn socket_command(&self, socket: &str, command: &str) -> Result<String, DeployError> {
        if command.contains(['\n', '\r']) {
            return Err(DeployError::Step {
                node: self.node().to_owned(),
                step: format!("sending a command to {socket}"),
                message: "a socket command must be one line".into(),
            });
        }
        let step = format!("sending {command:?} to {socket}");
        let answer = self
            .session
            .stream_local(&step, socket, format!("{command}\n").as_bytes())
            .await?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    async fn socket_pipeline(
        &self,
        socket: &str,
        lines: &[String],
    ) -> Result<Vec<String>, DeployError> {
        let step = format!("sending {} command(s) to {socket}", lines.len());
        if lines.iter().any(|l| l.contains(['\n', '\r'])) {
            return Err(DeployError::Step {
                node: self.node().to_owned(),
                step,
                message: "a socket command must be one line".into(),
            });
        }
        self.session
            .socket_pipeline(&self.prompt, &step, socket, lines)
            .await
    }

    async fn open_socket_ahead(&self, socket: &str) {
        self.session.open_socket_ahead(socket).await;
    }

    async fn reloaded(&self) {
        self.prompt.forget().await;
    }

    fn live_cache(&self) -> Option<&LiveCache> {
        Some(&self.cache)
    }

    async fn stage_and_swap(&self, request: &StageSwap<'_>) -> Result<Staged, DeployError> {
        let step = format!(
            "validating {} and swapping it in for {}",
            request.new_path, request.live_path
        );
        let expect = request.expect_stamp.map_or("", |s| s.0.as_str());
        let keep = if request.expect_stamp.is_some() {
            "copy"
        } else {
            "none"
        };
        let mut args = vec![
            request.new_path,
            request.live_path,
            request.prev_path,
            expect,
            keep,
        ];
        args.extend(request.validate.iter().map(String::as_str));
        let input = stage_input(&args, request.contents).ok_or_else(|| DeployError::Step {
            node: self.node().to_owned(),
            step: step.clone(),
            message:
                "a path or validation argument holds a line break or NUL byte; use plain paths"
                    .into(),
        })?;
        let staged = self.session.stage(&step, &input);
        let out = match (request.keep_live, request.expect_stamp) {
            (Some(live), None) => {
                let (kept, out) = futures::join!(self.write_file(request.prev_path, live), staged);
                kept?;
                out?
            }
            _ => staged.await?,
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status {
            // The stamp is the script's last line: a login shell that prints while starting
            // (a noisy `.bashrc`) puts its words before it.
            Some(0) => Ok(Staged::Swapped {
                stamp: stdout
                    .lines()
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                    .map(|l| FileStamp(l.to_owned())),
            }),
            Some(STAGE_SWAPPED_UNSTAMPED) => Ok(Staged::Swapped { stamp: None }),
            Some(STAGE_LIVE_CHANGED) => Ok(Staged::LiveChanged),
            Some(STAGE_REJECTED) => Ok(Staged::Rejected(stdout.trim().to_owned())),
            _ => Err(DeployError::Step {
                node: self.node().to_owned(),
                step,
                message: out.into_exec_output().message(),
            }),
        }
    }

    async fn tcp_connect(&self, port: u16) -> Result<(), DeployError> {
        let step = format!("connecting to port {port} on the edge");
        self.session.tcp_connect(&step, port).await
    }
}
