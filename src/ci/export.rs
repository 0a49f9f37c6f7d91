//! `--summary-export FILE.json`: the end-of-run summary as one JSON document (schema in
//! docs/ci.md): totals, per-scenario and per-request figures, checks, stages and the SLA
//! verdict. The JUnit report is rendered from the same document, so both say the same.

use std::collections::BTreeMap;

use serde::Serialize;

use super::verdict::Verdict;
use crate::analysis::{LatencySummary, StageSummary};
use crate::config::Settings;
use crate::experiment::Outcome;
use crate::report::RunInfo;

/// Bumped when a field changes meaning or goes away (adding fields does not bump it).
pub const SCHEMA_VERSION: u32 = 1;

/// The whole document.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryExport {
    /// Always `loadspec-summary`.
    pub schema: &'static str,
    pub schema_version: u32,
    /// `loadspec <version>`.
    pub generator: String,
    /// Run id, mode, target (credentials, query and fragment stripped), start and end, notes.
    pub run: RunInfo,
    pub duration_seconds: f64,
    /// A drain (SIGTERM/SIGINT) cut the run short.
    pub interrupted: bool,
    pub totals: Totals,
    /// One entry per run of a scenario: a plan has one per scenario; a sweep or search has one
    /// per step or trial, in the order they ran.
    pub scenarios: Vec<ScenarioFigures>,
    /// One per scenario and request, summed over `scenarios`.
    pub checks: Vec<Check>,
    /// The measured stages (after the settle period), as in report.json.
    pub stages: Vec<StageSummary>,
    /// Sweep: the most VUs that stayed within the SLA.
    pub sweep_max_vus_within_sla: Option<u64>,
    /// Search: the cheapest passing spec.
    pub search_result: Option<SearchResult>,
    pub sla: SlaSection,
}

/// Counts over every scenario entry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub failed_checks: u64,
    /// failed_checks / requests, 0 when nothing completed.
    pub error_ratio: f64,
    /// Completed requests per second over the run.
    pub requests_per_second: f64,
    pub iterations: u64,
    pub dropped_iterations: u64,
    pub data_sent_bytes: u64,
    pub data_received_bytes: u64,
    /// Status code (or failure reason) to count.
    pub status: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioFigures {
    pub scenario: String,
    pub requests: u64,
    pub failed_checks: u64,
    pub error_ratio: f64,
    pub iterations: u64,
    pub dropped_iterations: u64,
    pub data_sent_bytes: u64,
    pub data_received_bytes: u64,
    /// From the scenario's HDR histogram, seconds; responses only.
    pub latency_seconds: LatencySummary,
    pub status: BTreeMap<String, u64>,
    pub requests_by_name: Vec<RequestFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestFigures {
    pub request: String,
    pub requests: u64,
    pub failed_checks: u64,
    pub error_ratio: f64,
    /// Requests that got a response.
    pub responses: u64,
    /// Mean latency of the responses, seconds; `null` when none came.
    pub latency_avg_seconds: Option<f64>,
    pub status: BTreeMap<String, u64>,
}

/// A request's check: it passes on an expected status with every capture found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub scenario: String,
    pub request: String,
    pub passes: u64,
    pub fails: u64,
    /// fails / (passes + fails).
    pub fail_ratio: f64,
    /// fail_ratio ≤ sla.error_ratio (the JUnit testcase fails otherwise).
    pub within_sla: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    pub cpus: f64,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlaSection {
    pub latency_p95_seconds: f64,
    pub latency_p99_seconds: Option<f64>,
    pub error_ratio: f64,
    /// The verdict with every criterion and its measured value.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The exit code this run asks for (0 or 99).
    pub exit_code: u8,
    /// The summary's last line, uncoloured.
    pub line: String,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

impl SummaryExport {
    pub fn new(settings: &Settings, run: &RunInfo, outcome: &Outcome, verdict: &Verdict) -> Self {
        let sla = &settings.raw.sla;
        let mut totals = Totals::default();
        let mut checks: Vec<Check> = Vec::new();
        let scenarios = outcome
            .totals
            .iter()
            .map(|t| {
                totals.requests += t.requests;
                totals.failed_checks += t.failed_checks;
                totals.iterations += t.iterations;
                totals.dropped_iterations += t.dropped_iterations;
                totals.data_sent_bytes += t.data_sent_bytes;
                totals.data_received_bytes += t.data_received_bytes;
                add_counts(&mut totals.status, &t.status);
                for r in &t.per_request {
                    let passes = r.requests - r.failed_checks;
                    match checks
                        .iter_mut()
                        .find(|c| c.scenario == t.scenario && c.request == r.request)
                    {
                        Some(c) => {
                            c.passes += passes;
                            c.fails += r.failed_checks;
                        }
                        None => checks.push(Check {
                            scenario: t.scenario.clone(),
                            request: r.request.clone(),
                            passes,
                            fails: r.failed_checks,
                            fail_ratio: 0.0,
                            within_sla: true,
                        }),
                    }
                }
                ScenarioFigures {
                    scenario: t.scenario.clone(),
                    requests: t.requests,
                    failed_checks: t.failed_checks,
                    error_ratio: ratio(t.failed_checks, t.requests),
                    iterations: t.iterations,
                    dropped_iterations: t.dropped_iterations,
                    data_sent_bytes: t.data_sent_bytes,
                    data_received_bytes: t.data_received_bytes,
                    latency_seconds: t.latency.clone(),
                    status: t.status.clone(),
                    requests_by_name: t
                        .per_request
                        .iter()
                        .map(|r| RequestFigures {
                            request: r.request.clone(),
                            requests: r.requests,
                            failed_checks: r.failed_checks,
                            error_ratio: ratio(r.failed_checks, r.requests),
                            responses: r.responses,
                            latency_avg_seconds: (r.responses > 0)
                                .then(|| r.latency_sum_seconds / r.responses as f64),
                            status: r.status.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        for c in &mut checks {
            c.fail_ratio = ratio(c.fails, c.passes + c.fails);
            c.within_sla = c.fail_ratio <= sla.error_ratio;
        }
        totals.error_ratio = ratio(totals.failed_checks, totals.requests);
        let secs = outcome.elapsed.as_secs_f64();
        totals.requests_per_second = if secs > 0.0 {
            totals.requests as f64 / secs
        } else {
            0.0
        };
        let mut run = run.clone();
        run.target = run.target.as_deref().map(crate::report::redact_url);
        Self {
            schema: "loadspec-summary",
            schema_version: SCHEMA_VERSION,
            generator: format!("loadspec {}", env!("CARGO_PKG_VERSION")),
            run,
            duration_seconds: secs,
            interrupted: outcome.interrupted,
            totals,
            scenarios,
            checks,
            stages: outcome.stages.clone(),
            sweep_max_vus_within_sla: outcome.max_vus_within_sla,
            search_result: outcome
                .search_result
                .map(|(cpus, memory_bytes)| SearchResult { cpus, memory_bytes }),
            sla: SlaSection {
                latency_p95_seconds: sla.latency_p95.as_secs_f64(),
                latency_p99_seconds: sla.latency_p99.map(|d| d.as_secs_f64()),
                error_ratio: sla.error_ratio,
                verdict: verdict.clone(),
                exit_code: verdict.exit_code(),
                line: verdict.line(false),
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
