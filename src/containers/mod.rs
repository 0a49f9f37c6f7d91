//! Container measurement: samplers that read CPU, memory, network and lifecycle counters of the
//! containers (or plain processes) serving the API under test, and the limits control that
//! sweep and search experiments use to change `--cpus` / `--memory`.
//!
//! Samplers publish an immutable [`Snapshot`] through a `tokio::sync::watch` channel. The
//! Prometheus collector and the per-stage summaries both read the latest snapshot, so sampling
//! happens once per interval no matter how often Prometheus scrapes.

pub mod config;
pub mod docker;
pub mod error;
pub mod host;
pub mod limits;
pub mod process;
pub mod rate;
pub mod sampler;

pub use config::{ContainersConfig, SourceKind};
pub use error::ContainerError;
pub use limits::{Limits, LimitsControl};
pub use sampler::{spawn_process_sampler, spawn_sampler};

use std::sync::Arc;
use std::time::SystemTime;

/// One container (or process tree) as last sampled.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContainerSample {
    /// Container name without the leading `/` (or `pid:<n>` names for the process source).
    pub name: String,
    /// Group from a label or the config (`backend`, `ai`), so groups can be summed.
    pub group: String,
    /// False when the container exists but the last stats read failed or it is not running.
    pub up: bool,
    /// Cumulative CPU time, seconds.
    pub cpu_usage_seconds_total: f64,
    /// CPU cores used over the last sampling interval (docker stats' CPU % / 100).
    pub cpu_cores: f64,
    /// Cores the container may use: NanoCpus, else quota/period, else online CPUs.
    pub cpu_limit_cores: f64,
    /// `docker stats` memory: usage minus inactive file cache.
    pub memory_usage_bytes: u64,
    /// Memory limit in bytes (host memory when unlimited).
    pub memory_limit_bytes: u64,
    pub cpu_throttled_seconds_total: f64,
    pub network_receive_bytes_total: u64,
    pub network_transmit_bytes_total: u64,
    pub restarts_total: u64,
    pub oom_kills_total: u64,
}

/// Everything one sampling round saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    /// Whether the source (the Docker engine, or /proc) answered in the last round.
    pub source_up: bool,
    /// Wall time of the last round, seconds.
    pub scrape_duration_seconds: f64,
    pub taken_at: SystemTime,
    pub containers: Vec<ContainerSample>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            source_up: false,
            scrape_duration_seconds: 0.0,
            taken_at: SystemTime::UNIX_EPOCH,
            containers: Vec::new(),
        }
    }
}

/// The receiving end every consumer holds.
pub type SnapshotRx = tokio::sync::watch::Receiver<Arc<Snapshot>>;
