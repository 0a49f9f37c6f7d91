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
pub mod process;

pub use crate::exposition::{family, text};

use std::sync::{Arc, RwLock};

use prometheus::Registry;

use self::family::{Buckets, Counter, Family, Gauge, GaugeF, Histogram, WindowMax};
use self::text::Expose;
use crate::sla::{PricesConfig, SlaConfig};

pub use crate::load::meters::{Meters, Phases, ScenarioMetrics, StepMetrics, StepTimings};
pub use crate::load::FailureReason;

const SR: &[&str] = &["scenario", "request"];

/// Buckets of the connect, TLS handshake and waiting histograms: fixed and few (they carry no SLA edge), from
/// a loopback connect (0.5 ms) to a connect that waited for a SYN resend (1-3 s) and a slow
/// first byte.
const PHASE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const S: &[&str] = &["scenario"];

/// All load, SLA and price metric families. They live on [`family`] atomics and are written
/// by [`Expose`]; `registry` holds the rest (the process collector and the model gauges).
pub struct LoadMetrics {
    pub registry: Registry,
    /// Rebuilt by [`LoadMetrics::set_buckets`] when the buckets change.
    latency: RwLock<Arc<Latency>>,
    duration_max: Family<WindowMax>,
    tls_handshake: Arc<Family<Histogram>>,
    connect: Family<Histogram>,
    waiting: Family<Histogram>,
    retries: Family<Counter>,
    requests: Arc<Family<Counter>>,
    failures: Family<Counter>,
    checks: Family<Counter>,
    vus: Family<Gauge>,
    vus_target: Family<Gauge>,
    arrival_rate_target: Family<GaugeF>,
    dropped: Family<Counter>,
    setup_runs: Family<Counter>,
    iterations: Family<Counter>,
    data_sent: Family<Counter>,
    data_received: Family<Counter>,
    pub stage_index: Family<Gauge>,
    stage_info: Family<Gauge>,
    run_info: Family<Gauge>,
    sla_latency: Family<GaugeF>,
    sla_latency_bucket: Family<Gauge>,
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
            // Its whole-second CPU counter is replaced by `process::ProcessCpu` in `expose`.
            let _ = r.register(Box::new(process::WithoutCpu(
                prometheus::process_collector::ProcessCollector::for_self(),
            )));
        }
        let config_reload_ok_family: Family<Gauge> = single(
            "loadspec_config_last_reload_successful",
            "1 if the last config (re)load was valid.",
        );
        Self {
            latency: RwLock::new(Arc::new(Latency::new(buckets))),
            duration_max: Family::new(
                "loadspec_http_request_duration_max_seconds",
                "Highest latency of the responses completed in the last 10 s (no sample while none did).",
                SR,
                (),
            ),
            tls_handshake: Arc::new(Family::new(
                "loadspec_http_tls_handshake_duration_seconds",
                "TLS handshakes of new https connections, from the TCP connection to the \
                 handshake's end (left out of the request duration).",
                SR,
                Buckets::new(PHASE_BUCKETS),
            )),
            connect: Family::new(
                "loadspec_http_connect_duration_seconds",
                "TCP connects a request waited for (a new or replaced connection).",
                SR,
                Buckets::new(PHASE_BUCKETS),
            ),
            waiting: Family::new(
                "loadspec_http_waiting_seconds",
                "Time to first byte: request written to the first response byte (k6 http_req_waiting).",
                SR,
                Buckets::new(PHASE_BUCKETS),
            ),
            retries: Family::new(
                "loadspec_http_retries_total",
                "Requests sent again because a kept-alive connection was found closed before any response byte.",
                SR,
                (),
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
            setup_runs: Family::new(
                "loadspec_setup_runs_total",
                "Runs of a scenario's setup steps (first logins, retries, re-logins), by result.",
                &["scenario", "result"],
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
            sla_latency_bucket: Family::new(
                "loadspec_sla_latency_bucket_info",
                "1 for each latency SLA: edge is the le of the duration histograms' bucket at its threshold.",
                &["target_quantile", "edge"],
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

    /// Use these latency buckets (`RawConfig::latency_buckets`: with the SLA edges) and export
    /// the SLA and prices. Call it with each (re)loaded config, between runs.
    pub fn configure(&self, buckets: &[f64], sla: &SlaConfig, prices: &PricesConfig) {
        self.set_buckets(buckets);
        self.set_sla(sla, prices);
    }

    /// Give the latency histograms these bounds. When they differ from the current ones the
    /// families start afresh (Prometheus' `rate()` reads that as a counter reset); handles
    /// taken before keep recording into the old ones, so call it between runs.
    pub fn set_buckets(&self, bounds: &[f64]) {
        let mut l = self.latency.write().unwrap_or_else(|e| e.into_inner());
        if l.bounds != bounds {
            *l = Arc::new(Latency::new(bounds));
        }
    }

    fn latency(&self) -> Arc<Latency> {
        self.latency
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Export the SLA and prices so rules compare against the config. The latency SLAs are
    /// also exported as the `le` of their bucket (label `edge`: promtool rejects an `le`
    /// label outside a histogram), which [`LoadMetrics::configure`] is given as
    /// an edge, so rules read the exact count of responses within each.
    pub fn set_sla(&self, sla: &SlaConfig, prices: &PricesConfig) {
        self.sla_latency_bucket.clear();
        for (q, d) in [("0.95", Some(sla.latency_p95)), ("0.99", sla.latency_p99)] {
            match d {
                Some(d) => {
                    let secs = crate::exposition::buckets::secs(d);
                    self.sla_latency.with_label_values(&[q]).set(secs);
                    self.sla_latency_bucket
                        .with_label_values(&[q, &family::le_value(secs)])
                        .set(1);
                }
                None => {
                    let _ = self.sla_latency.remove_label_values(&[q]);
                }
            }
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

    /// Make `stage` the only active stage of `scenario` in `loadspec_stage_info` (none with
    /// `None`): every other stage of the scenario, from this run or an earlier one (a sweep
    /// runs one plan per VU count), is removed, so dashboards annotate one stage at a time.
    pub fn set_stage(&self, scenario: &str, stage: Option<&str>) {
        self.stage_info.retain(|l| l[0] != scenario);
        if let Some(stage) = stage {
            self.stage_info.with_label_values(&[scenario, stage]).set(1);
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
            setup_ok: self.setup_runs.with_label_values(&[scenario, "success"]),
            setup_fail: self.setup_runs.with_label_values(&[scenario, "failure"]),
            iterations: self.iterations.with_label_values(&l),
            data_sent: self.data_sent.with_label_values(&l),
            data_received: self.data_received.with_label_values(&l),
            iteration_duration: self.latency().iteration.with_label_values(&l),
        }
    }

    fn step(&self, scenario: &str, request: &str) -> StepMetrics {
        // Create the pass/fail and failure series up front so rate() works from the start.
        let l = [scenario, request];
        StepMetrics::new(
            scenario,
            request,
            StepTimings {
                duration: self.latency().duration.with_label_values(&l),
                duration_max: self.duration_max.with_label_values(&l),
                tls_handshake: Arc::clone(&self.tls_handshake),
            },
            Phases {
                connect: self.connect.with_label_values(&l),
                waiting: self.waiting.with_label_values(&l),
                retries: self.retries.with_label_values(&l),
            },
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
        let latency = self.latency();
        let families: [&dyn Expose; 29] = [
            &self.arrival_rate_target,
            &self.checks,
            &self.config_reload_ok_family,
            &self.config_reloads,
            &self.data_received,
            &self.data_sent,
            &self.dropped,
            &self.connect,
            &self.duration_max,
            &latency.duration,
            &self.failures,
            &*self.requests,
            &self.retries,
            &*self.tls_handshake,
            &self.waiting,
            &latency.iteration,
            &self.iterations,
            &self.price_mem,
            &self.price_vcpu,
            &self.setup_runs,
            &self.sla_cpu,
            &self.sla_error_ratio,
            &self.sla_latency_bucket,
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
        process::ProcessCpu.expose(out);
    }
}

/// The latency histogram families, which share one set of buckets.
struct Latency {
    bounds: Vec<f64>,
    duration: Family<Histogram>,
    iteration: Family<Histogram>,
}

impl Latency {
    fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            duration: Family::new(
                "loadspec_http_request_duration_seconds",
                "Sending + waiting + receiving (k6 http_req_duration): from the send, or the intended start in the open model, to the last response byte, without the connect; responses only.",
                SR,
                Buckets::new(bounds),
            ),

            iteration: Family::new(
                "loadspec_iteration_duration_seconds",
                "Duration of whole iterations (all steps, without think time).",
                S,
                Buckets::new(bounds),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::exposition::buckets;

    fn scrape(m: &LoadMetrics) -> String {
        let mut out = Vec::new();
        m.expose(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// What a step and the exporter bench's 20 × 5 plan cost `/metrics` with the default
    /// buckets (docs/observability.md quotes these figures).
    #[test]
    fn series_per_step_with_the_default_buckets() {
        let bounds = buckets::DEFAULT;
        assert_eq!(bounds.len(), 43, "update docs/observability.md");
        let (sla, prices) = (SlaConfig::default(), PricesConfig::default());
        let count = |m: &LoadMetrics| {
            let t = scrape(m);
            (t.lines().filter(|l| !l.starts_with('#')).count(), t.len())
        };
        let m = LoadMetrics::new(bounds);
        m.configure(bounds, &sla, &prices);
        let (base, _) = count(&m);
        let step = m.step("s", "r");
        step.response(200);
        step.latency(0.1);
        let (one, _) = count(&m);
        // 43 buckets + +Inf + sum + count, the 10 s max, one status code, 10 failure reasons,
        // 2 check results.
        // ... plus the connect and waiting histograms (14 fixed buckets, +Inf, sum, count) and
        // the retry counter.
        assert_eq!(one - base, 46 + 1 + 1 + 10 + 2 + 2 * 17 + 1);
        let m = LoadMetrics::new(bounds);
        m.configure(bounds, &sla, &prices);
        for sc in 0..20 {
            let name = format!("scenario-{sc:02}");
            let _ = m.scenario(&name);
            for r in 0..5 {
                let step = m.step(&name, &format!("request-{r}"));
                step.response(200);
                step.latency(0.012345);
            }
        }
        let (series, bytes) = count(&m);
        eprintln!("20 scenarios x 5 requests: {series} series, {bytes} bytes");
        assert!((9000..11000).contains(&series), "{series}");
    }

    #[test]
    fn sla_latencies_are_bucket_edges_and_exported_with_their_le() {
        let prices = PricesConfig::default();
        let mut sla = SlaConfig {
            latency_p95: Duration::from_millis(1805),
            latency_p99: Some(Duration::from_secs(3)),
            ..SlaConfig::default()
        };
        let edges = |sla: &SlaConfig| {
            let e: Vec<f64> = [Some(sla.latency_p95), sla.latency_p99]
                .into_iter()
                .flatten()
                .map(buckets::secs)
                .collect();
            buckets::with_edges(&[0.5, 1.0, 2.5], &e)
        };
        let m = LoadMetrics::new(&edges(&sla));
        m.configure(&edges(&sla), &sla, &prices);
        let step = m.step("s", "r");
        step.latency(1.8);
        step.latency(1.81);
        step.latency(0.2);
        let t = scrape(&m);
        // The bucket at the p95 SLA counts exactly the responses within it: 2 of 3.
        for line in [
            r#"loadspec_http_request_duration_seconds_bucket{scenario="s",request="r",le="1.805"} 2"#,
            r#"loadspec_http_request_duration_seconds_bucket{scenario="s",request="r",le="3"} 3"#,
            r#"loadspec_sla_latency_bucket_info{target_quantile="0.95",edge="1.805"} 1"#,
            r#"loadspec_sla_latency_bucket_info{target_quantile="0.99",edge="3"} 1"#,
            r#"loadspec_sla_latency_seconds{target_quantile="0.95"} 1.805"#,
            r#"loadspec_http_request_duration_max_seconds{scenario="s",request="r"} 1.81"#,
        ] {
            assert!(t.lines().any(|l| l == line), "no {line} in:\n{t}");
        }
        // A reload with another SLA: new edges, the old info series gone, histograms afresh.
        sla.latency_p95 = Duration::from_millis(700);
        sla.latency_p99 = None;
        m.configure(&edges(&sla), &sla, &prices);
        let step = m.step("s", "r");
        step.latency(0.6);
        let t = scrape(&m);
        assert!(
            t.contains(r#"loadspec_http_request_duration_seconds_bucket{scenario="s",request="r",le="0.7"} 1"#),
            "{t}"
        );
        assert!(!t.contains("le=\"1.805\""), "{t}");
        assert!(!t.contains("target_quantile=\"0.99\""), "{t}");
        assert!(
            t.contains(r#"loadspec_sla_latency_bucket_info{target_quantile="0.95",edge="0.7"} 1"#),
            "{t}"
        );
    }
}
