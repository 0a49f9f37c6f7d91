//! The typed, validated plan: scenarios with their schedules and steps. Built once by
//! `config::validate`, shared read-only (`Arc`) by every VU.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use serde::{Deserialize, Serialize};

use super::body::BodySpec;
use super::template::Template;

/// The `executor` of a scenario, named as k6 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    ConstantVus,
    RampingVus,
    ConstantArrivalRate,
    RampingArrivalRate,
    PerVuIterations,
}

impl ExecutorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConstantVus => "constant-vus",
            Self::RampingVus => "ramping-vus",
            Self::ConstantArrivalRate => "constant-arrival-rate",
            Self::RampingArrivalRate => "ramping-arrival-rate",
            Self::PerVuIterations => "per-vu-iterations",
        }
    }
}

/// Which data-file row an iteration uses (`data_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataMode {
    /// Row `vu % rows` for every iteration of a VU.
    #[default]
    PerVu,
    /// The next row for every iteration, shared across VUs.
    RoundRobin,
}

/// `t0 + offset`, saturating far in the future instead of panicking. Config durations are
/// bounded (`units::duration::MAX`), so this only guards sums of many long stages.
pub fn instant_after(t0: tokio::time::Instant, offset: Duration) -> tokio::time::Instant {
    t0.checked_add(offset)
        .or_else(|| t0.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(t0)
}

/// One stage of a schedule: VUs (closed model) or iterations per second (open model).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage<T> {
    pub name: String,
    pub duration: Duration,
    /// The value at the stage start (the previous stage's target, or the start value).
    pub from: T,
    pub to: T,
    /// Jump to `to` at the start instead of ramping linearly.
    pub step: bool,
}

/// A closed-model stage: VUs.
pub type VuStage = Stage<u64>;
/// An open-model stage: iterations per second.
pub type RateStage = Stage<f64>;

/// A stage value that ramps linearly (VUs, rates).
pub trait StageValue: Copy {
    fn as_f64(self) -> f64;
}

impl StageValue for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl StageValue for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

/// Where a schedule is at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageAt {
    /// The target now: linear within a ramp, the stage's target in a step.
    pub value: f64,
    /// When the running stage ends (from the scenario start).
    pub end: Duration,
    /// True within a linear ramp, whose value changes continuously.
    pub ramping: bool,
}

impl<T: StageValue> Stage<T> {
    /// The state of `stages` at `t` from the scenario start; `None` once they are over.
    pub fn at(stages: &[Self], t: Duration) -> Option<StageAt> {
        let mut start = Duration::ZERO;
        for s in stages {
            let end = start.saturating_add(s.duration);
            if t < end {
                let (from, to) = (s.from.as_f64(), s.to.as_f64());
                if s.step || from == to {
                    return Some(StageAt {
                        value: to,
                        end,
                        ramping: false,
                    });
                }
                let frac = (t - start).as_secs_f64() / s.duration.as_secs_f64();
                return Some(StageAt {
                    value: from + (to - from) * frac,
                    end,
                    ramping: true,
                });
            }
            start = end;
        }
        None
    }
}

/// Stage infos with their start offsets.
fn infos<T>(
    stages: &[Stage<T>],
    vus: impl Fn(&Stage<T>) -> u64,
    rate: impl Fn(&Stage<T>) -> Option<f64>,
) -> Vec<StageInfo> {
    let mut at = Duration::ZERO;
    stages
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let info = StageInfo {
                index,
                name: s.name.clone(),
                start: at,
                duration: s.duration,
                vus: vus(s),
                rate: rate(s),
            };
            at = at.saturating_add(s.duration);
            info
        })
        .collect()
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
        match self {
            Schedule::Vus { stages, .. } => infos(stages, |s| s.to, |_| None),
            Schedule::Arrival {
                stages, max_vus, ..
            } => infos(stages, |_| *max_vus, |s| Some(s.to)),
            Schedule::PerVuIterations {
                vus, max_duration, ..
            } => vec![StageInfo {
                index: 0,
                name: "iterations".into(),
                start: Duration::ZERO,
                duration: *max_duration,
                vus: *vus,
                rate: None,
            }],
        }
    }

    /// Total planned length (the upper bound for per-vu-iterations).
    pub fn total(&self) -> Duration {
        self.stages()
            .iter()
            .fold(Duration::ZERO, |a, s| a.saturating_add(s.duration))
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
    /// The client's ceilings and backoff, from `[limits]`.
    pub limits: super::http1::Limits,
    pub setup_policy: SetupPolicy,
    /// TCP and TLS settings of the target, shared by every scenario of a config.
    pub transport: Arc<super::net::Transport>,
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

/// Why a `--shard` value is not `I/N` with `0 <= I < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("expected I/N such as 0/3, got {0:?}")]
    Form(String),
    #[error("shard index must be a whole number, got {0:?}")]
    Index(String),
    #[error("shard count must be a whole number, got {0:?}")]
    Count(String),
    #[error("need 0 <= I < N, got {index}/{count}")]
    Range { index: u64, count: u64 },
}

