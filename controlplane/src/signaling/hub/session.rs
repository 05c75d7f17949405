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
use crate::signaling::messages::{ServerMsg, TrackInfo, TrackSource};
use crate::signaling::services::{Grants, Member, SignalError};

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

    /// How many messages the queue holds at most.
    fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// A message was dropped for want of room elsewhere: the outbox counts as overflowed.
    fn set_overflowed(&self) {
        self.overflow.send_replace(true);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Joined,
    Closed,
}

/// What a player (a WHEP session, an egress) takes of its room's tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plays {
    /// Every track.
    Everyone,
    /// The tracks of one identity.
    Only(String),
    /// The tracks of the room's active speaker (the identity followed now).
    Speaker(Option<String>),
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
    /// What the client's last `offer` said its send m-lines carry, by mid.
    pub(super) sources: std::collections::BTreeMap<String, TrackSource>,
    pub(super) server_offer_pending: bool,
    /// While the client's own offer is being answered (`Some`), server offers wait here, so
    /// the client never gets an offer before the answer to its own (see `hold_server_offers`).
    pub(super) held_offers: Option<Vec<ServerMsg>>,
    /// From the moment the session is in the room until its client has `joined` (the room as
    /// it was then), messages to it wait here: an event is never seen before the state it
    /// changes (see `release_held`). At most the outbox's capacity.
    pub(super) held_events: Option<Vec<ServerMsg>>,
    /// Its peer went with its node (`node_lost`) and no new one exists yet: what the client
    /// still sends about the old one (an answer to an offer made before, trickled candidates)
    /// is dropped rather than answered with an error.
    pub(super) peer_lost: bool,
    /// A WHEP player (or an egress): which of the room's tracks it plays, including tracks
    /// published after its POST.
    pub(super) player: Option<Plays>,
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
    /// The room's video codec preference when the session opened (`RoomPolicy`), handed to
    /// the media node with its peer.
    pub video_codecs: Vec<String>,
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

    /// What the client's latest offer says its send m-lines carry (replaces the last).
    pub fn set_sources(&self, sources: std::collections::BTreeMap<String, TrackSource>) {
        self.state.lock().unwrap().sources = sources;
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

    /// Marks a WHEP session as a player of the room's tracks.
    pub fn make_player(&self, plays: Plays) {
        self.state.lock().unwrap().player = Some(plays);
    }

    /// Whether this session is a player that wants the tracks of `identity`.
    pub(super) fn plays(&self, identity: &str) -> bool {
        match &self.state.lock().unwrap().player {
            Some(Plays::Everyone) => true,
            Some(Plays::Only(only)) => only == identity,
            // (Its one audio and one video line take the first of each: `follow_speaker`.)
            Some(Plays::Speaker(speaker)) => speaker.as_deref() == Some(identity),
            None => false,
        }
    }

    /// A player that follows the active speaker: whose video it plays now.
    pub fn speaker(&self) -> Option<String> {
        match &self.state.lock().unwrap().player {
            Some(Plays::Speaker(speaker)) => speaker.clone(),
            _ => None,
        }
    }

    /// Replaces role and grants; returns the grants before.
    pub(super) fn set_access(&self, role: String, grants: Grants) -> Grants {
        let mut s = self.state.lock().unwrap();
        s.role = role;
        std::mem::replace(&mut s.grants, grants)
    }

    /// For a message about the session's peer when it has none: fine (dropped) if the peer
    /// went with its node and the client had not yet seen `node_lost`, else an error.
    pub(super) fn stale_after_node_lost(&self) -> Result<(), SignalError> {
        if self.state.lock().unwrap().peer_lost {
            tracing::debug!("signaling: dropped a message about a peer lost with its node");
            return Ok(());
        }
        Err(SignalError::new(
            "invalid_message",
            "no peer connection yet",
        ))
    }

    /// Queue a message to the client (held until `joined` while `held_events` is on);
    /// dropped when detached.
    pub fn send(&self, msg: ServerMsg) {
        let mut s = self.state.lock().unwrap();
        let cap = s.outbox.as_ref().map_or(0, Outbox::capacity);
        match s.held_events.as_mut() {
            Some(held) if held.len() < cap => held.push(msg),
            // More than the outbox could take at once: the client is as good as a slow reader.
            Some(_) => {
                if let Some(tx) = &s.outbox {
                    tx.set_overflowed();
                }
            }
            None => push(&s, msg),
        }
    }

    /// Messages to this session wait from now until `release_held` (the `joined` of a
    /// session entering the room, or of one resuming on a new socket).
    pub(super) fn hold_messages(st: &mut SessionState) {
        st.held_events.get_or_insert_with(Vec::new);
    }

    /// Sends `first` (the `joined`), then the messages held since `hold_messages`.
    pub(super) fn release_held(&self, first: Option<ServerMsg>) {
        let mut s = self.state.lock().unwrap();
        let held = s.held_events.take().unwrap_or_default();
        for msg in first.into_iter().chain(held) {
            push(&s, msg);
        }
    }

    /// The client's offer is being answered: server offers (renegotiations the media node
    /// starts, e.g. for a track published meanwhile) are held until the returned hold sends
    /// the answer ([`OfferHold::answer`]) or is dropped, so the client always sees its answer
    /// first. Without this a subscription made while the answer waited on the store reached
    /// the client as an offer while its own was still open (glare the protocol does not allow).
    pub fn hold_server_offers(&self) -> OfferHold<'_> {
        self.state
            .lock()
            .unwrap()
            .held_offers
            .get_or_insert_with(Vec::new);
        OfferHold { session: self }
    }

    fn release(&self, answer: Option<ServerMsg>) {
        let mut s = self.state.lock().unwrap();
        let held = s.held_offers.take().unwrap_or_default();
        for msg in answer.into_iter().chain(held) {
            push(&s, msg);
        }
    }

    /// A server offer of `from`: sent now, or held while the client's own offer is being
    /// answered; dropped if `from` is no longer the session's peer (its node was lost or
    /// drained: the client is told `node_lost` and never sees that peer's offers after it).
    pub(super) fn send_offer(&self, from: PeerId, sdp: String) {
        let mut s = self.state.lock().unwrap();
        if s.peer != Some(from) {
            return;
        }
        s.server_offer_pending = true;
        let msg = ServerMsg::Offer { sdp };
        match s.held_offers.as_mut() {
            Some(held) => held.push(msg),
            None => push(&s, msg),
        }
    }
}

