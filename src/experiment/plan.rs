//! Running a plan: every scenario's executor and stage observer side by side, a progress line
//! every few seconds, and the results when all scenarios end (or the run is stopped).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::observer::{observe, Watched};
use crate::analysis::{LatencySummary, StageSummary};
use crate::config::Settings;
use crate::containers::SnapshotRx;
use crate::load::executor::{self, Stop};
use crate::load::plan::Shard;
use crate::load::vu::{RequestTotals, ScenarioCtx};
use crate::metrics::LoadMetrics;

/// What a plan run needs besides its settings.
#[derive(Clone)]
pub struct Runtime {
    pub metrics: Arc<LoadMetrics>,
    pub containers: SnapshotRx,
    pub shard: Shard,
    /// Summaries published as stages end, for /report and the API.
    pub live: Arc<Mutex<Vec<StageSummary>>>,
    /// Progress bars at a terminal, log lines elsewhere, nothing under `--quiet`.
    pub progress: super::progress::Display,
    /// The common wall-clock start of a sharded run (plan mode, first run only).
    pub origin: Option<crate::config::start::StartAt>,
}

/// Whole-run figures of one scenario, for the end-of-run summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioTotals {
    pub scenario: String,
    pub iterations: u64,
    pub requests: u64,
    pub failed_checks: u64,
    pub dropped_iterations: u64,
    pub data_sent_bytes: u64,
    pub data_received_bytes: u64,
    pub latency: LatencySummary,
    pub status: BTreeMap<String, u64>,
    /// The same counts per request (step), setup steps first.
    pub per_request: Vec<RequestTotals>,
}

#[derive(Debug, Clone)]
pub struct PlanResult {
    pub started: SystemTime,
    pub ended: SystemTime,
    pub elapsed: Duration,
    pub stages: Vec<StageSummary>,
    pub totals: Vec<ScenarioTotals>,
    /// True when a drain cut the plan short.
    pub interrupted: bool,
}

/// Run every scenario of `settings` once.
pub async fn run_plan(
    settings: &Settings,
    rt: &Runtime,
    settle: Duration,
    stop: Stop,
) -> PlanResult {
    let Some((started, start)) = origin(rt.origin, &stop).await else {
        // Drained while waiting for the common start: nothing ran.
        return PlanResult {
            started: SystemTime::now(),
            ended: SystemTime::now(),
            elapsed: Duration::ZERO,
            stages: Vec::new(),
            totals: Vec::new(),
            interrupted: true,
        };
    };
    let tracker = TaskTracker::new();
    let results: Arc<Mutex<Vec<StageSummary>>> = Arc::default();
    let ctxs: Vec<_> = settings
        .scenarios
        .iter()
        .map(|sc| ScenarioCtx::new(sc.clone(), &*rt.metrics))
        .collect();
    // Counters are cumulative across repeated runs; the summary reports this run only.
    let base = snapshot_counters(&ctxs);
    for ctx in &ctxs {
        let sc = &ctx.scenario;
        let t0 = crate::load::plan::instant_after(start, sc.start);
        let done = CancellationToken::new();
        let (c, s, d) = (ctx.clone(), stop.clone(), done.clone());
        let shard = rt.shard;
        tracker.spawn(async move {
            executor::run(c, shard, s, t0).await;
            d.cancel();
        });
        let (c, m, rx, s) = (
            ctx.clone(),
            rt.metrics.clone(),
            rt.containers.clone(),
            stop.clone(),
        );
        let (res, live) = (results.clone(), rt.live.clone());
        tracker.spawn(async move {
            let watched = Watched {
                ctx: c,
                metrics: m,
                containers: rx,
                t0,
                settle,
            };
            observe(watched, done, s, |summary| {
                live.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(summary.clone());
                res.lock().unwrap_or_else(|e| e.into_inner()).push(summary);
            })
            .await;
        });
    }
    tracker.close();
    let total = settings
        .scenarios
        .iter()
        .map(|s| s.start.saturating_add(s.schedule.total()))
        .max()
        .unwrap_or_default();
    let progress = super::progress::spawn(
        ctxs.clone(),
        start,
        total,
        settings.raw.log.progress_interval,
        rt.progress,
    );
    tracker.wait().await;
    progress.stop().await;
    let mut stages = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    let order = |n: &str| settings.scenarios.iter().position(|s| s.name == n);
    stages.sort_by_key(|s| (order(&s.scenario), s.stage_index));
    PlanResult {
        started,
        ended: SystemTime::now(),
        elapsed: start.elapsed(),
        stages,
        totals: snapshot_counters(&ctxs)
            .into_iter()
            .zip(base)
            .map(|(now, base)| now.since(&base))
            .collect(),
        interrupted: stop.drain.is_cancelled(),
    }
}

