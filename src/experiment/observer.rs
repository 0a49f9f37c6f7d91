//! Stage observer: walks a scenario's stage timeline beside its executor, marks the active
//! stage in the metrics, and after each stage's settle period measures a window: latency from
//! the HDR recorder, counts from the step counters, VUs sampled from the gauge, and CPU and
//! memory from the container snapshots. The result is one [`StageSummary`] per stage.

use crate::load::plan::instant_after;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::watch::{responses_and_connects, ContainerTracker, DownWatch};
use crate::analysis::{
    ContainerEvent, HostCpu, LatencySummary, ResourceSummary, StageSummary, AT_MEMORY_LIMIT,
};
use crate::containers::{host, Snapshot, SnapshotRx};
use crate::load::executor::Stop;
use crate::load::vu::ScenarioCtx;
use crate::metrics::LoadMetrics;

/// How often the VU gauge is sampled for a stage's mean VUs.
const VU_SAMPLE: Duration = Duration::from_millis(200);
/// How long after the last stage a container at its memory limit is still watched (see
/// [`tail_watch`]).
const TAIL_WATCH: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Acc {
    group: String,
    cpu_sum: f64,
    cpu_max: f64,
    mem_sum: f64,
    mem_max: f64,
    cpu_limit: f64,
    mem_limit: f64,
    /// Cumulative throttled seconds at the first and the latest sample of the window.
    throttled_first: Option<f64>,
    throttled_last: f64,
    n: u64,
}

impl Acc {
    fn add(&mut self, cpu: f64, mem: f64, cpu_limit: f64, mem_limit: f64, throttled: f64) {
        self.throttled_first.get_or_insert(throttled);
        self.throttled_last = throttled;
        self.cpu_sum += cpu;
        self.cpu_max = self.cpu_max.max(cpu);
        self.mem_sum += mem;
        self.mem_max = self.mem_max.max(mem);
        self.cpu_limit = cpu_limit;
        self.mem_limit = mem_limit;
        self.n += 1;
    }

    fn summary(&self, name: &str, window_seconds: f64) -> ResourceSummary {
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
            cpu_throttled_ratio: ratio(
                (self.throttled_last - self.throttled_first.unwrap_or(self.throttled_last))
                    .max(0.0),
                window_seconds,
            ),
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
        let mut groups: HashMap<&str, (f64, f64, f64, f64, f64)> = HashMap::new();
        for c in snap.containers.iter().filter(|c| c.up) {
            let mem = c.memory_usage_bytes as f64;
            let acc = self.containers.entry(c.name.clone()).or_default();
            acc.group = c.group.clone();
            acc.add(
                c.cpu_cores,
                mem,
                c.cpu_limit_cores,
                c.memory_limit_bytes as f64,
                c.cpu_throttled_seconds_total,
            );
            let g = groups.entry(&c.group).or_default();
            g.0 += c.cpu_cores;
            g.1 += mem;
            g.2 += c.cpu_limit_cores;
            g.3 += c.memory_limit_bytes as f64;
            g.4 += c.cpu_throttled_seconds_total;
        }
        for (name, (cpu, mem, cl, ml, thr)) in groups {
            let acc = self.groups.entry(name.to_string()).or_default();
            acc.group = name.to_string();
            acc.add(cpu, mem, cl, ml, thr);
        }
    }

    /// Per-container and per-group rows; `window_seconds` turns throttled time into a rate.
    pub fn finish(&self, window_seconds: f64) -> (Vec<ResourceSummary>, Vec<ResourceSummary>) {
        (
            self.containers
                .iter()
                .map(|(n, a)| a.summary(n, window_seconds))
                .collect(),
            self.groups
                .iter()
                .map(|(n, a)| a.summary(n, window_seconds))
                .collect(),
        )
    }
}

/// Record the lifecycle changes `snap` shows, with a WARN line naming container and stage.
fn note_events(
    tracker: &mut ContainerTracker,
    snap: &Snapshot,
    into: &mut Vec<ContainerEvent>,
    stage_start: Instant,
    scenario: &str,
    stage: &str,
) {
    for e in tracker.update(snap, stage_start.elapsed().as_secs_f64()) {
        tracing::warn!(container = %e.container, group = %e.group, scenario, stage,
            at = format!("+{:.1}s", e.at_seconds), memory_limit_bytes = e.memory_limit_bytes,
            "container {}", e.kind);
        into.push(e);
    }
}