impl std::str::FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| ShardError::Form(s.to_string()))?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| ShardError::Index(i.to_string()))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| ShardError::Count(n.to_string()))?;
        if count == 0 || index >= count {
            return Err(ShardError::Range { index, count });
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// This shard's share of `total` VUs. Shards stripe the global VU indexes as k6's
    /// execution segments `0,1/N,…,1` do: global VU `g` belongs to shard `g mod N`, so this
    /// shard runs the `g < total` with `g ≡ index (mod N)`, and the shares sum to `total`.
    pub fn vus(&self, total: u64) -> u64 {
        (total + self.count - 1 - self.index) / self.count
    }

    /// The global index of this shard's `local`-th VU or arrival (striped, as above).
    pub fn global(&self, local: u64) -> u64 {
        // Saturating: an index past every schedule (a closed pool's) stays past it.
        local.saturating_mul(self.count).saturating_add(self.index)
    }

    /// True when global VU or arrival `g` is this shard's.
    pub fn owns(&self, g: u64) -> bool {
        g % self.count == self.index
    }

    pub fn is_first(&self) -> bool {
        self.index == 0
    }
}

/// What a VU does when its `[[scenarios.setup]]` steps fail (`setup_retry`,
/// `on_setup_failure`), and when an iteration shows that its login expired
/// (`rerun_setup_on`).
#[derive(Debug, Clone, PartialEq)]
pub struct SetupPolicy {
    /// Extra attempts after a failed setup, each after `backoff`, before it counts as failed.
    pub retries: u32,
    pub backoff: Duration,
    /// After the retries: stop the VU, or try again at its next iteration.
    pub on_failure: OnSetupFailure,
    /// Statuses of an iteration step that mean "log in again".
    pub rerun_on: Vec<u16>,
    /// How many times one VU may re-run its setup for `rerun_on`.
    pub max_reruns: u32,
}

impl Default for SetupPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            backoff: Duration::from_secs(1),
            on_failure: OnSetupFailure::StopVu,
            rerun_on: Vec::new(),
            max_reruns: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnSetupFailure {
    /// The VU runs no more iterations in this scenario.
    #[default]
    StopVu,
    /// The VU waits `backoff` and tries the setup again before its next iteration.
    Retry,
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
        // Striped: VUs 0, 3, 6, 9 | 1, 4, 7 | 2, 5, 8.
        assert_eq!(Shard { index: 0, count: 3 }.vus(10), 4);
        assert_eq!(Shard { index: 1, count: 3 }.vus(10), 3);
        assert_eq!(Shard { index: 2, count: 3 }.vus(10), 3);
        for n in 1..=4u64 {
            for g in 0..40u64 {
                let owners: Vec<u64> = (0..n)
                    .filter(|&i| Shard { index: i, count: n }.owns(g))
                    .collect();
                assert_eq!(owners.len(), 1, "g={g} n={n}");
                let s = Shard {
                    index: owners[0],
                    count: n,
                };
                assert_eq!(s.global(g / n), g);
                // The owner's share counts g exactly when g is below the total.
                assert_eq!(s.vus(g + 1) - s.vus(g), 1);
            }
        }
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
