//! The report's tables as plain rows of text, built once from the analysis so the Markdown and
//! HTML renderers show the same figures with the same formatting.

use std::collections::BTreeMap;

use super::format::{format_bytes, trim_float};
use crate::analysis::fit::LinearFit;
use crate::analysis::points::Exclusion;
use crate::analysis::{CapacityAnalysis, StageSummary};

/// A titled table of text cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// A sentence under the table (units, how to read it).
    pub caption: Option<String>,
}

impl Table {
    fn new(title: &str, headers: &[&str]) -> Self {
        Self {
            title: title.to_string(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            caption: None,
        }
    }
}

pub fn ms(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{} s", trim_float(seconds))
    } else {
        format!("{:.2} ms", seconds * 1e3)
    }
}

pub fn pct(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".to_string())
}

/// Money with a `$` for USD and the code after the number otherwise.
pub fn money(v: f64, currency: &str, decimals: usize) -> String {
    if currency.eq_ignore_ascii_case("USD") {
        format!("${v:.decimals$}")
    } else {
        format!("{v:.decimals$} {currency}")
    }
}

/// Cost per TPS has tiny values ($0.00092): five decimals, or more when needed for two
/// significant digits.
pub fn money_small(v: f64, currency: &str) -> String {
    let decimals = if v > 0.0 && v < 1e-4 {
        (-v.log10()).ceil() as usize + 1
    } else {
        5
    };
    money(v, currency, decimals.min(10))
}

/// One row per stage, in run order, like the seed's result table.
pub fn stages(stages: &[StageSummary], a: &CapacityAnalysis) -> Table {
    let mut t = Table::new(
        "Stages",
        &[
            "Test", "VUs", "Duration", "Avg", "p95", "Max", "CPU", "Memory", "TPS", "Req/s",
            "Errors", "Note",
        ],
    );
    let key = |sc: &str, st: &str| (sc.to_string(), st.to_string());
    let points: BTreeMap<_, _> = a
        .points
        .iter()
        .map(|p| (key(&p.scenario, &p.stage), p))
        .collect();
    let verdicts: BTreeMap<_, _> = a
        .sla_capacity
        .verdicts
        .iter()
        .map(|v| (key(&v.scenario, &v.stage), v))
        .collect();
    // The scenario name only helps when there is more than one.
    let many_scenarios = stages.iter().any(|s| s.scenario != stages[0].scenario);
    for s in stages {
        let k = key(&s.scenario, &s.stage);
        let p = points.get(&k);
        let mut notes = Vec::new();
        match verdicts.get(&k) {
            None => notes.push("left out (see warnings)".to_string()),
            Some(v) if v.within_sla => {}
            Some(v) => notes.push(format!("SLA broken: {}", v.reasons.join(", "))),
        }
        if a.knee.stage.as_deref() == Some(s.stage.as_str()) && a.knee.vus == Some(s.vus) {
            let by: Vec<String> = a.knee.triggered_by.iter().map(|c| c.to_string()).collect();
            notes.push(format!("knee ({})", by.join(", ")));
        }
        if a.sla_capacity.stage.as_deref() == Some(s.stage.as_str())
            && a.sla_capacity.max_vus == Some(s.vus)
        {
            notes.push("max VUs within SLA".to_string());
        }
        for e in &s.events {
            notes.push(e.to_string());
        }
        if let Some(d) = &s.target_down {
            notes.push(format!("target down from +{:.1}s", d.from_seconds));
        }
        if let Some(x) = p.and_then(|p| p.excluded.as_ref()) {
            if matches!(x, Exclusion::StarvedHost { .. }) {
                notes.push(x.to_string());
            }
            notes.push("left out of the fits".to_string());
        }
        let cpu = p.and_then(|p| {
            let cores = p.cpu_cores?;
            Some(match p.cpu_utilization {
                Some(u) => format!("{} ({:.2} cores)", pct(u), cores),
                None => format!("{cores:.2} cores"),
            })
        });
        let mem = p.and_then(|p| {
            let b = p.memory_bytes?;
            Some(match p.memory_utilization {
                Some(u) => format!("{} ({})", format_bytes(b), pct(u)),
                None => format_bytes(b),
            })
        });
        t.rows.push(vec![
            if !many_scenarios {
                s.stage.clone()
            } else {
                format!("{} / {}", s.scenario, s.stage)
            },
            trim_float(s.vus),
            format!("{:.0}s", s.window_seconds),
            opt(s.latency.as_ref(), |l| ms(l.avg)),
            opt(s.latency.as_ref(), |l| ms(l.p95)),
            opt(s.latency.as_ref(), |l| ms(l.max)),
            opt(cpu, |c| c),
            opt(mem, |m| m),
            format!("{:.1}", s.tps),
            format!("{:.1}", s.request_rate),
            pct(s.error_ratio),
            notes.join("; "),
        ]);
    }
    t.caption = Some(format!(
        "Measured after a {} settle period. CPU is the average of {} as a share of its limit. TPS counts successful requests; Req/s every completed request, failures included; latency \"–\" means no response.",
        humantime::format_duration(a.config.settle),
        a.source
    ));
    t
}

