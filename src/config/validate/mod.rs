//! One `validate()` from the raw file to typed [`Settings`]. Every error names the field path,
//! the value and the reason; all errors are collected so one run shows them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};

use super::raw::*;
use super::{ConfigError, Errors};
use crate::load::body::{self, BodySpec};
use crate::load::plan::*;
use crate::load::template::{Escape, Resolved, Template};

/// The validated configuration: the raw file (for printing and for sections that need no
/// conversion) and the typed plan.
#[derive(Debug, Clone)]
pub struct Settings {
    pub raw: RawConfig,
    pub scenarios: Vec<ScenarioRef>,
    /// The file it came from, for reloads.
    pub source: Option<PathBuf>,
    /// Valid but probably not meant: printed by `validate`, logged by `run`.
    pub warnings: Vec<String>,
}

/// Headers whose values are secrets: redacted when the config is printed.
pub const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

const REDACTED: &str = "<redacted>";

fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Validate `raw`; relative file paths resolve against `base_dir`.
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Settings, ConfigError> {
    let secrets = secrets(&raw);
    validate_inner(raw, base_dir).map_err(|e| e.redact(&secrets))
}

/// Every secret the config holds or pulls in: bearer tokens, values of sensitive headers,
/// passwords in URLs, and the value of every environment variable a `${NAME}` reads (the usual
/// way to pass a token). Errors and log lines are cleaned of them.
pub fn secrets(raw: &RawConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |s: &str| {
        // Expand `${NAME}` from the environment as templates do, and keep both spellings.
        let mut rest = s;
        while let Some(p) = rest.find("${") {
            let after = &rest[p + 2..];
            let Some(end) = after.find('}') else { break };
            if let Ok(v) = std::env::var(after[..end].trim()) {
                if v.len() >= 4 {
                    out.push(v);
                }
            }
            rest = &after[end..];
        }
        if let Ok(u) = url::Url::parse(s) {
            if let Some(p) = u.password().filter(|p| p.len() >= 4) {
                out.push(p.to_string());
            }
        }
    };
    let value = serde_json::to_value(raw).unwrap_or_default();
    fn walk(v: &serde_json::Value, key: &str, f: &mut dyn FnMut(&str, &str)) {
        match v {
            serde_json::Value::String(s) => f(key, s),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, key, f)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| walk(x, k, f)),
            _ => {}
        }
    }
    let mut literal = Vec::new();
    walk(&value, "", &mut |key, s| {
        add(s);
        let key = key.to_ascii_lowercase();
        if key == "bearer_token" || SENSITIVE_HEADERS.contains(&key.as_str()) {
            literal.push(s.to_string());
        }
    });
    // A `${NAME}` is not itself a secret (its value was added above), and hiding it would
    // hide which variable an error is about.
    for s in literal.into_iter().filter(|s| !s.contains("${")) {
        // A header value such as `Bearer abc`: hide the whole value and its last word.
        if let Some(last) = s.split_whitespace().last().filter(|w| w.len() >= 4) {
            out.push(last.to_string());
        }
        out.push(s);
    }
    out.sort();
    out.dedup();
    out
}

fn validate_inner(raw: RawConfig, base_dir: &Path) -> Result<Settings, ConfigError> {
    let mut errs = Errors::new();
    raw.sla.validate("sla", &mut errs);
    raw.prices.validate("prices", &mut errs);
    raw.containers.validate("containers", &mut errs);
    raw.analysis.validate("analysis", &mut errs);
    raw.analysis
        .validate_with_sla("analysis", &raw.sla, &mut errs);
    let names: Vec<String> = raw.scenarios.iter().map(|s| s.name.clone()).collect();
    let docker = raw.containers.source == crate::containers::SourceKind::Docker;
    raw.experiment
        .validate("experiment", &names, docker, &mut errs);
    validate_limits(&raw, &mut errs);
    if raw.lifecycle.drain_timeout.is_zero() {
        errs.add("lifecycle.drain_timeout", "must be greater than 0s");
    }
    if raw.lifecycle.exit_grace > Duration::from_secs(600) {
        errs.add("lifecycle.exit_grace", "must be at most 10m");
    }
    if raw.log.progress_interval < Duration::from_millis(100) {
        errs.add(
            "log.progress_interval",
            format!(
                "must be at least 100ms, got {}",
                fmt_dur(raw.log.progress_interval)
            ),
        );
    }
    if raw.target.timeout.is_zero() {
        errs.add("target.timeout", "must be greater than 0s");
    }
    validate_buckets(&raw.metrics.buckets, &mut errs);
    let base_url = raw.target.base_url.as_deref().map(|u| {
        check_url(u, "target.base_url", &mut errs);
        u.trim_end_matches('/').to_string()
    });
    if raw.scenarios.is_empty() {
        errs.add("scenarios", "at least one scenario is required");
    }
    let transport = Arc::new(transport(&raw, base_dir, &mut errs));
    let mut names = HashMap::new();
    let mut scenarios = Vec::new();
    let mut warnings = Vec::new();
    for (i, sc) in raw.scenarios.iter().enumerate() {
        let path = format!("scenarios[{i}]");
        if !valid_label(&sc.name) {
            errs.add(
                format!("{path}.name"),
                format!(
                    "must be 1-64 characters of letters, digits, '-', '_' or '.', got {:?}",
                    sc.name
                ),
            );
        } else if let Some(prev) = names.insert(sc.name.clone(), i) {
            errs.add(
                format!("{path}.name"),
                format!("{:?} is already used by scenarios[{prev}]", sc.name),
            );
        }
        if let Some(mut s) = scenario(
            sc,
            &path,
            &raw.target,
            base_url.as_deref(),
            base_dir,
            &mut errs,
            &mut warnings,
        ) {
            s.limits = crate::load::http1::Limits::from_config(&raw.limits);
            scenarios.push(Arc::new(Scenario {
                transport: transport.clone(),
                ..s
            }));
        }
    }
    errs.finish(Settings {
        raw,
        scenarios,
        source: None,
        warnings,
    })
}

