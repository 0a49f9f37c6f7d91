//! The seed's own plan against a real container must give a report a team can act on
//! (issue 21), and the search must survive a real host (issue 14, item 5).
//!
//! - The seed's T1–T4 plan (`examples/s3-image-upload.toml`, stages shortened to 5 s, T4 to
//!   12 s: see [`STAGE_SECS`]) against
//!   demo-target in Docker with `--cpus 1` and a memory limit that 200 VUs exceed. T1 is
//!   already saturated (one VU keeps a core busy), T4 is OOM-killed, and the VUs then face a
//!   dead port. The report must say so, and not count the failures as throughput.
//! - A search whose candidates include more cpus than the engine's host has skips them with a
//!   note instead of aborting; one whose candidates are all above it aborts, exits 1 and writes
//!   an error report.
//!
//! Under CI=true a missing Docker engine fails these tests.

mod support_containers;
mod support_core;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support_containers::{
    docker, docker_available, ensure_image, only_report, s2_prompt_request, wait_healthy, Container,
};
use support_core::{start_in, Daemon};

/// These tests measure CPU: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// demo-target's costs: its default CPU per request (20 ms, the issue's setup) and a memory
/// per in-flight request small enough that the kill comes from the VUs, not the base.
const CPU_MS: f64 = 20.0;
const MEM_PER_REQUEST_MIB: u64 = 2;
const BASE_MIB: u64 = 16;
/// demo-target's async workers (see the container's arguments).
const WORKERS: u16 = 64;
/// The seed's VUs.
const STAGES: [u64; 4] = [10, 50, 100, 200];
/// Each stage's length. T4 is longer because the kill does not always come at once: at its
/// limit the container can spend 5–7 s thrashing (the kernel reclaims the binary's own pages and
/// they are read back; memory stays at the limit and nothing is answered) before the OOM killer
/// fires, and in a 5 s T4 that kill then fell after the plan (2 runs of 5 on one machine).
const STAGE_SECS: [u64; 4] = [5, 5, 5, 12];

/// Memory in flight at `vus` closed-model VUs: one request each.
fn demand_mib(vus: u64) -> u64 {
    BASE_MIB + vus * MEM_PER_REQUEST_MIB
}

/// A limit a third of the way from what T3 (100 VUs) holds to what T4 (200 VUs) holds: T3 fits
/// with 66 MiB over its demand for the process's own overhead (it peaked at 236–244 MiB against
/// 282 MiB), and T4 is killed once about a third of its new VUs' requests are in, early enough
/// in T4 for the report to see both the kill and the dead port. At the halfway point
/// (316 MiB) a busy host once saw the kill so late in T4 that the report had neither.
fn memory_limit_mib() -> u64 {
    demand_mib(STAGES[2]) + (demand_mib(STAGES[3]) - demand_mib(STAGES[2])) / 3
}

/// The process's CPU time (user + system) in seconds, from /proc/self/stat.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / loadspec::containers::host::clock_ticks_per_second()
}

