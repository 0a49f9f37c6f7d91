//! The handles the engine records into: one [`ScenarioMetrics`] per scenario and one
//! [`StepMetrics`] per step, resolved once so a request is a few relaxed atomic adds. They are
//! built on [`crate::exposition::family`]; which families they belong to (names, help, labels)
//! is decided by [`crate::metrics`], which implements [`Meters`] for its `LoadMetrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use super::FailureReason;
use crate::exposition::family::{Counter, Family, Gauge, GaugeF, Histogram, WindowMax};

/// Where a scenario gets its handles from.
pub trait Meters {
    /// Handles for one scenario.
    fn scenario(&self, scenario: &str) -> ScenarioMetrics;
    /// Handles for one step (request name) of a scenario.
    fn step(&self, scenario: &str, request: &str) -> StepMetrics;
}

/// Handles for one scenario: VUs, arrival rate, iterations and bytes.
pub struct ScenarioMetrics {
    pub vus: Gauge,
    pub vus_target: Gauge,
    pub arrival_rate_target: GaugeF,
    pub dropped: Counter,
    /// `loadspec_setup_runs_total{result="success"|"failure"}`.
    pub setup_ok: Counter,
    pub setup_fail: Counter,
    pub iterations: Counter,
    pub data_sent: Counter,
    pub data_received: Counter,
    pub iteration_duration: Histogram,
}

/// The phases of a request that k6 reports apart from its duration, and the silent retries.
pub struct Phases {
    /// `loadspec_http_connect_duration_seconds`: TCP connects this request waited for.
    pub connect: Histogram,
    /// `loadspec_http_waiting_seconds`: request sent to first response byte (TTFB).
    pub waiting: Histogram,
    /// `loadspec_http_retries_total`: resends after a kept-alive connection was found closed.
    pub retries: Counter,
}

/// Status codes 100..=599 map to slots; the counter for a code is created on first use.
const CODES: usize = 500;

/// The timings of one step: the request itself (histogram and windowed maximum) and the
/// set-up of the connections it opened.
pub struct StepTimings {
    /// From the (intended) send to the last response byte, without the connection's set-up.
    pub duration: Histogram,
    pub duration_max: WindowMax,
    /// TLS handshakes of the connections this step opened (labels scenario, request): its
    /// series is made at the step's first handshake, so plain-http plans export none.
    pub tls_handshake: Arc<Family<Histogram>>,
}

/// Handles for one step (request name) of a scenario: latency, status codes, failures by
/// reason, and checks.
pub struct StepMetrics {
    /// Sending + waiting + receiving (k6 `http_req_duration`), from the intended start in
    /// the open model; never the connect.
    pub duration: Histogram,
    tls_handshake: Arc<Family<Histogram>>,
    tls_handshake_series: OnceLock<Histogram>,
    duration_max: WindowMax,
    pub phases: Phases,
    codes: Box<[OnceLock<Counter>; CODES]>,
    codes_vec: Arc<Family<Counter>>,
    scenario: String,
    request: String,
    failures: [Counter; FailureReason::ALL.len()],
    pub check_pass: Counter,
    pub check_fail: Counter,
}

impl StepMetrics {
    /// `duration` is the latency histogram and the windowed maximum of the same latencies;
    /// `codes` is the family of responses by status code (labels scenario, request, code);
    /// `failure` gives the counter of each [`FailureReason`], created now so `rate()` works
    /// from the start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &str,
        request: &str,
        timings: StepTimings,
        phases: Phases,
        codes: Arc<Family<Counter>>,
        failure: impl FnMut(FailureReason) -> Counter,
        check_pass: Counter,
        check_fail: Counter,
    ) -> Self {
        Self {
            duration: timings.duration,
            duration_max: timings.duration_max,
            tls_handshake: timings.tls_handshake,
            tls_handshake_series: OnceLock::new(),
            phases,
            codes: Box::new(std::array::from_fn(|_| OnceLock::new())),
            codes_vec: codes,
            scenario: scenario.to_string(),
            request: request.to_string(),
            failures: FailureReason::ALL.map(failure),
            check_pass,
            check_fail,
        }
    }

    /// Record the latency of a response: the histogram and the windowed maximum.
    pub fn latency(&self, secs: f64) {
        self.duration.observe(secs);
        self.duration_max.observe(secs);
    }

    /// Record the TLS handshake of a connection this step opened.
    pub fn tls_handshake(&self, secs: f64) {
        self.tls_handshake_series
            .get_or_init(|| {
                self.tls_handshake
                    .with_label_values(&[self.scenario.as_str(), self.request.as_str()])
            })
            .observe(secs);
    }

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
