//! One persistent SSH session per edge: connect, pin the host key, log in, keep it alive,
//! and reconnect transparently when it died. Every step runs under a timeout.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use edgelb_core::DeployError;
use russh::client::{self, Handle, Msg};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Disconnect, Preferred};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::credentials::SshCredentials;
use super::host_keys::{HostKeyCheck, fingerprint};
use super::options::{FileTransfer, SshOptions};
use super::sftp::{Sftp, is_transport_error};
use crate::edge_host::ExecOutput;
use russh_sftp::client::error::Error as SftpError;

/// What a remote command printed, as bytes.
#[derive(Debug, Default)]
pub(crate) struct RawOutput {
    pub(crate) status: Option<u32>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// The signal that ended the command, when one did (`exit-signal`).
    signal: Option<String>,
    refused: bool,
}

impl RawOutput {
    pub(crate) fn into_exec_output(self) -> ExecOutput {
        let mut stderr = String::from_utf8_lossy(&self.stderr).into_owned();
        if let Some(signal) = &self.signal {
            stderr.push_str(&format!("\n(killed by signal {signal})"));
        }
        ExecOutput {
            status: self.status,
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr,
        }
    }
}

/// Where an edge's sshd is and whom we log in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) node: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
}

impl Endpoint {
    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The russh handler: it only decides whether the server's host key is pinned.
struct Pinning {
    endpoint: Endpoint,
    credentials: SshCredentials,
}

/// Why a handshake stopped: russh's own errors, or our refusal of the host key.
#[derive(Debug)]
enum HandshakeError {
    Ssh(russh::Error),
    HostKey {
        fingerprint: String,
        why: &'static str,
    },
    /// Nothing at all is pinned for this address and port.
    HostKeyUnknown {
        fingerprint: String,
    },
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        Self::Ssh(e)
    }
}

impl client::Handler for Pinning {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => {
                let key = russh::keys::PublicKey::new(cert.public_key().clone(), "");
                return Err(HandshakeError::HostKey {
                    fingerprint: fingerprint(&key),
                    why: "the server presented a host certificate; pin its plain host key instead",
                });
            }
        };
        let seen = fingerprint(key);
        let ep = &self.endpoint;
        match self.credentials.known_hosts.check(&ep.host, ep.port, key) {
            HostKeyCheck::Trusted => {
                tracing::debug!(node = %ep.node, fingerprint = %seen, "host key is pinned");
                Ok(true)
            }
            HostKeyCheck::Revoked => Err(HandshakeError::HostKey {
                fingerprint: seen,
                why: "this key is marked @revoked",
            }),
            HostKeyCheck::Unknown { pinned: 0 } => {
                Err(HandshakeError::HostKeyUnknown { fingerprint: seen })
            }
            HostKeyCheck::Unknown { .. } => Err(HandshakeError::HostKey {
                fingerprint: seen,
                why: "the key differs from the pinned ones",
            }),
        }
    }
}

/// A logged-in SSH connection.
pub(crate) struct Connection {
    handle: Handle<Pinning>,
    /// The SFTP channel, opened on first use.
    sftp: Mutex<SftpSlot>,
}

/// The state of a connection's SFTP channel.
enum SftpSlot {
    NotOpened,
    Open(Arc<Sftp>),
    /// The server has no SFTP subsystem (or it failed to start): use exec.
    Unavailable,
}

impl Connection {
    pub(super) fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Opens a stream-local channel to the UNIX socket `path` on the edge.
    pub(super) async fn open_stream_local(&self, path: &str) -> Result<Channel<Msg>, russh::Error> {
        self.handle
            .channel_open_direct_streamlocal(path.to_owned())
            .await
    }

    /// Opens a session channel (for a command).
    pub(super) async fn open_session(&self) -> Result<Channel<Msg>, russh::Error> {
        self.handle.channel_open_session().await
    }
}

/// What kind of channel a step needs.
pub(super) enum ChannelKind<'a> {
    Session,
    StreamLocal(&'a str),
    /// A TCP connection the edge's sshd makes to its own loopback, on this port.
    DirectTcp(u16),
}

