//! The process source: a PID and all its descendants, measured from /proc, for `loadspec demo`
//! and hosts without Docker. The tree is found by walking every `/proc/<pid>/stat` parent link.
//!
//! CPU time is `utime + stime` of every live process in the tree plus its `cutime + cstime`
//! (time of children it has already reaped), so short-lived children are not lost. Memory is
//! the summed resident set (`statm`), which counts pages shared between processes of the tree
//! more than once: an upper bound, unlike Docker's cgroup figure.

use std::collections::HashMap;
use std::time::Instant;

use super::error::ContainerError;
use super::rate::CpuRates;
use super::{host, ContainerSample};

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    pub ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub ticks: u64,
}

/// Parse one `/proc/<pid>/stat` line. `comm` may hold spaces and parentheses, so the fields
/// are split after the last `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let comm = line.get(open + 1..close)?.to_string();
    // After ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let field = |i: usize| rest.get(i).and_then(|v| v.parse::<i64>().ok());
    let ppid = field(1)? as u32;
    let ticks = (11..=14).map(field).sum::<Option<i64>>()?.max(0) as u64;
    Some(ProcStat {
        pid,
        comm,
        ppid,
        ticks,
    })
}

/// Every readable process on the host. Processes that vanish while we read are skipped.
pub fn read_all() -> Result<Vec<ProcStat>, ContainerError> {
    let dir = std::fs::read_dir("/proc").map_err(|e| ContainerError::Proc(e.to_string()))?;
    Ok(dir
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|l| parse_stat(&l))
        .collect())
}

/// `root` and all its descendants among `procs` (empty when `root` is gone).
pub fn tree(procs: &[ProcStat], root: u32) -> Vec<&ProcStat> {
    let mut children: HashMap<u32, Vec<&ProcStat>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let Some(r) = procs.iter().find(|p| p.pid == root) else {
        return Vec::new();
    };
    let mut out = vec![r];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i].pid;
        if let Some(kids) = children.get(&pid) {
            // pid 0 (kernel threads' parent) can never be a root here, so no cycles.
            out.extend(kids.iter().filter(|k| k.pid != pid));
        }
        i += 1;
    }
    out
}

