//! Where the tested spec stops scaling (the knee) and how many VUs it serves within the SLA.
//!
//! Three independent signals, each placed on the stage at which saturation is reached:
//! - **TPS plateau**: the marginal TPS per added VU between two stages falls below
//!   `knee_tps_gain_fraction` of the first stage's TPS per VU. The knee is the earlier stage,
//!   the last one on the linear part.
//! - **Latency bend**: by Little's law (VUs = TPS × latency in a closed model), once TPS is flat
//!   latency grows in proportion to VUs. The knee is the earlier stage of the first step whose
//!   latency elasticity ln(l₂/l₁) / ln(v₂/v₁) exceeds `knee_latency_elasticity`, counted only
//!   when latency is also 20 % above the lowest seen so far (noise guard).
//! - **CPU utilization**: the first stage at or above `sla.cpu_utilization` of its limit.
//!
//! The knee is the lowest of the signals; every signal that fired is reported.

use serde::{Deserialize, Serialize};

use super::config::AnalysisConfig;
use super::points::{merge_equal_vus, StagePoint};
use crate::sla::SlaConfig;

/// Rise above the lowest latency so far that a latency bend needs, so noise on a flat latency
/// curve does not count as a bend.
const LATENCY_NOISE_GUARD: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KneeCriterion {
    TpsPlateau,
    LatencyBend,
    CpuUtilization,
}

impl std::fmt::Display for KneeCriterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KneeCriterion::TpsPlateau => "TPS plateau",
            KneeCriterion::LatencyBend => "latency bend",
            KneeCriterion::CpuUtilization => "CPU utilization",
        })
    }
}

/// One criterion that fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KneeSignal {
    pub criterion: KneeCriterion,
    pub vus: f64,
    pub stage: String,
    /// The measured figures behind the decision, in words.
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    /// VUs of the knee stage; `None` when no criterion fired within the tested VUs.
    pub vus: Option<f64>,
    pub stage: Option<String>,
    /// The criteria whose signal sits at the knee.
    pub triggered_by: Vec<KneeCriterion>,
    /// Every signal, including later ones.
    pub signals: Vec<KneeSignal>,
    /// Highest TPS of any stage.
    pub max_tps: f64,
}

fn signal(criterion: KneeCriterion, p: &StagePoint, detail: String) -> KneeSignal {
    KneeSignal {
        criterion,
        vus: p.vus,
        stage: p.stage.clone(),
        detail,
    }
}

fn tps_plateau(pts: &[StagePoint], frac: f64) -> Option<KneeSignal> {
    let first = pts.first()?;
    let initial = first.tps / first.vus;
    if initial.is_nan() || initial <= 0.0 {
        return None;
    }
    pts.windows(2).find_map(|w| {
        let gain = (w[1].tps - w[0].tps) / (w[1].vus - w[0].vus);
        (gain < frac * initial).then(|| {
            signal(
                KneeCriterion::TpsPlateau,
                &w[0],
                format!(
                    "TPS per added VU fell to {gain:.3} from {initial:.3} at the first stage \
                     ({:.1} → {:.1} TPS between {} and {} VUs)",
                    w[0].tps, w[1].tps, w[0].vus, w[1].vus
                ),
            )
        })
    })
}

fn latency_bend(pts: &[StagePoint], threshold: f64) -> Option<KneeSignal> {
    let mut lowest = f64::INFINITY;
    pts.windows(2).find_map(|w| {
        let (l0, l1) = (
            w[0].latency_avg.unwrap_or(0.0),
            w[1].latency_avg.unwrap_or(0.0),
        );
        if l0 > 0.0 {
            lowest = lowest.min(l0);
        }
        if !(l0 > 0.0 && l1 > 0.0) {
            return None;
        }
        let elasticity = (l1 / l0).ln() / (w[1].vus / w[0].vus).ln();
        (elasticity > threshold && l1 > lowest * (1.0 + LATENCY_NOISE_GUARD)).then(|| {
            signal(
                KneeCriterion::LatencyBend,
                &w[0],
                format!(
                    "average latency {:.1} ms → {:.1} ms from {} to {} VUs (elasticity {elasticity:.2})",
                    l0 * 1e3,
                    l1 * 1e3,
                    w[0].vus,
                    w[1].vus
                ),
            )
        })
    })
}

