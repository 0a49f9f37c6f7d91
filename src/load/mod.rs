//! Load generation: the typed plan, request building, the HTTP client, the executors and the
//! recorder.
pub mod body;
pub mod executor;
pub mod failure;
pub mod h2;
pub mod http1;
pub mod limits;
pub mod meters;
pub mod net;
pub mod plan;
pub mod splice;
pub mod sys;
pub mod template;
pub mod tls;
pub mod vu;

pub use failure::FailureReason;

/// The latency recorder lives in the leaf [`crate::latency`], which the demo target shares.
pub use crate::latency as recorder;
