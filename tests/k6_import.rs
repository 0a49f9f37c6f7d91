//! `loadspec import k6`: scripts of our own, one per feature, each imported by the real binary,
//! validated, and run for a few seconds against an in-process demo-target on 127.0.0.1:0. The
//! seed's upload script must reach demo-target exactly as examples/s3-image-upload.toml's
//! request does. Every run is bounded in iterations or duration.

mod support_core;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use loadspec::config::raw::{ExecutorKind, OnFinish, RawConfig};
use loadspec::demo_target::{DemoStats, DemoTargetConfig};
use loadspec::experiment::plan::ScenarioTotals;
use support_core::*;

const BIN: &str = env!("CARGO_BIN_EXE_loadspec");
const PROMPT: &str = "미니멀하고 화이톤의 셋업";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k6")
        .join(name)
}

/// A plan written by `loadspec import k6` into its own temp dir.
struct Plan {
    dir: tempfile::TempDir,
    path: PathBuf,
    text: String,
    stderr: String,
}

impl Plan {
    fn raw(&self) -> RawConfig {
        loadspec::config::parse_raw(&self.text, "imported plan").expect("the plan parses")
    }
}

fn loadspec(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run loadspec")
}

/// Import `name` and check that `loadspec validate` accepts the plan with `envs` set.
fn import(name: &str, envs: &[(&str, &str)]) -> Plan {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.toml");
    let script = fixture(name);
    let out = loadspec(
        &[
            "import",
            "k6",
            script.to_str().unwrap(),
            "-o",
            path.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import {name} failed: {stderr}");
    let text = std::fs::read_to_string(&path).expect("the plan was written");
    let v = loadspec(&["validate", "--config", path.to_str().unwrap()], envs);
    assert!(
        v.status.success(),
        "validate rejected the plan of {name}: {}\n{text}",
        String::from_utf8_lossy(&v.stderr)
    );
    Plan {
        dir,
        path,
        text,
        stderr,
    }
}

/// Run the plan in-process against `target` (the plan's base URL is replaced, as
/// `LOADSPEC__TARGET__BASE_URL` would) and return its per-scenario totals.
async fn run(plan: Plan, target: SocketAddr, within: Duration) -> Vec<ScenarioTotals> {
    let raw = plan.raw();
    run_raw(raw, plan.dir, target, within).await
}

async fn run_raw(
    mut raw: RawConfig,
    dir: tempfile::TempDir,
    target: SocketAddr,
    within: Duration,
) -> Vec<ScenarioTotals> {
    raw.target.base_url = Some(format!("http://{target}"));
    raw.reports.enabled = false;
    raw.lifecycle.on_finish = OnFinish::Idle;
    raw.analysis.settle = Duration::from_millis(200);
    let text = toml::to_string(&raw).expect("serialize");
    let d = start_in(&text, dir, "0/1").await;
    d.wait_runs(1, within).await;
    let fin = d.stop().await;
    fin.last.expect("a run finished").0.totals
}

/// examples/s3-image-upload.toml with its request unchanged, as one VU sending `iterations`
/// uploads with the bearer token "tok-seed".
fn s3_example(iterations: u64) -> RawConfig {
    let mut example = loadspec::config::load_raw(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/s3-image-upload.toml"
    )))
    .expect("the example parses");
    example.target.bearer_token = Some("tok-seed".into());
    example.containers = Default::default();
    let s = &mut example.scenarios[0];
    s.executor = ExecutorKind::PerVuIterations;
    s.vus = Some(1);
    s.iterations = Some(iterations);
    s.stages.clear();
    s.step = false;
    example
}

