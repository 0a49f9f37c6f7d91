//! Specs from models: the recommendation table for the configured VU counts, the cost table,
//! the seed's four situations and an autoscaling threshold.
//!
//! Sizing for N VUs at utilization u with memory headroom h:
//! - cpus = max(base + per_vu × N, 0) ÷ u, rounded up to `cpus_step`, at least `min_cpus` (one
//!   step by default);
//! - memory = (base + per_vu × N) × (1 + h), rounded up to `memory_step`, at least one step;
//! - expected TPS = TPS per VU × N, capped by what the cpus can serve at 100 % (CPU-per-TPS line);
//! - cost per hour from the prices; cost per TPS = cost per hour ÷ TPS (currency per hour per
//!   TPS, as the seed's table has it).

use serde::{Deserialize, Serialize};

use super::config::AnalysisConfig;
use super::model::ResourceModels;
use crate::sla::PricesConfig;
use crate::units::trim_float;

/// A container spec: `--cpus` and `--memory`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub cpus: f64,
    pub memory_bytes: u64,
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vCPU / {}",
            trim_float(self.cpus),
            crate::units::format_bytes(self.memory_bytes as f64)
        )
    }
}

/// One row of the recommendation table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendationRow {
    pub vus: u32,
    /// Cores the CPU model predicts for N VUs, before the utilization margin.
    pub cpu_cores_needed: f64,
    /// Bytes the memory model predicts for N VUs, before headroom.
    pub memory_bytes_needed: f64,
    pub spec: Spec,
    pub expected_tps: Option<f64>,
    pub cost_per_hour: f64,
    pub cost_per_month: f64,
    /// Currency per hour per TPS.
    pub cost_per_tps_hour: Option<f64>,
    /// N is above the highest tested VUs, so the row extrapolates the models.
    pub extrapolated: bool,
    /// cpus is above `max_cpus`: one container should not be this big; scale out.
    pub exceeds_max_cpus: bool,
    /// Set when the memory was raised because the tested spec was OOM-killed at these VUs or
    /// fewer: says what was observed.
    #[serde(default)]
    pub oom_note: Option<String>,
}

/// A container of the tested spec was OOM-killed at `vus` VUs with `memory_limit_bytes`: no
/// spec with that memory or less is recommended for `vus` or more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OomFloor {
    pub vus: f64,
    pub memory_limit_bytes: u64,
    pub container: String,
    pub stage: String,
}

/// One spec of the cost table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    pub spec: Spec,
    pub cost_per_hour: f64,
    pub cost_per_month: f64,
    /// Highest VU count of the recommendation table this spec serves.
    pub vus: u32,
    pub expected_tps: Option<f64>,
    /// Currency per hour per TPS.
    pub cost_per_tps_hour: Option<f64>,
    /// Its VUs are above the tested range.
    pub extrapolated: bool,
    /// Lowest cost per TPS among the specs within the tested range (among all specs when
    /// none is): an extrapolated spec is not a measured bargain.
    pub most_efficient: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SituationKind {
    Stable,
    HighPerformance,
    EventBurst,
    ScaleOut,
}

impl std::fmt::Display for SituationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SituationKind::Stable => "Stable",
            SituationKind::HighPerformance => "High performance",
            SituationKind::EventBurst => "Event burst (short)",
            SituationKind::ScaleOut => "Scale-out",
        })
    }
}

/// A recommended spec for one operating situation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Situation {
    pub kind: SituationKind,
    /// VUs the whole deployment serves.
    pub vus: u32,
    /// Spec of one replica.
    pub spec: Spec,
    pub replicas: u32,
    pub expected_tps: Option<f64>,
    /// All replicas together.
    pub cost_per_hour: f64,
    pub cost_per_month: f64,
    /// How this was derived, in words.
    pub reason: String,
}

/// When to add a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Autoscaling {
    /// Target CPU utilization of the limit (e.g. a Kubernetes HPA `averageUtilization`).
    pub cpu_utilization_target: f64,
    pub vus_per_replica: u32,
    /// TPS one replica carries at `vus_per_replica`, for request-rate based scaling.
    pub tps_per_replica: Option<f64>,
    pub replica_spec: Spec,
}