/// Bounds of the `[limits]` keys themselves, so a limit cannot be turned off by accident.
const MAX_VUS_CEILING: u64 = 1_000_000;

fn validate_limits(raw: &RawConfig, errs: &mut Errors) {
    let srv = &raw.server;
    if !(1..=4096).contains(&srv.max_connections) {
        errs.add(
            "server.max_connections",
            format!("must be between 1 and 4096, got {}", srv.max_connections),
        );
    }
    for (name, d) in [
        ("server.header_read_timeout", srv.header_read_timeout),
        ("server.idle_timeout", srv.idle_timeout),
    ] {
        if d.is_zero() {
            errs.add(name, "must be greater than 0s");
        }
    }
    let l = &raw.limits;
    if !(1..=MAX_VUS_CEILING).contains(&l.max_vus) {
        errs.add(
            "limits.max_vus",
            format!("must be between 1 and {MAX_VUS_CEILING}, got {}", l.max_vus),
        );
    }
    if !(1024..=16 * 1024 * 1024).contains(&l.max_response_head) {
        errs.add(
            "limits.max_response_head",
            format!(
                "must be between 1KiB and 16MiB, got {} bytes",
                l.max_response_head
            ),
        );
    }
    if !(16..=8192).contains(&l.max_response_headers) {
        errs.add(
            "limits.max_response_headers",
            format!(
                "must be between 16 and 8192, got {}",
                l.max_response_headers
            ),
        );
    }
    if !(1024..=1024 * 1024 * 1024).contains(&l.max_capture_body) {
        errs.add(
            "limits.max_capture_body",
            format!(
                "must be between 1KiB and 1GiB, got {} bytes",
                l.max_capture_body
            ),
        );
    }
    if l.connect_backoff_min.is_zero() {
        errs.add("limits.connect_backoff_min", "must be greater than 0s");
    }
    if l.connect_backoff_max < l.connect_backoff_min {
        errs.add(
            "limits.connect_backoff_max",
            format!(
                "must be at least limits.connect_backoff_min ({}), got {}",
                fmt_dur(l.connect_backoff_min),
                fmt_dur(l.connect_backoff_max)
            ),
        );
    }
    // Every field that asks for VUs, against the ceiling: each VU costs memory and a socket,
    // and a typo of 4294967296 would otherwise allocate until the machine runs out.
    let max = l.max_vus;
    let mut check = |path: String, v: f64| {
        if v > max as f64 {
            errs.add(
                path,
                format!("must be at most limits.max_vus ({max}), got {v}; raise limits.max_vus to allow more"),
            );
        }
    };
    for (i, sc) in raw.scenarios.iter().enumerate() {
        let p = format!("scenarios[{i}]");
        for (name, v) in [
            ("vus", sc.vus),
            ("start_vus", sc.start_vus),
            ("pre_allocated_vus", sc.pre_allocated_vus),
            ("max_vus", sc.max_vus),
        ] {
            if let Some(v) = v {
                check(format!("{p}.{name}"), v as f64);
            }
        }
        if sc.executor == ExecutorKind::RampingVus {
            for (j, st) in sc.stages.iter().enumerate() {
                check(format!("{p}.stages[{j}].target"), st.target);
            }
        }
    }
    for (i, v) in raw.experiment.sweep.vus.iter().enumerate() {
        check(format!("experiment.sweep.vus[{i}]"), *v as f64);
    }
    check(
        "experiment.search.vus".into(),
        raw.experiment.search.vus as f64,
    );
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn validate_buckets(b: &[f64], errs: &mut Errors) {
    if b.is_empty() {
        errs.add("metrics.buckets", "must list at least one bucket");
    }
    for (i, w) in b.windows(2).enumerate() {
        if w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater) {
            errs.add(
                format!("metrics.buckets[{}]", i + 1),
                format!(
                    "must be greater than the previous bucket {}, got {}",
                    w[0], w[1]
                ),
            );
        }
    }
    if let Some(first) = b.first() {
        if !(first.is_finite() && *first > 0.0) {
            errs.add(
                "metrics.buckets[0]",
                format!("must be above 0, got {first}"),
            );
        }
    }
}

