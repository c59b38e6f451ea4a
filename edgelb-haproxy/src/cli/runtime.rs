//! A small client of HAProxy's runtime API (the stats socket, `level admin`) and master CLI,
//! over any [`EdgeHost`]: a UNIX socket on this machine ([`LocalHost`](crate::LocalHost)) or
//! on an edge reached through SSH stream-local forwarding.
//!
//! Every backend and server name, address and state is validated before it is put into a
//! command line, so nothing can smuggle a second command (`;`) or a newline in.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edgelb_core::DeployError;

use crate::cli::master::MasterProcs;
use crate::cli::servers_state::{ServerAdminState, ServerState};
use crate::cli::servers_state::{ServersStateAnswer, parse_servers_state};
use crate::edge_host::EdgeHost;

/// Why a runtime API command cannot be built: a name or value that would not reach HAProxy
/// as the one word it is meant to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An empty or overlong backend or server name.
    #[error("{what} name {name:?} must have 1 to 100 characters")]
    NameLength {
        /// `backend` or `server`.
        what: &'static str,
        /// The name as given.
        name: String,
    },
    /// A backend or server name with a character outside HAProxy's identifiers.
    #[error("{what} name {name:?} holds {bad:?}; use letters, digits, '-', '_', '.' and ':'")]
    NameCharacter {
        /// `backend` or `server`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// The first character that is not allowed.
        bad: char,
    },
    /// `set server … addr … port 0`.
    #[error("port 0 for server {target}")]
    PortZero {
        /// `backend/server`.
        target: String,
    },
    /// A weight HAProxy does not take.
    #[error("weight {weight} for server {target} is above 256")]
    WeightTooHigh {
        /// `backend/server`.
        target: String,
        /// The weight asked for.
        weight: u32,
    },
}

/// A runtime API command built from validated parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeCommand {
    /// `set server <backend>/<server> addr <ip> port <port>`.
    SetServerAddr {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// New address.
        addr: IpAddr,
        /// New port.
        port: u16,
    },
    /// `set server <backend>/<server> state ready|drain|maint`.
    SetServerState {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// New state.
        state: ServerAdminState,
    },
    /// `set server <backend>/<server> weight <weight>`.
    SetServerWeight {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// New weight (0 to 256).
        weight: u32,
    },
}

impl RuntimeCommand {
    /// The command line; fails on a name that is not a plain HAProxy identifier.
    pub fn to_line(&self) -> Result<String, CommandError> {
        match self {
            Self::SetServerAddr {
                backend,
                server,
                addr,
                port,
            } => {
                let target = server_target(backend, server)?;
                if *port == 0 {
                    return Err(CommandError::PortZero { target });
                }
                Ok(format!("set server {target} addr {addr} port {port}"))
            }
            Self::SetServerState {
                backend,
                server,
                state,
            } => Ok(format!(
                "set server {} state {state}",
                server_target(backend, server)?
            )),
            Self::SetServerWeight {
                backend,
                server,
                weight,
            } => {
                let target = server_target(backend, server)?;
                if *weight > 256 {
                    return Err(CommandError::WeightTooHigh {
                        target,
                        weight: *weight,
                    });
                }
                Ok(format!("set server {target} weight {weight}"))
            }
        }
    }

    /// Whether HAProxy's answer to this command means success.
    pub(crate) fn accepts(&self, answer: &str) -> bool {
        let answer = answer.trim();
        match self {
            // "IP changed from …", "no need to change the addr…", "…port changed from …".
            Self::SetServerAddr { .. } => {
                answer.starts_with("IP changed")
                    || answer.starts_with("no need to change")
                    || answer.starts_with("port changed")
            }
            Self::SetServerState { .. } | Self::SetServerWeight { .. } => answer.is_empty(),
        }
    }
}

