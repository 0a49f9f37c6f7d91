//! Request phases and resends (issue 12), against raw TCP servers on 127.0.0.1:0 that make
//! each phase long on purpose:
//! - a connect held ~1 s (the listen queue is full, so the kernel drops the SYN and the client
//!   sends it again after its 1 s retransmission timeout) shows in
//!   `loadspec_http_connect_duration_seconds` and not in
//!   `loadspec_http_request_duration_seconds`;
//! - a response whose head comes after 150 ms and whose body after another 150 ms gives
//!   `loadspec_http_waiting_seconds` ≈ 150 ms and a duration ≈ 300 ms;
//! - a server that closes every kept-alive connection once idle makes each later request a
//!   counted resend (`loadspec_http_retries_total`), and a POST whose response had started
//!   is never sent again.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loadspec::load::executor::{self, Stop};
use loadspec::load::plan::Shard;
use loadspec::load::vu::ScenarioCtx;
use loadspec::metrics::text::Expose;
use loadspec::metrics::LoadMetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RUN_LIMIT: Duration = Duration::from_secs(20);

/// Run one per-vu-iterations scenario (`vus` × `iterations`, one `method` request to `url`)
/// and return the exposition text.
async fn run(url: &str, method: &str, vus: u64, iterations: u64, think: &str) -> String {
    let toml = format!(
        "[[scenarios]]\nname = \"t\"\nexecutor = \"per-vu-iterations\"\nvus = {vus}\niterations = {iterations}\nthink_time = \"{think}\"\n[[scenarios.requests]]\nname = \"r\"\nmethod = \"{method}\"\nurl = \"{url}\"\ntimeout = \"5s\"\n"
    );
    let raw = loadspec::config::parse_raw(&toml, "t.toml").expect("parses");
    let settings = loadspec::config::validate(raw, Path::new(".")).expect("valid");
    let metrics = LoadMetrics::new(&settings.raw.metrics.buckets);
    let ctx = ScenarioCtx::new(settings.scenarios[0].clone(), &metrics);
    let t0 = tokio::time::Instant::now();
    tokio::time::timeout(
        RUN_LIMIT,
        executor::run(ctx, Shard::default(), Stop::default(), t0),
    )
    .await
    .expect("the run ends within its bound");
    let mut buf = Vec::new();
    loadspec::metrics::text::encode(&[&metrics as &dyn Expose], &metrics.registry, &mut buf)
        .expect("encode");
    String::from_utf8(buf).expect("UTF-8")
}

/// The value of the one sample line starting with `series` (name and labels as written).
fn sample(text: &str, series: &str) -> f64 {
    let hits: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(s, _)| s.starts_with(series))
        .map(|(_, v)| v.parse().expect("number"))
        .collect();
    assert_eq!(hits.len(), 1, "one sample of {series}:\n{text}");
    hits[0]
}

fn hist(text: &str, name: &str, what: &str) -> f64 {
    sample(
        text,
        &format!("{name}_{what}{{scenario=\"t\",request=\"r\"}}"),
    )
}

/// Read one request head (and nothing after it: the tests send no bodies).
async fn read_request(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    true
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_connect_is_reported_apart_from_the_request_duration() {
    // Backlog 1: two unaccepted connections fill the accept queue, so the VU's SYN is dropped
    // and retransmitted after ~1 s; by then the blockers are accepted and the queue is free.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener = sock.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut blockers = Vec::new();
    for _ in 0..2 {
        blockers.push(TcpStream::connect(addr).await.expect("blocker connects"));
    }
    let server = tokio::spawn(async move {
        // Well before the resend at ~1 s, and long enough that the VU's first SYN, sent as
        // the run starts, finds the queue full even on a slow machine.
        tokio::time::sleep(Duration::from_millis(600)).await;
        while let Ok((mut s, _)) = listener.accept().await {
            // The blockers send nothing; the VU's request is answered.
            tokio::spawn(async move {
                if read_request(&mut s).await {
                    let _ = s.write_all(OK).await;
                }
            });
        }
    });
    let text = run(&format!("http://{addr}/x"), "GET", 1, 1, "0s").await;
    server.abort();
    drop(blockers);
    assert_eq!(
        hist(&text, "loadspec_http_connect_duration_seconds", "count"),
        1.0
    );
    let connect = hist(&text, "loadspec_http_connect_duration_seconds", "sum");
    let duration = hist(&text, "loadspec_http_request_duration_seconds", "sum");
    assert!(
        connect > 0.8,
        "the connect waited for the SYN resend: {connect}"
    );
    assert!(
        duration < 0.3,
        "the duration excludes the connect: {duration}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_is_time_to_first_byte_and_the_duration_includes_receiving() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                while read_request(&mut s).await {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
                        .await;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let _ = s.write_all(b"cd").await;
                }
            });
        }
    });
    let text = run(&format!("http://{addr}/x"), "GET", 1, 3, "0s").await;
    // One connect for three requests on one kept-alive connection.
    assert_eq!(
        hist(&text, "loadspec_http_connect_duration_seconds", "count"),
        1.0
    );
    assert_eq!(hist(&text, "loadspec_http_waiting_seconds", "count"), 3.0);
    let waiting = hist(&text, "loadspec_http_waiting_seconds", "sum") / 3.0;
    let duration = hist(&text, "loadspec_http_request_duration_seconds", "sum") / 3.0;
    // 0.15 s and 0.3 s each. The bounds leave room for a stall of the machine and still
    // catch waiting taken at the body's end (0.3 s) or a duration without the body (0.15 s).
    assert!((0.14..0.29).contains(&waiting), "waiting {waiting}");
    assert!((0.29..0.6).contains(&duration), "duration {duration}");
}

/// A server that answers each request on a connection, then closes that connection 20 ms
/// later while it idles; `partial_second` answers the second request of a connection with
/// only the status line before closing. Counts the requests it read.
async fn closing_server(partial_second: bool) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while read_request(&mut s).await {
                    seen.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                    if partial_second && n == 2 {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
                        return;
                    }
                    let _ = s.write_all(OK).await;
                    if !partial_second {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resend_on_a_closed_kept_alive_connection_is_counted() {
    let (addr, seen) = closing_server(false).await;
    // 5 iterations 100 ms apart: requests 2-5 find their connection closed and go again.
    let text = run(&format!("http://{addr}/x"), "GET", 1, 5, "100ms").await;
    assert_eq!(
        sample(
            &text,
            "loadspec_http_retries_total{scenario=\"t\",request=\"r\"}"
        ),
        4.0
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        5,
        "each request reached the server once"
    );
    assert_eq!(
        hist(&text, "loadspec_http_connect_duration_seconds", "count"),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "loadspec_checks_total{scenario=\"t\",request=\"r\",result=\"pass\"}"
        ),
        5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_response_started_is_never_sent_again() {
    let (addr, seen) = closing_server(true).await;
    // The second POST gets a status line, then the connection closes: it fails, once.
    let text = run(&format!("http://{addr}/x"), "POST", 1, 2, "0s").await;
    assert_eq!(seen.load(Ordering::SeqCst), 2, "no POST was sent twice");
    assert_eq!(
        sample(
            &text,
            "loadspec_http_retries_total{scenario=\"t\",request=\"r\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "loadspec_http_request_failures_total{scenario=\"t\",request=\"r\",reason=\"io\"}"
        ),
        1.0
    );
}
