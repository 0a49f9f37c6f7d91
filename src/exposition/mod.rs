//! The mechanism under every exported metric: labelled families on plain atomics
//! ([`family`]) and the Prometheus text format writer ([`text`]). A leaf: it knows no metric
//! by name. The families themselves are defined in [`crate::metrics`]; the load engine records
//! into handles of [`family`] without importing `metrics`. [`buckets`] holds the default
//! latency buckets.

pub mod buckets;
pub mod family;
pub mod text;
