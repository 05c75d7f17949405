//! Packet grouping for the delay-based estimate: acknowledged packets (local send time,
//! remote arrival time) become delay variations between consecutive groups, as libwebrtc's
//! inter_arrival_delta does. A group is what was sent within 5 ms, plus packets that arrive
//! in a compressed burst behind it; the delay variation of two groups is
//! `(arrival delta) - (send delta)` of their *first* packets.
//!
//! First, not last as in libwebrtc: behind a pacer the two are alike, but our groups are
//! unpaced frame bursts, and a frame's last packet waits for the frame itself to drain
//! through the bottleneck. Bigger frames then look like queue growth: in the simulated
//! link, a layer switch from 0.5 to 2.5 Mbit/s on a 3 Mbit/s link read as overuse and cut
//! the estimate from 2.8 to 1.1 Mbit/s (tests/bwe_scenarios.rs,
//! `a_layer_switch_under_capacity_is_not_overuse`). A frame's first packet waits only for
//! what earlier traffic left in the queue, which grows exactly when the link is overused.
//!
//! Must never: feed the trendline a delta across a remote clock jump or a reordering; it
//! resets instead (and says so, so the trendline restarts too).
//!
//! Constants, and why:
//! - 5 ms send groups: an SFU forwards a frame as a burst of packets sent within a few
//!   hundred microseconds; grouping makes one delay sample per frame instead of measuring
//!   the bottleneck's serialization of the burst.
//! - burst merge: a packet arriving within 5 ms of the group's last one, earlier than its
//!   send spacing predicts, and under 100 ms after the group's first arrival, joins the
//!   group (a link that stalled and released a backlog at once) -- as in libwebrtc, but only
//!   when it was sent under 20 ms after the group's last packet. Unlike a paced sender's,
//!   our groups are frames 33 ms apart: the next frame arriving right behind the previous
//!   one means the bottleneck queue never emptied, which is the signal itself. Merging
//!   there glued 3-4 frames into one sample and, in the simulated link, let the queue
//!   reach its limit before the detector saw it.
//! - 3 s clock jump: an arrival delta more than 3 s beyond the local time between the two
//!   feedbacks cannot be queueing; the remote clock moved.
//! - 3 reordered groups in a row reset: one may be a reordered burst, three is a new base.

const SEND_GROUP_US: i64 = 5_000;
const BURST_DELTA_US: i64 = 5_000;
const MAX_BURST_US: i64 = 100_000;
const MAX_BURST_SEND_GAP_US: i64 = 20_000;
const CLOCK_JUMP_US: i64 = 3_000_000;
const REORDERED_RESET: u32 = 3;

/// One acknowledged packet, in local send micros and remote arrival micros.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ack {
    pub sent_us: i64,
    pub arrival_us: i64,
    /// Local time the feedback carrying it was handled.
    pub feedback_us: i64,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_sent_us: i64,
    /// Latest send time in the group (the burst rule compares with it).
    sent_us: i64,
    first_arrival_us: i64,
    /// Arrival of the group's last packet (the burst rule compares with it).
    complete_us: i64,
    feedback_us: i64,
}

/// The delay variation between two consecutive groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct GroupDelta {
    pub send_delta_ms: f64,
    pub arrival_delta_ms: f64,
    /// Remote arrival of the packet that closed the group, in ms (the trendline's x axis).
    pub arrival_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Grouped {
    /// The packet joined a group (or was dropped as reordered); no new delta.
    Pending,
    Delta(GroupDelta),
    /// The remote clock jumped or groups kept arriving out of order: start over.
    Reset,
}

#[derive(Debug, Default)]
pub(super) struct InterArrival {
    current: Option<Group>,
    prev: Option<Group>,
    reordered: u32,
}

