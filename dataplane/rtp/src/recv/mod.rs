//! What a receiver owes a sender, per incoming stream: reception statistics for receiver
//! reports (RFC 3550 A.1, A.3, A.8), NACK generation (RFC 4585 §6.2.1), NTP time and RTT from
//! LSR/DLSR (RFC 3550 §4, §6.4.1); and [`history`], the bounded per-track packet history that
//! answers subscribers' NACKs.
//!
//! Every type here is fed extended sequence numbers (`roc << 16 | seq`, 48 bits in a `u64`)
//! from the SRTP layer, which has already authenticated the packet and guessed its rollover
//! counter; nothing here parses bytes. Time is passed in (`Instant`), never read.
//!
//! Must never: allocate per packet (every ring is allocated at creation and never grows),
//! keep state a peer can grow without a cap, or panic on any sequence number, timestamp or
//! arrival time, however absurd.

pub mod history;
pub mod nack;
pub mod ntp;
mod reorder;
pub mod stats;
mod window;

pub use history::{Insert, PacketHistory};
pub use nack::{Arrival, NackGenerator};
pub use stats::{ReceiveStats, SenderClock};

/// RFC 3550 A.1's MAX_DROPOUT: a jump ahead by more than this many packets is not believed
/// until the next packet follows it in sequence (then the stream is taken to have restarted).
const MAX_DROPOUT: u64 = 3000;
