//! [`analyze`]: stage summaries in, one [`CapacityAnalysis`] out. It never panics: with too
//! little or broken data it returns what it can (possibly nothing but the stage verdicts) and
//! says what is missing in `warnings`.

use serde::{Deserialize, Serialize};

use super::config::AnalysisConfig;
use super::fit::FitMethod;
use super::knee::{detect, sla_capacity, Knee, SlaCapacity};
use super::model::{fit_models, ResourceModels};
use super::points::{extract, ResourceSource, StagePoint};
use super::recommend::{
    cost_table, situations, Autoscaling, CostRow, RecommendationRow, Situation, Sizer,
};
use super::summary::StageSummary;
use crate::sla::{PricesConfig, SlaConfig};

/// R² below this gets a warning: the line explains too little of the variation to extrapolate.
const LOW_R2: f64 = 0.8;

/// Limits of the tested spec, as the containers reported them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestedSpec {
    pub cpu_limit_cores: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
}

/// Everything the analysis concluded. Serialized into report.json (see docs/report-schema.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityAnalysis {
    pub source: ResourceSource,
    pub sla: SlaConfig,
    pub prices: PricesConfig,
    pub config: AnalysisConfig,
    /// Utilization the recommendations were sized at (the configured target, capped by the
    /// SLA's CPU utilization).
    pub target_utilization: f64,
    pub tested_spec: Option<TestedSpec>,
    pub points: Vec<StagePoint>,
    pub knee: Knee,
    pub sla_capacity: SlaCapacity,
    pub models: ResourceModels,
    pub recommendations: Vec<RecommendationRow>,
    pub costs: Vec<CostRow>,
    pub situations: Vec<Situation>,
    pub autoscaling: Option<Autoscaling>,
    pub warnings: Vec<String>,
}

fn model_warnings(models: &ResourceModels, warnings: &mut Vec<String>) {
    for (name, fit) in [
        ("CPU", &models.cpu),
        ("CPU per TPS", &models.cpu_per_tps),
        ("memory", &models.memory),
    ] {
        match fit {
            None => warnings.push(format!("{name} model: no usable points")),
            Some(f) if f.method == FitMethod::ThroughOrigin && name != "CPU per TPS" => warnings
                .push(format!(
                    "{name} model: only one distinct VU count, fitted through the origin \
                     (no base); test more stages"
                )),
            Some(f) if f.points.len() > 2 && f.r2 < LOW_R2 => warnings.push(format!(
                "{name} model: R² = {:.2}, the line explains the measurements poorly",
                f.r2
            )),
            Some(_) => {}
        }
    }
}

/// The VU count the stable situation is sized for, and why.
fn stable_vus(sla: &SlaCapacity, knee: &Knee, cfg: &AnalysisConfig) -> (u32, String) {
    let whole = |v: f64| (v.floor() as u32).max(1);
    if let Some(v) = sla.max_vus {
        (whole(v), "max VUs within the SLA at the tested spec".into())
    } else if let Some(v) = knee.vus {
        (whole(v), "knee; no stage met the SLA".into())
    } else {
        let v = cfg.vus.iter().copied().min().unwrap_or(1).max(1);
        (v, "smallest table row; no stage met the SLA".into())
    }
}

/// Analyze the stages of one experiment.
pub fn analyze(
    stages: &[StageSummary],
    sla: &SlaConfig,
    prices: &PricesConfig,
    cfg: &AnalysisConfig,
) -> CapacityAnalysis {
    let mut warnings = Vec::new();
    let source = match &cfg.group {
        Some(name) => ResourceSource::Group { name: name.clone() },
        None => ResourceSource::AllContainers,
    };
    let points = extract(stages, &source, &mut warnings);
    if points.is_empty() {
        warnings.push("no usable stage: nothing to analyze".into());
    } else if points.iter().all(|p| p.tps <= 0.0) {
        warnings.push("no stage has responses (TPS 0): no throughput model".into());
    }
    let mut target_utilization = cfg.target_utilization;
    if !(target_utilization > 0.0 && target_utilization <= sla.cpu_utilization) {
        target_utilization = sla.cpu_utilization;
        warnings.push(format!(
            "analysis.target_utilization {} is not within (0, sla.cpu_utilization]; sized at {}",
            cfg.target_utilization, sla.cpu_utilization
        ));
    }

    let knee = detect(&points, sla, cfg);
    if knee.vus.is_none() && points.len() > 1 && knee.max_tps > 0.0 {
        warnings.push(
            "no knee within the tested VUs: the spec was not saturated, so the max VUs within \
             the SLA is a lower bound"
                .into(),
        );
    }
    let capacity = sla_capacity(&points, sla);
    let reference: Option<&StagePoint> = capacity
        .max_vus
        .or(knee.vus)
        .and_then(|v| points.iter().rev().find(|p| p.vus == v))
        .or(points.last());
    let models = fit_models(&points, knee.vus, reference);
    if !points.is_empty() {
        model_warnings(&models, &mut warnings);
    }

    let mut sized_cfg = cfg.clone();
    sized_cfg.target_utilization = target_utilization;
    let max_tested_vus = points.iter().map(|p| p.vus).fold(0.0, f64::max);
    let sizer = Sizer {
        models: &models,
        prices,
        cfg: &sized_cfg,
        max_tested_vus,
    };
    let recommendations = sizer.table();
    if recommendations.is_empty() && !points.is_empty() {
        warnings.push("no CPU or memory model: no recommendation".into());
    }
    if recommendations.iter().any(|r| r.extrapolated) {
        warnings.push(format!(
            "rows above {max_tested_vus} VUs extrapolate beyond the tested range"
        ));
    }
    let costs = cost_table(&recommendations);
    let (stable, why) = stable_vus(&capacity, &knee, cfg);
    let (situations, autoscaling) = situations(&sizer, stable, &why);

    CapacityAnalysis {
        source,
        sla: sla.clone(),
        prices: prices.clone(),
        config: cfg.clone(),
        target_utilization,
        tested_spec: points
            .iter()
            .find(|p| p.cpu_limit_cores.is_some() || p.memory_limit_bytes.is_some())
            .map(|p| TestedSpec {
                cpu_limit_cores: p.cpu_limit_cores,
                memory_limit_bytes: p.memory_limit_bytes,
            }),
        points,
        knee,
        sla_capacity: capacity,
        models,
        recommendations,
        costs,
        situations,
        autoscaling,
        warnings,
    }
}