/// The URL without `user:password@`, and the `Authorization: Basic` value for it, when it has
/// userinfo. The credentials are percent-decoded as RFC 3986 writes them.
fn take_userinfo(u: &str) -> Result<Option<(String, String)>, String> {
    let Ok(mut url) = url::Url::parse(u) else {
        return Ok(None);
    };
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let creds = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or(""))
    );
    let _ = url.set_username("");
    let _ = url.set_password(None);
    use base64::Engine as _;
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    );
    // url::Url adds a '/' to an empty path; keep the user's spelling otherwise.
    let mut stripped = url.to_string();
    if !u.trim_end().ends_with('/') && url.path() == "/" && url.query().is_none() {
        stripped.pop();
    }
    Ok(Some((stripped, value)))
}

/// The client settings of `target`: TLS, HTTP version, HTTP/2 connections. The TLS client is
/// built at once (so a bad key stops the start) when a TLS key is set or a URL is https.
fn transport(raw: &RawConfig, base_dir: &Path, errs: &mut Errors) -> crate::load::net::Transport {
    let https = |u: &Option<String>| u.as_deref().is_some_and(|u| u.starts_with("https:"));
    let eager = https(&raw.target.base_url)
        || raw
            .scenarios
            .iter()
            .flat_map(|s| s.setup.iter().chain(&s.requests))
            .any(|r| https(&r.url));
    let n = raw.target.http2_connections;
    let max = crate::load::net::MAX_HTTP2_CONNECTIONS;
    if !(1..=max).contains(&n) {
        errs.add(
            "target.http2_connections",
            format!("must be from 1 to {max}, got {n}"),
        );
    }
    let t = &raw.target;
    crate::load::net::Transport::new(&t.tls, "target.tls", base_dir, eager, t.http_version, n)
        .unwrap_or_else(|es| {
            for e in es {
                errs.add(e.field, e.reason);
            }
            Default::default()
        })
}

fn check_url(u: &str, path: &str, errs: &mut Errors) -> bool {
    match url::Url::parse(u) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {
            if url.host_str().is_none() {
                errs.add(path, format!("has no host: {u:?}"));
                return false;
            }
            true
        }
        Ok(url) => {
            errs.add(
                path,
                format!(
                    "scheme must be http or https, got {:?} in {u:?}",
                    url.scheme()
                ),
            );
            false
        }
        Err(e) => {
            errs.add(path, format!("not a valid URL ({e}): {u:?}"));
            false
        }
    }
}

/// Which schedule fields an executor uses, so stray ones are reported.
fn check_unused(sc: &ScenarioConfig, path: &str, errs: &mut Errors) {
    use ExecutorKind::*;
    let k = sc.executor;
    let fields: [(&str, bool, &[ExecutorKind]); 11] = [
        ("vus", sc.vus.is_some(), &[ConstantVus, PerVuIterations]),
        (
            "duration",
            sc.duration.is_some(),
            &[ConstantVus, ConstantArrivalRate],
        ),
        ("iterations", sc.iterations.is_some(), &[PerVuIterations]),
        (
            "max_duration",
            sc.max_duration.is_some(),
            &[PerVuIterations],
        ),
        (
            "stages",
            !sc.stages.is_empty(),
            &[RampingVus, RampingArrivalRate],
        ),
        ("step", sc.step, &[RampingVus, RampingArrivalRate]),
        ("start_vus", sc.start_vus.is_some(), &[RampingVus]),
        ("rate", sc.rate.is_some(), &[ConstantArrivalRate]),
        ("start_rate", sc.start_rate.is_some(), &[RampingArrivalRate]),
        (
            "pre_allocated_vus",
            sc.pre_allocated_vus.is_some(),
            &[ConstantArrivalRate, RampingArrivalRate],
        ),
        (
            "graceful_ramp_down",
            sc.graceful_ramp_down.is_some(),
            &[RampingVus],
        ),
    ];
    for (name, set, allowed) in fields {
        if set && !allowed.contains(&k) {
            errs.add(
                format!("{path}.{name}"),
                format!("is not used by executor {}", k.as_str()),
            );
        }
    }
    let uses_rate = matches!(k, ConstantArrivalRate | RampingArrivalRate);
    if !uses_rate && (sc.time_unit.is_some() || sc.max_vus.is_some()) {
        let name = if sc.time_unit.is_some() {
            "time_unit"
        } else {
            "max_vus"
        };
        errs.add(
            format!("{path}.{name}"),
            format!("is not used by executor {}", k.as_str()),
        );
    }
}

fn required<T: Copy>(
    v: Option<T>,
    path: &str,
    field: &str,
    k: ExecutorKind,
    errs: &mut Errors,
) -> Option<T> {
    if v.is_none() {
        errs.add(
            format!("{path}.{field}"),
            format!("is required by executor {}", k.as_str()),
        );
    }
    v
}

