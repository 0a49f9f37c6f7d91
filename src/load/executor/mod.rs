//! Executors: turn a scenario's schedule into running VUs, one file per model as k6 has them.
//! - [`closed`]: constant-vus and ramping-vus. A controller publishes the global VU count at
//!   the exact instants it changes; VU `g` runs iterations while `g` is below it.
//! - [`arrival`]: constant-arrival-rate and ramping-arrival-rate. The `n`-th iteration starts
//!   at the instant given by the cumulative rate; idle VUs take the next arrival in turn.
//! - [`per_vu`]: the per-vu-iterations executor.
//!
//! Shards stripe global indexes (VUs and arrivals) as k6's execution segments `0,1/N,…,1`
//! do: index `g` belongs to shard `g mod N`, so the union of the shards is the one-process
//! schedule. Every loop watches two tokens: `drain` (start nothing new) and `abort` (cut
//! in-flight work). The setup policy ([`gate`]) is the same for every executor.

pub mod arrival;
pub mod closed;
pub mod per_vu;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::plan::{OnSetupFailure, Schedule, Shard};
use super::vu::{ScenarioCtx, Vu};

/// Cancellation for one run.
#[derive(Clone, Default)]
pub struct Stop {
    /// Start no new iterations; let in-flight ones finish.
    pub drain: CancellationToken,
    /// Cut in-flight iterations (drain deadline passed, or a second signal).
    pub abort: CancellationToken,
}

/// How long the open model's in-flight iterations may finish after its last arrival.
const OPEN_GRACE: Duration = Duration::from_secs(30);

/// Run one scenario from `t0` (its start, offset included) until its schedule ends or `stop`.
pub async fn run(ctx: Arc<ScenarioCtx>, shard: Shard, stop: Stop, t0: Instant) {
    tokio::select! {
        _ = sleep_until(t0) => {}
        _ = stop.drain.cancelled() => return,
    }
    match ctx.scenario.schedule.clone() {
        Schedule::Vus {
            stages,
            graceful_ramp_down,
        } => closed::run(ctx.clone(), shard, stop, t0, &stages, graceful_ramp_down).await,
        Schedule::Arrival {
            stages,
            pre_allocated_vus,
            max_vus,
        } => {
            let plan = arrival::Plan::new(&ctx.scenario.executor, stages, shard);
            arrival::run(
                ctx.clone(),
                plan,
                stop,
                t0,
                shard.vus(pre_allocated_vus).max(1),
                shard.vus(max_vus).max(1),
            )
            .await
        }
        Schedule::PerVuIterations {
            vus,
            iterations,
            max_duration,
        } => per_vu::run(ctx.clone(), shard, vus, iterations, max_duration, stop).await,
    }
    ctx.metrics.vus_target.set(0);
    ctx.metrics.arrival_rate_target.set(0.0);
}

/// Wait for the VUs, cutting them off after `grace` (or when aborted).
async fn finish(tracker: &TaskTracker, stop: &Stop, grace: Duration) {
    tokio::select! {
        _ = tracker.wait() => {}
        _ = sleep(grace) => {
            stop.abort.cancel();
            tracker.wait().await;
        }
        _ = stop.abort.cancelled() => tracker.wait().await,
    }
}

/// Whether a VU may run an iteration now, after its setup (the setup policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Setup done (or none): run the iteration.
    Ready,
    /// Setup failed and `on_setup_failure = "retry"`: this iteration slot is used up.
    Skip,
    /// Setup failed and `on_setup_failure = "stop-vu"` (or a drain): the VU is done.
    Stop,
}

/// Sleep for `d` unless `drain` comes first; false when drained.
async fn pause(d: Duration, drain: &CancellationToken) -> bool {
    tokio::select! {
        _ = sleep(d) => true,
        _ = drain.cancelled() => false,
    }
}

/// Run the VU's setup when it needs one, by the scenario's policy: up to `1 + retries`
/// attempts `backoff` apart; then stop the VU, or (retry) skip this iteration and wait
/// `backoff` before the next round. Every attempt is one `loadspec_setup_runs_total`.
pub async fn gate(ctx: &ScenarioCtx, vu: &mut Vu, drain: &CancellationToken) -> Gate {
    if vu.setup_done || ctx.scenario.setup.is_empty() {
        return Gate::Ready;
    }
    let p = &ctx.scenario.setup_policy;
    for attempt in 0..=p.retries {
        if (attempt > 0 || vu.setup_failed) && !pause(p.backoff, drain).await {
            return Gate::Stop;
        }
        if drain.is_cancelled() {
            return Gate::Stop;
        }
        if ctx.setup(vu).await {
            vu.setup_failed = false;
            return Gate::Ready;
        }
        vu.setup_failed = true;
    }
    match p.on_failure {
        OnSetupFailure::StopVu => {
            tracing::warn!(scenario = %ctx.scenario.name, vu = vu.id, attempts = p.retries + 1,
                "setup failed; this VU stops (on_setup_failure = \"stop-vu\")");
            Gate::Stop
        }
        OnSetupFailure::Retry => Gate::Skip,
    }
}
