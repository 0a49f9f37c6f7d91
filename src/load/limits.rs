//! `[limits]`: the ceilings that keep a config, a target or a client from exhausting loadspec
//! (the VU count, response heads, bodies kept for captures, the pause after failures without
//! an exchange), and the client's share of them. docs/reliability.md lists what a user sees
//! when each is reached.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Ceilings that keep a config, a target or a client from exhausting loadspec. Each is
/// documented with what a user sees when it is reached in docs/reliability.md.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The most VUs any one field may ask for (`vus`, `start_vus`, stage targets,
    /// `pre_allocated_vus`, `max_vus`, the experiment's VU counts).
    pub max_vus: u64,
    /// The largest response head (status line and headers) accepted, in bytes; a larger one
    /// counts as a failure with reason `header_too_large`.
    #[serde(with = "crate::units::bytes")]
    pub max_response_head: u64,
    /// The most header lines a response may have; more count as `header_too_large`.
    pub max_response_headers: usize,
    /// The largest body kept for a step's body captures (regex, JSON); a larger body fails
    /// the check with reason `capture_too_large`. Steps without such captures keep nothing.
    #[serde(with = "crate::units::bytes")]
    pub max_capture_body: u64,
    /// The first pause of a VU after a failed connect; it doubles with each further failure.
    #[serde(with = "crate::units::duration")]
    pub connect_backoff_min: Duration,
    /// The longest pause after failed connects; a successful connect resets the pause.
    #[serde(with = "crate::units::duration")]
    pub connect_backoff_max: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_vus: 10_000,
            max_response_head: 64 * 1024,
            max_response_headers: 256,
            max_capture_body: 1024 * 1024,
            connect_backoff_min: Duration::from_millis(10),
            connect_backoff_max: Duration::from_secs(1),
        }
    }
}

/// The client's ceilings, from `[limits]` (docs/reliability.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest response head in bytes; more is `header_too_large`.
    pub max_head: usize,
    /// Most response header lines; more is `header_too_large`.
    pub max_headers: usize,
    /// Largest body kept for captures; more is `capture_too_large`.
    pub max_capture_body: u64,
    /// A VU's pause after its first failure without an exchange (connect, fd limit, invalid
    /// request); it doubles per further failure up to `backoff_max`, and resets on success.
    pub backoff_min: std::time::Duration,
    pub backoff_max: std::time::Duration,
}

impl Limits {
    pub fn from_config(l: &LimitsConfig) -> Self {
        Self {
            max_head: l.max_response_head as usize,
            max_headers: l.max_response_headers,
            max_capture_body: l.max_capture_body,
            backoff_min: l.connect_backoff_min,
            backoff_max: l.connect_backoff_max,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&Default::default())
    }
}
