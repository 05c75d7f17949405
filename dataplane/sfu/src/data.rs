//! Room data: what a participant sends on its data channels, as the room's other members
//! receive it (docs/PROTOCOL.md, "Data channels").
//!
//! A client opens a channel labelled [`RELIABLE_LABEL`] (ordered, reliable) and/or
//! [`LOSSY_LABEL`] (its own choice of unordered / no retransmissions). A message it sends on
//! one reaches every other member of its room that opened a channel with the same label, as
//! one binary message: an [`envelope`] naming the sender. Channels with other labels are the
//! client's own business: never relayed.
//!
//! This module is the pure part: labels, the envelope, the per-sender limits. The core
//! (`core/data.rs`) does the fan-out. Must never allocate per receiver: a message's envelope
//! is built once and written to each receiver's channel.

use std::time::{Duration, Instant};

use str0m::channel::ChannelId;

/// The label of the channel that carries reliable, ordered room data.
pub const RELIABLE_LABEL: &str = "shardcast";
/// The label of the channel that carries lossy room data (dropped rather than queued when a
/// receiver falls behind).
pub const LOSSY_LABEL: &str = "shardcast-lossy";
/// The largest payload a sender may send in one message (larger ones are dropped): what every
/// browser can send and receive in one message without interleaving trouble.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// The envelope's first byte.
pub const ENVELOPE_VERSION: u8 = 1;
/// Envelope flag: the sender sent a string (deliver the payload as UTF-8 text).
pub const FLAG_TEXT: u8 = 0x01;
/// A lossy message is not queued behind more than this many bytes already buffered on the
/// receiver's lossy channel.
pub const LOSSY_BACKLOG: usize = 16 * 1024;

/// Which of a member's two room-data channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Reliable,
    Lossy,
}

impl DataKind {
    /// The kind a channel label stands for; `None` for a channel that is not room data.
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            RELIABLE_LABEL => Some(DataKind::Reliable),
            LOSSY_LABEL => Some(DataKind::Lossy),
            _ => None,
        }
    }
}

/// The bytes a receiver gets for one message:
///
/// ```text
/// version (1 byte, = 1) | flags (1 byte: bit 0 = text) | identity length (2 bytes, big
/// endian) | the sender's identity (UTF-8) | the payload as sent
/// ```
///
/// Identities longer than 65 535 bytes are cut there (the control plane's are far shorter).
pub fn envelope(identity: &str, text: bool, payload: &[u8]) -> Vec<u8> {
    let id = &identity.as_bytes()[..identity.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(4 + id.len() + payload.len());
    out.push(ENVELOPE_VERSION);
    out.push(if text { FLAG_TEXT } else { 0 });
    out.extend_from_slice(&(id.len() as u16).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(payload);
    out
}

/// An envelope taken apart: (identity, text, payload). `None` if it is not one.
pub fn open_envelope(bytes: &[u8]) -> Option<(&str, bool, &[u8])> {
    let (&[version, flags, hi, lo], rest) = bytes.split_first_chunk::<4>()?;
    if version != ENVELOPE_VERSION {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    let (identity, payload) = rest.split_at_checked(len)?;
    Some((
        std::str::from_utf8(identity).ok()?,
        flags & FLAG_TEXT != 0,
        payload,
    ))
}

/// How much room data one sender may send: messages and bytes per second, each with a
/// burst. What goes over is dropped and counted (`DataDrop::RateLimited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLimits {
    pub messages_per_sec: u32,
    pub message_burst: u32,
    pub bytes_per_sec: u32,
    pub byte_burst: u32,
}

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            messages_per_sec: 50,
            message_burst: 100,
            bytes_per_sec: 64 * 1024,
            byte_burst: 256 * 1024,
        }
    }
}

/// One sender's two token buckets (messages, bytes).
#[derive(Debug, Clone)]
pub struct DataBudget {
    messages: f64,
    bytes: f64,
    at: Option<Instant>,
}

impl DataBudget {
    /// A full budget.
    pub fn new(limits: &DataLimits) -> Self {
        DataBudget {
            messages: f64::from(limits.message_burst),
            bytes: f64::from(limits.byte_burst),
            at: None,
        }
    }

    /// Whether a message of `len` bytes fits now; if it does, it is taken from the budget.
    pub fn take(&mut self, limits: &DataLimits, now: Instant, len: usize) -> bool {
        let dt = self
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
            .as_secs_f64();
        self.at = Some(now);
        self.messages = (self.messages + dt * f64::from(limits.messages_per_sec))
            .min(f64::from(limits.message_burst));
        self.bytes =
            (self.bytes + dt * f64::from(limits.bytes_per_sec)).min(f64::from(limits.byte_burst));
        let len = len as f64;
        if self.messages < 1.0 || self.bytes < len {
            return false;
        }
        self.messages -= 1.0;
        self.bytes -= len;
        true
    }
}

