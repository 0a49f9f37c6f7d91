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
}

impl ResourceModels {
    /// Most TPS `cpus` cores can serve when fully used, from the CPU-per-TPS line.
    pub fn max_tps_for_cpus(&self, cpus: f64) -> Option<f64> {
        let f = self.cpu_per_tps.as_ref()?;
        (f.slope > 0.0).then(|| ((cpus - f.base) / f.slope).max(0.0))
    }
}

/// Stages used for the below-knee fits: strictly below the knee when that leaves two distinct
/// VU counts (the knee stage itself may already be capped), else up to and including it, else
/// all stages.
pub fn below_knee(points: &[StagePoint], knee_vus: Option<f64>) -> Vec<&StagePoint> {
    let Some(k) = knee_vus else {
        return points.iter().collect();
    };
    let distinct = |v: &[&StagePoint]| {
        let mut xs: Vec<f64> = v.iter().map(|p| p.vus).collect();
        xs.dedup();
        xs.len()
    };
    let strict: Vec<&StagePoint> = points.iter().filter(|p| p.vus < k).collect();
    if distinct(&strict) >= 2 {
        return strict;
    }
    let upto: Vec<&StagePoint> = points.iter().filter(|p| p.vus <= k).collect();
    if !upto.is_empty() {
        return upto;
    }
    points.iter().collect()
}

fn pairs<'a>(
    pts: impl Iterator<Item = &'a StagePoint>,
    x: impl Fn(&StagePoint) -> Option<f64>,
    y: impl Fn(&StagePoint) -> Option<f64>,
) -> Vec<(f64, f64)> {
    pts.filter_map(|p| Some((x(p)?, y(p)?))).collect()
}

/// Fit every model. `reference` is the stage the ratio model divides.
pub fn fit_models(
    points: &[StagePoint],
    knee_vus: Option<f64>,
    reference: Option<&StagePoint>,
) -> ResourceModels {
    let below = below_knee(points, knee_vus);
    let vus = |p: &StagePoint| Some(p.vus);
    let tps = |p: &StagePoint| (p.tps > 0.0).then_some(p.tps);
    ResourceModels {
        cpu: fit_linear(&pairs(below.iter().copied(), vus, |p| p.cpu_cores)),
        cpu_per_tps: fit_linear(&pairs(below.iter().copied(), tps, |p| p.cpu_cores)),
        memory: fit_linear(&pairs(points.iter(), vus, |p| p.memory_bytes)),
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
    }
}
