//! HAProxy's runtime API over one stream-local channel kept open per edge, in the CLI's
//! interactive `prompt` mode: the connection stays after each command, and every answer
//! ends with the prompt (`\n> `), so a change's commands go out in one write and their
//! answers come back in one round trip, with no channel to open first.
//!
//! * The first exchange on a new channel starts with `prompt`.
//! * A kept channel that HAProxy closed meanwhile (its CLI idle timeout, `stats timeout`,
//!   10 s by default; a restart) is noticed before use, and a channel that fails during an
//!   exchange is replaced once: the commands are sent again on a fresh channel (every
//!   command edgelb sends sets an absolute value, so sending it twice is harmless).
//! * A reload leaves a kept connection with the old worker, which keeps answering until it
//!   exits (and for a moment a new connection may reach it too): commands would change a
//!   process that no longer takes new connections. So every exchange starts with `show
//!   info` (in the same write: no round trip more), and an answer with `Stopping: 1` sends
//!   the exchange again on a fresh channel, a few times, until the new worker answers.
//!   edgelb's own reloads close the kept channel at once ([`PromptSlot::forget`]).
//! * Each answer must arrive within the step timeout of the one before.

use std::sync::Arc;

use edgelb_core::DeployError;
use futures::FutureExt;
use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use tokio::time::Instant;

use super::session::{ChannelKind, Connection, Session};

/// What ends every answer in prompt mode: the answer's empty line, then the prompt.
const PROMPT: &[u8] = b"\n> ";
/// Asked before the commands: whether the channel reaches a worker that is not stopping.
const GUARD: &str = "show info";
/// Fresh channels tried while only a stopping worker answers (a reload under way).
const FRESH_ATTEMPTS: u32 = 3;
/// The pause between them.
const RELOAD_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// An open channel to one socket, in prompt mode.
pub(crate) struct KeptPrompt {
    conn: Arc<Connection>,
    path: String,
    channel: Channel<Msg>,
}

impl KeptPrompt {
    /// Whether the channel still looks open: nothing pending on it says it was closed.
    /// Bytes nobody asked for also retire it (the stream would be out of step).
    fn still_open(&mut self) -> bool {
        if self.conn.is_closed() {
            return false;
        }
        for _ in 0..64 {
            match self.channel.wait().now_or_never() {
                None => return true,
                Some(Some(ChannelMsg::WindowAdjusted { .. })) => continue,
                Some(_) => return false,
            }
        }
        false
    }
}

/// Why an exchange did not give its answers.
enum Failed {
    /// The kept channel reached a stopping worker (HAProxy was reloaded since).
    Stopping,
    /// The error to report if a fresh channel fails too.
    Error(DeployError),
}

/// Where a host keeps its runtime-API channel between changes (at most one: the stats
/// socket's).
#[derive(Default)]
pub(crate) struct PromptSlot(tokio::sync::Mutex<Option<KeptPrompt>>);

impl PromptSlot {
    /// Closes the kept channel: HAProxy was reloaded, it would reach the old worker.
    pub(crate) async fn forget(&self) {
        if let Some(kept) = self.0.lock().await.take() {
            let _ = kept.channel.close().await;
        }
    }
}

impl Session {
    /// Sends `lines` to the UNIX socket `path` over the prompt-mode channel kept in `kept_in`
    /// (opened when there is none) and returns one answer per line. See the module docs.
    pub(crate) async fn socket_pipeline(
        &self,
        kept_in: &PromptSlot,
        step: &str,
        path: &str,
        lines: &[String],
    ) -> Result<Vec<String>, DeployError> {
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let mut slot = kept_in.0.lock().await;
        let mut kept = slot.take();
        if let Some(other) = kept.take_if(|k| k.path != path) {
            let _ = other.channel.close().await; // one kept channel per edge: the stats socket
        }
        if let Some(mut kept) = kept
            && kept.still_open()
        {
            match self.exchange(step, &mut kept, &[GUARD], lines).await {
                Ok(answers) => {
                    *slot = Some(kept);
                    return Ok(answers);
                }
                Err(Failed::Stopping) => {
                    tracing::info!(node = %self.endpoint().node, socket = path, "the kept runtime API connection reached a stopping HAProxy (reloaded since); sending again on a new one");
                }
                Err(Failed::Error(e)) => {
                    tracing::info!(node = %self.endpoint().node, socket = path, error = %e, "the kept runtime API connection failed; sending again on a new one");
                }
            }
            let _ = kept.channel.close().await;
        }
        for attempt in 1..=FRESH_ATTEMPTS {
            let deadline = Instant::now() + self.options().step_timeout;
            let (conn, channel) = self
                .open_channel(&ChannelKind::StreamLocal(path), step, deadline)
                .await?;
            let mut kept = KeptPrompt {
                conn,
                path: path.to_owned(),
                channel,
            };
            match self
                .exchange(step, &mut kept, &["prompt", GUARD], lines)
                .await
            {
                Ok(answers) => {
                    *slot = Some(kept);
                    return Ok(answers);
                }
                Err(Failed::Error(e)) => return Err(e),
                Err(Failed::Stopping) => {
                    let _ = kept.channel.close().await;
                    if attempt < FRESH_ATTEMPTS {
                        // A reload is under way: the old worker still takes connections.
                        tokio::time::sleep(RELOAD_PAUSE).await;
                    }
                }
            }
        }
        Err(DeployError::Step {
            node: self.endpoint().node.clone(),
            step: step.to_owned(),
            message: format!(
                "only a stopping HAProxy worker answered {path} ({FRESH_ATTEMPTS} connections): is a reload stuck? see haproxy's log"
            ),
        })
    }

