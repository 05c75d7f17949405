//! Shardcast's load harness: the forwarding floor, the load generator and sinks, process
//! accounting and reports. The binary (`shardcast-bench`) is a thin CLI over this library.
//! Nothing here runs as a timed assertion in the test suite; tests check behaviour only.

pub mod child;
pub mod floor;
pub mod floor_run;
pub mod floor_server_io;
pub mod loadgen;
pub mod pin;
pub mod plot;
pub mod pool;
pub mod probe;
pub mod procstat;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sinks;
pub mod soak;
pub mod srtp;
pub mod udp;
