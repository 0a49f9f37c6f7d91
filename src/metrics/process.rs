//! The load generator's own CPU time, with sub-second resolution.
//!
//! The prometheus crate's process collector exports `process_cpu_seconds_total` as an integer
//! counter (whole seconds, from the clock ticks of `/proc/self/stat` rounded down), so a 30 s
//! rate of it moves in steps of 1/30 core and reads 0 for a generator that uses 0.02 cores
//! per second between whole-second ticks. The generator-saturated alert and panel need the real
//! figure. Here the same metric name is written from `getrusage(RUSAGE_SELF)` (user + system,
//! microseconds), and the collector's own integer copy is filtered out so the name appears once.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use super::text::{self, Expose, Value};

/// The name the prometheus crate and every other client library use for it.
pub const CPU_NAME: &str = "process_cpu_seconds_total";

/// User plus system CPU time of this process so far, in seconds (µs resolution); `None` if
/// the kernel refuses (it never does for `RUSAGE_SELF`).
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage writes a plain struct that we own; zeroed is a valid `rusage`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// Writes `process_cpu_seconds_total` as a float counter.
pub struct ProcessCpu;

impl Expose for ProcessCpu {
    fn expose(&self, out: &mut Vec<u8>) {
        let Some(v) = cpu_seconds() else { return };
        text::header(
            out,
            CPU_NAME,
            "Total user and system CPU time spent in seconds (getrusage, microsecond resolution).",
            "counter",
        );
        text::sample(out, CPU_NAME, "", "", "", Value::Float(v));
    }
}

/// The prometheus crate's process collector (open fds, memory, threads, start time) without
/// its whole-second CPU counter, which [`ProcessCpu`] replaces.
pub struct WithoutCpu<C>(pub C);

impl<C: Collector> Collector for WithoutCpu<C> {
    fn desc(&self) -> Vec<&Desc> {
        self.0
            .desc()
            .into_iter()
            .filter(|d| d.fq_name != CPU_NAME)
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0
            .collect()
            .into_iter()
            .filter(|f| f.name() != CPU_NAME)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::metrics::LoadMetrics;

    /// CPU time of the calling thread (a clock separate from getrusage's bookkeeping).
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec we own.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
            0
        );
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Every `process_cpu_seconds_total` sample of a whole `/metrics` body.
    fn scraped(m: &LoadMetrics) -> Vec<f64> {
        let mut buf = Vec::new();
        text::encode(&[m as &dyn Expose], &m.registry, &mut buf).unwrap();
        String::from_utf8(buf)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .map(|v| v.parse().unwrap())
            .collect()
    }

    #[test]
    fn cpu_seconds_move_by_the_busy_work_with_sub_second_resolution() {
        let m = LoadMetrics::new(&[1.0]);
        let before = scraped(&m);
        assert_eq!(before.len(), 1, "exactly one sample: {before:?}");
        // 250 ms of CPU on this thread, measured by the thread's own clock.
        let (t0, wall) = (thread_cpu(), Instant::now());
        let mut x = 0u64;
        while thread_cpu() - t0 < Duration::from_millis(250) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let busy = (thread_cpu() - t0).as_secs_f64();
        let elapsed = wall.elapsed().as_secs_f64();
        let after = scraped(&m);
        assert_eq!(after.len(), 1, "{after:?}");
        let delta = after[0] - before[0];
        // At least our busy work; at most that plus what every other thread of the test
        // binary could have used meanwhile.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(
            delta >= busy - 0.002 && delta <= busy + elapsed * cores + 0.01,
            "delta {delta} for {busy} s of busy work in {elapsed} s"
        );
        // Whole seconds (the crate's counter) would read 0 or 1 here.
        assert!(delta > 0.2 && delta.fract() != 0.0, "delta {delta}");
        assert!(after[0].fract() != 0.0, "{after:?}");
    }
}
