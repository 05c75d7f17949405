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
    /// SRTP or SRTCP before DTLS produced the keys.
    NoSrtpKeys,
    /// SRTP or SRTCP that failed authentication: forged or corrupted.
    SrtpAuthFailed,
    /// An SRTP packet or SRTCP index already received (within the replay window of 1024),
    /// or older than the window: a replay or a network duplicate.
    SrtpReplay,
    /// RTP whose header does not parse (CSRC list or extension block past the end).
    RtpUndecodable,
    /// RTP whose codec payload header is malformed (a VP9 payload descriptor that does not
    /// parse: truncated, or with contradicting fields).
    RtpPayloadMalformed,
    /// RTP for an SSRC that maps to no published track and layer (by mid/rid header
    /// extension, signalled SSRC or the only m-line of its kind), or one more SSRC than a
    /// peer may have.
    RtpUnknownSsrc,
    /// RTP with a payload type the peer did not negotiate.
    RtpUnknownPayloadType,
    /// A media packet received twice (an RTX retransmission of one already here).
    RtpDuplicate,
    /// SRTCP whose compound does not parse past some packet (what came before is used).
    RtcpMalformed,
    /// str0m's `handle_input` returned an error for this datagram.
    PeerError,
    /// A STUN binding request or response that names a peer (by USERNAME, or by arriving on
    /// its 5-tuple) but that the peer's ICE agent rejects: MESSAGE-INTEGRITY not keyed by the
    /// right password, the wrong remote ufrag, or a response to no check of ours. Never
    /// answered, and never counts as consent.
    StunAuthFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 16] = [
        DropReason::Garbage,
        DropReason::Truncated,
        DropReason::Oversize,
        DropReason::UnknownStunUser,
        DropReason::UnknownSource,
        DropReason::NoSrtpKeys,
        DropReason::SrtpAuthFailed,
        DropReason::SrtpReplay,
        DropReason::RtpUndecodable,
        DropReason::RtpPayloadMalformed,
        DropReason::RtpUnknownSsrc,
        DropReason::RtpUnknownPayloadType,
        DropReason::RtpDuplicate,
        DropReason::RtcpMalformed,
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
            DropReason::NoSrtpKeys => "no_srtp_keys",
            DropReason::SrtpAuthFailed => "srtp_auth_failed",
            DropReason::SrtpReplay => "srtp_replay",
            DropReason::RtpUndecodable => "rtp_undecodable",
            DropReason::RtpPayloadMalformed => "rtp_payload_malformed",
            DropReason::RtpUnknownSsrc => "rtp_unknown_ssrc",
            DropReason::RtpUnknownPayloadType => "rtp_unknown_payload_type",
            DropReason::RtpDuplicate => "rtp_duplicate",
            DropReason::RtcpMalformed => "rtcp_malformed",
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
    /// Retransmissions sent on subscribers' NACKs (RTX, or plain without RTX).
    pub rtx_sent: u64,
    /// NACKed packets we could not resend (no longer in the history or the sent ring).
    pub nack_misses: u64,
    /// NACKs sent to publishers (packets asked for).
    pub nacks_sent: u64,
    /// RTCP packets received from peers (compound packets, after SRTP).
    pub rtcp_in: u64,
    /// RTCP compound packets sent (reports, feedback, NACK, PLI).
    pub rtcp_out: u64,
    /// SRTP/SRTCP str0m produced by itself (its own sender reports): dropped unsent, since
    /// the transport owns RTP and RTCP on the wire.
    pub str0m_srtp_suppressed: u64,
    /// Padding packets sent to probe a subscriber's downlink.
    pub probe_packets: u64,
    /// Peer timers that fired (str0m's and the transport's), stale heap entries not counted.
    pub peer_timeouts: u64,
    pub keyframe_requests_sent: u64,
    /// Room-data messages received on peers' room-data channels.
    pub data_in: u64,
    /// Room-data messages written to receivers' channels (one per receiver).
    pub data_out: u64,
    /// Room-data messages handed to other shards (one per message, whatever the shards).
    pub data_to_shards: u64,
    /// Room-data messages not delivered, by reason (`crate::data::DataDrop`).
    pub data_drops: [u64; crate::data::DataDrop::ALL.len()],
    pub drops: [u64; DropReason::ALL.len()],
    pub peer_panics: u64,
    pub peers_closed: u64,
    /// Current gauges.
    pub peers: u64,
    pub tracks: u64,
    pub subscriptions: u64,
    pub demux_entries: u64,
    /// Rooms with a peer on the shard.
    pub rooms: u64,
    /// Entries of the shard's timer heap (live and stale): bounded by the peers.
    pub timers: u64,
}

impl ShardStats {
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn data_drop(&mut self, reason: crate::data::DataDrop) {
        self.data_drops[reason as usize] += 1;
    }

    pub fn data_drops_for(&self, reason: crate::data::DataDrop) -> u64 {
        self.data_drops[reason as usize]
    }

    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}
