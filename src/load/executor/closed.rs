//! The closed model: constant-vus and ramping-vus, with k6's ramping-vus semantics.
//!
//! The global VU count follows the stages: a step stage jumps to its target at its start;
//! within a linear ramp from `a` to `b` over `d` the count is `floor(a + (b−a)·t/d)` going
//! up and `ceil(…)` going down, so VU `g` starts when the line reaches `g + 1` and stops when
//! it falls to `g` (k6 `getRawExecutionSteps`). The controller sleeps until the next exact
//! change (no polling tick). VU `g` runs iterations back to back (plus `think_time`) while
//! the count is above `g`; this shard spawns only the VUs it owns (`g mod N`). A VU removed
//! by a ramp-down finishes its iteration, cut off after `graceful_ramp_down`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::task::TaskTracker;

use super::{finish, gate, Gate, Stop};
use crate::load::plan::{instant_after, Shard, VuStage};
use crate::load::vu::{ScenarioCtx, Vu};

/// The global VU count at `t` from the scenario start, and when it next changes (`None`
/// when it stays until the end); `None` once the stages are over.
pub fn vus_at(stages: &[VuStage], t: Duration) -> Option<(u64, Option<Duration>)> {
    let mut start = Duration::ZERO;
    for s in stages {
        let end = start + s.duration;
        if t < end {
            let next_stage = Some(end);
            if s.step || s.from == s.to {
                return Some((s.to, next_stage));
            }
            // Exact integer arithmetic in nanoseconds: long stages stay exact.
            let d = s.duration.as_nanos();
            let e = (t - start).as_nanos();
            let (diff, up) = if s.to > s.from {
                ((s.to - s.from) as u128, true)
            } else {
                ((s.from - s.to) as u128, false)
            };
            // Whole VUs the line has moved so far, and when it moves one more.
            let k = e * diff / d;
            let count = if up {
                s.from + k as u64
            } else {
                s.from - k as u64
            };
            let next = ((k + 1) * d).div_ceil(diff);
            let next = if next >= d {
                next_stage
            } else {
                Some(start + Duration::from_nanos(next as u64))
            };
            return Some((count, next));
        }
        start = end;
    }
    None
}

pub(super) async fn run(
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
    while let Some((total, next)) = vus_at(stages, t0.elapsed()) {
        let mine = shard.vus(total);
        while spawned < mine {
            let g = shard.global(spawned);
            tracker.spawn(vu_loop(ctx.clone(), g, rx.clone(), stop.clone(), grace));
            spawned += 1;
        }
        tx.send_if_modified(|v| std::mem::replace(v, total) != total);
        ctx.metrics.vus_target.set(mine as i64);
        let Some(next) = next else { break };
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

/// Global VU `g`: idle until the count exceeds `g`, then iterations until it falls to `g`.
async fn vu_loop(
    ctx: Arc<ScenarioCtx>,
    g: u64,
    mut rx: watch::Receiver<u64>,
    stop: Stop,
    grace: Duration,
) {
    let mut vu = Vu::new(g, &ctx);
    loop {
        // Idle until the schedule includes this VU; a closed channel means the plan ended.
        if rx.wait_for(|t| *t > g).await.is_err() || stop.drain.is_cancelled() {
            return;
        }
        ctx.metrics.vus.inc();
        let mut stopped = false;
        while *rx.borrow() > g && !stop.drain.is_cancelled() {
            let mut off = rx.clone();
            let removed = async move {
                let _ = off.wait_for(|t| *t <= g).await;
                sleep(grace).await;
            };
            let work = async {
                match gate(&ctx, &mut vu, &stop.drain).await {
                    Gate::Ready => ctx.iteration(&mut vu, None).await,
                    Gate::Skip => {}
                    Gate::Stop => return true,
                }
                false
            };
            tokio::select! {
                s = work => stopped = s,
                _ = removed => {}
                _ = stop.abort.cancelled() => {}
            }
            if stop.abort.is_cancelled() || stopped {
                break;
            }
            let think = ctx.scenario.think_time;
            if !think.is_zero() {
                tokio::select! {
                    _ = sleep(think) => {}
                    _ = stop.drain.cancelled() => {}
                    _ = rx.wait_for(|t| *t <= g) => {}
                }
            }
        }
        ctx.metrics.vus.dec();
        if stop.abort.is_cancelled() || stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(ms: u64, from: u64, to: u64, step: bool) -> VuStage {
        VuStage {
            name: String::new(),
            duration: Duration::from_millis(ms),
            from,
            to,
            step,
        }
    }

    const SEC: u64 = 1_000_000_000;

    /// Every (instant in ns, count) change of the schedule, walking `vus_at` from 0.
    fn changes(stages: &[VuStage]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut t = Duration::ZERO;
        while let Some((n, next)) = vus_at(stages, t) {
            if out.last().map(|l: &(u64, u64)| l.1) != Some(n) {
                out.push((t.as_nanos() as u64, n));
            }
            match next {
                Some(nx) => t = nx,
                None => break,
            }
        }
        out
    }

    #[test]
    fn steps_jump_at_stage_starts() {
        let s = [st(10_000, 0, 10, true), st(10_000, 10, 50, true)];
        assert_eq!(changes(&s), vec![(0, 10), (10 * SEC, 50)]);
        assert!(vus_at(&s, Duration::from_secs(20)).is_none());
    }

    #[test]
    fn ramp_up_starts_vu_g_when_the_line_reaches_g_plus_1() {
        // 0 -> 4 over 4 s: VU 0 at 1 s, VU 1 at 2 s, ... (k6: floor going up).
        let s = [st(4_000, 0, 4, false), st(1_000, 4, 4, false)];
        assert_eq!(
            changes(&s),
            vec![(0, 0), (SEC, 1), (2 * SEC, 2), (3 * SEC, 3), (4 * SEC, 4)]
        );
        assert_eq!(vus_at(&s, Duration::from_millis(999)).unwrap().0, 0);
    }

    #[test]
    fn ramp_down_stops_vu_g_when_the_line_falls_to_g() {
        // 4 -> 0 over 4 s: ceil going down, the last VU stops at the end.
        let s = [st(4_000, 4, 0, false)];
        assert_eq!(
            changes(&s),
            vec![(0, 4), (SEC, 3), (2 * SEC, 2), (3 * SEC, 1)]
        );
        assert_eq!(vus_at(&s, Duration::from_millis(3_999)).unwrap().0, 1);
    }

    #[test]
    fn long_uneven_ramps_stay_exact() {
        // 0 -> 7 over 3 h: the change to 7 lands exactly at the stage end.
        let s = [st(3 * 3_600_000, 0, 7, false)];
        let c = changes(&s);
        assert_eq!(c.len(), 7);
        for (k, (at, n)) in c.iter().enumerate() {
            assert_eq!(*n, k as u64);
            assert_eq!(*at, (3 * 3_600 * SEC * k as u64).div_ceil(7));
        }
    }
}
