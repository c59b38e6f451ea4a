//! The stage request on a shell started ahead.
//!
//! A stage request writes the new config, checks that the live file still has the stamp
//! edgelb left, validates the new file with `haproxy -c`, keeps the live file and renames the
//! new one over it ([`EdgeHost::stage_and_swap`](crate::EdgeHost::stage_and_swap)). It runs
//! as one shell script, [`STAGE_SCRIPT`], which reads everything it needs from its standard
//! input: its arguments, one per line after their count, then the file.
//!
//! That is what lets it start ahead. OpenSSH's sshd opens a session channel with a receive
//! window of zero and grants one only once the command is running, so stdin sent with the
//! `exec` request waits a round trip for the window; over a 20 ms link that round trip, plus
//! sshd forking the session and the login shell starting, was half of the whole runtime
//! transaction. So the session opens the next request's channel ahead and starts the
//! script on it, off the path: it waits on its standard input (one idle `sh` per edge).
//! The next request only sends its input and reads the outcome, one round trip plus the
//! edge's time for the steps themselves.
//!
//! A shell started ahead is used only while its session is open and it has neither ended
//! nor been refused: a script that ended (sshd's `ChannelTimeout`, an sshd restart) leaves
//! an exit status, EOF or close behind, and a fresh channel is opened for the request
//! instead. The next shell starts as soon as a request takes the waiting one, so
//! back-to-back changes find it ready too (it needs two round trips: the channel, then the
//! `exec` and sshd's window grant). A shell never used ends with its session: closing the
//! channel closes its input, and the script exits without touching anything.

use std::sync::Arc;

use edgelb_core::DeployError;
use futures::FutureExt;
use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use tokio::time::Instant;

use super::quote::command_line;
use super::session::{Connection, RawOutput, Session};

/// The stage script (POSIX sh). Its input: a line with the number of arguments, one line
/// per argument (`new live prev expect keep validate...`), then the new file until EOF.
/// `expect` is the live file's expected stamp (empty: none), `keep` is `copy` (keep the
/// live file as `prev`) or `none`, and `validate...` the command that checks the new file.
pub(super) const STAGE_SCRIPT: &str = r#"umask 022
IFS= read -r n || exit 100
case $n in ''|*[!0-9]*) exit 100 ;; esac
set --
while [ "$n" -gt 0 ]; do IFS= read -r arg || exit 100; set -- "$@" "$arg"; n=$((n - 1)); done
new=$1 live=$2 prev=$3 expect=$4 keep=$5; shift 5
cat > "$new" || exit 102
if [ -n "$expect" ] && [ "$(stat -c '%s %i %y %z' -- "$live" 2>/dev/null)" != "$expect" ]; then
  rm -f -- "$new"; exit 101
fi
if ! out=$("$@" 2>&1); then rm -f -- "$new"; printf '%s\n' "$out"; exit 103; fi
if [ "$keep" = copy ]; then cp -p -- "$live" "$prev" || exit 104; fi
mv -f -- "$new" "$live" || exit 104
stat -c '%s %i %y %z' -- "$live" || exit 105"#;

/// Exit statuses of [`STAGE_SCRIPT`].
pub(super) const STAGE_LIVE_CHANGED: u32 = 101;
pub(super) const STAGE_REJECTED: u32 = 103;
pub(super) const STAGE_SWAPPED_UNSTAMPED: u32 = 105;

