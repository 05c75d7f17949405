//! Media node families: every counter and gauge of each shard's last snapshot (the SFU
//! core's `ShardStats`, the driver's `DriverStats`, the ICE-TCP port's `TcpStats`, the shard
//! loop's `ShardCounters`),
//! labelled `shard="N"`, and the io backend as `shardcast_media_info`.
//!
//! Reads only `MediaNode::shard_snapshots()`: copies a shard publishes about once a second
//! under a mutex the shard only ever `try_lock`s, so a scrape never stalls a shard (the
//! shard skips one flush instead). Must never: send a shard a command or touch a peer.

use std::time::Instant;

use shardcast_dataplane::shard::ShardSnapshot;
use shardcast_dataplane::{DataDrop, DropReason, ShardStats};

use super::text::{Encoder, Kind};

type Snap = ShardSnapshot<ShardStats>;
type Get = fn(&Snap) -> u64;
type Field = (&'static str, &'static str, Get);

/// Counters of the SFU core.
const CORE_COUNTERS: &[Field] = &[
    (
        "shardcast_datagrams_in_total",
        "Datagrams the SFU core received (UDP, and ICE-TCP frames).",
        |s| s.logic.datagrams_in,
    ),
    (
        "shardcast_datagrams_out_total",
        "Datagrams the SFU core sent (UDP, and ICE-TCP frames).",
        |s| s.logic.datagrams_out,
    ),
    (
        "shardcast_bytes_in_total",
        "Bytes of the datagrams the SFU core received.",
        |s| s.logic.bytes_in,
    ),
    (
        "shardcast_bytes_out_total",
        "Bytes of the datagrams the SFU core sent.",
        |s| s.logic.bytes_out,
    ),
    (
        "shardcast_rtp_in_total",
        "RTP packets received from publishers (after decryption).",
        |s| s.logic.rtp_in,
    ),
    (
        "shardcast_rtp_forwarded_total",
        "RTP packets written to subscribers (one per subscriber).",
        |s| s.logic.rtp_forwarded,
    ),
    (
        "shardcast_rtp_filtered_total",
        "RTP packets a subscription chose not to forward (other layer, paused, muted).",
        |s| s.logic.rtp_filtered,
    ),
    (
        "shardcast_rtp_to_shards_total",
        "Media packets handed to other shards (one per shard, not per subscriber).",
        |s| s.logic.rtp_to_shards,
    ),
    (
        "shardcast_keyframe_requests_sent_total",
        "Keyframe requests (PLI/FIR) sent to publishers.",
        |s| s.logic.keyframe_requests_sent,
    ),
    (
        "shardcast_rtx_sent_total",
        "Retransmissions sent on subscribers' NACKs (RTX, or plain resends without RTX).",
        |s| s.logic.rtx_sent,
    ),
    (
        "shardcast_nack_misses_total",
        "NACKed packets that could not be resent (no longer in the history).",
        |s| s.logic.nack_misses,
    ),
    (
        "shardcast_nacks_sent_total",
        "Packets asked for again from publishers (NACK entries sent).",
        |s| s.logic.nacks_sent,
    ),
    (
        "shardcast_rtcp_in_total",
        "Compound RTCP packets received from peers (after SRTCP).",
        |s| s.logic.rtcp_in,
    ),
    (
        "shardcast_rtcp_out_total",
        "Compound RTCP packets sent (reports, feedback, NACK, PLI).",
        |s| s.logic.rtcp_out,
    ),
    (
        "shardcast_peer_timeouts_total",
        "Peer timers that fired (str0m's and the transport's: reports, feedback, NACKs, probes).",
        |s| s.logic.peer_timeouts,
    ),
    (
        "shardcast_probe_packets_total",
        "Padding packets sent to probe subscribers' downlinks.",
        |s| s.logic.probe_packets,
    ),
    (
        "shardcast_str0m_srtp_suppressed_total",
        "SRTP/SRTCP str0m produced by itself and the transport dropped unsent.",
        |s| s.logic.str0m_srtp_suppressed,
    ),
    (
        "shardcast_data_messages_in_total",
        "Room-data messages received on peers' data channels.",
        |s| s.logic.data_in,
    ),
    (
        "shardcast_data_messages_out_total",
        "Room-data messages written to receivers' data channels (one per receiver).",
        |s| s.logic.data_out,
    ),
    (
        "shardcast_data_messages_to_shards_total",
        "Room-data messages handed to the node's other shards (one per message).",
        |s| s.logic.data_to_shards,
    ),
    (
        "shardcast_peer_panics_total",
        "Peers closed because handling them panicked.",
        |s| s.logic.peer_panics,
    ),
    (
        "shardcast_peers_closed_total",
        "Peer connections closed, for any reason.",
        |s| s.logic.peers_closed,
    ),
];