/// True when a measured container that is up holds at least [`AT_MEMORY_LIMIT`] of its
/// memory limit.
fn any_at_memory_limit(snap: &Snapshot) -> bool {
    snap.containers.iter().any(|c| {
        c.up && c.memory_limit_bytes > 0
            && c.memory_usage_bytes as f64 >= AT_MEMORY_LIMIT * c.memory_limit_bytes as f64
    })
}

/// After the last stage, while a container is at its memory limit: keep reading snapshots for
/// up to `bound` ([`TAIL_WATCH`]) and put what happens on the last stage (its time past the stage's
/// length). A container at its limit can thrash for seconds (the kernel reclaims its own
/// binary's pages and reads them back, and nothing is answered) before the OOM killer fires;
/// that kill comes from the last stage's load and must not fall between the plan's end and
/// the report. Stops at the first event, when memory falls below the limit, or on a drain.
async fn tail_watch(
    tracker: &mut ContainerTracker,
    containers: &mut SnapshotRx,
    into: &mut Vec<ContainerEvent>,
    stage_start: Instant,
    (scenario, stage): (&str, &str),
    drain: &CancellationToken,
    bound: Duration,
) {
    let deadline = Instant::now() + bound;
    let before = into.len();
    // The load has just ended: events from here on say how long after it they came.
    let ended = stage_start.elapsed().as_secs_f64();
    tracing::info!(
        scenario,
        stage,
        "a container is at its memory limit as the load ends: watching it for up to {} s more",
        bound.as_secs()
    );
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => break,
            _ = drain.cancelled() => break,
            r = containers.changed() => {
                if r.is_err() {
                    break;
                }
                let snap = containers.borrow_and_update().clone();
                note_events(tracker, &snap, into, stage_start, scenario, stage);
                for e in &mut into[before..] {
                    e.after_load_seconds = Some((e.at_seconds - ended).max(0.0));
                }
                if into.len() > before || !any_at_memory_limit(&snap) {
                    break;
                }
            }
        }
    }
}

/// The counters at the start of a stage's window, which its summary subtracts.
struct WindowStart {
    counts0: BTreeMap<String, u64>,
    n0: u64,
    f0: u64,
    dropped0: u64,
    host0: Option<(u64, u64)>,
    w0: Instant,
}

