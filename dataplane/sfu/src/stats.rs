//! Per-shard plain counters. The shard reads them (about once a second) into its metrics;
//! nothing here is shared between threads or atomic.

/// Why an incoming datagram (or a packet inside it) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// First byte matches no protocol we speak (RFC 7983 demux), or empty.
    Garbage,
    /// Shorter than the smallest valid header of its protocol.
    Truncated,
    /// Longer than `CoreConfig::max_datagram`.
    Oversize,
    /// STUN from an unknown source whose USERNAME names no peer (or has none, or that is
    /// not a binding request).
    UnknownStunUser,
    /// DTLS / RTP / RTCP from a source no peer has proven (no STUN yet).
    UnknownSource,
    /// RTP whose header str0m cannot parse (CSRC list or extension header longer than the
    /// datagram). str0m 0.25 drops the packets of this and the next three reasons with a
    /// `trace!` only; the core tells them apart afterwards (`core/rtp_drop.rs`).
    RtpUndecodable,
    /// RTP for an SSRC that maps to none of the peer's receive streams (main or RTX), even
    /// through its mid/rid header extensions.
    RtpUnknownSsrc,
    /// SRTP that failed authentication or decryption on a known stream — forged, corrupted,
    /// or sent before the keys exist — and RTX duplicates (str0m keeps no public record of
    /// RTX sequence numbers, so those cannot be told apart).
    SrtpAuthFailed,
    /// A sequence number str0m already delivered on that SSRC (within the last 128): a
    /// replay or a network duplicate.
    SrtpReplay,
    /// RTP str0m delivered for a stream that maps to no published track.
    UnknownSsrc,
    /// str0m's `handle_input` returned an error for this datagram.
    PeerError,
    /// A STUN binding request or response that names a peer (by USERNAME, or by arriving on
    /// its 5-tuple) but that the peer's ICE agent rejects: MESSAGE-INTEGRITY not keyed by the
    /// right password, the wrong remote ufrag, or a response to no check of ours. Never
    /// answered, and never counts as consent.
    StunAuthFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::Garbage,
        DropReason::Truncated,
        DropReason::Oversize,
        DropReason::UnknownStunUser,
        DropReason::UnknownSource,
        DropReason::RtpUndecodable,
        DropReason::RtpUnknownSsrc,
        DropReason::SrtpAuthFailed,
        DropReason::SrtpReplay,
        DropReason::UnknownSsrc,
        DropReason::PeerError,
        DropReason::StunAuthFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Garbage => "garbage",
            DropReason::Truncated => "truncated",
            DropReason::Oversize => "oversize",
            DropReason::UnknownStunUser => "unknown_stun_user",
            DropReason::UnknownSource => "unknown_source",
            DropReason::RtpUndecodable => "rtp_undecodable",
            DropReason::RtpUnknownSsrc => "rtp_unknown_ssrc",
            DropReason::SrtpAuthFailed => "srtp_auth_failed",
            DropReason::SrtpReplay => "srtp_replay",
            DropReason::UnknownSsrc => "unknown_ssrc",
            DropReason::PeerError => "peer_error",
            DropReason::StunAuthFailed => "stun_auth_failed",
        }
    }
}

/// Counters of one shard core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// RTP packets received from publishers (after decryption).
    pub rtp_in: u64,
    /// RTP packets written to subscribers (one per subscriber).
    pub rtp_forwarded: u64,
    /// Packets a subscription chose not to forward (other layer, paused, muted).
    pub rtp_filtered: u64,
    /// Media packets handed to other shards (one per shard, not per subscriber).
    pub rtp_to_shards: u64,
    pub keyframe_requests_sent: u64,
    pub drops: [u64; DropReason::ALL.len()],
    pub peer_panics: u64,
    pub peers_closed: u64,
    /// Current gauges.
    pub peers: u64,
    pub tracks: u64,
    pub subscriptions: u64,
    pub demux_entries: u64,
}

impl ShardStats {
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}
