//! The scale-out switches of `loadspec run` without containers: a shard from a Kubernetes
//! Indexed Job's environment, sweep refused for N > 1 shards, the common start waited for,
//! `lifecycle.exit_grace` holding the exit until one more scrape of /metrics, and three
//! arrival-rate shards ending cleanly with the schedule between them. Real demo-target on
//! 127.0.0.1:0; every run is bounded.

mod observability;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use observability::{free_port, http_get, start_demo_target};

fn plan(listen: u16, target: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{listen}"
[target]
base_url = "http://{target}"
[containers]
source = "none"
[reports]
enabled = false
[lifecycle]
on_finish = "exit"
{extra}
[[scenarios]]
name = "s"
executor = "constant-vus"
vus = 3
duration = "1s"
[[scenarios.requests]]
name = "health"
path = "/healthz"
"#
    )
}

#[test]
fn a_sharded_sweep_is_refused_naming_the_mode_and_the_shard_from_the_job_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("sweep.toml");
    let text = plan(free_port(), "127.0.0.1:9", "").replace(
        "[lifecycle]",
        "[experiment]\nmode = \"sweep\"\n[experiment.sweep]\nvus = [1, 2]\n[lifecycle]",
    );
    fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loadspec"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("JOB_COMPLETION_INDEX", "1")
        .env("LOADSPEC_SHARDS", "3")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("experiment.mode") && err.contains("1/3"),
        "{err}"
    );

    // A broken index names the variables, and nothing starts.
    let out = Command::new(env!("CARGO_BIN_EXE_loadspec"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("JOB_COMPLETION_INDEX", "7")
        .env("LOADSPEC_SHARDS", "3")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("JOB_COMPLETION_INDEX=\"7\""), "{err}");
}

