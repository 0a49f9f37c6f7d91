//! Every metric loadspec exports, defined in one place (docs/architecture.md lists where each
//! is updated; README.md has the table), on an explicit
//! [`Registry`] so tests can gather it.
//!
//! Hot-path design: a request records into pre-resolved handles ([`StepMetrics`]), never
//! through `with_label_values` lookups. The handles are plain atomics ([`family`]), so
//! recording takes no lock shared by all VUs, and a scrape writes them out directly
//! ([`text`]) instead of gathering a protobuf copy of every series first.
//!
//! Check semantics: every completed request (a response or a failure) records exactly one
//! check: `pass` when a response arrived with an expected status and every capture of the step
//! succeeded, else `fail`. So the error ratio is `checks{result="fail"} / checks`.

pub mod containers;
pub mod model;

pub use crate::exposition::{family, text};

use std::sync::Arc;

use prometheus::Registry;

use self::family::{Buckets, Counter, Family, Gauge, GaugeF, Histogram};
use self::text::Expose;
use crate::sla::{PricesConfig, SlaConfig};

pub use crate::load::meters::{Meters, ScenarioMetrics, StepMetrics};
pub use crate::load::FailureReason;

const SR: &[&str] = &["scenario", "request"];
const S: &[&str] = &["scenario"];

/// All load, SLA and price metric families. They live on [`family`] atomics and are written
/// by [`Expose`]; `registry` holds the rest (the process collector and the model gauges).
pub struct LoadMetrics {
    pub registry: Registry,
    duration: Family<Histogram>,
    requests: Arc<Family<Counter>>,
    failures: Family<Counter>,
    checks: Family<Counter>,
    iteration_duration: Family<Histogram>,
    vus: Family<Gauge>,
    vus_target: Family<Gauge>,
    arrival_rate_target: Family<GaugeF>,
    dropped: Family<Counter>,
    iterations: Family<Counter>,
    data_sent: Family<Counter>,
    data_received: Family<Counter>,
    pub stage_index: Family<Gauge>,
    pub stage_info: Family<Gauge>,
    run_info: Family<Gauge>,
    sla_latency: Family<GaugeF>,
    sla_error_ratio: Family<GaugeF>,
    sla_cpu: Family<GaugeF>,
    price_vcpu: Family<GaugeF>,
    price_mem: Family<GaugeF>,
    config_reload_ok_family: Family<Gauge>,
    pub config_reload_ok: Gauge,
    pub config_reloads: Family<Counter>,
}

/// A family without labels, with its one member created so it is exposed from the start.
fn single<M: family::Metric<Config = ()>>(name: &'static str, help: &'static str) -> Family<M> {
    let f = Family::new(name, help, &[], ());
    f.with_label_values(&[]);
    f
}

impl LoadMetrics {
    /// Name the run in `loadspec_run_info`; only the current run is exposed.
    pub fn set_run(&self, run_id: &str, shard: crate::load::plan::Shard) {
        self.run_info.clear();
        let (i, n) = (shard.index.to_string(), shard.count.to_string());
        self.run_info.with_label_values(&[run_id, &i, &n]).set(1);
    }

