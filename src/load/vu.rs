//! One virtual user and one iteration: run the steps in order, fill `${vars}`, capture values
//! from responses, and record every result. A failed request is data, never an error.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::http1::{
    write_header, write_request_line, Conns, FileBody, RawRequest, Response, Target, Want,
};
use super::meters::{Meters, ScenarioMetrics, StepMetrics};
use super::plan::DataMode;
use super::plan::{CaptureKind, DataSet, ScenarioRef, Step};
use super::FailureReason;
use crate::latency::LatencyRecorder;

/// A step with what can be computed once: its static target, its static header lines, its
/// metrics, and, when nothing in it varies, its whole request head.
struct PreparedStep {
    step: Step,
    static_target: Option<Target>,
    /// Serialized static headers, without `Host`, `Content-Length` and the names a templated
    /// header sets (those are written per request).
    static_lines: Vec<u8>,
    /// A `Content-Length` the user set, sent when the client does not set its own.
    user_length: Option<HeaderValue>,
    /// The whole head, built once for a step with a static URL, headers and body.
    fixed_head: Option<Vec<u8>>,
    /// A large static body in a memfd, sent without copying it.
    file_body: Option<FileBody>,
    metrics: StepMetrics,
    keep_body: bool,
    want_headers: bool,
}

impl PreparedStep {
    fn new(s: &Step, m: StepMetrics) -> Self {
        let mut static_headers = HeaderMap::new();
        static_headers.insert(USER_AGENT, HeaderValue::from_static("loadspec/0.1"));
        for (k, t) in &s.headers {
            if let Some(v) = t.as_static().and_then(|v| HeaderValue::from_str(v).ok()) {
                static_headers.insert(k.clone(), v);
            }
        }
        if let Some(ct) = s.body.content_type() {
            static_headers.insert(CONTENT_TYPE, ct.clone());
        }
        let user_length = static_headers.get(CONTENT_LENGTH).cloned();
        let mut static_lines = Vec::new();
        for (k, v) in &static_headers {
            let templated = s
                .headers
                .iter()
                .any(|(n, t)| n == k && t.as_static().is_none());
            if !templated && k != HOST && k != CONTENT_LENGTH {
                write_header(&mut static_lines, k.as_str(), v.as_bytes());
            }
        }
        let mut p = PreparedStep {
            static_target: s.url.as_static().and_then(|u| Target::parse(u).ok()),
            static_lines,
            user_length,
            fixed_head: None,
            file_body: s
                .body
                .static_chunks()
                .filter(|c| c.iter().map(Bytes::len).sum::<usize>() >= FileBody::MIN_LEN)
                .and_then(FileBody::new),
            metrics: m,
            keep_body: s
                .captures
                .iter()
                .any(|c| !matches!(c.kind, CaptureKind::Header(_))),
            want_headers: s
                .captures
                .iter()
                .any(|c| matches!(c.kind, CaptureKind::Header(_))),
            step: s.clone(),
        };
        let all_static = s.headers.iter().all(|(_, t)| t.as_static().is_some());
        if let (Some(t), Some(body), true) = (&p.static_target, s.body.static_chunks(), all_static)
        {
            let len = body.iter().map(|b| b.len() as u64).sum();
            let mut head = Vec::new();
            if p.write_head(&mut head, t, len, &[]) {
                p.fixed_head = Some(head);
            }
        }
        p
    }