#[test]
fn the_common_start_is_waited_for_and_exit_grace_waits_for_one_more_scrape() {
    let (_demo, addr) = start_demo_target(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = tmp.path().join("plan.toml");
    fs::write(&cfg, plan(port, &addr.to_string(), "exit_grace = \"20s\"")).unwrap();
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 3.0;
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadspec"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(format!("--start-at={start_at:.3}"))
        .arg("--run-id=grace-test")
        .env("LOADSPEC_SHARD", "0/1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics_addr = format!("127.0.0.1:{port}");
    // Before the start: serving, identified, but no request sent yet.
    let mut first = None;
    while t0.elapsed() < Duration::from_secs(2) {
        if let Ok((200, body)) = http_get(&metrics_addr, "/metrics") {
            first = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = first.expect("/metrics answers before the start");
    assert!(
        first.contains(r#"loadspec_run_info{run_id="grace-test",shard="0",shards="1"} 1"#),
        "{first}"
    );
    assert!(
        !first.contains("loadspec_checks_total{"),
        "requests were sent before the common start"
    );
    // The plan (1 s) ends about 4 s in; then the process waits for a scrape, not 20 s.
    std::thread::sleep(Duration::from_millis(5_500).saturating_sub(t0.elapsed()));
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before the last scrape"
    );
    let (code, last) = http_get(&metrics_addr, "/metrics").expect("the last scrape");
    assert_eq!(code, 200);
    assert!(
        last.contains("loadspec_checks_total{"),
        "the final values are served: {last}"
    );
    assert!(
        !last.contains("loadspec_stage_index{"),
        "the stage series end with the plan: {last}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "still running 5 s after the last scrape"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "waited the whole grace: {:?}",
        t0.elapsed()
    );
}

#[test]
fn a_shard_that_starts_late_joins_the_plan_in_phase() {
    let (_demo, addr) = start_demo_target(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = tmp.path().join("late.toml");
    let text = plan(port, &addr.to_string(), "").replace(
        "executor = \"constant-vus\"\nvus = 3\nduration = \"1s\"",
        "executor = \"ramping-vus\"\nstep = true\nstages = [{ duration = \"3s\", target = 1, name = \"A\" }, { duration = \"3s\", target = 4, name = \"B\" }]",
    );
    fs::write(&cfg, text).unwrap();
    // The common start was 4 s ago: stage A is over, B has 2 s left.
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 4.0;
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadspec"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(format!("--start-at={start_at:.3}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut seen = None;
    while t0.elapsed() < Duration::from_millis(1500) {
        if let Ok((200, body)) = http_get(&metrics_addr, "/metrics") {
            if body.contains("loadspec_stage_index{") {
                seen = Some(body);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = seen.expect("a stage within 1.5 s");
    assert!(
        body.contains(r#"loadspec_stage_index{scenario="s"} 1"#),
        "joined in stage B: {body}"
    );
    assert!(
        body.contains(r#"loadspec_stage_info{scenario="s",stage="B"} 1"#),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the late shard ran past the plan's end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It ended with the plan (2 s left), not 6 s after its own start.
    assert!(
        t0.elapsed() < Duration::from_millis(4_500),
        "ran {:?}",
        t0.elapsed()
    );
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        !out.contains("| A "),
        "the elapsed stage A has no row in the summary:\n{out}"
    );
}

/// Every route's count of responses in demo-target's `/_stats`.
fn responses(target: &str) -> u64 {
    let (code, body) = http_get(target, "/_stats").expect("GET /_stats");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
    v["requests"]
        .as_object()
        .expect("requests by route")
        .values()
        .flat_map(|by_status| by_status.as_object().expect("by status").values())
        .map(|n| n.as_u64().expect("a count"))
        .sum()
}

#[test]
fn three_arrival_rate_shards_exit_zero_and_send_the_schedule_between_them() {
    // A VU that finished its iteration after the schedule closed once claimed an index
    // that overflowed when striped over 2 or 3 shards: the debug build panicked (exit 70)
    // and a release build counted dropped iterations that never were.
    let (_demo, addr) = start_demo_target(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 2.0;
    // 0 -> 60/s over 1 s, 60/s for 1 s, 60 -> 0 over 1 s: 30 + 60 + 30 arrivals.
    let schedule = "executor = \"ramping-arrival-rate\"\npre_allocated_vus = 3\nmax_vus = 6\nstages = [{ duration = \"1s\", target = 60 }, { duration = \"1s\", target = 60 }, { duration = \"1s\", target = 0 }]";
    let children: Vec<_> = (0..3)
        .map(|i| {
            let cfg = tmp.path().join(format!("shard{i}.toml"));
            let text = plan(free_port(), &addr.to_string(), "").replace(
                "executor = \"constant-vus\"\nvus = 3\nduration = \"1s\"",
                schedule,
            );
            assert!(text.contains("ramping-arrival-rate"));
            fs::write(&cfg, text).unwrap();
            let log = fs::File::create(tmp.path().join(format!("shard{i}.log"))).unwrap();
            Command::new(env!("CARGO_BIN_EXE_loadspec"))
                .args(["run", "--config"])
                .arg(&cfg)
                .arg(format!("--start-at={start_at:.3}"))
                .env("LOADSPEC_SHARD", format!("{i}/3"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, mut child) in children.into_iter().enumerate() {
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = fs::read_to_string(tmp.path().join(format!("shard{i}.log"))).unwrap();
        assert_eq!(status.code(), Some(0), "shard {i}/3:\n{log}");
        assert!(!log.contains("panicked"), "shard {i}/3:\n{log}");
    }
    // The last arrival is due at the schedule's very end, where a shard may or may not
    // still take it; a stall of the whole machine longer than a shard's idle VUs' claims
    // (150 ms) drops the arrivals it made late, as k6 does. A shard sending nothing, or
    // every shard the whole schedule, is far outside.
    let served = responses(&addr.to_string());
    assert!((114..=120).contains(&served), "{served} requests served");
}
