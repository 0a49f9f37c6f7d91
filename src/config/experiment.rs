//! `[experiment]`: which experiment the daemon runs — the plan as written, a bottom-up sweep,
//! or a top-down search — and their parameters.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_error::Errors;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Run the scenarios as configured.
    #[default]
    Plan,
    /// Bottom-up: at a fixed spec, step VUs up until the SLA breaks or the CPU saturates.
    Sweep,
    /// Top-down: the cheapest cpus candidate that serves `vus` within the SLA.
    Search,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plan => "plan",
            Mode::Sweep => "sweep",
            Mode::Search => "search",
        }
    }

    /// Sweep and search set container limits and judge the SLA on the whole load, so they
    /// cannot run as one shard of several (`--shard I/N` with N > 1).
    pub fn check_shard(self, shard: crate::load::plan::Shard) -> Result<(), ModeError> {
        if shard.count > 1 && self != Mode::Plan {
            return Err(ModeError::Sharded {
                mode: self.as_str(),
                index: shard.index,
                count: shard.count,
            });
        }
        Ok(())
    }
}

/// Why an experiment mode cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    #[error("experiment.mode = \"{mode}\" cannot run with --shard {index}/{count}: it sets the container limits and judges the SLA on the whole load, so it runs in one process; run it unsharded, or run the plan sharded (mode = \"plan\") and `loadspec analyze` it")]
    Sharded {
        mode: &'static str,
        index: u64,
        count: u64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    pub mode: Mode,
    /// The common wall-clock start of a sharded run (unix seconds or RFC 3339); `--start-at`
    /// and `LOADSPEC_START_AT` override it. See docs/scale-out.md.
    pub start_at: Option<super::start::StartAt>,
    /// The run's identity in `loadspec_run_info` and the report folder; default: derived from
    /// `start_at` (so every shard agrees), else `<mode>-<n>`.
    pub run_id: Option<String>,
    pub sweep: SweepConfig,
    pub search: SearchConfig,
}

/// The spec a sweep holds, set through the limits control when given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpecConfig {
    pub cpus: Option<f64>,
    #[serde(with = "crate::units::opt_bytes")]
    pub memory: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// Scenario whose requests the sweep sends (default: the first).
    pub scenario: Option<String>,
    /// VU counts to step through, in order.
    pub vus: Vec<u64>,
    /// Length of each step (the settle period is inside it).
    #[serde(with = "crate::units::duration")]
    pub stage_duration: Duration,
    /// Stop at the first step that breaks the SLA or saturates the CPU.
    pub stop_on_break: bool,
    /// Container group whose limits are set to `spec` (needs `containers.source = "docker"`).
    pub group: Option<String>,
    pub spec: SpecConfig,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            scenario: None,
            vus: vec![1, 2, 3, 4, 5, 6, 8, 10],
            stage_duration: Duration::from_secs(20),
            stop_on_break: true,
            group: None,
            spec: SpecConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    pub scenario: Option<String>,
    /// N1: the VUs that must be served.
    pub vus: u64,
    /// N2: the p95 bound (default: `sla.latency_p95`).
    #[serde(with = "crate::units::duration")]
    pub latency_p95: Option<Duration>,
    /// Candidate cpus values, searched in ascending order.
    pub cpus: Vec<f64>,
    /// Memory for every candidate (default: each container's current limit).
    #[serde(with = "crate::units::opt_bytes")]
    pub memory: Option<u64>,
    /// Container group whose limits are changed (required).
    pub group: Option<String>,
    #[serde(with = "crate::units::duration")]
    pub stage_duration: Duration,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            scenario: None,
            vus: 10,
            latency_p95: None,
            cpus: vec![0.5, 1.0, 1.5, 2.0, 3.0, 4.0],
            memory: None,
            group: None,
            stage_duration: Duration::from_secs(20),
        }
    }
}

impl ExperimentConfig {
    pub fn validate(&self, path: &str, scenarios: &[String], docker: bool, errs: &mut Errors) {
        let check_scenario = |s: &Option<String>, p: &str, errs: &mut Errors| {
            if let Some(s) = s {
                if !scenarios.contains(s) {
                    errs.add(p.to_string(), format!("no scenario is named {s:?}"));
                }
            }
        };
        if let Some(id) = &self.run_id {
            if let Err(why) = super::start::check_run_id(id) {
                errs.add(format!("{path}.run_id"), why);
            }
        }
        match self.mode {
            Mode::Plan => {}
            Mode::Sweep => {
                let p = format!("{path}.sweep");
                check_scenario(&self.sweep.scenario, &format!("{p}.scenario"), errs);
                if self.sweep.vus.is_empty() {
                    errs.add(format!("{p}.vus"), "list at least one VU count");
                }
                for (i, w) in self.sweep.vus.windows(2).enumerate() {
                    if w[1] <= w[0] {
                        errs.add(
                            format!("{p}.vus[{}]", i + 1),
                            format!(
                                "must be greater than the previous count {}, got {}",
                                w[0], w[1]
                            ),
                        );
                    }
                }
                if self.sweep.vus.first() == Some(&0) {
                    errs.add(format!("{p}.vus[0]"), "must be at least 1, got 0");
                }
                if self.sweep.stage_duration < Duration::from_secs(1) {
                    errs.add(format!("{p}.stage_duration"), "must be at least 1s");
                }
                let wants_spec = self.sweep.spec.cpus.is_some() || self.sweep.spec.memory.is_some();
                if wants_spec && self.sweep.group.is_none() {
                    errs.add(
                        format!("{p}.group"),
                        "is required when spec is set: whose limits to change",
                    );
                }
                if wants_spec && !docker {
                    errs.add(
                        format!("{p}.spec"),
                        "setting limits needs containers.source = \"docker\"",
                    );
                }
                if let Some(c) = self.sweep.spec.cpus {
                    if !(c.is_finite() && c > 0.0) {
                        errs.add(
                            format!("{p}.spec.cpus"),
                            format!("must be above 0, got {c}"),
                        );
                    }
                }
            }
            Mode::Search => {
                let p = format!("{path}.search");
                check_scenario(&self.search.scenario, &format!("{p}.scenario"), errs);
                errs.check_min(&format!("{p}.vus"), self.search.vus, 1);
                if self.search.cpus.is_empty() {
                    errs.add(format!("{p}.cpus"), "list at least one candidate");
                }
                for (i, c) in self.search.cpus.iter().enumerate() {
                    if !(c.is_finite() && *c > 0.0) {
                        errs.add(
                            format!("{p}.cpus[{i}]"),
                            format!("must be above 0, got {c}"),
                        );
                    }
                }
                if self.search.group.is_none() {
                    errs.add(
                        format!("{p}.group"),
                        "is required: the container group whose limits are searched",
                    );
                }
                if !docker {
                    errs.add(
                        p.clone(),
                        "search changes container limits and needs containers.source = \"docker\"",
                    );
                }
                if self.search.stage_duration < Duration::from_secs(1) {
                    errs.add(format!("{p}.stage_duration"), "must be at least 1s");
                }
            }
        }
    }
}
