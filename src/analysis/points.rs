//! Turns stage summaries into the flat points the models and the knee work on: one row per
//! stage with VUs, TPS, latency, errors and the CPU and memory of the chosen resource (one
//! group, or the sum of all containers). Stages that cannot be used are dropped with a warning
//! instead of poisoning a fit with NaN. Stages that measured something other than the spec
//! (the target was down, a container was OOM-killed or restarted, the host could not supply
//! the CPU) stay in the table but carry an [`Exclusion`], which keeps them out of the knee and
//! the fits.

use serde::{Deserialize, Serialize};

use super::config::AnalysisConfig;
use super::summary::{event_time, ContainerEventKind, ResourceSummary, StageSummary};
use crate::sla::SlaConfig;

/// Why a stage is left out of the knee and the fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Exclusion {
    /// The target stopped accepting connections from `from_seconds` after the stage start.
    TargetDown { from_seconds: f64 },
    /// A measured container was OOM-killed, restarted or exited during the stage.
    ContainerEvent {
        kind: ContainerEventKind,
        container: String,
        at_seconds: f64,
        /// Seen after the load had ended (see `ContainerEvent::after_load_seconds`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_load_seconds: Option<f64>,
    },
    /// The host had almost no idle CPU while the container stayed under its limit and was not
    /// throttled: the host, not the limit, held it back.
    StarvedHost {
        host_idle_ratio: f64,
        cpu_utilization: f64,
    },
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::TargetDown { from_seconds } => {
                write!(f, "target down from +{from_seconds:.1}s")
            }
            Exclusion::ContainerEvent {
                kind,
                container,
                at_seconds,
                after_load_seconds,
            } => write!(
                f,
                "{kind} of {container} {}",
                event_time(*at_seconds, *after_load_seconds)
            ),
            Exclusion::StarvedHost {
                host_idle_ratio,
                cpu_utilization,
            } => write!(
                f,
                "starved host: {:.1} % of the host's CPU idle, container at {:.1} % of its limit \
                 and not throttled",
                host_idle_ratio * 100.0,
                cpu_utilization * 100.0
            ),
        }
    }
}

/// What one stage measured, reduced to the figures the analysis needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagePoint {
    pub scenario: String,
    pub stage: String,
    pub vus: f64,
    /// Successful requests per second.
    pub tps: f64,
    /// Every completed request per second, failures included.
    #[serde(default)]
    pub request_rate: f64,
    /// Seconds; `None` when the stage had no response.
    pub latency_avg: Option<f64>,
    pub latency_p95: Option<f64>,
    pub latency_p99: Option<f64>,
    pub latency_max: Option<f64>,
    pub error_ratio: f64,
    /// Average cores of the chosen resource; `None` without container data.
    pub cpu_cores: Option<f64>,
    /// Sum of the CPU limits; `None` when unknown or 0.
    pub cpu_limit_cores: Option<f64>,
    pub cpu_utilization: Option<f64>,
    pub memory_bytes: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
    pub memory_utilization: Option<f64>,
    /// Throttled seconds per second of the chosen resource; `None` without container data.
    #[serde(default)]
    pub cpu_throttled_ratio: Option<f64>,
    /// Idle share of the host's CPUs during the window.
    #[serde(default)]
    pub host_idle_ratio: Option<f64>,
    /// CPUs of the host, from the same reading.
    #[serde(default)]
    pub host_cpus: Option<f64>,
    /// Set when the stage is left out of the knee and the fits.
    #[serde(default)]
    pub excluded: Option<Exclusion>,
}

impl StagePoint {
    /// Whether the knee and the fits may use this stage.
    pub fn usable(&self) -> bool {
        self.excluded.is_none()
    }
}

/// Which containers the resource columns describe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResourceSource {
    /// Sum of every container of the stage.
    AllContainers,
    /// The named group's row.
    Group { name: String },
}

