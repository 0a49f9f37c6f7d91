//! The progress line: every few seconds, per scenario, the active stage, elapsed/total, VUs,
//! TPS, p95 and error percentage over the last interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::load::vu::ScenarioCtx;

/// Log progress until the returned token is cancelled.
pub fn spawn(
    ctxs: Vec<Arc<ScenarioCtx>>,
    start: Instant,
    total: Duration,
    every: Duration,
) -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        let mut last: Vec<(u64, u64)> = ctxs.iter().map(|c| c.totals()).collect();
        let mut last_t = Instant::now();
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = c.cancelled() => return,
                _ = tick.tick() => {}
            }
            let dt = last_t.elapsed().as_secs_f64().max(1e-9);
            last_t = Instant::now();
            let elapsed = start.elapsed();
            for (ctx, prev) in ctxs.iter().zip(last.iter_mut()) {
                let (n, f) = ctx.totals();
                let (dn, df) = (n - prev.0, f - prev.1);
                *prev = (n, f);
                let lat = ctx.latency.take_progress();
                let offset = elapsed.saturating_sub(ctx.scenario.start);
                let stage = ctx
                    .scenario
                    .schedule
                    .stages()
                    .into_iter()
                    .find(|s| offset < s.start.saturating_add(s.duration))
                    .map(|s| s.name)
                    .unwrap_or_else(|| "ending".into());
                tracing::info!(
                    scenario = %ctx.scenario.name,
                    stage = %stage,
                    elapsed = format!("{:.0}s/{:.0}s", elapsed.as_secs_f64(), total.as_secs_f64()),
                    vus = ctx.metrics.vus.get(),
                    tps = format!("{:.1}", dn as f64 / dt),
                    p95_ms = format!("{:.1}", lat.p95 * 1e3),
                    error_pct = format!("{:.2}", if dn > 0 { df as f64 * 100.0 / dn as f64 } else { 0.0 }),
                    "progress"
                );
            }
        }
    });
    cancel
}
