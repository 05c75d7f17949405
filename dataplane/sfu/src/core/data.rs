//! Room data in `ShardCore`: a message on a peer's room-data channel is checked against its
//! grant, size and budget, wrapped once in an envelope naming the sender, written to the
//! same kind of channel of every other member of the room on this shard, and handed once to
//! the node's other shards for their members (`crate::data` has the labels, envelope and
//! limits; docs/PROTOCOL.md, "Data channels").
//!
//! Must never: block or queue without bound for a slow receiver (its SCTP buffer is
//! bounded by str0m; what does not fit is dropped and counted), or let one sender's messages
//! cost the shard more than its budget allows.

use std::sync::Arc;
use std::time::Instant;

use str0m::channel::{ChannelData, ChannelId};
use tracing::debug;

use super::{CoreError, ShardCore};
use crate::api::{Output, ShardMessage};
use crate::data::{envelope, DataDrop, DataKind, LOSSY_BACKLOG, MAX_PAYLOAD};
use crate::ids::{PeerId, RoomId};

impl ShardCore {
    /// Grant or revoke a peer's right to send room data (what it receives is unaffected).
    pub fn set_can_send_data(&mut self, peer: PeerId, allowed: bool) -> Result<(), CoreError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(CoreError::UnknownPeer(peer))?;
        p.data.allowed = allowed;
        Ok(())
    }

    /// str0m: peer `id` opened data channel `channel` (in-band, DCEP) labelled `label`.
    pub(crate) fn on_channel_open(&mut self, id: PeerId, channel: ChannelId, label: &str) {
        if let Some(p) = self.peers.get_mut(&id) {
            if let Some(kind) = p.data.opened(channel, label) {
                debug!(peer = %id, ?kind, "room-data channel open");
            }
        }
    }

    pub(crate) fn on_channel_close(&mut self, id: PeerId, channel: ChannelId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.data.closed(channel);
        }
    }

    /// A message on one of peer `id`'s channels: room data goes to the room.
    pub(crate) fn on_channel_data(&mut self, now: Instant, id: PeerId, data: ChannelData) {
        let limits = self.config.data_limits;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(kind) = p.data.kind_of(data.id) else {
            return; // The client's own channel.
        };
        self.stats.data_in += 1;
        let refused = if !p.data.allowed {
            Some(DataDrop::NotAllowed)
        } else if data.data.len() > MAX_PAYLOAD {
            Some(DataDrop::TooLarge)
        } else if !p.data.budget.take(&limits, now, data.data.len()) {
            Some(DataDrop::RateLimited)
        } else {
            None
        };
        if let Some(reason) = refused {
            self.stats.data_drop(reason);
            return;
        }
        let sealed: Arc<[u8]> = envelope(&p.identity, !data.binary, &data.data).into();
        let room = p.room.clone();
        self.deliver_data(&room, kind, id, &sealed);
        self.stats.data_to_shards += 1;
        self.out.push_back(Output::ToEveryShard {
            msg: ShardMessage::Data {
                room,
                kind,
                from: id,
                envelope: sealed,
            },
        });
    }

    /// Write `envelope` to the `kind` channel of every member of `room` on this shard but
    /// `from`. Members without such a channel get nothing; one that cannot take it now is
    /// counted (`DataDrop::ReceiverBehind`) and skipped.
    pub(crate) fn deliver_data(
        &mut self,
        room: &RoomId,
        kind: DataKind,
        from: PeerId,
        envelope: &[u8],
    ) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        // The member list is copied out (into a buffer the core reuses) so each write may
        // touch the rest of the core.
        let mut members = std::mem::take(&mut self.route_scratch);
        members.clear();
        members.extend(r.members.iter().copied().filter(|m| *m != from));
        for &m in &members {
            let written = self.with_peer(m, |p| {
                let cid = p.data.channel(kind)?;
                let mut channel = p.rtc.channel(cid)?;
                if kind == DataKind::Lossy && channel.buffered_amount() > LOSSY_BACKLOG {
                    return Some(false);
                }
                Some(channel.write(true, envelope).unwrap_or(false))
            });
            match written.flatten() {
                None => {}
                Some(true) => {
                    self.stats.data_out += 1;
                    self.mark_dirty(m);
                }
                Some(false) => self.stats.data_drop(DataDrop::ReceiverBehind),
            }
        }
        self.route_scratch = members;
    }
}
