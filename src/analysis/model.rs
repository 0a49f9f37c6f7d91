//! Resource models fitted on the stage points:
//! - CPU cores = base + per_vu × VUs, least squares on the stages below the knee (past the knee
//!   the CPU is capped by its limit and would flatten the slope);
//! - CPU cores = base + per_tps × TPS on the same stages;
//! - memory bytes = base + per_vu × VUs, least squares on every stage (memory keeps growing with
//!   queued requests past the knee);
//! - TPS = per_vu × VUs through the origin, below the knee;
//! - the seed's ratio model: every figure of the reference stage divided by its VUs.

use serde::{Deserialize, Serialize};

use super::fit::{fit_linear, fit_through_origin, LinearFit};
use super::points::StagePoint;

/// The seed's back-of-the-envelope model: value at one stage ÷ its VUs (or TPS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioModel {
    /// Stage the ratios come from: the highest within the SLA, else the knee, else the last.
    pub stage: String,
    pub vus: f64,
    pub tps_per_vu: f64,
    pub cpu_cores_per_vu: Option<f64>,
    pub cpu_cores_per_tps: Option<f64>,
    pub memory_bytes_per_vu: Option<f64>,
}

/// Every fitted model. A model is `None` when its data is missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceModels {
    /// CPU cores against VUs (`base` in cores, `slope` in cores per VU).
    pub cpu: Option<LinearFit>,
    /// CPU cores against TPS (`slope` in cores per TPS).
    pub cpu_per_tps: Option<LinearFit>,
    /// Memory bytes against VUs (`base` in bytes, `slope` in bytes per VU).
    pub memory: Option<LinearFit>,
    /// TPS against VUs through the origin (`slope` in TPS per VU).
    pub tps: Option<LinearFit>,
    /// VUs of the stages the below-knee fits used.
    pub fit_vus: Vec<f64>,
    pub ratio: Option<RatioModel>,
    /// Set instead of `cpu`, `cpu_per_tps`, `tps` and `ratio` when fewer than two stages lie
    /// below the knee: the CPU was capped by its limit, so per-VU figures are lower bounds.
    #[serde(default)]
    pub lower_bounds: Option<LowerBounds>,
}

/// Per-VU figures of a stage already at the limit: the unconstrained demand is at least this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LowerBounds {
    /// The knee stage the figures come from.
    pub stage: String,
    pub vus: f64,
    /// True when that stage is the first (lowest-VU) usable stage.
    pub first_stage: bool,
    pub cpu_cores_per_vu: Option<f64>,
    pub tps_per_vu: f64,
}

impl LowerBounds {
    /// "≥ 0.1 cores/VU, ≥ 4.78 TPS/VU, the limit was reached at the first stage (T1, 10 VUs)".
    pub fn describe(&self) -> String {
        let cpu = self
            .cpu_cores_per_vu
            .map(|c| format!("≥ {} cores/VU, ", sig(c)))
            .unwrap_or_default();
        let at = if self.first_stage {
            "the first stage"
        } else {
            "stage"
        };
        format!(
            "{cpu}≥ {} TPS/VU; the limit was reached at {at} ({}, {} VUs)",
            sig(self.tps_per_vu),
            self.stage,
            crate::units::trim_float(self.vus)
        )
    }
}

/// Three significant digits, without trailing zeros.
fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Fewest distinct VU counts below the knee for a per-VU fit.
pub const MIN_BELOW_KNEE: usize = 2;

/// Distinct VU counts among `pts`.
fn distinct(pts: &[&StagePoint]) -> usize {
    let mut xs: Vec<f64> = pts.iter().map(|p| p.vus).collect();
    xs.dedup();
    xs.len()
}

/// The lower bounds of a spec saturated before two stages could be measured below its knee,
/// from the knee stage; `None` when there is no knee or enough stages lie below it.
pub fn lower_bounds(
    points: &[StagePoint],
    knee_vus: Option<f64>,
    cpu_line: f64,
) -> Option<LowerBounds> {
    let k = knee_vus?;
    if distinct(&below_knee(points, knee_vus, cpu_line)) >= MIN_BELOW_KNEE {
        return None;
    }
    let usable: Vec<&StagePoint> = points.iter().filter(|p| p.usable()).collect();
    let at = usable.iter().find(|p| p.vus == k)?;
    Some(LowerBounds {
        stage: at.stage.clone(),
        vus: at.vus,
        first_stage: usable.first().is_some_and(|f| f.vus == k),
        cpu_cores_per_vu: at.cpu_cores.map(|c| c / at.vus),
        tps_per_vu: at.tps / at.vus,
    })
}

