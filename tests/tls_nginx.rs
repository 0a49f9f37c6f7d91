//! Debian's nginx as an independent peer over TLS (issue 15): nginx runs as this test's own
//! process (no daemon, no master, its own config in a temp dir, 127.0.0.1 only), serving a
//! certificate from a CA made at test time. loadspec sends GETs (answered by nginx) and the
//! seed's S3 upload (passed by nginx to a demo-target, whose multipart parser checks the body)
//! over HTTPS/1.1 and over HTTP/2; every answer is a 200, the counts are exact, and nginx's own
//! access log names the HTTP and TLS protocol of each request: TLS 1.3 where nginx offers it (as
//! servers do today), TLS 1.2 against an nginx that offers nothing newer.
//!
//! Under CI=true a missing nginx fails the test; elsewhere it is skipped with a message.

mod support_core;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use loadspec::demo_target::tls::Pki;
use support_core::*;

/// nginx, killed (by its own pid) when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Access log lines: `PROTOCOL STATUS METHOD URI REQUEST_BYTES TLS_PROTOCOL`.
    fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// How many access-log lines `pred` accepts.
fn count(log: &[String], pred: impl Fn(&str) -> bool) -> usize {
    log.iter().filter(|l| pred(l)).count()
}

fn nginx_available() -> bool {
    let ok = Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    required(ok, "nginx (apt-get install nginx)")
}

