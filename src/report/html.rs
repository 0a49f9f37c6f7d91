//! report.html: one self-contained page (inline CSS, inline SVG, no scripts) with the
//! findings, four charts (TPS and p95 against VUs; CPU and memory against VUs with the fitted
//! lines and the knee) and every table.

use std::fmt::Write;

use super::format::{escape, trim_float};
use super::svg::{Chart, Marker, Series, Style, Unit};
use super::tables::{self, Table};
use super::RunInfo;
use crate::analysis::{CapacityAnalysis, StageSummary};

const BLUE: &str = "#2563eb";
const ORANGE: &str = "#ea580c";
const GREEN: &str = "#16a34a";
const RED: &str = "#dc2626";
const GREY: &str = "#64748b";
const PURPLE: &str = "#7c3aed";

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f8fafc;color:#0f172a}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 10px}
.run{color:#475569;margin:0 0 16px;padding:0;list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px}
.findings{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px 12px 32px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:16px}
.charts figure{margin:0;background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:8px}
svg.chart{width:100%;height:auto;display:block}
.ct{font-size:14px;font-weight:600;fill:#0f172a}.yt{font-size:11px;text-anchor:end;fill:#475569}
.xt{font-size:11px;text-anchor:middle;fill:#475569}.xl,.yl{font-size:12px;text-anchor:middle;fill:#334155}
.ml{font-size:11px;text-anchor:start}.kl{font-size:11px;font-weight:600}.lg{font-size:11px;fill:#334155}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e2e8f0;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
th{background:#f1f5f9;font-weight:600}tr.best td{background:#ecfdf5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.caption{color:#64748b;font-size:12px;margin:4px 0 0}
.warn{background:#fffbeb;border:1px solid #fcd34d;border-radius:8px;padding:8px 16px 8px 32px}
"#;

/// Cells that start with a digit, `~` or a currency sign are right-aligned numbers.
fn is_numeric(s: &str) -> bool {
    s.chars().next().is_some_and(|c| {
        c.is_ascii_digit() || c == '~' || c == '$' || c == '−' || c == '+' || c == '-'
    }) && s.chars().count() < 24
}

/// `mark_best`: highlight rows whose last cell carries the cost table's ★.
fn table(out: &mut String, t: &Table, mark_best: bool) {
    let _ = write!(out, "<h2>{}</h2>", escape(&t.title));
    if t.rows.is_empty() {
        out.push_str("<p class=\"caption\">No data.</p>");
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in &t.headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        let best = mark_best && r.last().is_some_and(|c| c.starts_with('★'));
        out.push_str(if best { "<tr class=\"best\">" } else { "<tr>" });
        for c in r {
            let class = if is_numeric(c) { " class=\"num\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if let Some(c) = &t.caption {
        let _ = write!(out, "<p class=\"caption\">{}</p>", escape(c));
    }
}

fn measured(name: &str, color: &'static str, pts: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_string(),
        color,
        style: Style::Measured,
        points: pts,
    }
}

/// A fitted line drawn from 0 VUs to the widest VUs shown.
fn fitted(
    name: &str,
    color: &'static str,
    f: &crate::analysis::fit::LinearFit,
    max_x: f64,
) -> Series {
    Series {
        name: name.to_string(),
        color,
        style: Style::Fitted,
        points: vec![
            (0.0, f.predict(0.0).max(0.0)),
            (max_x, f.predict(max_x).max(0.0)),
        ],
    }
}

/// The knee and every container event, as vertical lines at their stage's VUs.
fn knee_marker(a: &CapacityAnalysis) -> Vec<Marker> {
    let knee = a.knee.vus.map(|v| Marker {
        at: v,
        label: format!("knee {} VUs", trim_float(v)),
        color: RED,
    });
    let events = a.events.iter().map(|e| Marker {
        at: e.vus,
        label: format!("{} {} +{:.0}s", e.event.kind, e.stage, e.event.at_seconds),
        color: PURPLE,
    });
    knee.into_iter().chain(events).collect()
}

/// The four charts.
pub fn charts(a: &CapacityAnalysis) -> Vec<Chart> {
    let p = &a.points;
    let max_x = p.iter().map(|p| p.vus).fold(0.0, f64::max);
    let max_mem = p.iter().filter_map(|p| p.memory_bytes).fold(0.0, f64::max);
    let col = |f: fn(&crate::analysis::points::StagePoint) -> Option<f64>| -> Vec<(f64, f64)> {
        p.iter().filter_map(|q| Some((q.vus, f(q)?))).collect()
    };
    let mut tps = vec![
        measured("TPS (successful)", BLUE, col(|q| Some(q.tps))),
        measured(
            "requests/s (with failures)",
            ORANGE,
            col(|q| Some(q.request_rate)),
        ),
    ];
    if let Some(f) = &a.models.tps {
        tps.push(fitted("TPS per VU × VUs (below knee)", GREY, f, max_x));
    }
    let mut cpu = vec![measured("CPU cores", ORANGE, col(|q| q.cpu_cores))];
    if let Some(f) = &a.models.cpu {
        cpu.push(fitted("fit: base + per VU × VUs", GREY, f, max_x));
    }
    let mut mem = vec![measured("memory", PURPLE, col(|q| q.memory_bytes))];
    if let Some(f) = &a.models.memory {
        mem.push(fitted("fit: base + per VU × VUs", GREY, f, max_x));
    }
    let limit = |v: Option<f64>, label: &str, color| -> Vec<Marker> {
        v.map(|at| Marker {
            at,
            label: label.to_string(),
            color,
        })
        .into_iter()
        .collect()
    };
    let ts = a.tested_spec.as_ref();
    let cpu_limit = ts.and_then(|t| t.cpu_limit_cores);
    let mut cpu_markers = limit(cpu_limit, "limit", GREY);
    cpu_markers.extend(limit(
        cpu_limit.map(|l| l * a.sla.cpu_utilization),
        &format!("SLA {:.0}%", a.sla.cpu_utilization * 100.0),
        RED,
    ));
    vec![
        Chart {
            title: "Throughput (TPS) vs VUs".into(),
            x_label: "VUs".into(),
            y_label: "TPS".into(),
            series: tps,
            x_markers: knee_marker(a),
            y_markers: vec![],
            y_unit: Unit::plain(),
        },
        Chart {
            title: "Latency vs VUs".into(),
            x_label: "VUs".into(),
            y_label: "latency".into(),
            series: vec![
                // A stage without responses has no latency: no point, not a point at 0.
                measured("p95", RED, col(|q| q.latency_p95)),
                measured("average", GREEN, col(|q| q.latency_avg)),
            ],
            x_markers: knee_marker(a),
            y_markers: limit(Some(a.sla.latency_p95.as_secs_f64()), "SLA p95", RED),
            y_unit: Unit::milliseconds(),
        },
        Chart {
            title: format!("CPU vs VUs ({})", a.source),
            x_label: "VUs".into(),
            y_label: "cores".into(),
            series: cpu,
            x_markers: knee_marker(a),
            y_markers: cpu_markers,
            y_unit: Unit::plain(),
        },
        Chart {
            title: format!("Memory vs VUs ({})", a.source),
            x_label: "VUs".into(),
            y_label: "memory".into(),
            series: mem,
            x_markers: knee_marker(a),
            y_markers: limit(ts.and_then(|t| t.memory_limit_bytes), "limit", GREY),
            y_unit: Unit::bytes(max_mem),
        },
    ]
}

/// The whole HTML page.
pub fn render_html(run: &RunInfo, stages: &[StageSummary], a: &CapacityAnalysis) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>loadspec report {}</title><style>{CSS}</style></head><body><main>",
        escape(&run.run_id)
    );
    let _ = write!(
        out,
        "<h1>loadspec capacity report: {}</h1><ul class=\"run\">",
        escape(&run.run_id)
    );
    for (k, v) in run.fields() {
        let _ = write!(out, "<li><b>{}:</b> {}</li>", escape(k), escape(&v));
    }
    out.push_str("</ul>");
    if !a.alerts.is_empty() {
        out.push_str("<h2>Read this first</h2><ul class=\"warn\">");
        for w in &a.alerts {
            let _ = write!(out, "<li>{}</li>", escape(w));
        }
        out.push_str("</ul>");
        if let Some(snippet) = &a.sweep_suggestion {
            let _ = write!(out, "<pre>{}</pre>", escape(snippet));
        }
    }
    out.push_str("<h2>Findings</h2><ul class=\"findings\">");
    for f in tables::findings(a) {
        let _ = write!(out, "<li>{}</li>", escape(&f));
    }
    out.push_str("</ul><h2>Charts</h2><div class=\"charts\">");
    for c in charts(a) {
        let _ = write!(out, "<figure>{}</figure>", c.render());
    }
    out.push_str("</div>");
    for t in tables::all(stages, a) {
        table(&mut out, &t, t.title == "Cost");
    }
    if !a.warnings.is_empty() {
        out.push_str("<h2>Warnings</h2><ul class=\"warn\">");
        for w in &a.warnings {
            let _ = write!(out, "<li>{}</li>", escape(w));
        }
        out.push_str("</ul>");
    }
    out.push_str("</main></body></html>\n");
    out
}