fn nonzero_duration(
    d: Option<Duration>,
    path: &str,
    field: &str,
    k: ExecutorKind,
    errs: &mut Errors,
) -> Option<Duration> {
    let d = required(d, path, field, k, errs)?;
    if d.is_zero() {
        errs.add(format!("{path}.{field}"), "must be greater than 0s");
        return None;
    }
    Some(d)
}

/// The configured stages, each starting where the previous one ended (the first at `start`).
/// `target` checks one stage's target (reporting under its path) and converts it.
fn build_stages<T: Copy>(
    sc: &ScenarioConfig,
    path: &str,
    start: T,
    errs: &mut Errors,
    mut target: impl FnMut(f64, &str, &mut Errors) -> T,
) -> Vec<Stage<T>> {
    let mut from = start;
    let mut out = Vec::new();
    for (i, s) in sc.stages.iter().enumerate() {
        let sp = format!("{path}.stages[{i}]");
        if s.duration.is_zero() {
            errs.add(format!("{sp}.duration"), "must be greater than 0s");
        }
        let to = target(s.target, &sp, errs);
        out.push(Stage {
            name: s.name.clone().unwrap_or_else(|| format!("stage-{i}")),
            duration: s.duration,
            from,
            to,
            step: sc.step,
        });
        from = to;
    }
    out
}

fn schedule(sc: &ScenarioConfig, path: &str, errs: &mut Errors) -> Option<Schedule> {
    use ExecutorKind::*;
    check_unused(sc, path, errs);
    let k = sc.executor;
    let before = errs.len();
    let sched = match k {
        ConstantVus => {
            let vus = required(sc.vus, path, "vus", k, errs);
            if let Some(v) = vus {
                errs.check_min(&format!("{path}.vus"), v, 1);
            }
            let d = nonzero_duration(sc.duration, path, "duration", k, errs);
            Schedule::Vus {
                stages: vec![VuStage {
                    name: "steady".into(),
                    duration: d.unwrap_or_default(),
                    from: vus.unwrap_or(0),
                    to: vus.unwrap_or(0),
                    step: true,
                }],
                graceful_ramp_down: Duration::from_secs(30),
            }
        }
        RampingVus => {
            if sc.stages.is_empty() {
                errs.add(
                    format!("{path}.stages"),
                    "ramping-vus needs at least one stage",
                );
            }
            let min = if sc.step { 1.0 } else { 0.0 };
            let stages = build_stages(sc, path, sc.start_vus.unwrap_or(0), errs, |t, sp, errs| {
                if !(t.is_finite() && t.fract() == 0.0 && t >= min) {
                    errs.add(
                        format!("{sp}.target"),
                        if t.fract() != 0.0 {
                            format!("must be a whole number of VUs, got {t}")
                        } else {
                            format!("must be at least {min}, got {t}")
                        },
                    );
                }
                t.max(0.0) as u64
            });
            Schedule::Vus {
                stages,
                graceful_ramp_down: sc.graceful_ramp_down.unwrap_or(Duration::from_secs(30)),
            }
        }
        ConstantArrivalRate | RampingArrivalRate => {
            let unit = sc.time_unit.unwrap_or(Duration::from_secs(1));
            if unit.is_zero() {
                errs.add(format!("{path}.time_unit"), "must be greater than 0s");
            }
            let per_sec = |r: f64| {
                if unit.is_zero() {
                    0.0
                } else {
                    r / unit.as_secs_f64()
                }
            };
            let pre =
                required(sc.pre_allocated_vus, path, "pre_allocated_vus", k, errs).unwrap_or(1);
            errs.check_min(&format!("{path}.pre_allocated_vus"), pre, 1);
            let max = sc.max_vus.unwrap_or(pre);
            if max < pre {
                errs.add(
                    format!("{path}.max_vus"),
                    format!("must be at least pre_allocated_vus ({pre}), got {max}"),
                );
            }
            let stages = if k == ConstantArrivalRate {
                let rate = required(sc.rate, path, "rate", k, errs).unwrap_or(1.0);
                if !(rate.is_finite() && rate > 0.0) {
                    errs.add(
                        format!("{path}.rate"),
                        format!("must be above 0, got {rate}"),
                    );
                }
                let d = nonzero_duration(sc.duration, path, "duration", k, errs);
                vec![RateStage {
                    name: "steady".into(),
                    duration: d.unwrap_or_default(),
                    from: per_sec(rate),
                    to: per_sec(rate),
                    step: true,
                }]
            } else {
                if sc.stages.is_empty() {
                    errs.add(
                        format!("{path}.stages"),
                        "ramping-arrival-rate needs at least one stage",
                    );
                }
                build_stages(
                    sc,
                    path,
                    per_sec(sc.start_rate.unwrap_or(0.0)),
                    errs,
                    |t, sp, errs| {
                        if !(t.is_finite() && t >= 0.0) {
                            errs.add(
                                format!("{sp}.target"),
                                format!("must be 0 or more, got {t}"),
                            );
                        }
                        per_sec(t.max(0.0))
                    },
                )
            };
            Schedule::Arrival {
                stages,
                pre_allocated_vus: pre,
                max_vus: max,
            }
        }
        PerVuIterations => {
            let vus = required(sc.vus, path, "vus", k, errs).unwrap_or(1);
            errs.check_min(&format!("{path}.vus"), vus, 1);
            let iterations = required(sc.iterations, path, "iterations", k, errs).unwrap_or(1);
            errs.check_min(&format!("{path}.iterations"), iterations, 1);
            let max_duration = sc.max_duration.unwrap_or(Duration::from_secs(600));
            if max_duration.is_zero() {
                errs.add(format!("{path}.max_duration"), "must be greater than 0s");
            }
            Schedule::PerVuIterations {
                vus,
                iterations,
                max_duration,
            }
        }
    };
    (errs.len() == before).then_some(sched)
}

