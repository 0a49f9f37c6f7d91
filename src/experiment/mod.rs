//! Experiment orchestration: running a plan with its stage observers and progress line; the
//! sweep (bottom-up) and search (top-down) experiments build on it.
pub mod observer;
pub mod plan;
pub mod progress;

pub use plan::{run_plan, PlanResult, Runtime, ScenarioTotals};
