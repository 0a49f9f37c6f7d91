//! Search (top-down): the cheapest cpus candidate that serves N1 VUs with p95 within N2.
//! Candidates are binary-searched (more cpus never makes a spec worse); each trial sets the
//! limits on every container of the group and runs N1 constant VUs. Candidates above the
//! engine host's CPUs are skipped with a warning (the engine refuses them). The winner and the
//! candidate below it are run once more, and the winner's margin to the SLA is reported, so a
//! pass by a hair is not taken for an answer. The original limits are restored at the end,
//! after a drain too. A search that cannot run sets [`Outcome::aborted`].

use super::config::SearchConfig;
use super::plan::{run_plan, Runtime};
use super::sweep::{pick_scenario, single_stage, verdict};
use super::Outcome;
use crate::analysis::StageSummary;
use crate::config::{Settings, SlaConfig};
use crate::containers::LimitsControl;
use crate::load::executor::Stop;
use crate::load::plan::Scenario;
use crate::report::TestedLimits;

/// A winner whose p95 is closer than this share of the SLA gets a warning: a re-run on a
/// slightly busier host could fail it.
pub const MIN_MARGIN: f64 = 0.10;

/// Candidates the engine host can provide, and the ones above it.
pub fn split_candidates(mut cands: Vec<f64>, host_cpus: u64) -> (Vec<f64>, Vec<f64>) {
    cands.retain(|c| c.is_finite() && *c > 0.0);
    cands.sort_by(f64::total_cmp);
    cands.dedup();
    cands.into_iter().partition(|c| *c <= host_cpus as f64)
}

/// (SLA p95 − p95) ÷ SLA p95: how far under the bound a stage stayed; negative when over it,
/// `None` without responses.
pub fn margin(st: &StageSummary, sla: &SlaConfig) -> Option<f64> {
    let bound = sla.latency_p95.as_secs_f64();
    let p95 = st.latency.as_ref()?.p95;
    (bound > 0.0).then(|| (bound - p95) / bound)
}

fn pct(m: Option<f64>) -> String {
    m.map_or("–".into(), |m| format!("{:.1} %", m * 100.0))
}

/// The note of a search without an answer. Only a search that ran to its end may say "no
/// candidate up to X serves N VUs", and X is the largest candidate the host could provide; a
/// search cut short lists what it never judged instead.
pub fn no_answer(
    cands: &[f64],
    judged: &[f64],
    skipped: &[f64],
    host_cpus: u64,
    vus: u64,
    finished: bool,
) -> String {
    if finished {
        return format!(
            "no candidate up to {} cpus serves {vus} VUs within the SLA{}",
            cands.last().copied().unwrap_or(0.0),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" (candidates above the host's {host_cpus} CPUs were not tried)")
            }
        );
    }
    let untried: Vec<String> = cands
        .iter()
        .filter(|c| !judged.contains(c))
        .chain(skipped)
        .map(|c| c.to_string())
        .collect();
    format!(
        "search stopped before it finished: no answer; candidates not judged: {} cpus",
        if untried.is_empty() {
            "none".to_string()
        } else {
            untried.join(", ")
        }
    )
}

/// What one search needs across its trials.
/// Why a trial gave no stage summary (the search cannot go on).
#[derive(Debug, thiserror::Error)]
enum TrialError {
    #[error("trial at {cpus} cpus not run: {source}")]
    NotRun {
        cpus: f64,
        source: super::apply_spec::ApplySpecError,
    },
    #[error("trial at {cpus} cpus measured nothing")]
    NothingMeasured { cpus: f64 },
}

struct Trials<'a> {
    settings: &'a Settings,
    rt: &'a Runtime,
    base: Scenario,
    cfg: &'a SearchConfig,
    stop: Stop,
    n: usize,
}

impl Trials<'_> {
    /// Set `cpus` and run one stage; `Err` when the limits could not be set or nothing was
    /// measured (then the search cannot go on).
    async fn run(
        &mut self,
        applied: &super::apply_spec::Applied,
        cpus: f64,
        name: String,
        out: &mut Outcome,
    ) -> Result<StageSummary, TrialError> {
        super::apply_spec::set_all(applied, Some(cpus), self.cfg.memory)
            .await
            .map_err(|source| TrialError::NotRun { cpus, source })?;
        tracing::info!(cpus, vus = self.cfg.vus, "search trial");
        let s = single_stage(
            self.settings,
            &self.base,
            self.cfg.vus,
            self.cfg.stage_duration,
            name,
        );
        let r = run_plan(
            &s,
            self.rt,
            self.settings.raw.analysis.settle,
            self.stop.clone(),
        )
        .await;
        out.elapsed += r.elapsed;
        out.totals.extend(r.totals);
        let mut st = r
            .stages
            .into_iter()
            .next()
            .ok_or(TrialError::NothingMeasured { cpus })?;
        st.stage_index = self.n;
        self.n += 1;
        Ok(st)
    }
}