/// Sizes specs from fitted models; holds what every sizing needs.
pub struct Sizer<'a> {
    pub models: &'a ResourceModels,
    pub prices: &'a PricesConfig,
    pub cfg: &'a AnalysisConfig,
    /// Highest tested VUs, to flag extrapolation.
    pub max_tested_vus: f64,
    /// The lowest VUs at which the tested memory limit was OOM-killed.
    pub oom: Option<&'a OomFloor>,
}

fn round_up(v: f64, step: f64) -> f64 {
    // The epsilon keeps 1.0000000001 (floating error) from rounding up a whole step.
    ((v / step) - 1e-9).ceil().max(1.0) * step
}

impl Sizer<'_> {
    /// The recommendation for `vus` at CPU `utilization` with memory `headroom`; `None` when the
    /// CPU or memory model is missing.
    pub fn size(&self, vus: u32, utilization: f64, headroom: f64) -> Option<RecommendationRow> {
        let cpu = self.models.cpu.as_ref()?;
        let mem = self.models.memory.as_ref()?;
        let n = f64::from(vus);
        let cores = cpu.predict(n).max(0.0);
        let bytes = mem.predict(n).max(0.0);
        let mut cpus = round_up(cores / utilization, self.cfg.cpus_step);
        let min = self.cfg.effective_min_cpus();
        if cpus < min {
            cpus = round_up(min, self.cfg.cpus_step);
        }
        let step = self.cfg.memory_step as f64;
        let mut memory_bytes = round_up(bytes * (1.0 + headroom), step) as u64;
        let mut oom_note = None;
        if let Some(o) = self.oom.filter(|o| n >= o.vus && o.memory_limit_bytes > 0) {
            // The model may say less, but the kill was measured: go one step above it.
            let killed = o.memory_limit_bytes;
            let floor = (((killed as f64) / step).floor() + 1.0) * step;
            let raised = memory_bytes <= killed;
            if raised {
                memory_bytes = floor as u64;
            }
            oom_note = Some(format!(
                "OOM-killed at {} VUs with {} ({}, stage {}){}",
                trim_float(o.vus),
                crate::units::format_bytes(killed as f64),
                o.container,
                o.stage,
                if raised {
                    format!(
                        "; the model's {} raised above it",
                        crate::units::format_bytes(round_up(bytes * (1.0 + headroom), step))
                    )
                } else {
                    String::new()
                }
            ));
        }
        let spec = Spec { cpus, memory_bytes };
        let expected_tps = self.models.tps.as_ref().map(|t| {
            let tps = t.predict(n).max(0.0);
            match self.models.max_tps_for_cpus(cpus) {
                Some(cap) => tps.min(cap),
                None => tps,
            }
        });
        let cost_per_hour = self.prices.cost_per_hour(cpus, memory_bytes as f64);
        Some(RecommendationRow {
            vus,
            cpu_cores_needed: cores,
            memory_bytes_needed: bytes,
            spec,
            expected_tps,
            cost_per_hour,
            cost_per_month: cost_per_hour * self.cfg.hours_per_month,
            cost_per_tps_hour: per_tps(cost_per_hour, expected_tps),
            extrapolated: n > self.max_tested_vus,
            exceeds_max_cpus: self.cfg.max_cpus.is_some_and(|m| cpus > m),
            oom_note,
        })
    }

    /// The table for `cfg.vus`, at the target utilization and headroom.
    pub fn table(&self) -> Vec<RecommendationRow> {
        self.cfg
            .vus
            .iter()
            .filter_map(|&n| self.size(n, self.cfg.target_utilization, self.cfg.headroom))
            .collect()
    }
}

fn per_tps(cost: f64, tps: Option<f64>) -> Option<f64> {
    tps.filter(|t| *t > 0.0).map(|t| cost / t)
}

