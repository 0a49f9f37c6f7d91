//! Load tests in CI (issue 19): `loadspec run` exits 99 when the SLA breaks and 0 when it
//! holds, for a plan, a sweep and a search; every request answered 401 (no token) exits 99;
//! `sla.fail_on_breach = false` exits 0; the summary export parses and agrees with
//! demo-target's own counts; the JUnit file validates against the Jenkins JUnit schema.
//!
//! demo-target's `--delay-ms` makes every request take at least that long, so a p95 bound
//! below it breaks for sure and one far above it holds. The plan runs are the commands of the
//! pipeline examples in docs/ci.md (examples/ci.toml, demo-target as a process).

mod support_ci;
mod support_containers;

use std::path::Path;
use std::time::Duration;

use support_ci::*;

const DELAY_MS: u64 = 300;

/// `loadspec run --config CONFIG --summary-export summary.json --junit junit.xml EXTRA…` in
/// `dir`, against `target`.
fn ci_run(
    dir: &Path,
    config: &str,
    target: &DemoTarget,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Run {
    let base = format!("http://{}", target.addr);
    let mut all = vec![
        ("LOADSPEC__TARGET__BASE_URL", base.as_str()),
        ("LOADSPEC_TOKEN", "ci-token"),
    ];
    all.extend_from_slice(envs);
    let mut args = vec![
        "run",
        "--config",
        config,
        "--summary-export",
        "summary.json",
        "--junit",
        "junit.xml",
    ];
    args.extend_from_slice(extra);
    loadspec(dir, &args, &all, Duration::from_secs(90))
}

/// The text of the first `<failure … message="…">` of testcase `name` in `junit`, unescaped.
fn failure_message(junit: &str, name: &str) -> Option<String> {
    let case = junit
        .split("<testcase ")
        .find(|c| c.contains(&format!("name=\"{name}\"")))?;
    let m = case.split("message=\"").nth(1)?.split('"').next()?;
    Some(
        m.replace("&gt;", ">")
            .replace("&lt;", "<")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

#[test]
fn a_plan_exits_0_when_the_sla_holds_and_99_when_p95_breaks_it() {
    let target = DemoTarget::start(&["--cpu-ms=1", &format!("--delay-ms={DELAY_MS}")]);
    let dir = tempfile::tempdir().unwrap();

    // Broken: p95 is at least the delay, above a 100 ms bound. --quiet prints the verdict only.
    let before = target.ai_images(200);
    let r = ci_run(
        dir.path(),
        CI_TOML,
        &target,
        &["--quiet"],
        &[("LOADSPEC__SLA__LATENCY_P95", "100ms")],
    );
    let served = target.ai_images(200) - before;
    r.expect_code(99);
    assert_eq!(r.stderr, "", "--quiet printed more than errors");
    assert_eq!(
        r.stdout.lines().count(),
        1,
        "--quiet printed more than the verdict:\n{}",
        r.stdout
    );
    let line = r.last_line();
    assert!(line.starts_with("SLA broken: ✗ p95 "), "{line}");
    assert!(line.contains(" > 100 ms · ✓ errors 0 % ≤ 1 %"), "{line}");
    assert!(!line.contains('\x1b'), "colour in a file: {line:?}");

    let s = json(&dir.path().join("summary.json"));
    assert_eq!(s["schema"], "loadspec-summary");
    assert_eq!(s["sla"]["passed"], false);
    assert_eq!(s["sla"]["exit_code"], 99);
    assert_eq!(s["sla"]["line"], line);
    let p95 = &s["sla"]["criteria"][0];
    assert_eq!(p95["name"], "p95");
    let measured = p95["measured"].as_f64().unwrap();
    assert!(
        measured >= DELAY_MS as f64 / 1e3,
        "p95 {measured} s is below the server's delay"
    );
    assert_eq!(p95["limit"].as_f64(), Some(0.1));
    assert_eq!(
        measured,
        s["scenarios"][0]["latency_seconds"]["p95"]
            .as_f64()
            .unwrap(),
        "the criterion is not the scenario's p95"
    );
    // Every figure agrees with the server's own count of what it answered.
    assert!(served > 0, "the server answered nothing");
    assert_eq!(s["totals"]["requests"].as_u64(), Some(served), "{s:#}");
    assert_eq!(s["totals"]["status"]["200"].as_u64(), Some(served));
    assert_eq!(s["totals"]["failed_checks"].as_u64(), Some(0));
    let req = &s["scenarios"][0]["requests_by_name"][0];
    assert_eq!(req["request"], "ai-images");
    assert_eq!(req["requests"].as_u64(), Some(served));
    assert_eq!(req["responses"].as_u64(), Some(served));
    let avg = req["latency_avg_seconds"].as_f64().unwrap();
    assert!(
        avg >= DELAY_MS as f64 / 1e3 && avg < 5.0,
        "mean latency {avg} s"
    );
    assert_eq!(s["checks"][0]["passes"].as_u64(), Some(served));
    assert_eq!(s["checks"][0]["fails"].as_u64(), Some(0));
    // The two stages ran with the plan's VUs.
    let vus: Vec<f64> = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["vus"].as_f64().unwrap())
        .collect();
    assert_eq!(vus, [2.0, 4.0]);

    let junit_path = dir.path().join("junit.xml");
    validate_junit(&junit_path);
    let junit = std::fs::read_to_string(&junit_path).unwrap();
    // The bearer token is in neither file.
    assert!(!junit.contains("ci-token") && !s.to_string().contains("ci-token"));
    assert_eq!(
        failure_message(&junit, "p95").as_deref(),
        p95["text"].as_str(),
        "the failure does not carry the measured p95:\n{junit}"
    );
    assert_eq!(failure_message(&junit, "errors"), None, "{junit}");
    assert_eq!(failure_message(&junit, "ai-images"), None, "{junit}");
    assert!(
        junit.contains(r#"<testsuite name="sla" tests="2" failures="1""#),
        "{junit}"
    );

    // Held: the same server, a 5 s bound. Without --quiet the summary comes first and the
    // verdict is its last line.
    let before = target.ai_images(200);
    let r = ci_run(
        dir.path(),
        CI_TOML,
        &target,
        &[],
        &[("LOADSPEC__SLA__LATENCY_P95", "5s")],
    );
    let served = target.ai_images(200) - before;
    r.expect_code(0);
    assert!(
        r.stdout.contains("checks.........: 100.00%"),
        "{}",
        r.stdout
    );
    let line = r.last_line();
    assert!(line.starts_with("SLA met: ✓ p95 "), "{line}");
    assert!(line.ends_with(" ≤ 5 s · ✓ errors 0 % ≤ 1 %"), "{line}");
    let s = json(&dir.path().join("summary.json"));
    assert_eq!(s["sla"]["passed"], true);
    assert_eq!(s["sla"]["exit_code"], 0);
    assert_eq!(s["totals"]["requests"].as_u64(), Some(served));
    validate_junit(&junit_path);
    let junit = std::fs::read_to_string(&junit_path).unwrap();
    assert!(!junit.contains("<failure"), "{junit}");
    assert!(junit.contains(r#"tests="3" failures="0""#), "{junit}");
}

#[test]
fn every_request_answered_401_without_the_token_exits_99_unless_fail_on_breach_is_off() {
    let target = DemoTarget::start(&["--cpu-ms=1"]);
    let dir = tempfile::tempdir().unwrap();
    // examples/ci.toml with the token line left out, as when the secret is missing.
    let text = std::fs::read_to_string(CI_TOML).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("bearer_token"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!text.contains("bearer_token"));
    std::fs::write(dir.path().join("no-token.toml"), text).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/test.png"),
        dir.path().join("test.png"),
    )
    .unwrap();

    let before = target.ai_images(401);
    let r = ci_run(dir.path(), "no-token.toml", &target, &["--quiet"], &[]);
    let denied = target.ai_images(401) - before;
    r.expect_code(99);
    assert!(
        r.last_line().ends_with("✗ errors 100 % > 1 %"),
        "{}",
        r.stdout
    );
    let s = json(&dir.path().join("summary.json"));
    assert!(denied > 0);
    assert_eq!(s["totals"]["status"]["401"].as_u64(), Some(denied), "{s:#}");
    assert_eq!(s["totals"]["failed_checks"].as_u64(), Some(denied));
    assert_eq!(s["totals"]["error_ratio"].as_f64(), Some(1.0));
    let errors = s["sla"]["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "errors")
        .unwrap()
        .clone();
    assert_eq!(errors["passed"], false);
    assert_eq!(errors["measured"].as_f64(), Some(1.0));
    let junit_path = dir.path().join("junit.xml");
    validate_junit(&junit_path);
    let junit = std::fs::read_to_string(&junit_path).unwrap();
    assert_eq!(
        failure_message(&junit, "ai-images"),
        Some(format!(
            "{denied} of {denied} checks failed (100 %), above the SLA's 1 %"
        )),
        "{junit}"
    );
    assert_eq!(
        failure_message(&junit, "errors").as_deref(),
        Some("errors 100 % > 1 %")
    );

    // sla.fail_on_breach = false: the same verdict, reported, exit 0.
    let r = ci_run(
        dir.path(),
        "no-token.toml",
        &target,
        &["--quiet"],
        &[("LOADSPEC__SLA__FAIL_ON_BREACH", "false")],
    );
    r.expect_code(0);
    assert!(r.last_line().starts_with("SLA broken: "), "{}", r.stdout);
    assert!(
        r.last_line()
            .ends_with("(not gating: sla.fail_on_breach = false)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        json(&dir.path().join("summary.json"))["sla"]["exit_code"],
        0
    );
}

/// A sweep over `vus` with the process source measuring demo-target.
fn sweep_config(pid: u32) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[target]
base_url = "http://127.0.0.1:9"
bearer_token = "t"
[lifecycle]
on_finish = "exit"
[reports]
enabled = false
[containers]
source = "process"
pids = [{pid}]
# The sweep's CPU criterion is not under test: a share of 64 cores never saturates.
process_cpu_limit = 64.0
interval = "250ms"
[analysis]
settle = "500ms"
[experiment]
mode = "sweep"
[experiment.sweep]
vus = [1, 2]
stage_duration = "2s"
[[scenarios]]
name = "s2"
executor = "constant-vus"
vus = 1
duration = "2s"
[[scenarios.requests]]
name = "ai-prompt"
method = "POST"
path = "/api/v1/ai-images/prompt"
expect = [200]
body = {{ type = "json", json = {{ prompt = "미니멀하고 화이톤의 셋업" }} }}
"#
    )
}

#[test]
fn a_sweep_exits_99_when_no_vu_count_holds_the_sla_and_0_when_one_does() {
    let target = DemoTarget::start(&["--cpu-ms=1", &format!("--delay-ms={DELAY_MS}")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sweep.toml"), sweep_config(target.pid())).unwrap();

    let r = ci_run(
        dir.path(),
        "sweep.toml",
        &target,
        &["--quiet"],
        &[("LOADSPEC__SLA__LATENCY_P95", "100ms")],
    );
    r.expect_code(99);
    let line = r.last_line();
    assert!(
        line.starts_with("SLA broken: ✗ sweep: no VU count within the SLA (vus-1: p95 "),
        "{line}"
    );
    let s = json(&dir.path().join("summary.json"));
    assert_eq!(s["sweep_max_vus_within_sla"], serde_json::Value::Null);
    // stop_on_break: the first step broke, the second never ran.
    assert_eq!(s["stages"].as_array().unwrap().len(), 1, "{s:#}");

    let r = ci_run(
        dir.path(),
        "sweep.toml",
        &target,
        &["--quiet"],
        &[("LOADSPEC__SLA__LATENCY_P95", "5s")],
    );
    let s = json(&dir.path().join("summary.json"));
    let notes = &s["run"]["notes"];
    r.expect_code(0);
    assert_eq!(
        r.last_line(),
        "SLA met: ✓ sweep: 2 VUs within the SLA",
        "{notes:#}"
    );
    assert_eq!(s["sweep_max_vus_within_sla"].as_u64(), Some(2));
    assert_eq!(s["sla"]["criteria"][0]["measured"].as_f64(), Some(2.0));
    validate_junit(&dir.path().join("junit.xml"));
}

#[test]
fn a_search_exits_99_when_no_candidate_passes_and_0_when_one_does() {
    use support_containers::{docker_available, ensure_image, wait_healthy, Container};
    if !docker_available() {
        return;
    }
    ensure_image();
    let delay = format!("--delay-ms={DELAY_MS}");
    let c = Container::demo(
        "ci-search",
        &["--cpus=1", "--memory=256m"],
        &["--cpu-ms=1", &delay],
    );
    let addr = c.addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(wait_healthy(addr, Duration::from_secs(20)));
    let dir = tempfile::tempdir().unwrap();
    let config = sweep_config(0)
        .replace("http://127.0.0.1:9", &format!("http://{addr}"))
        .replace(
            "source = \"process\"\npids = [0]\n# The sweep's CPU criterion is not under test: a share of 64 cores never saturates.\nprocess_cpu_limit = 64.0",
            &format!(
                "source = \"docker\"\nnames = [\"{0}\"]\ngroups = {{ \"{0}\" = \"ai\" }}",
                c.name
            ),
        )
        .replace(
            "mode = \"sweep\"\n[experiment.sweep]\nvus = [1, 2]",
            "mode = \"search\"\n[experiment.search]\ngroup = \"ai\"\nvus = 2\ncpus = [1.0]",
        );
    std::fs::write(dir.path().join("search.toml"), &config).unwrap();
    let run = |p95: &str| {
        loadspec(
            dir.path(),
            &[
                "run",
                "--config",
                "search.toml",
                "--quiet",
                "--summary-export",
                "summary.json",
                "--junit",
                "junit.xml",
            ],
            &[("LOADSPEC__EXPERIMENT__SEARCH__LATENCY_P95", p95)],
            Duration::from_secs(90),
        )
    };

    let r = run("100ms");
    r.expect_code(99);
    assert!(
        r.last_line().starts_with(
            "SLA broken: ✗ search: no candidate serves 2 VUs within the SLA (cpus-1: p95 "
        ),
        "{}",
        r.stdout
    );
    assert_eq!(
        json(&dir.path().join("summary.json"))["search_result"],
        serde_json::Value::Null
    );

    let r = run("5s");
    r.expect_code(0);
    assert_eq!(
        r.last_line(),
        "SLA met: ✓ search: 1 cpus serve 2 VUs within the SLA"
    );
    let s = json(&dir.path().join("summary.json"));
    assert_eq!(s["search_result"]["cpus"].as_f64(), Some(1.0));
    validate_junit(&dir.path().join("junit.xml"));
}

#[test]
fn an_output_file_in_a_missing_directory_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = loadspec(
        dir.path(),
        &[
            "run",
            "--config",
            CI_TOML,
            "--junit",
            "no/such/dir/junit.xml",
        ],
        &[("LOADSPEC_TOKEN", "t")],
        Duration::from_secs(10),
    );
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr
            .contains("--junit: directory no/such/dir does not exist"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("reports").exists(), "a run started");
}
