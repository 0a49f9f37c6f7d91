//! Executors: turn a scenario's schedule into running VUs.
//! - Closed model (constant-vus, ramping-vus): a controller publishes the VU target through a
//!   `watch` channel; VU `i` runs iterations while `i < target`. A VU removed by a ramp-down
//!   finishes its iteration, cut off after `graceful_ramp_down`.
//! - Open model (arrival rates): a scheduler starts iterations at their intended times on idle
//!   VUs from a pool, growing it up to `max_vus`; with none free the iteration is dropped and
//!   counted. Latency counts from the intended time.
//! - per-vu-iterations: each VU runs its iterations, within `max_duration`.
//!
//! Every loop watches two tokens: `drain` (start nothing new) and `abort` (cut in-flight work).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::plan::{instant_after, RateStage, Schedule, Shard, Stage, StageAt, VuStage};
use super::vu::{ScenarioCtx, Vu};

/// Cancellation for one run.
#[derive(Clone, Default)]
pub struct Stop {
    /// Start no new iterations; let in-flight ones finish.
    pub drain: CancellationToken,
    /// Cut in-flight iterations (drain deadline passed, or a second signal).
    pub abort: CancellationToken,
}

/// Pause after a failed setup before the VU tries again.
const SETUP_RETRY: Duration = Duration::from_secs(1);

/// How often a linear ramp re-computes its target.
const RAMP_TICK: Duration = Duration::from_millis(100);

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
        } => closed(ctx.clone(), shard, stop, t0, &stages, graceful_ramp_down).await,
        Schedule::Arrival {
            stages,
            pre_allocated_vus,
            max_vus,
        } => {
            open(
                ctx.clone(),
                shard,
                stop,
                t0,
                &stages,
                shard.vus(pre_allocated_vus).max(1),
                shard.vus(max_vus).max(1),
            )
            .await
        }
        Schedule::PerVuIterations {
            vus,
            iterations,
            max_duration,
        } => per_vu(ctx.clone(), shard.vus(vus), iterations, max_duration, stop).await,
    }
    ctx.metrics.vus_target.set(0);
    ctx.metrics.arrival_rate_target.set(0.0);
}

/// The whole-plan VU target at `t` (before sharding), and when to look again: the stage end
/// for a step, the next tick within a ramp.
fn vu_target(stages: &[VuStage], t: Duration) -> Option<(u64, Duration)> {
    let at = Stage::at(stages, t)?;
    let next = if at.ramping {
        (t + RAMP_TICK).min(at.end)
    } else {
        at.end
    };
    Some((at.value.floor() as u64, next))
}

