//! The typed, validated plan: scenarios with their schedules and steps. Built once by
//! `config::validate`, shared read-only (`Arc`) by every VU.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};

use super::body::BodySpec;
use super::template::Template;
use crate::config::raw::{DataMode, ExecutorKind};

/// One stage of a closed-model (VU) schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct VuStage {
    pub name: String,
    pub duration: Duration,
    /// VUs at the stage start (the previous stage's target, or `start_vus`).
    pub from: u64,
    pub to: u64,
    /// Jump to `to` at the start instead of ramping linearly.
    pub step: bool,
}

/// One stage of an open-model (arrival-rate) schedule; rates are iterations per second.
#[derive(Debug, Clone, PartialEq)]
pub struct RateStage {
    pub name: String,
    pub duration: Duration,
    pub from: f64,
    pub to: f64,
    pub step: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// constant-vus and ramping-vus.
    Vus {
        stages: Vec<VuStage>,
        graceful_ramp_down: Duration,
    },
    /// constant-arrival-rate and ramping-arrival-rate.
    Arrival {
        stages: Vec<RateStage>,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
    /// Each VU runs `iterations` iterations, within `max_duration`.
    PerVuIterations {
        vus: u64,
        iterations: u64,
        max_duration: Duration,
    },
}

/// A stage as the observer and the report see it, whatever the executor.
#[derive(Debug, Clone, PartialEq)]
pub struct StageInfo {
    pub index: usize,
    pub name: String,
    pub start: Duration,
    pub duration: Duration,
    /// VUs at the end of the stage (closed model), or max VUs (open model).
    pub vus: u64,
    pub rate: Option<f64>,
}

impl Schedule {
    /// The stages with their start offsets, relative to the scenario start.
    pub fn stages(&self) -> Vec<StageInfo> {
        let mut at = Duration::ZERO;
        let mut out = Vec::new();
        match self {
            Schedule::Vus { stages, .. } => {
                for (index, s) in stages.iter().enumerate() {
                    out.push(StageInfo {
                        index,
                        name: s.name.clone(),
                        start: at,
                        duration: s.duration,
                        vus: s.to,
                        rate: None,
                    });
                    at += s.duration;
                }
            }
            Schedule::Arrival {
                stages, max_vus, ..
            } => {
                for (index, s) in stages.iter().enumerate() {
                    out.push(StageInfo {
                        index,
                        name: s.name.clone(),
                        start: at,
                        duration: s.duration,
                        vus: *max_vus,
                        rate: Some(s.to),
                    });
                    at += s.duration;
                }
            }
            Schedule::PerVuIterations {
                vus, max_duration, ..
            } => out.push(StageInfo {
                index: 0,
                name: "iterations".into(),
                start: Duration::ZERO,
                duration: *max_duration,
                vus: *vus,
                rate: None,
            }),
        }
        out
    }

    /// Total planned length (the upper bound for per-vu-iterations).
    pub fn total(&self) -> Duration {
        self.stages().iter().map(|s| s.duration).sum()
    }

    /// The most VUs this schedule can run at once.
    pub fn max_vus(&self) -> u64 {
        match self {
            Schedule::Vus { stages, .. } => {
                stages.iter().map(|s| s.to.max(s.from)).max().unwrap_or(0)
            }
            Schedule::Arrival { max_vus, .. } => *max_vus,
            Schedule::PerVuIterations { vus, .. } => *vus,
        }
    }
}

/// What counts as the expected answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Any2xx,
    Codes(Vec<u16>),
}

impl Expect {
    pub fn accepts(&self, code: u16) -> bool {
        match self {
            Expect::Any2xx => (200..300).contains(&code),
            Expect::Codes(c) => c.contains(&code),
        }
    }
}

#[derive(Debug, Clone)]
pub enum CaptureKind {
    JsonPointer(String),
    Header(HeaderName),
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub var: usize,
    pub kind: CaptureKind,
}

/// One request of an iteration.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub method: Method,
    pub url: Template,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: BodySpec,
    pub expect: Expect,
    pub timeout: Duration,
    pub captures: Vec<Capture>,
}

/// Rows of values read once at start.
#[derive(Debug, Clone)]
pub struct DataSet {
    /// Variable index for each column.
    pub vars: Vec<usize>,
    pub rows: Vec<Vec<String>>,
    pub mode: DataMode,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub executor: ExecutorKind,
    pub start: Duration,
    pub think_time: Duration,
    pub schedule: Schedule,
    pub setup: Vec<Step>,
    pub steps: Vec<Step>,
    /// Names of the per-VU variables (captures and data columns), by index.
    pub var_names: Vec<String>,
    pub data: Option<DataSet>,
}

pub type ScenarioRef = Arc<Scenario>;

/// `--shard I/N`: this replica runs its exact share of every stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("expected I/N such as 0/3, got {s:?}"))?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("shard index must be a whole number, got {i:?}"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count must be a whole number, got {n:?}"))?;
        if count == 0 || index >= count {
            return Err(format!("need 0 <= I < N, got {index}/{count}"));
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// This shard's share of `total` VUs, as k6's execution segments split them: shard i gets
    /// floor((i+1)·V/N) − floor(i·V/N), so the shares of all shards sum to V exactly.
    pub fn vus(&self, total: u64) -> u64 {
        let (i, n) = (self.index as u128, self.count as u128);
        let v = total as u128;
        ((i + 1) * v / n - i * v / n) as u64
    }

    /// This shard's share of an arrival rate (proportional).
    pub fn rate(&self, total: f64) -> f64 {
        total / self.count as f64
    }

    pub fn is_first(&self) -> bool {
        self.index == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_to_whole() {
        for n in 1..=7u64 {
            for v in 0..=50u64 {
                let sum: u64 = (0..n).map(|i| Shard { index: i, count: n }.vus(v)).sum();
                assert_eq!(sum, v, "n={n} v={v}");
            }
        }
        assert_eq!(Shard { index: 0, count: 3 }.vus(10), 3);
        assert_eq!(Shard { index: 1, count: 3 }.vus(10), 3);
        assert_eq!(Shard { index: 2, count: 3 }.vus(10), 4);
    }

    #[test]
    fn shard_parse() {
        assert_eq!(
            "1/3".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert!("3/3".parse::<Shard>().is_err());
        assert!("x/3".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
    }
}
