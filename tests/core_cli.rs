//! The `loadspec` binary as a user runs it: invalid configs exit 2 naming the field, nothing
//! starts; the bearer token appears in no log, metric or report; SIGHUP with a bad and a good
//! config; SIGTERM drains in-flight requests; `promtool check metrics` on the output.

mod support_core;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loadspec::demo_target::DemoTargetConfig;
use support_core::cli::*;
use support_core::*;

/// (description, config text, the text the error must contain)
fn bad_configs() -> Vec<(&'static str, String, &'static str)> {
    let g = GOOD.to_string();
    vec![
        (
            "step target 0",
            r#"[target]
base_url = "http://127.0.0.1:9"
[[scenarios]]
name = "a"
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.requests]]
name = "r"
path = "/x"
[[scenarios]]
name = "b"
executor = "ramping-vus"
step = true
stages = [{ duration = "1s", target = 0 }]
[[scenarios.requests]]
name = "r2"
path = "/x"
"#
            .into(),
            "scenarios[1].stages[0].target: must be at least 1, got 0",
        ),
        ("unknown key", g.replace("vus = 1", "vus = 1\nbogus = 2"), "bogus"),
        ("wrong type", g.replace("vus = 1", "vus = \"ten\""), "scenarios[0].vus"),
        ("bad duration", g.replace("duration = \"1s\"", "duration = \"5 parsecs\""), "scenarios[0].duration"),
        ("missing duration", g.replace("duration = \"1s\"\n", ""), "scenarios[0].duration: is required by executor constant-vus"),
        ("bad base url", g.replace("http://127.0.0.1:9", "not a url"), "target.base_url"),
        ("ftp", g.replace("http://127.0.0.1:9", "ftp://127.0.0.1:9"), "target.base_url: scheme must be http or https"),
        ("missing ca_file", g.replace("[target]", "[target.tls]\nca_file = \"nope.pem\"\n[target]").replace("http://", "https://"), "target.tls.ca_file: cannot read"),
        ("client_cert without key", g.replace("[target]", "[target.tls]\nclient_cert = \"c.pem\"\n[target]"), "target.tls.client_key: is required with client_cert"),
        ("bad server_name", g.replace("[target]", "[target.tls]\nserver_name = \"no such name!\"\n[target]"), "target.tls.server_name: not a DNS name or IP address"),
        ("error ratio", format!("[sla]\nerror_ratio = 2.0\n{g}"), "sla.error_ratio"),
        ("unknown variable", g.replace("[target]", "[target]\nbearer_token = \"${LOADSPEC_TEST_SURELY_UNSET}\""), "target.bearer_token: unknown variable"),
        ("empty token", g.replace("[target]", "[target]\nbearer_token = \"\""), "target.bearer_token: is empty after substitution"),
        ("blank request token", g.replace("path = \"/x\"", "path = \"/x\"\nbearer_token = \"  \""), "scenarios[0].requests[0].bearer_token: is empty after substitution"),
        ("empty token variable", g.replace("[target]", "[target]\nbearer_token = \"${LOADSPEC_TEST_EMPTY_TOKEN}\""), "target.bearer_token: is empty after substitution"),
        // A blank token is no secret: the message keeps its spaces instead of `<redacted>`s.
        ("one-space token", g.replace("[target]", "[target]\nbearer_token = \" \""), "target.bearer_token: is empty after substitution; set the token"),
        ("blank token variable", g.replace("[target]", "[target]\nbearer_token = \"${LOADSPEC_TEST_BLANK_TOKEN}\""), "target.bearer_token: is empty after substitution; set the token"),
        ("missing file", g.replace("path = \"/x\"", "path = \"/x\"\nmethod = \"POST\"\nbody = { type = \"multipart\", files = [{ name = \"f\", path = \"nope.png\" }] }"), "scenarios[0].requests[0].body.files[0].path: cannot read file"),
        ("bad method", g.replace("path = \"/x\"", "path = \"/x\"\nmethod = \"GE T\""), "scenarios[0].requests[0].method"),
        ("duplicate scenario", format!("{g}\n[[scenarios]]\nname = \"s\"\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n[[scenarios.requests]]\nname = \"q\"\npath = \"/y\"\n"), "scenarios[1].name"),
        ("max below pre", g.replace("executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"", "executor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1s\"\npre_allocated_vus = 5\nmax_vus = 2"), "scenarios[0].max_vus: must be at least pre_allocated_vus"),
        ("field of another executor", g.replace("vus = 1", "vus = 1\nrate = 3"), "scenarios[0].rate: is not used by executor constant-vus"),
        ("no scenarios", "[target]\nbase_url = \"http://127.0.0.1:9\"\n".into(), "scenarios: at least one scenario"),
        ("bad listen", format!("[server]\nlisten = \"nowhere\"\n{g}"), "server.listen"),
    ]
}

