//! [`analyze`]: stage summaries in, one [`CapacityAnalysis`] out. It never panics: with too
//! little or broken data it returns what it can (possibly nothing but the stage verdicts) and
//! says what is missing in `warnings`.

use serde::{Deserialize, Serialize};

use super::config::AnalysisConfig;
use super::fit::FitMethod;
use super::knee::{detect, sla_capacity, Knee, SlaCapacity};
use super::model::{fit_models, ResourceModels};
use super::points::{extract, mark_starved, Exclusion, ResourceSource, StagePoint};
use super::recommend::{
    cost_table, situations, Autoscaling, CostRow, OomFloor, RecommendationRow, Situation, Sizer,
};
use super::summary::{
    event_time, ContainerEvent, ContainerEventKind, StageSummary, AT_MEMORY_LIMIT,
};
use crate::sla::{PricesConfig, SlaConfig};
use crate::units::{format_bytes, trim_float};

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
    /// OOM kills, restarts and exits of measured containers, on the stage where they happened.
    #[serde(default)]
    pub events: Vec<StageEvent>,
    /// The lowest VUs at which the tested memory was OOM-killed; recommendations for as many
    /// VUs or more get more memory than that.
    #[serde(default)]
    pub oom: Option<OomFloor>,
    /// What makes the figures below them untrustworthy or incomplete, for the top of the report
    /// and the summary: container events, a dead target, a starved host, a spec saturated from
    /// its first stage.
    #[serde(default)]
    pub alerts: Vec<String>,
    /// When the spec was saturated before two stages could be measured below the knee: the
    /// `[experiment]` config of the sweep to run instead.
    #[serde(default)]
    pub sweep_suggestion: Option<String>,
    pub warnings: Vec<String>,
}

/// A container event placed on its stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEvent {
    pub scenario: String,
    pub stage: String,
    pub vus: f64,
    #[serde(flatten)]
    pub event: ContainerEvent,
}

impl StageEvent {
    /// "OOM kill of demo (group ai) in stage T4 (200 VUs) at +3.2 s (2026-…Z), memory limit 1 GiB".
    pub fn describe(&self) -> String {
        let e = &self.event;
        let when =
            e.at.map(|t| format!(" ({})", humantime::format_rfc3339_seconds(t)))
                .unwrap_or_default();
        let limit = if e.memory_limit_bytes > 0 {
            format!(
                ", memory limit {}",
                format_bytes(e.memory_limit_bytes as f64)
            )
        } else {
            String::new()
        };
        let group = if e.group.is_empty() {
            String::new()
        } else {
            format!(" (group {})", e.group)
        };
        format!(
            "{kind} of {c}{group} in stage {st} ({v} VUs) {at}{when}{limit}",
            kind = capitalized(&e.kind.to_string()),
            c = e.container,
            st = self.stage,
            v = trim_float(self.vus),
            at = event_time(e.at_seconds, e.after_load_seconds),
        )
    }
}