fn served(stats: &DemoStats, route: &str, code: u16) -> u64 {
    stats
        .requests
        .get(route)
        .and_then(|m| m.get(&code))
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_script_uploads_exactly_like_the_s3_example() {
    std::env::set_var("TOKEN", "tok-seed");
    let plan = import("seed_upload.js", &[("TOKEN", "tok-seed")]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.executor, ExecutorKind::ConstantVus);
    assert_eq!(sc.vus, Some(5));
    assert_eq!(sc.duration, Some(Duration::from_secs(1)));
    assert!(
        plan.text
            .contains("It reads these environment variables when it is loaded: TOKEN.\n"),
        "{}",
        plan.text
    );
    assert!(
        plan.text.contains("Nothing in the script was left out"),
        "{}",
        plan.text
    );

    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let imported = server.stats();
    let seen_imported = imported
        .last_multipart
        .clone()
        .expect("a multipart body arrived");
    let ok = served(&imported, "POST /api/v1/ai-images", 200);
    assert!(ok > 0, "{:?}", imported.requests);
    assert_eq!(totals[0].requests, ok, "every upload was answered 200");
    assert_eq!(totals[0].failed_checks, 0);

    // The example, with its own request unchanged, run once against a fresh target.
    let example = s3_example(2);
    let (addr2, server2) = target(DemoTargetConfig::free()).await;
    let (dir, _) = dir_with_png();
    run_raw(example, dir, addr2, Duration::from_secs(30)).await;
    let seen_example = server2
        .stats()
        .last_multipart
        .expect("the example's body arrived");

    assert_eq!(seen_imported, seen_example, "same fields, bytes and header");
    assert_eq!(seen_imported.field_names, vec!["prompt", "beforeImagePath"]);
    assert_eq!(seen_imported.prompt.as_deref(), Some(PROMPT));
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/test.png")).unwrap();
    assert_eq!(seen_imported.file_bytes, png.len() as u64);
    assert_eq!(seen_imported.file_fnv64, fnv64(&png));
    assert!(seen_imported.bearer_present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_become_a_ramping_vus_scenario() {
    let plan = import("stages.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.executor, ExecutorKind::RampingVus);
    assert_eq!(
        sc.start_vus,
        Some(1),
        "k6 starts the shortcut's ramp at options.vus (1)"
    );
    let stages: Vec<(Duration, f64)> = sc.stages.iter().map(|s| (s.duration, s.target)).collect();
    assert_eq!(
        stages,
        vec![
            (Duration::from_secs(1), 2.0),
            (Duration::from_secs(1), 4.0),
            (Duration::from_millis(500), 0.0)
        ]
    );
    assert!(!sc.step, "k6 ramps linearly");
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    let ok = served(&stats, "GET /api/v1/status/{code}", 200);
    assert!(
        ok > 0 && ok == totals[0].requests,
        "{:?} vs {:?}",
        stats.requests,
        totals[0]
    );
    assert!(
        stats.max_in_flight <= 4,
        "never more than 4 VUs: {}",
        stats.max_in_flight
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_vu_iterations_with_exec_sends_exactly_vus_times_iterations() {
    let plan = import("per_vu_iterations.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.name, "readers");
    assert_eq!(sc.executor, ExecutorKind::PerVuIterations);
    assert_eq!((sc.vus, sc.iterations), (Some(3), Some(4)));
    assert_eq!(sc.max_duration, Some(Duration::from_secs(20)));
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    assert_eq!(
        served(&server.stats(), "GET /api/v1/status/{code}", 200),
        12
    );
    assert_eq!(totals[0].iterations, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_iterations_keep_their_total() {
    let plan = import("shared_iterations.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.executor, ExecutorKind::PerVuIterations);
    assert_eq!(
        (sc.vus, sc.iterations),
        (Some(2), Some(5)),
        "10 over 4 VUs → 2 × 5"
    );
    assert!(
        plan.text
            .contains("10 iterations shared by 4 VUs run as 2 VUs"),
        "{}",
        plan.text
    );
    let (addr, server) = target(DemoTargetConfig::free()).await;
    run(plan, addr, Duration::from_secs(30)).await;
    assert_eq!(
        served(&server.stats(), "GET /api/v1/status/{code}", 201),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_vus_keeps_vus_duration_and_start_time() {
    let plan = import("constant_vus.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.executor, ExecutorKind::ConstantVus);
    assert_eq!(sc.vus, Some(2));
    assert_eq!(sc.duration, Some(Duration::from_secs(2)));
    assert_eq!(sc.start, Some(Duration::from_millis(500)));
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    let ok = served(&stats, "GET /healthz", 200);
    assert!(ok > 0 && ok == totals[0].requests, "{:?}", stats.requests);
    assert!(stats.max_in_flight <= 2, "{}", stats.max_in_flight);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramping_vus_keeps_start_vus_stages_and_ramp_down() {
    let plan = import("ramping_vus.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.executor, ExecutorKind::RampingVus);
    assert_eq!(sc.start_vus, Some(1));
    assert_eq!(sc.stages.len(), 2);
    assert_eq!(sc.stages[0].target, 3.0);
    assert_eq!(sc.graceful_ramp_down, Some(Duration::from_secs(1)));
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    assert!(totals[0].requests > 0);
    assert_eq!(
        served(&stats, "GET /api/v1/status/{code}", 200),
        totals[0].requests
    );
    assert!(stats.max_in_flight <= 3, "{}", stats.max_in_flight);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_arrival_rate_sends_rate_times_duration() {
    let plan = import("constant_arrival_rate.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.executor, ExecutorKind::ConstantArrivalRate);
    assert_eq!(sc.rate, Some(20.0));
    assert_eq!(sc.time_unit, Some(Duration::from_secs(1)));
    assert_eq!((sc.pre_allocated_vus, sc.max_vus), (Some(5), Some(10)));
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let t = &totals[0];
    assert_eq!(
        t.iterations + t.dropped_iterations,
        40,
        "20/s for 2 s: {t:?}"
    );
    assert_eq!(
        served(&server.stats(), "GET /api/v1/status/{code}", 200),
        t.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramping_arrival_rate_keeps_start_rate_and_stages() {
    let plan = import("ramping_arrival_rate.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.executor, ExecutorKind::RampingArrivalRate);
    assert_eq!(sc.start_rate, Some(5.0));
    assert_eq!(
        sc.stages.iter().map(|s| s.target).collect::<Vec<_>>(),
        vec![20.0, 20.0]
    );
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let t = &totals[0];
    // 5→20 over 1 s is 12.5 arrivals, then 20: about 32; allow for rounding at the edges.
    let sent = t.iterations + t.dropped_iterations;
    assert!((30..=34).contains(&sent), "{t:?}");
    assert_eq!(
        served(&server.stats(), "GET /api/v1/status/{code}", 200),
        t.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_become_the_sla() {
    let plan = import("thresholds.js", &[]);
    let raw = plan.raw();
    assert_eq!(raw.sla.latency_p95, Duration::from_millis(300));
    assert_eq!(raw.sla.latency_p99, Some(Duration::from_millis(800)));
    assert_eq!(raw.sla.error_ratio, 0.02);
    let (addr, server) = target(DemoTargetConfig::free()).await;
    run(plan, addr, Duration::from_secs(30)).await;
    assert_eq!(served(&server.stats(), "GET /api/v1/status/{code}", 200), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_variables_become_plan_variables() {
    let envs = [("K6_IMPORT_CODE", "203"), ("K6_IMPORT_RUN", "7")];
    for (k, v) in envs {
        std::env::set_var(k, v);
    }
    let plan = import("env.js", &envs);
    let raw = plan.raw();
    let r = &raw.scenarios[0].requests[0];
    assert_eq!(r.path.as_deref(), Some("/api/v1/status/${K6_IMPORT_CODE}"));
    assert_eq!(
        r.headers.get("X-Run").map(String::as_str),
        Some("run-${K6_IMPORT_RUN}")
    );
    // Without the variable set, the plan is rejected, naming it.
    let v = Command::new(BIN)
        .args(["validate", "--config", plan.path.to_str().unwrap()])
        .env_remove("K6_IMPORT_CODE")
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("K6_IMPORT_CODE"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let (addr, server) = target(DemoTargetConfig::free()).await;
    run(plan, addr, Duration::from_secs(30)).await;
    assert_eq!(served(&server.stats(), "GET /api/v1/status/{code}", 203), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_body_with_bearer_timeout_and_name() {
    std::env::set_var("K6_IMPORT_TOKEN", "tok-json");
    let plan = import("json_body.js", &[("K6_IMPORT_TOKEN", "tok-json")]);
    let raw = plan.raw();
    let r = &raw.scenarios[0].requests[0];
    assert_eq!(r.name, "prompt-only");
    assert_eq!(r.bearer_token.as_deref(), Some("${K6_IMPORT_TOKEN}"));
    assert_eq!(r.timeout, Some(Duration::from_secs(30)));
    assert_eq!(r.expect, vec![200]);
    assert!(
        r.headers.is_empty(),
        "Content-Type goes with the json body: {:?}",
        r.headers
    );
    match &r.body {
        Some(loadspec::config::raw::BodyConfig::Json { json }) => {
            assert_eq!(json["prompt"], "a quiet room, \"white\" and warm")
        }
        other => panic!("not a json body: {other:?}"),
    }
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    assert_eq!(
        served(&server.stats(), "POST /api/v1/ai-images/prompt", 200),
        4
    );
    assert_eq!(totals[0].failed_checks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_body_is_a_form() {
    let plan = import("form.js", &[]);
    let raw = plan.raw();
    let r = &raw.scenarios[0].requests[0];
    assert_eq!(r.expect, vec![200, 201]);
    assert!(
        matches!(&r.body, Some(loadspec::config::raw::BodyConfig::Form { fields }) if fields["username"] == "erin")
    );
    let (addr, server) = target(DemoTargetConfig::free()).await;
    run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    assert_eq!(
        stats.logins_by_user.get("erin"),
        Some(&5),
        "{:?}",
        stats.logins_by_user
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_requests_become_steps_in_order() {
    let plan = import("batch.js", &[]);
    let raw = plan.raw();
    let steps: Vec<&str> = raw.scenarios[0]
        .requests
        .iter()
        .map(|r| r.path.as_deref().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec!["/api/v1/status/200", "/api/v1/status/202", "/healthz"]
    );
    assert_eq!(
        raw.scenarios[0].requests[1].expect,
        vec![202],
        "the check on responses[1]"
    );
    assert!(plan.text.contains("not in parallel"), "{}", plan.text);
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    assert_eq!(served(&stats, "GET /api/v1/status/{code}", 200), 4);
    assert_eq!(served(&stats, "GET /api/v1/status/{code}", 202), 4);
    assert_eq!(served(&stats, "GET /healthz", 200), 4);
    assert_eq!(totals[0].failed_checks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_login_becomes_a_setup_step_whose_token_feeds_the_iteration() {
    let plan = import("setup_login.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.setup.len(), 1);
    assert_eq!(sc.setup[0].captures[0].name, "token");
    assert_eq!(sc.setup[0].captures[0].json.as_deref(), Some("/token"));
    assert_eq!(sc.requests[0].bearer_token.as_deref(), Some("${token}"));
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    assert_eq!(
        stats.logins_by_user.get("frank"),
        Some(&2),
        "one login per VU"
    );
    assert_eq!(
        stats.posts_by_user.get("frank"),
        Some(&6),
        "{:?}",
        stats.posts_by_user
    );
    assert_eq!(served(&stats, "GET /api/v1/posts", 401), 0);
    assert_eq!(totals[0].failed_checks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_through_shared_array_become_data() {
    let plan = import("csv_data.js", &[]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert!(
        !plan.text.contains("environment variables"),
        "data columns and captures are not environment variables: {}",
        plan.text
    );
    let data = sc.data.as_ref().expect("a data file");
    assert_eq!(data.mode, loadspec::config::raw::DataMode::PerVu);
    assert!(
        plan.dir.path().join(&data.file).is_file(),
        "{:?} is relative to the plan",
        data.file
    );
    assert!(data.file.is_relative());
    assert_eq!(sc.requests[0].captures[0].json.as_deref(), Some("/token"));
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    for user in ["gina", "hank", "ivy"] {
        assert_eq!(
            stats.logins_by_user.get(user),
            Some(&2),
            "{:?}",
            stats.logins_by_user
        );
        assert_eq!(
            stats.posts_by_user.get(user),
            Some(&2),
            "{:?}",
            stats.posts_by_user
        );
    }
    assert_eq!(totals[0].failed_checks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_becomes_think_time() {
    let plan = import("sleep.js", &[]);
    let raw = plan.raw();
    assert_eq!(
        raw.scenarios[0].think_time,
        Some(Duration::from_millis(500))
    );
    let (addr, server) = target(DemoTargetConfig::free()).await;
    run(plan, addr, Duration::from_secs(30)).await;
    // One VU for 2 s with 0.5 s after each request: 4 requests, 5 if the last starts at 2 s.
    let n = served(&server.stats(), "GET /api/v1/status/{code}", 200);
    assert!((3..=5).contains(&n), "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_constructs_are_listed_and_strict_refuses_them() {
    let script = fixture("unsupported.js");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("strict.toml");
    let strict = loadspec(
        &[
            "import",
            "k6",
            script.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--strict",
        ],
        &[],
    );
    assert_eq!(strict.status.code(), Some(2));
    assert!(!out.exists(), "--strict writes nothing");
    let err = String::from_utf8_lossy(&strict.stderr);
    for want in [
        "unsupported.js:8:49: options.noConnectionReuse is not imported",
        "unsupported.js:14:5: check \"body is small\"",
        "unsupported.js:16:3: the call `waiting.add` is not imported",
        "unsupported.js:17:3: conditions are not imported",
        "left out: http.get at 18:5",
        "unsupported.js:20:3: loops are not imported",
        "left out: http.get at 21:5",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    let plan = import("unsupported.js", &[]);
    assert!(
        plan.stderr.contains("5 construct(s) left out"),
        "{}",
        plan.stderr
    );
    assert!(plan.text.contains("# Left out (5):"), "{}", plan.text);
    assert!(
        plan.text.contains("#   17:3: conditions are not imported"),
        "{}",
        plan.text
    );
    assert!(
        plan.text.contains("(r) => r.body.length < 100"),
        "the check is kept as a comment: {}",
        plan.text
    );
    let raw = plan.raw();
    assert_eq!(
        raw.scenarios[0].requests.len(),
        1,
        "only the unconditional request"
    );
    let (addr, server) = target(DemoTargetConfig::free()).await;
    run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    assert_eq!(served(&stats, "GET /api/v1/status/{code}", 200), 2);
    assert_eq!(served(&stats, "GET /api/v1/status/{code}", 204), 0);
}

#[test]
fn a_syntax_error_names_line_and_column() {
    let script = fixture("syntax_error.js");
    let out = loadspec(&["import", "k6", script.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("syntax_error.js:4:43: syntax error"), "{err}");
    assert!(out.stdout.is_empty(), "nothing written");
}

#[test]
fn a_missing_script_is_named() {
    let out = loadspec(&["import", "k6", "/nonexistent/k6/script.js"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read the script /nonexistent/k6/script.js"),
        "{err}"
    );
}

/// One request as it arrived on the wire: request line and headers, and the body.
#[derive(Debug, Clone)]
struct Wire {
    head: Vec<String>,
    body: Vec<u8>,
}

/// A server on 127.0.0.1:0 that records every request byte for byte and answers 200 `{}`.
/// Requests need a Content-Length (loadspec always sends one). Reads time out after 10 s.
async fn recorder() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Wire>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                        let mut chunk = [0u8; 8192];
                        let read =
                            tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk));
                        match read.await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    };
                    let head: Vec<String> = String::from_utf8_lossy(&buf[..end])
                        .split("\r\n")
                        .map(str::to_string)
                        .collect();
                    let len: usize = head
                        .iter()
                        .find_map(|h| {
                            let (k, v) = h.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .expect("a Content-Length header");
                    buf.drain(..end + 4);
                    while buf.len() < len {
                        let mut chunk = [0u8; 65536];
                        let read =
                            tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk));
                        match read.await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let body: Vec<u8> = buf.drain(..len).collect();
                    log.lock().unwrap().push(Wire { head, body });
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if sock.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_script_sends_the_s3_examples_bytes_and_headers() {
    std::env::set_var("TOKEN", "tok-seed");
    let plan = import("seed_upload.js", &[("TOKEN", "tok-seed")]);
    let mut raw = plan.raw();
    let s = &mut raw.scenarios[0];
    // The same request, once, so the run is short and the two recordings line up.
    s.executor = ExecutorKind::PerVuIterations;
    s.duration = None;
    s.vus = Some(1);
    s.iterations = Some(1);
    let (addr, seen) = recorder().await;
    run_raw(raw, plan.dir, addr, Duration::from_secs(30)).await;
    let (dir, _) = dir_with_png();
    run_raw(s3_example(1), dir, addr, Duration::from_secs(30)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one upload from each plan");
    let (imported, example) = (&seen[0], &seen[1]);
    let sorted = |w: &Wire| {
        let mut h: Vec<String> = w.head.iter().map(|l| l.to_ascii_lowercase()).collect();
        h.sort();
        h
    };
    assert_eq!(imported.head[0], "POST /api/v1/ai-images HTTP/1.1");
    assert_eq!(
        sorted(imported),
        sorted(example),
        "the same request line and headers"
    );
    assert!(
        imported
            .head
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Bearer tok-seed")),
        "{:?}",
        imported.head
    );
    assert_eq!(imported.body, example.body, "the same body, byte for byte");
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/test.png")).unwrap();
    assert!(imported
        .body
        .windows(png.len())
        .any(|w| w == png.as_slice()));
    assert!(imported
        .body
        .windows(PROMPT.len())
        .any(|w| w == PROMPT.as_bytes()));
}

#[test]
fn a_plan_this_build_cannot_run_is_written_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tls.js");
    std::fs::write(
        &script,
        "import http from 'k6/http';\nexport default function () { http.get('https://127.0.0.1:8443/healthz'); }\n",
    )
    .unwrap();
    let plan = dir.path().join("plan.toml");
    let out = loadspec(
        &[
            "import",
            "k6",
            script.to_str().unwrap(),
            "-o",
            plan.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success());
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        text.contains("base_url = \"https://127.0.0.1:8443\""),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let v = loadspec(&["validate", "--config", plan.to_str().unwrap()], &[]);
    if v.status.success() {
        // This build sends https: the importer must not have warned.
        assert!(!err.contains("rejects the plan"), "{err}");
    } else {
        assert!(err.contains("rejects the plan"), "{err}");
        assert!(err.contains("target.base_url"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_fields_and_a_file_without_a_type() {
    let envs = [
        ("K6_IMPORT_STYLE", "white"),
        ("K6_IMPORT_TOKEN", "tok-json"),
    ];
    for (k, v) in envs {
        std::env::set_var(k, v);
    }
    let plan = import("multipart.js", &envs);
    let raw = plan.raw();
    let r = &raw.scenarios[0].requests[0];
    match &r.body {
        Some(loadspec::config::raw::BodyConfig::Multipart { fields, files }) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, vec!["prompt", "style"]);
            assert_eq!(fields[0].value, "room ${K6_IMPORT_STYLE}");
            assert_eq!(files[0].filename.as_deref(), Some("photo.png"));
            assert_eq!(files[0].content_type, None);
            assert!(files[0].path.is_relative());
            assert!(plan.dir.path().join(&files[0].path).is_file());
        }
        other => panic!("not multipart: {other:?}"),
    }
    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let stats = server.stats();
    assert_eq!(served(&stats, "POST /api/v1/ai-images", 200), 6);
    assert_eq!(totals[0].failed_checks, 0);
    let seen = stats.last_multipart.expect("a multipart body");
    assert_eq!(seen.field_names, vec!["prompt", "style", "beforeImagePath"]);
    assert_eq!(seen.prompt.as_deref(), Some("room white"));
    assert_eq!(seen.filename.as_deref(), Some("photo.png"));
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/test.png")).unwrap();
    assert_eq!(seen.file_fnv64, fnv64(&png));
}
