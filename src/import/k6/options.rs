//! `export const options = {...}` into loadspec scenarios and the SLA. The shortcuts
//! (`vus`/`duration`, `iterations`, `stages`) and every k6 executor in `scenarios` map to the
//! loadspec executor with the same fields; `shared-iterations`, which loadspec does not have,
//! becomes `per-vu-iterations` with the same total. `thresholds` on `http_req_duration`
//! p(95)/p(99) and `http_req_failed` rate become `sla`.

use std::time::Duration;

use oxc_ast::ast::{Declaration, Expression, ObjectPropertyKind, Program, Statement};
use oxc_span::{GetSpan, Span};

use super::flow::Walker;
use super::value::{duration, fmt_duration, label, Val};
use crate::config::raw::{ExecutorKind, ScenarioConfig, StageConfig};

/// A scenario's schedule and the function whose calls are its iteration.
pub struct ScenarioPlan {
    pub cfg: ScenarioConfig,
    pub exec: String,
    /// Where the script defines it, for reports.
    pub at: Span,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sla {
    pub latency_p95: Option<Duration>,
    pub latency_p99: Option<Duration>,
    pub error_ratio: Option<f64>,
}

pub struct Options {
    pub scenarios: Vec<ScenarioPlan>,
    pub sla: Sla,
}

type Props<'a> = Vec<(String, &'a Expression<'a>, Span)>;

fn props<'a>(e: &'a Expression<'a>) -> Option<Props<'a>> {
    let Expression::ObjectExpression(o) = e.get_inner_expression() else {
        return None;
    };
    Some(
        o.properties
            .iter()
            .filter_map(|p| match p {
                ObjectPropertyKind::ObjectProperty(p) => {
                    Some((p.key.static_name()?.to_string(), &p.value, p.span))
                }
                ObjectPropertyKind::SpreadProperty(_) => None,
            })
            .collect(),
    )
}

/// The `options` object literal of the module, if any.
fn find<'a>(program: &'a Program<'a>) -> Option<&'a Expression<'a>> {
    program.body.iter().find_map(|s| {
        let decl = match s {
            Statement::ExportDeclaration(d) => &d.declaration,
            other => other.as_declaration()?,
        };
        let Declaration::VariableDeclaration(v) = decl else {
            return None;
        };
        v.declarations.iter().find_map(|d| {
            let id = d.id.get_binding_identifier()?;
            (id.name.as_str() == "options").then_some(d.init.as_ref()?)
        })
    })
}

pub fn options<'a>(w: &mut Walker<'a>, program: &'a Program<'a>) -> Options {
    let mut out = Options {
        scenarios: Vec::new(),
        sla: Sla::default(),
    };
    let Some(opts) = find(program) else {
        w.note("no options: k6's default of 1 VU running 1 iteration");
        out.scenarios
            .push(shared_iterations(w, "default", 1, 1, None, Span::default()));
        return out;
    };
    let Some(ps) = props(opts) else {
        w.report(
            opts.span(),
            "options is not an object literal",
            "the whole plan",
        );
        out.scenarios
            .push(shared_iterations(w, "default", 1, 1, None, opts.span()));
        return out;
    };
    let mut vus = None;
    let mut dur = None;
    let mut iterations = None;
    let mut stages = None;
    let mut scenarios = None;
    for (key, value, span) in &ps {
        match key.as_str() {
            "vus" => vus = count(w, value, "options.vus"),
            "duration" => dur = dur_of(w, value, "options.duration"),
            "iterations" => iterations = count(w, value, "options.iterations"),
            "stages" => stages = Some(stages_of(w, value)),
            "scenarios" => scenarios = Some(*value),
            "thresholds" => out.sla = thresholds(w, value),
            other => w.report(
                *span,
                format!("options.{other} is not imported"),
                "the whole plan",
            ),
        }
    }
    if let Some(sc) = scenarios {
        match props(sc) {
            Some(list) => {
                for (name, v, span) in list {
                    if let Some(s) = scenario(w, &name, v, span) {
                        out.scenarios.push(s);
                    }
                }
            }
            None => w.report(
                sc.span(),
                "options.scenarios is not an object literal",
                "the whole plan",
            ),
        }
        return out;
    }
    let at = opts.span();
    let plan = if let Some(stages) = stages {
        let mut cfg = base("default", ExecutorKind::RampingVus);
        cfg.start_vus = Some(vus.unwrap_or(1));
        cfg.stages = stages;
        ScenarioPlan {
            cfg,
            exec: "default".into(),
            at,
        }
    } else if let Some(n) = iterations {
        shared_iterations(w, "default", vus.unwrap_or(1), n, dur, at)
    } else if let Some(d) = dur {
        let mut cfg = base("default", ExecutorKind::ConstantVus);
        cfg.vus = Some(vus.unwrap_or(1));
        cfg.duration = Some(d);
        ScenarioPlan {
            cfg,
            exec: "default".into(),
            at,
        }
    } else {
        shared_iterations(w, "default", vus.unwrap_or(1), 1, None, at)
    };
    out.scenarios.push(plan);
    out
}