fn model_warnings(models: &ResourceModels, warnings: &mut Vec<String>) {
    for (name, fit) in [
        ("CPU", &models.cpu),
        ("CPU per TPS", &models.cpu_per_tps),
        ("memory", &models.memory),
    ] {
        match fit {
            // Saturated early: the alert says why, and what to run instead.
            None if models.lower_bounds.is_some() && name != "memory" => {}
            None => warnings.push(format!("{name} model: no usable points")),
            Some(f) if f.method == FitMethod::ThroughOrigin && name != "CPU per TPS" => warnings
                .push(format!(
                    "{name} model: only one distinct VU count, fitted through the origin \
                     (no base); test more stages"
                )),
            Some(f) if f.r2.is_some_and(|r| r < LOW_R2) => warnings.push(format!(
                "{name} model: R² = {:.2}, the line explains the measurements poorly",
                f.r2.unwrap_or(0.0)
            )),
            Some(_) => {}
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Every container event of the stages, in stage order.
fn stage_events(stages: &[StageSummary]) -> Vec<StageEvent> {
    stages
        .iter()
        .flat_map(|s| {
            s.events.iter().map(|e| StageEvent {
                scenario: s.scenario.clone(),
                stage: s.stage.clone(),
                vus: s.vus,
                event: e.clone(),
            })
        })
        .collect()
}

/// The OOM kill at the fewest VUs whose limit is known.
fn oom_floor(events: &[StageEvent]) -> Option<OomFloor> {
    events
        .iter()
        .filter(|e| e.event.kind == ContainerEventKind::OomKill)
        .min_by(|a, b| a.vus.total_cmp(&b.vus))
        .map(|e| OomFloor {
            vus: e.vus,
            memory_limit_bytes: e.event.memory_limit_bytes,
            container: e.event.container.clone(),
            stage: e.stage.clone(),
        })
}

/// VU counts of a sweep from 1 to `top`: every count up to 8, else about eight steps growing
/// geometrically, so each step adds a similar share of load.
pub fn sweep_vus(top: u64) -> Vec<u64> {
    let top = top.max(1);
    if top <= 8 {
        return (1..=top).collect();
    }
    let mut out: Vec<u64> = (0..8)
        .map(|i| (top as f64).powf(f64::from(i) / 7.0).round() as u64)
        .collect();
    out.dedup();
    out
}

/// The `[experiment]` snippet of a sweep from 1 VU up to `top` at the tested spec.
fn sweep_snippet(top: f64, spec: Option<&TestedSpec>, group: Option<&str>) -> String {
    let vus: Vec<String> = sweep_vus(top.ceil() as u64)
        .iter()
        .map(|v| v.to_string())
        .collect();
    let mut out = format!(
        "[experiment]\nmode = \"sweep\"\n\n[experiment.sweep]\nvus = [{}]\nstage_duration = \"30s\"\n",
        vus.join(", ")
    );
    match group {
        Some(g) => {
            out += &format!("group = \"{g}\"\n\n[experiment.sweep.spec]\n");
            if let Some(c) = spec.and_then(|s| s.cpu_limit_cores) {
                out += &format!("cpus = {}\n", trim_float(c));
            }
            if let Some(m) = spec.and_then(|s| s.memory_limit_bytes) {
                out += &format!("memory = {}\n", m.round() as u64);
            }
        }
        None => out += "# the containers keep the spec they have now\n",
    }
    out
}

/// Alerts for the top of the report: every container event, each dead target, a container
/// stuck at its memory limit, the starved stages, a spec saturated from its first stage.
fn alerts(points: &[StagePoint], events: &[StageEvent], models: &ResourceModels) -> Vec<String> {
    let mut out: Vec<String> = events.iter().map(|e| e.describe() + ".").collect();
    if let Some(o) = oom_floor(events) {
        if o.memory_limit_bytes > 0 {
            out.push(format!(
                "{} was not enough for {} VUs: no spec with that memory is recommended for {} VUs or more.",
                format_bytes(o.memory_limit_bytes as f64),
                trim_float(o.vus),
                trim_float(o.vus)
            ));
        }
    }
    for p in points {
        if let Some(Exclusion::TargetDown { from_seconds }) = &p.excluded {
            out.push(format!(
                "Stage {} ({} VUs): target down from +{from_seconds:.1}s; the stage is left out of the models.",
                p.stage,
                trim_float(p.vus)
            ));
        }
    }
    // At its memory limit and answering nothing, with no kill seen: the kernel reclaims the
    // container's pages (its own binary's included) instead of killing it, which no container
    // event names; the stage's timeouts alone would read as a slow CPU.
    for p in points {
        let at_limit = p.memory_utilization.filter(|u| *u >= AT_MEMORY_LIMIT);
        let killed = events
            .iter()
            .any(|e| e.scenario == p.scenario && e.stage == p.stage);
        if let (Some(u), None, false) = (at_limit, p.latency_avg, killed) {
            out.push(format!(
                "Stage {} ({} VUs): memory at {:.0} % of its limit ({}) and no response in the \
                 window, with no OOM kill seen: the container is stuck at its memory limit (the \
                 kernel reclaims its pages instead of killing it). It needs more memory than \
                 that for {} VUs.",
                p.stage,
                trim_float(p.vus),
                u * 100.0,
                format_bytes(p.memory_limit_bytes.unwrap_or(0.0)),
                trim_float(p.vus)
            ));
        }
    }
    let starved: Vec<String> = points
        .iter()
        .filter(|p| matches!(p.excluded, Some(Exclusion::StarvedHost { .. })))
        .map(|p| format!("{} ({} VUs)", p.stage, trim_float(p.vus)))
        .collect();
    if !starved.is_empty() {
        out.push(format!(
            "Starved host in stage(s) {}: the host had almost no idle CPU while the container \
             stayed under its limit and was not throttled. These stages measure the host, not the \
             spec, and are left out of the knee and the fits; run again on a quieter host.",
            starved.join(", ")
        ));
    }
    if let Some(lb) = &models.lower_bounds {
        out.push(format!(
            "Saturated from the {}: {}. The CPU and TPS models are lower bounds, not per-VU \
             costs, so no recommendation is derived from them. Run a sweep from 1 VU up to {} \
             VUs at this spec (config below).",
            if lb.first_stage {
                "first stage"
            } else {
                "start (fewer than two stages below the knee)"
            },
            lb.describe(),
            trim_float(lb.vus)
        ));
    }
    out
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
    let mut points = extract(stages, &source, &mut warnings);
    // A knee on every stage first; then the stages at or past it that a busy host held back
    // are left out, and the knee is found again without them.
    let provisional = detect(&points, sla, cfg);
    mark_starved(&mut points, sla, cfg, provisional.vus);
    let events = stage_events(stages);
    let oom = oom_floor(&events);
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
        .and_then(|v| points.iter().rev().find(|p| p.vus == v && p.usable()))
        .or(points.iter().rev().find(|p| p.usable()));
    let models = fit_models(&points, knee.vus, sla.cpu_utilization, reference);
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
        oom: oom.as_ref(),
    };
    let recommendations = sizer.table();
    if recommendations.is_empty() && !points.is_empty() && models.lower_bounds.is_none() {
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
    let tested_spec = points
        .iter()
        .find(|p| p.cpu_limit_cores.is_some() || p.memory_limit_bytes.is_some())
        .map(|p| TestedSpec {
            cpu_limit_cores: p.cpu_limit_cores,
            memory_limit_bytes: p.memory_limit_bytes,
        });
    let sweep_suggestion = models
        .lower_bounds
        .as_ref()
        .map(|lb| sweep_snippet(lb.vus, tested_spec.as_ref(), cfg.group.as_deref()));
    let alerts = alerts(&points, &events, &models);
    for a in &alerts {
        tracing::warn!("{a}");
    }

    CapacityAnalysis {
        source,
        sla: sla.clone(),
        prices: prices.clone(),
        config: cfg.clone(),
        target_utilization,
        tested_spec,
        points,
        knee,
        sla_capacity: capacity,
        models,
        recommendations,
        costs,
        situations,
        autoscaling,
        events,
        oom,
        alerts,
        sweep_suggestion,
        warnings,
    }
}
