//! Capacity analysis: stage summaries in, fitted resource models, the knee, and spec
//! recommendations with costs out. [`analyze`] is the one entry point; docs/analysis.md gives
//! the formulas.
//!
//! - [`summary`]: the per-stage input type (owned by the load recorder).
//! - [`config`]: the `[analysis]` settings.
//! - [`points`]: stage summaries reduced to one row per stage for the chosen containers.
//! - [`fit`]: least-squares lines with R² and residuals.
//! - [`knee`]: where the spec stops scaling, and the max VUs within the SLA.
//! - [`model`]: the CPU, memory and TPS models, and the seed's ratio model.
//! - [`recommend`]: specs, costs, situations and autoscaling.
//! - [`capacity`]: [`analyze`] and its result type.
//! - [`synthetic`]: stage summaries of a service with known costs, the tests' ground truth.

pub mod capacity;
pub mod config;
pub mod fit;
pub mod knee;
pub mod model;
pub mod points;
pub mod recommend;
pub mod summary;
pub mod synthetic;

pub use capacity::{analyze, CapacityAnalysis, TestedSpec};
pub use config::AnalysisConfig;
pub use summary::{
    ContainerEvent, ContainerEventKind, HostCpu, LatencySummary, ResourceSummary, StageSummary,
    TargetDown, AT_MEMORY_LIMIT,
};