/// Variables of a scenario in definition order: data columns, then setup captures, then
/// iteration captures. A name is usable in a step only once it is defined before that step.
struct Vars {
    names: Vec<String>,
    /// Where each capture is defined, to explain use-before-definition.
    defined_at: HashMap<String, String>,
    /// Names visible now.
    visible: HashMap<String, usize>,
    /// Data file columns, which captures may not reuse: a row would silently overwrite the
    /// captured value at every iteration (or the capture the row), whichever ran last.
    columns: Vec<String>,
    /// Which list is being built: 0 setup, 1 requests.
    section: usize,
    /// Whether the setup (0) and the requests (1) use a data column.
    uses_column: std::cell::Cell<[bool; 2]>,
    /// Names filled from the environment.
    from_env: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Vars {
    fn resolve(&self, name: &str) -> Result<Resolved, String> {
        if let Some(i) = self.visible.get(name) {
            if self.columns.iter().any(|c| c == name) {
                let mut u = self.uses_column.get();
                u[self.section] = true;
                self.uses_column.set(u);
            }
            return Ok(Resolved::Var(*i));
        }
        if let Some(at) = self.defined_at.get(name) {
            return Err(format!(
                "variable `${{{name}}}` is used before it is captured (it is captured by {at})"
            ));
        }
        let v = std::env::var(name).map_err(|_| {
            format!("unknown variable `${{{name}}}`: not a capture, a data column or a set environment variable")
        })?;
        self.from_env.borrow_mut().insert(name.to_string());
        Ok(Resolved::Literal(v))
    }

    fn define(&mut self, name: &str) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            self.visible.insert(name.to_string(), i);
            return i;
        }
        self.names.push(name.to_string());
        let i = self.names.len() - 1;
        self.visible.insert(name.to_string(), i);
        i
    }
}

fn scenario(
    sc: &ScenarioConfig,
    path: &str,
    target: &TargetConfig,
    base_url: Option<&str>,
    base_dir: &Path,
    errs: &mut Errors,
    warnings: &mut Vec<String>,
) -> Option<Scenario> {
    let schedule = schedule(sc, path, errs);
    if sc.requests.is_empty() {
        errs.add(
            format!("{path}.requests"),
            "at least one request is required",
        );
    }
    let mut vars = Vars {
        names: Vec::new(),
        defined_at: HashMap::new(),
        visible: HashMap::new(),
        columns: Vec::new(),
        section: 0,
        uses_column: Default::default(),
        from_env: Default::default(),
    };
    for (list, key) in [(&sc.setup, "setup"), (&sc.requests, "requests")] {
        for (i, r) in list.iter().enumerate() {
            for c in &r.captures {
                vars.defined_at
                    .entry(c.name.clone())
                    .or_insert_with(|| format!("{path}.{key}[{i}]"));
            }
        }
    }
    let data = sc.data.as_ref().and_then(|d| {
        load_data(d, &format!("{path}.data"), base_dir, errs).map(|(cols, rows)| DataSet {
            vars: cols
                .iter()
                .map(|c| {
                    vars.columns.push(c.clone());
                    vars.define(c)
                })
                .collect(),
            rows,
            mode: d.mode,
        })
    });
    let mut step_names = HashMap::new();
    let mut build = |list: &[RequestConfig], key: &str, vars: &mut Vars, errs: &mut Errors| {
        let mut out = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let rp = format!("{path}.{key}[{i}]");
            if !valid_label(&r.name) {
                errs.add(
                    format!("{rp}.name"),
                    format!(
                        "must be 1-64 characters of letters, digits, '-', '_' or '.', got {:?}",
                        r.name
                    ),
                );
            } else if let Some(prev) = step_names.insert(r.name.clone(), rp.clone()) {
                errs.add(
                    format!("{rp}.name"),
                    format!("{:?} is already used by {prev}", r.name),
                );
            }
            if let Some(s) = step(r, &rp, target, base_url, base_dir, vars, errs) {
                out.push(s);
            }
        }
        out
    };
    let setup = build(&sc.setup, "setup", &mut vars, errs);
    vars.section = 1;
    let steps = build(&sc.requests, "requests", &mut vars, errs);
    if let Some(d) = &sc.data {
        let file = d.file.display();
        if d.mode == DataMode::RoundRobin && vars.uses_column.get() == [true, true] {
            warnings.push(format!(
                "{path}.data: mode = \"round-robin\" gives each iteration the next row of {file}, but setup runs once per VU with the VU's own row, so an iteration sends one row's columns with another row's login; use mode = \"per-vu\", or capture in setup what the iterations need"
            ));
        }
        let env = vars.from_env.borrow();
        if !env.is_empty() {
            let names: Vec<String> = env.iter().map(|n| format!("${{{n}}}")).collect();
            warnings.push(format!(
                "{path}: {} not a column of {file}; taken from the environment (a typo in the file's header row?)",
                names.join(", ") + if names.len() == 1 { " is" } else { " are" }
            ));
        }
    }
    let think_time = sc.think_time.unwrap_or_default();
    let setup_policy = setup_policy(sc, path, errs);
    Some(Scenario {
        name: sc.name.clone(),
        executor: sc.executor,
        start: sc.start.unwrap_or_default(),
        think_time,
        schedule: schedule?,
        setup,
        steps,
        var_names: vars.names,
        data,
        // Set by the caller from `[limits]`, which is not per scenario.
        limits: Default::default(),
        setup_policy,
        transport: Arc::default(),
    })
}

