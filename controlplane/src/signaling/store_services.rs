//! `StoreServices`: the production `SignalServices`, on cp-core's auth, records and services
//! over the `Store` held in `AppState`.
//!
//! Must never: bypass the services' rules (chat is stored through `services::chat`, tokens
//! verified by `TokenService`), or leak a password hash or secret into a message.

use std::net::IpAddr;
use std::sync::Arc;

use shardcast_dataplane::node::MediaKind;

use super::messages::{track_to_wire, ChatInfo, ParticipantInfo, TrackInfo};
use super::services::{
    BoxFuture, Grants, Member, Presence, Restored, RoomPolicy, SignalError, SignalServices,
    StoredParticipant,
};
use crate::app::AppState;
use crate::auth::tokens::Expected;
use crate::error::ApiError;
use crate::ids::{Identity, NodeId, RoomName, TenantId};
use crate::store::lease::InstanceLease;
use crate::store::records::{
    ChatRecord, Grants as RecordGrants, ParticipantRecord, ParticipantRole, ParticipantState,
    TrackKind, TrackRecord,
};
use crate::store::typed::{get_json, list_json_limited, to_json};
use crate::store::{keys, CasOutcome, End, Expect, Store, StoreError, TxnWrite};

pub struct StoreServices {
    state: AppState,
    /// This instance's lease: every participant record it writes is on it, so they vanish
    /// within one ttl when the instance dies.
    lease: Arc<InstanceLease>,
}

impl StoreServices {
    pub fn new(state: AppState) -> Self {
        let lease = InstanceLease::new(state.store.clone(), state.config.session_lease);
        crate::services::rooms::expire_empty_rooms(state.store.clone(), state.events.clone());
        Self { state, lease }
    }

    /// The empty-room marker to write with `i`'s leave when it is the room's last record.
    /// (Two last participants leaving at once may both see the other: that room then stays
    /// until someone joins and leaves it again, or it is deleted.)
    async fn empty_after_leaving(
        &self,
        t: &TenantId,
        r: &RoomName,
        i: &Identity,
    ) -> Result<Option<TxnWrite>, StoreError> {
        let present = self
            .store()
            .list_prefix_limited(&keys::participants_prefix(t, r), 2, End::First)
            .await?;
        if present
            .iter()
            .any(|kv| kv.key != keys::participant(t, r, i))
        {
            return Ok(None);
        }
        let timeout = match crate::services::rooms::get(self.store(), t, r).await {
            Ok(room) => room.settings.empty_timeout_secs,
            Err(_) => return Ok(None), // the room is gone already
        };
        crate::services::rooms::empty_marker(self.store(), t, r, timeout).await
    }

