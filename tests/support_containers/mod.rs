//! Shared helpers of the container tests: the Docker gate (fail under CI=true, skip otherwise),
//! the local image, containers that remove themselves, a bounded HTTP load loop against a
//! container the test made, and waiting on sampler snapshots.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use loadspec::containers::{ContainerSample, Snapshot, SnapshotRx};

/// The demo-target image the tests run: `LOADSPEC_DEMO_IMAGE`, as `scripts/build-image.sh` reads
/// it, so that several checkouts on one machine can each test their own binary.
pub fn demo_image() -> String {
    std::env::var("LOADSPEC_DEMO_IMAGE").unwrap_or_else(|_| "loadspec-demo-target:local".into())
}

/// True when the Docker engine answers. Under CI=true a missing engine fails the test.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Docker engine is required under CI=true but does not answer"
        );
        eprintln!("skipping: the Docker engine does not answer");
    }
    ok
}

/// Build (or confirm) the local images from the binary cargo built for these tests.
pub fn ensure_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-image.sh");
        let out = Command::new(script)
            .arg(env!("CARGO_BIN_EXE_loadspec"))
            .output()
            .expect("scripts/build-image.sh runs");
        assert!(
            out.status.success(),
            "build-image.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Run `docker` with `args`, returning trimmed stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container this test made; removed (with force) when dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d` a demo-target container with `docker_args` before the image and
    /// `demo_args` after it. The name is unique and the container labelled `loadspec.test=1`.
    pub fn demo(tag: &str, docker_args: &[&str], demo_args: &[&str]) -> Self {
        let name = format!("loadspec-test-{tag}-{:08x}", rand::random::<u32>());
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "loadspec.test=1",
            "-p",
            "127.0.0.1::8080",
        ];
        args.extend_from_slice(docker_args);
        let image = demo_image();
        args.push(&image);
        args.extend_from_slice(demo_args);
        docker(&args);
        Container { name }
    }

    /// The published port of 8080 on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        let out = docker(&["port", &self.name, "8080/tcp"]);
        let line = out
            .lines()
            .find(|l| l.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no 127.0.0.1 port for {}: {out}", self.name));
        line.parse().expect("host:port")
    }

    pub fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.name])
    }

    /// CPU seconds the container's main process has used (every thread, user and system, and
    /// its reaped children's, of which demo-target has none), from the host's `/proc/PID/stat`
    /// read with the process source's parser: the kernel's own count, not the Docker stats API
    /// that loadspec reads. demo-target is the only process in its container.
    pub fn process_cpu_seconds(&self) -> f64 {
        let pid = self.inspect("{{.State.Pid}}");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/stat of {}: {e}", self.name));
        let ticks = loadspec::containers::process::parse_stat(&stat)
            .unwrap_or_else(|| panic!("/proc/{pid}/stat parses: {stat}"))
            .ticks;
        ticks as f64 / loadspec::containers::host::clock_ticks_per_second()
    }

    /// What the container wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .expect("docker logs runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

/// Wait until `addr` answers /healthz (at most `within`).
pub async fn wait_healthy(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    let client = client();
    loop {
        let uri = format!("http://{addr}/healthz");
        let req = hyper::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), client.request(req)).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{addr} not healthy within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// demo-target's `GET /_stats` (its own counts of what it served).
pub async fn demo_stats(addr: SocketAddr) -> serde_json::Value {
    let req = hyper::Request::get(format!("http://{addr}/_stats"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), client().request(req))
        .await
        .expect("/_stats answers within 10 s")
        .expect("GET /_stats");
    assert!(r.status().is_success(), "GET /_stats: {}", r.status());
    let body = r
        .into_body()
        .collect()
        .await
        .expect("/_stats body")
        .to_bytes();
    serde_json::from_slice(&body).expect("/_stats is JSON")
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// Bounded CPU-bound load: `concurrency` loops of S2 requests (`POST /api/v1/ai-images/prompt`)
/// to `addr` until `duration` passes or `max_requests` were sent. Returns the 200 count.
pub async fn load(
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
    max_requests: usize,
) -> usize {
    let deadline = Instant::now() + duration;
    let sent = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let client = client();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (sent, ok, client) = (sent.clone(), ok.clone(), client.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline
                    && sent.fetch_add(1, Ordering::Relaxed) < max_requests
                {
                    let req =
                        hyper::Request::post(format!("http://{addr}/api/v1/ai-images/prompt"))
                            .header("authorization", "Bearer test-token")
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(b"{\"prompt\":\"a cat\"}")))
                            .unwrap();
                    let left = deadline.saturating_duration_since(Instant::now());
                    let timeout = left.min(Duration::from_secs(10)) + Duration::from_secs(1);
                    match tokio::time::timeout(timeout, client.request(req)).await {
                        Ok(Ok(resp)) => {
                            let status = resp.status();
                            let _ = resp.into_body().collect().await;
                            if status.is_success() {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // A failed request is fine here (e.g. a restarting container); back off.
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    ok.load(Ordering::Relaxed)
}

/// The next snapshot for which `pred` holds, waiting at most `within`.
pub async fn wait_for(
    rx: &mut SnapshotRx,
    within: Duration,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let snap = rx.borrow_and_update().clone();
        if pred(&snap) {
            return snap;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("sampler stopped while waiting for {what}; last: {snap:#?}"),
            Err(_) => panic!("no snapshot with {what} within {within:?}; last: {snap:#?}"),
        }
    }
}

/// The sample named `name` in `snap`.
pub fn find<'a>(snap: &'a Snapshot, name: &str) -> Option<&'a ContainerSample> {
    snap.containers.iter().find(|c| c.name == name)
}

/// Whether `actual` is within `tolerance` (a fraction) of `expected`.
pub fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance * expected.abs()
}

/// `ramping-vus` step stages named T1…Tn, `secs` each, with these VU targets, as the items of a
/// TOML array (`stages = [{}]`).
pub fn step_stages(vus: &[u64], secs: u64) -> String {
    vus.iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                r#"{{ duration = "{secs}s", target = {v}, name = "T{}" }}"#,
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The seed's S2 request (a JSON prompt to demo-target) as a plan's `[[scenarios.requests]]`
/// table; it follows the scenario it belongs to.
pub fn s2_prompt_request(prompt: &str) -> String {
    format!(
        r#"[[scenarios.requests]]
name = "ai-prompt"
method = "POST"
path = "/api/v1/ai-images/prompt"
expect = [200]
body = {{ type = "json", json = {{ prompt = "{prompt}" }} }}
"#
    )
}

/// The one run directory a test's `[reports] dir` holds (a second run would be a bug), and its
/// `report.json` parsed.
pub fn only_report(dir: &std::path::Path) -> (std::path::PathBuf, serde_json::Value) {
    let runs: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let text = std::fs::read_to_string(runs[0].join("report.json")).expect("report.json");
    let json = serde_json::from_str(&text).expect("report.json parses");
    (runs[0].clone(), json)
}