/// `backend/server` for a command, both names checked with [`validate_identifier`].
fn server_target(backend: &str, server: &str) -> Result<String, CommandError> {
    validate_identifier("backend", backend)?;
    validate_identifier("server", server)?;
    Ok(format!("{backend}/{server}"))
}

/// Checks a backend or server name: HAProxy identifier characters only (letters, digits,
/// `-`, `_`, `.`, `:`), so it can neither split into words nor chain a command.
pub(crate) fn validate_identifier(what: &'static str, name: &str) -> Result<(), CommandError> {
    if name.is_empty() || name.len() > 100 {
        return Err(CommandError::NameLength {
            what,
            name: name.to_owned(),
        });
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(CommandError::NameCharacter {
            what,
            name: name.to_owned(),
            bad,
        });
    }
    Ok(())
}

/// A runtime-API client for one socket on one host.
///
/// ```no_run
/// # async fn demo(host: &dyn edgelb_haproxy::EdgeHost) -> Result<(), edgelb_core::DeployError> {
/// use edgelb_haproxy::{RuntimeApi, ServerAdminState};
/// let api = RuntimeApi::new(host, "/run/haproxy/admin.sock")?;
/// for server in api.show_servers_state(None).await? {
///     println!("{}/{} {}:{:?} {:?}", server.backend, server.server, server.address, server.port, server.admin_state());
/// }
/// api.set_server_state("be_web", "s1", ServerAdminState::Drain).await?;
/// # Ok(()) }
/// ```
pub struct RuntimeApi<'a> {
    host: &'a dyn EdgeHost,
    socket: String,
}

impl<'a> RuntimeApi<'a> {
    /// A client of the socket at `socket` (an absolute path of plain characters) on `host`.
    pub fn new(host: &'a dyn EdgeHost, socket: &str) -> Result<Self, DeployError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '@');
        if !socket.starts_with('/') || !socket.chars().all(plain) {
            return Err(DeployError::Step {
                node: host.node().to_owned(),
                step: "choosing the runtime API socket".into(),
                message: format!(
                    "{socket:?} is not an absolute path of letters, digits and / . _ - @"
                ),
            });
        }
        Ok(Self {
            host,
            socket: socket.to_owned(),
        })
    }