/// The script's input: the count of `args`, each of them on a line, then `contents`.
/// `None` when an argument holds a line break or a NUL byte, which a line cannot carry.
pub(super) fn stage_input(args: &[&str], contents: &[u8]) -> Option<Vec<u8>> {
    if args.iter().any(|a| a.contains(['\n', '\r', '\0'])) {
        return None;
    }
    let header: usize = args.iter().map(|a| a.len() + 1).sum();
    let mut input = Vec::with_capacity(8 + header + contents.len());
    input.extend_from_slice(format!("{}\n", args.len()).as_bytes());
    for arg in args {
        input.extend_from_slice(arg.as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(contents);
    Some(input)
}

/// The command line that starts [`STAGE_SCRIPT`] through the login shell.
fn stage_command_line() -> Option<String> {
    command_line(&["sh", "-c", STAGE_SCRIPT, "sh"]).ok()
}

impl Session {
    /// Runs a stage request with `input` ([`stage_input`]): on the shell started ahead when
    /// it is still waiting, else on a new channel. The next request's shell starts at once,
    /// in the background, so it is ready even for a change that follows this one within a
    /// round trip or two.
    pub(super) async fn stage(
        self: &Arc<Self>,
        step: &str,
        input: &[u8],
    ) -> Result<RawOutput, DeployError> {
        let started = Instant::now();
        let ahead = self.take_stage_ahead().await;
        let session = Arc::clone(self);
        tokio::spawn(async move { session.start_stage_ahead().await });
        let channel = match ahead {
            Some(ready) => ready,
            None => {
                let line = stage_command_line().ok_or_else(|| DeployError::Step {
                    node: self.endpoint().node.clone(),
                    step: step.to_owned(),
                    message: "the stage script cannot be quoted for the remote shell".into(),
                })?;
                let deadline = started + self.options().step_timeout;
                self.exec_channel(step, &line, deadline).await?
            }
        };
        self.run_on(step, started, channel, Some(input)).await
    }

    /// Opens a session channel and starts the stage script on it, for the next stage
    /// request, unless one waits already. Only on the session open now (a lost session is
    /// reopened by the next step, never in the background); a failure is left to that
    /// request, which starts its own.
    pub(crate) async fn start_stage_ahead(&self) {
        if self.stage_ahead.lock().await.is_some() {
            return;
        }
        let Some(conn) = self.live_connection().await else {
            return;
        };
        let Some(line) = stage_command_line() else {
            return;
        };
        let opening = conn.open_session();
        let opened = tokio::time::timeout(self.options().step_timeout, opening).await;
        tracing::debug!(target: super::CHANNEL_TARGET, node = %self.endpoint().node, kind = "exec", ahead = true, opened = matches!(opened, Ok(Ok(_))), "SSH channel");
        let Ok(Ok(channel)) = opened else {
            return;
        };
        if channel.exec(true, line.as_bytes()).await.is_err() {
            return;
        }
        let mut slot = self.stage_ahead.lock().await;
        if slot.is_none() {
            *slot = Some((conn, channel));
        } else {
            drop(slot);
            let _ = channel.close().await;
        }
    }

    /// The shell started ahead, when there is one, its session is open and it still waits
    /// for its input.
    async fn take_stage_ahead(&self) -> Option<(Arc<Connection>, Channel<Msg>)> {
        let (conn, mut channel) = self.stage_ahead.lock().await.take()?;
        if !conn.is_closed() && still_waiting(&mut channel) {
            return Some((conn, channel));
        }
        let _ = channel.close().await;
        None
    }
}

/// Whether the script on `channel` still waits for its input: it did not end, and sshd did
/// not refuse it. What else arrived is dropped: the `exec` reply, window grants, and
/// anything the login shell printed while starting (a noisy `.bashrc`), which is not part
/// of the request's output.
fn still_waiting(channel: &mut Channel<Msg>) -> bool {
    loop {
        match channel.wait().now_or_never() {
            None => return true,
            Some(
                None
                | Some(
                    ChannelMsg::Failure
                    | ChannelMsg::Eof
                    | ChannelMsg::Close
                    | ChannelMsg::ExitStatus { .. }
                    | ChannelMsg::ExitSignal { .. },
                ),
            ) => return false,
            Some(Some(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_carries_the_arguments_line_by_line_then_the_file() {
        let input = stage_input(&["/n", "/l", "", "a b"], b"global\n").unwrap_or_default();
        assert_eq!(input, b"4\n/n\n/l\n\na b\nglobal\n");
    }

    #[test]
    fn an_argument_with_a_line_break_or_nul_is_refused() {
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert!(stage_input(&["/n", bad], b"x").is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_script_can_be_quoted() {
        assert!(stage_command_line().is_some());
    }
}
