//! Capacity analysis: stage summaries in, fitted resource models, the knee, and spec
//! recommendations with costs out.

pub mod summary;

pub use summary::{LatencySummary, ResourceSummary, StageSummary};
