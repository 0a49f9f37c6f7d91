//! The open model: constant-arrival-rate and ramping-arrival-rate, with k6's schedule.
//!
//! - constant-arrival-rate: global arrival `n` (from 0) starts at `n / rate`, while that is
//!   before the duration (k6 starts the first one at once).
//! - ramping-arrival-rate: arrival `n` starts when the area under the piecewise-linear rate
//!   curve reaches `n + 1` (k6's `cal`), so a ramp from 0, a ramp down to 0, steps and long
//!   stages are all exact; `0 → 10/s` over 20 s is 100 arrivals.
//! - Shards stripe arrivals: shard `i` of `N` runs the global arrivals `n ≡ i (mod N)`.
//!
//! Cheap by design: there is no scheduler task. An idle VU claims the next arrival with one
//! atomic `fetch_add`, sleeps on its own timer until the arrival's instant and runs it; so
//! an arrival costs one timer in the task that runs it, with no hand-over between threads
//! and no pool lock. Idle VUs hold the next arrivals in order, which rotates the pool (the
//! VU idle longest runs next), so load spreads over every VU and its data row, as with k6's
//! FIFO pool. When the last idle VU starts an iteration, one more VU is added (up to
//! `max_vus`), so the next arrival finds one ready. An arrival that came due while every VU
//! was busy (the first VU to free up finds it late) is dropped and counted, as k6 does; at
//! the end, arrivals no VU reached are counted as dropped too. Latency counts from the
//! intended instant (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};
use tokio_util::task::TaskTracker;

use super::{finish, gate, Gate, Stop, OPEN_GRACE};
use crate::load::plan::{instant_after, ExecutorKind, RateStage, Shard, Stage};
use crate::load::vu::{ScenarioCtx, Vu};

/// A claimed arrival later than this when claimed found no idle VU at its instant.
const LATE: Duration = Duration::from_millis(1);

/// How often the rate gauge follows a linear ramp.
const GAUGE_TICK: Duration = Duration::from_millis(100);
/// The pool's `next` once the schedule has ended: a claim at or past it finds no arrival.
/// Far below `u64::MAX` so the claims of every VU still running cannot wrap it.
const CLOSED: u64 = u64::MAX / 2;

/// The arrival instants of one shard.
#[derive(Debug, Clone)]
pub struct Plan {
    stages: Vec<RateStage>,
    /// constant-arrival-rate: the first arrival at 0 and then every `1/rate`.
    constant: bool,
    shard: Shard,
}

impl Plan {
    pub fn new(kind: &ExecutorKind, stages: Vec<RateStage>, shard: Shard) -> Self {
        Self {
            constant: *kind == ExecutorKind::ConstantArrivalRate,
            stages,
            shard,
        }
    }

    /// When global arrival `n` (from 0) starts, from the scenario start; `None` past the end.
    pub fn global_at(&self, n: u64) -> Option<Duration> {
        if self.constant {
            let s = self.stages.first()?;
            let t = n as f64 / s.to;
            return (t < s.duration.as_secs_f64()).then(|| Duration::from_secs_f64(t));
        }
        let i = n.saturating_add(1) as f64;
        let (mut done, mut start) = (0.0f64, 0.0f64);
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let (a, b) = if s.step { (s.to, s.to) } else { (s.from, s.to) };
            let area = d * (a + b) / 2.0;
            // k6 includes an arrival that lands exactly on the stage end.
            if area > 0.0 && i <= done + area + 1e-9 * (done + area) {
                let k = i - done;
                let slope = (b - a) / d;
                // Solve a·x + slope·x²/2 = k in the form without cancellation.
                let x = 2.0 * k / (a + (a * a + 2.0 * slope * k).max(0.0).sqrt());
                return Some(Duration::from_secs_f64(start + x.clamp(0.0, d)));
            }
            done += area;
            start += d;
        }
        None
    }

    /// When this shard's `k`-th arrival starts.
    pub fn local_at(&self, k: u64) -> Option<Duration> {
        self.global_at(self.shard.global(k))
    }

    /// How many of this shard's arrivals start before `limit`.
    pub fn local_count_before(&self, limit: Duration) -> u64 {
        let before = |k: u64| self.local_at(k).is_some_and(|t| t < limit);
        if !before(0) {
            return 0;
        }
        // The arrivals are in order: grow a bound, then bisect.
        let mut hi = 1u64;
        while before(hi) {
            hi = hi.saturating_mul(2);
        }
        let mut lo = hi / 2;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if before(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo + 1
    }
}

