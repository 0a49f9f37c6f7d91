//! HTTPS targets (issue 15) against a real demo-target serving TLS on 127.0.0.1:0, with
//! certificates made at test time by a throw-away CA (no committed keys): the seed's S3 request
//! arrives byte-identical, connections are reused and sessions resumed, and every TLS failure
//! (unknown CA, wrong name, missing client certificate) is counted as reason `tls` exactly and
//! logged once in plain words. Every run is bounded.

mod support_core;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use loadspec::demo_target::tls::{self_signed, server_config, Issued, Pki};
use loadspec::demo_target::{DemoHandle, DemoTargetConfig};
use support_core::*;

/// Every log line of this test binary (the daemon runs in-process).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(b.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines that contain `needle`.
fn log_lines(needle: &str) -> Vec<String> {
    let buf = logs();
    let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// demo-target over TLS with `server`'s certificate; `client_ca` makes it require client
/// certificates.
async fn tls_target(
    server: &Issued,
    client_ca: Option<&str>,
) -> (std::net::SocketAddr, DemoHandle) {
    let cfg = server_config(
        server.cert_pem.as_bytes(),
        server.key_pem.as_bytes(),
        client_ca.map(str::as_bytes),
    )
    .expect("server TLS config");
    loadspec::demo_target::spawn_tls(DemoTargetConfig::free(), Some(cfg))
        .await
        .expect("demo-target starts")
}

/// A config against `https://{addr}` with `[target.tls]` lines `tls`, one scenario of `vus`
/// VUs × `iterations` iterations of `request`.
fn config(
    addr: std::net::SocketAddr,
    tls: &str,
    vus: u64,
    iterations: u64,
    request: &str,
) -> String {
    format!(
        r#"
[target]
base_url = "https://{addr}"
timeout = "10s"
[target.tls]
{tls}
{IDLE_NO_REPORTS}
[[scenarios]]
name = "tls"
executor = "per-vu-iterations"
vus = {vus}
iterations = {iterations}
{request}
"#
    )
}

const GET: &str = r#"
[[scenarios.requests]]
name = "get"
path = "/api/v1/status/200"
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// demo-target over TLS with a certificate for 127.0.0.1 from a new CA, and a temp dir whose
/// `ca.pem` is that CA.
async fn trusted_target() -> (std::net::SocketAddr, DemoHandle, tempfile::TempDir) {
    let pki = Pki::new("test CA").unwrap();
    let (addr, target) = tls_target(&pki.server(&["127.0.0.1"]).unwrap(), None).await;
    (addr, target, ca_dir(&pki.ca_pem))
}

/// A temp dir with `test.png` and `ca.pem` (the CA the config's `ca_file` names).
fn ca_dir(ca_pem: &str) -> tempfile::TempDir {
    let (dir, _) = dir_with_png();
    write(dir.path(), "ca.pem", ca_pem);
    dir
}

/// Run `cfg` (files in `dir`) to its end; returns the /metrics text.
async fn run(cfg: &str, dir: tempfile::TempDir) -> String {
    let d = start_in(cfg, dir, "0/1").await;
    d.wait_runs(1, Duration::from_secs(60)).await;
    let m = d.metrics().await;
    d.stop().await;
    m
}

fn failures(m: &str, reason: &str) -> f64 {
    sample(
        m,
        "loadspec_http_request_failures_total",
        &[&format!("reason=\"{reason}\"")],
    )
    .unwrap_or(-1.0)
}

/// TLS handshakes timed (None: no handshake series, none was made).
fn handshakes(m: &str) -> Option<f64> {
    sample(m, "loadspec_http_tls_handshake_duration_seconds_count", &[])
}

fn ok_count(m: &str) -> f64 {
    sample(m, "loadspec_http_requests_total", &["code=\"200\""]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_request_over_https_arrives_intact_on_reused_connections() {
    let (addr, target, dir) = trusted_target().await;
    let png_path = dir.path().join("test.png");
    let cfg = config(
        addr,
        "ca_file = \"ca.pem\"",
        2,
        5,
        &s3_request(Some("tok-abc")),
    );
    let png = std::fs::read(png_path).unwrap();
    let m = run(&cfg, dir).await;
    let stats = target.stats();
    assert_seed_upload(stats.last_multipart.clone(), &png, "HTTPS/1.1");
    assert_eq!(
        stats.requests["POST /api/v1/ai-images"].get(&200),
        Some(&10)
    );
    assert_eq!(ok_count(&m), 10.0, "{m}");
    // One connection per VU, kept alive: two handshakes for ten requests.
    assert_eq!(stats.connections.accepted, 2, "{:?}", stats.connections);
    assert_eq!(
        stats.connections.tls_full + stats.connections.tls_resumed,
        2
    );
    assert_eq!(
        stats.connections.requests_by_version.get("HTTP/1.1"),
        Some(&10)
    );
    let hs = sample(
        &m,
        "loadspec_http_tls_handshake_duration_seconds_count",
        &[],
    );
    assert_eq!(hs, Some(2.0), "one handshake per connection");
    let durations = sample(&m, "loadspec_http_request_duration_seconds_count", &[]);
    assert_eq!(durations, Some(10.0));
    assert_eq!(failures(&m, "tls"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resume_the_tls_session() {
    let (addr, target, dir) = trusted_target().await;
    // `Connection: close` makes every request open a new connection.
    let req = format!("{GET}headers = {{ connection = \"close\" }}\n");
    let m = run(&config(addr, "ca_file = \"ca.pem\"", 1, 4, &req), dir).await;
    let c = target.stats().connections;
    assert_eq!(ok_count(&m), 4.0, "{m}");
    assert_eq!(c.accepted, 4, "{c:?}");
    assert_eq!(
        (c.tls_full, c.tls_resumed),
        (1, 3),
        "later handshakes resume: {c:?}"
    );
    let hs = sample(
        &m,
        "loadspec_http_tls_handshake_duration_seconds_count",
        &[],
    );
    assert_eq!(hs, Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_fails_as_tls_unless_trusted() {
    let _ = logs();
    let cert = self_signed(&["127.0.0.1"]).unwrap();
    let (addr, target) = tls_target(&cert, None).await;
    // Not trusted: every request fails with reason tls, none reaches the server.
    let m = run(&config(addr, "", 2, 3, GET), dir_with_png().0).await;
    assert_eq!(failures(&m, "tls"), 6.0, "{m}");
    assert_eq!(failures(&m, "connect"), 0.0);
    assert_eq!(ok_count(&m), 0.0);
    assert_eq!(
        handshakes(&m),
        None,
        "failed handshakes are not timed (the series is made at the first handshake)"
    );
    let stats = target.stats();
    assert_eq!(stats.connections.tls_failed, 6, "{:?}", stats.connections);
    assert!(stats.requests.is_empty(), "{:?}", stats.requests);
    let lines = log_lines("certificate of 127.0.0.1 is not signed by a trusted CA");
    assert_eq!(lines.len(), 1, "one line per distinct cause: {lines:?}");
    // Trusted through ca_file: the same requests pass.
    let m = run(
        &config(addr, "ca_file = \"ca.pem\"", 2, 3, GET),
        ca_dir(&cert.cert_pem),
    )
    .await;
    assert_eq!(ok_count(&m), 6.0, "{m}");
    assert_eq!(failures(&m, "tls"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_fails_as_tls() {
    let _ = logs();
    let pki = Pki::new("test CA").unwrap();
    let (addr, target) = tls_target(&pki.expired_server(&["127.0.0.1"]).unwrap(), None).await;
    let m = run(
        &config(addr, "ca_file = \"ca.pem\"", 1, 2, GET),
        ca_dir(&pki.ca_pem),
    )
    .await;
    assert_eq!(failures(&m, "tls"), 2.0, "{m}");
    assert_eq!(ok_count(&m), 0.0);
    assert!(target.stats().requests.is_empty());
    assert_eq!(log_lines("certificate of 127.0.0.1 has expired").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_passes_and_says_so() {
    let _ = logs();
    let (addr, _target) = tls_target(&self_signed(&["localhost"]).unwrap(), None).await;
    let (dir, _) = dir_with_png();
    let d = start_in(
        &config(addr, "insecure_skip_verify = true", 1, 3, GET),
        dir,
        "0/1",
    )
    .await;
    d.wait_runs(1, Duration::from_secs(60)).await;
    let m = d.metrics().await;
    let (_, report) = d.get("/report").await;
    d.stop().await;
    assert_eq!(ok_count(&m), 3.0, "{m}");
    assert_eq!(failures(&m, "tls"), 0.0);
    assert!(
        !log_lines("insecure_skip_verify is on").is_empty(),
        "the log warns"
    );
    assert!(
        report.contains("insecure_skip_verify"),
        "the report warns: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_server_name_fails_as_tls() {
    let _ = logs();
    let pki = Pki::new("test CA").unwrap();
    let (addr, target) = tls_target(&pki.server(&["127.0.0.1", "localhost"]).unwrap(), None).await;
    let dir = ca_dir(&pki.ca_pem);
    let tls = "ca_file = \"ca.pem\"\nserver_name = \"api.example\"";
    let m = run(&config(addr, tls, 1, 3, GET), dir).await;
    assert_eq!(failures(&m, "tls"), 3.0, "{m}");
    assert_eq!(ok_count(&m), 0.0);
    assert!(target.stats().requests.is_empty());
    let lines = log_lines("certificate for 127.0.0.1, localhost is not valid for api.example");
    assert_eq!(lines.len(), 1, "{lines:?}");
    // The right override passes.
    let dir = ca_dir(&pki.ca_pem);
    let tls = "ca_file = \"ca.pem\"\nserver_name = \"localhost\"";
    let m = run(&config(addr, tls, 1, 3, GET), dir).await;
    assert_eq!(ok_count(&m), 3.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_passes_only_with_the_client_certificate() {
    let _ = logs();
    let pki = Pki::new("test CA").unwrap();
    let clients = Pki::new("client CA").unwrap();
    let server = pki.server(&["127.0.0.1"]).unwrap();
    let (addr, target) = tls_target(&server, Some(&clients.ca_pem)).await;
    // Without a client certificate the server refuses: reason tls, counted exactly.
    let dir = ca_dir(&pki.ca_pem);
    let m = run(&config(addr, "ca_file = \"ca.pem\"", 2, 2, GET), dir).await;
    assert_eq!(failures(&m, "tls"), 4.0, "{m}");
    assert_eq!(ok_count(&m), 0.0);
    assert!(target.stats().requests.is_empty());
    assert_eq!(
        log_lines("127.0.0.1 requires a client certificate").len(),
        1,
        "{:?}",
        log_lines("TLS failure")
    );
    // With it, all pass.
    let dir = ca_dir(&pki.ca_pem);
    clients
        .client("loadspec")
        .unwrap()
        .write(dir.path(), "client")
        .unwrap();
    let tls = "ca_file = \"ca.pem\"\nclient_cert = \"client.pem\"\nclient_key = \"client.key\"";
    let m = run(&config(addr, tls, 2, 2, GET), dir).await;
    assert_eq!(ok_count(&m), 4.0, "{m}");
    assert_eq!(failures(&m, "tls"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_against_an_https_target() {
    let (addr, target, dir) = trusted_target().await;
    let cfg = format!(
        r#"
[target]
base_url = "https://{addr}"
[target.tls]
ca_file = "ca.pem"
{IDLE_NO_REPORTS}
[experiment]
mode = "sweep"
[experiment.sweep]
vus = [1, 2]
stage_duration = "1s"
stop_on_break = false
[[scenarios]]
name = "tls"
executor = "constant-vus"
vus = 1
duration = "1s"
{GET}"#
    );
    let d = start_in(&cfg, dir, "0/1").await;
    d.wait_runs(1, Duration::from_secs(60)).await;
    let m = d.metrics().await;
    let (outcome, _) = d.stop().await.last.expect("a finished sweep");
    assert_eq!(outcome.stages.len(), 2, "{:?}", outcome.notes);
    let served = target.stats().requests["GET /api/v1/status/{code}"][&200];
    assert!(served > 0);
    assert_eq!(
        ok_count(&m),
        served as f64,
        "every response counted, none failed"
    );
    assert_eq!(failures(&m, "tls"), 0.0);
    // Two VUs at most: at most two connections and handshakes.
    assert!(
        target.stats().connections.accepted <= 3,
        "{:?}",
        target.stats().connections
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_h2_the_vus_share_connections_and_the_upload_arrives_intact() {
    let (addr, target, dir) = trusted_target().await;
    let png_path = dir.path().join("test.png");
    let png = std::fs::read(png_path).unwrap();
    let cfg = config(
        addr,
        "ca_file = \"ca.pem\"",
        8,
        3,
        &s3_request(Some("tok-abc")),
    )
    .replace(
        "timeout = \"10s\"",
        "timeout = \"10s\"\nhttp_version = \"2\"\nhttp2_connections = 2",
    );
    let m = run(&cfg, dir).await;
    let stats = target.stats();
    assert_seed_upload(stats.last_multipart.clone(), &png, "HTTP/2");
    assert_eq!(ok_count(&m), 24.0, "{m}");
    let c = &stats.connections;
    // 8 VUs on 2 connections: 24 streams.
    assert_eq!((c.accepted, c.h2_alpn), (2, 2), "{c:?}");
    assert_eq!(c.requests_by_version.get("HTTP/2.0"), Some(&24), "{c:?}");
    assert_eq!(c.requests_by_version.get("HTTP/1.1"), None);
    let hs = sample(
        &m,
        "loadspec_http_tls_handshake_duration_seconds_count",
        &[],
    );
    assert_eq!(hs, Some(2.0), "one handshake per shared connection");
    assert_eq!(
        sample(&m, "loadspec_http_request_duration_seconds_count", &[]),
        Some(24.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_over_plain_http() {
    let (addr, target) = target(DemoTargetConfig::free()).await;
    let cfg = config(addr, "", 4, 3, GET)
        .replace("https://", "http://")
        .replace(
            "timeout = \"10s\"",
            "timeout = \"10s\"\nhttp_version = \"2\"",
        );
    let m = run(&cfg, tempfile::tempdir().unwrap()).await;
    let c = target.stats().connections;
    assert_eq!(ok_count(&m), 12.0, "{m}");
    assert_eq!(c.accepted, 1, "one connection by default: {c:?}");
    assert_eq!(c.requests_by_version.get("HTTP/2.0"), Some(&12), "{c:?}");
    assert_eq!(handshakes(&m), None, "no TLS, no handshake series");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_h2_by_alpn_fails_as_tls() {
    let _ = logs();
    let pki = Pki::new("test CA").unwrap();
    let server = pki.server(&["127.0.0.1"]).unwrap();
    let cfg = server_config(server.cert_pem.as_bytes(), server.key_pem.as_bytes(), None).unwrap();
    let mut only_h1 = (*cfg).clone();
    only_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (addr, target) =
        loadspec::demo_target::spawn_tls(DemoTargetConfig::free(), Some(Arc::new(only_h1)))
            .await
            .unwrap();
    let dir = ca_dir(&pki.ca_pem);
    let cfg = config(addr, "ca_file = \"ca.pem\"", 1, 3, GET).replace(
        "timeout = \"10s\"",
        "timeout = \"10s\"\nhttp_version = \"2\"",
    );
    let m = run(&cfg, dir).await;
    assert_eq!(failures(&m, "tls"), 3.0, "{m}");
    assert_eq!(ok_count(&m), 0.0);
    assert!(target.stats().requests.is_empty());
    // rustls refuses the handshake when no protocol overlaps (a server without ALPN support
    // would complete it, and the client then refuses: "did not agree to HTTP/2 by ALPN").
    let lines = log_lines("127.0.0.1 accepts none of the offered application protocols by ALPN");
    assert_eq!(lines.len(), 1, "{:?}", log_lines("TLS failure"));
}

#[test]
fn loadspec_demo_tls_runs_the_sweep_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadspec"))
        .args(["demo", "--tls", "--vus", "1", "--stage-duration", "2s"])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cpu-ms",
            "1",
            "--delay-ms",
            "1",
        ])
        .arg("--reports")
        .arg(dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("against demo-target at https://127.0.0.1:"),
        "{stdout}"
    );
    let status = stdout
        .lines()
        .find(|l| l.contains("status......"))
        .expect("a status line");
    assert!(status.contains("200="), "{status}");
    assert!(!status.contains("tls="), "{status}");
    assert!(!stderr.contains("TLS failure"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_is_timed_apart_from_the_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new("test CA").unwrap();
    let server = pki.server(&["127.0.0.1"]).unwrap();
    let cfg = server_config(server.cert_pem.as_bytes(), server.key_pem.as_bytes(), None).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // A server slow to handshake (600 ms) and quick to answer.
    let srv = tokio::spawn(async move {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), l.accept())
            .await
            .expect("a connection")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut s = acceptor.accept(tcp).await.expect("handshake");
        let mut req = Vec::new();
        let mut b = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "closed before the request");
            req.extend_from_slice(&b[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        s.flush().await.unwrap();
        // Hold the connection until the client drops it.
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read(&mut b)).await;
    });
    let m = run(
        &config(addr, "ca_file = \"ca.pem\"", 1, 1, GET),
        ca_dir(&pki.ca_pem),
    )
    .await;
    srv.abort();
    assert_eq!(ok_count(&m), 1.0, "{m}");
    let hs = sample(&m, "loadspec_http_tls_handshake_duration_seconds_sum", &[]).unwrap();
    let req = sample(&m, "loadspec_http_request_duration_seconds_sum", &[]).unwrap();
    assert!(hs >= 0.6, "the handshake took the server's 600 ms: {hs}");
    assert!(
        req < 0.3,
        "the request duration leaves the handshake out: {req}"
    );
}