/// Every entry of the list at `field` is an HTTP status.
fn check_statuses(codes: &[u16], field: &str, errs: &mut Errors) {
    for (i, c) in codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            errs.add(
                format!("{field}[{i}]"),
                format!("must be an HTTP status 100-599, got {c}"),
            );
        }
    }
}

/// The setup-failure and re-login policy of a scenario, with its limits.
fn setup_policy(sc: &ScenarioConfig, path: &str, errs: &mut Errors) -> SetupPolicy {
    let mut p = SetupPolicy::default();
    if let Some(r) = &sc.setup_retry {
        p.retries = r.max.unwrap_or(p.retries);
        p.backoff = r.backoff.unwrap_or(p.backoff);
    }
    p.on_failure = sc.on_setup_failure.unwrap_or_default();
    p.rerun_on = sc.rerun_setup_on.clone();
    p.max_reruns = sc.max_setup_reruns.unwrap_or(p.max_reruns);
    if p.retries > 100 {
        errs.add(
            format!("{path}.setup_retry.max"),
            format!("must be at most 100, got {}", p.retries),
        );
    }
    if p.backoff > Duration::from_secs(3600) {
        errs.add(
            format!("{path}.setup_retry.backoff"),
            format!("must be at most 1h, got {}", fmt_dur(p.backoff)),
        );
    }
    if p.max_reruns > 10_000 {
        errs.add(
            format!("{path}.max_setup_reruns"),
            format!("must be at most 10000, got {}", p.max_reruns),
        );
    }
    check_statuses(&p.rerun_on, &format!("{path}.rerun_setup_on"), errs);
    let configured = sc.setup_retry.is_some()
        || sc.on_setup_failure.is_some()
        || !sc.rerun_setup_on.is_empty()
        || sc.max_setup_reruns.is_some();
    if configured && sc.setup.is_empty() {
        errs.add(
            format!("{path}.setup"),
            "setup_retry, on_setup_failure, rerun_setup_on and max_setup_reruns need [[scenarios.setup]] steps",
        );
    }
    p
}

