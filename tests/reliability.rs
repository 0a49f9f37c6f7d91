//! Reliability (issue 11): no config, target or client can freeze, crash or exhaust loadspec,
//! and every request is counted. Config checks run the real binary (`loadspec validate` exits
//! 2 naming the field); load checks run the daemon against servers written here on
//! 127.0.0.1:0 that misbehave on purpose. Every loop is bounded in count and time.

mod support_containers;
mod support_core;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support_core::cli::*;

/// `loadspec validate` on `cfg` with `envs`, killed after 20 s (a FIFO once blocked it
/// forever): (exit code, stderr).
fn validate(cfg: &Path, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["validate", "--config"])
        .arg(cfg)
        .current_dir(cfg.parent().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
            return (out.status.code(), text);
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "still running after 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// (what, config text, the field and the reason the error must name)
fn bad_configs(dir: &Path) -> Vec<(&'static str, String, &'static str, &'static str)> {
    let g = GOOD.to_string();
    let fifo = dir.join("rows.csv");
    mkfifo(&fifo);
    let data = |file: &str| {
        g.replace(
            "[[scenarios.requests]]",
            &format!("[scenarios.data]\nfile = \"{file}\"\n[[scenarios.requests]]"),
        )
    };
    let multipart = |file: &str| {
        g.replace(
            "path = \"/x\"",
            &format!(
                "path = \"/x\"\nmethod = \"POST\"\n[scenarios.requests.body]\ntype = \"multipart\"\nfiles = [{{ name = \"f\", path = \"{file}\" }}]"
            ),
        )
    };
    let ca_file = |file: &str| {
        g.replace(
            "[target]",
            &format!("[target.tls]\nca_file = \"{file}\"\n[target]"),
        )
    };
    vec![
        (
            "a 500000000000-year stage",
            g.replace("executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"", "executor = \"ramping-vus\"\nstages = [{ duration = \"500000000000y\", target = 1 }]"),
            "scenarios[0].stages[0].duration",
            "at most 366 days",
        ),
        (
            "u64::MAX seconds",
            g.replace("duration = \"1s\"", "duration = \"18446744073709551615s\""),
            "scenarios[0].duration",
            "at most 366 days",
        ),
        (
            "a start offset of 400 days",
            g.replace("vus = 1", "vus = 1\nstart = \"400d\""),
            "scenarios[0].start",
            "at most 366 days",
        ),
        (
            "a drain timeout of 1000 years",
            format!("[lifecycle]\ndrain_timeout = \"1000y\"\n{g}"),
            "lifecycle.drain_timeout",
            "at most 366 days",
        ),
        (
            "2^32 VUs",
            g.replace("vus = 1", "vus = 4294967296"),
            "scenarios[0].vus",
            "at most limits.max_vus (10000)",
        ),
        (
            "a ramp to 20000 VUs",
            g.replace("executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"", "executor = \"ramping-vus\"\nstages = [{ duration = \"1s\", target = 20000 }]"),
            "scenarios[0].stages[0].target",
            "at most limits.max_vus",
        ),
        (
            "a lowered VU ceiling",
            format!("[limits]\nmax_vus = 5\n{}", g.replace("vus = 1", "vus = 6")),
            "scenarios[0].vus",
            "at most limits.max_vus (5)",
        ),
        (
            "a sweep beyond the ceiling",
            format!("[experiment]\nmode = \"sweep\"\n[experiment.sweep]\nvus = [1, 20000]\n{g}"),
            "experiment.sweep.vus[1]",
            "at most limits.max_vus",
        ),
        (
            "a space in the base URL",
            g.replace("http://127.0.0.1:9", "http://127.0.0.1:9/a b"),
            "scenarios[0].requests[0].path",
            "cannot be sent",
        ),
        (
            "a static header with a line break",
            g.replace("[[scenarios]]", "[target.headers]\nX-A = \"a\\r\\nb\"\n[[scenarios]]"),
            "target.headers.X-A",
            "not a valid header value",
        ),
        (
            "userinfo and a bearer token",
            g.replace("http://127.0.0.1:9", "http://u:pw@127.0.0.1:9").replace("[target]", "[target]\nbearer_token = \"abcd\""),
            "scenarios[0].requests[0].path",
            "give one of them",
        ),
        (
            "a data file at /dev/zero",
            data("/dev/zero"),
            "scenarios[0].data.file",
            "is not a regular file (it is a character device)",
        ),
        (
            "a data file that is a FIFO",
            data(fifo.to_str().unwrap()),
            "scenarios[0].data.file",
            "is not a regular file (it is a FIFO)",
        ),
        (
            "a multipart file at /dev/zero",
            multipart("/dev/zero"),
            "scenarios[0].requests[0].body.files[0].path",
            "character device",
        ),
        (
            "a multipart file that is a FIFO",
            multipart(fifo.to_str().unwrap()),
            "scenarios[0].requests[0].body.files[0].path",
            "FIFO",
        ),
        (
            "a ca_file that is a FIFO",
            ca_file(fifo.to_str().unwrap()),
            "target.tls.ca_file",
            "is not a regular file (it is a FIFO)",
        ),
        (
            "a ca_file at /dev/zero",
            ca_file("/dev/zero"),
            "target.tls.ca_file",
            "is not a regular file (it is a character device)",
        ),
        (
            "an integer of 2^63",
            g.replace("vus = 1", "vus = 9223372036854775808"),
            "line 7, column 7",
            "number too large",
        ),
        (
            "deep nesting",
            format!("{g}\n[target.headers]\nX = {}1{}\n", "[".repeat(300), "]".repeat(300)),
            "line 14, column",
            "recursion limit",
        ),
        (
            "a bad limit",
            format!("[limits]\nmax_response_headers = 2\n{g}"),
            "limits.max_response_headers",
            "between 16 and 8192",
        ),
    ]
}

#[test]
fn invalid_configs_exit_2_naming_the_field_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    for (what, text, field, reason) in bad_configs(dir.path()) {
        let cfg = write(dir.path(), "bad.toml", &text);
        let (code, err) = validate(&cfg, &[]);
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(
            err.contains(field) && err.contains(reason),
            "{what}: the error should name {field:?} and {reason:?}:\n{err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    // The ceiling is configurable, and a good config still passes.
    let raised = format!(
        "[limits]\nmax_vus = 20000\n{}",
        GOOD.replace("vus = 1", "vus = 15000")
    );
    let (code, err) = validate(&write(dir.path(), "ok.toml", &raised), &[]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn config_files_that_are_not_regular_or_not_utf8_are_refused_with_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = validate(Path::new("/dev/zero"), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("character device"), "{err}");
    let fifo = dir.path().join("cfg.toml");
    mkfifo(&fifo);
    let (code, err) = validate(&fifo, &[]);
    assert_eq!(code, Some(2), "a FIFO config: {err}");
    assert!(err.contains("FIFO"), "{err}");
    let big = write(
        dir.path(),
        "big.toml",
        &format!("# {}\n{GOOD}", "x".repeat(2 << 20)),
    );
    let (code, err) = validate(&big, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("limit of 1048576 bytes"), "{err}");
    let utf = dir.path().join("utf.toml");
    let mut bytes = GOOD.as_bytes().to_vec();
    let at = GOOD.find("/x").unwrap() + 1;
    bytes.insert(at, 0xff);
    std::fs::write(&utf, bytes).unwrap();
    let (code, err) = validate(&utf, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("offset {at} (line 11, column 10)")),
        "{err}"
    );
}

#[test]
fn the_token_is_redacted_from_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "tok-SECRET-5e1d7";
    let text = GOOD
        .replace(
            "path = \"/x\"",
            "url = \"http://127.0.0.1:9/a b?api_key=${LOADSPEC_TOKEN}\"",
        )
        .replace(
            "http://127.0.0.1:9\"\n[[",
            "http://u:${LOADSPEC_TOKEN}@127.0.0.1:9\"\n[[",
        )
        .replace("vus = 1", "vus = 0");
    let cfg = write(dir.path(), "tok.toml", &text);
    let (code, err) = validate(&cfg, &[("LOADSPEC_TOKEN", secret)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("scenarios[0].requests[0].url"), "{err}");
    assert!(err.contains("<redacted>"), "{err}");
    assert!(!err.contains(secret), "the token leaked:\n{err}");
}

// ---------------------------------------------------------------------------------------
// Load side: hostile servers on 127.0.0.1:0, the daemon in-process or as the real binary.
// ---------------------------------------------------------------------------------------

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use support_core::{http_get, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A keep-alive HTTP/1.1 server that answers every request (head read up to its blank line,
/// a `Content-Length` body skipped) with `answer(head)`, after `delay`. It counts the requests
/// it received and keeps the last head; it stops accepting after `for_at_most`.
struct Server {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    last_head: Arc<std::sync::Mutex<String>>,
}

async fn server(
    delay: Duration,
    for_at_most: Duration,
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    server_on(l, delay, for_at_most, answer)
}

fn server_on(
    l: TcpListener,
    delay: Duration,
    for_at_most: Duration,
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> Server {
    let addr = l.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let last_head = Arc::new(std::sync::Mutex::new(String::new()));
    let answer = Arc::new(answer);
    let (r, h) = (received.clone(), last_head.clone());
    tokio::spawn(async move {
        let end = tokio::time::Instant::now() + for_at_most;
        while let Ok(Ok((mut s, _))) = tokio::time::timeout_at(end, l.accept()).await {
            let (r, h, answer) = (r.clone(), h.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = vec![0u8; 64 * 1024];
                loop {
                    let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match tokio::time::timeout_at(end, s.read(&mut b)).await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&b[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..p]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < p + 4 + len {
                        match s.read(&mut b).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&b[..n]),
                            _ => return,
                        }
                    }
                    buf.drain(..p + 4 + len);
                    r.fetch_add(1, Ordering::Relaxed);
                    *h.lock().unwrap() = head.clone();
                    tokio::time::sleep(delay).await;
                    if s.write_all(&answer(&head)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Server {
        addr,
        received,
        last_head,
    }
}

fn ok_with_headers(lines: usize, body: &[u8]) -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..lines {
        r.extend_from_slice(format!("X-H{i}: v{i}\r\n").as_bytes());
    }
    r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

/// A plan of `vus` constant VUs for `duration` against `base`, with extra top-level TOML and
/// extra lines in the request table.
fn load_plan(base: SocketAddr, vus: u64, duration: &str, top: &str, req: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[target]
base_url = "http://{base}"
timeout = "20s"
[reports]
enabled = false
[analysis]
settle = "100ms"
{top}
[[scenarios]]
name = "s"
executor = "constant-vus"
vus = {vus}
duration = "{duration}"
[[scenarios.requests]]
name = "r"
path = "/x"
{req}
"#
    )
}

/// Sum of `loadspec_http_request_failures_total{reason=...}` over steps.
fn failures(m: &str, reason: &str) -> f64 {
    m.lines()
        .filter(|l| l.starts_with("loadspec_http_request_failures_total{"))
        .filter(|l| l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sum of responses with a status code.
fn responses(m: &str, code: &str) -> f64 {
    m.lines()
        .filter(|l| l.starts_with("loadspec_http_requests_total{"))
        .filter(|l| l.contains(&format!("code=\"{code}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn run_to_end(toml: &str, within: Duration) -> String {
    let (dir, _) = support_core::dir_with_png();
    run_in(toml, dir, within).await
}

async fn run_in(toml: &str, dir: tempfile::TempDir, within: Duration) -> String {
    let d = support_core::start_in(toml, dir, "0/1").await;
    d.wait_runs(1, within).await;
    let m = d.metrics().await;
    d.stop().await;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_of_101_lines_is_a_response_and_an_oversized_head_is_header_too_large() {
    let s = server(Duration::ZERO, Duration::from_secs(30), |head| {
        if head.starts_with("GET /x") {
            ok_with_headers(101, b"ok")
        } else if head.starts_with("GET /many") {
            ok_with_headers(300, b"ok")
        } else {
            // One 70 KiB header: over the 64 KiB head limit.
            let mut r = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            r.extend(std::iter::repeat_n(b'a', 70 * 1024));
            r.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
            r
        }
    })
    .await;
    let req = "[[scenarios.requests]]\nname = \"many\"\npath = \"/many\"\n[[scenarios.requests]]\nname = \"big\"\npath = \"/big\"";
    let plan = load_plan(s.addr, 1, "1s", "", req)
        .replace("vus = 1\nduration = \"1s\"", "executor_placeholder")
        .replace(
            "executor = \"constant-vus\"\nexecutor_placeholder",
            "executor = \"per-vu-iterations\"\nvus = 1\niterations = 3",
        );
    let m = run_to_end(&plan, Duration::from_secs(30)).await;
    let ok = sample(
        &m,
        "loadspec_http_requests_total",
        &["request=\"r\"", "code=\"200\""],
    );
    assert_eq!(ok, Some(3.0), "101 header lines are a 200:\n{m}");
    assert_eq!(failures(&m, "body"), 0.0, "{m}");
    assert_eq!(
        failures(&m, "header_too_large"),
        6.0,
        "300 lines and 70 KiB:\n{m}"
    );
    // Both limits are configurable.
    let raised = plan.replace(
        "[analysis]",
        "[limits]\nmax_response_headers = 512\nmax_response_head = \"128KiB\"\n[analysis]",
    );
    let m = run_to_end(&raised, Duration::from_secs(30)).await;
    assert_eq!(responses(&m, "200"), 9.0, "{m}");
    assert_eq!(failures(&m, "header_too_large"), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_keeps_at_most_the_cap_and_fails_with_a_reason_above_it() {
    // 3 MiB bodies, the token at the end.
    let s = server(Duration::ZERO, Duration::from_secs(30), |_| {
        let mut body = vec![b'.'; 3 << 20];
        body.extend_from_slice(b"token=abc123;");
        ok_with_headers(0, &body)
    })
    .await;
    let req = "captures = [{ name = \"t\", regex = \"token=([a-z0-9]+)\" }]";
    let plan = load_plan(s.addr, 1, "1s", "", req).replace(
        "executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"",
        "executor = \"per-vu-iterations\"\nvus = 2\niterations = 2",
    );
    let m = run_to_end(&plan, Duration::from_secs(30)).await;
    assert_eq!(failures(&m, "capture_too_large"), 4.0, "{m}");
    assert_eq!(
        sample(&m, "loadspec_checks_total", &["result=\"pass\""]),
        Some(0.0),
        "{m}"
    );
    let raised = plan.replace(
        "[analysis]",
        "[limits]\nmax_capture_body = \"4MiB\"\n[analysis]",
    );
    let m = run_to_end(&raised, Duration::from_secs(30)).await;
    assert_eq!(failures(&m, "capture_too_large"), 0.0, "{m}");
    assert_eq!(
        sample(&m, "loadspec_checks_total", &["result=\"pass\""]),
        Some(4.0),
        "{m}"
    );
    // Every byte was read and counted, kept or not.
    assert!(
        sample(&m, "loadspec_data_received_bytes_total", &[]).unwrap_or(0.0)
            > 4.0 * (3 << 20) as f64,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cut_at_the_drain_deadline_are_counted_as_interrupted() {
    let s = server(Duration::from_secs(10), Duration::from_secs(30), |_| {
        ok_with_headers(0, b"")
    })
    .await;
    let plan = load_plan(s.addr, 10, "60s", "[lifecycle]\ndrain_timeout = \"2s\"", "");
    let (dir, _) = support_core::dir_with_png();
    let d = support_core::start_in(&plan, dir, "0/1").await;
    let t = Instant::now();
    while s.received.load(Ordering::Relaxed) < 10 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the 10 requests did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = d.addr;
    let stop = Instant::now();
    let fin = d.stop().await;
    assert!(
        stop.elapsed() < Duration::from_secs(2 + 1 + 3),
        "took {:?} to stop with drain_timeout = 2s",
        stop.elapsed()
    );
    let _ = addr;
    let (outcome, _) = fin.last.expect("a finished run");
    let counted: u64 = outcome.totals.iter().map(|t| t.requests).sum();
    let interrupted: u64 = outcome
        .totals
        .iter()
        .map(|t| t.status.get("interrupted").copied().unwrap_or(0))
        .sum();
    assert_eq!(interrupted, 10, "{:?}", outcome.totals);
    assert_eq!(
        counted,
        s.received.load(Ordering::Relaxed),
        "loadspec's total equals the server's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_renders_invalid_counts_invalid_request_and_the_vu_backs_off() {
    let s = server(Duration::ZERO, Duration::from_secs(30), |_| {
        ok_with_headers(0, b"ok")
    })
    .await;
    let (dir, _) = support_core::dir_with_png();
    // VU 0 gets the bad row (a line break for a header, a space for the URL), VU 1 the good.
    std::fs::write(dir.path().join("rows.csv"), "h,p\n\"a\r\nb\",a b\nok,ok\n").unwrap();
    let plan = load_plan(
        s.addr,
        2,
        "3s",
        "",
        "headers = { X-V = \"${h}\" }\n[[scenarios.requests]]\nname = \"p\"\npath = \"/x/${p}\"",
    )
    .replace(
        "[[scenarios.requests]]\nname = \"r\"",
        "[scenarios.data]\nfile = \"rows.csv\"\nmode = \"per-vu\"\n[[scenarios.requests]]\nname = \"r\"",
    );
    let d = support_core::start_in(&plan, dir, "0/1").await;
    // The daemon answers while the bad VU fails (it used to spin and starve every worker).
    let t = Instant::now();
    let (code, _) = d.get("/api/status").await;
    assert_eq!(code, 200);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    d.wait_runs(1, Duration::from_secs(30)).await;
    let m = d.metrics().await;
    d.stop().await;
    let invalid = failures(&m, "invalid_request");
    // Two failing steps per iteration, a pause doubling from 10 ms to 1 s after each: about
    // ten in 3 s. Without the backoff it was millions.
    assert!(
        (2.0..=40.0).contains(&invalid),
        "invalid_request = {invalid}:\n{m}"
    );
    // The good VU was not starved: its requests went out.
    assert!(responses(&m, "200") >= 10.0, "{m}");
    assert_eq!(
        s.received.load(Ordering::Relaxed) as f64,
        responses(&m, "200")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_goes_out_as_basic_auth_never_in_host() {
    let s = server(Duration::ZERO, Duration::from_secs(30), |_| {
        ok_with_headers(0, b"")
    })
    .await;
    let plan = load_plan(s.addr, 1, "1s", "", "")
        .replace("http://127.0.0.1", "http://user:p%40ss@127.0.0.1")
        .replace(
            "executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"",
            "executor = \"per-vu-iterations\"\nvus = 1\niterations = 1",
        );
    let m = run_to_end(&plan, Duration::from_secs(30)).await;
    assert_eq!(responses(&m, "200"), 1.0, "{m}");
    let head = s.last_head.lock().unwrap().to_ascii_lowercase();
    use base64::Engine as _;
    let want = base64::engine::general_purpose::STANDARD.encode("user:p@ss");
    let lines: Vec<&str> = head.lines().collect();
    assert!(
        lines.contains(&format!("host: {}", s.addr).as_str()),
        "{head}"
    );
    assert!(
        lines.contains(&format!("authorization: basic {}", want.to_ascii_lowercase()).as_str()),
        "{head}"
    );
    assert!(!head.contains("user:"), "{head}");
}

/// The `n` counts of `needle` in `text`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_costs_little_warns_once_down_and_once_back_and_sends_no_data() {
    // A port with nothing listening yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = load_plan(port, 5, "4s", "[lifecycle]\non_finish = \"idle\"", "");
    let cfg = write(dir.path(), "run.toml", &plan);
    let mut p = spawn_run(&cfg, &[]);
    p.wait_log("target is down", Duration::from_secs(20));
    // The target comes up after 1.5 s of the run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = server_on(
        TcpListener::bind(port).await.unwrap(),
        Duration::ZERO,
        Duration::from_secs(30),
        |_| ok_with_headers(0, b"ok"),
    );
    p.wait_log("idling", Duration::from_secs(30));
    let (_, m) = http_get(p.metrics, "/metrics").await;
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0));
    let log = p.log();
    assert_eq!(count(&log, "target is down"), 1, "{log}");
    assert_eq!(count(&log, "target is back"), 1, "{log}");
    let connect = failures(&m, "connect");
    // 5 VUs, each pausing 10 ms, 20 ms, ... up to 1 s between tries: a few dozen in the dead
    // stretch, where it used to be tens of thousands a second.
    assert!(
        (5.0..=150.0).contains(&connect),
        "connect = {connect}:\n{m}"
    );
    let ok = responses(&m, "200");
    assert!(ok > 0.0, "{m}");
    assert_eq!(s.received.load(Ordering::Relaxed) as f64, ok);
    // data_sent counts what was written: the successful requests' heads only.
    let sent = sample(&m, "loadspec_data_sent_bytes_total", &[]).unwrap_or(-1.0);
    let head_len = {
        let h = s.last_head.lock().unwrap();
        h.len() as f64 + 4.0
    };
    assert_eq!(sent, ok * head_len, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_fd_limit_with_a_warning_and_the_daemon_stays_responsive() {
    let s = server(Duration::ZERO, Duration::from_secs(60), |_| {
        ok_with_headers(0, b"ok")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let plan = load_plan(
        s.addr,
        500,
        "60s",
        "[lifecycle]\ndrain_timeout = \"2s\"",
        "",
    );
    let cfg = write(dir.path(), "run.toml", &plan);
    let mut p = spawn_run_with(&cfg, &[], Some(256));
    p.wait_log("file-descriptor limit is lower", Duration::from_secs(20));
    p.wait_log("out of file descriptors", Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    let (code, _) = http_get(p.metrics, "/api/status").await;
    assert_eq!(code, 200);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let (_, m) = http_get(p.metrics, "/metrics").await;
    let fd = failures(&m, "fd_limit");
    assert!(fd > 0.0, "{m}");
    // Each failing VU backs off: a few thousand, not 50,000 a second.
    assert!(fd < 20_000.0, "fd_limit = {fd}");
    assert!(
        responses(&m, "200") > 0.0,
        "the VUs within the budget load the target"
    );
    let stop = Instant::now();
    p.signal(libc::SIGTERM);
    let code = p.wait_exit(Duration::from_secs(30));
    assert!(
        stop.elapsed() < Duration::from_secs(2 + 1 + 3),
        "stopping took {:?} (drain_timeout = 2s)",
        stop.elapsed()
    );
    assert_eq!(code, Some(0), "{}", p.log());
}

/// Raise this test process's own descriptor limit (for thousands of client sockets).
fn raise_own_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on structs we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(1 << 16);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slowloris_connections_neither_lock_out_metrics_nor_fail_the_load() {
    raise_own_nofile();
    let s = server(Duration::ZERO, Duration::from_secs(60), |_| {
        ok_with_headers(0, b"ok")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let plan = load_plan(s.addr, 20, "60s", "[lifecycle]\ndrain_timeout = \"2s\"", "");
    let cfg = write(dir.path(), "run.toml", &plan);
    let mut p = spawn_run_with(&cfg, &[], Some(512));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, before) = http_get(p.metrics, "/metrics").await;
    let mut held = Vec::new();
    for _ in 0..2000 {
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(p.metrics),
        )
        .await
        {
            Ok(Ok(mut c)) => {
                let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
                held.push(c);
            }
            _ => break,
        }
    }
    assert!(held.len() >= 1000, "only {} connections opened", held.len());
    let t = Instant::now();
    let (code, after) = http_get(p.metrics, "/metrics").await;
    assert_eq!(
        code,
        200,
        "/metrics answers with {} slowloris connections open",
        held.len()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let errors = |m: &str| {
        ["connect", "fd_limit", "io", "timeout"]
            .iter()
            .map(|r| failures(m, r))
            .sum::<f64>()
    };
    assert_eq!(errors(&before), 0.0);
    assert_eq!(
        errors(&after),
        0.0,
        "the load's error ratio changed:\n{after}"
    );
    assert!(responses(&after, "200") > responses(&before, "200"));
    drop(held);
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_task_exits_non_zero_with_the_panic_logged() {
    let s = server(Duration::ZERO, Duration::from_secs(30), |_| {
        ok_with_headers(0, b"ok")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "run.toml", &load_plan(s.addr, 1, "30s", "", ""));
    let mut p = spawn_run(&cfg, &[("LOADSPEC_DEBUG_PANIC_IN_TASK", "1")]);
    assert_eq!(
        p.wait_exit(Duration::from_secs(20)),
        Some(70),
        "{}",
        p.log()
    );
    let log = p.log();
    assert!(log.contains("a task panicked"), "{log}");
    assert!(log.contains("LOADSPEC_DEBUG_PANIC_IN_TASK"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_does_not_log_the_token() {
    let s = server(Duration::ZERO, Duration::from_secs(30), |_| {
        ok_with_headers(0, b"ok")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "tok-RELOAD-91b2";
    let good = load_plan(s.addr, 1, "1s", "[lifecycle]\non_finish = \"idle\"", "");
    let cfg = write(dir.path(), "run.toml", &good);
    let mut p = spawn_run(&cfg, &[("LOADSPEC_TOKEN", secret)]);
    p.wait_log("idling", Duration::from_secs(20));
    p.reload(
        &cfg,
        &good.replace("path = \"/x\"", "path = \"/a b?api_key=${LOADSPEC_TOKEN}\""),
        "config reload failed",
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0));
    let log = p.log();
    assert!(log.contains("<redacted>"), "{log}");
    assert!(!log.contains(secret), "the token leaked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_during_a_sweep_puts_the_original_limits_back() {
    use support_containers::{docker_available, ensure_image, wait_healthy, Container};
    if !docker_available() {
        return;
    }
    ensure_image();
    // Requests take 20 s, so the first SIGTERM's drain is still waiting when the second comes.
    let c = Container::demo("sigterm2", &["--cpus=1.5", "--memory=768m"], &[]);
    let addr = c.addr();
    wait_healthy(addr, Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "run.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
[target]
base_url = "http://{addr}"
timeout = "60s"
[lifecycle]
drain_timeout = "60s"
[reports]
enabled = false
[containers]
source = "docker"
names = ["{name}"]
groups = {{ "{name}" = "ai" }}
interval = "500ms"
[experiment]
mode = "sweep"
[experiment.sweep]
vus = [2]
stage_duration = "60s"
group = "ai"
spec = {{ cpus = 0.5, memory = "512MiB" }}
[[scenarios]]
name = "s"
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.requests]]
name = "r"
path = "/api/v1/status/200?delay_ms=20000"
"#,
            name = c.name
        ),
    );
    let mut p = spawn_run(&cfg, &[]);
    p.wait_log("limits set", Duration::from_secs(30));
    assert_eq!(c.inspect("{{.HostConfig.NanoCpus}}"), "500000000");
    // Let the VUs' requests go out, then SIGTERM twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.signal(libc::SIGTERM);
    p.wait_log("draining", Duration::from_secs(10));
    p.signal(libc::SIGTERM);
    assert_eq!(
        p.wait_exit(Duration::from_secs(20)),
        Some(130),
        "{}",
        p.log()
    );
    assert!(
        p.log().contains("original limits restored on exit"),
        "{}",
        p.log()
    );
    assert_eq!(
        c.inspect("{{.HostConfig.NanoCpus}}"),
        "1500000000",
        "{}",
        p.log()
    );
    assert_eq!(
        c.inspect("{{.HostConfig.Memory}}"),
        (768u64 << 20).to_string()
    );
}
