//! The SLA verdict of one finished run, criterion by criterion, and the summary's last line
//! (`SLA broken: ✗ p95 2.41 s > 2 s · ✓ errors 0.2 % ≤ 1 %`).
//!
//! - plan: per scenario, over the whole run (as k6 thresholds): p95, p99 when
//!   `sla.latency_p99` is set, and the error ratio (failed checks / completed requests). A
//!   scenario that completed no request fails on that alone.
//! - sweep: passes when at least one tested VU count stayed within the SLA.
//! - search: passes when a candidate served the VUs within the SLA.

use serde::{Deserialize, Serialize};

use crate::config::raw::OnFinish;
use crate::config::Settings;
use crate::experiment::config::Mode;
use crate::experiment::{Outcome, ScenarioTotals};
use crate::units::trim_float;

/// The exit code of a run that ended with the SLA broken (k6 uses the same for failed
/// thresholds); 2 is a config error and 1 a runtime failure.
pub const EXIT_SLA_BREACHED: u8 = 99;

/// What a criterion's `measured` and `limit` are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Seconds,
    /// 0..1.
    Ratio,
    Count,
    Cpus,
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    /// `p95`, `p99`, `errors`, `requests`, `sweep` or `search`.
    pub name: String,
    /// The scenario it was measured on.
    pub scenario: String,
    pub passed: bool,
    /// What was measured, in `unit`; `None` when nothing was (a sweep with no passing stage).
    pub measured: Option<f64>,
    /// The bound it was held to, in `unit`; `None` for sweep and search.
    pub limit: Option<f64>,
    pub unit: Unit,
    /// The text shown in the summary, without the mark: `p95 2.41 s > 2 s`.
    pub text: String,
}

impl Criterion {
    /// The text with its mark: `✓ …` or `✗ …`, coloured when asked.
    pub fn marked(&self, color: bool) -> String {
        let (mark, code) = if self.passed {
            ("✓", "32")
        } else {
            ("✗", "31")
        };
        paint(&format!("{mark} {}", self.text), code, color)
    }
}

/// The verdict of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Every criterion passed.
    pub passed: bool,
    /// `sla.fail_on_breach`.
    pub fail_on_breach: bool,
    /// The run ends the process (`on_finish = "exit"`), so its verdict sets the exit code. The
    /// daemon modes (`idle`, `repeat`) never exit by themselves and never gate.
    pub gating: bool,
    pub criteria: Vec<Criterion>,
}

impl Verdict {
    /// Judge a finished run against the SLA of the settings it ran with.
    pub fn evaluate(settings: &Settings, outcome: &Outcome) -> Self {
        let sla = &settings.raw.sla;
        let exp = &settings.raw.experiment;
        let criteria = match exp.mode {
            Mode::Plan => plan(&outcome.totals, sla),
            Mode::Sweep => vec![sweep(outcome)],
            Mode::Search => vec![search(outcome, exp.search.vus)],
        };
        Self {
            passed: criteria.iter().all(|c| c.passed),
            fail_on_breach: sla.fail_on_breach,
            gating: settings.raw.lifecycle.on_finish == OnFinish::Exit,
            criteria,
        }
    }