impl std::fmt::Display for ResourceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResourceSource::AllContainers => f.write_str("sum of all containers"),
            ResourceSource::Group { name } => write!(f, "group {name}"),
        }
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn positive(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}

/// CPU and memory summed over `rows`: averages add up, and so do limits (a group of two
/// one-core containers has two cores).
fn sum_rows<'a>(rows: impl Iterator<Item = &'a ResourceSummary>) -> Option<[f64; 5]> {
    let mut acc = [0.0; 5];
    let mut any = false;
    for r in rows {
        any = true;
        acc[0] += r.cpu_cores_avg;
        acc[1] += r.cpu_limit_cores;
        acc[2] += r.memory_bytes_avg;
        acc[3] += r.memory_limit_bytes;
        acc[4] += r.cpu_throttled_ratio;
    }
    any.then_some(acc)
}

fn resources(stage: &StageSummary, source: &ResourceSource) -> Option<[f64; 5]> {
    match source {
        ResourceSource::AllContainers if !stage.containers.is_empty() => {
            sum_rows(stage.containers.iter())
        }
        // Groups partition the containers, so their sum is the same total.
        ResourceSource::AllContainers => sum_rows(stage.groups.iter()),
        ResourceSource::Group { name } => sum_rows(
            stage
                .groups
                .iter()
                .filter(|g| &g.group == name || &g.name == name),
        ),
    }
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => finite(n / d),
        _ => None,
    }
}

/// One point per usable stage, sorted by VUs (stable, so equal VUs keep their order).
pub fn extract(
    stages: &[StageSummary],
    source: &ResourceSource,
    warnings: &mut Vec<String>,
) -> Vec<StagePoint> {
    let mut out = Vec::with_capacity(stages.len());
    let mut missing_resources = Vec::new();
    for s in stages {
        let label = format!("{}/{}", s.scenario, s.stage);
        if !(s.vus.is_finite() && s.vus > 0.0) {
            warnings.push(format!(
                "stage {label}: VUs is {}, stage left out of the analysis",
                s.vus
            ));
            continue;
        }
        let res = resources(s, source);
        if res.is_none() {
            missing_resources.push(label.clone());
        }
        let [cpu, cpu_limit, mem, mem_limit, throttled] = res.unwrap_or([f64::NAN; 5]);
        let lat = |f: fn(&super::summary::LatencySummary) -> f64| {
            s.latency.as_ref().and_then(|l| finite(f(l)))
        };
        let cpu_cores = finite(cpu).map(|c| c.max(0.0));
        let memory_bytes = finite(mem).map(|m| m.max(0.0));
        let cpu_limit_cores = positive(cpu_limit);
        let memory_limit_bytes = positive(mem_limit);
        out.push(StagePoint {
            scenario: s.scenario.clone(),
            stage: s.stage.clone(),
            vus: s.vus,
            tps: finite(s.tps).map(|t| t.max(0.0)).unwrap_or(0.0),
            request_rate: finite(s.request_rate).map(|t| t.max(0.0)).unwrap_or(0.0),
            latency_avg: lat(|l| l.avg),
            latency_p95: lat(|l| l.p95),
            latency_p99: lat(|l| l.p99),
            latency_max: lat(|l| l.max),
            error_ratio: finite(s.error_ratio).unwrap_or(0.0),
            cpu_cores,
            cpu_limit_cores,
            cpu_utilization: ratio(cpu_cores, cpu_limit_cores),
            memory_bytes,
            memory_limit_bytes,
            memory_utilization: ratio(memory_bytes, memory_limit_bytes),
            cpu_throttled_ratio: finite(throttled).map(|t| t.max(0.0)),
            host_idle_ratio: s
                .host
                .as_ref()
                .and_then(|h| finite(h.idle_ratio))
                .map(|r| r.clamp(0.0, 1.0)),
            host_cpus: s.host.as_ref().map(|h| h.cpus as f64),
            excluded: stage_exclusion(s),
        });
    }
    if !missing_resources.is_empty() {
        warnings.push(format!(
            "no container data for {source} in stage(s) {}: resource models use the other stages",
            missing_resources.join(", ")
        ));
    }
    out.sort_by(|a, b| a.vus.total_cmp(&b.vus));
    out
}