/// A peer's room data: whether it may send, the room-data channels it opened, its budget.
#[derive(Debug, Clone)]
pub struct PeerData {
    /// The `can_send_data` grant (the control plane's `canChat`); receiving needs none.
    pub allowed: bool,
    reliable: Option<ChannelId>,
    lossy: Option<ChannelId>,
    pub budget: DataBudget,
}

impl PeerData {
    pub fn new(allowed: bool, limits: &DataLimits) -> Self {
        PeerData {
            allowed,
            reliable: None,
            lossy: None,
            budget: DataBudget::new(limits),
        }
    }

    /// The peer's open channel of `kind`.
    pub fn channel(&self, kind: DataKind) -> Option<ChannelId> {
        match kind {
            DataKind::Reliable => self.reliable,
            DataKind::Lossy => self.lossy,
        }
    }

    /// The peer opened a channel labelled `label`: remembered if it is room data (the
    /// latest of a kind wins).
    pub fn opened(&mut self, id: ChannelId, label: &str) -> Option<DataKind> {
        let kind = DataKind::from_label(label)?;
        match kind {
            DataKind::Reliable => self.reliable = Some(id),
            DataKind::Lossy => self.lossy = Some(id),
        }
        Some(kind)
    }

    /// The peer closed channel `id`.
    pub fn closed(&mut self, id: ChannelId) {
        if self.reliable == Some(id) {
            self.reliable = None;
        }
        if self.lossy == Some(id) {
            self.lossy = None;
        }
    }

    /// Which room-data channel `id` is, if any.
    pub fn kind_of(&self, id: ChannelId) -> Option<DataKind> {
        if self.reliable == Some(id) {
            Some(DataKind::Reliable)
        } else if self.lossy == Some(id) {
            Some(DataKind::Lossy)
        } else {
            None
        }
    }
}

/// Why a room-data message was not delivered (`shardcast_data_dropped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDrop {
    /// The sender may not send data (its grant, `can_send_data`, is off).
    NotAllowed,
    /// Larger than [`MAX_PAYLOAD`].
    TooLarge,
    /// Over the sender's [`DataLimits`].
    RateLimited,
    /// One receiver's channel could not take it (its SCTP send buffer full, or a lossy
    /// message behind [`LOSSY_BACKLOG`]): counted once per receiver.
    ReceiverBehind,
}

impl DataDrop {
    pub const ALL: [DataDrop; 4] = [
        DataDrop::NotAllowed,
        DataDrop::TooLarge,
        DataDrop::RateLimited,
        DataDrop::ReceiverBehind,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataDrop::NotAllowed => "not_allowed",
            DataDrop::TooLarge => "too_large",
            DataDrop::RateLimited => "rate_limited",
            DataDrop::ReceiverBehind => "receiver_behind",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_to_what_was_put_in() {
        let e = envelope("alice", true, b"hi");
        assert_eq!(e, [1, 1, 0, 5, b'a', b'l', b'i', b'c', b'e', b'h', b'i']);
        assert_eq!(open_envelope(&e), Some(("alice", true, &b"hi"[..])));
        let e = envelope("b", false, &[]);
        assert_eq!(open_envelope(&e), Some(("b", false, &[][..])));
        assert_eq!(open_envelope(&[1, 0, 0]), None);
        assert_eq!(open_envelope(&[2, 0, 0, 0]), None);
        assert_eq!(open_envelope(&[1, 0, 0, 9, b'x']), None);
    }

    #[test]
    fn labels_name_the_two_kinds_and_nothing_else() {
        assert_eq!(DataKind::from_label("shardcast"), Some(DataKind::Reliable));
        assert_eq!(
            DataKind::from_label("shardcast-lossy"),
            Some(DataKind::Lossy)
        );
        assert_eq!(DataKind::from_label("ctl"), None);
        assert_eq!(DataKind::from_label("Shardcast"), None);
    }

    #[test]
    fn the_budget_allows_the_burst_then_the_rate() {
        let limits = DataLimits {
            messages_per_sec: 10,
            message_burst: 5,
            bytes_per_sec: 1000,
            byte_burst: 4000,
        };
        let t0 = Instant::now();
        let mut b = DataBudget::new(&limits);
        let sent = (0..20).filter(|_| b.take(&limits, t0, 10)).count();
        assert_eq!(sent, 5, "the message burst");
        // 1 s later: 10 more messages' worth, capped at the burst of 5.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| b.take(&limits, t1, 10)).count(), 5);
        // Bytes: 4000 burst, and 3 s at 1000/s is back to (at most) 4000.
        let t2 = t1 + Duration::from_secs(3);
        assert!(b.take(&limits, t2, 3000));
        assert!(!b.take(&limits, t2, 3000), "1000 bytes left");
        assert!(b.take(&limits, t2, 900));
    }
}