fn fit_row(
    name: &str,
    fit: &Option<LinearFit>,
    base: &dyn Fn(f64) -> String,
    slope: &dyn Fn(f64) -> String,
) -> Vec<String> {
    match fit {
        Some(f) => vec![
            name.to_string(),
            base(f.base),
            slope(f.slope),
            opt(f.r2, |r| format!("{r:.3}")),
            f.points.len().to_string(),
            f.method.to_string(),
        ],
        None => vec![
            name.to_string(),
            "–".into(),
            "–".into(),
            "–".into(),
            "0".into(),
            "no data".into(),
        ],
    }
}

/// Fitted lines and the seed's ratio model side by side.
pub fn models(a: &CapacityAnalysis) -> Table {
    let mut t = Table::new(
        "Models",
        &["Model", "Base", "Slope", "R²", "Points", "Method"],
    );
    let m = &a.models;
    let cores = |v: f64| format!("{v:.3} cores");
    t.rows.push(fit_row(
        "CPU = base + per VU × VUs",
        &m.cpu,
        &cores,
        &|v| format!("{v:.4} cores/VU"),
    ));
    t.rows.push(fit_row(
        "CPU = base + per TPS × TPS",
        &m.cpu_per_tps,
        &cores,
        &|v| format!("{v:.5} cores/TPS"),
    ));
    t.rows.push(fit_row(
        "Memory = base + per VU × VUs",
        &m.memory,
        &|v| format_bytes(v),
        &|v| format!("{}/VU", format_bytes(v)),
    ));
    t.rows.push(fit_row(
        "TPS = per VU × VUs",
        &m.tps,
        &|v| format!("{v:.2}"),
        &|v| format!("{v:.2} TPS/VU"),
    ));
    if let Some(lb) = &m.lower_bounds {
        t.rows.push(vec![
            format!("Lower bounds at {} ({} VUs)", lb.stage, trim_float(lb.vus)),
            "–".into(),
            lb.describe(),
            "–".into(),
            "1".into(),
            "saturated: value ÷ VUs is a floor".into(),
        ]);
    }
    if let Some(r) = &m.ratio {
        t.rows.push(vec![
            format!(
                "Seed ratio model at {} ({} VUs)",
                r.stage,
                trim_float(r.vus)
            ),
            "0 (none)".into(),
            [
                opt(r.cpu_cores_per_vu, |v| format!("{v:.4} cores/VU")),
                opt(r.memory_bytes_per_vu, |v| format!("{}/VU", format_bytes(v))),
                format!("{:.2} TPS/VU", r.tps_per_vu),
                opt(r.cpu_cores_per_tps, |v| format!("{v:.5} cores/TPS")),
            ]
            .join(", "),
            "–".into(),
            "1".into(),
            "value ÷ VUs".into(),
        ]);
    }
    t.caption = Some(if m.fit_vus.is_empty() {
        "No CPU or TPS line: fewer than two stages lie below the knee (see the lower bounds); memory on every usable stage.".to_string()
    } else {
        format!(
            "CPU and TPS lines are fitted on the usable stages below the knee (VUs {}); memory on every usable stage.",
            m.fit_vus.iter().map(|v| trim_float(*v)).collect::<Vec<_>>().join(", ")
        )
    });
    t
}