/// The session to one edge, reused across deploys and reopened when it died.
pub(crate) struct Session {
    endpoint: Endpoint,
    credentials: SshCredentials,
    options: SshOptions,
    config: Arc<client::Config>,
    live: Mutex<Option<Arc<Connection>>>,
    /// The stage script started ahead for the next stage request, on its connection
    /// (`ssh/stage_ahead.rs`).
    pub(super) stage_ahead: Mutex<Option<(Arc<Connection>, Channel<Msg>)>>,
    /// A stream-local channel opened ahead for the next request to one socket
    /// (`ssh/socket_ahead.rs`).
    pub(super) socket_spare: Mutex<Option<SocketSpare>>,
}

/// A stream-local channel opened ahead, to `path`, on `conn` (see `ssh/socket_ahead.rs`).
pub(super) struct SocketSpare {
    pub(super) path: String,
    pub(super) conn: Arc<Connection>,
    pub(super) channel: Channel<Msg>,
    pub(super) opened: Instant,
}

impl Session {
    pub(crate) fn new(
        endpoint: Endpoint,
        credentials: SshCredentials,
        options: SshOptions,
    ) -> Self {
        // Offer the pinned key types first, so a server with several host keys shows a
        // pinned one; keep the others so a wrong key is still seen (and reported) as such.
        let mut keys = credentials
            .known_hosts
            .pinned_algorithms(&endpoint.host, endpoint.port);
        for alg in Preferred::DEFAULT.key.iter() {
            if !keys.contains(alg) {
                keys.push(alg.clone());
            }
        }
        let config = client::Config {
            keepalive_interval: Some(options.keepalive_interval),
            keepalive_max: options.keepalive_max,
            inactivity_timeout: None,
            nodelay: true,
            preferred: Preferred {
                key: Cow::Owned(keys),
                ..Preferred::default()
            },
            ..client::Config::default()
        };
        Self {
            endpoint,
            credentials,
            options,
            config: Arc::new(config),
            live: Mutex::new(None),
            stage_ahead: Mutex::new(None),
            socket_spare: Mutex::new(None),
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn options(&self) -> &SshOptions {
        &self.options
    }

    /// Whether a live connection is open right now.
    pub(crate) async fn is_connected(&self) -> bool {
        self.live
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| !c.is_closed())
    }

    /// The open connection, or a new one when there is none or it died.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, DeployError> {
        let mut live = self.live.lock().await;
        if let Some(conn) = live.as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
            tracing::info!(node = %self.endpoint.node, "SSH session to the edge was lost; reconnecting");
        }
        *live = None;
        let conn = Arc::new(self.connect().await?);
        *live = Some(conn.clone());
        Ok(conn)
    }

    /// The connection open right now, if any; never connects (for work done ahead, in the
    /// background: a lost session is reopened by the next step).
    pub(super) async fn live_connection(&self) -> Option<Arc<Connection>> {
        self.live.lock().await.clone().filter(|c| !c.is_closed())
    }

    /// Forgets `conn` if it is still the current one (it failed); the next step reconnects.
    async fn discard(&self, conn: &Arc<Connection>) {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *live = None;
        }
    }

    /// Closes the session politely, if one is open.
    pub(crate) async fn disconnect(&self) {
        let conn = self.live.lock().await.take();
        if let Some(conn) = conn
            && !conn.is_closed()
        {
            let _ = conn
                .handle
                .disconnect(Disconnect::ByApplication, "edgelb closing", "en")
                .await;
        }
    }

    async fn connect(&self) -> Result<Connection, DeployError> {
        let ep = &self.endpoint;
        let started = Instant::now();
        let conn = tokio::time::timeout(self.options.connect_timeout, self.connect_inner())
            .await
            .map_err(|_| DeployError::Timeout {
                node: ep.node.clone(),
                step: format!("connecting and logging in to {} over SSH", ep.address()),
                seconds: whole_seconds(self.options.connect_timeout),
            })??;
        tracing::info!(
            node = %ep.node,
            address = %ep.address(),
            user = %ep.user,
            ms = started.elapsed().as_millis() as u64,
            "SSH session open"
        );
        Ok(conn)
    }

    async fn connect_inner(&self) -> Result<Connection, DeployError> {
        let ep = &self.endpoint;
        let connect_error = |message: String| DeployError::Connect {
            node: ep.node.clone(),
            message,
        };
        let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| {
                connect_error(format!("TCP connection to {} failed: {e}", ep.address()))
            })?;
        let _ = tcp.set_nodelay(true);
        let handler = Pinning {
            endpoint: ep.clone(),
            credentials: self.credentials.clone(),
        };
        let mut handle = client::connect_stream(self.config.clone(), tcp, handler)
            .await
            .map_err(|e| match e {
                HandshakeError::HostKey { fingerprint, why } => {
                    tracing::error!(
                        node = %ep.node,
                        address = %ep.address(),
                        %fingerprint,
                        reason = why,
                        "refusing the edge's SSH host key"
                    );
                    DeployError::HostKeyMismatch {
                        node: ep.node.clone(),
                        fingerprint,
                    }
                }
                HandshakeError::HostKeyUnknown { fingerprint } => {
                    tracing::debug!(
                        node = %ep.node,
                        address = %ep.address(),
                        %fingerprint,
                        "no host key pinned for the edge"
                    );
                    DeployError::HostKeyUnknown {
                        node: ep.node.clone(),
                        host: ep.host.clone(),
                        port: ep.port,
                        fingerprint: Some(fingerprint),
                    }
                }
                HandshakeError::Ssh(e) => {
                    connect_error(format!("SSH handshake with {} failed: {e}", ep.address()))
                }
            })?;

        let key = &self.credentials.key;
        let hash = if key.is_rsa() {
            // `None` here means the server sent no `server-sig-algs`: try SHA-256 anyway
            // (SHA-1 signatures are refused by current OpenSSH).
            match handle.best_supported_rsa_hash().await {
                Ok(Some(alg)) => alg,
                Ok(None) | Err(_) => Some(HashAlg::Sha256),
            }
        } else {
            None
        };
        let auth = handle
            .authenticate_publickey(
                ep.user.clone(),
                PrivateKeyWithHashAlg::new(key.private(), hash),
            )
            .await
            .map_err(|e| connect_error(format!("SSH authentication exchange failed: {e}")))?;
        if !auth.success() {
            tracing::error!(
                node = %ep.node,
                user = %ep.user,
                key = %key.fingerprint(),
                "the edge refused our SSH key"
            );
            return Err(DeployError::Auth {
                node: ep.node.clone(),
                user: ep.user.clone(),
            });
        }
        Ok(Connection {
            handle,
            sftp: Mutex::new(SftpSlot::NotOpened),
        })
    }

    /// The connection's SFTP session, opened on first use; `None` when file transfer goes
    /// through exec (by option, or because the server has no SFTP subsystem).
    pub(crate) async fn sftp(&self) -> Result<Option<(Arc<Connection>, Arc<Sftp>)>, DeployError> {
        if self.options.file_transfer != FileTransfer::Sftp {
            return Ok(None);
        }
        let conn = self.connection().await?;
        let mut slot = conn.sftp.lock().await;
        match &*slot {
            SftpSlot::Open(sftp) => return Ok(Some((conn.clone(), sftp.clone()))),
            SftpSlot::Unavailable => return Ok(None),
            SftpSlot::NotOpened => {}
        }
        let started = Instant::now();
        // russh-sftp's own per-request timeout stays above ours, so ours (which also drops a
        // hung session) is the one that fires.
        let sftp_timeout = whole_seconds(self.options.step_timeout) + 2;
        let open = async {
            let channel = conn
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.step_error("opening the SFTP channel", e))?;
            Ok(Sftp::start(channel, sftp_timeout).await)
        };
        let opened = self.timed("starting SFTP", &conn, open).await;
        let opened = self.forget_if_lost(&conn, opened).await?;
        match opened {
            Ok(sftp) => {
                let sftp = Arc::new(sftp);
                tracing::debug!(
                    node = %self.endpoint.node,
                    ms = started.elapsed().as_millis() as u64,
                    atomic_rename = sftp.can_rename(),
                    "SFTP channel open"
                );
                *slot = SftpSlot::Open(sftp.clone());
                Ok(Some((conn.clone(), sftp)))
            }
            Err(e) => {
                tracing::warn!(node = %self.endpoint.node, error = %e, "SFTP is not available on the edge; files go through exec");
                *slot = SftpSlot::Unavailable;
                Ok(None)
            }
        }
    }

    /// Runs `op` on the SFTP channel under the step timeout; `Ok(None)` when files go through
    /// exec instead (by option, or the server has no SFTP). A transport failure drops the
    /// channel (and the session, when that died too); an operation that may safely run
    /// twice (`repeatable`) is then retried once on a fresh channel and session.
    pub(crate) async fn with_sftp<T, F, Fut>(
        &self,
        step: &str,
        repeatable: bool,
        op: F,
    ) -> Result<Option<T>, DeployError>
    where
        F: Fn(Arc<Sftp>) -> Fut,
        Fut: Future<Output = Result<T, SftpError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some((conn, sftp)) = self.sftp().await? else {
                return Ok(None);
            };
            let result = self
                .timed(step, &conn, async { Ok(op(sftp).await) })
                .await?;
            let e = match result {
                Ok(value) => return Ok(Some(value)),
                Err(e) => e,
            };
            if matches!(e, SftpError::Timeout) {
                // A request that got no answer: the link hangs, like our own step timeout.
                self.discard(&conn).await;
                return Err(self.timeout_error(step));
            }
            if is_transport_error(&e) {
                *conn.sftp.lock().await = SftpSlot::NotOpened;
                if conn.is_closed() {
                    self.discard(&conn).await;
                }
                if repeatable && attempt == 1 {
                    tracing::info!(node = %self.endpoint.node, step, error = %e, "SFTP channel failed; retrying on a fresh one");
                    continue;
                }
                if conn.is_closed() {
                    return Err(self.lost_error(step, Some(&format!("SFTP: {e}"))));
                }
            }
            return Err(DeployError::Step {
                node: self.endpoint.node.clone(),
                step: step.to_owned(),
                message: format!("SFTP: {e}"),
            });
        }
    }

    /// Opens a channel, reconnecting once when the session turns out to be dead.
    pub(super) async fn open_channel(
        &self,
        kind: &ChannelKind<'_>,
        step: &str,
        deadline: Instant,
    ) -> Result<(Arc<Connection>, Channel<Msg>), DeployError> {
        let mut retried = false;
        loop {
            let conn = self.connection().await?;
            let opening = async {
                match kind {
                    ChannelKind::Session => conn.handle.channel_open_session().await,
                    ChannelKind::StreamLocal(path) => {
                        conn.handle
                            .channel_open_direct_streamlocal(path.to_string())
                            .await
                    }
                    ChannelKind::DirectTcp(port) => {
                        conn.handle
                            .channel_open_direct_tcpip(
                                "127.0.0.1",
                                u32::from(*port),
                                "127.0.0.1",
                                0,
                            )
                            .await
                    }
                }
            };
            let Ok(opened) = tokio::time::timeout_at(deadline, opening).await else {
                self.discard(&conn).await;
                return Err(self.timeout_error(step));
            };
            let kind_name = match kind {
                ChannelKind::Session => "exec",
                ChannelKind::StreamLocal(_) => "stream-local",
                ChannelKind::DirectTcp(_) => "tcp",
            };
            tracing::debug!(target: super::CHANNEL_TARGET, node = %self.endpoint.node, kind = kind_name, ahead = false, opened = opened.is_ok(), "SSH channel");
            match opened {
                Ok(channel) => return Ok((conn, channel)),
                Err(e) if session_is_dead(&e) || conn.is_closed() => {
                    self.discard(&conn).await;
                    if retried {
                        return Err(DeployError::Connect {
                            node: self.endpoint.node.clone(),
                            message: format!("the SSH session closed right after it opened: {e}"),
                        });
                    }
                    tracing::info!(node = %self.endpoint.node, error = %e, "SSH session died; reconnecting");
                    retried = true;
                }
                Err(e) => {
                    let what = match kind {
                        ChannelKind::Session => "opening an SSH session channel".to_owned(),
                        ChannelKind::StreamLocal(path) => format!(
                            "reaching UNIX socket {path} through SSH stream-local forwarding"
                        ),
                        ChannelKind::DirectTcp(port) => {
                            format!(
                                "connecting to 127.0.0.1:{port} on the edge through SSH TCP forwarding"
                            )
                        }
                    };
                    let hint = match (kind, &e) {
                        (ChannelKind::DirectTcp(_), russh::Error::ChannelOpenFailure(_)) => {
                            "; nothing accepts connections there (is haproxy listening?), or sshd \
                             forbids TCP forwarding (AllowTcpForwarding yes|local)"
                        }
                        (ChannelKind::StreamLocal(_), russh::Error::ChannelOpenFailure(_)) => {
                            "; either nothing listens there (is haproxy running with that socket?) \
                             or sshd forbids forwarding to it: OpenSSH needs \
                             AllowStreamLocalForwarding yes|local AND AllowTcpForwarding yes|local \
                             (it applies the TCP setting to UNIX sockets too), and no \
                             DisableForwarding; sshd's log says which"
                        }
                        _ => "",
                    };
                    return Err(DeployError::Step {
                        node: self.endpoint.node.clone(),
                        step: what,
                        message: format!("{e}{hint}"),
                    });
                }
            }
        }
    }

    /// Runs a step under the step timeout; on timeout the connection is dropped (a step that
    /// hangs usually means a dead link) and the next step reconnects.
    async fn timed<T>(
        &self,
        step: &str,
        conn: &Arc<Connection>,
        fut: impl Future<Output = Result<T, DeployError>>,
    ) -> Result<T, DeployError> {
        let deadline = Instant::now() + self.options.step_timeout;
        self.timed_until(step, conn, deadline, fut).await
    }

    /// [`Session::timed`] with a deadline shared by several parts of one step.
    async fn timed_until<T>(
        &self,
        step: &str,
        conn: &Arc<Connection>,
        deadline: Instant,
        fut: impl Future<Output = Result<T, DeployError>>,
    ) -> Result<T, DeployError> {
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(result) => result,
            Err(_) => {
                self.discard(conn).await;
                Err(self.timeout_error(step))
            }
        }
    }

    /// The session was lost during `step`; `cause` says how, when known.
    fn lost_error(&self, step: &str, cause: Option<&str>) -> DeployError {
        let mut message = format!(
            "the SSH session to {} was lost while {step}",
            self.endpoint.address()
        );
        if let Some(cause) = cause {
            message.push_str(": ");
            message.push_str(cause);
        }
        DeployError::Connect {
            node: self.endpoint.node.clone(),
            message,
        }
    }

    /// `step` ran out of the step timeout.
    fn timeout_error(&self, step: &str) -> DeployError {
        DeployError::Timeout {
            node: self.endpoint.node.clone(),
            step: step.to_owned(),
            seconds: whole_seconds(self.options.step_timeout),
        }
    }

    /// Runs `command_line` (already quoted) with `stdin` and collects its output.
    pub(crate) async fn exec(
        &self,
        step: &str,
        command_line: &str,
        stdin: Option<&[u8]>,
    ) -> Result<RawOutput, DeployError> {
        let started = Instant::now();
        let deadline = started + self.options.step_timeout;
        let (conn, channel) = self.exec_channel(step, command_line, deadline).await?;
        self.run_on(step, started, (conn, channel), stdin).await
    }

    /// Sends `stdin` (then EOF) on `channel`, whose command is requested already, and
    /// collects what the command prints until sshd closes the channel.
    pub(super) async fn run_on(
        &self,
        step: &str,
        started: Instant,
        (conn, mut channel): (Arc<Connection>, Channel<Msg>),
        stdin: Option<&[u8]>,
    ) -> Result<RawOutput, DeployError> {
        let deadline = started + self.options.step_timeout;
        let io = async {
            if let Some(bytes) = stdin {
                channel.data(bytes).await?;
            }
            channel.eof().await?;
            let mut out = RawOutput::default();
            let mut ended = false;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.signal = Some(format!("{signal_name:?}"));
                        ended = true;
                    }
                    ChannelMsg::Failure => out.refused = true,
                    ChannelMsg::Close => {
                        ended = true;
                        break;
                    }
                    _ => {}
                }
            }
            // The channel vanished with no exit status and no close: the session is gone,
            // and the command's fate is unknown (never report that as the command failing).
            if !ended && out.status.is_none() {
                return Err(russh::Error::Disconnect);
            }
            Ok::<_, russh::Error>(out)
        };
        let out = self
            .timed_until(step, &conn, deadline, async {
                io.await.map_err(|e| self.step_error(step, e))
            })
            .await;
        let out = self.forget_if_lost(&conn, out).await?;
        // No exit status and no signal: sshd closed the channel without saying how the
        // command ended, as it does when it is being shut down. If the session is gone, that
        // is a lost connection, not the command failing.
        if out.status.is_none() && out.signal.is_none() && !self.still_alive(&conn).await {
            self.discard(&conn).await;
            return Err(self.lost_error(step, None));
        }
        if out.refused {
            return Err(DeployError::Step {
                node: self.endpoint.node.clone(),
                step: step.to_owned(),
                message: "sshd refused to run the command".into(),
            });
        }
        tracing::debug!(
            node = %self.endpoint.node,
            step,
            status = ?out.status,
            ms = started.elapsed().as_millis() as u64,
            "remote command finished"
        );
        Ok(out)
    }

    /// A new session channel with `command_line` requested.
    pub(super) async fn exec_channel(
        &self,
        step: &str,
        command_line: &str,
        deadline: Instant,
    ) -> Result<(Arc<Connection>, Channel<Msg>), DeployError> {
        let (conn, channel) = self
            .open_channel(&ChannelKind::Session, step, deadline)
            .await?;
        let requested = channel.exec(true, command_line.as_bytes()).await;
        match requested {
            Ok(()) => Ok((conn, channel)),
            Err(e) => {
                let err = self.step_error(step, e);
                self.forget_if_lost(&conn, Err(err)).await
            }
        }
    }

    /// Sends `request` to the UNIX socket `path` on the edge and reads the answer until the
    /// other side closes.
    pub(crate) async fn stream_local(
        &self,
        step: &str,
        path: &str,
        request: &[u8],
    ) -> Result<Vec<u8>, DeployError> {
        let deadline = Instant::now() + self.options.step_timeout;
        let (conn, mut channel) = self.socket_channel(path, step, deadline).await?;
        let io = async {
            channel.data(request).await?;
            // EOF after the request: HAProxy's master CLI answers a non-interactive
            // connection only once the client's side is closed (the stats socket either way).
            channel.eof().await?;
            let mut answer = Vec::new();
            let mut ended = false;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => answer.extend_from_slice(&data),
                    ChannelMsg::Eof | ChannelMsg::Close => {
                        ended = true;
                        break;
                    }
                    _ => {}
                }
            }
            if !ended {
                return Err(russh::Error::Disconnect); // the session went away mid-answer
            }
            // The socket closed its side; close ours so sshd frees the channel now.
            let _ = channel.close().await;
            Ok::<_, russh::Error>(answer)
        };
        let answer = self
            .timed_until(step, &conn, deadline, async {
                io.await.map_err(|e| self.step_error(step, e))
            })
            .await;
        self.forget_if_lost(&conn, answer).await
    }

    /// Connects to `127.0.0.1:port` on the edge (sshd makes the connection, so nothing
    /// crosses the link but the channel) and closes it at once.
    pub(crate) async fn tcp_connect(&self, step: &str, port: u16) -> Result<(), DeployError> {
        let deadline = Instant::now() + self.options.step_timeout;
        let (conn, channel) = self
            .open_channel(&ChannelKind::DirectTcp(port), step, deadline)
            .await?;
        let closed = self
            .timed_until(step, &conn, deadline, async {
                channel.close().await.map_err(|e| self.step_error(step, e))
            })
            .await;
        self.forget_if_lost(&conn, closed).await
    }

    /// Whether `conn` still answers: a ping round trip within a second.
    async fn still_alive(&self, conn: &Arc<Connection>) -> bool {
        let pinged = tokio::time::timeout(Duration::from_secs(1), conn.handle.send_ping()).await;
        matches!(pinged, Ok(Ok(()))) && !conn.is_closed()
    }

    /// Drops `conn` when `result` says the session was lost, so the next step reconnects.
    async fn forget_if_lost<T>(
        &self,
        conn: &Arc<Connection>,
        result: Result<T, DeployError>,
    ) -> Result<T, DeployError> {
        if matches!(result, Err(DeployError::Connect { .. })) {
            self.discard(conn).await;
        }
        result
    }

    /// A channel error: a lost session is a connection problem (and the session is
    /// dropped so the next step reconnects); anything else is the step's own failure.
    fn step_error(&self, step: &str, e: russh::Error) -> DeployError {
        if session_is_dead(&e) {
            self.lost_error(step, Some(&e.to_string()))
        } else {
            DeployError::Step {
                node: self.endpoint.node.clone(),
                step: step.to_owned(),
                message: format!("SSH channel error: {e}"),
            }
        }
    }
}

/// Errors that mean the session itself is gone (not just one channel refused).
fn session_is_dead(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::SendError
            | russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::IO(_)
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::ConnectionTimeout
    )
}

/// A duration as whole seconds for error messages, rounded up so 500 ms reads as 1 s.
pub(crate) fn whole_seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_bracket_ipv6() {
        let ep = |host: &str| Endpoint {
            node: "n".into(),
            host: host.into(),
            port: 2222,
            user: "root".into(),
        };
        assert_eq!(ep("10.0.0.1").address(), "10.0.0.1:2222");
        assert_eq!(ep("2001:db8::1").address(), "[2001:db8::1]:2222");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(500)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(10)), 10);
    }
}
