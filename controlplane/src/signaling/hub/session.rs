//! One participant session as the hub sees it: its phase, outbox (the socket task's channel),
//! media peer, subscriptions, published tracks and its live role and grants.
//!
//! Must never: call a node or the store — the hub does that; this is state and the outbox.

use std::collections::HashSet;
use std::sync::Mutex;

use shardcast_dataplane::node::{PeerId, TrackId};
use tokio::sync::mpsc;

use crate::placement::NodeHandle;
use crate::signaling::messages::{ServerMsg, TrackInfo};
use crate::signaling::services::{Grants, Member};

/// What a session's socket task receives. (Messages are not boxed: they are built once and
/// moved through the channel; the size difference is harmless here.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outgoing {
    Msg(ServerMsg),
    /// Send nothing more; close the socket.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Joined,
    Closed,
}

pub(super) struct SessionState {
    pub(super) phase: Phase,
    pub(super) outbox: Option<mpsc::UnboundedSender<Outgoing>>,
    /// Bumped on every attach, so a grace timer knows whether its detach still holds.
    pub(super) attach_gen: u64,
    pub(super) node: Option<NodeHandle>,
    pub(super) peer: Option<PeerId>,
    pub(super) subscribed: HashSet<TrackId>,
    pub(super) tracks: Vec<TrackInfo>,
    /// Tracks the peer publishes while the session lacks canPublish: stopped on the node,
    /// unknown to the room (see `permissions`).
    pub(super) withheld: Vec<TrackInfo>,
    pub(super) server_offer_pending: bool,
    /// A WHEP player: plays every track published in the room (only those of this identity
    /// when `Some(Some(identity))`), including tracks published after its POST.
    pub(super) player: Option<Option<String>>,
    /// A WHIP/WHEP session: the client's offer as the media node last took it (ICE lines
    /// folded in from PATCHes) and the resource's ETag (our ICE ufrag, quoted).
    pub(super) resource: Option<(String, String)>,
    /// Role and grants now: the token's at join, then whatever the REST API set.
    pub(super) role: String,
    pub(super) grants: Grants,
}

/// One participant session (a WebSocket, or a WHIP/WHEP resource with no socket).
pub struct Session {
    pub id: String,
    /// Who joined, with the token's role and grants; the live ones are `role()`/`grants()`.
    pub member: Member,
    /// A WebSocket session (renegotiates, gets auto-subscribed); false for WHIP/WHEP, whose
    /// m-lines are fixed by their one offer.
    pub interactive: bool,
    pub(super) state: Mutex<SessionState>,
    /// Serializes SDP work of this session so an offer never overtakes an answer.
    pub(crate) sdp: tokio::sync::Mutex<()>,
}

impl Session {
    pub fn phase(&self) -> Phase {
        self.state.lock().unwrap().phase
    }

    pub fn peer(&self) -> Option<(NodeHandle, PeerId)> {
        let s = self.state.lock().unwrap();
        Some((s.node.clone()?, s.peer?))
    }

    pub fn tracks(&self) -> Vec<TrackInfo> {
        self.state.lock().unwrap().tracks.clone()
    }

    /// The grants the session works under now.
    pub fn grants(&self) -> Grants {
        self.state.lock().unwrap().grants
    }

    /// Hosts and room admins may use host controls (live role and grants).
    pub fn is_host(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.role == "host" || s.grants.room_admin
    }

    /// The member with its live role and grants (what records and events must carry).
    pub fn member_now(&self) -> Member {
        let s = self.state.lock().unwrap();
        Member {
            role: s.role.clone(),
            grants: s.grants,
            ..self.member.clone()
        }
    }

    /// A WHIP/WHEP resource's offer (as the node last took it) and our answer to it; the
    /// ETag is our ICE ufrag in that answer, so it changes exactly on an ICE restart.
    /// Returns the new ETag.
    pub fn set_resource(&self, offer: String, answer: &str) -> String {
        let etag = format!("\"{}\"", crate::sdpfrag::ufrag(answer).unwrap_or("-"));
        self.state.lock().unwrap().resource = Some((offer, etag.clone()));
        etag
    }

    /// The resource's offer changed without a new answer (trickled candidates folded in);
    /// the ETag stays.
    pub fn update_resource_offer(&self, offer: String) {
        if let Some((o, _)) = self.state.lock().unwrap().resource.as_mut() {
            *o = offer;
        }
    }

    /// The resource's offer and ETag (WHIP/WHEP sessions only).
    pub fn resource(&self) -> Option<(String, String)> {
        self.state.lock().unwrap().resource.clone()
    }

    /// Marks a WHEP session as a player of the room's tracks (of `only` when given).
    pub fn make_player(&self, only: Option<String>) {
        self.state.lock().unwrap().player = Some(only);
    }

    /// Whether this session is a WHEP player that wants tracks of `identity`.
    pub(super) fn plays(&self, identity: &str) -> bool {
        match &self.state.lock().unwrap().player {
            Some(Some(only)) => only == identity,
            Some(None) => true,
            None => false,
        }
    }

    /// Replaces role and grants; returns the grants before.
    pub(super) fn set_access(&self, role: String, grants: Grants) -> Grants {
        let mut s = self.state.lock().unwrap();
        s.role = role;
        std::mem::replace(&mut s.grants, grants)
    }

    /// Queue a message to the client; dropped when detached.
    pub fn send(&self, msg: ServerMsg) {
        let s = self.state.lock().unwrap();
        if let Some(tx) = &s.outbox {
            let fin = msg.is_final();
            let _ = tx.send(Outgoing::Msg(msg));
            if fin {
                let _ = tx.send(Outgoing::Close);
            }
        }
    }
}
