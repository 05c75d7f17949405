//! What signaling needs from the rest of the control plane (auth, rooms, participants, chat),
//! as one object-safe trait. The production implementation (`StoreServices`, in
//! `store_services.rs`) sits on cp-core's services and the `Store`; keeping the boundary
//! narrow lets signaling stay ignorant of key layouts and token formats.
//!
//! Must never: hold session state — that is the hub's.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use super::messages::{ChatInfo, ParticipantInfo, TrackInfo};
use crate::ids::Region;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A signaling failure with a stable protocol error code (docs/PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SignalError {
    pub code: &'static str,
    pub message: String,
}

impl SignalError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A failure whose detail (node URLs, store errors, internal paths) must not reach the
    /// client: the detail is logged under a fresh error id, and the client gets `code`,
    /// `message` and that id to quote to the operator.
    pub fn hidden(code: &'static str, message: &str, detail: impl std::fmt::Display) -> Self {
        let id = crate::error::error_id();
        tracing::warn!(target: "signaling", error_id = %id, code, %detail, "{message}");
        Self::new(code, format!("{message} (error id {id})"))
    }
}

/// Grants of a participant (JWT claim names are camelCase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grants {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_chat: bool,
    pub room_admin: bool,
}

/// An authenticated participant: who, where, with which rights.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub tenant: String,
    pub room: String,
    pub identity: String,
    pub name: String,
    /// `host`, `participant` or `viewer`.
    pub role: String,
    pub grants: Grants,
    /// The token's region hint: where the room goes if this member's offer places it.
    pub region: Option<Region>,
    /// Let in by the server itself on a tenant's request (an egress's recorder): a room's
    /// password is not asked of it.
    pub vouched: bool,
}

impl Member {
    /// Hosts and room admins may use host controls.
    pub fn is_host(&self) -> bool {
        self.role == "host" || self.grants.room_admin
    }

    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            identity: self.identity.clone(),
            name: self.name.clone(),
            role: self.role.clone(),
            grants: serde_json::to_value(self.grants).unwrap_or_default(),
        }
    }

    /// The media node's room id: tenant-qualified so tenants never share a node room.
    pub fn node_room(&self) -> String {
        format!("{}/{}", self.tenant, self.room)
    }
}

/// Room settings that matter at join time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomPolicy {
    pub ask_before_join: bool,
    pub max_participants: Option<u32>,
    /// The room's video codec preference as the media node takes it (lower-case encoding
    /// names, most preferred first), for the session's peer.
    pub video_codecs: Vec<String>,
}

/// Where a participant is in the join flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Waiting,
    Joined,
}

/// A participant as stored, with its published tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredParticipant {
    pub info: ParticipantInfo,
    pub presence: Presence,
    pub tracks: Vec<TrackInfo>,
}

/// What [`SignalServices::restore_participant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The record was missing and is written now, at this revision.
    Written { revision: u64 },
    /// A record was there already (written since, by this session or a newer one): untouched.
    Present,
}

pub trait SignalServices: Send + Sync + 'static {
    /// Verify an access token (signature, exp/nbf, tenant) → who it is for.
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Member, SignalError>>;
    /// The room exists and the password (if any) matches; wrong passwords are rate-limited
    /// per (room, source).
    fn check_room<'a>(
        &'a self,
        member: &'a Member,
        password: Option<&'a str>,
        source: IpAddr,
    ) -> BoxFuture<'a, Result<RoomPolicy, SignalError>>;
    /// The ICE servers (TURN with time-limited credentials, STUN) handed to this member's
    /// client; empty when none are configured.
    fn ice_servers(&self, member: &Member) -> Vec<crate::turn::IceServer>;
    /// Create or update the participant's record.
    fn put_participant<'a>(
        &'a self,
        member: &'a Member,
        presence: Presence,
        node: Option<&'a str>,
        tracks: &'a [TrackInfo],
    ) -> BoxFuture<'a, Result<(), SignalError>>;
    /// Ticks whenever the lease this instance's participant records live on was found lost
    /// (a store outage longer than its ttl): those records are gone, and the hub writes its
    /// live sessions' again (`hub::restore`). `None`: the records never expire on their own.
    fn record_losses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Makes sure the records' lease is alive now, a new one if it was lost: the first step
    /// of a rewrite, so that none is written on a lease that is already gone.
    fn confirm_lease(&self) -> BoxFuture<'_, Result<(), SignalError>>;
    /// Writes the participant's record only if it has none (after a lost lease): never over
    /// a record written since, by this session or by a newer one of the same identity.
    fn restore_participant<'a>(
        &'a self,
        member: &'a Member,
        presence: Presence,
        node: Option<&'a str>,
        tracks: &'a [TrackInfo],
    ) -> BoxFuture<'a, Result<Restored, SignalError>>;
    /// Deletes the record [`SignalServices::restore_participant`] wrote at `revision`, if it is
    /// still that one (its session ended while it was being written).
    fn forget_restored<'a>(&'a self, member: &'a Member, revision: u64) -> BoxFuture<'a, ()>;
    /// Take a seat in the member's room if it has `max_participants`: atomic across every
    /// instance, so concurrent joins never overfill a room (`room_full` when no seat is
    /// free). A member that holds a seat already keeps it.
    fn take_seat<'a>(&'a self, member: &'a Member) -> BoxFuture<'a, Result<(), SignalError>>;
    /// Whether the member could take a seat now (`room_full` if not), writing nothing: a
    /// quick refusal before a session is made. [`SignalServices::enter_participant`] decides.
    fn check_seat<'a>(&'a self, member: &'a Member) -> BoxFuture<'a, Result<(), SignalError>>;
    /// The member joins: its seat (in a room with `max_participants`; `room_full` when none
    /// is free, kept when it holds one) and its joined record, in one transaction.
    fn enter_participant<'a>(
        &'a self,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), SignalError>>;
    /// Remove the participant's record and give back its seat (no error when absent).
    fn remove_participant<'a>(&'a self, member: &'a Member) -> BoxFuture<'a, ()>;
    /// Every stored participant of the room.
    fn participants<'a>(
        &'a self,
        tenant: &'a str,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredParticipant>, SignalError>>;
    /// Store a chat message, then fan it out to the room (through the room events hook).
    fn append_chat<'a>(
        &'a self,
        member: &'a Member,
        text: &'a str,
    ) -> BoxFuture<'a, Result<ChatInfo, SignalError>>;
    /// The last `limit` messages, oldest first.
    fn chat_history<'a>(
        &'a self,
        tenant: &'a str,
        room: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ChatInfo>, SignalError>>;
}
