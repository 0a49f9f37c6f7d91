//! per-vu-iterations: each VU runs its `iterations` back to back (plus `think_time`), all
//! within `max_duration` of the scenario start. This shard runs the global VUs it owns
//! (`g mod N`), so per-VU data rows spread over the whole test as in one process.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;
use tokio_util::task::TaskTracker;

use super::{finish, gate, Gate, Stop};
use crate::load::plan::Shard;
use crate::load::vu::{ScenarioCtx, Vu};

pub(super) async fn run(
    ctx: Arc<ScenarioCtx>,
    shard: Shard,
    vus: u64,
    iterations: u64,
    max_duration: Duration,
    stop: Stop,
) {
    let tracker = TaskTracker::new();
    let mine = shard.vus(vus);
    ctx.metrics.vus_target.set(mine as i64);
    for local in 0..mine {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tracker.spawn(async move {
            let mut vu = Vu::new(shard.global(local), &ctx);
            ctx.metrics.vus.inc();
            let work = async {
                for _ in 0..iterations {
                    if stop.drain.is_cancelled() {
                        break;
                    }
                    match gate(&ctx, &mut vu, &stop.drain).await {
                        Gate::Ready => ctx.iteration(&mut vu, None).await,
                        // A failed setup round uses up this iteration.
                        Gate::Skip => continue,
                        Gate::Stop => break,
                    }
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
    use crate::load::plan::Shard;

    #[test]
    fn shards_run_disjoint_global_vus_that_cover_all() {
        for n in 1..=3u64 {
            let mut ids: Vec<u64> = (0..n)
                .flat_map(|i| {
                    let s = Shard { index: i, count: n };
                    (0..s.vus(10)).map(move |l| s.global(l))
                })
                .collect();
            ids.sort();
            assert_eq!(ids, (0..10).collect::<Vec<_>>(), "{n} shards");
        }
    }
}