/// One row per distinct spec of the recommendation table, at the highest VUs it serves; the
/// lowest cost per TPS within the tested range is marked most efficient (the smaller spec wins
/// a tie).
pub fn cost_table(rows: &[RecommendationRow]) -> Vec<CostRow> {
    let mut out: Vec<CostRow> = Vec::new();
    for r in rows {
        let row = CostRow {
            spec: r.spec,
            cost_per_hour: r.cost_per_hour,
            cost_per_month: r.cost_per_month,
            vus: r.vus,
            expected_tps: r.expected_tps,
            cost_per_tps_hour: r.cost_per_tps_hour,
            extrapolated: r.extrapolated,
            most_efficient: false,
        };
        match out.iter_mut().find(|c| c.spec == r.spec) {
            Some(c) if r.vus > c.vus => *c = row,
            Some(_) => {}
            None => out.push(row),
        }
    }
    out.sort_by(|a, b| a.cost_per_hour.total_cmp(&b.cost_per_hour));
    let any_measured = out
        .iter()
        .any(|c| !c.extrapolated && c.cost_per_tps_hour.is_some());
    let best = out
        .iter()
        .enumerate()
        .filter(|(_, c)| !(any_measured && c.extrapolated))
        .filter_map(|(i, c)| Some((i, c.cost_per_tps_hour?)))
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(i, _)| i);
    if let Some(i) = best {
        out[i].most_efficient = true;
    }
    out
}

fn situation(
    kind: SituationKind,
    row: RecommendationRow,
    replicas: u32,
    reason: String,
) -> Situation {
    let r = f64::from(replicas);
    let cost = row.cost_per_hour * r;
    Situation {
        kind,
        vus: row.vus * replicas,
        spec: row.spec,
        replicas,
        expected_tps: row.expected_tps.map(|t| t * r),
        cost_per_hour: cost,
        cost_per_month: row.cost_per_month * r,
        reason,
    }
}

/// VUs scaled by a factor, rounded up, at least 1.
fn scaled(vus: u32, factor: f64) -> u32 {
    ((f64::from(vus) * factor).ceil() as u32).max(1)
}

/// The seed's four situations around `stable_vus` (the max VUs within the SLA at the tested
/// spec), and the autoscaling threshold of the scale-out deployment.
pub fn situations(
    sizer: &Sizer<'_>,
    stable_vus: u32,
    stable_reason: &str,
) -> (Vec<Situation>, Option<Autoscaling>) {
    let cfg = sizer.cfg;
    let mut out = Vec::new();
    let base = |n| sizer.size(n, cfg.target_utilization, cfg.headroom);
    if let Some(row) = base(stable_vus) {
        let reason = format!(
            "{stable_vus} VUs ({stable_reason}) at {:.0} % CPU utilization, {:.0} % memory headroom",
            cfg.target_utilization * 100.0,
            cfg.headroom * 100.0
        );
        out.push(situation(SituationKind::Stable, row, 1, reason));
    }
    let hp = scaled(stable_vus, cfg.high_performance_factor);
    if let Some(row) = base(hp) {
        let reason = format!(
            "{} × the stable VUs = {hp} VUs, same margins",
            trim_float(cfg.high_performance_factor)
        );
        out.push(situation(SituationKind::HighPerformance, row, 1, reason));
    }
    let burst = scaled(stable_vus, cfg.burst_factor);
    if let Some(row) = sizer.size(burst, cfg.burst_utilization, cfg.headroom * 2.0) {
        let reason = format!(
            "{} × the stable VUs = {burst} VUs for a short time: CPU may run at {:.0} %, memory \
             headroom doubled to {:.0} % (running out of memory kills, running out of CPU only slows)",
            trim_float(cfg.burst_factor),
            cfg.burst_utilization * 100.0,
            cfg.headroom * 200.0
        );
        out.push(situation(SituationKind::EventBurst, row, 1, reason));
    }
    let per_replica = cfg.replica_max_vus.unwrap_or(stable_vus).max(1);
    let target = cfg.vus.iter().copied().max().unwrap_or(per_replica);
    let replicas = target.div_ceil(per_replica).max(1);
    let mut autoscaling = None;
    if let Some(row) = base(per_replica) {
        autoscaling = Some(Autoscaling {
            cpu_utilization_target: cfg.target_utilization,
            vus_per_replica: per_replica,
            tps_per_replica: row.expected_tps,
            replica_spec: row.spec,
        });
        let reason = format!(
            "{replicas} replicas × {per_replica} VUs for the largest table row ({target} VUs); \
             add a replica per {per_replica} VUs"
        );
        out.push(situation(SituationKind::ScaleOut, row, replicas, reason));
    }
    (out, autoscaling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_up_to_steps() {
        assert_eq!(round_up(0.1, 0.5), 0.5);
        assert_eq!(round_up(1.0000000001, 0.5), 1.0);
        assert_eq!(round_up(1.01, 0.5), 1.5);
        assert_eq!(round_up(0.0, 0.5), 0.5);
    }
}