impl WindowStart {
    /// Open the window now: latencies recorded from here on count for the stage.
    fn now(ctx: &ScenarioCtx) -> Self {
        ctx.latency.begin_window();
        let (n0, f0) = ctx.totals();
        Self {
            counts0: ctx.counts(),
            n0,
            f0,
            dropped0: ctx.metrics.dropped.get(),
            host0: host::cpu_times(),
            w0: Instant::now(),
        }
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
    let mut tracker = ContainerTracker::default();
    let mut sampling = true;
    // The baseline: kills and exits before the run are not this run's events.
    tracker.update(&containers.borrow_and_update().clone(), 0.0);
    let stages = ctx.scenario.schedule.stages();
    let last = stages.len().saturating_sub(1);
    for (i, st) in stages.into_iter().enumerate() {
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
        let mut down = DownWatch::default();
        let mut events: Vec<ContainerEvent> = Vec::new();
        // One loop over the whole stage: during the settle period nothing is measured yet, but
        // container events and a dead target count for this stage all along.
        let settle_end = Instant::now() + settle;
        let mut tick = tokio::time::interval(VU_SAMPLE);
        let mut res = ResourceWindow::default();
        let (mut vu_sum, mut vu_n) = (0.0, 0u64);
        let mut start: Option<WindowStart> = None;
        let ended_early = loop {
            let deadline = if start.is_none() {
                settle_end
            } else {
                stage_end
            };
            tokio::select! {
                _ = sleep_until(deadline) => {
                    if start.is_some() {
                        break false;
                    }
                    start = Some(WindowStart::now(&ctx));
                }
                _ = done.cancelled() => break true,
                _ = stop.drain.cancelled() => break true,
                _ = tick.tick() => {
                    // select! picks among ready branches at random: a tick that is ready at
                    // the stage's end would sample the next stage's VUs.
                    if start.is_some() && Instant::now() < stage_end {
                        vu_sum += ctx.metrics.vus.get() as f64;
                        vu_n += 1;
                    }
                    let (r, c) = responses_and_connects(&ctx.counts());
                    down.observe(stage_start.elapsed().as_secs_f64(), r, c);
                }
                r = containers.changed(), if sampling => {
                    if r.is_ok() {
                        let snap = containers.borrow_and_update().clone();
                        if start.is_some() {
                            res.add(&snap);
                        }
                        note_events(&mut tracker, &snap, &mut events, stage_start, &name, &st.name);
                    } else {
                        // No sampler (source = none) or it stopped: measure without it.
                        sampling = false;
                    }
                }
            }
        };
        // Cut short before its window: nothing was measured.
        let Some(WindowStart {
            counts0,
            n0,
            f0,
            dropped0,
            host0,
            w0,
        }) = start
        else {
            break;
        };
        let window = w0.elapsed().as_secs_f64();
        let latency = ctx.latency.end_window();
        let counts1 = ctx.counts();
        let (n1, f1) = ctx.totals();
        let host = host0.zip(host::cpu_times()).and_then(|(a, b)| {
            Some(HostCpu {
                idle_ratio: host::idle_ratio(a, b)?,
                cpus: host::online_cpus(),
            })
        });
        let (r1, c1) = responses_and_connects(&counts1);
        down.observe(stage_start.elapsed().as_secs_f64(), r1, c1);
        let status: BTreeMap<String, u64> = counts1
            .iter()
            .map(|(k, v)| (k.clone(), v - counts0.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let (responses, _) = responses_and_connects(&status);
        let requests = n1 - n0;
        let errors = f1 - f0;
        let (containers_rows, groups) = res.finish(window);
        let per_second = |n: u64| if window > 0.0 { n as f64 / window } else { 0.0 };
        let target_down = down.finish();
        if let Some(d) = &target_down {
            tracing::warn!(scenario = %name, stage = %st.name, from = format!("+{:.1}s", d.from_seconds),
                connect_failures = d.connect_failures,
                "target refused connections in this stage; the stage is left out of the models");
        }
        let mut s = StageSummary {
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
            tps: per_second(requests - errors),
            request_rate: per_second(requests),
            // No response, no latency: an empty histogram would read 0 ms.
            latency: (responses > 0).then_some(latency),
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
            events,
            target_down,
            host,
        };
        let lat = |f: fn(&LatencySummary) -> f64| {
            s.latency
                .as_ref()
                .map_or("–".to_string(), |l| format!("{:.1}", f(l) * 1e3))
        };
        tracing::info!(
            scenario = %name, stage = %s.stage, vus = format!("{:.1}", s.vus), requests = s.requests,
            tps = format!("{:.1}", s.tps), request_rate = format!("{:.1}", s.request_rate),
            avg_ms = lat(|l| l.avg), p95_ms = lat(|l| l.p95), max_ms = lat(|l| l.max),
            error_pct = format!("{:.2}", s.error_ratio * 100.0), status = ?s.status,
            "stage summary"
        );
        // The last stage of the plan, or the last one this executor ran.
        let final_stage = i == last || ended_early;
        if final_stage
            && !stop.drain.is_cancelled()
            && sampling
            && any_at_memory_limit(&containers.borrow())
        {
            tail_watch(
                &mut tracker,
                &mut containers,
                &mut s.events,
                stage_start,
                (&name, &st.name),
                &stop.drain,
                TAIL_WATCH,
            )
            .await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::ContainerEventKind;
    use crate::containers::ContainerSample;

    const LIMIT: u64 = 256 << 20;

    fn snap(up: bool, memory: u64, ooms: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            source_up: true,
            containers: vec![ContainerSample {
                name: "ai-1".into(),
                group: "ai".into(),
                up,
                cpu_usage_seconds_total: 0.0,
                cpu_cores: 0.0,
                cpu_limit_cores: 1.0,
                memory_usage_bytes: memory,
                memory_limit_bytes: if up { LIMIT } else { 0 },
                cpu_throttled_seconds_total: 0.0,
                network_receive_bytes_total: 0,
                network_transmit_bytes_total: 0,
                restarts_total: 0,
                oom_kills_total: ooms,
            }],
            ..Snapshot::default()
        })
    }

    /// A tracker whose baseline is the channel's current snapshot.
    fn seeded(rx: &mut SnapshotRx) -> ContainerTracker {
        let mut tracker = ContainerTracker::default();
        tracker.update(&rx.borrow_and_update().clone(), 0.0);
        tracker
    }

    /// What [`tail_watch`] puts on stage "T4" of scenario "s3", no drain.
    async fn watch(
        tracker: &mut ContainerTracker,
        rx: &mut SnapshotRx,
        stage_start: Instant,
        bound: Duration,
    ) -> Vec<ContainerEvent> {
        let mut events = Vec::new();
        let drain = CancellationToken::new();
        tail_watch(
            tracker,
            rx,
            &mut events,
            stage_start,
            ("s3", "T4"),
            &drain,
            bound,
        )
        .await;
        events
    }

    #[test]
    fn at_the_memory_limit_means_up_and_at_least_nine_tenths_of_it() {
        assert!(any_at_memory_limit(&snap(true, LIMIT, 0)));
        assert!(any_at_memory_limit(&snap(
            true,
            (LIMIT * 9).div_ceil(10),
            0
        )));
        assert!(!any_at_memory_limit(&snap(true, LIMIT * 9 / 10 - 4096, 0)));
        assert!(!any_at_memory_limit(&snap(true, LIMIT / 2, 0)));
        assert!(!any_at_memory_limit(&snap(false, LIMIT, 0)));
    }

    /// The kill of a container that thrashed at its limit past the plan's end lands on the
    /// last stage, at its real time after the stage's start.
    #[tokio::test]
    async fn a_kill_after_the_last_stage_lands_on_it() {
        let (tx, mut rx) = tokio::sync::watch::channel(snap(true, LIMIT, 0));
        let mut tracker = seeded(&mut rx);
        let stage_start = Instant::now() - Duration::from_secs(5);
        tokio::spawn(async move {
            // Still at the limit, nothing answered; then the OOM killer fires.
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(snap(true, LIMIT, 0)).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(snap(false, 0, 1)).unwrap();
            // Held open past the watch, so only the watch's own rules end it.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let events = watch(&mut tracker, &mut rx, stage_start, TAIL_WATCH).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, ContainerEventKind::OomKill);
        // 5 s into the stage when the watch began, the kill 0.3 s later.
        assert!(
            events[0].at_seconds > 5.25 && events[0].at_seconds < 6.5,
            "{}",
            events[0].at_seconds
        );
        assert_eq!(events[0].memory_limit_bytes, LIMIT);
        // And it says that it came after the load had ended, and how long after.
        let after = events[0]
            .after_load_seconds
            .expect("marked as after the load");
        assert!(after > 0.25 && after < 1.5, "{after}");
        let text = events[0].to_string();
        assert!(
            text.contains(&format!("{after:.1} s after the load ended")),
            "{text}"
        );
    }

    /// Memory falling below the limit (the load is gone, the container recovered) ends the
    /// watch at once, with nothing to report; with no news the watch ends at its bound.
    #[tokio::test]
    async fn the_watch_ends_when_memory_falls_or_after_its_bound() {
        let (tx, mut rx) = tokio::sync::watch::channel(snap(true, LIMIT, 0));
        let mut tracker = seeded(&mut rx);
        let t0 = Instant::now();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send(snap(true, LIMIT / 4, 0)).unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            tx
        });
        let events = watch(&mut tracker, &mut rx, t0, TAIL_WATCH).await;
        assert!(events.is_empty());
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

        // Still at the limit and no news: the watch gives up at its bound.
        let (_tx2, mut rx2) = tokio::sync::watch::channel(snap(true, LIMIT, 0));
        rx2.borrow_and_update();
        let t1 = Instant::now();
        let bound = Duration::from_millis(300);
        let events = watch(&mut tracker, &mut rx2, t1, bound).await;
        assert!(events.is_empty());
        let took = t1.elapsed();
        assert!(took >= bound && took < Duration::from_secs(2), "{took:?}");
        sender.abort();
    }
}
