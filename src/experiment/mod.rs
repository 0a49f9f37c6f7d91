//! Experiment orchestration: running a plan with its stage observers and progress line; the
//! sweep (bottom-up) and search (top-down) experiments build on it.
pub mod apply_spec;
pub mod console;
pub mod observer;
pub mod plan;
pub mod progress;
pub mod search;
pub mod sweep;
pub mod watch;

use std::time::Duration;

pub use plan::{run_plan, PlanResult, Runtime, ScenarioTotals};

/// The `[experiment]` section is owned by [`crate::config`], which composes every section.
pub use crate::config::experiment as config;

use crate::analysis::StageSummary;
use crate::config::Settings;
use crate::load::executor::Stop;
use crate::report::{RestoredLimits, TestedLimits};
use config::Mode;

/// What any experiment produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The scenario the analysis is about.
    pub scenario: String,
    pub stages: Vec<StageSummary>,
    /// Sweep and search: per stage (same order), why it broke the SLA, `None` when it held.
    pub stage_verdicts: Vec<Option<String>>,
    pub totals: Vec<ScenarioTotals>,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub notes: Vec<String>,
    /// Sweep: the most VUs that stayed within the SLA.
    pub max_vus_within_sla: Option<u64>,
    /// Search: the cheapest passing (cpus, memory), confirmed by a re-run.
    pub search_result: Option<(f64, Option<u64>)>,
    /// Search: the winner's smallest margin to the SLA's p95 over its runs, (SLA − p95) ÷ SLA.
    pub search_margin: Option<f64>,
    /// The spec the experiment ran at, when the experiment set it (search: the winner, else
    /// the last candidate tried).
    pub tested_spec: Option<TestedLimits>,
    /// Set when the experiment could not run to its end for a reason other than a drain (no
    /// group, the engine refused a limit): the process exits non-zero and the report says why.
    pub aborted: Option<String>,
    pub restored: Vec<RestoredLimits>,
}

impl Outcome {
    pub fn new(scenario: String) -> Self {
        Self {
            scenario,
            ..Self::default()
        }
    }
}

/// Run the configured experiment once.
pub async fn run_experiment(settings: &Settings, rt: &Runtime, stop: Stop) -> Outcome {
    let exp = &settings.raw.experiment;
    match exp.mode {
        Mode::Plan => {
            let r = run_plan(settings, rt, settings.raw.analysis.settle, stop).await;
            // Models are fitted on one scenario's stages: the first one with the most stages.
            let scenario = settings
                .scenarios
                .iter()
                .max_by_key(|s| (s.schedule.stages().len(), std::cmp::Reverse(s.name.clone())))
                .map(|s| s.name.clone())
                .unwrap_or_default();
            Outcome {
                scenario,
                stages: r.stages,
                totals: r.totals,
                elapsed: r.elapsed,
                interrupted: r.interrupted,
                ..Outcome::default()
            }
        }
        Mode::Sweep => sweep::run(settings, rt, &exp.sweep, stop).await,
        Mode::Search => search::run(settings, rt, &exp.search, stop).await,
    }
}
