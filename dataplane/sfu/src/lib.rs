//! Shardcast's sans-IO SFU core.
//!
//! Owns rooms, peers (one str0m `Rtc` each), published tracks and subscriptions of one shard,
//! driven by `handle_*` calls and drained with `poll_output`. It never reads the clock, never
//! touches a socket and never blocks: the shard (crate `shardcast-dataplane`) does the I/O.

pub mod forward;
pub mod ids;