fn base(name: &str, executor: ExecutorKind) -> ScenarioConfig {
    ScenarioConfig {
        name: name.to_string(),
        executor,
        start: None,
        vus: None,
        duration: None,
        iterations: None,
        max_duration: None,
        stages: Vec::new(),
        step: false,
        start_vus: None,
        rate: None,
        start_rate: None,
        time_unit: None,
        pre_allocated_vus: None,
        max_vus: None,
        think_time: None,
        graceful_ramp_down: None,
        setup: Vec::new(),
        requests: Vec::new(),
        data: None,
        setup_retry: None,
        on_setup_failure: None,
        rerun_setup_on: Vec::new(),
        max_setup_reruns: None,
    }
}

/// `shared-iterations`: `total` iterations shared by `vus` VUs. loadspec's
/// `per-vu-iterations` keeps the total exact with the most VUs (at most `vus`) that divide it.
fn shared_iterations(
    w: &mut Walker<'_>,
    name: &str,
    vus: u64,
    total: u64,
    max_duration: Option<Duration>,
    at: Span,
) -> ScenarioPlan {
    let vus = vus.max(1);
    let v = (1..=vus.min(total.max(1)))
        .rev()
        .find(|v| total.is_multiple_of(*v))
        .unwrap_or(1);
    if v != vus {
        let (line, col) = w.pos(at);
        w.note(format!(
            "{line}:{col}: scenario {name}: {total} iterations shared by {vus} VUs run as {v} VUs × {} iterations, the same total",
            total / v
        ));
    }
    let mut cfg = base(name, ExecutorKind::PerVuIterations);
    cfg.vus = Some(v);
    cfg.iterations = Some(total / v);
    cfg.max_duration = max_duration;
    ScenarioPlan {
        cfg,
        exec: "default".into(),
        at,
    }
}