/// Server offers held while a client offer is answered; released on drop if not before.
pub struct OfferHold<'a> {
    session: &'a Session,
}

impl OfferHold<'_> {
    /// Sends the answer to the client's offer, then the server offers held meanwhile.
    pub fn answer(self, sdp: String) {
        self.session.release(Some(ServerMsg::Answer { sdp }));
    }
}

impl Drop for OfferHold<'_> {
    fn drop(&mut self) {
        // After `answer` this finds nothing held; after a failed offer it sends the offers.
        if self.session.state.lock().unwrap().held_offers.is_some() {
            self.session.release(None);
        }
    }
}

fn push(s: &SessionState, msg: ServerMsg) {
    if let Some(tx) = &s.outbox {
        let fin = msg.is_final();
        if tx.push(Outgoing::Msg(msg)) && fin {
            tx.push(Outgoing::Close(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const PEER: PeerId = PeerId(7);

    fn session() -> (Session, mpsc::Receiver<Outgoing>) {
        let (outbox, rx, _) = Outbox::new(16);
        let grants = Grants {
            can_publish: true,
            can_subscribe: true,
            can_chat: true,
            room_admin: false,
        };
        let member = Member {
            tenant: "t".into(),
            room: "r".into(),
            identity: "a".into(),
            name: "a".into(),
            role: "participant".into(),
            grants,
            region: None,
            vouched: false,
        };
        let state = SessionState {
            phase: Phase::Joined,
            outbox: Some(outbox),
            attach_gen: 0,
            node: None,
            peer: Some(PEER),
            subscribed: HashSet::new(),
            tracks: Vec::new(),
            withheld: Vec::new(),
            sources: std::collections::BTreeMap::new(),
            server_offer_pending: false,
            held_offers: None,
            held_events: None,
            peer_lost: false,
            player: None,
            resource: None,
            role: member.role.clone(),
            grants,
            chat: TokenBucket::new(1.0, 1, Instant::now()),
        };
        let s = Session {
            id: "s".into(),
            member,
            interactive: true,
            video_codecs: Vec::new(),
            state: Mutex::new(state),
            sdp: tokio::sync::Mutex::new(()),
        };
        (s, rx)
    }

    fn sent(rx: &mut mpsc::Receiver<Outgoing>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|o| match o {
                Outgoing::Msg(ServerMsg::Offer { sdp }) => format!("offer {sdp}"),
                Outgoing::Msg(ServerMsg::Answer { sdp }) => format!("answer {sdp}"),
                Outgoing::Msg(ServerMsg::Joined { .. }) => "joined".into(),
                Outgoing::Msg(ServerMsg::ParticipantLeft { identity }) => {
                    format!("left {identity}")
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn server_offers_made_while_a_client_offer_is_answered_follow_the_answer() {
        let (s, mut rx) = session();
        s.send_offer(PEER, "before".into());
        let hold = s.hold_server_offers();
        s.send_offer(PEER, "during-1".into());
        s.send_offer(PEER, "during-2".into());
        assert_eq!(
            sent(&mut rx),
            ["offer before"],
            "held while the offer is open"
        );
        hold.answer("ours".into());
        s.send_offer(PEER, "after".into());
        assert_eq!(
            sent(&mut rx),
            [
                "answer ours",
                "offer during-1",
                "offer during-2",
                "offer after"
            ]
        );
        assert!(s.state.lock().unwrap().server_offer_pending);
    }

    #[test]
    fn room_events_before_joined_follow_it() {
        let (s, mut rx) = session();
        let left = |who: &str| ServerMsg::ParticipantLeft {
            identity: who.into(),
        };
        Session::hold_messages(&mut s.state.lock().unwrap());
        s.send(left("b"));
        s.send(left("c"));
        assert!(sent(&mut rx).is_empty(), "held until joined");
        s.release_held(Some(ServerMsg::Joined {
            session: s.id.clone(),
            room: "r".into(),
            me: s.member.info(),
            participants: Vec::new(),
            tracks: Vec::new(),
            chat: Vec::new(),
            ice_servers: Vec::new(),
        }));
        s.send(left("d"));
        assert_eq!(sent(&mut rx), ["joined", "left b", "left c", "left d"]);
    }

    #[test]
    fn more_held_messages_than_the_outbox_takes_overflow_it() {
        let (outbox, _rx, overflowed) = Outbox::new(2);
        let (s, _) = session();
        s.state.lock().unwrap().outbox = Some(outbox);
        Session::hold_messages(&mut s.state.lock().unwrap());
        for _ in 0..2 {
            s.send(ServerMsg::Pong);
        }
        assert!(!*overflowed.borrow());
        s.send(ServerMsg::Pong);
        assert!(*overflowed.borrow(), "a third message finds no room");
        assert_eq!(
            s.state.lock().unwrap().held_events.as_ref().unwrap().len(),
            2
        );
    }

    #[test]
    fn offers_of_a_peer_the_session_no_longer_has_are_dropped() {
        let (s, mut rx) = session();
        s.send_offer(PeerId(8), "other".into());
        s.state.lock().unwrap().peer = None; // moved off its node
        s.send_offer(PEER, "old".into());
        assert!(sent(&mut rx).is_empty());
        assert!(!s.state.lock().unwrap().server_offer_pending);
    }

    #[test]
    fn a_failed_client_offer_releases_the_held_server_offers() {
        let (s, mut rx) = session();
        {
            let _hold = s.hold_server_offers();
            s.send_offer(PEER, "during".into());
            assert!(sent(&mut rx).is_empty());
        } // the offer failed: `?` dropped the hold
        assert_eq!(sent(&mut rx), ["offer during"]);
        s.send_offer(PEER, "after".into());
        assert_eq!(sent(&mut rx), ["offer after"]);
    }
}