async fn closed(
    ctx: Arc<ScenarioCtx>,
    shard: Shard,
    stop: Stop,
    t0: Instant,
    stages: &[VuStage],
    grace: Duration,
) {
    let (tx, rx) = watch::channel(0u64);
    let tracker = TaskTracker::new();
    let mut spawned = 0u64;
    while let Some((total, next)) = vu_target(stages, t0.elapsed()) {
        let target = shard.vus(total);
        while spawned < target {
            tracker.spawn(vu_loop(
                ctx.clone(),
                spawned,
                rx.clone(),
                stop.clone(),
                grace,
            ));
            spawned += 1;
        }
        tx.send_if_modified(|v| std::mem::replace(v, target) != target);
        ctx.metrics.vus_target.set(target as i64);
        tokio::select! {
            _ = sleep_until(instant_after(t0, next)) => {}
            _ = stop.drain.cancelled() => break,
        }
    }
    // The plan is over: every VU finishes its iteration, within the grace period.
    let _ = tx.send(0);
    drop(tx);
    tracker.close();
    finish(&tracker, &stop, grace).await;
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

async fn vu_loop(
    ctx: Arc<ScenarioCtx>,
    i: u64,
    mut rx: watch::Receiver<u64>,
    stop: Stop,
    grace: Duration,
) {
    let mut vu = Vu::new(i, &ctx);
    loop {
        // Idle until the schedule includes this VU; a closed channel means the plan ended.
        if rx.wait_for(|t| *t > i).await.is_err() || stop.drain.is_cancelled() {
            return;
        }
        ctx.metrics.vus.inc();
        while *rx.borrow() > i && !stop.drain.is_cancelled() {
            let mut off = rx.clone();
            let removed = async move {
                let _ = off.wait_for(|t| *t <= i).await;
                sleep(grace).await;
            };
            let work = async {
                if !vu.setup_done && !ctx.setup(&mut vu).await {
                    // Setup failed (counted as a failed check). Back off before retrying so a
                    // failing login is not hammered in a tight loop.
                    sleep(SETUP_RETRY).await;
                    return;
                }
                ctx.iteration(&mut vu, None).await;
            };
            tokio::select! {
                _ = work => {}
                _ = removed => {}
                _ = stop.abort.cancelled() => {}
            }
            if stop.abort.is_cancelled() {
                ctx.metrics.vus.dec();
                return;
            }
            let think = ctx.scenario.think_time;
            if !think.is_zero() {
                tokio::select! {
                    _ = sleep(think) => {}
                    _ = stop.drain.cancelled() => {}
                    _ = rx.wait_for(|t| *t <= i) => {}
                }
            }
        }
        ctx.metrics.vus.dec();
    }
}

async fn open(
    ctx: Arc<ScenarioCtx>,
    shard: Shard,
    stop: Stop,
    t0: Instant,
    stages: &[RateStage],
    pre: u64,
    max: u64,
) {
    let pool: Arc<Mutex<Vec<Vu>>> =
        Arc::new(Mutex::new((0..pre).map(|i| Vu::new(i, &ctx)).collect()));
    let mut allocated = pre;
    let tracker = TaskTracker::new();
    // Intended start of the next iteration, as an offset from t0.
    let mut next = Duration::ZERO;
    while let Some(StageAt {
        value: total_rate,
        end: stage_end,
        ..
    }) = Stage::at(stages, next)
    {
        let rate = shard.rate(total_rate);
        ctx.metrics.arrival_rate_target.set(rate);
        if rate <= 0.0 {
            // Nothing to send in this stretch; look again shortly (a ramp may rise).
            next = (next + RAMP_TICK).min(stage_end);
            if next == stage_end {
                next += Duration::from_nanos(1);
            }
            continue;
        }
        let intended = instant_after(t0, next);
        tokio::select! {
            _ = sleep_until(intended) => {}
            _ = stop.drain.cancelled() => break,
        }
        let vu = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let vu = match vu {
            Some(vu) => Some(vu),
            None if allocated < max => {
                allocated += 1;
                Some(Vu::new(allocated - 1, &ctx))
            }
            None => None,
        };
        match vu {
            None => ctx.metrics.dropped.inc(),
            Some(mut vu) => {
                let (ctx, pool, stop) = (ctx.clone(), pool.clone(), stop.clone());
                tracker.spawn(async move {
                    ctx.metrics.vus.inc();
                    let work = async {
                        if !vu.setup_done {
                            vu.setup_done = ctx.setup(&mut vu).await;
                        }
                        ctx.iteration(&mut vu, Some(intended.into_std())).await;
                    };
                    tokio::select! {
                        _ = work => {}
                        _ = stop.abort.cancelled() => {}
                    }
                    ctx.metrics.vus.dec();
                    pool.lock().unwrap_or_else(|e| e.into_inner()).push(vu);
                });
            }
        }
        // A rate near zero would overflow `from_secs_f64` (a panic): wait at most a config MAX.
        next = next.saturating_add(
            Duration::try_from_secs_f64(1.0 / rate).unwrap_or(crate::units::duration::MAX),
        );
    }
    tracker.close();
    finish(&tracker, &stop, Duration::from_secs(30)).await;
}

async fn per_vu(
    ctx: Arc<ScenarioCtx>,
    vus: u64,
    iterations: u64,
    max_duration: Duration,
    stop: Stop,
) {
    let tracker = TaskTracker::new();
    ctx.metrics.vus_target.set(vus as i64);
    for i in 0..vus {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tracker.spawn(async move {
            let mut vu = Vu::new(i, &ctx);
            ctx.metrics.vus.inc();
            let work = async {
                for _ in 0..iterations {
                    if stop.drain.is_cancelled() {
                        break;
                    }
                    // A failed setup uses up the iteration and is retried in the next one.
                    if !vu.setup_done && !ctx.setup(&mut vu).await {
                        sleep(
                            SETUP_RETRY
                                .min(ctx.scenario.think_time.max(Duration::from_millis(100))),
                        )
                        .await;
                        continue;
                    }
                    ctx.iteration(&mut vu, None).await;
                    if !ctx.scenario.think_time.is_zero() {
                        sleep(ctx.scenario.think_time).await;
                    }
                }
            };
            tokio::select! {
                _ = work => {}
                _ = stop.abort.cancelled() => {}
            }
            ctx.metrics.vus.dec();
        });
    }
    tracker.close();
    // max_duration caps the whole scenario, like a grace period that starts now.
    finish(&tracker, &stop, max_duration).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(d: u64, from: u64, to: u64, step: bool) -> VuStage {
        VuStage {
            name: String::new(),
            duration: Duration::from_secs(d),
            from,
            to,
            step,
        }
    }

    #[test]
    fn step_and_ramp_targets() {
        let s = [st(10, 0, 10, true), st(10, 10, 50, true)];
        assert_eq!(vu_target(&s, Duration::ZERO).unwrap().0, 10);
        assert_eq!(vu_target(&s, Duration::from_secs(10)).unwrap().0, 50);
        assert!(vu_target(&s, Duration::from_secs(20)).is_none());
        let r = [st(10, 0, 10, false)];
        assert_eq!(vu_target(&r, Duration::from_secs(5)).unwrap().0, 5);
        assert_eq!(vu_target(&r, Duration::from_millis(9_999)).unwrap().0, 9);
    }
}
