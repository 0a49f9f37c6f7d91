//! Capacity analysis against real runs with known ground truth (issue 5): demo-target is told
//! its CPU cost per request, its memory per in-flight request and its base memory; loadspec
//! must recover them.
//! - In Docker at `--cpus=1`: a sweep fits per-VU CPU, per-VU memory and base memory within
//!   15 % and finds the knee where the CPU limit is reached (limit ÷ per-VU CPU).
//! - In Docker, search: the cheapest cpus candidate that meets the SLA equals the smallest one
//!   a brute-force run of every candidate passes, and the original limits are back afterwards.
//! - The same search against demo-target serving HTTPS (a CA made by the test).
//! - With the process source, `loadspec demo` prints figures matching its configured costs and
//!   writes reports that parse.
//!
//! Under CI=true a missing Docker engine fails these tests.

mod support_containers;
mod support_core;

use std::process::Command;
use std::time::Duration;

use support_containers::{docker_available, ensure_image, wait_healthy, Container};
use support_core::{start_in, Daemon};

const MIB: f64 = 1048576.0;

/// These tests measure CPU: run them one at a time, not beside each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Demo-target's cost per AI request in these tests: CPU c, then a wait d, large enough that
/// the server's own HTTP handling (a few ms in a debug build) is a small share of each. Cores used are
/// exactly TPS × c, so a closed-loop VU uses c × (its TPS), about c / (c + d) = 0.25 cores
/// (less by however much network and handling add to each request's latency). At `--cpus=1`
/// the limit is reached at about 1 / 0.25 = 4 VUs.
const CPU_MS: f64 = 100.0;
const DELAY_MS: f64 = 300.0;
const MEM_MIB: f64 = 16.0;
const BASE_MIB: f64 = 256.0;

fn demo_args() -> Vec<String> {
    vec![
        format!("--cpu-ms={CPU_MS}"),
        format!("--delay-ms={DELAY_MS}"),
        format!("--mem-per-request={MEM_MIB}MiB"),
        format!("--base-memory={BASE_MIB}MiB"),
    ]
}

/// A demo-target container with the test costs and these limits, answering on loopback.
async fn demo_container(tag: &str, limits: &[&str]) -> (Container, std::net::SocketAddr) {
    ensure_image();
    let args = demo_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Container::demo(tag, limits, &args);
    let addr = c.addr();
    wait_healthy(addr, Duration::from_secs(20)).await;
    (c, addr)
}

fn config(addr: std::net::SocketAddr, container: &str, experiment: &str) -> String {
    format!(
        r#"
[target]
base_url = "http://{addr}"
bearer_token = "t"
timeout = "10s"
[lifecycle]
on_finish = "idle"
[reports]
enabled = false
[sla]
latency_p95 = "2s"
cpu_utilization = 0.9
[containers]
source = "docker"
names = ["{container}"]
groups = {{ "{container}" = "ai" }}
interval = "500ms"
[analysis]
settle = "2s"
group = "ai"
target_utilization = 0.8
{experiment}
[[scenarios]]
name = "s2"
executor = "constant-vus"
vus = 1
duration = "5s"
[[scenarios.requests]]
name = "ai-prompt"
method = "POST"
path = "/api/v1/ai-images/prompt"
expect = [200]
body = {{ type = "json", json = {{ prompt = "미니멀하고 화이톤의 셋업" }} }}
"#
    )
}

async fn run_once(
    cfg: &str,
) -> (
    loadspec::experiment::Outcome,
    loadspec::analysis::CapacityAnalysis,
) {
    run_in(cfg, tempfile::tempdir().unwrap()).await
}

/// [`run_once`] with the config written into `dir` (beside files it names).
async fn run_in(
    cfg: &str,
    dir: tempfile::TempDir,
) -> (
    loadspec::experiment::Outcome,
    loadspec::analysis::CapacityAnalysis,
) {
    let d: Daemon = start_in(cfg, dir, "0/1").await;
    d.wait_runs(1, Duration::from_secs(180)).await;
    d.stop().await.last.expect("a finished run")
}

/// A search for the cheapest of these cpus candidates serving 4 VUs within p95 ≤ 1.2 s.
fn search(cands: &str) -> String {
    format!(
        r#"
[experiment]
mode = "search"
[experiment.search]
vus = 4
latency_p95 = "1200ms"
cpus = {cands}
group = "ai"
stage_duration = "6s"
"#
    )
}

/// After a search of a container started with `--cpus=1.5 --memory=768m`: the original limits
/// are back, and the report records them.
fn assert_limits_restored(c: &Container, outcome: &loadspec::experiment::Outcome) {
    assert_eq!(c.inspect("{{.HostConfig.NanoCpus}}"), "1500000000");
    assert_eq!(
        c.inspect("{{.HostConfig.Memory}}"),
        (768u64 << 20).to_string()
    );
    let restored = &outcome.restored;
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].cpus, Some(1.5));
    assert_eq!(restored[0].memory_bytes, Some(768 << 20));
}