fn rss_bytes(pid: u32, page: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// Measures a set of process trees.
pub struct ProcessSource {
    roots: Vec<u32>,
    name: Option<String>,
    groups: std::collections::BTreeMap<String, String>,
    cpu_limit: f64,
    mem_total: u64,
    ticks_per_second: f64,
    page: u64,
    epoch: Instant,
    rates: CpuRates,
    last: HashMap<u32, ContainerSample>,
}

impl ProcessSource {
    /// `name` overrides the exported name (default: the root's `comm`). With several roots the
    /// PID is appended to either, so that roots with the same command (say, a hundred `sleep`s
    /// or workers) stay separate series instead of colliding on one label set.
    /// `cpu_limit` defaults to the online CPUs.
    pub fn new(
        roots: Vec<u32>,
        name: Option<String>,
        groups: std::collections::BTreeMap<String, String>,
        cpu_limit: Option<f64>,
    ) -> Self {
        Self {
            roots,
            name,
            groups,
            cpu_limit: cpu_limit.unwrap_or_else(|| host::online_cpus() as f64),
            mem_total: host::mem_total_bytes(),
            ticks_per_second: host::clock_ticks_per_second(),
            page: host::page_size(),
            epoch: Instant::now(),
            rates: CpuRates::default(),
            last: HashMap::new(),
        }
    }

    /// One round over every root. A root that has exited is reported with `up = false` and its
    /// last counters.
    pub async fn round(&mut self) -> Result<Vec<ContainerSample>, ContainerError> {
        let procs = tokio::task::spawn_blocking(read_all)
            .await
            .map_err(|e| ContainerError::Proc(e.to_string()))??;
        let at = self.epoch.elapsed().as_secs_f64();
        let several = self.roots.len() > 1;
        let mut out = Vec::with_capacity(self.roots.len());
        for &root in &self.roots.clone() {
            let members = tree(&procs, root);
            let base = match (&self.name, members.first()) {
                (Some(n), _) if several => format!("{n}-{root}"),
                (Some(n), _) => n.clone(),
                (None, Some(r)) if several => format!("{}-{root}", r.comm),
                (None, Some(r)) => r.comm.clone(),
                (None, None) => format!("pid:{root}"),
            };
            let name = self.last.get(&root).map_or(base, |l| l.name.clone());
            let group = self
                .groups
                .get(&name)
                .cloned()
                .unwrap_or_else(|| name.clone());
            let sample = if members.is_empty() {
                let mut s = self
                    .last
                    .get(&root)
                    .cloned()
                    .unwrap_or_else(|| self.empty(&name, &group));
                s.up = false;
                s.cpu_cores = 0.0;
                s.memory_usage_bytes = 0;
                s
            } else {
                let ticks: u64 = members.iter().map(|p| p.ticks).sum();
                let cpu = ticks as f64 / self.ticks_per_second;
                let mut s = self.empty(&name, &group);
                s.up = true;
                s.cpu_usage_seconds_total = cpu;
                s.cpu_cores = self.rates.update(&root.to_string(), at, cpu);
                s.memory_usage_bytes = members.iter().map(|p| rss_bytes(p.pid, self.page)).sum();
                s
            };
            self.last.insert(root, sample.clone());
            out.push(sample);
        }
        Ok(out)
    }

    fn empty(&self, name: &str, group: &str) -> ContainerSample {
        ContainerSample {
            name: name.to_string(),
            group: group.to_string(),
            up: false,
            cpu_usage_seconds_total: 0.0,
            cpu_cores: 0.0,
            cpu_limit_cores: self.cpu_limit,
            memory_usage_bytes: 0,
            memory_limit_bytes: self.mem_total,
            cpu_throttled_seconds_total: 0.0,
            network_receive_bytes_total: 0,
            network_transmit_bytes_total: 0,
            restarts_total: 0,
            oom_kills_total: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let line = "4242 (my (odd) proc) S 7 4242 1 0 -1 4194304 101 0 0 0 150 50 10 5 20 0 1 0";
        let p = parse_stat(line).expect("parses");
        assert_eq!(p.pid, 4242);
        assert_eq!(p.comm, "my (odd) proc");
        assert_eq!(p.ppid, 7);
        assert_eq!(p.ticks, 150 + 50 + 10 + 5);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn tree_walks_grandchildren_only() {
        let p = |pid, ppid| ProcStat {
            pid,
            comm: String::new(),
            ppid,
            ticks: 1,
        };
        let procs = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1), p(13, 10)];
        let mut pids: Vec<u32> = tree(&procs, 10).iter().map(|p| p.pid).collect();
        pids.sort();
        assert_eq!(pids, vec![10, 11, 12, 13]);
        assert!(tree(&procs, 99).is_empty());
    }

    #[tokio::test]
    async fn own_process_is_measured() {
        let me = std::process::id();
        let mut src = ProcessSource::new(vec![me], Some("self".into()), Default::default(), None);
        let s = src.round().await.expect("reads /proc");
        assert_eq!(s.len(), 1);
        assert!(s[0].up);
        assert_eq!(s[0].name, "self");
        assert!(s[0].memory_usage_bytes > 1 << 20, "{:?}", s[0]);
        assert_eq!(s[0].memory_limit_bytes, host::mem_total_bytes());
    }

    #[tokio::test]
    async fn several_roots_with_one_command_stay_apart() {
        let mut kids: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .expect("spawn sleep")
            })
            .collect();
        let pids: Vec<u32> = kids.iter().map(|k| k.id()).collect();
        let mut src = ProcessSource::new(pids.clone(), None, Default::default(), None);
        let s = src.round().await.expect("reads /proc");
        for k in &mut kids {
            let _ = k.kill();
            let _ = k.wait();
        }
        let names: Vec<&str> = s.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [format!("sleep-{}", pids[0]), format!("sleep-{}", pids[1])]
        );
        assert!(s.iter().all(|c| c.up && c.group == c.name), "{s:?}");
    }
}
