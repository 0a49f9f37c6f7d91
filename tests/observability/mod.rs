//! Helpers shared by the tests that prove the Prometheus and Grafana assets against real
//! components (`tests/prometheus_e2e.rs`, `tests/compose.rs`): deciding whether a missing tool
//! skips or fails, free loopback ports, a minimal Prometheus HTTP API client, reading the
//! repository's rules and dashboards, and killing child processes on every exit path.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root, where prometheus/, grafana/ and the compose files live.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a missing real component must fail the test (CI) or may skip it (a laptop).
pub fn require(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required when CI=true");
    }
    eprintln!("SKIP: {what} is not available (set CI=true to make this a failure)");
    false
}

/// A port that was free a moment ago. Only for programs that cannot report the port they
/// bound themselves (Prometheus, and loadspec's `[server] listen`).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Kills and reaps a child process when dropped, so a failing assertion never leaks one.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `loadspec demo-target` on a free loopback port and returns it with its address,
/// read from the `listening on ADDR` line it prints on stdout.
pub fn start_demo_target(extra: &[&str]) -> (ChildGuard, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadspec"))
        .args(["demo-target", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn loadspec demo-target");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = ChildGuard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("demo-target printed `listening on ADDR` within 20 s");
    (guard, addr.parse().expect("demo-target address"))
}

/// One HTTP/1.0 GET on loopback; returns the status and the body. Enough for Prometheus'
/// API, and keeps the tests free of a client stack.
pub fn http_get(addr: &str, path_and_query: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// A Prometheus server's HTTP API.
pub struct Prom {
    pub addr: String,
}

/// One sample of an instant query: its labels (without `__name__`) and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

impl Prom {
    /// Instant query. Err carries Prometheus' own error text (a bad expression, for example).
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let (code, body) = http_get(&self.addr, &format!("/api/v1/query?query={q}"))
            .map_err(|e| format!("GET /api/v1/query: {e}"))?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {code}, body is not JSON ({e}): {body}"))?;
        if v["status"] != "success" {
            return Err(format!("HTTP {code}: {}", v["error"]));
        }
        let data = &v["data"];
        let result = match data["resultType"].as_str() {
            Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
            Some("scalar") => vec![serde_json::json!({"metric": {}, "value": data["result"]})],
            other => return Err(format!("unexpected result type {other:?}")),
        };
        Ok(result
            .iter()
            .map(|r| {
                let mut labels = r["metric"].as_object().cloned().unwrap_or_default();
                labels.remove("__name__");
                // Prometheus sends values as strings: "NaN", "+Inf" included.
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                Sample { labels, value }
            })
            .collect())
    }

    /// GET an API path and return its `data`, or None while Prometheus is not answering.
    pub fn get_data(&self, path: &str) -> Option<Value> {
        let (code, body) = http_get(&self.addr, path).ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["status"] == "success").then(|| v["data"].clone())
    }

    /// Waits until `/-/ready` answers 200.
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if matches!(http_get(&self.addr, "/-/ready"), Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus at {} not ready within {within:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Names of every `record:` in the given rules files, in file order.
pub fn recorded_names(files: &[&Path]) -> Vec<String> {
    let mut names = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for line in text.lines() {
            if let Some(n) = line.trim().strip_prefix("- record:") {
                let n = n.trim().to_string();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    names
}

/// Every dashboard JSON under grafana/dashboards, with its file name.
pub fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("grafana/dashboards");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&p).expect("read dashboard");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", p.display()));
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// Every panel of a dashboard, including panels nested in rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        for p in v.as_array().into_iter().flatten() {
            if p["type"] == "row" {
                walk(&p["panels"], out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Runs a command to completion and returns stdout, panicking with stderr on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Start Debian's Prometheus with `config` (YAML text), its data and log under `dir`, on a free
/// loopback port, and wait until it is ready. The guard stops it.
pub fn start_prometheus(config: &str, dir: &Path) -> (ChildGuard, Prom) {
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let port = free_port();
    let guard = ChildGuard(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("prometheus.log")).expect("prometheus.log"),
            ))
            .spawn()
            .expect("spawn prometheus"),
    );
    let prom = Prom {
        addr: format!("127.0.0.1:{port}"),
    };
    prom.wait_ready(Duration::from_secs(30));
    (guard, prom)
}
