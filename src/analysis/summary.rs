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
    /// Seconds the container's tasks were throttled by its CPU quota per second of the window
    /// (summed over its threads, so it can pass 1); 0 without a quota or data.
    #[serde(default)]
    pub cpu_throttled_ratio: f64,
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
    /// Successful requests (the expected status, checks passed) per second in the window: what
    /// the models, the knee and "highest TPS" use.
    pub tps: f64,
    /// Every completed request (responses and failures) per second, shown next to `tps`, so a
    /// stage of fast failures does not pass for throughput.
    #[serde(default)]
    pub request_rate: f64,
    /// `None` (JSON `null`) when no response arrived in the window: a stage of timeouts or
    /// refused connections has no latency, not a latency of 0.
    pub latency: Option<LatencySummary>,
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
    /// OOM kills, restarts and exits of measured containers during the stage (settle
    /// included), in the order they were seen.
    #[serde(default)]
    pub events: Vec<ContainerEvent>,
    /// Set when the target stopped accepting connections during the stage.
    #[serde(default)]
    pub target_down: Option<TargetDown>,
    /// The host's CPU during the window, to tell a starved host from a reached limit.
    #[serde(default)]
    pub host: Option<HostCpu>,
}

/// What happened to a measured container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerEventKind {
    /// The kernel's OOM killer fired in the container's cgroup.
    OomKill,
    /// The container was started again (restart policy or by hand).
    Restart,
    /// The container stopped running (or vanished) without an OOM kill.
    Exit,
}

impl std::fmt::Display for ContainerEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerEventKind::OomKill => "OOM kill",
            ContainerEventKind::Restart => "restart",
            ContainerEventKind::Exit => "exit",
        })
    }
}

/// A container's memory at or above this share of its limit is "at its limit": the kernel is
/// then reclaiming its pages, and it may thrash for seconds before (or instead of) an OOM kill.
pub const AT_MEMORY_LIMIT: f64 = 0.9;

/// One OOM kill, restart or exit, placed on its stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerEvent {
    pub container: String,
    pub group: String,
    pub kind: ContainerEventKind,
    /// Seconds from the start of the stage to the sample that first showed it (the sampling
    /// interval bounds how late that is).
    pub at_seconds: f64,
    /// Wall-clock time of that sample.
    #[serde(with = "humantime_serde")]
    pub at: Option<std::time::SystemTime>,
    /// The container's memory limit at the time, bytes (0 = unknown).
    pub memory_limit_bytes: u64,
    /// The container's CPU limit at the time, cores (0 = unknown).
    pub cpu_limit_cores: f64,
    /// Set when the event came after the plan's load had ended, while a container left at
    /// its memory limit was still watched: seconds after that end. The stage's load caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_load_seconds: Option<f64>,
}

impl std::fmt::Display for ContainerEvent {
    /// "OOM kill of demo at +3.2s", with ", 1.1 s after the load ended" for a late one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} {}",
            self.kind,
            self.container,
            event_time(self.at_seconds, self.after_load_seconds)
        )
    }
}

/// "at +3.2s" from the stage start, and for an event seen after the load had ended
/// ([`ContainerEvent::after_load_seconds`]) also how long after.
pub fn event_time(at_seconds: f64, after_load_seconds: Option<f64>) -> String {
    match after_load_seconds {
        Some(after) => format!("at +{at_seconds:.1}s, {after:.1} s after the load ended"),
        None => format!("at +{at_seconds:.1}s"),
    }
}

/// The target refused connections: from `from_seconds` (after the stage start) every request
/// failed to connect and none got a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetDown {
    pub from_seconds: f64,
    /// When responses came back, if they did within the stage.
    pub back_at_seconds: Option<f64>,
    /// Connect failures while it was down.
    pub connect_failures: u64,
}

/// The host's CPU over a stage's window, from /proc/stat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCpu {
    /// Idle (and I/O wait) share of all CPUs, 0..1.
    pub idle_ratio: f64,
    /// CPUs online.
    pub cpus: u64,
}
