//! Pure conversions from the engine's answers to our figures, computed the way the Docker CLI
//! computes `docker stats`, so the numbers can be checked side by side.

use std::collections::HashMap;

use bollard::container::{MemoryStats, MemoryStatsStats, Stats};
use bollard::models::HostConfig;

/// `docker stats` memory: usage minus inactive file cache. cgroup v1 reports the hierarchical
/// `total_inactive_file`, cgroup v2 `inactive_file` (docker/cli `calculateMemUsageUnixNoCache`).
/// The cache is only subtracted when it is below usage, as the CLI does.
pub fn memory_usage_bytes(mem: &MemoryStats) -> u64 {
    let usage = mem.usage.unwrap_or(0);
    let inactive = match mem.stats {
        Some(MemoryStatsStats::V1(v1)) => v1.total_inactive_file,
        Some(MemoryStatsStats::V2(v2)) => v2.inactive_file,
        None => 0,
    };
    if inactive < usage {
        usage - inactive
    } else {
        usage
    }
}

/// Cores a container may use: NanoCpus, else CpuQuota / CpuPeriod (period 100 ms when unset, as
/// the kernel defaults it), else every online CPU.
pub fn cpu_limit_cores(host: Option<&HostConfig>, online_cpus: u64) -> f64 {
    let online = online_cpus.max(1) as f64;
    let Some(h) = host else { return online };
    if let Some(nano) = h.nano_cpus.filter(|n| *n > 0) {
        return nano as f64 / 1e9;
    }
    if let Some(quota) = h.cpu_quota.filter(|q| *q > 0) {
        let period = h.cpu_period.filter(|p| *p > 0).unwrap_or(100_000);
        return quota as f64 / period as f64;
    }
    online
}

/// Memory limit: the one the stats report (the host total when unlimited), else the configured
/// one, else `host_total`.
pub fn memory_limit_bytes(mem: &MemoryStats, host: Option<&HostConfig>, host_total: u64) -> u64 {
    if let Some(l) = mem.limit.filter(|l| *l > 0) {
        return l;
    }
    match host.and_then(|h| h.memory).filter(|m| *m > 0) {
        Some(m) => m as u64,
        None => host_total,
    }
}

/// Received and transmitted bytes summed over every interface.
pub fn network_bytes(stats: &Stats) -> (u64, u64) {
    let sum = |nets: &HashMap<String, bollard::container::NetworkStats>| {
        nets.values().fold((0u64, 0u64), |(rx, tx), n| {
            (rx.saturating_add(n.rx_bytes), tx.saturating_add(n.tx_bytes))
        })
    };
    match (&stats.networks, &stats.network) {
        (Some(nets), _) => sum(nets),
        (None, Some(n)) => (n.rx_bytes, n.tx_bytes),
        (None, None) => (0, 0),
    }
}

/// Cumulative CPU time in seconds (`cpu_usage.total_usage` is nanoseconds).
pub fn cpu_usage_seconds(stats: &Stats) -> f64 {
    stats.cpu_stats.cpu_usage.total_usage as f64 / 1e9
}

/// Cumulative time the container was throttled by its CPU quota, seconds.
pub fn cpu_throttled_seconds(stats: &Stats) -> f64 {
    stats.cpu_stats.throttling_data.throttled_time as f64 / 1e9
}

