//! One simulated participant as its I/O thread holds it: the sans-IO client, its UDP socket,
//! wire counters and (verify only) its latency histogram; and how it turns into a
//! [`ParticipantSnapshot`].
//!
//! Owns nothing shared. Never: read the clock (the thread passes `now`) or block.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hdrhistogram::Histogram;
use shardcast_client::{Client, ClientConfig, TimeBase, TrackKind};
use tokio::sync::mpsc::UnboundedSender;

use super::signal::ToSignal;
use super::{JoinSpec, ParticipantId, ParticipantSnapshot, ParticipantState, Signaling};
use crate::scenario::VideoKind;

/// The kept-sample cap of each client; the thread drains them into the histogram about once
/// a second, far below the cap at any realistic packet rate.
const LATENCY_SAMPLES_KEPT: usize = 65_536;

/// The histogram every participant's latency goes into: 1 µs to 60 s, 2 significant digits
/// (1 % resolution keeps a clone per snapshot around 30 kB). Use it to merge snapshots.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("constant, valid bounds")
}

/// UDP traffic of one participant as the pool saw it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Wire {
    pub(crate) datagrams_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) datagrams_out: u64,
    pub(crate) bytes_out: u64,
    pub(crate) send_drops: u64,
}

pub(crate) struct Participant {
    pub(crate) id: u64,
    pub(crate) group: String,
    pub(crate) client: Client,
    pub(crate) socket: mio::net::UdpSocket,
    pub(crate) local: SocketAddr,
    pub(crate) to_signal: UnboundedSender<ToSignal>,
    pub(crate) join_started: Instant,
    /// The deadline last pushed on the thread's timer heap.
    pub(crate) deadline: Instant,
    pub(crate) wire: Wire,
    subscribe: bool,
    latency: Option<Histogram<u64>>,
}

impl Participant {
    /// Binds the socket and builds the client; `Err` is the reason the join fails.
    pub(crate) fn new(
        id: u64,
        spec: &JoinSpec,
        started: Instant,
        to_signal: UnboundedSender<ToSignal>,
        bind_ip: IpAddr,
        time_base: TimeBase,
        now: Instant,
    ) -> Result<Self, String> {
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0))
            .map_err(|e| format!("bind UDP on {bind_ip}: {e}"))?;
        std_socket
            .set_nonblocking(true)
            .map_err(|e| format!("non-blocking socket: {e}"))?;
        let local = std_socket
            .local_addr()
            .map_err(|e| format!("socket address: {e}"))?;
        let socket = mio::net::UdpSocket::from_std(std_socket);
        let client = Client::new(client_config(id, spec, time_base), local, now)
            .map_err(|e| format!("client: {e}"))?;
        Ok(Self {
            id,
            group: spec.group.clone(),
            client,
            socket,
            local,
            to_signal,
            join_started: started,
            deadline: now,
            wire: Wire::default(),
            subscribe: spec.subscribe,
            latency: spec.verify.then(new_latency_histogram),
        })
    }

    /// Moves the client's new latency samples into the histogram.
    pub(crate) fn drain_latency(&mut self) {
        if let Some(h) = self.latency.as_mut() {
            self.client
                .drain_latency_samples(|us| h.saturating_record(u64::from(us).max(1)));
        }
    }

    pub(crate) fn state(&self) -> ParticipantState {
        if self.client.is_connected() {
            ParticipantState::Connected
        } else {
            ParticipantState::Joining
        }
    }

    /// The participant now, as `state`.
    pub(crate) fn snapshot(&mut self, state: ParticipantState) -> ParticipantSnapshot {
        self.drain_latency();
        let s = self.client.stats();
        let mut snap = ParticipantSnapshot {
            id: ParticipantId(self.id),
            group: self.group.clone(),
            state,
            join_started: self.join_started,
            first_media: if self.subscribe {
                s.first_media_at
            } else {
                s.connected_at
            },
            packets_received: 0,
            bytes_received: 0,
            packets_sent: s.published.audio_packets + s.published.video_packets.iter().sum::<u64>(),
            lost_after_repair: 0,
            expected: 0,
            layer_switches: 0,
            latency_us: self.latency.clone(),
            audio_packets_received: 0,
            video_packets_received: 0,
            video_packets_per_layer: [0; 4],
            video_tracks: 0,
            datagrams_received: self.wire.datagrams_in,
            datagram_bytes_received: self.wire.bytes_in,
            datagrams_sent: self.wire.datagrams_out,
            datagram_bytes_sent: self.wire.bytes_out,
            send_drops: self.wire.send_drops,
        };
        for t in s.tracks.values() {
            snap.packets_received += t.packets;
            snap.bytes_received += t.bytes;
            snap.lost_after_repair += t.unrepaired();
            snap.expected += t.packets.saturating_sub(t.duplicates) + t.unrepaired();
            snap.layer_switches += t.layer_switches;
            match t.kind {
                TrackKind::Audio => snap.audio_packets_received += t.packets,
                TrackKind::Video => {
                    snap.video_packets_received += t.packets;
                    snap.video_tracks += 1;
                    for (sum, n) in snap
                        .video_packets_per_layer
                        .iter_mut()
                        .zip(t.packets_per_layer)
                    {
                        *sum += n;
                    }
                }
            }
        }
        snap
    }
}

/// A participant that failed before it had a client (e.g. no socket).
pub(crate) fn failed_at_join(
    id: u64,
    spec: &JoinSpec,
    started: Instant,
    reason: String,
) -> ParticipantSnapshot {
    ParticipantSnapshot {
        id: ParticipantId(id),
        group: spec.group.clone(),
        state: ParticipantState::Failed(reason),
        join_started: started,
        first_media: None,
        packets_received: 0,
        bytes_received: 0,
        packets_sent: 0,
        lost_after_repair: 0,
        expected: 0,
        layer_switches: 0,
        latency_us: None,
        audio_packets_received: 0,
        video_packets_received: 0,
        video_packets_per_layer: [0; 4],
        video_tracks: 0,
        datagrams_received: 0,
        datagram_bytes_received: 0,
        datagrams_sent: 0,
        datagram_bytes_sent: 0,
        send_drops: 0,
    }
}

fn client_config(id: u64, spec: &JoinSpec, time_base: TimeBase) -> ClientConfig {
    let mut cfg = ClientConfig::new(format!("{}-{id}", spec.group), id, time_base);
    if spec.audio {
        cfg = cfg.with_audio();
    }
    if let Some(video) = spec.video.spec() {
        cfg = cfg.with_video(video);
    }
    let publishes = spec.audio || spec.video != VideoKind::None;
    if spec.signaling == Signaling::WhipWhep && !publishes {
        cfg = cfg.with_receive_offer();
    }
    cfg.subscribe = spec.subscribe;
    cfg.verify_payloads = spec.verify;
    // Stall detection needs the payload check; a count-only viewer never asks for keyframes.
    cfg.request_keyframes = spec.verify;
    cfg.max_latency_samples = LATENCY_SAMPLES_KEPT;
    cfg.transport_cc = spec.transport_cc;
    cfg
}
