//! Progress while a plan runs, per scenario: the active stage, elapsed/total, VUs (or the
//! arrival rate and dropped iterations), TPS, p95 and error percentage over the last interval.
//!
//! At a terminal ([`Display::Bars`]) each scenario gets a live `indicatif` bar redrawn every
//! second; log lines go through [`crate::logging::LogWriter`] so they print above the bars instead of through
//! them. Elsewhere ([`Display::Lines`]) a `progress` log line is written every
//! `log.progress_interval`. `--quiet` turns both off.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::raw::ExecutorKind;
use crate::load::vu::ScenarioCtx;
use crate::logging::terminal;

/// How progress is shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Display {
    /// `progress` log lines (stderr is not a terminal).
    #[default]
    Lines,
    /// Live bars on stderr (a terminal); `color` paints the bar.
    Bars { color: bool },
    /// Nothing (`--quiet`).
    Off,
}

/// How often the bars are redrawn with new figures.
const BAR_EVERY: Duration = Duration::from_secs(1);

/// One scenario's figures over the last interval.
struct Sample {
    stage: String,
    elapsed: Duration,
    total: Duration,
    vus: i64,
    /// Open model: (target rate per second, dropped iterations so far).
    arrival: Option<(f64, u64)>,
    /// Successful responses per second.
    tps: f64,
    /// Completed requests per second, failures included.
    request_rate: f64,
    /// None while nothing answered.
    p95_ms: Option<f64>,
    error_pct: f64,
}

impl Sample {
    /// The bar's message: `12s/30s · T2 · 3 VUs · 48.2 TPS · p95 12.3 ms · 0.00 % errors`.
    fn message(&self) -> String {
        let load = match self.arrival {
            Some((rate, dropped)) => {
                format!("rate {rate:.1}/s · {dropped} dropped · {} VUs", self.vus)
            }
            None => format!("{} VUs", self.vus),
        };
        let p95 = self.p95_ms.map_or("–".into(), |p| format!("{p:.1} ms"));
        format!(
            "{:.0}s/{:.0}s · {} · {load} · {:.1} TPS · p95 {p95} · {:.2} % errors",
            self.elapsed.as_secs_f64(),
            self.total.as_secs_f64(),
            self.stage,
            self.tps,
            self.error_pct
        )
    }
}

/// Per-scenario state between ticks.
struct Tracker {
    ctx: Arc<ScenarioCtx>,
    last: (u64, u64),
    /// Dropped iterations before this plan started (the counter spans repeated runs).
    dropped_before: u64,
    bar: Option<ProgressBar>,
}

impl Tracker {
    fn sample(&mut self, elapsed: Duration, total: Duration, dt: f64) -> Sample {
        let ctx = &self.ctx;
        let (n, f) = ctx.totals();
        let (dn, df) = (n - self.last.0, f - self.last.1);
        self.last = (n, f);
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
        let open = matches!(
            ctx.scenario.executor,
            ExecutorKind::ConstantArrivalRate | ExecutorKind::RampingArrivalRate
        );
        Sample {
            stage,
            elapsed,
            total,
            vus: ctx.metrics.vus.get(),
            arrival: open.then(|| {
                (
                    ctx.metrics.arrival_rate_target.get(),
                    ctx.metrics.dropped.get() - self.dropped_before,
                )
            }),
            // Successes per second, as in the stage summaries; failures only in the rate.
            tps: (dn - df) as f64 / dt,
            request_rate: dn as f64 / dt,
            // Every recorded latency is at least 1 µs: a max of 0 means no response.
            p95_ms: (lat.max > 0.0).then_some(lat.p95 * 1e3),
            error_pct: if dn > 0 {
                df as f64 * 100.0 / dn as f64
            } else {
                0.0
            },
        }
    }
}

fn bar(name: &str, width: usize, total: Duration, color: bool) -> ProgressBar {
    let template = if color {
        "{prefix:.bold} [{bar:24.cyan/blue}] {msg}"
    } else {
        "{prefix} [{bar:24}] {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let b = terminal().add(ProgressBar::new(total.as_millis().max(1) as u64));
    b.set_style(style);
    b.set_prefix(format!("{name:<width$}"));
    b
}

/// The running progress display; [`Progress::stop`] ends it.
pub struct Progress {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Stop and wait until the bars are off the terminal, so what is printed next (the
    /// summary) cannot be drawn over by a last redraw.
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Some(t) = self.task {
            let _ = t.await;
        }
    }
}

/// The final state of a bar as a plain line, left on screen when the bar goes (as k6 leaves
/// its bars): `closed [========================] 8s/8s · …`.
fn final_line(b: &ProgressBar, width: usize) -> String {
    let len = b.length().unwrap_or(1).max(1);
    let filled = ((b.position().min(len) * 24) / len) as usize;
    format!(
        "{:<width$} [{}{}] {}",
        b.prefix().trim_end(),
        "=".repeat(filled),
        " ".repeat(24 - filled),
        b.message()
    )
}

/// Show progress until [`Progress::stop`].
pub fn spawn(
    ctxs: Vec<Arc<ScenarioCtx>>,
    start: Instant,
    total: Duration,
    every: Duration,
    display: Display,
) -> Progress {
    let cancel = CancellationToken::new();
    let every = match display {
        Display::Off => return Progress { cancel, task: None },
        Display::Lines => every,
        Display::Bars { .. } => BAR_EVERY,
    };
    let width = ctxs
        .iter()
        .map(|c| c.scenario.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut trackers: Vec<Tracker> = ctxs
        .into_iter()
        .map(|ctx| Tracker {
            last: ctx.totals(),
            dropped_before: ctx.metrics.dropped.get(),
            bar: match display {
                Display::Bars { color } => Some(bar(&ctx.scenario.name, width, total, color)),
                _ => None,
            },
            ctx,
        })
        .collect();
    let bars = matches!(display, Display::Bars { .. });
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        let mut last_t = Instant::now();
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            // One more update after the stop, so the bars end on the run's final figures.
            let stopping = tokio::select! {
                _ = c.cancelled() => true,
                _ = tick.tick() => false,
            };
            if stopping && !bars {
                break;
            }
            let dt = last_t.elapsed().as_secs_f64().max(1e-9);
            last_t = Instant::now();
            let elapsed = start.elapsed();
            for t in &mut trackers {
                let s = t.sample(elapsed, total, dt);
                match &t.bar {
                    Some(b) => {
                        b.set_position((elapsed.as_millis() as u64).min(b.length().unwrap_or(0)));
                        b.set_message(s.message());
                    }
                    None => tracing::info!(
                        scenario = %t.ctx.scenario.name,
                        stage = %s.stage,
                        elapsed = format!("{:.0}s/{:.0}s", elapsed.as_secs_f64(), total.as_secs_f64()),
                        vus = s.vus,
                        tps = format!("{:.1}", s.tps),
                        request_rate = format!("{:.1}", s.request_rate),
                        p95_ms = s.p95_ms.map_or("–".into(), |p| format!("{p:.1}")),
                        error_pct = format!("{:.2}", s.error_pct),
                        "progress"
                    ),
                }
            }
            if stopping {
                break;
            }
        }
        for b in trackers.iter().filter_map(|t| t.bar.as_ref()) {
            let line = final_line(b, width);
            b.finish_and_clear();
            terminal().remove(b);
            let _ = terminal().println(line);
        }
    });
    Progress {
        cancel,
        task: Some(task),
    }
}
