//! When participants join and leave: the initial joins paced at `join_rate_per_sec`, churn
//! (each member of the churn group leaves after its lifetime and a new one takes its seat),
//! and ramp steps (more seats per room). Sans-IO: time is passed in and the timeline answers
//! with actions; it never touches the pool, the network or the clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crate::scenario::Scenario;

/// One place in a room: `seat` of `group` in `room`; `generation` counts the participants
/// churn has put in that seat (0 = the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seat {
    pub group: usize,
    pub room: u32,
    pub seat: u32,
    pub generation: u32,
}

impl Seat {
    /// The participant identity of this seat (unique per run, valid per docs/API.md names).
    pub fn identity(&self, group_name: &str) -> String {
        format!(
            "{group_name}-r{}-s{}-g{}",
            self.room, self.seat, self.generation
        )
    }

    /// The seat without its generation: what churn replaces in place.
    pub fn place(&self) -> (usize, u32, u32) {
        (self.group, self.room, self.seat)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Join(Seat),
    Leave(Seat),
}

pub struct Timeline {
    interval: Duration,
    next_join: Instant,
    pending: VecDeque<Seat>,
    churn: Option<Churning>,
    leaves: BinaryHeap<Reverse<(Instant, Seat)>>,
    per_room: Vec<u32>,
    rooms: Vec<u32>,
    max_lag: Duration,
    joins: u64,
    leaves_done: u64,
}

struct Churning {
    group: usize,
    lifetime: Duration,
    /// First-generation seats of the churn group, in join order: their lifetimes are spread
    /// over (0, lifetime] so leaves arrive at a steady rate instead of in one burst.
    first_generation: u64,
    first_seen: u64,
}

impl Timeline {
    pub fn new(scenario: &Scenario, start: Instant) -> Timeline {
        let mut pending = VecDeque::new();
        // Group-major: publishers (listed first in the shipped scenarios) are in before
        // their audience, room by room.
        for (g, group) in scenario.groups.iter().enumerate() {
            for room in 0..group.rooms {
                for seat in 0..group.per_room {
                    pending.push_back(Seat {
                        group: g,
                        room,
                        seat,
                        generation: 0,
                    });
                }
            }
        }
        let churn = scenario.churn.as_ref().and_then(|c| {
            let g = scenario.groups.iter().position(|g| g.name == c.group)?;
            let group = &scenario.groups[g];
            Some(Churning {
                group: g,
                lifetime: Duration::from_secs_f64(c.lifetime_secs),
                first_generation: u64::from(group.rooms) * u64::from(group.per_room),
                first_seen: 0,
            })
        });
        Timeline {
            interval: Duration::from_secs_f64(1.0 / scenario.join_rate_per_sec),
            next_join: start,
            pending,
            churn,
            leaves: BinaryHeap::new(),
            per_room: scenario.groups.iter().map(|g| g.per_room).collect(),
            rooms: scenario.groups.iter().map(|g| g.rooms).collect(),
            max_lag: Duration::ZERO,
            joins: 0,
            leaves_done: 0,
        }
    }

