//! The pool's snapshot types as `run` reads them (one place to name them).

pub use crate::pool::{ParticipantId, ParticipantSnapshot, ParticipantState, PoolSnapshot};