fn step(
    r: &RequestConfig,
    rp: &str,
    target: &TargetConfig,
    base_url: Option<&str>,
    base_dir: &Path,
    vars: &mut Vars,
    errs: &mut Errors,
) -> Option<Step> {
    let before = errs.len();
    let method = Method::from_bytes(r.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| {
            errs.add(
                format!("{rp}.method"),
                format!("not an HTTP method: {:?}", r.method),
            )
        })
        .ok();
    let parse = |s: &str, esc: Escape, field: String, errs: &mut Errors| -> Option<Template> {
        Template::parse(s, esc, |n| vars.resolve(n))
            .map_err(|e| errs.add(field, e))
            .ok()
    };
    let url_text = match (&r.url, &r.path) {
        (Some(_), Some(_)) => {
            errs.add(format!("{rp}.path"), "give either url or path, not both");
            None
        }
        (Some(u), None) => Some((u.clone(), format!("{rp}.url"))),
        (None, Some(p)) => match base_url {
            Some(b) => {
                if !p.starts_with('/') {
                    errs.add(
                        format!("{rp}.path"),
                        format!("must start with '/', got {p:?}"),
                    );
                }
                Some((format!("{b}{p}"), format!("{rp}.path")))
            }
            None => {
                errs.add(
                    format!("{rp}.path"),
                    "needs target.base_url (or give an absolute url instead)",
                );
                None
            }
        },
        (None, None) => {
            errs.add(
                format!("{rp}.url"),
                "give url, or path with target.base_url",
            );
            None
        }
    };
    let mut basic = None;
    let url = url_text.and_then(|(u, field)| {
        let mut t = parse(&u, Escape::None, field.clone(), errs)?;
        // Check the URL now with placeholders filled by a dummy, so typos fail at load.
        let probe = t.render(&vec![Some("x".to_string()); 64]);
        if !check_url(&probe, &field, errs) {
            return None;
        }
        match take_userinfo(&probe) {
            Ok(None) => {}
            Ok(Some((stripped, auth))) if t.as_static().is_some() => {
                // Credentials in the URL go out as `Authorization: Basic`, never in `Host`.
                t = Template::literal(stripped);
                basic = Some((auth, field.clone()));
            }
            Ok(Some(_)) => {
                errs.add(
                    field,
                    "user:password@ in a URL with ${variables} is not supported; \
                     give the credentials as an Authorization header",
                );
                return None;
            }
            Err(e) => {
                errs.add(field, e);
                return None;
            }
        }
        // The client's own parser: what url::Url repairs (a space, a raw quote) it refuses,
        // and every request would fail at run time without a byte sent.
        let check = t.render(&vec![Some("x".to_string()); 64]);
        if let Err(e) = crate::load::http1::Target::parse(&check) {
            errs.add(field, format!("cannot be sent: {e}"));
            return None;
        }
        Some(t)
    });
    let mut headers = Vec::new();
    let bearer = r.bearer_token.as_ref().or(target.bearer_token.as_ref());
    let mut header_srcs: Vec<(String, String, String)> = target
        .headers
        .iter()
        .filter(|(k, _)| !r.headers.keys().any(|rk| rk.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.clone(), v.clone(), format!("target.headers.{k}")))
        .collect();
    header_srcs.extend(
        r.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), format!("{rp}.headers.{k}"))),
    );
    if let Some((auth, field)) = basic {
        if bearer.is_some()
            || header_srcs
                .iter()
                .any(|(k, _, _)| k.eq_ignore_ascii_case("authorization"))
        {
            errs.add(
                field.clone(),
                "has user:password@ and there is also a bearer token or an Authorization header; give one of them",
            );
        } else {
            header_srcs.push(("authorization".into(), auth, field));
        }
    }
    if let Some(tok) = bearer {
        let field = if r.bearer_token.is_some() {
            format!("{rp}.bearer_token")
        } else {
            "target.bearer_token".to_string()
        };
        if header_srcs
            .iter()
            .any(|(k, _, _)| k.eq_ignore_ascii_case("authorization"))
        {
            errs.add(
                field.clone(),
                "conflicts with an Authorization header; give one of them",
            );
        }
        // `Bearer ` with nothing after it is sent without complaint by every client and
        // fails every request; an empty value is almost always an unset or empty variable.
        let probe = Template::parse(tok, Escape::None, |n| vars.resolve(n)).ok();
        if probe
            .as_ref()
            .and_then(|t| t.as_static())
            .is_some_and(|t| t.trim().is_empty())
        {
            errs.add(
                field.clone(),
                "is empty after substitution; set the token (or its environment variable) or remove bearer_token",
            );
        }
        header_srcs.push(("authorization".into(), format!("Bearer {tok}"), field));
    }
    for (k, v, field) in header_srcs {
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            errs.add(field, format!("not a valid header name: {k:?}"));
            continue;
        };
        if let Some(t) = parse(&v, Escape::None, field.clone(), errs) {
            if let Some(s) = t.as_static() {
                if http::HeaderValue::from_str(s).is_err() {
                    // Never echo the value: it may hold a token.
                    errs.add(field, "not a valid header value (control characters?)");
                    continue;
                }
            }
            headers.push((name, t));
        }
    }
    let body = match &r.body {
        None => Some(BodySpec::Empty),
        Some(b) => {
            let mut errs2 = Errors::new();
            let spec = {
                let mut p = |s: &str, esc: Escape, field: String| parse(s, esc, field, &mut errs2);
                body::build(b, &format!("{rp}.body"), base_dir, &mut p, errs)
            };
            errs.extend(errs2);
            spec
        }
    };
    if matches!(
        body,
        Some(BodySpec::Static { .. } | BodySpec::Templated { .. })
    ) && method
        .as_ref()
        .is_some_and(|m| m == Method::GET || m == Method::HEAD)
    {
        errs.add(
            format!("{rp}.body"),
            format!("a {} request cannot have a body", r.method),
        );
    }
    check_statuses(&r.expect, &format!("{rp}.expect"), errs);
    let timeout = r.timeout.unwrap_or(target.timeout);
    if timeout.is_zero() {
        errs.add(format!("{rp}.timeout"), "must be greater than 0s");
    }
    // Captures become visible to later steps only, so they are defined after parsing.
    let mut captures = Vec::new();
    for (i, c) in r.captures.iter().enumerate() {
        let cp = format!("{rp}.captures[{i}]");
        if !valid_label(&c.name) || c.name.contains('.') {
            errs.add(
                format!("{cp}.name"),
                format!("must be letters, digits, '-' or '_', got {:?}", c.name),
            );
            continue;
        }
        if vars.columns.contains(&c.name) {
            errs.add(
                format!("{cp}.name"),
                format!(
                    "{:?} is already a data column of the scenario's data file; use another name",
                    c.name
                ),
            );
            continue;
        }
        let kinds = [c.json.is_some(), c.header.is_some(), c.regex.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            errs.add(cp.clone(), "give exactly one of json, header or regex");
            continue;
        }
        let kind = if let Some(p) = &c.json {
            if !(p.is_empty() || p.starts_with('/')) {
                errs.add(
                    format!("{cp}.json"),
                    format!("a JSON pointer starts with '/', got {p:?}"),
                );
                continue;
            }
            CaptureKind::JsonPointer(p.clone())
        } else if let Some(h) = &c.header {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => CaptureKind::Header(n),
                Err(_) => {
                    errs.add(
                        format!("{cp}.header"),
                        format!("not a valid header name: {h:?}"),
                    );
                    continue;
                }
            }
        } else {
            let re = c.regex.as_deref().unwrap_or_default();
            match regex::Regex::new(re) {
                Ok(r) => CaptureKind::Regex(r),
                Err(e) => {
                    errs.add(format!("{cp}.regex"), format!("invalid regex: {e}"));
                    continue;
                }
            }
        };
        captures.push(Capture {
            name: c.name.clone(),
            var: vars.define(&c.name),
            kind,
        });
    }
    if errs.len() != before {
        return None;
    }
    Some(Step {
        name: r.name.clone(),
        method: method?,
        url: url?,
        headers,
        body: body?,
        expect: if r.expect.is_empty() {
            Expect::Any2xx
        } else {
            Expect::Codes(r.expect.clone())
        },
        timeout,
        captures,
    })
}

