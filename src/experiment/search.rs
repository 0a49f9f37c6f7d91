//! Search (top-down): the cheapest cpus candidate that serves N1 VUs with p95 within N2.
//! Candidates are binary-searched (more cpus never makes a spec worse); each trial sets the
//! limits on every container of the group and runs N1 constant VUs. The original limits are
//! restored at the end, after a drain too.

use super::config::SearchConfig;
use super::plan::{run_plan, Runtime};
use super::sweep::{pick_scenario, single_stage, verdict};
use super::Outcome;
use crate::config::Settings;
use crate::load::executor::Stop;

pub async fn run(settings: &Settings, rt: &Runtime, cfg: &SearchConfig, stop: Stop) -> Outcome {
    let base = pick_scenario(settings, cfg.scenario.as_deref()).clone();
    let mut out = Outcome::new(base.name.clone());
    let mut sla = settings.raw.sla.clone();
    if let Some(p95) = cfg.latency_p95 {
        sla.latency_p95 = p95;
    }
    // The search judges latency and errors only: a spec that is busy but fast enough passes.
    sla.cpu_utilization = f64::INFINITY;
    let mut cands = cfg.cpus.clone();
    cands.sort_by(f64::total_cmp);
    cands.dedup();
    let group = cfg.group.as_deref();
    let applied =
        match super::apply_spec::apply_spec(settings, rt, group, cands.last().copied(), cfg.memory)
            .await
        {
            Ok(Some(a)) => a,
            Ok(None) => {
                out.notes
                    .push("search needs experiment.search.group".into());
                return out;
            }
            Err(e) => {
                tracing::error!(error = %e, "search: cannot set limits");
                out.notes.push(format!("search not started: {e}"));
                return out;
            }
        };
    let (mut lo, mut hi) = (0usize, cands.len());
    let mut best: Option<usize> = None;
    let mut trial = 0usize;
    while lo < hi && !stop.drain.is_cancelled() {
        let mid = (lo + hi) / 2;
        let cpus = cands[mid];
        if let Err(e) = super::apply_spec::set_all(&applied, Some(cpus), cfg.memory).await {
            out.notes.push(format!("trial at {cpus} cpus not run: {e}"));
            break;
        }
        tracing::info!(cpus, vus = cfg.vus, "search trial");
        let s = single_stage(
            settings,
            &base,
            cfg.vus,
            cfg.stage_duration,
            format!("cpus-{cpus}"),
        );
        let r = run_plan(&s, rt, settings.raw.analysis.settle, stop.clone()).await;
        out.elapsed += r.elapsed;
        out.totals.extend(r.totals);
        let Some(mut st) = r.stages.into_iter().next() else {
            break;
        };
        st.stage_index = trial;
        trial += 1;
        let broken = verdict(&st, &sla, group);
        out.stage_verdicts.push(broken.clone());
        match broken {
            None => {
                out.notes.push(format!(
                    "{cpus} cpus: passes (p95 {:.0} ms, errors {:.2}%, {:.1} TPS)",
                    st.latency.p95 * 1e3,
                    st.error_ratio * 100.0,
                    st.tps
                ));
                best = Some(mid);
                hi = mid;
            }
            Some(why) => {
                out.notes.push(format!("{cpus} cpus: fails ({why})"));
                lo = mid + 1;
            }
        }
        out.stages.push(st);
    }
    out.interrupted = stop.drain.is_cancelled();
    match best {
        Some(i) if !out.interrupted => {
            let cpus = cands[i];
            let mem = cfg
                .memory
                .or(applied.originals.iter().find_map(|o| o.memory_bytes));
            let cost = settings
                .raw
                .prices
                .cost_per_hour(cpus, mem.unwrap_or(0) as f64);
            out.search_result = Some((cpus, mem));
            out.notes.push(format!(
                "cheapest spec serving {} VUs with p95 ≤ {:.0} ms: {cpus} cpus{} at {cost:.4} {}/h per container",
                cfg.vus,
                sla.latency_p95.as_secs_f64() * 1e3,
                mem.map(|m| format!(", {} MiB", m / (1 << 20))).unwrap_or_default(),
                settings.raw.prices.currency
            ));
        }
        Some(_) => out
            .notes
            .push("search interrupted before it finished".into()),
        None => out.notes.push(format!(
            "no candidate up to {} cpus serves {} VUs within the SLA",
            cands.last().copied().unwrap_or(0.0),
            cfg.vus
        )),
    }
    out.restored = super::apply_spec::restore(&applied).await;
    out
}