fn cpu_utilization(pts: &[StagePoint], sla: &SlaConfig) -> Option<KneeSignal> {
    pts.iter().find_map(|p| {
        let u = p.cpu_utilization?;
        (u >= sla.cpu_utilization).then(|| {
            signal(
                KneeCriterion::CpuUtilization,
                p,
                format!(
                    "CPU at {:.1} % of its limit, SLA line {:.1} %",
                    u * 100.0,
                    sla.cpu_utilization * 100.0
                ),
            )
        })
    })
}

/// Knee of the stage points (sorted by VUs, as [`super::points::extract`] returns them). Stages
/// with an [`super::points::Exclusion`] are left out: a dead target or a starved host would
/// otherwise pass for a plateau. "Highest TPS" still counts every stage's successes.
pub fn detect(points: &[StagePoint], sla: &SlaConfig, cfg: &AnalysisConfig) -> Knee {
    let usable: Vec<StagePoint> = points.iter().filter(|p| p.usable()).cloned().collect();
    let pts = merge_equal_vus(&usable);
    let signals: Vec<KneeSignal> = [
        tps_plateau(&pts, cfg.knee_tps_gain_fraction),
        latency_bend(&pts, cfg.knee_latency_elasticity),
        cpu_utilization(&pts, sla),
    ]
    .into_iter()
    .flatten()
    .collect();
    let knee_vus = signals.iter().map(|s| s.vus).reduce(f64::min);
    let at_knee: Vec<&KneeSignal> = signals.iter().filter(|s| Some(s.vus) == knee_vus).collect();
    Knee {
        vus: knee_vus,
        stage: at_knee.first().map(|s| s.stage.clone()),
        triggered_by: at_knee.iter().map(|s| s.criterion).collect(),
        max_tps: points.iter().map(|p| p.tps).fold(0.0, f64::max),
        signals,
    }
}

/// Whether one stage met the SLA, and why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageVerdict {
    pub scenario: String,
    pub stage: String,
    pub vus: f64,
    pub within_sla: bool,
    /// One entry per broken bound, e.g. `p95 2.31 s > 2 s`.
    pub reasons: Vec<String>,
}

/// What the tested spec serves within the SLA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlaCapacity {
    /// Highest VUs whose stage, and every stage below it, met the SLA; `None` when the first
    /// stage already broke it.
    pub max_vus: Option<f64>,
    pub stage: Option<String>,
    pub tps_at_max_vus: Option<f64>,
    pub verdicts: Vec<StageVerdict>,
}

/// Judge every stage against the SLA: p95 (and p99 when set), error ratio and CPU utilization.
pub fn sla_capacity(points: &[StagePoint], sla: &SlaConfig) -> SlaCapacity {
    let p95 = sla.latency_p95.as_secs_f64();
    let verdicts: Vec<StageVerdict> = points
        .iter()
        .map(|p| {
            let mut reasons = Vec::new();
            if let Some(l) = p.latency_p95.filter(|l| *l > p95) {
                reasons.push(format!("p95 {l:.3} s > {p95} s"));
            }
            if let Some(p99) = sla.latency_p99.map(|d| d.as_secs_f64()) {
                if let Some(l) = p.latency_p99.filter(|l| *l > p99) {
                    reasons.push(format!("p99 {l:.3} s > {p99} s"));
                }
            }
            if p.error_ratio > sla.error_ratio {
                reasons.push(format!(
                    "errors {:.2} % > {:.2} %",
                    p.error_ratio * 100.0,
                    sla.error_ratio * 100.0
                ));
            }
            if let Some(u) = p.cpu_utilization {
                if u > sla.cpu_utilization {
                    reasons.push(format!(
                        "CPU {:.1} % > {:.1} %",
                        u * 100.0,
                        sla.cpu_utilization * 100.0
                    ));
                }
            }
            if p.tps <= 0.0 {
                reasons.push("no successful responses".to_string());
            }
            StageVerdict {
                scenario: p.scenario.clone(),
                stage: p.stage.clone(),
                vus: p.vus,
                within_sla: reasons.is_empty(),
                reasons,
            }
        })
        .collect();
    let best = points
        .iter()
        .zip(&verdicts)
        .take_while(|(_, v)| v.within_sla)
        .last()
        .map(|(p, _)| p);
    SlaCapacity {
        max_vus: best.map(|p| p.vus),
        stage: best.map(|p| p.stage.clone()),
        tps_at_max_vus: best.map(|p| p.tps),
        verdicts,
    }
}