impl InterArrival {
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn add(&mut self, ack: Ack) -> Grouped {
        let Some(current) = self.current.as_mut() else {
            self.current = Some(Group::start(ack));
            return Grouped::Pending;
        };
        if ack.sent_us < current.first_sent_us {
            // Sent before the group we are building: too late to place.
            return Grouped::Pending;
        }
        if !starts_new_group(current, ack) {
            current.sent_us = current.sent_us.max(ack.sent_us);
            current.complete_us = ack.arrival_us;
            current.feedback_us = ack.feedback_us;
            return Grouped::Pending;
        }
        let finished = *current;
        let mut out = Grouped::Pending;
        if let Some(prev) = self.prev {
            let send_delta = finished.first_sent_us.saturating_sub(prev.first_sent_us);
            let arrival_delta = finished
                .first_arrival_us
                .saturating_sub(prev.first_arrival_us);
            let local_delta = finished.feedback_us.saturating_sub(prev.feedback_us);
            if arrival_delta.saturating_sub(local_delta) >= CLOCK_JUMP_US {
                tracing::debug!(
                    arrival_delta,
                    local_delta,
                    "bwe: remote clock jumped, regrouping"
                );
                self.reset();
                return Grouped::Reset;
            }
            if arrival_delta < 0 {
                self.reordered += 1;
                if self.reordered >= REORDERED_RESET {
                    tracing::debug!("bwe: groups keep arriving out of order, regrouping");
                    self.reset();
                    return Grouped::Reset;
                }
                // Keep the previous group as the reference; drop this one.
                self.current = Some(Group::start(ack));
                return Grouped::Pending;
            }
            self.reordered = 0;
            out = Grouped::Delta(GroupDelta {
                send_delta_ms: send_delta as f64 / 1000.0,
                arrival_delta_ms: arrival_delta as f64 / 1000.0,
                arrival_ms: ack.arrival_us as f64 / 1000.0,
            });
        }
        self.prev = Some(finished);
        self.current = Some(Group::start(ack));
        out
    }
}

impl Group {
    fn start(ack: Ack) -> Self {
        Self {
            first_sent_us: ack.sent_us,
            sent_us: ack.sent_us,
            first_arrival_us: ack.arrival_us,
            complete_us: ack.arrival_us,
            feedback_us: ack.feedback_us,
        }
    }
}