    /// Writes `lead` and `lines` at once and reads one answer each; the answers to `lead`
    /// are left out, the one to [`GUARD`] checked (not a stopping worker).
    async fn exchange(
        &self,
        step: &str,
        kept: &mut KeptPrompt,
        lead: &[&str],
        lines: &[String],
    ) -> Result<Vec<String>, Failed> {
        let mut request = String::new();
        for line in lead.iter().copied().chain(lines.iter().map(String::as_str)) {
            request.push_str(line);
            request.push('\n');
        }
        let node = &self.endpoint().node;
        let lost = |message: String| {
            Failed::Error(DeployError::Step {
                node: node.clone(),
                step: step.to_owned(),
                message,
            })
        };
        kept.channel
            .data(request.as_bytes())
            .await
            .map_err(|e| lost(format!("sending to the runtime API failed: {e}")))?;
        let wanted = lines.len() + lead.len();
        let mut answers: Vec<String> = Vec::with_capacity(wanted);
        let mut pending: Vec<u8> = Vec::new();
        while answers.len() < wanted {
            let timeout = self.options().step_timeout;
            let msg = tokio::time::timeout(timeout, kept.channel.wait())
                .await
                .map_err(|_| {
                    Failed::Error(DeployError::Timeout {
                        node: node.clone(),
                        step: format!("{step} (answer {} of {wanted})", answers.len() + 1),
                        seconds: super::session::whole_seconds(timeout),
                    })
                })?;
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    pending.extend_from_slice(&data);
                    while let Some(at) = find(&pending, PROMPT) {
                        answers.push(String::from_utf8_lossy(&pending[..=at]).into_owned());
                        pending.drain(..at + PROMPT.len());
                    }
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Err(lost(format!(
                        "HAProxy closed the runtime API connection after {} of {wanted} answers",
                        answers.len()
                    )));
                }
                Some(_) => {}
            }
        }
        let rest = answers.split_off(lead.len());
        let stopping = lead.iter().zip(&answers).any(|(line, answer)| {
            *line == GUARD && answer.lines().any(|l| l.trim() == "Stopping: 1")
        });
        if stopping {
            return Err(Failed::Stopping);
        }
        Ok(rest)
    }
}

/// Where `needle` first starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_at_the_prompt() {
        // Real bytes of HAProxy 2.6 in prompt mode: `prompt`, a `set server … addr`, a
        // `set server … weight` (empty answer), an unknown server.
        let stream: &[u8] = b"\n> IP changed from '127.0.0.1' to '127.0.0.2', no need to change the port by 'stats socket command'\n\n> \n> No such server.\n\n> ";
        let mut pending = stream.to_vec();
        let mut answers = Vec::new();
        while let Some(at) = find(&pending, PROMPT) {
            answers.push(String::from_utf8_lossy(&pending[..=at]).into_owned());
            pending.drain(..at + PROMPT.len());
        }
        assert_eq!(answers.len(), 4, "{answers:?}");
        assert_eq!(answers[0].trim(), "");
        assert!(answers[1].starts_with("IP changed"));
        assert_eq!(answers[2].trim(), "");
        assert_eq!(answers[3].trim(), "No such server.");
        assert!(pending.is_empty());
    }
}
