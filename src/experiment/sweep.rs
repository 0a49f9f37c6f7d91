//! Sweep (bottom-up): at a fixed spec, step VUs up one constant-VU stage at a time until a
//! stage breaks the SLA or saturates the CPU. The result says how many VUs the spec holds.

use std::sync::Arc;
use std::time::Duration;

use super::config::SweepConfig;
use super::plan::{run_plan, PlanResult, Runtime};
use super::Outcome;
use crate::analysis::StageSummary;
use crate::config::raw::ExecutorKind;
use crate::config::{Settings, SlaConfig};
use crate::load::executor::Stop;
use crate::load::plan::{Scenario, Schedule, VuStage};

/// Settings that run `base` alone as constant-vus `vus` for `duration`, named `stage`.
pub fn single_stage(
    settings: &Settings,
    base: &Scenario,
    vus: u64,
    duration: Duration,
    stage: String,
) -> Settings {
    let sc = Scenario {
        executor: ExecutorKind::ConstantVus,
        start: Duration::ZERO,
        schedule: Schedule::Vus {
            stages: vec![VuStage {
                name: stage,
                duration,
                from: vus,
                to: vus,
                step: true,
            }],
            graceful_ramp_down: Duration::from_secs(10),
        },
        ..base.clone()
    };
    Settings {
        scenarios: vec![Arc::new(sc)],
        ..settings.clone()
    }
}

/// The scenario an experiment drives: the named one, else the first.
pub fn pick_scenario<'a>(settings: &'a Settings, name: Option<&str>) -> &'a Scenario {
    name.and_then(|n| settings.scenarios.iter().find(|s| s.name == n))
        .unwrap_or(&settings.scenarios[0])
}

/// Why a stage is over the line, if it is.
pub fn verdict(s: &StageSummary, sla: &SlaConfig, group: Option<&str>) -> Option<String> {
    let mut why = Vec::new();
    if s.requests == 0 {
        why.push("no request completed".to_string());
    } else if s.latency.is_none() {
        why.push("no response".to_string());
    }
    let lat = s.latency.clone().unwrap_or_default();
    if lat.p95 > sla.latency_p95.as_secs_f64() {
        why.push(format!(
            "p95 {:.0} ms > SLA {:.0} ms",
            lat.p95 * 1e3,
            sla.latency_p95.as_secs_f64() * 1e3
        ));
    }
    if let Some(p99) = sla.latency_p99 {
        if lat.p99 > p99.as_secs_f64() {
            why.push(format!(
                "p99 {:.0} ms > SLA {:.0} ms",
                lat.p99 * 1e3,
                p99.as_secs_f64() * 1e3
            ));
        }
    }
    if let Some(d) = &s.target_down {
        why.push(format!("target down from +{:.1}s", d.from_seconds));
    }
    for e in &s.events {
        why.push(e.to_string());
    }
    if s.error_ratio > sla.error_ratio {
        why.push(format!(
            "errors {:.2}% > SLA {:.2}%",
            s.error_ratio * 100.0,
            sla.error_ratio * 100.0
        ));
    }
    let cpu = s
        .groups
        .iter()
        .filter(|g| group.is_none_or(|name| g.name == name))
        .map(|g| g.cpu_utilization)
        .fold(0.0f64, f64::max);
    if cpu > sla.cpu_utilization {
        why.push(format!(
            "CPU {:.0}% of the limit > {:.0}%",
            cpu * 100.0,
            sla.cpu_utilization * 100.0
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

pub async fn run(settings: &Settings, rt: &Runtime, cfg: &SweepConfig, stop: Stop) -> Outcome {
    let base = pick_scenario(settings, cfg.scenario.as_deref()).clone();
    let settle = settings.raw.analysis.settle;
    let mut out = Outcome::new(base.name.clone());
    let limits = match super::apply_spec::apply_spec(
        settings,
        rt,
        cfg.group.as_deref(),
        cfg.spec.cpus,
        cfg.spec.memory,
    )
    .await
    {
        Ok(l) => l,
        Err(e) => {
            out.notes.push(format!("sweep not started: {e}"));
            tracing::error!(error = %e, "sweep: cannot set the spec");
            out.aborted = Some(format!("cannot set the spec: {e}"));
            return out;
        }
    };
    for (i, &vus) in cfg.vus.iter().enumerate() {
        if stop.drain.is_cancelled() {
            break;
        }
        let s = single_stage(
            settings,
            &base,
            vus,
            cfg.stage_duration,
            format!("vus-{vus}"),
        );
        tracing::info!(step = i + 1, of = cfg.vus.len(), vus, "sweep step");
        let PlanResult {
            stages,
            totals,
            elapsed,
            ..
        } = run_plan(&s, rt, settle, stop.clone()).await;
        out.elapsed += elapsed;
        out.totals.extend(totals);
        let Some(mut st) = stages.into_iter().next() else {
            break;
        };
        st.stage_index = i;
        let broken = verdict(&st, &settings.raw.sla, cfg.group.as_deref());
        match &broken {
            Some(why) => {
                tracing::warn!(vus, %why, "sweep: stage is over the line");
                out.notes.push(format!("{vus} VUs: over the line ({why})"));
            }
            None => {
                out.max_vus_within_sla = Some(vus);
                out.notes.push(format!("{vus} VUs: within the SLA"));
            }
        }
        out.stages.push(st);
        out.stage_verdicts.push(broken.clone());
        if broken.is_some() && cfg.stop_on_break {
            break;
        }
    }
    match out.max_vus_within_sla {
        Some(v) => out
            .notes
            .push(format!("max VUs within the SLA at this spec: {v}")),
        None => out
            .notes
            .push("no tested VU count met the SLA at this spec".into()),
    }
    out.interrupted = stop.drain.is_cancelled();
    if let Some(l) = limits {
        out.restored = super::apply_spec::restore(&l).await;
    }
    out
}