/// Measured against fitted CPU and memory, per stage.
pub fn residuals(a: &CapacityAnalysis) -> Table {
    let mut t = Table::new(
        "Residuals",
        &[
            "VUs",
            "CPU measured",
            "CPU fitted",
            "CPU residual",
            "Memory measured",
            "Memory fitted",
            "Memory residual",
        ],
    );
    for p in &a.points {
        let cpu_fit = a.models.cpu.as_ref().map(|f| f.predict(p.vus));
        let mem_fit = a.models.memory.as_ref().map(|f| f.predict(p.vus));
        let diff = |m: Option<f64>, f: Option<f64>| m.zip(f).map(|(m, f)| m - f);
        t.rows.push(vec![
            trim_float(p.vus),
            opt(p.cpu_cores, |v| format!("{v:.3}")),
            opt(cpu_fit, |v| format!("{v:.3}")),
            opt(diff(p.cpu_cores, cpu_fit), |v| format!("{v:+.3}")),
            opt(p.memory_bytes, format_bytes),
            opt(mem_fit, format_bytes),
            opt(diff(p.memory_bytes, mem_fit), |v| {
                let sign = if v < 0.0 { "−" } else { "+" };
                format!("{sign}{}", format_bytes(v.abs()))
            }),
        ]);
    }
    t
}

/// VU count → spec, TPS and cost.
pub fn recommendations(a: &CapacityAnalysis) -> Table {
    let cur = &a.prices.currency;
    let mut t = Table::new(
        "Recommendation",
        &[
            "VUs",
            "vCPU",
            "Memory",
            "Expected TPS",
            "Cost / hour",
            "Cost / month",
            "Cost per TPS",
            "Note",
        ],
    );
    for r in &a.recommendations {
        let mut note = Vec::new();
        if r.extrapolated {
            note.push("extrapolated");
        }
        if r.exceeds_max_cpus {
            note.push("above max_cpus: scale out");
        }
        if let Some(o) = &r.oom_note {
            note.push(o);
        }
        t.rows.push(vec![
            r.vus.to_string(),
            trim_float(r.spec.cpus),
            format_bytes(r.spec.memory_bytes as f64),
            opt(r.expected_tps, |v| format!("~{v:.1}")),
            money(r.cost_per_hour, cur, 4),
            money(r.cost_per_month, cur, 2),
            opt(r.cost_per_tps_hour, |v| money_small(v, cur)),
            note.join(", "),
        ]);
    }
    t.caption = Some(format!(
        "cpus = (base + per VU × N) ÷ {:.0} % utilization, rounded up to {} vCPU; memory = model × {:.0} % headroom, rounded up to {}. Monthly at {} h. Cost per TPS is {cur} per hour per TPS.",
        a.target_utilization * 100.0,
        trim_float(a.config.cpus_step),
        (1.0 + a.config.headroom) * 100.0,
        format_bytes(a.config.memory_step as f64),
        trim_float(a.config.hours_per_month),
    ));
    t
}

/// One row per distinct spec, the most efficient marked.
pub fn costs(a: &CapacityAnalysis) -> Table {
    let cur = &a.prices.currency;
    let mut t = Table::new(
        "Cost",
        &[
            "Spec",
            "Cost / hour",
            "Cost / month",
            "Serves VUs",
            "TPS",
            "Cost per TPS",
            "Most efficient",
        ],
    );
    for c in &a.costs {
        t.rows.push(vec![
            c.spec.to_string(),
            money(c.cost_per_hour, cur, 4),
            money(c.cost_per_month, cur, 2),
            c.vus.to_string(),
            opt(c.expected_tps, |v| format!("~{v:.1}")),
            opt(c.cost_per_tps_hour, |v| money_small(v, cur)),
            match (c.most_efficient, c.extrapolated) {
                (true, _) => "★ lowest cost per TPS".into(),
                (false, true) => "extrapolated".into(),
                _ => String::new(),
            },
        ]);
    }
    t.caption = Some(format!(
        "Prices: {} per vCPU-hour, {} per GiB-hour.",
        money(a.prices.vcpu_hour, cur, 4),
        money(a.prices.memory_gib_hour, cur, 4)
    ));
    t
}