    /// The node of the host this client talks through.
    pub fn node(&self) -> &str {
        self.host.node()
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    fn error(&self, step: impl Into<String>, message: impl Into<String>) -> DeployError {
        DeployError::Step {
            node: self.host.node().to_owned(),
            step: step.into(),
            message: message.into(),
        }
    }

    /// Sends one command line and returns the raw answer.
    async fn raw(&self, line: &str) -> Result<String, DeployError> {
        self.host.socket_command(&self.socket, line).await
    }

    /// `show proc`, on the master CLI socket.
    pub async fn show_proc(&self) -> Result<MasterProcs, DeployError> {
        let text = self.raw("show proc").await?;
        MasterProcs::parse(self.host.node(), &text)
    }

    /// `show info`, as `Name: value` pairs.
    pub async fn show_info(&self) -> Result<BTreeMap<String, String>, DeployError> {
        let text = self.raw("show info").await?;
        let info: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        if !info.contains_key("Pid") {
            return Err(self.error(
                "reading `show info`",
                format!("unexpected answer: {:?}", first_chars(&text)),
            ));
        }
        Ok(info)
    }

    /// `show servers state [<backend>]`, one entry per server.
    pub async fn show_servers_state(
        &self,
        backend: Option<&str>,
    ) -> Result<Vec<ServerState>, DeployError> {
        let line = match backend {
            Some(be) => {
                validate_identifier("backend", be)
                    .map_err(|e| self.error("reading `show servers state`", e.to_string()))?;
                format!("show servers state {be}")
            }
            None => "show servers state".to_owned(),
        };
        let text = self.one_answer(line).await?;
        parse_servers_state(&text)
            .map_err(|e| self.error("reading `show servers state`", e.to_string()))
    }

    /// `show servers state` of every backend, checked and kept as HAProxy sent it (see
    /// [`ServersStateAnswer`]).
    pub(crate) async fn servers_state(&self) -> Result<ServersStateAnswer, DeployError> {
        let text = self.one_answer("show servers state".to_owned()).await?;
        ServersStateAnswer::read(text)
            .map_err(|e| self.error("reading `show servers state`", e.to_string()))
    }

    /// The answer to one command line, without copying it.
    async fn one_answer(&self, line: String) -> Result<String, DeployError> {
        let answers = self.pipeline(&[line]).await?;
        // `pipeline` checked that there is one answer per line.
        Ok(answers.into_iter().next().unwrap_or_default())
    }

    /// `set server <backend>/<server> addr <ip> port <port>`.
    pub async fn set_server_addr(
        &self,
        backend: &str,
        server: &str,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), DeployError> {
        self.batch(&[RuntimeCommand::SetServerAddr {
            backend: backend.to_owned(),
            server: server.to_owned(),
            addr,
            port,
        }])
        .await
    }

    /// `set server <backend>/<server> state ready|drain|maint`.
    pub async fn set_server_state(
        &self,
        backend: &str,
        server: &str,
        state: ServerAdminState,
    ) -> Result<(), DeployError> {
        self.batch(&[RuntimeCommand::SetServerState {
            backend: backend.to_owned(),
            server: server.to_owned(),
            state,
        }])
        .await
    }

    /// Sends several commands in one request (`cmd1; cmd2; …`) and checks every answer.
    /// HAProxy runs them in order; the error names the first that failed (the ones before it
    /// took effect).
    pub async fn batch(&self, commands: &[RuntimeCommand]) -> Result<(), DeployError> {
        if commands.is_empty() {
            return Ok(());
        }
        let lines = commands
            .iter()
            .map(RuntimeCommand::to_line)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error("building runtime API commands", e.to_string()))?;
        let answers = self.pipeline(&lines).await?;
        for ((command, line), answer) in commands.iter().zip(&lines).zip(&answers) {
            if !command.accepts(answer) {
                return Err(self.error(
                    format!("runtime API command `{line}`"),
                    format!("haproxy answered: {}", answer.trim()),
                ));
            }
        }
        Ok(())
    }
}

impl RuntimeApi<'_> {
    /// Sends `lines` in order and returns one answer per line, in one exchange where the
    /// host keeps an interactive connection (see [`EdgeHost::socket_pipeline`]).
    pub async fn pipeline(&self, lines: &[String]) -> Result<Vec<String>, DeployError> {
        let answers = self.host.socket_pipeline(&self.socket, lines).await?;
        if answers.len() != lines.len() {
            return Err(self.error(
                "running runtime API commands",
                format!(
                    "haproxy answered {} of {} commands: {:?}",
                    answers.len(),
                    lines.len(),
                    first_chars(&answers.concat())
                ),
            ));
        }
        Ok(answers)
    }
}

