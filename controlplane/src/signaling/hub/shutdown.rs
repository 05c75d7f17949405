//! Stopping an instance (SIGTERM): from `shutdown` on, `open` refuses new sessions with
//! `server_shutdown`, and every session is told `server_shutdown` and closed (its peer closed,
//! its record removed, the room told it left), so its client reconnects elsewhere at once
//! instead of waiting for a dead socket to time out.
//!
//! Must never: wait on one session's node call before telling the others.

use super::Hub;
use crate::shutdown::Stopping;
use crate::signaling::messages::ServerMsg;
use crate::signaling::services::SignalError;

impl Hub {
    /// True once `shutdown` began.
    pub fn is_shutting_down(&self) -> bool {
        self.stopping.is_set()
    }

    /// The flag `shutdown` sets, for `/readyz`.
    pub fn stopping(&self) -> Stopping {
        self.stopping.clone()
    }

    /// The error a join gets while the instance is stopping.
    pub(super) fn refuse_if_shutting_down(&self) -> Result<(), SignalError> {
        if self.is_shutting_down() {
            return Err(SignalError::new(
                "server_shutdown",
                "this server is shutting down; connect again",
            ));
        }
        Ok(())
    }

    /// Refuse new sessions, tell every session and close them all (concurrently: a slow
    /// node call of one must not hold up the others). Returns the sessions closed.
    pub async fn shutdown(&self) -> usize {
        self.stopping.begin();
        let sessions = self.session_list();
        let n = sessions.len();
        tracing::info!(
            sessions = n,
            "signaling: shutting down; telling every session"
        );
        // The notice first, to all: it is queued on each outbox before any node call.
        for s in &sessions {
            s.send(ServerMsg::ServerShutdown);
        }
        futures_util::future::join_all(sessions.iter().map(|s| self.close(s, None))).await;
        n
    }
}