/// Stable, high-performance, event-burst and scale-out.
pub fn situations(a: &CapacityAnalysis) -> Table {
    let cur = &a.prices.currency;
    let mut t = Table::new(
        "Situations",
        &[
            "Situation",
            "Spec per replica",
            "Replicas",
            "VUs",
            "TPS",
            "Cost / hour",
            "Why",
        ],
    );
    for s in &a.situations {
        t.rows.push(vec![
            s.kind.to_string(),
            s.spec.to_string(),
            s.replicas.to_string(),
            s.vus.to_string(),
            opt(s.expected_tps, |v| format!("~{v:.1}")),
            money(s.cost_per_hour, cur, 4),
            s.reason.clone(),
        ]);
    }
    t
}

/// Key findings as sentences: knee, SLA capacity, autoscaling.
pub fn findings(a: &CapacityAnalysis) -> Vec<String> {
    let mut out = Vec::new();
    match (a.knee.vus, &a.knee.stage) {
        (Some(v), Some(stage)) => {
            let by: Vec<String> = a.knee.triggered_by.iter().map(|c| c.to_string()).collect();
            out.push(format!(
                "Knee at {} VUs (stage {stage}), by {}.",
                trim_float(v),
                by.join(" and ")
            ));
            for s in &a.knee.signals {
                let name = s.criterion.to_string();
                let mut chars = name.chars();
                let name = chars
                    .next()
                    .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
                    .unwrap_or_default();
                out.push(format!(
                    "{name} at {} VUs: {}.",
                    trim_float(s.vus),
                    s.detail
                ));
            }
        }
        _ => out.push("No knee within the tested VUs.".into()),
    }
    let rate = a.points.iter().map(|p| p.request_rate).fold(0.0, f64::max);
    out.push(format!(
        "Highest TPS measured (successful requests): {:.1}; highest request rate with failures: {rate:.1}/s.",
        a.knee.max_tps
    ));
    for e in &a.events {
        out.push(format!("{}.", e.describe()));
    }
    for p in &a.points {
        if let Some(x) = &p.excluded {
            out.push(format!(
                "Stage {} ({} VUs) left out of the knee and the fits: {x}.",
                p.stage,
                trim_float(p.vus)
            ));
        }
    }
    if let Some(lb) = &a.models.lower_bounds {
        out.push(format!(
            "Per-VU models not measured: {}. Run a sweep from 1 VU up to {} VUs at this spec.",
            lb.describe(),
            trim_float(lb.vus)
        ));
    }
    let sla = &a.sla;
    let bounds = format!(
        "p95 ≤ {}, errors ≤ {}, CPU ≤ {}",
        ms(sla.latency_p95.as_secs_f64()),
        pct(sla.error_ratio),
        pct(sla.cpu_utilization)
    );
    out.push(match a.sla_capacity.max_vus {
        Some(v) => format!(
            "Max VUs within the SLA ({bounds}) at the tested spec: {} ({} TPS).",
            trim_float(v),
            opt(a.sla_capacity.tps_at_max_vus, |t| format!("{t:.1}"))
        ),
        None => format!("No stage met the SLA ({bounds})."),
    });
    if let Some(ts) = &a.tested_spec {
        out.push(format!(
            "Tested spec ({}): {} vCPU, {} memory.",
            a.source,
            opt(ts.cpu_limit_cores, trim_float),
            opt(ts.memory_limit_bytes, format_bytes)
        ));
    }
    if let Some(auto) = &a.autoscaling {
        out.push(format!(
            "Autoscaling: target {} CPU utilization of the limit; one replica ({}) per {} VUs{}.",
            pct(auto.cpu_utilization_target),
            auto.replica_spec,
            auto.vus_per_replica,
            opt(auto.tps_per_replica, |t| format!(" (~{t:.1} TPS)"))
        ));
    }
    out
}

/// Every table, in report order.
pub fn all(stages_in: &[StageSummary], a: &CapacityAnalysis) -> Vec<Table> {
    vec![
        stages(stages_in, a),
        models(a),
        residuals(a),
        recommendations(a),
        costs(a),
        situations(a),
    ]
}
