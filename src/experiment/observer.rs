//! Stage observer: walks a scenario's stage timeline beside its executor, marks the active
//! stage in the metrics, and after each stage's settle period measures a window: latency from
//! the HDR recorder, counts from the step counters, VUs sampled from the gauge, and CPU and
//! memory from the container snapshots. The result is one [`StageSummary`] per stage.

use crate::load::plan::instant_after;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::analysis::{ResourceSummary, StageSummary};
use crate::containers::{Snapshot, SnapshotRx};
use crate::load::executor::Stop;
use crate::load::vu::ScenarioCtx;
use crate::metrics::LoadMetrics;

/// How often the VU gauge is sampled for a stage's mean VUs.
const VU_SAMPLE: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Acc {
    group: String,
    cpu_sum: f64,
    cpu_max: f64,
    mem_sum: f64,
    mem_max: f64,
    cpu_limit: f64,
    mem_limit: f64,
    n: u64,
}

impl Acc {
    fn add(&mut self, cpu: f64, mem: f64, cpu_limit: f64, mem_limit: f64) {
        self.cpu_sum += cpu;
        self.cpu_max = self.cpu_max.max(cpu);
        self.mem_sum += mem;
        self.mem_max = self.mem_max.max(mem);
        self.cpu_limit = cpu_limit;
        self.mem_limit = mem_limit;
        self.n += 1;
    }

    fn summary(&self, name: &str) -> ResourceSummary {
        let n = self.n.max(1) as f64;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        ResourceSummary {
            name: name.to_string(),
            group: self.group.clone(),
            cpu_cores_avg: self.cpu_sum / n,
            cpu_cores_max: self.cpu_max,
            cpu_limit_cores: self.cpu_limit,
            cpu_utilization: ratio(self.cpu_sum / n, self.cpu_limit),
            memory_bytes_avg: self.mem_sum / n,
            memory_bytes_max: self.mem_max,
            memory_limit_bytes: self.mem_limit,
            memory_utilization: ratio(self.mem_sum / n, self.mem_limit),
            samples: self.n,
        }
    }
}

/// Per-container and per-group accumulation over a window.
#[derive(Default)]
pub struct ResourceWindow {
    containers: BTreeMap<String, Acc>,
    groups: BTreeMap<String, Acc>,
}

impl ResourceWindow {
    pub fn add(&mut self, snap: &Snapshot) {
        let mut groups: HashMap<&str, (f64, f64, f64, f64)> = HashMap::new();
        for c in snap.containers.iter().filter(|c| c.up) {
            let mem = c.memory_usage_bytes as f64;
            let acc = self.containers.entry(c.name.clone()).or_default();
            acc.group = c.group.clone();
            acc.add(
                c.cpu_cores,
                mem,
                c.cpu_limit_cores,
                c.memory_limit_bytes as f64,
            );
            let g = groups.entry(&c.group).or_default();
            g.0 += c.cpu_cores;
            g.1 += mem;
            g.2 += c.cpu_limit_cores;
            g.3 += c.memory_limit_bytes as f64;
        }
        for (name, (cpu, mem, cl, ml)) in groups {
            let acc = self.groups.entry(name.to_string()).or_default();
            acc.group = name.to_string();
            acc.add(cpu, mem, cl, ml);
        }
    }

    pub fn finish(&self) -> (Vec<ResourceSummary>, Vec<ResourceSummary>) {
        (
            self.containers.iter().map(|(n, a)| a.summary(n)).collect(),
            self.groups.iter().map(|(n, a)| a.summary(n)).collect(),
        )
    }
}

/// What an observer watches.
pub struct Watched {
    pub ctx: Arc<ScenarioCtx>,
    pub metrics: Arc<LoadMetrics>,
    pub containers: SnapshotRx,
    /// The scenario's start.
    pub t0: Instant,
    pub settle: Duration,
}