/// What the VUs of one open-model scenario share: a few atomics, no lock.
struct Pool {
    ctx: Arc<ScenarioCtx>,
    plan: Plan,
    t0: Instant,
    stop: Stop,
    tracker: TaskTracker,
    /// This shard's next unclaimed arrival.
    next: AtomicU64,
    /// VUs not running an iteration (waiting for their claimed arrival).
    idle: AtomicU64,
    allocated: AtomicU64,
    max: u64,
}

impl Pool {
    /// The next arrival for a VU that just became idle. A late one found no idle VU when it
    /// came due: drop it and take the next (a VU's first claim is never late).
    fn claim(&self, first: bool) -> Option<Instant> {
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            if k >= CLOSED {
                return None;
            }
            let at = instant_after(self.t0, self.plan.local_at(k)?);
            if first || at + LATE >= Instant::now() {
                return Some(at);
            }
            self.ctx.metrics.dropped.inc();
        }
    }

    /// Add one VU, if `max_vus` allows.
    fn grow(self: &Arc<Self>) {
        let got = self
            .allocated
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                (a < self.max).then_some(a + 1)
            });
        if let Ok(local) = got {
            self.idle.fetch_add(1, Ordering::AcqRel);
            self.tracker.spawn(vu_task(self.clone(), local, None));
        }
    }
}

pub(super) async fn run(
    ctx: Arc<ScenarioCtx>,
    plan: Plan,
    stop: Stop,
    t0: Instant,
    pre: u64,
    max: u64,
) {
    let pool = Arc::new(Pool {
        ctx: ctx.clone(),
        plan,
        t0,
        stop: stop.clone(),
        tracker: TaskTracker::new(),
        next: AtomicU64::new(pre),
        idle: AtomicU64::new(pre),
        allocated: AtomicU64::new(pre),
        max,
    });
    // The preallocated VUs hold the first arrivals, in order.
    for local in 0..pre {
        let first = pool.plan.local_at(local).map(|o| instant_after(t0, o));
        pool.tracker
            .spawn(vu_task(pool.clone(), local, Some(first)));
    }
    // Follow the rate for the gauge until the schedule ends (a few wake-ups per second).
    let shards = pool.plan.shard.count as f64;
    let total: Duration = pool.plan.stages.iter().map(|s| s.duration).sum();
    let mut drained = false;
    while let Some(at) = Stage::at(&pool.plan.stages, t0.elapsed()) {
        ctx.metrics.arrival_rate_target.set(at.value / shards);
        let next = if at.ramping {
            (t0.elapsed() + GAUGE_TICK).min(at.end)
        } else {
            at.end
        };
        tokio::select! {
            _ = sleep_until(instant_after(t0, next)) => {}
            _ = stop.drain.cancelled() => { drained = true; break }
        }
    }
    // Arrivals that came due but no VU reached were dropped: every VU was busy.
    let end = if drained {
        t0.elapsed().min(total)
    } else {
        total
    };
    let due = pool.plan.local_count_before(end);
    let claimed = pool.next.swap(CLOSED, Ordering::AcqRel);
    if !drained && due > claimed {
        ctx.metrics.dropped.inc_by(due - claimed);
    }
    pool.tracker.close();
    finish(&pool.tracker, &stop, OPEN_GRACE).await;
}