    /// The request head, with the same header precedence as a `HeaderMap` built in order:
    /// defaults and static headers, then `Host`, then templated headers (a later one replaces
    /// an earlier one of the same name), then the client's `Content-Length`. False when a
    /// templated header rendered to an invalid value (the request must not go out).
    fn write_head(
        &self,
        out: &mut Vec<u8>,
        t: &Target,
        body_len: u64,
        vars: &[Option<String>],
    ) -> bool {
        let step = &self.step;
        write_request_line(out, &step.method, t.path_str());
        out.extend_from_slice(&self.static_lines);
        let own_length =
            body_len > 0 || step.method == http::Method::POST || step.method == http::Method::PUT;
        let templated = |name: &HeaderName| {
            step.headers
                .iter()
                .any(|(n, t)| n == name && t.as_static().is_none())
        };
        if !templated(&HOST) {
            write_header(out, HOST.as_str(), t.host_header.as_bytes());
        }
        for (i, (k, t)) in step.headers.iter().enumerate() {
            // Only the last template of a name counts, as with repeated inserts.
            if t.as_static().is_some()
                || (own_length && k == CONTENT_LENGTH)
                || step.headers[i + 1..].iter().any(|(n, _)| n == k)
            {
                continue;
            }
            let v = t.render(vars);
            if !valid_header_value(&v) {
                return false;
            }
            write_header(out, k.as_str(), v.as_bytes());
        }
        if own_length {
            // Formatted in place: no allocation per request.
            let _ = write!(out, "content-length: {body_len}\r\n");
        } else if let Some(v) = &self.user_length {
            if !templated(&CONTENT_LENGTH) {
                write_header(out, CONTENT_LENGTH.as_str(), v.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        true
    }
}

/// What `HeaderValue::from_str` accepts: visible bytes, spaces and tabs.
fn valid_header_value(s: &str) -> bool {
    s.bytes().all(|b| (b >= 32 && b != 127) || b == b'\t')
}

/// One request's (step's) counters: completed requests, failed checks, status mix, and the
/// latency sum of its responses (from its Prometheus histogram; percentiles per request are
/// not kept, only per scenario).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RequestTotals {
    pub request: String,
    pub requests: u64,
    pub failed_checks: u64,
    pub status: std::collections::BTreeMap<String, u64>,
    /// Requests that got a response (the latency sum covers these).
    pub responses: u64,
    pub latency_sum_seconds: f64,
}

/// Everything the VUs of one scenario share, read-only except for atomics.
pub struct ScenarioCtx {
    pub scenario: ScenarioRef,
    pub metrics: ScenarioMetrics,
    pub latency: LatencyRecorder,
    setup: Vec<PreparedStep>,
    steps: Vec<PreparedStep>,
    round_robin: AtomicU64,
    /// The target's state as the VUs see it, for one WARN line when it stops accepting
    /// connections and one when it accepts them again.
    health: Health,
}

/// Consecutive failed connects (any VU) and whether the target was declared down.
#[derive(Default)]
struct Health {
    failed_connects: AtomicU64,
    down: AtomicBool,
}

/// Failed connects in a row, over all VUs, before the target is declared down: one refused
/// connect among successes is noise, not an outage.
const DOWN_AFTER: u64 = 3;

impl Health {
    fn connect(&self, ok: bool, scenario: &str, authority: &str, backoff_max: std::time::Duration) {
        if ok {
            self.failed_connects.store(0, Ordering::Relaxed);
            if self.down.swap(false, Ordering::Relaxed) {
                tracing::warn!(%scenario, target = %authority, "target is back: connects succeed again");
            }
        } else if self.failed_connects.fetch_add(1, Ordering::Relaxed) + 1 >= DOWN_AFTER
            && !self.down.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                %scenario,
                target = %authority,
                backoff_max = %humantime::format_duration(backoff_max),
                "target is down: connects fail; each VU backs off (failures count with reason connect)"
            );
        }
    }
}

/// Counts a request whose future is dropped before its outcome was recorded (the drain
/// deadline or a ramp-down's grace period cut it): the target may have received it, so
/// loadspec's total must include it.
struct InFlight<'a> {
    metrics: &'a StepMetrics,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.failure(FailureReason::Interrupted);
            self.metrics.check_fail.inc();
        }
    }
}