fn within(what: &str, got: f64, truth: f64, tol: f64) {
    let err = (got - truth).abs() / truth;
    assert!(
        err <= tol,
        "{what}: fitted {got:.4}, truth {truth:.4} ({:+.1}%)",
        (got - truth) / truth * 100.0
    );
    eprintln!(
        "{what}: fitted {got:.4}, truth {truth:.4} ({:+.1}%)",
        (got - truth) / truth * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_sweep_recovers_the_configured_costs_and_the_knee() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (c, addr) = demo_container("sweep", &["--cpus=1", "--memory=1g"]).await;
    let exp = r#"
[experiment]
mode = "sweep"
[experiment.sweep]
vus = [1, 2, 3, 4, 5, 6]
stage_duration = "12s"
stop_on_break = false
"#;
    let (outcome, a) = run_once(&config(addr, &c.name, exp)).await;
    assert_eq!(outcome.stages.len(), 6, "{:?}", outcome.notes);
    for s in &outcome.stages {
        assert_eq!(s.errors, 0, "{s:?}");
        let g = s
            .groups
            .iter()
            .find(|g| g.name == "ai")
            .expect("the ai group was measured");
        assert_eq!(g.cpu_limit_cores, 1.0);
        assert_eq!(g.memory_limit_bytes, 1024.0 * MIB);
    }
    for s in &outcome.stages {
        let g = s.groups.iter().find(|g| g.name == "ai").unwrap();
        eprintln!(
            "{:>3} VUs  {:6.1} TPS  {:.3} cores  {:7.1} MiB  p95 {:.0} ms",
            s.vus,
            s.tps,
            g.cpu_cores_avg,
            g.memory_bytes_avg / MIB,
            s.latency.as_ref().map_or(f64::NAN, |l| l.p95 * 1e3)
        );
    }
    let c_s = CPU_MS / 1e3;
    // CPU per request: the slope of cores against TPS is the configured burn (plus the
    // server's own HTTP and JSON handling, a little in a debug build).
    let per_tps = a.models.cpu_per_tps.as_ref().expect("a CPU-per-TPS model");
    within("CPU seconds per request", per_tps.slope, c_s, 0.15);
    // CPU per VU: the burn times the TPS one VU drives below the knee.
    let tps_per_vu = a.models.tps.as_ref().expect("a TPS model").slope;
    let per_vu_cpu = c_s * tps_per_vu;
    let cpu = a.models.cpu.as_ref().expect("a CPU model");
    within("CPU cores per VU", cpu.slope, per_vu_cpu, 0.15);
    // And that throughput is what the configured costs allow, within the latency overhead.
    within("TPS per VU", tps_per_vu, 1e3 / (CPU_MS + DELAY_MS), 0.25);
    let mem = a.models.memory.as_ref().expect("a memory model");
    // Below the knee every VU has one request in flight; past it requests queue in the server
    // holding their memory too, so memory stays linear in VUs across all stages.
    within("memory per VU (MiB)", mem.slope / MIB, MEM_MIB, 0.15);
    within("base memory (MiB)", mem.base / MIB, BASE_MIB, 0.15);
    eprintln!("knee: {:?}", a.knee);
    let knee = a.knee.vus.expect("a knee");
    // The limit (1 core) is reached where VUs × c / (c + d) = 1: at 4 VUs from the configured
    // costs. Stages are whole VU counts, so the knee may land on a neighbour.
    let expected = 1.0 / (CPU_MS / (CPU_MS + DELAY_MS));
    assert!(
        (knee - expected).abs() <= 1.0,
        "knee at {knee} VUs, the CPU limit is reached at {expected}: {:?}",
        a.knee
    );
    // Past the knee TPS stops growing: each added VU brings well under half of what the first
    // VU brought.
    let tps = |v: f64| {
        outcome
            .stages
            .iter()
            .find(|s| s.vus.round() == v)
            .unwrap()
            .tps
    };
    let gain = (tps(6.0) - tps(4.0)) / 2.0;
    assert!(
        gain < 0.5 * tps(1.0),
        "TPS kept growing past the limit: {} at 4 VUs, {} at 6, {} at 1",
        tps(4.0),
        tps(6.0),
        tps(1.0)
    );
    // The recommendation for 4 VUs needs 1 core of demand at 80 % utilization: 1.25, rounded
    // up to the 0.5 step = 1.5 cpus.
    let row = a
        .recommendations
        .iter()
        .find(|r| r.vus == 4)
        .expect("a 4-VU row");
    assert!((1.0..=2.0).contains(&row.spec.cpus), "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_returns_the_smallest_passing_cpus_and_restores_the_limits() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (c, addr) = demo_container("search", &["--cpus=1.5", "--memory=768m"]).await;
    let (outcome, _) = run_once(&config(addr, &c.name, &search("[0.25, 1.0, 2.0]"))).await;
    let found = outcome.search_result.map(|(cpus, _)| cpus);
    eprintln!("search: {:?}", outcome.notes);
    // Brute force: each candidate on its own.
    let mut passing = Vec::new();
    for cand in [0.25, 1.0, 2.0] {
        let (o, _) = run_once(&config(addr, &c.name, &search(&format!("[{cand}]")))).await;
        eprintln!("brute force {cand}: {:?}", o.notes);
        if o.search_result.is_some() {
            passing.push(cand);
        }
    }
    assert_eq!(
        found,
        passing.first().copied(),
        "search found {found:?}, brute force passes {passing:?}"
    );
    assert_eq!(found, Some(1.0), "4 VUs need 1 core: {:?}", outcome.notes);
    assert_limits_restored(&c, &outcome);
}

/// Search against an HTTPS target (issue 15): demo-target in Docker serves TLS with a
/// certificate from a CA made by the test (mounted read-only), loadspec trusts that CA through
/// `target.tls.ca_file`; the search finds the same cheapest spec as over plain HTTP, every
/// stage's requests succeed, and the limits are restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_over_https_finds_the_cheapest_cpus_and_restores_the_limits() {
    if !docker_available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    ensure_image();
    let pki = loadspec::demo_target::tls::Pki::new("search test CA").unwrap();
    let certs = tempfile::tempdir().unwrap();
    pki.server(&["127.0.0.1", "localhost"])
        .unwrap()
        .write(certs.path(), "server")
        .unwrap();
    let volume = format!("{}:/tls:ro", certs.path().display());
    let mut args = demo_args();
    args.extend([
        "--tls-cert=/tls/server.pem".to_string(),
        "--tls-key=/tls/server.key".to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Container::demo(
        "search-tls",
        &["--cpus=1.5", "--memory=768m", "-v", &volume],
        &args,
    );
    let addr = c.addr();
    // Docker's port proxy accepts before the server listens, so wait for the server's own line.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !c.logs().contains("demo-target started") {
        assert!(
            std::time::Instant::now() < deadline,
            "demo-target did not start: {}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let cfg = config(addr, &c.name, &search("[0.25, 1.0]"))
        .replace("base_url = \"http://", "base_url = \"https://")
        .replace(
            "timeout = \"10s\"\n[lifecycle]",
            "timeout = \"10s\"\n[target.tls]\nca_file = \"ca.pem\"\n[lifecycle]",
        );
    assert!(cfg.contains("https://") && cfg.contains("ca_file"), "{cfg}");
    let (outcome, _) = run_in(&cfg, dir).await;
    eprintln!("search over https: {:?}", outcome.notes);
    assert_eq!(
        outcome.search_result.map(|(cpus, _)| cpus),
        Some(1.0),
        "4 VUs need 1 core, as over http: {:?}",
        outcome.notes
    );
    assert!(!outcome.stages.is_empty());
    for st in &outcome.stages {
        assert!(st.requests > 0, "{st:?}");
        assert_eq!(
            st.errors, 0,
            "no request failed (no `tls` failures): {st:?}"
        );
    }
    assert_limits_restored(&c, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_figures_matching_its_configured_costs() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loadspec"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--cpu-ms",
            "60",
            "--delay-ms",
            "300",
            "--mem-per-request-mib",
            "16",
            "--base-memory-mib",
            "256",
            "--vus",
            "1,2,3,4",
            "--stage-duration",
            "7s",
        ])
        .arg("--reports")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "Stages",
        "Models",
        "Recommendation",
        "Situations",
        "ground truth",
        "reports:",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    // The report parses and holds the same analysis.
    let run_dir = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .next()
        .expect("a report dir")
        .path();
    let json = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    let doc: loadspec::report::ReportDocument =
        serde_json::from_str(&json).expect("report.json parses");
    assert_eq!(doc.stages.len(), 4);
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 4, "charts missing");
    let m = &doc.analysis.models;
    // CPU per request is exact by construction (demo-target burns 60 ms of CPU time per
    // request); the process also parses HTTP and the multipart upload, a few ms in a debug build.
    within(
        "CPU seconds per request",
        m.cpu_per_tps.as_ref().expect("cpu per TPS").slope,
        0.060,
        0.15,
    );
    within(
        "memory per VU (MiB)",
        m.memory.as_ref().expect("memory").slope / MIB,
        16.0,
        0.15,
    );
    within(
        "base memory (MiB)",
        m.memory.as_ref().unwrap().base / MIB,
        256.0,
        0.15,
    );
}