/// One VU of the pool: claim an arrival, wait for its instant, run it, and again.
/// `first`: the arrival given at start (`Some(None)`: the schedule has none for it).
async fn vu_task(pool: Arc<Pool>, local: u64, first: Option<Option<Instant>>) {
    let ctx = &pool.ctx;
    let mut vu = Vu::new(pool.plan.shard.global(local), ctx);
    let mut claimed = first;
    loop {
        let intended = match claimed.take() {
            Some(at) => at,
            None => pool.claim(vu.iterations == 0 && !vu.setup_failed),
        };
        let Some(intended) = intended else { break };
        tokio::select! {
            _ = sleep_until(intended) => {}
            _ = pool.stop.drain.cancelled() => break,
        }
        if pool.idle.fetch_sub(1, Ordering::AcqRel) == 1 {
            pool.grow();
        }
        ctx.metrics.vus.inc();
        let work = async {
            match gate(ctx, &mut vu, &pool.stop.drain).await {
                Gate::Ready => {
                    ctx.iteration(&mut vu, Some(intended.into_std())).await;
                    Gate::Ready
                }
                other => other,
            }
        };
        let g = tokio::select! {
            g = work => g,
            _ = pool.stop.abort.cancelled() => Gate::Stop,
        };
        ctx.metrics.vus.dec();
        if g == Gate::Stop {
            return;
        }
        pool.idle.fetch_add(1, Ordering::AcqRel);
    }
    pool.idle.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(secs: f64, from: f64, to: f64, step: bool) -> RateStage {
        RateStage {
            name: String::new(),
            duration: Duration::from_secs_f64(secs),
            from,
            to,
            step,
        }
    }

    fn ramping(stages: Vec<RateStage>, shard: Shard) -> Plan {
        Plan::new(&ExecutorKind::RampingArrivalRate, stages, shard)
    }

    fn all(p: &Plan) -> Vec<Duration> {
        (0..).map_while(|k| p.local_at(k)).collect()
    }

    #[test]
    fn indexes_past_the_end_find_no_arrival_on_any_shard() {
        // A VU that claims after the schedule closed gets `CLOSED` or more; striping it
        // (k·N + i) once overflowed: a panic in debug builds, and in release a wrapped index
        // back inside the schedule, counted as a dropped iteration, over and over.
        for count in 1..=3 {
            for index in 0..count {
                let shard = Shard { index, count };
                for stages in [
                    vec![st(2.0, 40.0, 40.0, false)],
                    vec![st(1.0, 0.0, 40.0, false), st(1.0, 40.0, 0.0, false)],
                ] {
                    let constant =
                        Plan::new(&ExecutorKind::ConstantArrivalRate, stages.clone(), shard);
                    for p in [constant, ramping(stages, shard)] {
                        for k in [CLOSED, CLOSED + 1, CLOSED + 7, u64::MAX] {
                            assert_eq!(p.local_at(k), None, "shard {index}/{count}, k {k}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ramp_from_zero_sends_the_area_under_the_curve() {
        // The reproduction: 0 -> 10/s over 20 s is 100 arrivals, not 1.
        let p = ramping(vec![st(20.0, 0.0, 10.0, false)], Shard::default());
        let a = all(&p);
        assert_eq!(a.len(), 100);
        // Arrival n+1 is due when 10·t²/40 = n+1: t = 2·sqrt(n+1).
        for (n, t) in a.iter().enumerate() {
            let want = 2.0 * ((n + 1) as f64).sqrt();
            assert!((t.as_secs_f64() - want).abs() < 1e-6, "{n}: {t:?}");
        }
        assert_eq!(a[99], Duration::from_secs(20));
    }

    #[test]
    fn ramp_down_to_zero_and_steps() {
        let p = ramping(
            vec![st(10.0, 10.0, 0.0, false), st(2.0, 0.0, 5.0, true)],
            Shard::default(),
        );
        let a = all(&p);
        // 50 in the ramp down, then 10 in the 5/s step.
        assert_eq!(a.len(), 60);
        assert!(a[49] <= Duration::from_secs(10) && a[50] > Duration::from_secs(10));
        assert!((a[50].as_secs_f64() - 10.2).abs() < 1e-9);
    }

    #[test]
    fn long_stages_stay_exact() {
        // 1/s for a day: arrival n at n+1 s, the last exactly at the end.
        let p = ramping(vec![st(86_400.0, 1.0, 1.0, false)], Shard::default());
        assert_eq!(p.local_count_before(Duration::from_secs(86_401)), 86_400);
        assert_eq!(p.local_at(86_399), Some(Duration::from_secs(86_400)));
        assert_eq!(p.local_at(86_400), None);
    }

    #[test]
    fn constant_rate_starts_at_zero() {
        let p = Plan::new(
            &ExecutorKind::ConstantArrivalRate,
            vec![st(2.0, 50.0, 50.0, true)],
            Shard::default(),
        );
        let a = all(&p);
        assert_eq!(a.len(), 100);
        assert_eq!(a[0], Duration::ZERO);
        assert!((a[1].as_secs_f64() - 0.02).abs() < 1e-12);
    }

    #[test]
    fn shards_stripe_the_single_process_schedule() {
        let stages = vec![st(3.0, 0.0, 20.0, false), st(1.0, 20.0, 20.0, false)];
        let one = all(&ramping(stages.clone(), Shard::default()));
        for n in 1..=3u64 {
            let mut merged: Vec<Duration> = (0..n)
                .flat_map(|i| all(&ramping(stages.clone(), Shard { index: i, count: n })))
                .collect();
            merged.sort();
            assert_eq!(merged, one, "{n} shards");
        }
    }

    #[test]
    fn count_before_matches_the_list() {
        let p = ramping(vec![st(5.0, 0.0, 7.0, false)], Shard { index: 1, count: 2 });
        let a = all(&p);
        for ms in [0u64, 1, 500, 1_999, 2_000, 4_999, 5_000, 9_000] {
            let lim = Duration::from_millis(ms);
            let want = a.iter().filter(|t| **t < lim).count() as u64;
            assert_eq!(p.local_count_before(lim), want, "{ms} ms");
        }
    }
}