fn scenario<'a>(
    w: &mut Walker<'a>,
    name: &str,
    v: &'a Expression<'a>,
    span: Span,
) -> Option<ScenarioPlan> {
    let Some(ps) = props(v) else {
        w.report(
            span,
            format!("scenario {name} is not an object literal"),
            format!("scenario {name}"),
        );
        return None;
    };
    let label = label(name, 64);
    let get = |k: &str| ps.iter().find(|(n, _, _)| n == k).map(|(_, e, _)| *e);
    let Some(executor) = get("executor").and_then(|e| w.eval(e).literal()) else {
        w.report(
            span,
            format!("scenario {name} has no executor"),
            format!("scenario {name}"),
        );
        return None;
    };
    let kind = match executor.as_str() {
        "shared-iterations" => None,
        "per-vu-iterations" => Some(ExecutorKind::PerVuIterations),
        "constant-vus" => Some(ExecutorKind::ConstantVus),
        "ramping-vus" => Some(ExecutorKind::RampingVus),
        "constant-arrival-rate" => Some(ExecutorKind::ConstantArrivalRate),
        "ramping-arrival-rate" => Some(ExecutorKind::RampingArrivalRate),
        other => {
            w.report(
                span,
                format!("executor {other:?} has no loadspec equivalent"),
                format!("scenario {name} left out"),
            );
            return None;
        }
    };
    let field = |k: &str| format!("options.scenarios.{name}.{k}");
    let mut plan = match kind {
        None => {
            let vus = get("vus")
                .and_then(|e| count(w, e, &field("vus")))
                .unwrap_or(1);
            let n = get("iterations")
                .and_then(|e| count(w, e, &field("iterations")))
                .unwrap_or(1);
            let md = get("maxDuration").and_then(|e| dur_of(w, e, &field("maxDuration")));
            let mut p = shared_iterations(w, &label, vus, n, md, span);
            p.cfg.name = label.clone();
            p
        }
        Some(k) => ScenarioPlan {
            cfg: base(&label, k),
            exec: "default".into(),
            at: span,
        },
    };
    let cfg = &mut plan.cfg;
    for (key, e, kspan) in &ps {
        let f = field(key);
        match (kind, key.as_str()) {
            (_, "executor") => {}
            (None, "vus" | "iterations" | "maxDuration") => {}
            (_, "exec") => match w.eval(e).literal() {
                Some(x) => plan.exec = x,
                None => w.report(
                    *kspan,
                    format!("{f} is not a literal"),
                    format!("scenario {name}"),
                ),
            },
            (_, "startTime") => cfg.start = dur_of(w, e, &f),
            (Some(ExecutorKind::PerVuIterations | ExecutorKind::ConstantVus), "vus") => {
                cfg.vus = count(w, e, &f)
            }
            (Some(ExecutorKind::PerVuIterations), "iterations") => cfg.iterations = count(w, e, &f),
            (Some(ExecutorKind::PerVuIterations), "maxDuration") => {
                cfg.max_duration = dur_of(w, e, &f)
            }
            (Some(ExecutorKind::ConstantVus | ExecutorKind::ConstantArrivalRate), "duration") => {
                cfg.duration = dur_of(w, e, &f)
            }
            (Some(ExecutorKind::RampingVus), "startVUs") => cfg.start_vus = count(w, e, &f),
            (Some(ExecutorKind::RampingVus), "gracefulRampDown") => {
                cfg.graceful_ramp_down = dur_of(w, e, &f)
            }
            (Some(ExecutorKind::RampingVus | ExecutorKind::RampingArrivalRate), "stages") => {
                cfg.stages = stages_of(w, e)
            }
            (Some(ExecutorKind::ConstantArrivalRate), "rate") => {
                cfg.rate = count(w, e, &f).map(|r| r as f64)
            }
            (Some(ExecutorKind::RampingArrivalRate), "startRate") => {
                cfg.start_rate = count(w, e, &f).map(|r| r as f64)
            }
            (
                Some(ExecutorKind::ConstantArrivalRate | ExecutorKind::RampingArrivalRate),
                "timeUnit",
            ) => cfg.time_unit = dur_of(w, e, &f),
            (
                Some(ExecutorKind::ConstantArrivalRate | ExecutorKind::RampingArrivalRate),
                "preAllocatedVUs",
            ) => cfg.pre_allocated_vus = count(w, e, &f),
            (
                Some(ExecutorKind::ConstantArrivalRate | ExecutorKind::RampingArrivalRate),
                "maxVUs",
            ) => cfg.max_vus = count(w, e, &f),
            _ => w.report(
                *kspan,
                format!("{f} is not imported"),
                format!("scenario {name}"),
            ),
        }
    }
    if matches!(kind, Some(ExecutorKind::RampingVus)) && cfg.start_vus.is_none() {
        cfg.start_vus = Some(1);
    }
    if matches!(kind, Some(ExecutorKind::PerVuIterations)) {
        cfg.vus.get_or_insert(1);
        cfg.iterations.get_or_insert(1);
    }
    if matches!(kind, Some(ExecutorKind::ConstantVus)) {
        cfg.vus.get_or_insert(1);
    }
    Some(plan)
}

