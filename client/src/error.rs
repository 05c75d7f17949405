//! The client's error type. Owns no state; it must never carry a str0m type in its
//! public shape beyond a message, so callers need not depend on str0m.

/// What can go wrong driving a [`crate::Client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The SDP text did not parse.
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// str0m refused the offer or answer (or another operation).
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// `accept_answer` without an outstanding offer from `create_offer`.
    #[error("no offer is pending an answer")]
    NoPendingOffer,
    /// `create_offer` with nothing to change.
    #[error("nothing to offer")]
    NothingToOffer,
    /// The local address is not usable as an ICE host candidate.
    #[error("bad local address: {0}")]
    BadLocalAddress(String),
    /// A socket operation in the blocking runner failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