    /// The process exit code this verdict asks for: 99 when the SLA broke, the run gates and
    /// `fail_on_breach` is on; else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.passed && self.gating && self.fail_on_breach {
            EXIT_SLA_BREACHED
        } else {
            0
        }
    }

    /// The summary's last line.
    pub fn line(&self, color: bool) -> String {
        let head = if self.passed {
            paint("SLA met:", "1;32", color)
        } else {
            paint("SLA broken:", "1;31", color)
        };
        let parts: Vec<String> = self.criteria.iter().map(|c| c.marked(color)).collect();
        let mut line = format!("{head} {}", parts.join(" · "));
        if !self.passed && !self.gating {
            line.push_str(" (not gating: on_finish is not \"exit\")");
        } else if !self.passed && !self.fail_on_breach {
            line.push_str(" (not gating: sla.fail_on_breach = false)");
        }
        line
    }
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// `2.41 s`, `412.5 ms`.
pub fn seconds(v: f64) -> String {
    if v >= 1.0 {
        format!("{} s", trim_float(v))
    } else {
        let ms = format!("{:.1}", v * 1e3);
        format!("{} ms", ms.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// `0.2 %`, `100 %`.
pub fn percent(ratio: f64) -> String {
    let p = format!("{:.2}", ratio * 100.0);
    format!("{} %", p.trim_end_matches('0').trim_end_matches('.'))
}

fn bound(
    name: &str,
    scenario: &str,
    prefix: &str,
    measured: f64,
    limit: f64,
    unit: Unit,
) -> Criterion {
    let passed = measured <= limit;
    let show = |v| match unit {
        Unit::Ratio => percent(v),
        _ => seconds(v),
    };
    Criterion {
        name: name.into(),
        scenario: scenario.into(),
        passed,
        measured: Some(measured),
        limit: Some(limit),
        unit,
        text: format!(
            "{prefix}{name} {} {} {}",
            show(measured),
            if passed { "≤" } else { ">" },
            show(limit)
        ),
    }
}

fn plan(totals: &[ScenarioTotals], sla: &crate::config::SlaConfig) -> Vec<Criterion> {
    let mut out = Vec::new();
    for t in totals {
        // With several scenarios each criterion names its scenario.
        let prefix = if totals.len() > 1 {
            format!("{} ", t.scenario)
        } else {
            String::new()
        };
        if t.requests == 0 {
            out.push(Criterion {
                name: "requests".into(),
                scenario: t.scenario.clone(),
                passed: false,
                measured: Some(0.0),
                limit: None,
                unit: Unit::Count,
                text: format!("{prefix}requests 0 (none completed)"),
            });
            continue;
        }
        let s = &t.scenario;
        out.push(bound(
            "p95",
            s,
            &prefix,
            t.latency.p95,
            sla.latency_p95.as_secs_f64(),
            Unit::Seconds,
        ));
        if let Some(p99) = sla.latency_p99 {
            out.push(bound(
                "p99",
                s,
                &prefix,
                t.latency.p99,
                p99.as_secs_f64(),
                Unit::Seconds,
            ));
        }
        out.push(bound(
            "errors",
            s,
            &prefix,
            t.failed_checks as f64 / t.requests as f64,
            sla.error_ratio,
            Unit::Ratio,
        ));
    }
    out
}

/// Why the stage at `i` broke the SLA, as `vus-10: p95 2410 ms > SLA 2000 ms`.
fn why(outcome: &Outcome, i: usize) -> String {
    match (outcome.stages.get(i), outcome.stage_verdicts.get(i)) {
        (Some(st), Some(Some(w))) => format!("{}: {w}", st.stage),
        _ => "no stage ran".into(),
    }
}

fn sweep(outcome: &Outcome) -> Criterion {
    let passed = outcome.max_vus_within_sla.is_some();
    let text = match outcome.max_vus_within_sla {
        Some(v) => format!("sweep: {v} VUs within the SLA"),
        // The smallest VU count is the most telling failure: nothing held.
        None => format!("sweep: no VU count within the SLA ({})", why(outcome, 0)),
    };
    Criterion {
        name: "sweep".into(),
        scenario: outcome.scenario.clone(),
        passed,
        measured: outcome.max_vus_within_sla.map(|v| v as f64),
        limit: None,
        unit: Unit::Count,
        text,
    }
}

fn search(outcome: &Outcome, vus: u64) -> Criterion {
    let passed = outcome.search_result.is_some();
    let text = match outcome.search_result {
        Some((cpus, _)) => format!(
            "search: {} cpus serve {vus} VUs within the SLA",
            trim_float(cpus)
        ),
        // The last trial is the closest the search got.
        None => format!(
            "search: no candidate serves {vus} VUs within the SLA ({})",
            why(outcome, outcome.stages.len().saturating_sub(1))
        ),
    };
    Criterion {
        name: "search".into(),
        scenario: outcome.scenario.clone(),
        passed,
        measured: outcome.search_result.map(|(c, _)| c),
        limit: None,
        unit: Unit::Cpus,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::LatencySummary;

    fn totals(name: &str, requests: u64, failed: u64, p95: f64) -> ScenarioTotals {
        ScenarioTotals {
            scenario: name.into(),
            iterations: requests,
            requests,
            failed_checks: failed,
            dropped_iterations: 0,
            data_sent_bytes: 0,
            data_received_bytes: 0,
            latency: LatencySummary {
                p95,
                p99: p95 * 1.5,
                ..Default::default()
            },
            status: Default::default(),
            per_request: Vec::new(),
        }
    }

    #[test]
    fn plan_criteria_carry_the_measured_values() {
        let sla = crate::config::SlaConfig {
            latency_p99: Some(std::time::Duration::from_secs(5)),
            ..Default::default()
        };
        let c = plan(&[totals("s3", 1000, 2, 2.41)], &sla);
        let texts: Vec<String> = c.iter().map(|c| c.marked(false)).collect();
        assert_eq!(
            texts,
            [
                "✗ p95 2.41 s > 2 s",
                "✓ p99 3.615 s ≤ 5 s",
                "✓ errors 0.2 % ≤ 1 %"
            ]
        );
        let v = Verdict {
            passed: c.iter().all(|c| c.passed),
            fail_on_breach: true,
            gating: true,
            criteria: c,
        };
        assert_eq!(v.exit_code(), 99);
        assert_eq!(
            v.line(false),
            "SLA broken: ✗ p95 2.41 s > 2 s · ✓ p99 3.615 s ≤ 5 s · ✓ errors 0.2 % ≤ 1 %"
        );
        assert!(v.line(true).contains("\x1b[31m✗ p95"));
        let off = Verdict {
            fail_on_breach: false,
            ..v.clone()
        };
        assert_eq!(off.exit_code(), 0);
        assert!(off
            .line(false)
            .ends_with("(not gating: sla.fail_on_breach = false)"));
        let daemon = Verdict { gating: false, ..v };
        assert_eq!(daemon.exit_code(), 0);
    }

    #[test]
    fn several_scenarios_are_named_and_an_empty_one_fails() {
        let c = plan(
            &[totals("a", 10, 0, 0.0125), totals("b", 0, 0, 0.0)],
            &crate::config::SlaConfig::default(),
        );
        let texts: Vec<String> = c.iter().map(|c| c.marked(false)).collect();
        assert_eq!(
            texts,
            [
                "✓ a p95 12.5 ms ≤ 2 s",
                "✓ a errors 0 % ≤ 1 %",
                "✗ b requests 0 (none completed)"
            ]
        );
    }

    #[test]
    fn every_request_failing_breaks_the_error_bound() {
        let c = plan(
            &[totals("s", 40, 40, 0.002)],
            &crate::config::SlaConfig::default(),
        );
        assert!(!c[1].passed);
        assert_eq!(c[1].text, "errors 100 % > 1 %");
        assert_eq!(c[1].measured, Some(1.0));
    }
}
