//! One virtual user and one iteration: run the steps in order, fill `${vars}`, capture values
//! from responses, and record every result. A failed request is data, never an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Request};

use super::client::{head_len, Conns, Response, Target};
use super::plan::{CaptureKind, DataSet, ScenarioRef, Step};
use super::recorder::LatencyRecorder;
use crate::config::raw::DataMode;
use crate::metrics::{LoadMetrics, ScenarioMetrics, StepMetrics};

/// A step with what can be computed once: its static target and headers, its metrics.
struct PreparedStep {
    step: Step,
    static_target: Option<Target>,
    static_headers: HeaderMap,
    metrics: StepMetrics,
    keep_body: bool,
}

/// Everything the VUs of one scenario share, read-only except for atomics.
pub struct ScenarioCtx {
    pub scenario: ScenarioRef,
    pub metrics: ScenarioMetrics,
    pub latency: LatencyRecorder,
    setup: Vec<PreparedStep>,
    steps: Vec<PreparedStep>,
    round_robin: AtomicU64,
}

impl ScenarioCtx {
    pub fn new(scenario: ScenarioRef, m: &LoadMetrics) -> Arc<Self> {
        let prep = |steps: &[Step]| {
            steps
                .iter()
                .map(|s| {
                    let mut static_headers = HeaderMap::new();
                    static_headers.insert(
                        http::header::USER_AGENT,
                        HeaderValue::from_static("loadspec/0.1"),
                    );
                    for (k, t) in &s.headers {
                        if let Some(v) = t.as_static().and_then(|v| HeaderValue::from_str(v).ok()) {
                            static_headers.insert(k.clone(), v);
                        }
                    }
                    if let Some(ct) = s.body.content_type() {
                        static_headers.insert(http::header::CONTENT_TYPE, ct.clone());
                    }
                    PreparedStep {
                        static_target: s.url.as_static().and_then(|u| Target::parse(u).ok()),
                        static_headers,
                        metrics: m.step(&scenario.name, &s.name),
                        keep_body: s
                            .captures
                            .iter()
                            .any(|c| !matches!(c.kind, CaptureKind::Header(_))),
                        step: s.clone(),
                    }
                })
                .collect()
        };
        Arc::new(Self {
            metrics: m.scenario(&scenario.name),
            latency: LatencyRecorder::new(),
            setup: prep(&scenario.setup),
            steps: prep(&scenario.steps),
            round_robin: AtomicU64::new(0),
            scenario,
        })
    }

