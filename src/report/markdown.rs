//! report.md: the run, the findings, then every table as a GitHub-flavoured Markdown table.

use std::fmt::Write;

use super::tables::{self, Table};
use super::RunInfo;
use crate::analysis::{CapacityAnalysis, StageSummary};

/// A cell made safe for a Markdown table: pipes escaped, line breaks flattened.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn table(out: &mut String, t: &Table) {
    let _ = writeln!(out, "## {}\n", t.title);
    if t.rows.is_empty() {
        let _ = writeln!(out, "_No data._\n");
        return;
    }
    let row = |cells: &[String]| {
        format!(
            "| {} |",
            cells
                .iter()
                .map(|c| cell(c))
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    let _ = writeln!(out, "{}", row(&t.headers));
    let _ = writeln!(out, "|{}", "---|".repeat(t.headers.len()));
    for r in &t.rows {
        let _ = writeln!(out, "{}", row(r));
    }
    if let Some(c) = &t.caption {
        let _ = writeln!(out, "\n{c}");
    }
    out.push('\n');
}

/// The whole Markdown report.
pub fn render_markdown(run: &RunInfo, stages: &[StageSummary], a: &CapacityAnalysis) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# loadspec capacity report: {}\n", cell(&run.run_id));
    for (k, v) in run.fields() {
        let _ = writeln!(out, "- **{k}:** {}", cell(&v));
    }
    out.push('\n');
    if !a.alerts.is_empty() {
        let _ = writeln!(out, "## Read this first\n");
        for w in &a.alerts {
            let _ = writeln!(out, "- **{}**", cell(w));
        }
        out.push('\n');
        if let Some(snippet) = &a.sweep_suggestion {
            let _ = writeln!(out, "```toml\n{}```\n", snippet);
        }
    }
    let _ = writeln!(out, "## Findings\n");
    for f in tables::findings(a) {
        let _ = writeln!(out, "- {}", cell(&f));
    }
    out.push('\n');
    for t in tables::all(stages, a) {
        table(&mut out, &t);
    }
    if !a.warnings.is_empty() {
        let _ = writeln!(out, "## Warnings\n");
        for w in &a.warnings {
            let _ = writeln!(out, "- {}", cell(w));
        }
    }
    out
}