fn starts_new_group(group: &Group, ack: Ack) -> bool {
    let send_delta = ack.sent_us.saturating_sub(group.sent_us);
    if send_delta == 0 {
        return false;
    }
    let arrival_delta = ack.arrival_us.saturating_sub(group.complete_us);
    let propagation_delta = arrival_delta.saturating_sub(send_delta);
    let in_burst = propagation_delta < 0
        && send_delta < MAX_BURST_SEND_GAP_US
        && arrival_delta <= BURST_DELTA_US
        && ack.arrival_us.saturating_sub(group.first_arrival_us) < MAX_BURST_US;
    !in_burst && ack.sent_us.saturating_sub(group.first_sent_us) > SEND_GROUP_US
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(sent_us: i64, arrival_us: i64) -> Ack {
        Ack {
            sent_us,
            arrival_us,
            feedback_us: sent_us,
        }
    }

    /// Frames of 5 packets sent at once every 33 ms; each burst is serialized at the
    /// bottleneck 1 ms per packet. Deltas are per frame, not per packet.
    #[test]
    fn a_frame_burst_is_one_group() {
        let mut ia = InterArrival::default();
        let mut deltas = Vec::new();
        for frame in 0..4i64 {
            let t = frame * 33_000;
            for p in 0..5 {
                if let Grouped::Delta(d) = ia.add(ack(t, t + 20_000 + p * 1_000)) {
                    deltas.push(d);
                }
            }
        }
        // Frame 0 and 1 give the first delta when frame 2 starts; frame 3 is still open.
        assert_eq!(deltas.len(), 2);
        for d in deltas {
            assert_eq!(d.send_delta_ms, 33.0);
            assert_eq!(d.arrival_delta_ms, 33.0);
        }
    }

    /// A queue growing by 4 ms per frame shows as a 4 ms delay variation per group.
    #[test]
    fn growing_queue_gives_positive_variation() {
        let mut ia = InterArrival::default();
        let mut variations = Vec::new();
        for frame in 0..6i64 {
            let t = frame * 33_000;
            for p in 0..3 {
                let arrival = t + 20_000 + frame * 4_000 + p * 1_000;
                if let Grouped::Delta(d) = ia.add(ack(t + p * 100, arrival)) {
                    variations.push(d.arrival_delta_ms - d.send_delta_ms);
                }
            }
        }
        assert_eq!(variations, vec![4.0; 4]);
    }

    /// Packets sent 2 ms apart over 20 ms that arrive compressed (a stalled link letting
    /// go) stay in one group instead of yielding bogus negative variations.
    #[test]
    fn compressed_arrivals_merge_into_the_burst() {
        let mut ia = InterArrival::default();
        assert_eq!(ia.add(ack(0, 50_000)), Grouped::Pending);
        for i in 1..10 {
            assert_eq!(
                ia.add(ack(i * 2_000, 50_000 + i * 100)),
                Grouped::Pending,
                "{i}"
            );
        }
    }

    /// Frames 33 ms apart that arrive back to back (a queue that never empties) stay
    /// separate groups: their growing delay is what the detector must see.
    #[test]
    fn frames_behind_a_busy_queue_are_not_merged() {
        let mut ia = InterArrival::default();
        let mut deltas = 0;
        for frame in 0..6i64 {
            let t = frame * 33_000;
            for p in 0..9 {
                // 3.5 ms per packet at the bottleneck: 9 packets take 31.5 ms + the queue.
                let arrival = 20_000 + frame * 35_000 + p * 3_500;
                if let Grouped::Delta(d) = ia.add(ack(t, arrival)) {
                    assert_eq!(d.arrival_delta_ms - d.send_delta_ms, 2.0);
                    deltas += 1;
                }
            }
        }
        assert_eq!(deltas, 4);
    }

    /// A frame twice the size of the previous takes twice as long to drain, but with an
    /// empty queue its first packet is not later: no delay variation.
    #[test]
    fn bigger_frames_through_an_idle_queue_are_not_delay() {
        let mut ia = InterArrival::default();
        let mut variations = Vec::new();
        for frame in 0..6i64 {
            let t = frame * 33_000;
            let packets = if frame < 3 { 4 } else { 8 };
            for p in 0..packets {
                if let Grouped::Delta(d) = ia.add(ack(t, t + 20_000 + p * 3_500)) {
                    variations.push(d.arrival_delta_ms - d.send_delta_ms);
                }
            }
        }
        assert_eq!(variations, vec![0.0; 4]);
    }

    #[test]
    fn a_remote_clock_jump_resets() {
        let mut ia = InterArrival::default();
        let hour = 3_600_000_000;
        ia.add(ack(0, 10_000));
        ia.add(ack(33_000, 43_000));
        let jumped = ia.add(ack(66_000, 76_000 + hour));
        assert!(
            matches!(jumped, Grouped::Delta(_)),
            "the jump is in the open group"
        );
        assert_eq!(ia.add(ack(99_000, 109_000 + hour)), Grouped::Reset);
        // Afterwards the new base works as usual.
        ia.add(ack(132_000, 142_000 + hour));
        assert!(matches!(
            ia.add(ack(165_000, 175_000 + hour)),
            Grouped::Pending
        ));
        assert!(matches!(
            ia.add(ack(198_000, 208_000 + hour)),
            Grouped::Delta(_)
        ));
    }

    #[test]
    fn arrivals_going_backwards_reset_after_three_groups() {
        let mut ia = InterArrival::default();
        ia.add(ack(0, 1_000_000));
        ia.add(ack(33_000, 1_033_000));
        let mut out = Vec::new();
        for k in 2..6i64 {
            out.push(ia.add(ack(k * 33_000, 1_000_000 - k * 100_000)));
        }
        // The first closes the last good group; the next three are behind it.
        assert!(matches!(out[0], Grouped::Delta(_)));
        assert_eq!(
            out[1..],
            [Grouped::Pending, Grouped::Pending, Grouped::Reset]
        );
    }

    #[test]
    fn packets_sent_before_the_group_are_ignored() {
        let mut ia = InterArrival::default();
        ia.add(ack(100_000, 120_000));
        assert_eq!(ia.add(ack(50_000, 121_000)), Grouped::Pending);
        assert_eq!(ia.current.map(|g| g.first_sent_us), Some(100_000));
    }
}