/// The seed's S3 plan, unchanged apart from the target, the token, the stage lengths, a container
/// this test made, a short settle and reports into `reports`.
fn seed_plan(addr: SocketAddr, container: &str, reports: &Path) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/s3-image-upload.toml"
    ))
    .expect("the seed's plan");
    let mut v: toml::Value = toml::from_str(&text).expect("the example parses");
    let t = v.as_table_mut().unwrap();
    t["target"]["base_url"] = format!("http://{addr}").into();
    t["target"]["bearer_token"] = "t".into();
    let stages = t["scenarios"][0]["stages"].as_array_mut().unwrap();
    let vus: Vec<i64> = stages
        .iter()
        .map(|s| s["target"].as_integer().unwrap())
        .collect();
    assert_eq!(vus, STAGES.map(|v| v as i64), "the seed's T1–T4");
    for (s, secs) in stages.iter_mut().zip(STAGE_SECS) {
        s["duration"] = format!("{secs}s").into();
    }
    // Only the container this test made, in the seed's group.
    t.insert(
        "containers".into(),
        toml::toml! { source = "docker" interval = "500ms" }.into(),
    );
    t["containers"]
        .as_table_mut()
        .unwrap()
        .insert("names".into(), vec![container.to_string()].into());
    let mut groups = toml::Table::new();
    groups.insert(container.into(), "ai".into());
    t["containers"]
        .as_table_mut()
        .unwrap()
        .insert("groups".into(), groups.into());
    t.insert(
        "analysis".into(),
        toml::toml! { settle = "1s" group = "ai" }.into(),
    );
    t.insert(
        "lifecycle".into(),
        toml::toml! { on_finish = "idle" }.into(),
    );
    let mut r = toml::Table::new();
    r.insert("enabled".into(), true.into());
    r.insert("dir".into(), reports.display().to_string().into());
    t.insert("reports".into(), r.into());
    toml::to_string(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_plan_reports_saturation_the_oom_kill_and_the_dead_target() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    ensure_image();
    let mem = format!("{}m", memory_limit_mib());
    let c = Container::demo(
        "seed",
        &[
            "--cpus=1",
            // A large CPU weight keeps the 1-core limit reachable on a busy machine: the
            // kill needs T4's new VUs' requests to be accepted and admitted (which takes
            // their memory) while T3's are still burning.
            "--cpu-shares=65536",
            &format!("--memory={mem}"),
            &format!("--memory-swap={mem}"),
        ],
        &[
            &format!("--cpu-ms={CPU_MS}"),
            &format!("--mem-per-request={MEM_PER_REQUEST_MIB}MiB"),
            &format!("--base-memory={BASE_MIB}MiB"),
            // Enough async workers that accepting and admitting requests keeps up with the CPU
            // burn under the 1-core limit, where every thread gets a fair share against ~100
            // burning ones: T4's new requests must be in (holding their memory) within 5 s.
            &format!("--workers={WORKERS}"),
        ],
    );
    let addr = c.addr();
    wait_healthy(addr, Duration::from_secs(20)).await;
    let (dir, _) = support_core::dir_with_png();
    // Outside the daemon's dir, which goes when the daemon stops.
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    let cfg = seed_plan(addr, &c.name, &reports);
    let d: Daemon = start_in(&cfg, dir, "0/1").await;

    // Watch for the kill; once the target is down, measure loadspec's own CPU for 2 s while
    // T4's VUs face the dead port.
    let started = Instant::now();
    let plan = Duration::from_secs(STAGE_SECS.iter().sum());
    let mut down_cpu = None;
    while started.elapsed() < plan + Duration::from_secs(20) {
        if c.inspect("{{.State.Running}}") == "false" {
            let (c0, t0) = (own_cpu_seconds(), Instant::now());
            tokio::time::sleep(Duration::from_secs(2)).await;
            down_cpu = Some((own_cpu_seconds() - c0) / t0.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let oom_killed = c.inspect("{{.State.OOMKilled}}");
    d.wait_runs(1, Duration::from_secs(90)).await;
    // Requests found closed on a kept-alive connection when the target died were sent again.
    let retries = support_core::sample(
        &d.metrics().await,
        "loadspec_http_retries_total",
        &["scenario=\"s3\""],
    )
    .expect("loadspec_http_retries_total") as u64;
    let finished = d.stop().await;
    let (outcome, a) = finished.last.expect("a finished run");
    for s in &outcome.stages {
        // A stage after the kill has no samples of the dead container.
        let Some(g) = s.groups.first() else {
            continue;
        };
        eprintln!(
            "{}: memory avg {:.0} MiB, max {:.0} MiB, limit {:.0} MiB",
            s.stage,
            g.memory_bytes_avg / 1048576.0,
            g.memory_bytes_max / 1048576.0,
            g.memory_limit_bytes / 1048576.0
        );
    }
    let report = only_report(&reports).1;
    eprintln!("alerts: {:#?}", a.alerts);
    for s in &outcome.stages {
        eprintln!(
            "{} {:>5.1} VUs  TPS {:>6.1}  req/s {:>8.1}  events {:?}  down {:?}  status {:?}",
            s.stage, s.vus, s.tps, s.request_rate, s.events, s.target_down, s.status
        );
    }
    assert_eq!(
        oom_killed, "true",
        "200 VUs × {MEM_PER_REQUEST_MIB} MiB must exceed {mem}"
    );

    // The OOM kill is on T4 in report.json, with the limit it had, and in the alerts.
    let stages = report["stages"].as_array().unwrap();
    let t4 = stages
        .iter()
        .find(|s| s["stage"] == "T4")
        .expect("T4 measured");
    let kills: Vec<&serde_json::Value> = stages
        .iter()
        .flat_map(|s| s["events"].as_array().unwrap())
        .filter(|e| e["kind"] == "oom_kill")
        .collect();
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert!(
        t4["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "oom_kill"
                && e["container"] == c.name.as_str()
                && e["memory_limit_bytes"] == memory_limit_mib() << 20),
        "{}",
        t4["events"]
    );
    assert_eq!(report["analysis"]["events"][0]["stage"], "T4");
    assert!(
        a.alerts
            .iter()
            .any(|w| w.starts_with(&format!("OOM kill of {}", c.name))
                && w.contains("stage T4 (200 VUs)")),
        "{:?}",
        a.alerts
    );

    // Saturated from T1: one VU keeps the 1-core limit busy, so 10 VUs are far past the knee.
    // No per-VU model, recommendation or situation comes from it. On a busy host T1 may be
    // starved instead (left out as well); either way nothing per VU is derived.
    assert!(a.recommendations.is_empty(), "{:?}", a.recommendations);
    assert!(a.situations.is_empty() && a.autoscaling.is_none());
    assert!(a.models.cpu.is_none() && a.models.tps.is_none());
    let t1 = &a.points[0];
    match &a.models.lower_bounds {
        Some(lb) => {
            assert!(lb.first_stage && lb.stage == "T1", "{lb:?}");
            let snippet = a.sweep_suggestion.as_deref().unwrap();
            assert!(
                snippet.contains("vus = [1, 2, 3, 4, 5, 7, 10]"),
                "{snippet}"
            );
            assert!(snippet.contains("cpus = 1\n"), "{snippet}");
            assert!(
                snippet.contains(&format!("memory = {}", memory_limit_mib() << 20)),
                "{snippet}"
            );
        }
        None => assert!(
            matches!(
                t1.excluded,
                Some(loadspec::analysis::points::Exclusion::StarvedHost { .. })
            ),
            "neither saturated nor starved at T1: {t1:?}"
        ),
    }

    // T4's TPS counts responses, which one core caps at 1000 ms ÷ 20 ms = 50 per second.
    let max_tps = 1000.0 / CPU_MS;
    let t4s = outcome.stages.iter().find(|s| s.stage == "T4").unwrap();
    assert!(t4s.tps <= max_tps * 1.1, "T4 TPS {} > {max_tps}", t4s.tps);
    assert!(
        a.knee.max_tps <= max_tps * 1.1,
        "highest TPS {}",
        a.knee.max_tps
    );
    assert!(t4s.target_down.is_some() || !t4s.events.is_empty());
    let t4p = a.points.iter().find(|p| p.stage == "T4").unwrap();
    assert!(
        t4p.excluded.is_some(),
        "T4 is left out of the fits: {t4p:?}"
    );

    // data_sent: only requests that reached the target, each at most the file, the prompt and
    // the multipart and HTTP framing (2 KiB is generous for both), plus one more body for each
    // counted resend. A request whose kept-alive connection the kill closed is sent again on
    // a new connection: it has written up to two bodies if that connect worked, and one if it
    // failed (the request then counts as a connect failure).
    let totals = &outcome.totals[0];
    let connects = totals.status.get("connect").copied().unwrap_or(0);
    let connected = totals.requests - connects;
    let png = std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/test.png"))
        .unwrap()
        .len();
    let bound = (connected + retries) * (png + 2048);
    eprintln!(
        "data_sent {} bytes: {connected} connected requests, {retries} resends, {connects} connect failures",
        totals.data_sent_bytes
    );
    assert!(
        retries <= STAGES[3],
        "{retries} resends: at most one per VU in flight at the kill"
    );
    assert!(
        totals.data_sent_bytes <= bound,
        "data_sent {} > ({connected} connected requests + {retries} resends) × {} bytes ({connects} connect failures)",
        totals.data_sent_bytes,
        png + 2048
    );

    // A dead target costs loadspec almost nothing: connect attempts back off per VU to one a
    // second, so 200 VUs make about 200 cheap attempts a second, not tens of thousands.
    let down_cpu = down_cpu.expect("the container died during the plan");
    eprintln!(
        "loadspec CPU while the target was down: {down_cpu:.3} cores; {connects} connect failures"
    );
    assert!(
        down_cpu < 0.15,
        "loadspec used {down_cpu:.3} cores against a dead port"
    );
    // At most all of T4 with the port dead.
    let down_seconds = STAGE_SECS[3] as f64;
    let per_vu = (1000.0f64 / 10.0).log2().ceil() + down_seconds;
    assert!(
        (connects as f64) <= STAGES[3] as f64 * per_vu,
        "{connects} connect failures: no backoff"
    );
}

/// A search config against `container` with these cpus candidates.
fn search_config(addr: SocketAddr, container: &str, cands: &str, reports: &Path) -> String {
    format!(
        r#"
[target]
base_url = "http://{addr}"
bearer_token = "t"
timeout = "10s"
[lifecycle]
on_finish = "exit"
[reports]
enabled = true
dir = "{reports}"
[sla]
latency_p95 = "500ms"
[containers]
source = "docker"
names = ["{container}"]
groups = {{ "{container}" = "ai" }}
interval = "500ms"
[analysis]
settle = "1s"
[experiment]
mode = "search"
[experiment.search]
vus = 1
cpus = {cands}
group = "ai"
stage_duration = "3s"
[[scenarios]]
name = "s2"
executor = "constant-vus"
vus = 1
duration = "3s"
{request}"#,
        request = s2_prompt_request("a cat"),
        reports = reports.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_skips_candidates_above_the_host_and_aborts_loudly_when_none_is_left() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    ensure_image();
    let c = Container::demo(
        "search-host",
        &["--cpus=1", "--memory=256m"],
        &[&format!("--cpu-ms={CPU_MS}")],
    );
    let addr = c.addr();
    wait_healthy(addr, Duration::from_secs(20)).await;
    let ncpu: u64 = docker(&["info", "--format", "{{.NCPU}}"])
        .parse()
        .expect("NCPU");
    let above = (ncpu + 1) as f64;

    // One candidate the host has, one it does not.
    let (dir, _) = support_core::dir_with_png();
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    let cfg = search_config(addr, &c.name, &format!("[1.0, {above}]"), &reports);
    let d: Daemon = start_in(&cfg, dir, "0/1").await;
    let finished = tokio::time::timeout(Duration::from_secs(90), d.handle)
        .await
        .expect("the search ends")
        .unwrap()
        .unwrap();
    assert_eq!(finished.aborted(), None);
    let (outcome, _) = finished.last.unwrap();
    eprintln!("{:#?}", outcome.notes);
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n == &format!("{above} cpus: skipped, the engine's host has {ncpu} CPUs")),
        "{:?}",
        outcome.notes
    );
    // 1 VU at 20 ms per request is far within 500 ms at one core: found, and re-run once.
    assert_eq!(
        outcome.search_result.map(|r| r.0),
        Some(1.0),
        "{:?}",
        outcome.notes
    );
    assert_eq!(outcome.stages.len(), 2, "the trial and its re-run");
    assert!(outcome.search_margin.is_some_and(|m| m > 0.0 && m < 1.0));
    let report = only_report(&reports).1;
    assert_eq!(report["run"]["tested_spec"]["cpus"], 1.0);
    assert!(report["run"]["error"].is_null());
    assert_eq!(c.inspect("{{.HostConfig.NanoCpus}}"), "1000000000");

    // Every candidate above the host: the binary exits 1 with an error report.
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let cfg = search_config(addr, &c.name, &format!("[{above}]"), &reports);
    let path = dir.path().join("search.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_loadspec"))
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .expect("loadspec runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("experiment aborted: every cpus candidate is above the host's"),
        "{stderr}"
    );
    let report = only_report(&reports).1;
    assert!(
        report["run"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("above the host's {ncpu} CPUs"))),
        "{}",
        report["run"]
    );
}