    /// Create every family, plus a registry with the process collector.
    pub fn new(buckets: &[f64]) -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let config_reload_ok_family: Family<Gauge> = single(
            "loadspec_config_last_reload_successful",
            "1 if the last config (re)load was valid.",
        );
        Self {
            duration: Family::new(
                "loadspec_http_request_duration_seconds",
                "Time from the (intended) send to the last response byte, responses only.",
                SR,
                Buckets::new(buckets),
            ),
            requests: Arc::new(Family::new(
                "loadspec_http_requests_total",
                "Responses received, by status code.",
                &["scenario", "request", "code"],
                (),
            )),
            failures: Family::new(
                "loadspec_http_request_failures_total",
                "Requests that got no response, by reason.",
                &["scenario", "request", "reason"],
                (),
            ),
            checks: Family::new(
                "loadspec_checks_total",
                "One check per completed request: expected status and captures.",
                &["scenario", "request", "result"],
                (),
            ),
            iteration_duration: Family::new(
                "loadspec_iteration_duration_seconds",
                "Duration of whole iterations (all steps, without think time).",
                S,
                Buckets::new(buckets),
            ),
            vus: Family::new("loadspec_vus", "VUs running iterations now.", S, ()),
            vus_target: Family::new(
                "loadspec_vus_target",
                "VUs the schedule asks for now (this shard).",
                S,
                (),
            ),
            arrival_rate_target: Family::new(
                "loadspec_arrival_rate_target_per_second",
                "Iterations per second the open-model schedule asks for now (this shard).",
                S,
                (),
            ),
            dropped: Family::new(
                "loadspec_dropped_iterations_total",
                "Open-model iterations not started because every VU up to max_vus was busy.",
                S,
                (),
            ),
            iterations: Family::new("loadspec_iterations_total", "Completed iterations.", S, ()),
            data_sent: Family::new(
                "loadspec_data_sent_bytes_total",
                "Request bytes sent (head and body).",
                S,
                (),
            ),
            data_received: Family::new(
                "loadspec_data_received_bytes_total",
                "Response bytes received (head and body).",
                S,
                (),
            ),
            stage_index: Family::new(
                "loadspec_stage_index",
                "Index of the active stage, from 0.",
                S,
                (),
            ),
            stage_info: Family::new(
                "loadspec_stage_info",
                "1 for the active stage of a scenario.",
                &["scenario", "stage"],
                (),
            ),
            run_info: Family::new(
                "loadspec_run_info",
                "1 for the running (or last) run: its id, shared by every shard of one run, and this process's shard.",
                &["run_id", "shard", "shards"],
                (),
            ),
            sla_latency: Family::new(
                "loadspec_sla_latency_seconds",
                "Latency SLA from the config.",
                &["target_quantile"],
                (),
            ),
            sla_error_ratio: single(
                "loadspec_sla_error_ratio",
                "Highest acceptable error ratio.",
            ),
            sla_cpu: single(
                "loadspec_sla_cpu_utilization",
                "CPU utilization of the limit above which a container counts as saturated.",
            ),
            price_vcpu: single(
                "loadspec_price_vcpu_hour",
                "Price of one vCPU for one hour.",
            ),
            price_mem: single(
                "loadspec_price_memory_gib_hour",
                "Price of one GiB of memory for one hour.",
            ),
            config_reload_ok: config_reload_ok_family.with_label_values(&[]),
            config_reload_ok_family,
            config_reloads: Family::new(
                "loadspec_config_reloads_total",
                "SIGHUP reloads, by result.",
                &["result"],
                (),
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
        for (g, v) in [
            (&self.sla_error_ratio, sla.error_ratio),
            (&self.sla_cpu, sla.cpu_utilization),
            (&self.price_vcpu, prices.vcpu_hour),
            (&self.price_mem, prices.memory_gib_hour),
        ] {
            g.with_label_values(&[]).set(v);
        }
    }
}

impl Meters for LoadMetrics {
    fn scenario(&self, scenario: &str) -> ScenarioMetrics {
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

    fn step(&self, scenario: &str, request: &str) -> StepMetrics {
        // Create the pass/fail and failure series up front so rate() works from the start.
        StepMetrics::new(
            scenario,
            request,
            self.duration.with_label_values(&[scenario, request]),
            Arc::clone(&self.requests),
            |r| {
                self.failures
                    .with_label_values(&[scenario, request, r.as_str()])
            },
            self.checks.with_label_values(&[scenario, request, "pass"]),
            self.checks.with_label_values(&[scenario, request, "fail"]),
        )
    }
}

impl Expose for LoadMetrics {
    /// Every family in name order (the order the prometheus crate writes).
    fn expose(&self, out: &mut Vec<u8>) {
        let families: [&dyn Expose; 22] = [
            &self.arrival_rate_target,
            &self.checks,
            &self.config_reload_ok_family,
            &self.config_reloads,
            &self.data_received,
            &self.data_sent,
            &self.dropped,
            &self.duration,
            &self.failures,
            &*self.requests,
            &self.iteration_duration,
            &self.iterations,
            &self.price_mem,
            &self.price_vcpu,
            &self.sla_cpu,
            &self.sla_error_ratio,
            &self.sla_latency,
            &self.run_info,
            &self.stage_index,
            &self.stage_info,
            &self.vus,
            &self.vus_target,
        ];
        for f in families {
            f.expose(out);
        }
    }
}