/// A free port on 127.0.0.1 (nginx cannot listen on port 0 and report the port).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Start nginx with TLS (HTTP/2 and HTTP/1.1 by ALPN, the TLS versions of `protocols`, as in
/// `ssl_protocols`) and the server certificate of `pki`; it answers `/ping` itself and passes
/// `/api/` to `upstream` over plain HTTP/1.1.
async fn start_nginx(pki: &Pki, upstream: std::net::SocketAddr, protocols: &str) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    pki.server(&["127.0.0.1", "localhost"])
        .unwrap()
        .write(dir.path(), "server")
        .unwrap();
    let port = free_port();
    // `listen ... ssl http2` works on nginx 1.22 (Debian 12) and, deprecated, on later ones.
    let conf = format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format proto '$server_protocol $status $request_method $request_uri $request_length $ssl_protocol';
    access_log {d}/access.log proto;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 8m;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_protocols {protocols};
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        location / {{
            default_type text/plain;
            return 200 "ok\n";
        }}
        location /big.txt {{
            root {d}/www;
        }}
        location /api/ {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    // 4 KiB that a capture would keep: over a 1 KiB `limits.max_capture_body`.
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    std::fs::write(
        dir.path().join("www/big.txt"),
        format!("token=abc{}\n", "x".repeat(4096)),
    )
    .unwrap();
    let child = Command::new("nginx")
        .args(["-p", &d, "-c", &format!("{d}/nginx.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx starts");
    let n = Nginx { child, port, dir };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx did not listen within 10 s: {}",
            std::fs::read_to_string(n.dir.path().join("error.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

fn config(port: u16, version: &str, vus: u64, iterations: u64) -> String {
    format!(
        r#"
[target]
base_url = "https://127.0.0.1:{port}"
timeout = "10s"
http_version = "{version}"
[target.tls]
ca_file = "ca.pem"
{IDLE_NO_REPORTS}
[[scenarios]]
name = "nginx"
executor = "per-vu-iterations"
vus = {vus}
iterations = {iterations}
[[scenarios.requests]]
name = "get"
path = "/ping"
{}"#,
        s3_request(Some("tok"))
    )
}

async fn run_against(n: &Nginx, pki: &Pki, version: &str, vus: u64, iterations: u64) -> String {
    let (dir, _) = dir_with_png();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let d = start_in(&config(n.port, version, vus, iterations), dir, "0/1").await;
    d.wait_runs(1, Duration::from_secs(60)).await;
    let m = d.metrics().await;
    d.stop().await;
    m
}

/// TLS handshakes timed, over both requests.
fn handshakes(m: &str) -> f64 {
    ["get", "ai-images"]
        .iter()
        .filter_map(|r| {
            sample(
                m,
                "loadspec_http_tls_handshake_duration_seconds_count",
                &[&format!("request=\"{r}\"")],
            )
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_over_tls_answers_every_request_on_http1_and_h2() {
    if !nginx_available() {
        return;
    }
    let pki = Pki::new("nginx test CA").unwrap();
    let (upstream, target) = target(loadspec::demo_target::DemoTargetConfig::free()).await;
    let n = start_nginx(&pki, upstream, "TLSv1.2 TLSv1.3").await;
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/test.png")).unwrap();
    let upload_intact = |what: &str| assert_seed_upload(target.stats().last_multipart, &png, what);

    // HTTPS/1.1: 3 VUs × 4 iterations × (GET + upload).
    let m = run_against(&n, &pki, "1.1", 3, 4).await;
    let ok = |m: &str, req: &str| {
        sample(
            m,
            "loadspec_http_requests_total",
            &["code=\"200\"", &format!("request=\"{req}\"")],
        )
    };
    assert_eq!(ok(&m, "get"), Some(12.0), "{m}");
    assert_eq!(ok(&m, "ai-images"), Some(12.0), "{m}");
    assert_eq!(handshakes(&m), 3.0, "one kept-alive connection per VU: {m}");
    upload_intact("HTTPS/1.1");
    let log = n.access_log();
    let h1 = count(&log, |l| l.starts_with("HTTP/1.1 200 "));
    assert_eq!(h1, 24, "{log:?}");
    assert_eq!(log.len(), 24, "nothing but 200s over HTTP/1.1: {log:?}");
    let uploads = count(&log, |l| l.contains(" POST /api/v1/ai-images "));
    assert_eq!(uploads, 12);

    // HTTP/2 by ALPN: 4 VUs sharing one connection × 3 iterations.
    let m = run_against(&n, &pki, "2", 4, 3).await;
    assert_eq!(ok(&m, "get"), Some(12.0), "{m}");
    assert_eq!(ok(&m, "ai-images"), Some(12.0), "{m}");
    assert_eq!(handshakes(&m), 1.0, "one shared connection: {m}");
    let log = n.access_log();
    let h2 = count(&log, |l| l.starts_with("HTTP/2.0 200 "));
    assert_eq!(h2, 24, "{log:?}");
    assert_eq!(log.len(), 48, "{log:?}");
    upload_intact("HTTP/2");
    assert_eq!(
        count(&log, |l| l.ends_with(" TLSv1.3")),
        48,
        "TLS 1.3 when the server offers it: {log:?}"
    );

    // An nginx that offers TLS 1.2 only, over HTTPS/1.1: 2 VUs × 3 iterations.
    let n12 = start_nginx(&pki, upstream, "TLSv1.2").await;
    let m = run_against(&n12, &pki, "1.1", 2, 3).await;
    assert_eq!(ok(&m, "get"), Some(6.0), "{m}");
    assert_eq!(ok(&m, "ai-images"), Some(6.0), "{m}");
    assert_eq!(handshakes(&m), 2.0, "one kept-alive connection per VU: {m}");
    upload_intact("HTTPS/1.1 over TLS 1.2");
    let log = n12.access_log();
    assert_eq!(
        count(&log, |l| l.starts_with("HTTP/1.1 200 ")
            && l.ends_with(" TLSv1.2")),
        12,
        "{log:?}"
    );
    assert_eq!(log.len(), 12, "{log:?}");
    let served = &target.stats().requests["POST /api/v1/ai-images"];
    assert_eq!(
        served.get(&200),
        Some(&30),
        "every upload reached the upstream: {served:?}"
    );
}

/// The capture cap holds over HTTP/2 as over HTTP/1.1: a 4 KiB body with a 1 KiB
/// `limits.max_capture_body` fails its capture with `capture_too_large`; a small one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capture_cap_holds_over_http2() {
    if !nginx_available() {
        return;
    }
    let pki = Pki::new("nginx cap CA").unwrap();
    let (upstream, _target) = target(loadspec::demo_target::DemoTargetConfig::free()).await;
    let n = start_nginx(&pki, upstream, "TLSv1.2 TLSv1.3").await;
    let (dir, _) = dir_with_png();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let cfg = format!(
        r#"
[target]
base_url = "https://127.0.0.1:{port}"
timeout = "10s"
http_version = "2"
[target.tls]
ca_file = "ca.pem"
[limits]
max_capture_body = 1024
{IDLE_NO_REPORTS}
[[scenarios]]
name = "cap"
executor = "per-vu-iterations"
vus = 2
iterations = 3
[[scenarios.requests]]
name = "big"
path = "/big.txt"
captures = [{{ name = "t", regex = "token=([a-z]+)" }}]
[[scenarios.requests]]
name = "small"
path = "/ping"
captures = [{{ name = "o", regex = "(ok)" }}]
"#,
        port = n.port
    );
    let d = start_in(&cfg, dir, "0/1").await;
    d.wait_runs(1, Duration::from_secs(60)).await;
    let m = d.metrics().await;
    d.stop().await;
    let failures = |req: &str| {
        sample(
            &m,
            "loadspec_http_request_failures_total",
            &[
                "reason=\"capture_too_large\"",
                &format!("request=\"{req}\""),
            ],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(failures("big"), 6.0, "{m}");
    assert_eq!(failures("small"), 0.0, "{m}");
    let log = n.access_log();
    assert_eq!(
        count(&log, |l| l.starts_with("HTTP/2.0 200 GET /big.txt")),
        6,
        "the big body was served over HTTP/2 every time: {log:?}"
    );
}
