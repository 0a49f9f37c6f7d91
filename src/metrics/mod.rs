//! Every metric loadspec exports, defined in one place (DESIGN.md §4), on an explicit
//! [`Registry`] so tests can gather it.
//!
//! Hot-path design: a request records into pre-resolved handles ([`StepMetrics`]), never
//! through `with_label_values` lookups. Prometheus counters and histograms are atomics, so
//! recording takes no lock shared by all VUs.
//!
//! Check semantics: every completed request (a response or a failure) records exactly one
//! check: `pass` when a response arrived with an expected status and every capture of the step
//! succeeded, else `fail`. So the error ratio is `checks{result="fail"} / checks`.

pub mod containers;
pub mod model;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::config::{PricesConfig, SlaConfig};

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Timeout,
    Connect,
    Tls,
    Io,
    Body,
}

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::Timeout,
        FailureReason::Connect,
        FailureReason::Tls,
        FailureReason::Io,
        FailureReason::Body,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::Io => "io",
            FailureReason::Body => "body",
        }
    }
}

/// All load, SLA and price metric families.
pub struct LoadMetrics {
    pub registry: Registry,
    duration: HistogramVec,
    requests: IntCounterVec,
    failures: IntCounterVec,
    checks: IntCounterVec,
    iteration_duration: HistogramVec,
    pub vus: IntGaugeVec,
    pub vus_target: IntGaugeVec,
    pub arrival_rate_target: GaugeVec,
    dropped: IntCounterVec,
    iterations: IntCounterVec,
    data_sent: IntCounterVec,
    data_received: IntCounterVec,
    pub stage_index: IntGaugeVec,
    pub stage_info: IntGaugeVec,
    sla_latency: GaugeVec,
    sla_error_ratio: Gauge,
    sla_cpu: Gauge,
    price_vcpu: Gauge,
    price_mem: Gauge,
    pub config_reload_ok: IntGauge,
    pub config_reloads: IntCounterVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl LoadMetrics {
    /// Register every family on a fresh registry, plus the process collector.
    pub fn new(buckets: &[f64]) -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let sr = ["scenario", "request"];
        let s = ["scenario"];
        Self {
            duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "loadspec_http_request_duration_seconds",
                        "Time from the (intended) send to the last response byte, responses only.",
                    )
                    .buckets(buckets.to_vec()),
                    &sr,
                )
                .unwrap(),
            ),
            requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("loadspec_http_requests_total", "Responses received, by status code."),
                    &["scenario", "request", "code"],
                )
                .unwrap(),
            ),
            failures: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "loadspec_http_request_failures_total",
                        "Requests that got no response, by reason.",
                    ),
                    &["scenario", "request", "reason"],
                )
                .unwrap(),
            ),
            checks: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "loadspec_checks_total",
                        "One check per completed request: expected status and captures.",
                    ),
                    &["scenario", "request", "result"],
                )
                .unwrap(),
            ),
            iteration_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "loadspec_iteration_duration_seconds",
                        "Duration of whole iterations (all steps, without think time).",
                    )
                    .buckets(buckets.to_vec()),
                    &s,
                )
                .unwrap(),
            ),
            vus: reg(
                &r,
                IntGaugeVec::new(Opts::new("loadspec_vus", "VUs running iterations now."), &s)
                    .unwrap(),
            ),
            vus_target: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("loadspec_vus_target", "VUs the schedule asks for now (this shard)."),
                    &s,
                )
                .unwrap(),
            ),
            arrival_rate_target: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "loadspec_arrival_rate_target_per_second",
                        "Iterations per second the open-model schedule asks for now (this shard).",
                    ),
                    &s,
                )
                .unwrap(),
            ),
            dropped: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "loadspec_dropped_iterations_total",
                        "Open-model iterations not started because every VU up to max_vus was busy.",
                    ),
                    &s,
                )
                .unwrap(),
            ),
            iterations: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("loadspec_iterations_total", "Completed iterations."),
                    &s,
                )
                .unwrap(),
            ),
            data_sent: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("loadspec_data_sent_bytes_total", "Request bytes sent (head and body)."),
                    &s,
                )
                .unwrap(),
            ),
            data_received: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "loadspec_data_received_bytes_total",
                        "Response bytes received (head and body).",
                    ),
                    &s,
                )
                .unwrap(),
            ),
            stage_index: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("loadspec_stage_index", "Index of the active stage, from 0."),
                    &s,
                )
                .unwrap(),
            ),
            stage_info: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("loadspec_stage_info", "1 for the active stage of a scenario."),
                    &["scenario", "stage"],
                )
                .unwrap(),
            ),
            sla_latency: reg(
                &r,
                GaugeVec::new(
                    Opts::new("loadspec_sla_latency_seconds", "Latency SLA from the config."),
                    &["target_quantile"],
                )
                .unwrap(),
            ),
            sla_error_ratio: reg(
                &r,
                Gauge::new("loadspec_sla_error_ratio", "Highest acceptable error ratio.").unwrap(),
            ),
            sla_cpu: reg(
                &r,
                Gauge::new(
                    "loadspec_sla_cpu_utilization",
                    "CPU utilization of the limit above which a container counts as saturated.",
                )
                .unwrap(),
            ),
            price_vcpu: reg(
                &r,
                Gauge::new("loadspec_price_vcpu_hour", "Price of one vCPU for one hour.").unwrap(),
            ),
            price_mem: reg(
                &r,
                Gauge::new(
                    "loadspec_price_memory_gib_hour",
                    "Price of one GiB of memory for one hour.",
                )
                .unwrap(),
            ),
            config_reload_ok: reg(
                &r,
                IntGauge::new(
                    "loadspec_config_last_reload_successful",
                    "1 if the last config (re)load was valid.",
                )
                .unwrap(),
            ),
            config_reloads: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("loadspec_config_reloads_total", "SIGHUP reloads, by result."),
                    &["result"],
                )
                .unwrap(),
            ),
            registry: r,
        }
    }

    /// Export the SLA and prices so rules compare against the config.
    pub fn set_sla(&self, sla: &SlaConfig, prices: &PricesConfig) {
        self.sla_latency
            .with_label_values(&["0.95"])
            .set(sla.latency_p95.as_secs_f64());
        if let Some(p99) = sla.latency_p99 {
            self.sla_latency
                .with_label_values(&["0.99"])
                .set(p99.as_secs_f64());
        } else {
            let _ = self.sla_latency.remove_label_values(&["0.99"]);
        }
        self.sla_error_ratio.set(sla.error_ratio);
        self.sla_cpu.set(sla.cpu_utilization);
        self.price_vcpu.set(prices.vcpu_hour);
        self.price_mem.set(prices.memory_gib_hour);
    }

    /// Handles for one scenario.
    pub fn scenario(&self, scenario: &str) -> ScenarioMetrics {
        let l = [scenario];
        ScenarioMetrics {
            vus: self.vus.with_label_values(&l),
            vus_target: self.vus_target.with_label_values(&l),
            arrival_rate_target: self.arrival_rate_target.with_label_values(&l),
            dropped: self.dropped.with_label_values(&l),
            iterations: self.iterations.with_label_values(&l),
            data_sent: self.data_sent.with_label_values(&l),
            data_received: self.data_received.with_label_values(&l),
            iteration_duration: self.iteration_duration.with_label_values(&l),
        }
    }

    /// Handles for one step (request name) of a scenario.
    pub fn step(&self, scenario: &str, request: &str) -> StepMetrics {
        let l = [scenario, request];
        // Create the pass/fail and failure series up front so rate() works from the start.
        StepMetrics {
            duration: self.duration.with_label_values(&l),
            codes: Box::new(std::array::from_fn(|_| OnceLock::new())),
            codes_vec: self.requests.clone(),
            scenario: scenario.to_string(),
            request: request.to_string(),
            failures: FailureReason::ALL.map(|r| {
                self.failures
                    .with_label_values(&[scenario, request, r.as_str()])
            }),
            check_pass: self.checks.with_label_values(&[scenario, request, "pass"]),
            check_fail: self.checks.with_label_values(&[scenario, request, "fail"]),
        }
    }
}