fn count<'a>(w: &mut Walker<'a>, e: &'a Expression<'a>, field: &str) -> Option<u64> {
    match w.eval(e) {
        Val::Num(n) if n >= 0.0 && n.fract() == 0.0 && n < 1e12 => Some(n as u64),
        other => {
            w.report(
                e.span(),
                format!("{field} is {}, not a whole number", other.kind()),
                "the whole plan",
            );
            None
        }
    }
}

fn dur_of<'a>(w: &mut Walker<'a>, e: &'a Expression<'a>, field: &str) -> Option<Duration> {
    let v = w.eval(e);
    let d = duration(&v);
    if d.is_none() {
        w.report(
            e.span(),
            format!("{field} is not a duration"),
            "the whole plan",
        );
    }
    d
}

fn stages_of<'a>(w: &mut Walker<'a>, e: &'a Expression<'a>) -> Vec<StageConfig> {
    let Expression::ArrayExpression(a) = e.get_inner_expression() else {
        w.report(e.span(), "stages is not an array literal", "the whole plan");
        return Vec::new();
    };
    let mut out = Vec::new();
    for el in &a.elements {
        let Some(ps) = el.as_expression().and_then(props) else {
            w.report(
                el.span(),
                "a stage that is not an object literal",
                "the whole plan",
            );
            continue;
        };
        let get = |k: &str| ps.iter().find(|(n, _, _)| n == k).map(|(_, e, _)| *e);
        let d = get("duration").and_then(|e| dur_of(w, e, "stage duration"));
        let t = get("target").and_then(|e| count(w, e, "stage target"));
        if let (Some(duration), Some(target)) = (d, t) {
            out.push(StageConfig {
                duration,
                target: target as f64,
                name: None,
            });
        }
    }
    out
}

fn thresholds<'a>(w: &mut Walker<'a>, e: &'a Expression<'a>) -> Sla {
    let mut sla = Sla::default();
    let Some(ps) = props(e) else {
        w.report(e.span(), "thresholds is not an object literal", "the SLA");
        return sla;
    };
    for (metric, v, span) in ps {
        let exprs: Vec<String> = match w.eval(v) {
            Val::Arr(items) => items
                .iter()
                .filter_map(|i| {
                    i.literal()
                        .or_else(|| i.get("threshold").and_then(Val::literal))
                })
                .collect(),
            other => other.literal().into_iter().collect(),
        };
        for t in exprs {
            let t2: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            let ok = match metric.as_str() {
                "http_req_duration" => {
                    let limit = |p: &str| {
                        let rest = t2.strip_prefix(p)?;
                        let rest = rest.strip_prefix("<=").or_else(|| rest.strip_prefix('<'))?;
                        let ms: f64 = rest.parse().ok()?;
                        (ms > 0.0 && ms.is_finite()).then(|| Duration::from_secs_f64(ms / 1000.0))
                    };
                    if let Some(d) = limit("p(95)") {
                        sla.latency_p95 = Some(d);
                        true
                    } else if let Some(d) = limit("p(99)") {
                        sla.latency_p99 = Some(d);
                        true
                    } else {
                        false
                    }
                }
                "http_req_failed" => {
                    let r = t2
                        .strip_prefix("rate<=")
                        .or_else(|| t2.strip_prefix("rate<"))
                        .and_then(|r| r.parse::<f64>().ok())
                        .filter(|r| (0.0..=1.0).contains(r));
                    if let Some(r) = r {
                        sla.error_ratio = Some(r);
                    }
                    r.is_some()
                }
                _ => false,
            };
            if !ok {
                w.report(
                    span,
                    format!("threshold {metric}: {t:?} is not imported (only http_req_duration p(95)/p(99) and http_req_failed rate)"),
                    "the SLA",
                );
            }
        }
    }
    if let (None, Some(p99)) = (sla.latency_p95, sla.latency_p99) {
        w.note(format!(
            "sla.latency_p95 is set to the p(99) threshold ({}) because loadspec needs a p95 bound no larger than p99",
            fmt_duration(p99)
        ));
        sla.latency_p95 = Some(p99);
    }
    sla
}
