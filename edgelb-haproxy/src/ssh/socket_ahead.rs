//! A stream-local channel to one of HAProxy's sockets opened ahead of the request that will
//! use it (the reload path's `reload` to the master CLI, opened while the new file is staged):
//! that request then costs one round trip instead of two.
//!
//! The spare is taken by the next request to the same socket, and only while it is young and
//! nothing arrived on it: a socket that closed it (or a master that re-executed) leaves an EOF
//! or close behind, and such a spare is dropped and a fresh channel opened instead.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use russh::Channel;
use russh::client::Msg;
use tokio::time::Instant;

use super::session::{ChannelKind, Connection, Session, SocketSpare};

/// How long an unused spare stays usable: far below any CLI idle timeout of HAProxy's
/// (seconds), far above a stage request (tens of milliseconds).
const SPARE_FRESH_FOR: Duration = Duration::from_secs(1);

impl Session {
    /// Opens a stream-local channel to `path` on the open session and keeps it for the next
    /// request to that socket, replacing an older spare. Only on a session open now (a lost
    /// session is reopened by the next step, never in the background); a failure is left to
    /// that request, which opens its own channel.
    pub(crate) async fn open_socket_ahead(&self, path: &str) {
        let Some(conn) = self.live_connection().await else {
            return;
        };
        let deadline = Instant::now() + self.options().step_timeout;
        let opening = conn.open_stream_local(path);
        let opened = tokio::time::timeout_at(deadline, opening).await;
        tracing::debug!(target: super::CHANNEL_TARGET, node = %self.endpoint().node, kind = "stream-local", ahead = true, opened = matches!(opened, Ok(Ok(_))), "SSH channel");
        let Ok(Ok(channel)) = opened else {
            return;
        };
        let spare = SocketSpare {
            path: path.to_owned(),
            conn,
            channel,
            opened: Instant::now(),
        };
        if let Some(old) = self.socket_spare.lock().await.replace(spare) {
            let _ = old.channel.close().await;
        }
    }

    /// The spare channel to `path`, when there is one, it is young, its session is open and
    /// nothing (an EOF, a close) arrived on it. A spare to another socket stays.
    pub(super) async fn take_socket_spare(
        &self,
        path: &str,
    ) -> Option<(Arc<Connection>, Channel<Msg>)> {
        let mut slot = self.socket_spare.lock().await;
        if slot.as_ref().is_none_or(|s| s.path != path) {
            return None;
        }
        let mut spare = slot.take()?;
        drop(slot);
        let usable = spare.opened.elapsed() < SPARE_FRESH_FOR
            && !spare.conn.is_closed()
            && spare.channel.wait().now_or_never().is_none();
        if usable {
            return Some((spare.conn, spare.channel));
        }
        let _ = spare.channel.close().await;
        None
    }

    /// Opens a stream-local channel to `path`: the spare when it is usable, else a new one.
    pub(super) async fn socket_channel(
        &self,
        path: &str,
        step: &str,
        deadline: Instant,
    ) -> Result<(Arc<Connection>, Channel<Msg>), edgelb_core::DeployError> {
        if let Some(spare) = self.take_socket_spare(path).await {
            return Ok(spare);
        }
        self.open_channel(&ChannelKind::StreamLocal(path), step, deadline)
            .await
    }
}