pub async fn run(settings: &Settings, rt: &Runtime, cfg: &SearchConfig, stop: Stop) -> Outcome {
    let base = pick_scenario(settings, cfg.scenario.as_deref()).clone();
    let mut out = Outcome::new(base.name.clone());
    let abort = |out: &mut Outcome, why: String| {
        tracing::error!(error = %why, "search aborted");
        out.notes.push(format!("search aborted: {why}"));
        out.aborted = Some(why);
    };
    let mut sla = settings.raw.sla.clone();
    if let Some(p95) = cfg.latency_p95 {
        sla.latency_p95 = p95;
    }
    // The search judges latency and errors only: a spec that is busy but fast enough passes.
    sla.cpu_utilization = f64::INFINITY;
    let Some(group) = cfg.group.as_deref() else {
        abort(&mut out, "search needs experiment.search.group".into());
        return out;
    };
    let host_cpus =
        match LimitsControl::connect(&settings.raw.containers.effective_docker_host()).await {
            Ok(c) => c.engine_cpus().await,
            Err(e) => Err(e),
        };
    let host_cpus = match host_cpus {
        Ok(n) => n,
        Err(e) => {
            abort(&mut out, format!("cannot reach the Docker engine: {e}"));
            return out;
        }
    };
    let (cands, skipped) = split_candidates(cfg.cpus.clone(), host_cpus);
    for c in &skipped {
        tracing::warn!(
            cpus = c,
            host_cpus,
            "search: candidate skipped, the host has fewer CPUs"
        );
        out.notes.push(format!(
            "{c} cpus: skipped, the engine's host has {host_cpus} CPUs"
        ));
    }
    if cands.is_empty() {
        abort(
            &mut out,
            format!("every cpus candidate is above the host's {host_cpus} CPUs"),
        );
        return out;
    }
    let applied = match super::apply_spec::apply_spec(
        settings,
        rt,
        Some(group),
        cands.last().copied(),
        cfg.memory,
    )
    .await
    {
        Ok(Some(a)) => a,
        Ok(None) => {
            abort(&mut out, "search has no spec to set".into());
            return out;
        }
        Err(e) => {
            abort(&mut out, format!("cannot set limits: {e}"));
            return out;
        }
    };
    let memory = cfg
        .memory
        .or(applied.originals.iter().find_map(|o| o.memory_bytes));
    let mut trials = Trials {
        settings,
        rt,
        base,
        cfg,
        stop: stop.clone(),
        n: 0,
    };
    let (mut lo, mut hi) = (0usize, cands.len());
    let mut best: Option<(usize, StageSummary)> = None;
    let mut judged: Vec<usize> = Vec::new();
    while lo < hi && !stop.drain.is_cancelled() {
        let mid = (lo + hi) / 2;
        let cpus = cands[mid];
        let st = match trials
            .run(&applied, cpus, format!("cpus-{cpus}"), &mut out)
            .await
        {
            Ok(st) => st,
            Err(e) if stop.drain.is_cancelled() => {
                tracing::info!(error = %e, "search trial cut by the drain");
                break;
            }
            Err(e) => {
                abort(&mut out, e.to_string());
                break;
            }
        };
        judged.push(mid);
        let broken = verdict(&st, &sla, Some(group));
        out.stage_verdicts.push(broken.clone());
        match broken {
            None => {
                out.notes.push(format!(
                    "{cpus} cpus: passes (p95 {}, margin to the SLA {}, errors {:.2}%, {:.1} TPS)",
                    st.latency
                        .as_ref()
                        .map_or("–".into(), |l| format!("{:.0} ms", l.p95 * 1e3)),
                    pct(margin(&st, &sla)),
                    st.error_ratio * 100.0,
                    st.tps
                ));
                best = Some((mid, st.clone()));
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
    let finished = !out.interrupted && out.aborted.is_none();
    match best {
        Some((i, first)) if finished => {
            confirm(&mut trials, &applied, &cands, i, first, &sla, &mut out).await;
        }
        _ => {
            let judged: Vec<f64> = judged.iter().map(|&i| cands[i]).collect();
            out.notes.push(no_answer(
                &cands, &judged, &skipped, host_cpus, cfg.vus, finished,
            ));
        }
    }
    let shown = out
        .search_result
        .map(|(c, _)| c)
        .or(judged.last().map(|&i| cands[i]));
    out.tested_spec = shown.map(|cpus| TestedLimits {
        cpus: Some(cpus),
        memory_bytes: memory,
    });
    out.restored = super::apply_spec::restore(&applied).await;
    out
}

/// Run the winner and the candidate below it once more; report the winner's margin to the SLA
/// and set the result only when the winner passes again.
async fn confirm(
    trials: &mut Trials<'_>,
    applied: &super::apply_spec::Applied,
    cands: &[f64],
    i: usize,
    first: StageSummary,
    sla: &SlaConfig,
    out: &mut Outcome,
) {
    let settings = trials.settings;
    let cfg = trials.cfg;
    let cpus = cands[i];
    let mut winner_margin = margin(&first, sla);
    let mut confirmed = true;
    let mut recheck = vec![(cpus, true)];
    if i > 0 {
        recheck.push((cands[i - 1], false));
    }
    for (c, is_winner) in recheck {
        if trials.stop.drain.is_cancelled() {
            confirmed = false;
            break;
        }
        let st = match trials
            .run(applied, c, format!("cpus-{c}-recheck"), out)
            .await
        {
            Ok(st) => st,
            Err(e) => {
                out.notes.push(format!("re-run at {c} cpus: {e}"));
                confirmed &= !is_winner;
                continue;
            }
        };
        let m = margin(&st, sla);
        let v = verdict(&st, sla, cfg.group.as_deref());
        out.notes.push(format!(
            "{c} cpus re-run: {} (margin to the SLA {})",
            v.as_deref()
                .map_or("passes".to_string(), |w| format!("fails ({w})")),
            pct(m)
        ));
        if is_winner {
            confirmed &= v.is_none();
            winner_margin = match (winner_margin, m) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        } else if v.is_none() {
            out.notes.push(format!(
                "{c} cpus passed on its re-run: the boundary is within the noise; {cpus} cpus is \
                 the safe choice"
            ));
        }
        out.stage_verdicts.push(v);
        out.stages.push(st);
    }
    if !confirmed {
        let why = format!(
            "{cpus} cpus passed once but not on its re-run: no confirmed answer; run longer stages"
        );
        tracing::warn!("{why}");
        out.notes.push(why);
        return;
    }
    let mem = cfg
        .memory
        .or(applied.originals.iter().find_map(|o| o.memory_bytes));
    let cost = settings
        .raw
        .prices
        .cost_per_hour(cpus, mem.unwrap_or(0) as f64);
    out.search_result = Some((cpus, mem));
    out.search_margin = winner_margin;
    out.notes.push(format!(
        "cheapest spec serving {} VUs with p95 ≤ {:.0} ms: {cpus} cpus{} at {cost:.4} {}/h per container; smallest margin to the SLA over its runs {}",
        cfg.vus,
        sla.latency_p95.as_secs_f64() * 1e3,
        mem.map(|m| format!(", {} MiB", m / (1 << 20))).unwrap_or_default(),
        settings.raw.prices.currency,
        pct(winner_margin)
    ));
    if winner_margin.is_some_and(|m| m < MIN_MARGIN) {
        let why = format!(
            "{cpus} cpus passed by only {}: under {:.0} % of the SLA, a busier host could fail it",
            pct(winner_margin),
            MIN_MARGIN * 100.0
        );
        tracing::warn!("{why}");
        out.notes.push(format!("warning: {why}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::LatencySummary;

    #[test]
    fn candidates_above_the_host_are_split_off() {
        let (ok, skipped) = split_candidates(vec![4.0, 0.5, 2.0, 3.0, 1.0, 2.0, f64::NAN], 2);
        assert_eq!(ok, vec![0.5, 1.0, 2.0]);
        assert_eq!(skipped, vec![3.0, 4.0]);
    }

    #[test]
    fn an_unfinished_search_claims_nothing_it_did_not_judge() {
        let cands = [0.5, 1.0, 2.0];
        let done = no_answer(&cands, &[1.0, 2.0], &[3.0, 4.0], 2, 6, true);
        assert_eq!(
            done,
            "no candidate up to 2 cpus serves 6 VUs within the SLA (candidates above the host's 2 CPUs were not tried)"
        );
        let cut = no_answer(&cands, &[1.0], &[3.0], 2, 6, false);
        assert!(!cut.contains("no candidate up to"), "{cut}");
        assert!(
            cut.ends_with("candidates not judged: 0.5, 2, 3 cpus"),
            "{cut}"
        );
    }

    #[test]
    fn margin_is_the_share_of_the_sla_left() {
        let sla = SlaConfig {
            latency_p95: std::time::Duration::from_millis(200),
            ..SlaConfig::default()
        };
        let mut st = StageSummary::default();
        assert_eq!(margin(&st, &sla), None);
        st.latency = Some(LatencySummary {
            p95: 0.197,
            ..Default::default()
        });
        assert!((margin(&st, &sla).unwrap() - 0.015).abs() < 1e-9);
        st.latency.as_mut().unwrap().p95 = 0.25;
        assert!((margin(&st, &sla).unwrap() + 0.25).abs() < 1e-9);
    }
}