#[test]
fn invalid_configs_exit_2_and_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = bad_configs();
    assert!(cases.len() >= 10);
    for (what, text, want) in cases {
        let cfg = write(dir.path(), "bad.toml", &text);
        for cmd in ["validate", "run"] {
            let t = Instant::now();
            let out = Command::new(BIN)
                .args([cmd, "--config"])
                .arg(&cfg)
                .env("LOADSPEC_REPORTS_PROBE", "1")
                .env("LOADSPEC_TEST_EMPTY_TOKEN", "")
                .env("LOADSPEC_TEST_BLANK_TOKEN", "    ")
                .current_dir(dir.path())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{what} ({cmd}): {err}");
            assert!(
                err.contains(want),
                "{what} ({cmd}): expected {want:?} in:\n{err}"
            );
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{what}: took {:?}",
                t.elapsed()
            );
        }
        // Nothing started: no reports were written.
        assert!(
            !dir.path().join("reports").exists(),
            "{what}: a run started"
        );
    }
    // A missing file is a config error too.
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/loadspec.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file /nonexistent/loadspec.toml"));
}

#[test]
fn sweep_and_search_refuse_more_than_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["sweep", "search"] {
        let text = format!(
            "{GOOD}[experiment]\nmode = \"{mode}\"\n[experiment.search]\nvus = 2\ngroup = \"api\"\ncpus = [1.0]\n[experiment.sweep]\nvus = [1]\n[containers]\nsource = \"docker\"\n"
        );
        let cfg = write(dir.path(), "sharded.toml", &text);
        let run = |shard: &str| {
            Command::new(BIN)
                .args(["run", "--shard", shard, "--config"])
                .arg(&cfg)
                .current_dir(dir.path())
                .output()
                .unwrap()
        };
        let t = Instant::now();
        let out = run("1/2");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mode}: {err}");
        assert!(
            err.contains(&format!(
                "experiment.mode = \"{mode}\" cannot run with --shard 1/2"
            )),
            "{mode}: {err}"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(
            !dir.path().join("reports").exists(),
            "{mode}: a run started"
        );
    }
}

#[test]
fn the_good_config_validates_and_prints_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace(
        "[target]",
        "[target]\nbearer_token = \"${LOADSPEC_T_TOKEN}\"\nheaders = { \"X-Api-Key\" = \"k-123-secret\", \"X-Trace\" = \"visible\" }",
    );
    let cfg = write(dir.path(), "good.toml", &text);
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&cfg)
        .env("LOADSPEC_T_TOKEN", "tok-verysecret-42")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        !all.contains("tok-verysecret-42") && !all.contains("k-123-secret"),
        "{all}"
    );
    assert!(
        all.contains("<redacted>") && all.contains("visible"),
        "{all}"
    );
    // Environment layering: LOADSPEC__SECTION__KEY overrides the file.
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&cfg)
        .env("LOADSPEC_T_TOKEN", "x")
        .env("LOADSPEC__SLA__ERROR_RATIO", "0.25")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("error_ratio = 0.25"));
}

#[test]
fn every_example_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = Command::new(BIN)
                .args(["validate", "--config"])
                .arg(&p)
                .env("LOADSPEC_TOKEN", "example-token")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 6, "only {n} examples");
}

