//! [`SentRing`]: what was sent on one outgoing stream, by outgoing sequence number, so a
//! subscriber's NACK is answered with exactly the packet it lost: same outgoing sequence
//! number, timestamp, marker and payload-type, the payload taken from the track's shared
//! history, the VP8 picture ids as first written. Fixed size, allocated once per video
//! subscription; an entry is valid only for the sequence number it was written for.
//! Must never allocate after creation or hold a payload (the history does).

use crate::api::LayerIndex;

/// Packets remembered per outgoing video stream (~1 s at 500 packets/s).
pub(crate) const SENT_RING: usize = 512;

/// One sent packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Extended outgoing sequence number (the slot is valid only for it).
    pub out_seq: u64,
    pub layer: LayerIndex,
    /// Extended incoming sequence number of that layer: the key into the track's history.
    pub in_seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
    /// VP8/VP9 picture id and TL0PICIDX as written (None: another codec, or no such field).
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
    /// The transport-wide sequence number and abs-send-time the original carried: a plain
    /// retransmission (no RTX negotiated) must repeat the original bytes exactly, or
    /// AES-GCM would seal different data under the same nonce.
    pub twcc: Option<u16>,
    pub abs_send_time: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct SentRing {
    slots: Box<[Option<Sent>]>,
}

impl SentRing {
    pub fn new() -> Self {
        SentRing {
            slots: vec![None; SENT_RING].into_boxed_slice(),
        }
    }

    pub fn record(&mut self, sent: Sent) {
        let i = (sent.out_seq % SENT_RING as u64) as usize;
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(sent);
        }
    }

    /// The packet sent with extended sequence number `out_seq`, if still remembered.
    pub fn get(&self, out_seq: u64) -> Option<&Sent> {
        let i = (out_seq % SENT_RING as u64) as usize;
        self.slots.get(i)?.as_ref().filter(|s| s.out_seq == out_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_answers_only_for_its_own_sequence_number() {
        let mut r = SentRing::new();
        let s = |out_seq| Sent {
            out_seq,
            in_seq: out_seq + 100,
            ..Sent::default()
        };
        r.record(s(7));
        assert_eq!(r.get(7).map(|x| x.in_seq), Some(107));
        assert!(
            r.get(7 + SENT_RING as u64).is_none(),
            "same slot, other seq"
        );
        r.record(s(7 + SENT_RING as u64));
        assert!(r.get(7).is_none(), "overwritten");
        assert!(r.get(8).is_none(), "never written");
    }
}
