//! Latency recording and its summary, shared by the load engine (per scenario, for stage
//! summaries and progress lines) and the demo target (its handling time). Percentiles come
//! from HDR histograms, not from Prometheus buckets. A leaf: it imports nothing of the crate.
//!
//! Requests record into one of several shards, chosen by the worker thread, each behind its
//! own mutex: two threads rarely touch the same shard, so recording never serializes the
//! request loop on one lock. Readers `drain()` the shards and merge into the windows they
//! keep (the stage window, the progress interval and the whole run).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency figures for one stage, in seconds, from an HDR histogram (not Prometheus buckets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Highest latency tracked, in microseconds (one hour); larger values are clamped.
const MAX_US: u64 = 3_600_000_000;

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static HDR bounds are valid")
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

struct Windows {
    window: Option<Histogram<u64>>,
    progress: Histogram<u64>,
    total: Histogram<u64>,
}

pub struct LatencyRecorder {
    shards: Vec<Mutex<Histogram<u64>>>,
    windows: Mutex<Windows>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2)
            * 2;
        Self {
            shards: (0..n).map(|_| Mutex::new(new_hist())).collect(),
            windows: Mutex::new(Windows {
                window: None,
                progress: new_hist(),
                total: new_hist(),
            }),
        }
    }

    /// Record one latency. Called once per response on the hot path.
    pub fn record(&self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_US);
        let i = SHARD.with(|s| *s) % self.shards.len();
        let mut h = self.shards[i].lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(us);
    }

    /// Move what the shards hold into the windows.
    fn drain(&self, w: &mut Windows) {
        for s in &self.shards {
            let mut h = s.lock().unwrap_or_else(|e| e.into_inner());
            if h.is_empty() {
                continue;
            }
            if let Some(win) = w.window.as_mut() {
                let _ = win.add(&*h);
            }
            let _ = w.progress.add(&*h);
            let _ = w.total.add(&*h);
            h.reset();
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Windows) -> T) -> T {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        self.drain(&mut w);
        f(&mut w)
    }

    /// Start a stage window: latencies recorded from now on count for it.
    pub fn begin_window(&self) {
        self.with(|w| w.window = Some(new_hist()));
    }

    /// End the stage window and summarize it.
    pub fn end_window(&self) -> LatencySummary {
        self.with(|w| summarize(&w.window.take().unwrap_or_else(new_hist)))
    }

    /// Summary of what arrived since the last call (for progress lines).
    pub fn take_progress(&self) -> LatencySummary {
        self.with(|w| {
            let s = summarize(&w.progress);
            w.progress.reset();
            s
        })
    }

    /// Summary of the whole run so far.
    pub fn total(&self) -> LatencySummary {
        self.with(|w| summarize(&w.total))
    }

    /// Forget everything (a repeated plan starts clean).
    pub fn reset(&self) {
        self.with(|w| {
            w.window = None;
            w.progress.reset();
            w.total.reset();
        });
    }
}

/// Seconds from microsecond HDR values; an empty histogram gives zeros.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let s = |us: u64| us as f64 / 1e6;
    LatencySummary {
        avg: h.mean() / 1e6,
        p50: s(h.value_at_quantile(0.50)),
        p95: s(h.value_at_quantile(0.95)),
        p99: s(h.value_at_quantile(0.99)),
        max: s(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_see_only_their_records() {
        let r = LatencyRecorder::new();
        r.record(Duration::from_millis(500));
        r.begin_window();
        for ms in 1..=100 {
            r.record(Duration::from_millis(ms));
        }
        let w = r.end_window();
        assert!((w.p50 - 0.050).abs() < 0.001, "{w:?}");
        assert!((w.p95 - 0.095).abs() < 0.001, "{w:?}");
        assert!((w.max - 0.100).abs() < 0.001, "{w:?}");
        let t = r.total();
        assert!((t.max - 0.5).abs() < 0.001, "{t:?}");
        let p = r.take_progress();
        assert!((p.max - 0.5).abs() < 0.001);
        assert_eq!(r.take_progress(), LatencySummary::default());
    }
}