/// A dead target or a container event makes a stage measure something other than the spec.
fn stage_exclusion(s: &StageSummary) -> Option<Exclusion> {
    if let Some(e) = s.events.first() {
        return Some(Exclusion::ContainerEvent {
            kind: e.kind,
            container: e.container.clone(),
            at_seconds: e.at_seconds,
            after_load_seconds: e.after_load_seconds,
        });
    }
    s.target_down.as_ref().map(|d| Exclusion::TargetDown {
        from_seconds: d.from_seconds,
    })
}

/// Mark the stages a starved host held back. Only stages at or past a knee are candidates
/// (`knee_vus`, found on every stage): the question is whether that knee is the container's.
/// A candidate is starved when the host had little idle CPU while the container stayed under
/// the SLA's utilization line of its limit and was not throttled. A container at its limit (or
/// throttled by it) is the limit reached, whatever else the host did; a stage below any knee
/// scaled, so a busy host did not hold it back; without a CPU limit below the host's CPUs the
/// host is the limit. Stages without host or container data are never marked.
pub fn mark_starved(
    points: &mut [StagePoint],
    sla: &SlaConfig,
    cfg: &AnalysisConfig,
    knee_vus: Option<f64>,
) {
    let Some(knee) = knee_vus else {
        return;
    };
    if cfg.starved_host_idle <= 0.0 {
        return;
    }
    for p in points
        .iter_mut()
        .filter(|p| p.excluded.is_none() && p.vus >= knee)
    {
        let (Some(idle), Some(util)) = (p.host_idle_ratio, p.cpu_utilization) else {
            continue;
        };
        // Without a limit below the host's CPUs (a plain process, an unlimited container) the
        // host is the limit: reaching it is the limit reached.
        let below_host = matches!(
            (p.cpu_limit_cores, p.host_cpus),
            (Some(l), Some(h)) if l < h - 1e-9
        );
        if !below_host {
            continue;
        }
        let throttled = p
            .cpu_throttled_ratio
            .is_some_and(|t| t >= cfg.throttled_ratio);
        if idle < cfg.starved_host_idle && util < sla.cpu_utilization && !throttled {
            p.excluded = Some(Exclusion::StarvedHost {
                host_idle_ratio: idle,
                cpu_utilization: util,
            });
        }
    }
}

/// Points with equal VUs averaged into one, for the stage-to-stage slopes of the knee
/// detection (a repeated VU count would otherwise divide by zero).
pub fn merge_equal_vus(points: &[StagePoint]) -> Vec<StagePoint> {
    let mut out: Vec<(StagePoint, f64)> = Vec::new();
    for p in points {
        match out.last_mut() {
            Some((acc, n)) if (acc.vus - p.vus).abs() < 1e-9 => {
                let w = *n / (*n + 1.0);
                let mix = |a: f64, b: f64| a * w + b * (1.0 - w);
                let mix_opt = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => Some(mix(a, b)),
                    (a, b) => a.or(b),
                };
                acc.tps = mix(acc.tps, p.tps);
                acc.latency_avg = mix_opt(acc.latency_avg, p.latency_avg);
                acc.latency_p95 = mix_opt(acc.latency_p95, p.latency_p95);
                acc.cpu_cores = mix_opt(acc.cpu_cores, p.cpu_cores);
                acc.cpu_utilization = mix_opt(acc.cpu_utilization, p.cpu_utilization);
                acc.memory_bytes = mix_opt(acc.memory_bytes, p.memory_bytes);
                *n += 1.0;
            }
            _ => out.push((p.clone(), 1.0)),
        }
    }
    out.into_iter().map(|(p, _)| p).collect()
}
