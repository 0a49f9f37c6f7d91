//! Facts about the host that limits fall back to: the online CPUs (a container without a CPU
//! limit may use all of them), the memory total (the limit of an unlimited container) and the
//! kernel clock tick that /proc CPU times are counted in.

/// CPUs the kernel has online (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1. Not
/// `available_parallelism`, which follows this process's own affinity and quota rather than
/// what a container may use.
pub fn online_cpus() -> u64 {
    // SAFETY: sysconf only reads a kernel value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as u64
    } else {
        1
    }
}

/// Kernel clock ticks per second, the unit of utime/stime in /proc/<pid>/stat.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a kernel value.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

/// Page size in bytes, the unit of /proc/<pid>/statm.
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a kernel value.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// `MemTotal` from /proc/meminfo in bytes, or 0 when it cannot be read.
pub fn mem_total_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_mem_total(&text))
        .unwrap_or(0)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Cumulative CPU time of the whole host from the `cpu` line of /proc/stat, in clock ticks:
/// (idle + iowait, total). `None` when /proc/stat cannot be read (not Linux). Two readings give
/// the host's idle share over an interval, which tells a starved host (no idle CPU left for
/// the container) from a container that reached its own limit.
pub fn cpu_times() -> Option<(u64, u64)> {
    parse_cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map_while(|f| f.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
    // inside user and nice, so only the first eight fields add up to the total.
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((idle, total))
}

/// Idle share of the host between two [`cpu_times`] readings, 0..1; `None` when no time
/// passed.
pub fn idle_ratio(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1)?;
    let idle = after.0.checked_sub(before.0)?;
    (total > 0).then(|| (idle as f64 / total as f64).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_are_parsed_and_give_an_idle_share() {
        let a = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        let b = "cpu  250 0 100 850 50 0 0 0 20 0\n";
        let (a, b) = (parse_cpu_times(a).unwrap(), parse_cpu_times(b).unwrap());
        assert_eq!(a, (850, 1000));
        assert_eq!(b, (900, 1250));
        // 250 ticks passed, 50 of them idle.
        assert!((idle_ratio(a, b).unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(idle_ratio(b, b), None);
        assert_eq!(parse_cpu_times("cpu 1 2\n"), None);
        let now = cpu_times().expect("/proc/stat is readable on Linux");
        assert!(now.1 >= now.0);
    }

    #[test]
    fn mem_total_is_parsed_in_bytes() {
        let text = "MemTotal:       24682748 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24682748 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
        assert!(mem_total_bytes() > 0);
        assert!(online_cpus() >= 1);
    }
}
