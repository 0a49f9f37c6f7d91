//! Shared helpers for the core daemon tests: a real demo-target on 127.0.0.1:0, the daemon run
//! in-process on a 127.0.0.1:0 listener, and a plain HTTP GET. Everything is bounded in time.
#![allow(dead_code)]

pub mod cli;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loadspec::daemon::{DaemonOptions, Finished};
use loadspec::demo_target::{DemoHandle, DemoTargetConfig};
use loadspec::shutdown::SignalEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

/// The config sections a test daemon runs with: it idles after its run (so the test reads
/// /metrics), writes no reports, and settles stages for 200 ms.
pub const IDLE_NO_REPORTS: &str = r#"
[lifecycle]
on_finish = "idle"
[reports]
enabled = false
[analysis]
settle = "200ms"
"#;

/// A tool a test needs: true when `ok`. Under CI=true a missing tool fails the test; elsewhere
/// the test is skipped with a message naming `what`.
pub fn required(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is required under CI=true but is not available"
        );
        eprintln!("skipping: {what} is not available");
    }
    ok
}

/// The seed's S3 request as a `[[scenarios.requests]]` table: multipart with the UTF-8 prompt
/// and `test.png`, optionally with its own bearer token.
pub fn s3_request(bearer: Option<&str>) -> String {
    let bearer = bearer
        .map(|t| format!("bearer_token = \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        r#"
[[scenarios.requests]]
name = "ai-images"
method = "POST"
path = "/api/v1/ai-images"
expect = [200]
{bearer}[scenarios.requests.body]
type = "multipart"
fields = [{{ name = "prompt", value = "미니멀하고 화이톤의 셋업" }}]
files = [{{ name = "beforeImagePath", path = "test.png", filename = "test.png", content_type = "image/png" }}]
"#
    )
}

/// Start demo-target in-process.
pub async fn target(cfg: DemoTargetConfig) -> (SocketAddr, DemoHandle) {
    loadspec::demo_target::spawn(cfg)
        .await
        .expect("demo-target starts")
}

/// The daemon running in-process.
pub struct Daemon {
    pub addr: SocketAddr,
    pub signals: UnboundedSender<SignalEvent>,
    pub handle: JoinHandle<anyhow::Result<Finished>>,
    pub dir: tempfile::TempDir,
}

/// A temp dir holding `examples/test.png`, for configs that upload it.
pub fn dir_with_png() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("test.png");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/test.png"),
        &png,
    )
    .expect("copy png");
    (dir, png)
}

/// Validate `toml` (relative files resolve in `dir`) and start the daemon with `shard`.
pub async fn start_in(toml: &str, dir: tempfile::TempDir, shard: &str) -> Daemon {
    let raw = loadspec::config::parse_raw(toml, "test config").expect("config parses");
    let settings = loadspec::config::validate(raw, dir.path()).expect("config is valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = DaemonOptions {
        shard: shard.parse().expect("shard"),
        listener: Some(listener),
        ..Default::default()
    };
    let handle = tokio::spawn(loadspec::daemon::run(settings, opts, rx));
    Daemon {
        addr,
        signals: tx,
        handle,
        dir,
    }
}

pub async fn start(toml: &str) -> Daemon {
    let (dir, _) = dir_with_png();
    start_in(toml, dir, "0/1").await
}

impl Daemon {
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }

    /// Wait (bounded) until `finished_runs` reaches `n`.
    pub async fn wait_runs(&self, n: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (_, body) = self.get("/api/status").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if v["finished_runs"].as_u64().unwrap_or(0) >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {n} did not finish within {within:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM-equivalent, then the daemon's result.
    pub async fn stop(self) -> Finished {
        let _ = self.signals.send(SignalEvent::Drain);
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("daemon stops within 60 s")
            .expect("daemon task")
            .expect("daemon result")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// GET over a fresh connection; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("GET within 10 s")
}

/// Value of a sample line `name{labels} value` in Prometheus text, labels given as a substring
/// each (all must appear).
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .next()
}

/// The seed's S3 upload as demo-target's multipart parser saw it (`last_multipart`) must be
/// exactly what `s3_request` sends: the fields in order, the UTF-8 prompt, the file's name,
/// type, length and hash, and the bearer token's presence. `what` names the transport.
pub fn assert_seed_upload(
    seen: Option<loadspec::demo_target::MultipartSeen>,
    png: &[u8],
    what: &str,
) {
    let seen = seen.unwrap_or_else(|| panic!("{what}: the server parsed no multipart body"));
    assert_eq!(
        seen.field_names,
        vec!["prompt", "beforeImagePath"],
        "{what}"
    );
    assert_eq!(
        seen.prompt.as_deref(),
        Some("미니멀하고 화이톤의 셋업"),
        "{what}"
    );
    assert_eq!(seen.filename.as_deref(), Some("test.png"), "{what}");
    assert_eq!(seen.content_type.as_deref(), Some("image/png"), "{what}");
    assert_eq!(seen.file_bytes, png.len() as u64, "{what}");
    assert_eq!(
        seen.file_fnv64,
        fnv64(png),
        "{what}: file bytes differ from the file"
    );
    assert!(
        seen.bearer_present,
        "{what}: Authorization header did not arrive"
    );
}

/// FNV-1a 64 of bytes, as demo-target reports uploaded files (hex).
pub fn fnv64(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