fn plan(base: &str, name: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[target]
base_url = "http://{base}"
bearer_token = "${{LOADSPEC_TOKEN}}"
[analysis]
settle = "200ms"
{extra}
[[scenarios]]
name = "{name}"
executor = "ramping-vus"
step = true
stages = [{{ duration = "1s", target = 2, name = "T1" }}, {{ duration = "1s", target = 3, name = "T2" }}]
{}"#,
        s3_request(None)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_logs_metrics_or_reports() {
    let (addr, target) = target(DemoTargetConfig::free()).await;
    let (dir, _) = dir_with_png();
    let secret = "tok-SECRET-7f3a9c";
    let cfg = write(
        dir.path(),
        "run.toml",
        &plan(&addr.to_string(), "s3", "[lifecycle]\non_finish = \"idle\""),
    );
    let mut p = spawn_run(&cfg, &[("LOADSPEC_TOKEN", secret)]);
    p.wait_log("reports written", Duration::from_secs(30));
    let (_, metrics) = http_get(p.metrics, "/metrics").await;
    let (_, report) = http_get(p.metrics, "/report").await;
    let (_, json) = http_get(p.metrics, "/report.json").await;
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(target.stats().last_multipart.unwrap().bearer_present);
    let mut files = String::new();
    for e in walk(&dir.path().join("reports")) {
        files.push_str(&std::fs::read_to_string(e).unwrap());
    }
    assert!(files.contains("report"), "no reports written");
    for (what, text) in [
        ("log", p.log()),
        ("metrics", metrics),
        ("report", report),
        ("json", json),
        ("files", files),
    ] {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(secret), "the token leaked into the {what}");
    }
    // The debug log did print the effective config, redacted.
    assert!(p.log().contains("<redacted>"), "{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_old_config_when_the_new_one_is_bad_and_adopts_a_good_one() {
    let (addr, _target) = target(DemoTargetConfig::free()).await;
    let (dir, _) = dir_with_png();
    let good_a = plan(
        &addr.to_string(),
        "first",
        "[lifecycle]\non_finish = \"idle\"\n[reports]\nenabled = false",
    );
    let cfg = write(dir.path(), "run.toml", &good_a);
    let mut p = spawn_run(&cfg, &[("LOADSPEC_TOKEN", "t")]);
    p.wait_log("idling", Duration::from_secs(30));
    // A bad config: logged, the daemon keeps serving with the old one.
    p.reload(
        &cfg,
        &good_a.replace("target = 3", "target = 0"),
        "config reload failed",
    );
    let (_, m) = http_get(p.metrics, "/metrics").await;
    assert_eq!(
        sample(&m, "loadspec_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "loadspec_config_reloads_total", &["result=\"failure\""]),
        Some(1.0)
    );
    assert!(
        p.log().contains("stages[1].target"),
        "the reload error names the field"
    );
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "a bad reload stopped the daemon"
    );
    // A good config: adopted, and its plan runs.
    p.reload(
        &cfg,
        &plan(
            &addr.to_string(),
            "second",
            "[lifecycle]\non_finish = \"idle\"\n[reports]\nenabled = false",
        ),
        "config reloaded",
    );
    let t = Instant::now();
    loop {
        let (_, m) = http_get(p.metrics, "/metrics").await;
        if sample(&m, "loadspec_iterations_total", &["scenario=\"second\""]).unwrap_or(0.0) > 0.0 {
            assert_eq!(
                sample(&m, "loadspec_config_last_reload_successful", &[]),
                Some(1.0)
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the reloaded plan did not run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_prints_the_summary() {
    let mut tc = DemoTargetConfig::free();
    tc.delay = Duration::from_millis(1500);
    let (addr, target) = target(tc).await;
    let (dir, _) = dir_with_png();
    let text = plan(
        &addr.to_string(),
        "drain",
        "[lifecycle]\non_finish = \"exit\"\ndrain_timeout = \"10s\"",
    )
    .replace(
        "duration = \"1s\", target = 2",
        "duration = \"60s\", target = 3",
    );
    let cfg = write(dir.path(), "run.toml", &text);
    let mut p = spawn_run(&cfg, &[("LOADSPEC_TOKEN", "t")]);
    // Wait until three requests are in flight at the server.
    let t = Instant::now();
    while target.stats().in_flight < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "requests never in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = target.stats().ai_requests;
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(0), "{}", p.log());
    let s = target.stats();
    assert_eq!(s.in_flight, 0);
    // Every request that had started completed with 200; none was started after the signal
    // beyond those already in flight.
    let ok = s.requests["POST /api/v1/ai-images"][&200];
    assert_eq!(ok, s.ai_requests, "{s:?}");
    assert!(
        s.ai_requests <= started + 3,
        "new iterations started after SIGTERM"
    );
    let log = p.log();
    assert!(
        log.contains("checks.........: 100.00%"),
        "final summary missing or with failures:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_no_problem_in_the_metrics() {
    let promtool = which("promtool");
    let Some(promtool) = promtool else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "promtool missing under CI=true"
        );
        eprintln!("skipping: promtool not installed");
        return;
    };
    let (addr, _target) = target(DemoTargetConfig::free()).await;
    let toml = plan(
        &addr.to_string(),
        "lint",
        "[lifecycle]\non_finish = \"idle\"\n[reports]\nenabled = false",
    )
    .replace("${LOADSPEC_TOKEN}", "t");
    let d = start(&toml).await;
    d.wait_runs(1, Duration::from_secs(30)).await;
    let m = d.metrics().await;
    d.stop().await;
    assert!(m.contains("loadspec_http_request_duration_seconds_bucket"));
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool check metrics:\n{text}"
    );
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}