    /// Everything due at `now`, in order. Call often (every few ms): joins that fall due
    /// between calls are issued at once and the delay counts as lag.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(Reverse((at, seat))) = self.leaves.peek().copied() {
            if at > now {
                break;
            }
            self.leaves.pop();
            actions.push(Action::Leave(seat));
            self.leaves_done += 1;
            self.enqueue(
                Seat {
                    generation: seat.generation + 1,
                    ..seat
                },
                now,
            );
        }
        while !self.pending.is_empty() && self.next_join <= now {
            let seat = self.pending.pop_front().expect("checked non-empty");
            self.max_lag = self.max_lag.max(now - self.next_join);
            if let Some(lifetime) = self.lifetime_of(&seat) {
                self.leaves.push(Reverse((now + lifetime, seat)));
            }
            actions.push(Action::Join(seat));
            self.joins += 1;
            self.next_join += self.interval;
        }
        actions
    }

    fn enqueue(&mut self, seat: Seat, now: Instant) {
        if self.pending.is_empty() {
            // Idle until now: the join is paced from when it is queued, not from the slot
            // the last join left behind.
            self.next_join = self.next_join.max(now);
        }
        self.pending.push_back(seat);
    }

    fn lifetime_of(&mut self, seat: &Seat) -> Option<Duration> {
        let churn = self.churn.as_mut()?;
        if seat.group != churn.group {
            return None;
        }
        if seat.generation > 0 || churn.first_seen >= churn.first_generation {
            return Some(churn.lifetime);
        }
        churn.first_seen += 1;
        Some(
            churn
                .lifetime
                .mul_f64(churn.first_seen as f64 / churn.first_generation.max(1) as f64),
        )
    }

    /// Adds `step` seats per room to `group`, up to `max_per_room`; returns the new size,
    /// or None when the group is already at the maximum.
    pub fn raise(
        &mut self,
        group: usize,
        step: u32,
        max_per_room: u32,
        now: Instant,
    ) -> Option<u32> {
        let old = self.per_room[group];
        let new = old.saturating_add(step).min(max_per_room);
        if new <= old {
            return None;
        }
        for room in 0..self.rooms[group] {
            for seat in old..new {
                self.enqueue(
                    Seat {
                        group,
                        room,
                        seat,
                        generation: 0,
                    },
                    now,
                );
            }
        }
        self.per_room[group] = new;
        Some(new)
    }

    /// Joins queued but not yet issued.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn per_room(&self, group: usize) -> u32 {
        self.per_room[group]
    }

    /// The longest a join was issued after its slot: the harness falling behind its schedule.
    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }

    pub fn joins_issued(&self) -> u64 {
        self.joins
    }

    pub fn leaves_issued(&self) -> u64 {
        self.leaves_done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(extra: &str) -> Scenario {
        Scenario::parse(
            &format!(
                "name = \"t\"\nduration_secs = 5\njoin_rate_per_sec = 10\n\
                 [[group]]\nname = \"pub\"\nrooms = 2\nper_room = 1\naudio = true\nsubscribe = false\n\
                 [[group]]\nname = \"sub\"\nrooms = 2\nper_room = 3\n{extra}"
            ),
            "t.toml",
        )
        .unwrap()
    }

    fn joins(actions: &[Action]) -> Vec<Seat> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Join(s) => Some(*s),
                Action::Leave(_) => None,
            })
            .collect()
    }

    #[test]
    fn joins_are_paced_publishers_first() {
        let t0 = Instant::now();
        let mut t = Timeline::new(&scenario(""), t0);
        let first = joins(&t.poll(t0));
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].group, first[0].room), (0, 0));
        // 10 per second: by 0.35 s four joins in total (at 0, 0.1, 0.2, 0.3).
        let more = joins(&t.poll(t0 + Duration::from_millis(350)));
        assert_eq!(more.len(), 3);
        assert_eq!((more[0].group, more[0].room), (0, 1));
        assert!(more[1..].iter().all(|s| s.group == 1));
        assert_eq!(t.pending(), 8 - 4);
        let rest = joins(&t.poll(t0 + Duration::from_secs(10)));
        assert_eq!(rest.len(), 4);
        assert_eq!(t.pending(), 0);
        assert_eq!(t.joins_issued(), 8);
        // Polled late: the last join was due at 0.7 s and went at 10 s.
        assert!(t.max_lag() > Duration::from_secs(9));
        let names: Vec<String> = rest.iter().map(|s| s.identity("sub")).collect();
        assert!(names.contains(&"sub-r1-s2-g0".to_string()), "{names:?}");
    }

    #[test]
    fn churn_spreads_first_leaves_then_replaces_each_seat() {
        let t0 = Instant::now();
        let mut t = Timeline::new(
            &scenario("[churn]\ngroup = \"sub\"\nlifetime_secs = 6\n"),
            t0,
        );
        let mut leaves = Vec::new();
        let mut all_joins = Vec::new();
        // Step through 20 s in 10 ms steps.
        for ms in (0..20_000).step_by(10) {
            for a in t.poll(t0 + Duration::from_millis(ms)) {
                match a {
                    Action::Join(s) => all_joins.push((ms, s)),
                    Action::Leave(s) => leaves.push((ms, s)),
                }
            }
        }
        // Publishers never leave.
        assert!(leaves.iter().all(|(_, s)| s.group == 1));
        // 6 subscribers with lifetimes 1..6 s after their join, then 6 s each: over 20 s
        // every seat leaves at least twice; nobody leaves before 1 s.
        assert!(leaves.len() >= 12, "{}", leaves.len());
        assert!(leaves[0].0 >= 1000, "{leaves:?}");
        // Each leave is followed by a join of the same place, one generation up.
        for (ms, left) in &leaves {
            let replaced = all_joins.iter().any(|(j, s)| {
                j >= ms && s.place() == left.place() && s.generation == left.generation + 1
            });
            assert!(replaced || *ms > 19_500, "{left:?} at {ms} not replaced");
        }
        // Leaves spread: no more than 2 in any 500 ms.
        for (ms, _) in &leaves {
            let near = leaves
                .iter()
                .filter(|(m, _)| *m >= *ms && *m < ms + 500)
                .count();
            assert!(near <= 2, "{near} leaves within 500 ms of {ms}");
        }
    }

    #[test]
    fn ramp_adds_seats_per_room_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut t = Timeline::new(&scenario(""), t0);
        t.poll(t0 + Duration::from_secs(5));
        assert_eq!(t.pending(), 0);
        let now = t0 + Duration::from_secs(6);
        assert_eq!(t.raise(1, 2, 4, now), Some(4));
        // One more seat fits per room (max 4), in both rooms.
        assert_eq!(t.pending(), 2);
        assert_eq!(t.raise(1, 2, 4, now), None);
        let first = joins(&t.poll(now));
        // Paced from when they were queued, not all at once.
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].group, first[0].seat), (1, 3));
        assert_eq!(joins(&t.poll(now + Duration::from_millis(100))).len(), 1);
        assert_eq!(t.per_room(1), 4);
    }
}
