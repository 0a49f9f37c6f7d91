//! The end-of-run summary printed to stdout, like k6's: per scenario the whole-run figures,
//! then the stage table, the fitted models and the recommendation.

use std::fmt::Write as _;

use super::plan::ScenarioTotals;
use crate::analysis::{CapacityAnalysis, StageSummary};
use crate::report::tables::{self, Table};

fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

/// Aligned plain-text table.
pub fn render_table(t: &Table) -> String {
    let cols = t.headers.len();
    let mut w: Vec<usize> = t.headers.iter().map(|h| h.chars().count()).collect();
    for r in &t.rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from(" ");
        for (i, c) in cells.iter().enumerate().take(cols) {
            let pad = w[i] - c.chars().count();
            let _ = write!(s, " {c}{} ", " ".repeat(pad));
        }
        s.trim_end().to_string()
    };
    let mut out = format!("{}\n{}\n", t.title, line(&t.headers));
    let _ = writeln!(
        out,
        "  {}",
        w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for r in &t.rows {
        let _ = writeln!(out, "{}", line(r));
    }
    if let Some(c) = &t.caption {
        let _ = writeln!(out, "  {c}");
    }
    out
}

/// The whole summary.
pub fn render(
    totals: &[ScenarioTotals],
    elapsed: std::time::Duration,
    stages: &[StageSummary],
    analysis: &CapacityAnalysis,
) -> String {
    let mut out = String::new();
    let secs = elapsed.as_secs_f64().max(1e-9);
    for t in totals {
        let l = &t.latency;
        let pass = t.requests - t.failed_checks;
        let _ = writeln!(out, "\n  scenario: {}", t.scenario);
        let _ = writeln!(
            out,
            "    checks.........: {:.2}% ({pass} passed, {} failed)",
            if t.requests > 0 {
                pass as f64 * 100.0 / t.requests as f64
            } else {
                0.0
            },
            t.failed_checks
        );
        let _ = writeln!(
            out,
            "    requests.......: {} ({:.1}/s)",
            t.requests,
            t.requests as f64 / secs
        );
        let _ = writeln!(
            out,
            "    latency........: avg={:.2}ms p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms",
            l.avg * 1e3,
            l.p50 * 1e3,
            l.p95 * 1e3,
            l.p99 * 1e3,
            l.max * 1e3
        );
        let _ = writeln!(
            out,
            "    iterations.....: {} ({:.1}/s)",
            t.iterations,
            t.iterations as f64 / secs
        );
        if t.dropped_iterations > 0 {
            let _ = writeln!(out, "    dropped........: {}", t.dropped_iterations);
        }
        let _ = writeln!(
            out,
            "    data...........: sent {}, received {}",
            bytes(t.data_sent_bytes),
            bytes(t.data_received_bytes)
        );
        let mix: Vec<String> = t.status.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "    status.........: {}", mix.join(" "));
    }
    out.push('\n');
    for a in &analysis.alerts {
        let _ = writeln!(out, "  ! {a}");
    }
    if let Some(snippet) = &analysis.sweep_suggestion {
        for l in snippet.lines() {
            let _ = writeln!(out, "      {l}");
        }
    }
    if !analysis.alerts.is_empty() {
        out.push('\n');
    }
    if !stages.is_empty() {
        for t in [
            tables::stages(stages, analysis),
            tables::models(analysis),
            tables::recommendations(analysis),
            tables::situations(analysis),
        ] {
            if !t.rows.is_empty() {
                out.push_str(&render_table(&t));
                out.push('\n');
            }
        }
        for f in tables::findings(analysis) {
            let _ = writeln!(out, "  - {f}");
        }
    }
    out
}
