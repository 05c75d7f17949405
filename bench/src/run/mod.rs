//! `shardcast-bench run SCENARIO`: start (or target) a server, set up rooms and tokens over
//! REST, let the pool's WebRTC clients join on the scenario's timeline, sample every second,
//! measure the floor in the same run, and report (table, JSON, SVG).
//!
//! Module map: `orchestrate` (the order of things and the control loop: `run`,
//! `run_repeated`), `server` (the child process), `setup` (REST), `timeline` (when who joins
//! and leaves; sans-IO), `measure` (snapshots → per-second samples), `settle` (when the load
//! is steady enough to measure; sans-IO), `negotiated` (the SRTP profile the clients got),
//! `summary` (windows, knee, the report), `aggregate` (`--repeat`: medians over runs).
//! Nothing here is asserted on speed in tests.

pub mod aggregate;
pub mod measure;
pub mod negotiated;
pub mod orchestrate;
pub mod server;
pub mod settle;
pub mod setup;
pub mod snapshot;
pub mod summary;
pub mod timeline;