impl ScenarioCtx {
    pub fn new(scenario: ScenarioRef, m: &impl Meters) -> Arc<Self> {
        let prep = |steps: &[Step]| {
            steps
                .iter()
                .map(|s| PreparedStep::new(s, m.step(&scenario.name, &s.name)))
                .collect()
        };
        Arc::new(Self {
            metrics: m.scenario(&scenario.name),
            latency: LatencyRecorder::new(),
            setup: prep(&scenario.setup),
            steps: prep(&scenario.steps),
            round_robin: AtomicU64::new(0),
            health: Health::default(),
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

    /// Per-request counters so far (setup steps first), for the per-request figures of the
    /// end-of-run summary.
    pub fn request_totals(&self) -> Vec<RequestTotals> {
        self.setup
            .iter()
            .chain(&self.steps)
            .map(|s| {
                let mut status = std::collections::BTreeMap::new();
                s.metrics.counts(&mut status);
                let failed_checks = s.metrics.check_fail.get();
                RequestTotals {
                    request: s.step.name.clone(),
                    requests: s.metrics.check_pass.get() + failed_checks,
                    failed_checks,
                    status,
                    responses: s.metrics.duration.get_sample_count(),
                    latency_sum_seconds: s.metrics.duration.get_sample_sum(),
                }
            })
            .collect()
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
            if !self.exec(s, vu, Instant::now()).await.ok {
                self.metrics.setup_fail.inc();
                return false;
            }
        }
        self.metrics.setup_ok.inc();
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
        let policy = &self.scenario.setup_policy;
        for (i, s) in self.steps.iter().enumerate() {
            let start = if i == 0 { t0 } else { Instant::now() };
            let done = self.exec(s, vu, start).await;
            if done.status.is_some_and(|c| policy.rerun_on.contains(&c))
                && vu.reruns < policy.max_reruns
            {
                // The login expired: stop this iteration here (one failed request) and run
                // the setup again before the next one.
                vu.reruns += 1;
                vu.setup_done = false;
                break;
            }
            if !done.ok && !s.step.captures.is_empty() {
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

    /// A failure without an exchange: count it, then pause the VU (doubling up to the
    /// limit) so a dead target or an unsendable value cannot spin it.
    async fn fail_without_exchange(&self, s: &PreparedStep, vu: &mut Vu, reason: FailureReason) {
        s.metrics.failure(reason);
        s.metrics.check_fail.inc();
        let l = &self.scenario.limits;
        vu.backoff = if vu.backoff.is_zero() {
            l.backoff_min
        } else {
            (vu.backoff * 2).min(l.backoff_max)
        };
        tokio::time::sleep(vu.backoff).await;
    }

    /// Send one step and record it.
    async fn exec(&self, s: &PreparedStep, vu: &mut Vu, start: Instant) -> Done {
        let step = &s.step;
        let parsed;
        let target = match &s.static_target {
            Some(t) => t,
            None => match Target::parse(&step.url.render(&vu.vars)) {
                Ok(t) => {
                    parsed = t;
                    &parsed
                }
                Err(_) => {
                    // A variable produced an unusable URL: nothing can be sent.
                    self.fail_without_exchange(s, vu, FailureReason::InvalidRequest)
                        .await;
                    return Done::FAILED;
                }
            },
        };
        let mut rendered = None;
        let body: &[Bytes] = match step.body.static_chunks() {
            Some(b) => b,
            None => rendered.insert(step.body.render(&vu.vars)),
        };
        let body_len: u64 = body.iter().map(|b| b.len() as u64).sum();
        let mut scratch = vu.conns.take_head();
        let head: &[u8] = match &s.fixed_head {
            Some(h) => h,
            None => {
                if !s.write_head(&mut scratch, target, body_len, &vu.vars) {
                    // A variable holds control characters. Sending without the header
                    // would blame the target for a 401; count it here instead.
                    vu.conns.put_head(scratch);
                    self.fail_without_exchange(s, vu, FailureReason::InvalidRequest)
                        .await;
                    return Done::FAILED;
                }
                &scratch
            }
        };
        let req = RawRequest {
            target,
            head,
            body,
            file: s.file_body.as_ref(),
            head_only: step.method == http::Method::HEAD,
        };
        let want = Want {
            body: s.keep_body,
            headers: s.want_headers,
        };
        let mut in_flight = InFlight {
            metrics: &s.metrics,
            done: false,
        };
        let result = vu.conns.send_raw(req, want, step.timeout).await;
        in_flight.done = true;
        vu.conns.put_head(scratch);
        // Only what the socket took: a refused connect sends nothing.
        self.metrics.data_sent.inc_by(vu.conns.last_sent);
        if let Some(ok) = vu.conns.last_connect {
            self.health.connect(
                ok,
                &self.scenario.name,
                &target.authority,
                self.scenario.limits.backoff_max,
            );
        }
        let end = Instant::now();
        let retries = vu.conns.take_retries();
        if retries > 0 {
            s.metrics.phases.retries.inc_by(retries);
        }
        let phases = vu.conns.phases();
        if let Some(h) = phases.tls_handshake {
            s.metrics.tls_handshake(h.as_secs_f64());
        }
        match result {
            Ok(resp) if resp.body_over_cap => {
                vu.backoff = std::time::Duration::ZERO;
                self.metrics.data_received.inc_by(resp.received);
                s.metrics.failure(FailureReason::CaptureTooLarge);
                s.metrics.check_fail.inc();
                for c in &step.captures {
                    vu.vars[c.var] = None;
                }
                Done {
                    ok: false,
                    status: Some(resp.status),
                }
            }
            Ok(resp) => {
                vu.backoff = std::time::Duration::ZERO;
                let t = resp.timing;
                if !t.connect.is_zero() {
                    s.metrics.phases.connect.observe(t.connect.as_secs_f64());
                }
                s.metrics.phases.waiting.observe(t.waiting.as_secs_f64());
                // k6's http_req_duration: everything from the (intended) start but the
                // connect and the TLS handshake, which have their own histograms.
                let elapsed = end
                    .saturating_duration_since(start)
                    .saturating_sub(t.connect)
                    .saturating_sub(phases.tls_handshake.unwrap_or_default());
                self.metrics.data_received.inc_by(resp.received);
                s.metrics.latency(elapsed.as_secs_f64());
                self.latency.record(elapsed);
                s.metrics.response(resp.status);
                let ok = step.expect.accepts(resp.status) && capture(step, &resp, vu);
                if ok {
                    s.metrics.check_pass.inc();
                } else {
                    s.metrics.check_fail.inc();
                }
                Done {
                    ok,
                    status: Some(resp.status),
                }
            }
            Err(reason) if reason.without_exchange() => {
                self.fail_without_exchange(s, vu, reason).await;
                Done::FAILED
            }
            Err(reason) => {
                s.metrics.failure(reason);
                s.metrics.check_fail.inc();
                // Every failure path gives the worker back, even when the socket failed
                // without waiting.
                tokio::task::yield_now().await;
                Done::FAILED
            }
        }
    }
}

/// How one step ended.
struct Done {
    /// Its check passed.
    ok: bool,
    /// The response status, if a response arrived.
    status: Option<u16>,
}

impl Done {
    const FAILED: Done = Done {
        ok: false,
        status: None,
    };
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
    /// The global VU index across shards (shard-striped), which picks its per-VU data row.
    pub id: u64,
    pub vars: Vec<Option<String>>,
    pub iterations: u64,
    pub setup_done: bool,
    /// Its last setup round failed (`on_setup_failure = "retry"` waits before the next).
    pub setup_failed: bool,
    /// Setup re-runs for `rerun_setup_on` so far.
    pub reruns: u32,
    conns: Conns,
    /// The pause after the last failure without an exchange; zero after a success.
    backoff: std::time::Duration,
}

impl Vu {
    pub fn new(id: u64, ctx: &ScenarioCtx) -> Self {
        Self {
            id,
            vars: vec![None; ctx.scenario.var_names.len()],
            iterations: 0,
            setup_done: false,
            setup_failed: false,
            reruns: 0,
            conns: Conns::new(ctx.scenario.transport.clone(), id, ctx.scenario.limits),
            backoff: std::time::Duration::ZERO,
        }
    }
}