    /// Writes the participant's record on the instance's lease, with the room's empty
    /// marker deleted (it is not empty any more) and, with `seat = Some(max)`, its seat
    /// taken: one transaction. A lease lost to a long store outage is replaced once.
    async fn write_record(
        &self,
        member: &Member,
        presence: Presence,
        node: Option<&str>,
        tracks: &[TrackInfo],
        seat: Option<u32>,
    ) -> Result<(), SignalError> {
        let (t, r, i) = ids(member)?;
        let key = keys::participant(&t, &r, &i);
        let existing = get_json::<ParticipantRecord>(self.store(), &key)
            .await
            .map_err(store_err)?;
        let record = participant_record(
            member,
            i.clone(),
            presence,
            node,
            tracks,
            existing.as_ref().map(|e| &e.value),
        );
        let value = to_json(&key, &record).map_err(store_err)?;
        for _ in 0..2 {
            let lease = self.lease.get().await.map_err(store_err)?;
            let writes = vec![
                TxnWrite::Put {
                    key: key.clone(),
                    value: value.clone(),
                    lease: Some(lease),
                },
                TxnWrite::Delete {
                    key: keys::empty_room(&t, &r),
                },
            ];
            let outcome = match seat {
                None => self.store().transaction(Vec::new(), writes).await,
                Some(max) => {
                    let now = crate::services::now_unix_ms();
                    crate::services::seats::take_with(self.store(), &t, &r, &i, max, now, writes)
                        .await
                }
            };
            match outcome {
                Ok(true) => return Ok(()),
                // Only the seat's condition can fail: a full room.
                Ok(false) => {
                    let max = seat.unwrap_or_default();
                    return Err(api_to_signal(crate::services::seats::room_full(max)));
                }
                Err(StoreError::LeaseNotFound(l)) => self.lease.lost(l),
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(store_err(StoreError::Backend(
            "the session lease kept being lost".into(),
        )))
    }

    async fn max_participants(&self, member: &Member) -> Result<Option<u32>, SignalError> {
        let (t, r, _) = ids(member)?;
        let room = crate::services::rooms::get(self.store(), &t, &r)
            .await
            .map_err(api_to_signal)?;
        Ok(room.settings.max_participants)
    }

    fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }
}

/// API error → protocol error code (docs/PROTOCOL.md names).
pub fn api_to_signal(e: ApiError) -> SignalError {
    let code = match &e {
        ApiError::TokenExpired => "token_expired",
        ApiError::TokenNotYetValid => "token_not_yet_valid",
        ApiError::TokenInvalid(_) | ApiError::TokenWrongRoom | ApiError::TokenWrongTenant => {
            "token_invalid"
        }
        ApiError::WrongPassword => "password_wrong",
        ApiError::RateLimited { .. } => "rate_limited",
        ApiError::Forbidden(_) | ApiError::Unauthorized(_) => "forbidden",
        ApiError::NotFound { code, .. } if *code == "room_not_found" => "room_not_found",
        ApiError::NotFound { .. } => "unknown_participant",
        ApiError::Conflict { code, .. } if *code == "room_full" => "room_full",
        ApiError::InvalidJson(_) | ApiError::InvalidRequest(_) => "invalid_message",
        ApiError::Unavailable(detail) => {
            return SignalError::hidden(
                "store_unavailable",
                "the store is unavailable; try again",
                detail,
            );
        }
        ApiError::Internal(detail) => {
            return SignalError::hidden("unavailable", "internal error", detail);
        }
        _ => "unavailable",
    };
    SignalError::new(code, e.to_string())
}

fn store_err(e: crate::store::StoreError) -> SignalError {
    SignalError::hidden(
        "store_unavailable",
        "the store is unavailable; try again",
        e,
    )
}

pub(crate) fn role_name(r: ParticipantRole) -> &'static str {
    match r {
        ParticipantRole::Host => "host",
        ParticipantRole::Participant => "participant",
        ParticipantRole::Viewer => "viewer",
    }
}

fn role_of(s: &str) -> ParticipantRole {
    match s {
        "host" => ParticipantRole::Host,
        "viewer" => ParticipantRole::Viewer,
        _ => ParticipantRole::Participant,
    }
}

fn ids(m: &Member) -> Result<(TenantId, RoomName, Identity), SignalError> {
    let bad = |e: crate::ids::InvalidId| SignalError::new("invalid_message", e.to_string());
    Ok((
        TenantId::parse(m.tenant.clone()).map_err(bad)?,
        RoomName::parse(m.room.clone()).map_err(bad)?,
        Identity::parse(m.identity.clone()).map_err(bad)?,
    ))
}

fn chat_info(c: ChatRecord) -> ChatInfo {
    ChatInfo {
        id: c.seq.to_string(),
        identity: c.from.to_string(),
        name: c.name,
        text: c.text,
        ts: c.sent_at_ms,
    }
}

/// The stored record of `member`'s participant; `existing` keeps its join time and the
/// REST-set video pause.
fn participant_record(
    member: &Member,
    identity: Identity,
    presence: Presence,
    node: Option<&str>,
    tracks: &[TrackInfo],
    existing: Option<&ParticipantRecord>,
) -> ParticipantRecord {
    let g = member.grants;
    ParticipantRecord {
        identity,
        name: member.name.clone(),
        role: role_of(&member.role),
        grants: RecordGrants {
            can_publish: g.can_publish,
            can_subscribe: g.can_subscribe,
            can_chat: g.can_chat,
            room_admin: g.room_admin,
        },
        state: match presence {
            Presence::Waiting => ParticipantState::Waiting,
            Presence::Joined => ParticipantState::Joined,
        },
        node: node.and_then(|n| NodeId::parse(n).ok()),
        peer: None,
        tracks: tracks
            .iter()
            .filter_map(|t| {
                Some(TrackRecord {
                    id: super::messages::track_from_wire(&t.id)?.0,
                    kind: super::messages::kind_of(t.kind),
                    muted: t.muted,
                    rids: t.rids.clone(),
                    source: t.source,
                })
            })
            .collect(),
        video_paused: existing.is_some_and(|e| e.video_paused),
        joined_at: existing.map_or_else(crate::services::now_unix_secs, |e| e.joined_at),
    }
}