/// Gauges of the SFU core.
const CORE_GAUGES: &[Field] = &[
    ("shardcast_peers", "Peer connections on the shard.", |s| {
        s.logic.peers
    }),
    ("shardcast_tracks", "Published tracks on the shard.", |s| {
        s.logic.tracks
    }),
    (
        "shardcast_subscriptions",
        "Subscriptions on the shard.",
        |s| s.logic.subscriptions,
    ),
    (
        "shardcast_demux_entries",
        "Source addresses the shard maps to peers.",
        |s| s.logic.demux_entries,
    ),
    ("shardcast_rooms", "Rooms with a peer on the shard.", |s| {
        s.logic.rooms
    }),
    (
        "shardcast_timers",
        "Entries of the shard's timer heap (bounded by its peers).",
        |s| s.logic.timers,
    ),
];

/// Counters of the socket driver.
const DRIVER_COUNTERS: &[Field] = &[
    (
        "shardcast_driver_rx_datagrams_total",
        "Datagrams the driver received from the socket.",
        |s| s.driver.rx_datagrams,
    ),
    (
        "shardcast_driver_rx_bytes_total",
        "Bytes the driver received from the socket.",
        |s| s.driver.rx_bytes,
    ),
    (
        "shardcast_driver_rx_truncated_total",
        "Datagrams larger than a receive buffer (dropped).",
        |s| s.driver.rx_truncated,
    ),
    ("shardcast_driver_rx_errors_total", "Receive errors.", |s| {
        s.driver.rx_errors
    }),
    (
        "shardcast_driver_rx_rearms_total",
        "io_uring: times the multishot receive ended and was re-armed.",
        |s| s.driver.rx_rearms,
    ),
    (
        "shardcast_driver_rx_no_buffers_total",
        "io_uring: completions that found the buffer ring empty.",
        |s| s.driver.rx_no_buffers,
    ),
    (
        "shardcast_driver_tx_datagrams_total",
        "Datagrams the driver sent.",
        |s| s.driver.tx_datagrams,
    ),
    (
        "shardcast_driver_tx_bytes_total",
        "Bytes the driver sent.",
        |s| s.driver.tx_bytes,
    ),
    (
        "shardcast_driver_tx_gso_messages_total",
        "Kernel messages that carried more than one datagram (GSO).",
        |s| s.driver.tx_gso_messages,
    ),
    (
        "shardcast_driver_tx_dropped_total",
        "Datagrams dropped on send (too large, batch pool exhausted, socket buffer full, error).",
        |s| s.driver.tx_dropped,
    ),
    ("shardcast_driver_tx_errors_total", "Send errors.", |s| {
        s.driver.tx_errors
    }),
    (
        "shardcast_driver_extra_submits_total",
        "io_uring submits beyond one per loop turn (full submission queue or full send batch).",
        |s| s.driver.extra_submits,
    ),
    (
        "shardcast_driver_wakeups_total",
        "Times the eventfd woke the driver.",
        |s| s.driver.wakeups,
    ),
];

/// Counters of the shard's ICE-TCP port (zero when `media.ice_tcp` is off).
const TCP_COUNTERS: &[Field] = &[
    (
        "shardcast_tcp_accepted_total",
        "ICE-TCP connections accepted (including those closed at once for the limit).",
        |s| s.tcp.accepted,
    ),
    (
        "shardcast_tcp_rejected_full_total",
        "ICE-TCP connections closed at accept: the shard had media.tcp_max_connections open.",
        |s| s.tcp.rejected_full,
    ),
    (
        "shardcast_tcp_frames_in_total",
        "RFC 4571 frames read from ICE-TCP connections.",
        |s| s.tcp.frames_in,
    ),
    (
        "shardcast_tcp_bytes_in_total",
        "Bytes of the frames read from ICE-TCP connections (without the length prefix).",
        |s| s.tcp.bytes_in,
    ),
    (
        "shardcast_tcp_frames_out_total",
        "Frames queued onto ICE-TCP connections.",
        |s| s.tcp.frames_out,
    ),
    (
        "shardcast_tcp_bytes_out_total",
        "Bytes of the frames queued onto ICE-TCP connections (without the length prefix).",
        |s| s.tcp.bytes_out,
    ),
    (
        "shardcast_tcp_send_dropped_total",
        "Frames dropped because an ICE-TCP connection's send queue was full.",
        |s| s.tcp.send_dropped,
    ),
    (
        "shardcast_tcp_no_connection_total",
        "Frames for an ICE-TCP remote with no open connection (dropped).",
        |s| s.tcp.no_connection,
    ),
    (
        "shardcast_tcp_errors_total",
        "ICE-TCP accept, read and write errors.",
        |s| s.tcp.errors,
    ),
];

/// Why ICE-TCP connections were closed (`shardcast_tcp_closed_total{reason}`).
const TCP_CLOSES: &[(&str, Get)] = &[
    ("unverified", |s| s.tcp.closed_unverified),
    ("handshake_timeout", |s| s.tcp.closed_handshake_timeout),
    ("idle", |s| s.tcp.closed_idle),
    ("stalled", |s| s.tcp.closed_stalled),
    ("bad_frame", |s| s.tcp.closed_bad_frame),
    ("by_peer", |s| s.tcp.closed_by_peer),
];