/// The engine's read time of the stats as seconds since the epoch, when it parses. Using the
/// engine's own timestamp keeps request latency out of the CPU rate.
pub fn read_time_seconds(stats: &Stats) -> Option<f64> {
    let t = humantime::parse_rfc3339(&stats.read).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
    (secs > 0.0).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real one-shot answer of Docker 20.10 on cgroup v1 (trimmed of blkio).
    const V1_STATS: &str = r#"{
      "read": "2026-11-27T03:36:55.396819215Z", "preread": "0001-01-01T00:00:00Z",
      "pids_stats": {"current": 1}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
      "cpu_stats": {"cpu_usage": {"total_usage": 45163599, "percpu_usage": [14527378, 30636221],
        "usage_in_kernelmode": 10000000, "usage_in_usermode": 20000000},
        "system_cpu_usage": 1263790000000, "online_cpus": 2,
        "throttling_data": {"periods": 5, "throttled_periods": 2, "throttled_time": 1500000000}},
      "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
        "usage_in_usermode": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0,
        "throttled_time": 0}},
      "memory_stats": {"usage": 2330624, "max_usage": 3821568, "stats": {"active_anon": 4096,
        "active_file": 0, "cache": 1777664, "dirty": 0, "hierarchical_memory_limit": 67108864,
        "hierarchical_memsw_limit": 134217728, "inactive_anon": 98304, "inactive_file": 1777664,
        "mapped_file": 1040384, "pgfault": 1054, "pgmajfault": 23, "pgpgin": 1201,
        "pgpgout": 742, "rss": 102400, "rss_huge": 0, "total_active_anon": 4096,
        "total_active_file": 0, "total_cache": 1777664, "total_dirty": 0,
        "total_inactive_anon": 98304, "total_inactive_file": 1700000, "total_mapped_file": 1040384,
        "total_pgfault": 1054, "total_pgmajfault": 23, "total_pgpgin": 1201,
        "total_pgpgout": 742, "total_rss": 102400, "total_rss_huge": 0,
        "total_unevictable": 0, "total_writeback": 0, "unevictable": 0, "writeback": 0},
        "limit": 67108864},
      "name": "/probe1", "id": "64dd",
      "networks": {"eth0": {"rx_bytes": 952, "rx_packets": 10, "rx_errors": 0, "rx_dropped": 0,
        "tx_bytes": 100, "tx_packets": 1, "tx_errors": 0, "tx_dropped": 0},
        "eth1": {"rx_bytes": 48, "rx_packets": 1, "rx_errors": 0, "rx_dropped": 0,
        "tx_bytes": 20, "tx_packets": 1, "tx_errors": 0, "tx_dropped": 0}}
    }"#;

    fn v1() -> Stats {
        serde_json::from_str(V1_STATS).expect("bollard parses Docker 20.10 cgroup v1 stats")
    }

    #[test]
    fn v1_memory_subtracts_total_inactive_file() {
        // total_inactive_file (1700000), not inactive_file (1777664), on cgroup v1.
        assert_eq!(memory_usage_bytes(&v1().memory_stats), 2330624 - 1700000);
    }

    #[test]
    fn cache_above_usage_is_not_subtracted() {
        let mut s = v1();
        s.memory_stats.usage = Some(1000);
        assert_eq!(memory_usage_bytes(&s.memory_stats), 1000);
    }

    #[test]
    fn counters_and_network_sum() {
        let s = v1();
        assert!((cpu_usage_seconds(&s) - 0.045163599).abs() < 1e-12);
        assert!((cpu_throttled_seconds(&s) - 1.5).abs() < 1e-12);
        assert_eq!(network_bytes(&s), (1000, 120));
        let t = read_time_seconds(&s).expect("read time parses");
        assert!((t - 1_795_750_615.396_819).abs() < 1e-3, "{t}");
    }

    #[test]
    fn cpu_limit_precedence() {
        let mut h = HostConfig {
            nano_cpus: Some(500_000_000),
            cpu_quota: Some(150_000),
            cpu_period: Some(100_000),
            ..Default::default()
        };
        assert_eq!(cpu_limit_cores(Some(&h), 2), 0.5);
        h.nano_cpus = Some(0);
        assert_eq!(cpu_limit_cores(Some(&h), 2), 1.5);
        h.cpu_period = None;
        assert_eq!(cpu_limit_cores(Some(&h), 2), 1.5);
        h.cpu_quota = Some(-1);
        assert_eq!(cpu_limit_cores(Some(&h), 2), 2.0);
        assert_eq!(cpu_limit_cores(None, 4), 4.0);
    }

    #[test]
    fn memory_limit_fallbacks() {
        let mut s = v1();
        assert_eq!(memory_limit_bytes(&s.memory_stats, None, 9), 67108864);
        s.memory_stats.limit = None;
        let h = HostConfig {
            memory: Some(1 << 20),
            ..Default::default()
        };
        assert_eq!(memory_limit_bytes(&s.memory_stats, Some(&h), 9), 1 << 20);
        assert_eq!(memory_limit_bytes(&s.memory_stats, None, 9), 9);
    }
}