    /// Responses and failures of every step so far, by status code or failure reason.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = std::collections::BTreeMap::new();
        for s in self.setup.iter().chain(&self.steps) {
            s.metrics.counts(&mut m);
        }
        m
    }

    /// (completed requests, failed checks) so far.
    pub fn totals(&self) -> (u64, u64) {
        self.setup
            .iter()
            .chain(&self.steps)
            .fold((0, 0), |(n, f), s| {
                let fail = s.metrics.check_fail.get();
                (n + s.metrics.check_pass.get() + fail, f + fail)
            })
    }

    /// Run the once-per-VU setup steps. Returns false when one failed its check. Records the
    /// result in `vu.setup_done`, so an interrupted or failed setup is run again before the
    /// VU's next iteration instead of that iteration running without its captures.
    pub async fn setup(&self, vu: &mut Vu) -> bool {
        vu.setup_done = false;
        // Setup sees the VU's own row in both data modes (log in as this VU's user); a
        // round-robin rotation is left to the iterations.
        if let Some(data) = &self.scenario.data {
            self.assign_row(vu, data, vu.id);
        }
        for s in &self.setup {
            if !self.exec(s, vu, Instant::now()).await {
                return false;
            }
        }
        vu.setup_done = true;
        true
    }

    /// Put row `n % rows` of `data` into the VU's variables.
    fn assign_row(&self, vu: &mut Vu, data: &DataSet, n: u64) {
        let row = &data.rows[(n % data.rows.len() as u64) as usize];
        for (var, val) in data.vars.iter().zip(row) {
            vu.vars[*var] = Some(val.clone());
        }
    }

    /// One iteration. `intended` is the open model's scheduled start: the first request's
    /// latency counts from it, so a stalled target cannot hide queueing (coordinated
    /// omission).
    pub async fn iteration(&self, vu: &mut Vu, intended: Option<Instant>) {
        if !self.setup.is_empty() && !vu.setup_done {
            // Its setup failed (counted there): the steps would run without their inputs.
            return;
        }
        let t0 = intended.unwrap_or_else(Instant::now);
        if let Some(data) = &self.scenario.data {
            let n = match data.mode {
                DataMode::PerVu => vu.id,
                DataMode::RoundRobin => self.round_robin.fetch_add(1, Ordering::Relaxed),
            };
            self.assign_row(vu, data, n);
        }
        for (i, s) in self.steps.iter().enumerate() {
            let start = if i == 0 { t0 } else { Instant::now() };
            if !self.exec(s, vu, start).await && !s.step.captures.is_empty() {
                // A failed capture leaves later steps without their inputs.
                break;
            }
        }
        self.metrics
            .iteration_duration
            .observe(t0.elapsed().as_secs_f64());
        self.metrics.iterations.inc();
        vu.iterations += 1;
    }

    /// Send one step and record it; true when its check passed.
    async fn exec(&self, s: &PreparedStep, vu: &mut Vu, start: Instant) -> bool {
        let step = &s.step;
        let target = match &s.static_target {
            Some(t) => t.clone(),
            None => match Target::parse(&step.url.render(&vu.vars)) {
                Ok(t) => t,
                Err(_) => {
                    // A variable produced an unusable URL: count it as a failed check.
                    s.metrics.check_fail.inc();
                    return false;
                }
            },
        };
        let body = step.body.render(&vu.vars);
        let body_len = body.len();
        let mut req = Request::new(body);
        *req.method_mut() = step.method.clone();
        *req.uri_mut() = target.path.clone();
        let h = req.headers_mut();
        *h = s.static_headers.clone();
        h.insert(http::header::HOST, target.host_header.clone());
        for (k, t) in &step.headers {
            if t.as_static().is_none() {
                match HeaderValue::from_str(&t.render(&vu.vars)) {
                    Ok(v) => {
                        h.insert(k.clone(), v);
                    }
                    Err(_) => {
                        // A variable holds control characters. Sending without the header
                        // would blame the target for a 401; count it here instead.
                        s.metrics.check_fail.inc();
                        return false;
                    }
                }
            }
        }
        if body_len > 0 || step.method == http::Method::POST || step.method == http::Method::PUT {
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body_len));
        }
        let sent = body_len
            + head_len(h)
            + (step.method.as_str().len() + target.path.to_string().len() + 11) as u64;
        self.metrics.data_sent.inc_by(sent);
        let result = vu.conns.send(&target, req, s.keep_body, step.timeout).await;
        let elapsed = start.elapsed();
        match result {
            Ok(resp) => {
                self.metrics.data_received.inc_by(resp.received);
                s.metrics.duration.observe(elapsed.as_secs_f64());
                self.latency.record(elapsed);
                s.metrics.response(resp.status);
                let ok = step.expect.accepts(resp.status) && capture(step, &resp, vu);
                if ok {
                    s.metrics.check_pass.inc();
                } else {
                    s.metrics.check_fail.inc();
                }
                ok
            }
            Err(reason) => {
                s.metrics.failure(reason);
                s.metrics.check_fail.inc();
                false
            }
        }
    }
}

/// Apply the step's captures; false if any found nothing.
fn capture(step: &Step, resp: &Response, vu: &mut Vu) -> bool {
    let mut ok = true;
    let mut json: Option<Option<serde_json::Value>> = None;
    for c in &step.captures {
        let value = match &c.kind {
            CaptureKind::Header(name) => resp
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            CaptureKind::JsonPointer(p) => {
                let doc = json.get_or_insert_with(|| {
                    resp.body
                        .as_ref()
                        .and_then(|b| serde_json::from_slice(b).ok())
                });
                doc.as_ref().and_then(|d| d.pointer(p)).map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            }
            CaptureKind::Regex(re) => resp.body.as_ref().and_then(|b| {
                let text = String::from_utf8_lossy(b);
                re.captures(&text).map(|caps| {
                    caps.get(1)
                        .or_else(|| caps.get(0))
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_default()
                })
            }),
        };
        match value {
            Some(v) => vu.vars[c.var] = Some(v),
            None => {
                vu.vars[c.var] = None;
                ok = false;
            }
        }
    }
    ok
}

/// One virtual user's own state: its variables and connections.
pub struct Vu {
    pub id: u64,
    pub vars: Vec<Option<String>>,
    pub iterations: u64,
    pub setup_done: bool,
    conns: Conns,
}

impl Vu {
    pub fn new(id: u64, ctx: &ScenarioCtx) -> Self {
        Self {
            id,
            vars: vec![None; ctx.scenario.var_names.len()],
            iterations: 0,
            setup_done: false,
            conns: Conns::default(),
        }
    }
}