/// Counters of the shard loop.
const LOOP_COUNTERS: &[Field] = &[
    (
        "shardcast_shard_turns_total",
        "Turns of the shard loop.",
        |s| s.counters.turns,
    ),
    (
        "shardcast_shard_timeout_turns_total",
        "Turns of the shard loop in which a timer was due (the rest were woken by input).",
        |s| s.counters.timeout_turns,
    ),
    (
        "shardcast_shard_commands_total",
        "Node API commands the shard handled.",
        |s| s.counters.commands,
    ),
    (
        "shardcast_shard_cross_sent_total",
        "Messages sent to other shards.",
        |s| s.counters.cross_shard_sent,
    ),
    (
        "shardcast_shard_cross_received_total",
        "Messages received from other shards.",
        |s| s.counters.cross_shard_received,
    ),
    (
        "shardcast_shard_cross_dropped_total",
        "Messages dropped because the receiving shard's queue was full.",
        |s| s.counters.cross_shard_dropped,
    ),
    (
        "shardcast_shard_cross_misrouted_total",
        "Messages for a shard that does not exist.",
        |s| s.counters.cross_shard_misrouted,
    ),
    (
        "shardcast_shard_panics_total",
        "Panics caught by the shard loop.",
        |s| s.counters.panics,
    ),
    (
        "shardcast_shard_driver_errors_total",
        "Failed driver waits.",
        |s| s.counters.driver_errors,
    ),
];

pub fn encode(e: &mut Encoder, snaps: &[Snap], now: Instant) {
    let shard_ids: Vec<String> = snaps.iter().map(|s| s.shard.0.to_string()).collect();
    {
        let mut f = e.family(
            "shardcast_media_info",
            Kind::Gauge,
            "Always 1: the shard's io backend, UDP address and ICE-TCP address (empty: off).",
        );
        for (s, id) in snaps.iter().zip(&shard_ids) {
            let backend = s.backend.to_string();
            let addr = s.local_addr.to_string();
            let tcp = s.tcp_addr.map(|a| a.to_string()).unwrap_or_default();
            let labels = [
                ("shard", id.as_str()),
                ("backend", &backend),
                ("addr", &addr),
                ("tcp_addr", &tcp),
            ];
            f.int(&labels, 1);
        }
    }
    let tables = [
        (Kind::Counter, CORE_COUNTERS),
        (Kind::Gauge, CORE_GAUGES),
        (Kind::Counter, DRIVER_COUNTERS),
        (Kind::Counter, TCP_COUNTERS),
        (Kind::Counter, LOOP_COUNTERS),
    ];
    for (kind, table) in tables {
        for (name, help, get) in table {
            let mut f = e.family(name, kind, help);
            for (s, id) in snaps.iter().zip(&shard_ids) {
                f.int(&[("shard", id)], get(s));
            }
        }
    }
    {
        let mut f = e.family(
            "shardcast_drops_total",
            Kind::Counter,
            "Datagrams or packets the SFU core dropped, by reason.",
        );
        for (s, id) in snaps.iter().zip(&shard_ids) {
            for reason in DropReason::ALL {
                f.int(
                    &[("shard", id), ("reason", reason.as_str())],
                    s.logic.drops_for(reason),
                );
            }
        }
    }
    {
        let mut f = e.family(
            "shardcast_data_dropped_total",
            Kind::Counter,
            "Room-data messages not delivered, by reason (per receiver for receiver_behind).",
        );
        for (s, id) in snaps.iter().zip(&shard_ids) {
            for reason in DataDrop::ALL {
                f.int(
                    &[("shard", id), ("reason", reason.as_str())],
                    s.logic.data_drops_for(reason),
                );
            }
        }
    }
    {
        let mut f = e.family(
            "shardcast_tcp_connections",
            Kind::Gauge,
            "ICE-TCP connections open on the shard.",
        );
        for (s, id) in snaps.iter().zip(&shard_ids) {
            f.int(&[("shard", id)], s.tcp.connections);
        }
    }
    {
        let mut f = e.family(
            "shardcast_tcp_closed_total",
            Kind::Counter,
            "ICE-TCP connections the shard closed or saw closed, by reason.",
        );
        for (s, id) in snaps.iter().zip(&shard_ids) {
            for (reason, get) in TCP_CLOSES {
                f.int(&[("shard", id), ("reason", reason)], get(s));
            }
        }
    }
    {
        let mut f = e.family(
            "shardcast_shard_cpu_seconds_total",
            Kind::Counter,
            "CPU time the shard thread used (user and system), as of its last snapshot.",
        );
        for (s, id) in snaps.iter().zip(&shard_ids) {
            f.float(&[("shard", id)], s.counters.cpu_us as f64 / 1e6);
        }
    }
    let mut f = e.family(
        "shardcast_shard_snapshot_age_seconds",
        Kind::Gauge,
        "Age of the counters above (a shard publishes them about once a second).",
    );
    for (s, id) in snaps.iter().zip(&shard_ids) {
        if let Some(at) = s.at {
            f.float(
                &[("shard", id)],
                now.saturating_duration_since(at).as_secs_f64(),
            );
        }
    }
}