fn first_chars(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket_requests::split_answers;

    #[test]
    fn splits_batched_answers() {
        // `set … addr; set … state; set … (no such server); set … state`, as 2.6 answers.
        let text = "IP changed from '127.0.0.1' to '127.0.0.2' by 'stats socket command'\n\n\nNo such server.\n\n\n";
        let answers = split_answers(text);
        assert_eq!(answers.len(), 4, "{answers:?}");
        assert!(answers[0].starts_with("IP changed"));
        assert_eq!(answers[1], "");
        assert_eq!(answers[2], "No such server.");
        assert_eq!(answers[3], "");
    }

    #[test]
    fn command_lines_refuse_injection() {
        let ok = RuntimeCommand::SetServerAddr {
            backend: "be_web-1".into(),
            server: "s0001".into(),
            addr: "10.0.0.1".parse().unwrap(),
            port: 8080,
        };
        assert_eq!(
            ok.to_line().unwrap(),
            "set server be_web-1/s0001 addr 10.0.0.1 port 8080"
        );
        for bad in ["a;b", "a b", "a\nb", "", "a/b", "a#b"] {
            let cmd = RuntimeCommand::SetServerState {
                backend: bad.into(),
                server: "s1".into(),
                state: ServerAdminState::Drain,
            };
            assert!(cmd.to_line().is_err(), "{bad:?}");
        }
        let v6 = RuntimeCommand::SetServerAddr {
            backend: "be".into(),
            server: "s".into(),
            addr: "2001:db8::1".parse().unwrap(),
            port: 1,
        };
        assert!(v6.to_line().unwrap().contains("addr 2001:db8::1 port 1"));
    }

    #[test]
    fn answers_are_judged_per_command() {
        let addr = RuntimeCommand::SetServerAddr {
            backend: "b".into(),
            server: "s".into(),
            addr: "10.0.0.1".parse().unwrap(),
            port: 1,
        };
        assert!(addr.accepts("IP changed from '1.1.1.1' to '10.0.0.1' by 'stats socket command'"));
        assert!(addr.accepts(
            "no need to change the addr, no need to change the port by 'stats socket command'"
        ));
        assert!(!addr.accepts("Invalid addr 'bad' by 'stats socket command'"));
        assert!(!addr.accepts("No such server."));
        let state = RuntimeCommand::SetServerState {
            backend: "b".into(),
            server: "s".into(),
            state: ServerAdminState::Ready,
        };
        assert!(state.accepts(""));
        assert!(!state.accepts("No such server."));
    }

    /// The client against a fake host that answers like HAProxy.
    struct Fake(std::sync::Mutex<Vec<String>>, String);

    #[async_trait::async_trait]
    impl EdgeHost for Fake {
        fn node(&self) -> &str {
            "fake"
        }
        async fn read_file(&self, _: &str) -> Result<Option<Vec<u8>>, DeployError> {
            Ok(None)
        }
        async fn write_file(&self, _: &str, _: &[u8]) -> Result<(), DeployError> {
            Ok(())
        }
        async fn rename(&self, _: &str, _: &str) -> Result<(), DeployError> {
            Ok(())
        }
        async fn copy(&self, _: &str, _: &str) -> Result<(), DeployError> {
            Ok(())
        }
        async fn remove_file(&self, _: &str) -> Result<(), DeployError> {
            Ok(())
        }
        async fn exec(&self, _: &[String]) -> Result<crate::ExecOutput, DeployError> {
            unimplemented!()
        }
        async fn socket_command(&self, socket: &str, command: &str) -> Result<String, DeployError> {
            self.0.lock().unwrap().push(format!("{socket} {command}"));
            Ok(self.1.clone())
        }
    }

    #[tokio::test]
    async fn batch_sends_one_line_and_reports_the_failing_command() {
        let fake = Fake(
            Default::default(),
            "IP changed from 'a' to 'b' by 'stats socket command'\n\nNo such server.\n\n".into(),
        );
        let api = RuntimeApi::new(&fake, "/run/haproxy/admin.sock").unwrap();
        let err = api
            .batch(&[
                RuntimeCommand::SetServerAddr {
                    backend: "be".into(),
                    server: "s1".into(),
                    addr: "10.0.0.2".parse().unwrap(),
                    port: 80,
                },
                RuntimeCommand::SetServerState {
                    backend: "be".into(),
                    server: "nope".into(),
                    state: ServerAdminState::Ready,
                },
            ])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("be/nope") && err.contains("No such server"),
            "{err}"
        );
        assert_eq!(
            fake.0.lock().unwrap().as_slice(),
            [
                "/run/haproxy/admin.sock set server be/s1 addr 10.0.0.2 port 80; set server be/nope state ready"
            ]
        );
        assert!(RuntimeApi::new(&fake, "/run/x;y").is_err());
        assert!(RuntimeApi::new(&fake, "relative.sock").is_err());
    }
}