pub struct ScenarioMetrics {
    pub vus: IntGauge,
    pub vus_target: IntGauge,
    pub arrival_rate_target: Gauge,
    pub dropped: IntCounter,
    pub iterations: IntCounter,
    pub data_sent: IntCounter,
    pub data_received: IntCounter,
    pub iteration_duration: Histogram,
}

/// Status codes 100..=599 map to slots; the counter for a code is created on first use.
const CODES: usize = 500;

pub struct StepMetrics {
    pub duration: Histogram,
    codes: Box<[OnceLock<IntCounter>; CODES]>,
    codes_vec: IntCounterVec,
    scenario: String,
    request: String,
    failures: [IntCounter; 5],
    pub check_pass: IntCounter,
    pub check_fail: IntCounter,
}

impl StepMetrics {
    /// Count a response with this status.
    pub fn response(&self, code: u16) {
        let slot = (code as usize).saturating_sub(100).min(CODES - 1);
        self.codes[slot]
            .get_or_init(|| {
                self.codes_vec.with_label_values(&[
                    self.scenario.as_str(),
                    self.request.as_str(),
                    &code.to_string(),
                ])
            })
            .inc();
    }

    pub fn failure(&self, reason: FailureReason) {
        let i = FailureReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(3);
        self.failures[i].inc();
    }

    /// Counts so far: status code or failure reason to count (for stage status mixes).
    pub fn counts(&self, into: &mut BTreeMap<String, u64>) {
        for (i, c) in self.codes.iter().enumerate() {
            if let Some(c) = c.get() {
                *into.entry((i + 100).to_string()).or_default() += c.get();
            }
        }
        for (r, c) in FailureReason::ALL.iter().zip(&self.failures) {
            if c.get() > 0 {
                *into.entry(r.as_str().to_string()).or_default() += c.get();
            }
        }
    }
}