impl SignalServices for StoreServices {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Member, SignalError>> {
        Box::pin(async move {
            let v = self
                .state
                .tokens
                .verify(self.store(), token, Expected::default())
                .await
                .map_err(api_to_signal)?;
            let g = v.claims.grants;
            Ok(Member {
                tenant: v.tenant.to_string(),
                room: v.claims.room.to_string(),
                identity: v.identity.to_string(),
                name: v.claims.name.clone(),
                role: role_name(v.claims.role).into(),
                grants: Grants {
                    can_publish: g.can_publish,
                    can_subscribe: g.can_subscribe,
                    can_chat: g.can_chat,
                    room_admin: g.room_admin,
                },
                region: v.claims.region.clone(),
                vouched: false,
            })
        })
    }

    fn check_room<'a>(
        &'a self,
        member: &'a Member,
        pw: Option<&'a str>,
        source: IpAddr,
    ) -> BoxFuture<'a, Result<RoomPolicy, SignalError>> {
        Box::pin(async move {
            let (t, r, _) = ids(member)?;
            if self.state.config.rooms_auto_create {
                crate::services::rooms::get_or_create(
                    self.store(),
                    self.state.events.as_ref(),
                    &t,
                    &r,
                )
                .await
                .map_err(api_to_signal)?;
            }
            if !member.vouched {
                crate::services::rooms::check_password(
                    self.store(),
                    &self.state.password_limiter,
                    &t,
                    &r,
                    pw,
                    source,
                    crate::services::now_unix_ms(),
                )
                .await
                .map_err(|e| match (e, pw) {
                    (ApiError::WrongPassword, None) => {
                        SignalError::new("password_required", "this room needs a password")
                    }
                    (e, _) => api_to_signal(e),
                })?;
            }
            let room = crate::services::rooms::get(self.store(), &t, &r)
                .await
                .map_err(api_to_signal)?;
            Ok(RoomPolicy {
                ask_before_join: room.settings.ask_before_join,
                max_participants: room.settings.max_participants,
                video_codecs: room
                    .settings
                    .video_codecs
                    .iter()
                    .map(|c| c.as_str().to_string())
                    .collect(),
            })
        })
    }

    fn ice_servers(&self, member: &Member) -> Vec<crate::turn::IceServer> {
        crate::turn::ice_servers(
            &self.state.config.turn,
            &member.identity,
            crate::services::now_unix_secs(),
        )
    }

    fn put_participant<'a>(
        &'a self,
        member: &'a Member,
        presence: Presence,
        node: Option<&'a str>,
        tracks: &'a [TrackInfo],
    ) -> BoxFuture<'a, Result<(), SignalError>> {
        Box::pin(self.write_record(member, presence, node, tracks, None))
    }

    fn record_losses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.lease.losses())
    }

    fn confirm_lease(&self) -> BoxFuture<'_, Result<(), SignalError>> {
        Box::pin(async move { self.lease.confirm().await.map(|_| ()).map_err(store_err) })
    }

    fn restore_participant<'a>(
        &'a self,
        member: &'a Member,
        presence: Presence,
        node: Option<&'a str>,
        tracks: &'a [TrackInfo],
    ) -> BoxFuture<'a, Result<Restored, SignalError>> {
        Box::pin(async move {
            let (t, r, i) = ids(member)?;
            let key = keys::participant(&t, &r, &i);
            let record = participant_record(member, i, presence, node, tracks, None);
            let value = to_json(&key, &record).map_err(store_err)?;
            for _ in 0..2 {
                let lease = self.lease.get().await.map_err(store_err)?;
                // Only where no record is: one there was written since by this session (on
                // the new lease) or by a newer session of the identity (on any instance).
                let outcome = self
                    .store()
                    .compare_and_swap(&key, Expect::Absent, value.clone(), Some(lease))
                    .await;
                match outcome {
                    Ok(CasOutcome::Swapped { revision }) => {
                        // A participant left meanwhile may have marked the room empty.
                        self.store()
                            .delete(&keys::empty_room(&t, &r))
                            .await
                            .map_err(store_err)?;
                        return Ok(Restored::Written { revision });
                    }
                    Ok(CasOutcome::Conflict { .. }) => return Ok(Restored::Present),
                    Err(StoreError::LeaseNotFound(l)) => self.lease.lost(l),
                    Err(e) => return Err(store_err(e)),
                }
            }
            Err(store_err(StoreError::Backend(
                "the session lease kept being lost".into(),
            )))
        })
    }

    fn forget_restored<'a>(&'a self, member: &'a Member, revision: u64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok((t, r, i)) = ids(member) else { return };
            let key = keys::participant(&t, &r, &i);
            if let Err(e) = self.store().compare_and_delete(&key, revision).await {
                tracing::warn!(error = %e, "signaling: removing a rewritten record");
            }
        })
    }

    fn take_seat<'a>(&'a self, member: &'a Member) -> BoxFuture<'a, Result<(), SignalError>> {
        Box::pin(async move {
            let (t, r, i) = ids(member)?;
            let Some(max) = self.max_participants(member).await? else {
                return Ok(());
            };
            crate::services::seats::take(
                self.store(),
                &t,
                &r,
                &i,
                max,
                crate::services::now_unix_ms(),
            )
            .await
            .map_err(api_to_signal)
        })
    }

    fn check_seat<'a>(&'a self, member: &'a Member) -> BoxFuture<'a, Result<(), SignalError>> {
        Box::pin(async move {
            let (t, r, i) = ids(member)?;
            let Some(max) = self.max_participants(member).await? else {
                return Ok(());
            };
            crate::services::seats::would_fit(
                self.store(),
                &t,
                &r,
                &i,
                max,
                crate::services::now_unix_ms(),
            )
            .await
            .map_err(api_to_signal)
        })
    }

    fn enter_participant<'a>(
        &'a self,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<(), SignalError>> {
        Box::pin(async move {
            let max = self.max_participants(member).await?;
            self.write_record(member, Presence::Joined, None, &[], max)
                .await
        })
    }

    fn remove_participant<'a>(&'a self, member: &'a Member) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok((t, r, i)) = ids(member) {
                // Record and seat in one transaction. (If it fails, the record still goes
                // with the instance's lease, and the seat is freed by the next join that
                // finds the room full.)
                let also = match self.empty_after_leaving(&t, &r, &i).await {
                    Ok(marker) => marker,
                    Err(e) => {
                        tracing::warn!(error = %e, "signaling: cannot tell if the room empties");
                        None
                    }
                };
                if let Err(e) = crate::services::seats::leave(self.store(), &t, &r, &i, also).await
                {
                    tracing::warn!(error = %e, "signaling: removing participant");
                }
            }
        })
    }

    fn participants<'a>(
        &'a self,
        tenant: &'a str,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredParticipant>, SignalError>> {
        Box::pin(async move {
            let (Ok(t), Ok(r)) = (TenantId::parse(tenant), RoomName::parse(room)) else {
                return Ok(Vec::new());
            };
            let list = list_json_limited::<ParticipantRecord>(
                self.store(),
                &keys::participants_prefix(&t, &r),
                crate::services::rooms::MAX_ROOM_READ,
                End::First,
            )
            .await
            .map_err(store_err)?;
            Ok(list
                .into_iter()
                .map(|v| {
                    let p = v.value;
                    let identity = p.identity.to_string();
                    StoredParticipant {
                        info: ParticipantInfo {
                            identity: identity.clone(),
                            name: p.name,
                            role: role_name(p.role).into(),
                            grants: serde_json::to_value(p.grants).unwrap_or_default(),
                        },
                        presence: match p.state {
                            ParticipantState::Waiting => Presence::Waiting,
                            ParticipantState::Joined => Presence::Joined,
                        },
                        tracks: p
                            .tracks
                            .into_iter()
                            .map(|t| TrackInfo {
                                id: track_to_wire(shardcast_dataplane::node::TrackId(t.id)),
                                identity: identity.clone(),
                                kind: match t.kind {
                                    TrackKind::Audio => MediaKind::Audio,
                                    TrackKind::Video => MediaKind::Video,
                                },
                                source: t.source,
                                rids: t.rids,
                                muted: t.muted,
                            })
                            .collect(),
                    }
                })
                .collect())
        })
    }

    fn append_chat<'a>(
        &'a self,
        member: &'a Member,
        text: &'a str,
    ) -> BoxFuture<'a, Result<ChatInfo, SignalError>> {
        Box::pin(async move {
            let (t, r, i) = ids(member)?;
            let new = crate::services::chat::NewMessage {
                from: &i,
                name: &member.name,
                text,
            };
            let rec = crate::services::chat::post(
                self.store(),
                self.state.events.as_ref(),
                &t,
                &r,
                new,
                crate::services::chat::ChatLimits {
                    max_bytes: self.state.config.chat_max_bytes,
                    keep: self.state.config.chat_history_max as u64,
                },
            )
            .await
            .map_err(api_to_signal)?;
            Ok(chat_info(rec))
        })
    }

    fn chat_history<'a>(
        &'a self,
        tenant: &'a str,
        room: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ChatInfo>, SignalError>> {
        Box::pin(async move {
            let (Ok(t), Ok(r)) = (TenantId::parse(tenant), RoomName::parse(room)) else {
                return Ok(Vec::new());
            };
            let list = crate::services::chat::history(self.store(), &t, &r, limit)
                .await
                .map_err(api_to_signal)?;
            Ok(list.into_iter().map(chat_info).collect())
        })
    }
}
