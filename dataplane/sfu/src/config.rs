//! Tunables of one shard core. Plain data with defaults that work for a conference call;
//! the media node fills it from its TOML config.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Datagrams longer than this are dropped as oversize.
    pub max_datagram: usize,
    /// Where a subscriber's downlink estimate starts (transport-cc); 0 turns congestion
    /// control off (no estimate: every subscriber gets the layers its preference allows).
    pub bwe_initial_kbps: u64,
    /// Until the subscriptions say what a subscriber could use, what the estimator may probe
    /// for.
    pub bwe_desired_kbps: u64,
    /// The estimate stays within these.
    pub bwe_min_kbps: u64,
    pub bwe_max_kbps: u64,
    /// At most one keyframe request per layer towards a publisher per this interval.
    pub keyframe_request_interval: Duration,
    /// How often the core re-evaluates active speakers and layer choices without packets.
    pub tick: Duration,
    /// A peer not connected (ICE + DTLS) this long after its answer is closed.
    pub connect_timeout: Duration,
    /// Peers' timers that are not due at once are rounded up to this grid so many peers
    /// share a shard wake-up (`timers::TimerGrid`); zero keeps them exact.
    pub timer_granularity: Duration,
    /// How much room data one peer may send (data channels; docs/PROTOCOL.md).
    pub data_limits: crate::data::DataLimits,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            max_datagram: 1500,
            bwe_initial_kbps: 1_000,
            bwe_desired_kbps: 4_000,
            bwe_min_kbps: 30,
            bwe_max_kbps: 50_000,
            keyframe_request_interval: Duration::from_millis(300),
            tick: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(30),
            timer_granularity: Duration::from_millis(1),
            data_limits: crate::data::DataLimits::default(),
        }
    }
}
