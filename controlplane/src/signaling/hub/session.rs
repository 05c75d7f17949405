//! One participant session as the hub sees it: its phase, outbox (the socket task's channel),
//! media peer, subscriptions, published tracks and its live role and grants.
//!
//! Must never: call a node or the store — the hub does that; this is state and the outbox.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use shardcast_dataplane::node::{PeerId, TrackId};
use tokio::sync::{mpsc, watch};

use crate::placement::NodeHandle;
use crate::signaling::limits::TokenBucket;
use crate::signaling::messages::{ServerMsg, TrackInfo};
use crate::signaling::services::{Grants, Member};

/// What a session's socket task receives. (Messages are not boxed: they are built once and
/// moved through the channel; the size difference is harmless here.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outgoing {
    Msg(ServerMsg),
    /// Send nothing more; close the socket (with a close frame naming the reason, if any).
    Close(Option<CloseReason>),
}

/// Why the server closes a socket, as its WebSocket close frame says (docs/PROTOCOL.md,
/// "Limits"): code 1008 (policy violation) and the stable reason code as the frame's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    /// The client did not read its messages fast enough; its outbox filled up.
    pub const SLOW_READER: CloseReason = CloseReason {
        code: 1008,
        reason: "slow_reader",
    };
    /// The client kept sending faster than `signaling.messages_per_sec` allows.
    pub const RATE_LIMITED: CloseReason = CloseReason {
        code: 1008,
        reason: "rate_limited",
    };
}

/// The bounded queue of one WebSocket's outgoing messages (`signaling.outbox_messages`).
///
/// Nothing waits for room: a message that finds the queue full is dropped and the outbox
/// marks itself overflowed, which the socket task sees (`overflowed`) and answers by ending
/// the session and dropping the connection — a client that does not read cannot make the
/// server hold an ever-growing backlog, nor slow down the room that produces the events.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    overflow: Arc<watch::Sender<bool>>,
}

impl Outbox {
    /// An outbox of `capacity` messages, its receiving end, and the overflow signal.
    pub fn new(capacity: usize) -> (Outbox, mpsc::Receiver<Outgoing>, watch::Receiver<bool>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (overflow, overflowed) = watch::channel(false);
        (
            Outbox {
                tx,
                overflow: Arc::new(overflow),
            },
            rx,
            overflowed,
        )
    }

    /// Queue one item; false if it was dropped (full: the outbox is overflowed now; or the
    /// socket task is gone).
    pub fn push(&self, out: Outgoing) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.send_replace(true);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether a message found the queue full.
    pub fn overflowed(&self) -> bool {
        *self.overflow.borrow()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Joined,
    Closed,
}

pub(super) struct SessionState {
    pub(super) phase: Phase,
    pub(super) outbox: Option<Outbox>,
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
    /// The participant's chat rate (`signaling.chat_per_sec`); outlives socket reconnects.
    pub(super) chat: TokenBucket,
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
            if tx.push(Outgoing::Msg(msg)) && fin {
                tx.push(Outgoing::Close(None));
            }
        }
    }
}
