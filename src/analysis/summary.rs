//! Per-stage summaries: what one stage of an experiment measured after its settle period. The
//! load recorder and the container sampler produce these; the models, the knee detection and
//! the reports consume them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::latency::LatencySummary;

/// CPU and memory of one container, or of a group summed per sample, during the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSummary {
    /// Container name, or the group name for group rows.
    pub name: String,
    pub group: String,
    pub cpu_cores_avg: f64,
    pub cpu_cores_max: f64,
    pub cpu_limit_cores: f64,
    /// cpu_cores_avg / cpu_limit_cores, 0..1 (can pass 1 briefly because of sampling).
    pub cpu_utilization: f64,
    pub memory_bytes_avg: f64,
    pub memory_bytes_max: f64,
    pub memory_limit_bytes: f64,
    pub memory_utilization: f64,
    /// How many container samples fell into the window.
    pub samples: u64,
}

/// One stage of one scenario, measured after the settle period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub scenario: String,
    /// Index of the stage within its scenario, from 0.
    pub stage_index: usize,
    /// Stage name from the config (`T1`), or `stage-<i>`.
    pub stage: String,
    /// VUs active during the window (for arrival-rate stages: the mean busy VUs).
    pub vus: f64,
    /// Target arrival rate per second for open-model stages.
    pub target_rate: Option<f64>,
    /// Length of the measured window, seconds (stage length minus settle).
    pub window_seconds: f64,
    /// Completed requests (responses plus failures) in the window.
    pub requests: u64,
    /// Responses per second in the window.
    pub tps: f64,
    pub latency: LatencySummary,
    /// Requests that got no response or an unexpected status.
    pub errors: u64,
    pub error_ratio: f64,
    /// Status code (or failure reason, e.g. `timeout`) to count.
    pub status: BTreeMap<String, u64>,
    pub dropped_iterations: u64,
    /// One row per container.
    pub containers: Vec<ResourceSummary>,
    /// One row per group, CPU and memory summed over the group's containers at each sample.
    pub groups: Vec<ResourceSummary>,
}
