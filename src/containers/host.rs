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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_parsed_in_bytes() {
        let text = "MemTotal:       24682748 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24682748 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
        assert!(mem_total_bytes() > 0);
        assert!(online_cpus() >= 1);
    }
}