/// Observe one scenario until its stages are over, `done` fires (the executor ended) or the
/// run drains. Summaries are passed to `emit` as each stage ends.
pub async fn observe(
    w: Watched,
    done: CancellationToken,
    stop: Stop,
    mut emit: impl FnMut(StageSummary),
) {
    let Watched {
        ctx,
        metrics,
        mut containers,
        t0,
        settle,
    } = w;
    let name = ctx.scenario.name.clone();
    for st in ctx.scenario.schedule.stages() {
        let stage_start = instant_after(t0, st.start);
        let stage_end = instant_after(stage_start, st.duration);
        tokio::select! {
            _ = sleep_until(stage_start) => {}
            _ = done.cancelled() => break,
            _ = stop.drain.cancelled() => break,
        }
        if Instant::now() >= stage_end {
            // A shard that joined late (`--start-at` in the past) skips the stages already over
            // instead of reporting empty windows for them.
            continue;
        }
        metrics.set_stage(&name, Some(&st.name));
        metrics
            .stage_index
            .with_label_values(&[&name])
            .set(st.index as i64);
        tracing::info!(scenario = %name, stage = %st.name, vus = st.vus, rate = ?st.rate,
            duration = %humantime::format_duration(st.duration), "stage started");
        let settle = settle.min(st.duration / 2);
        tokio::select! {
            _ = sleep(settle) => {}
            _ = done.cancelled() => {}
            _ = stop.drain.cancelled() => break,
        }
        // The window.
        ctx.latency.begin_window();
        let counts0 = ctx.counts();
        let (n0, f0) = ctx.totals();
        let dropped0 = ctx.metrics.dropped.get();
        let w0 = Instant::now();
        let mut res = ResourceWindow::default();
        containers.borrow_and_update();
        let (mut vu_sum, mut vu_n) = (0.0, 0u64);
        let mut tick = tokio::time::interval(VU_SAMPLE);
        let mut sampling = true;
        let ended_early = loop {
            tokio::select! {
                _ = sleep_until(stage_end) => break false,
                _ = done.cancelled() => break true,
                _ = stop.drain.cancelled() => break true,
                _ = tick.tick() => {
                    vu_sum += ctx.metrics.vus.get() as f64;
                    vu_n += 1;
                }
                r = containers.changed(), if sampling => {
                    if r.is_ok() {
                        let snap = containers.borrow_and_update().clone();
                        res.add(&snap);
                    } else {
                        // No sampler (source = none) or it stopped: measure without it.
                        sampling = false;
                    }
                }
            }
        };
        let window = w0.elapsed().as_secs_f64();
        let latency = ctx.latency.end_window();
        let counts1 = ctx.counts();
        let (n1, f1) = ctx.totals();
        let status: BTreeMap<String, u64> = counts1
            .iter()
            .map(|(k, v)| (k.clone(), v - counts0.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let requests = n1 - n0;
        let errors = f1 - f0;
        let (containers_rows, groups) = res.finish();
        let s = StageSummary {
            scenario: name.clone(),
            stage_index: st.index,
            stage: st.name.clone(),
            vus: if vu_n > 0 {
                vu_sum / vu_n as f64
            } else {
                ctx.metrics.vus.get() as f64
            },
            target_rate: st.rate,
            window_seconds: window,
            requests,
            tps: if window > 0.0 {
                requests as f64 / window
            } else {
                0.0
            },
            latency,
            errors,
            error_ratio: if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            },
            status,
            dropped_iterations: ctx.metrics.dropped.get() - dropped0,
            containers: containers_rows,
            groups,
        };
        tracing::info!(
            scenario = %name, stage = %s.stage, vus = format!("{:.1}", s.vus), requests = s.requests,
            tps = format!("{:.1}", s.tps), avg_ms = format!("{:.1}", s.latency.avg * 1e3),
            p95_ms = format!("{:.1}", s.latency.p95 * 1e3), max_ms = format!("{:.1}", s.latency.max * 1e3),
            error_pct = format!("{:.2}", s.error_ratio * 100.0), status = ?s.status,
            "stage summary"
        );
        // A stage cut short (drain, early end) still reports what it measured, if anything.
        if !(ended_early && s.requests == 0) {
            emit(s);
        }
        if ended_early {
            break;
        }
    }
    // No stage runs any more: the stage series go, so a query over Prometheus (`loadspec
    // analyze`) sees where the last stage ended instead of an idle tail, and a sweep's next
    // run sets its own.
    metrics.set_stage(&name, None);
    let _ = metrics.stage_index.remove_label_values(&[&name]);
}