impl ResourceModels {
    /// Most TPS `cpus` cores can serve when fully used, from the CPU-per-TPS line.
    pub fn max_tps_for_cpus(&self, cpus: f64) -> Option<f64> {
        let f = self.cpu_per_tps.as_ref()?;
        (f.slope > 0.0).then(|| ((cpus - f.base) / f.slope).max(0.0))
    }
}

/// Stages used for the below-knee fits: the usable stages strictly below the knee when they
/// are two distinct VU counts or more; else those and the knee stage itself when its CPU was
/// not at the SLA's utilization line (a TPS plateau or latency bend puts the knee on the last
/// stage of the linear part, which is still a measurement of the per-VU cost). With no knee,
/// every usable stage. Fewer than two distinct VU counts here mean "saturated from the start".
pub fn below_knee(points: &[StagePoint], knee_vus: Option<f64>, cpu_line: f64) -> Vec<&StagePoint> {
    let usable: Vec<&StagePoint> = points.iter().filter(|p| p.usable()).collect();
    let Some(k) = knee_vus else {
        return usable;
    };
    let strict: Vec<&StagePoint> = usable.iter().copied().filter(|p| p.vus < k).collect();
    if distinct(&strict) >= MIN_BELOW_KNEE {
        return strict;
    }
    usable
        .into_iter()
        .filter(|p| p.vus < k || (p.vus == k && p.cpu_utilization.is_none_or(|u| u < cpu_line)))
        .collect()
}

fn pairs<'a>(
    pts: impl Iterator<Item = &'a StagePoint>,
    x: impl Fn(&StagePoint) -> Option<f64>,
    y: impl Fn(&StagePoint) -> Option<f64>,
) -> Vec<(f64, f64)> {
    pts.filter_map(|p| Some((x(p)?, y(p)?))).collect()
}

/// Fit every model on the usable stages. `reference` is the stage the ratio model divides.
/// With fewer than two stages below the knee the CPU, CPU-per-TPS, TPS and ratio models are
/// left out and [`ResourceModels::lower_bounds`] says what is known instead.
pub fn fit_models(
    points: &[StagePoint],
    knee_vus: Option<f64>,
    cpu_line: f64,
    reference: Option<&StagePoint>,
) -> ResourceModels {
    let usable = points.iter().filter(|p| p.usable());
    let memory = fit_linear(&pairs(usable, |p| Some(p.vus), |p| p.memory_bytes));
    if let Some(lb) = lower_bounds(points, knee_vus, cpu_line) {
        return ResourceModels {
            memory,
            lower_bounds: Some(lb),
            ..ResourceModels::default()
        };
    }
    let below = below_knee(points, knee_vus, cpu_line);
    let vus = |p: &StagePoint| Some(p.vus);
    let tps = |p: &StagePoint| (p.tps > 0.0).then_some(p.tps);
    ResourceModels {
        cpu: fit_linear(&pairs(below.iter().copied(), vus, |p| p.cpu_cores)),
        cpu_per_tps: fit_linear(&pairs(below.iter().copied(), tps, |p| p.cpu_cores)),
        memory,
        tps: fit_through_origin(&pairs(below.iter().copied(), vus, |p| Some(p.tps)))
            .filter(|f| f.slope > 0.0),
        fit_vus: below.iter().map(|p| p.vus).collect(),
        ratio: reference.map(|r| RatioModel {
            stage: r.stage.clone(),
            vus: r.vus,
            tps_per_vu: r.tps / r.vus,
            cpu_cores_per_vu: r.cpu_cores.map(|c| c / r.vus),
            cpu_cores_per_tps: r.cpu_cores.filter(|_| r.tps > 0.0).map(|c| c / r.tps),
            memory_bytes_per_vu: r.memory_bytes.map(|m| m / r.vus),
        }),
        lower_bounds: None,
    }
}