/// The plan's time origin: now, or the common start. A start ahead is waited for (a drain ends
/// the wait: `None`); a start behind puts the origin in the past, so every executor finds
/// itself part-way into its schedule and joins in phase instead of shifting the plan.
async fn origin(
    at: Option<crate::config::start::StartAt>,
    stop: &Stop,
) -> Option<(SystemTime, Instant)> {
    use crate::config::start::Offset;
    let Some(at) = at else {
        return Some((SystemTime::now(), Instant::now()));
    };
    let now = Instant::now();
    match at.offset_from(SystemTime::now()) {
        Offset::Ahead(d) => {
            let d = d.min(crate::config::start::MAX_AHEAD);
            tracing::info!(start_at = %String::from(at), wait = ?d, "waiting for the common start");
            tokio::select! {
                _ = tokio::time::sleep_until(now + d) => Some((at.0, now + d)),
                _ = stop.drain.cancelled() => None,
            }
        }
        Offset::Behind(d) => {
            if d > Duration::from_millis(50) {
                tracing::warn!(start_at = %String::from(at), late = ?d, "started after the common start; joining the plan in phase");
            }
            // An Instant cannot go before the process's clock origin on every platform.
            Some((at.0, now.checked_sub(d).unwrap_or(now)))
        }
    }
}

impl ScenarioTotals {
    /// The difference from an earlier snapshot (latency is per run already).
    fn since(mut self, base: &ScenarioTotals) -> Self {
        self.iterations -= base.iterations;
        self.requests -= base.requests;
        self.failed_checks -= base.failed_checks;
        self.dropped_iterations -= base.dropped_iterations;
        self.data_sent_bytes -= base.data_sent_bytes;
        self.data_received_bytes -= base.data_received_bytes;
        sub_counts(&mut self.status, &base.status);
        for (r, b) in self.per_request.iter_mut().zip(&base.per_request) {
            r.requests -= b.requests;
            r.failed_checks -= b.failed_checks;
            r.responses -= b.responses;
            r.latency_sum_seconds -= b.latency_sum_seconds;
            sub_counts(&mut r.status, &b.status);
        }
        self
    }
}

/// `now - base` per key, keeping only keys that moved.
fn sub_counts(now: &mut BTreeMap<String, u64>, base: &BTreeMap<String, u64>) {
    for (k, v) in now.iter_mut() {
        *v -= base.get(k).copied().unwrap_or(0);
    }
    now.retain(|_, v| *v > 0);
}

fn snapshot_counters(ctxs: &[Arc<ScenarioCtx>]) -> Vec<ScenarioTotals> {
    ctxs.iter()
        .map(|c| {
            let (requests, failed) = c.totals();
            ScenarioTotals {
                scenario: c.scenario.name.clone(),
                iterations: c.metrics.iterations.get(),
                requests,
                failed_checks: failed,
                dropped_iterations: c.metrics.dropped.get(),
                data_sent_bytes: c.metrics.data_sent.get(),
                data_received_bytes: c.metrics.data_received.get(),
                latency: c.latency.total(),
                status: c.counts(),
                per_request: c.request_totals(),
            }
        })
        .collect()
}