/// Read a CSV (with a header row) or JSON (array of objects) file of rows.
pub(crate) fn load_data(
    d: &DataConfig,
    path: &str,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let file = if d.file.is_absolute() {
        d.file.clone()
    } else {
        base_dir.join(&d.file)
    };
    let text = match crate::files::read_regular(&file, crate::files::DATA_LIMIT)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            String::from_utf8(b).map_err(|e| {
                let (line, col) =
                    crate::files::line_col(e.as_bytes(), e.utf8_error().valid_up_to());
                format!(
                    "{} is not UTF-8: invalid byte at offset {} (line {line}, column {col})",
                    file.display(),
                    e.utf8_error().valid_up_to()
                )
            })
        }) {
        Ok(t) => t,
        Err(e) => {
            errs.add(format!("{path}.file"), e);
            return None;
        }
    };
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed: Result<(Vec<String>, Vec<Vec<String>>), String> = if is_json {
        serde_json::from_str::<Vec<serde_json::Map<String, serde_json::Value>>>(&text)
            .map_err(|e| format!("not a JSON array of objects: {e}"))
            .map(|objs| {
                let mut cols: Vec<String> = Vec::new();
                for o in &objs {
                    for k in o.keys() {
                        if !cols.contains(k) {
                            cols.push(k.clone());
                        }
                    }
                }
                let rows = objs
                    .iter()
                    .map(|o| {
                        cols.iter()
                            .map(|c| match o.get(c) {
                                Some(serde_json::Value::String(s)) => s.clone(),
                                Some(v) => v.to_string(),
                                None => String::new(),
                            })
                            .collect()
                    })
                    .collect();
                (cols, rows)
            })
    } else {
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        rdr.headers()
            .map(|h| h.iter().map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .map_err(|e| format!("not valid CSV: {e}"))
            .and_then(|cols| {
                rdr.records()
                    .map(|r| {
                        r.map(|r| r.iter().map(str::to_string).collect())
                            .map_err(|e| format!("not valid CSV: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|rows| (cols, rows))
            })
    };
    match parsed {
        Err(e) => {
            errs.add(format!("{path}.file"), e);
            None
        }
        Ok((_, rows)) if rows.is_empty() => {
            errs.add(
                format!("{path}.file"),
                format!("{} has no rows", file.display()),
            );
            None
        }
        Ok((cols, rows)) => {
            for (i, c) in cols.iter().enumerate() {
                if cols[..i].contains(c) {
                    errs.add(
                        format!("{path}.file"),
                        format!("column {c:?} appears twice in {}", file.display()),
                    );
                    return None;
                }
                if !valid_label(c) || c.contains('.') {
                    errs.add(
                        format!("{path}.file"),
                        format!("column name {c:?} is not usable as a variable"),
                    );
                    return None;
                }
            }
            Some((cols, rows))
        }
    }
}

/// The config with every secret replaced, for printing and logging.
pub fn redacted(raw: &RawConfig) -> RawConfig {
    let mut r = raw.clone();
    let hide = |h: &mut std::collections::BTreeMap<String, String>| {
        for (k, v) in h.iter_mut() {
            if SENSITIVE_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                *v = REDACTED.into();
            }
        }
    };
    if r.target.bearer_token.is_some() {
        r.target.bearer_token = Some(REDACTED.into());
    }
    hide(&mut r.target.headers);
    for sc in &mut r.scenarios {
        for req in sc.setup.iter_mut().chain(sc.requests.iter_mut()) {
            if req.bearer_token.is_some() {
                req.bearer_token = Some(REDACTED.into());
            }
            hide(&mut req.headers);
        }
    }
    r
}
