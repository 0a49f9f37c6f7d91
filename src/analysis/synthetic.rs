//! Stage summaries of an imaginary closed-model service with known costs, plus deterministic
//! noise: the ground truth that tests (and the docs' worked example) check the analysis
//! against, without the timing noise of a real run.
//!
//! Physics: each VU sends a request, waits `service_time`, repeats. A request costs
//! `cpu_seconds_per_request` of CPU, so N VUs want N / service_time TPS and that × cost cores.
//! The container has `cpu_limit_cores`; past the limit TPS stays at limit / cost and, by
//! Little's law, latency grows as N / TPS. Memory is base + per in-flight request × N.

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::summary::{LatencySummary, ResourceSummary, StageSummary};

#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticService {
    pub service_time: f64,
    pub cpu_seconds_per_request: f64,
    pub cpu_base_cores: f64,
    pub cpu_limit_cores: f64,
    pub memory_base_bytes: f64,
    pub memory_bytes_per_vu: f64,
    pub memory_limit_bytes: f64,
    /// Relative noise: every measured figure is multiplied by 1 ± up to this.
    pub noise: f64,
    /// Split the load over this many identical containers of group `app`.
    pub containers: usize,
}

impl Default for SyntheticService {
    /// 0.1 s per request and 25 ms of CPU each: 10 TPS and 0.25 cores per VU, so one core
    /// saturates at 4 VUs and 40 TPS.
    fn default() -> Self {
        Self {
            service_time: 0.1,
            cpu_seconds_per_request: 0.025,
            cpu_base_cores: 0.0,
            cpu_limit_cores: 1.0,
            memory_base_bytes: 700e6,
            memory_bytes_per_vu: 250e6,
            memory_limit_bytes: 4e9,
            noise: 0.03,
            containers: 1,
        }
    }
}

impl SyntheticService {
    /// CPU cores per VU below saturation.
    pub fn cpu_per_vu(&self) -> f64 {
        self.cpu_seconds_per_request / self.service_time
    }

    /// VUs at which the CPU demand reaches the limit.
    pub fn saturation_vus(&self) -> f64 {
        (self.cpu_limit_cores - self.cpu_base_cores) / self.cpu_per_vu()
    }

    /// One stage per VU count, 30 s windows; `seed` makes the noise repeatable.
    pub fn stages(&self, vus: &[f64], seed: u64) -> Vec<StageSummary> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut jitter = move || 1.0 + self.noise * rng.gen_range(-1.0..=1.0);
        let max_tps = (self.cpu_limit_cores - self.cpu_base_cores) / self.cpu_seconds_per_request;
        vus.iter()
            .enumerate()
            .map(|(i, &n)| {
                let tps = (n / self.service_time).min(max_tps) * jitter();
                let latency = n / tps;
                let cpu = (self.cpu_base_cores + tps * self.cpu_seconds_per_request)
                    .min(self.cpu_limit_cores)
                    * jitter();
                let mem = (self.memory_base_bytes + self.memory_bytes_per_vu * n) * jitter();
                let k = self.containers.max(1) as f64;
                let row = |name: String| ResourceSummary {
                    name,
                    group: "app".into(),
                    cpu_cores_avg: cpu / k,
                    cpu_cores_max: cpu / k * 1.1,
                    cpu_limit_cores: self.cpu_limit_cores / k,
                    cpu_utilization: cpu / self.cpu_limit_cores,
                    memory_bytes_avg: mem / k,
                    memory_bytes_max: mem / k * 1.05,
                    memory_limit_bytes: self.memory_limit_bytes / k,
                    memory_utilization: mem / self.memory_limit_bytes,
                    samples: 30,
                    cpu_throttled_ratio: 0.0,
                };
                let containers: Vec<ResourceSummary> = (0..self.containers.max(1))
                    .map(|c| row(format!("app-{c}")))
                    .collect();
                let mut group = row("app".into());
                group.cpu_cores_avg = cpu;
                group.cpu_limit_cores = self.cpu_limit_cores;
                group.memory_bytes_avg = mem;
                group.memory_limit_bytes = self.memory_limit_bytes;
                let requests = (tps * 30.0).round() as u64;
                StageSummary {
                    scenario: "synthetic".into(),
                    stage_index: i,
                    stage: format!("T{}", i + 1),
                    vus: n,
                    target_rate: None,
                    window_seconds: 30.0,
                    requests,
                    tps,
                    request_rate: tps,
                    latency: Some(LatencySummary {
                        avg: latency,
                        p50: latency * 0.95,
                        p95: latency * 1.4,
                        p99: latency * 1.8,
                        max: latency * 2.5,
                    }),
                    errors: 0,
                    error_ratio: 0.0,
                    status: [("200".to_string(), requests)].into_iter().collect(),
                    dropped_iterations: 0,
                    containers,
                    groups: vec![group],
                    events: Vec::new(),
                    target_down: None,
                    host: None,
                }
            })
            .collect()
    }
}
