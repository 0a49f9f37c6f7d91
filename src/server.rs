//! The daemon's HTTP server (hyper): `/metrics` (Prometheus text), `/healthz` (alive),
//! `/readyz` (a plan is loaded and the server is up), `/report` (the current experiment as
//! HTML, refreshing while it runs), `/report.json`, `/report.md`, and `/api/stages` (stage
//! summaries so far, JSON), `/api/status` (`running` or `idle`, and finished runs).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::analysis::{CapacityAnalysis, StageSummary};
use crate::metrics::text::{Expose, CONTENT_TYPE};
use crate::report::RunInfo;

/// The finished (or in-progress) experiment, as /report shows it.
#[derive(Default)]
pub struct ReportView {
    pub run: RunInfo,
    /// Set once the experiment has ended; until then /report is built from live stages.
    pub analysis: Option<CapacityAnalysis>,
    pub stages: Vec<StageSummary>,
    /// Builds the interim analysis from live stages with this run's SLA, prices and analysis
    /// settings (a reload can change them between runs).
    pub analyze: Option<Analyzer>,
}

/// Shared between the server and the daemon.
pub struct AppState {
    /// The process collector and the model gauges.
    pub registry: Registry,
    /// Families written straight to the text format (load, SLA, containers).
    pub exposers: Vec<Arc<dyn Expose>>,
    /// Size of the last `/metrics` body, to allocate the next one at once.
    pub last_metrics_len: std::sync::atomic::AtomicUsize,
    /// `/metrics` bodies built since start: `lifecycle.exit_grace` waits for one more.
    pub scrapes: std::sync::atomic::AtomicU64,
    pub ready: AtomicBool,
    /// True while an experiment runs; false while idle.
    pub running: AtomicBool,
    /// Experiments finished since start.
    pub runs: std::sync::atomic::AtomicU64,
    pub live: Arc<Mutex<Vec<StageSummary>>>,
    pub report: RwLock<ReportView>,
}

/// Turns live stage summaries into an interim analysis.
pub type Analyzer = Box<dyn Fn(&[StageSummary]) -> CapacityAnalysis + Send + Sync>;

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

impl AppState {
    fn current(&self) -> (RunInfo, Vec<StageSummary>, CapacityAnalysis, bool) {
        let view = self.report.read().unwrap_or_else(|e| e.into_inner());
        match &view.analysis {
            Some(a) => (view.run.clone(), view.stages.clone(), a.clone(), true),
            None => {
                let stages = self.live.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let a = match &view.analyze {
                    Some(f) => f(&stages),
                    None => crate::analysis::analyze(
                        &stages,
                        &Default::default(),
                        &Default::default(),
                        &Default::default(),
                    ),
                };
                (view.run.clone(), stages, a, false)
            }
        }
    }

    /// The `/metrics` body: the direct families, then the registry's.
    fn metrics_text(&self) -> prometheus::Result<Vec<u8>> {
        let want = self.last_metrics_len.load(Ordering::Relaxed);
        let mut buf = Vec::with_capacity(want + want / 8 + 4096);
        crate::metrics::text::encode(&self.exposers, &self.registry, &mut buf)?;
        self.last_metrics_len.store(buf.len(), Ordering::Relaxed);
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        Ok(buf)
    }

    fn route(&self, req: &Request<Incoming>) -> Resp {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        }
        match req.uri().path() {
            "/metrics" => match self.metrics_text() {
                Ok(buf) => text(StatusCode::OK, CONTENT_TYPE, buf),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            },
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => {
                if self.ready.load(Ordering::Relaxed) {
                    text(StatusCode::OK, "text/plain", "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n")
                }
            }
            "/report" | "/" => {
                let (run, stages, a, done) = self.current();
                let mut html = crate::report::render_html(&run, &stages, &a);
                if !done {
                    // Refresh while the experiment runs, so the page is a live view.
                    html = html.replacen(
                        "<head>",
                        "<head><meta http-equiv=\"refresh\" content=\"5\">",
                        1,
                    );
                }
                text(StatusCode::OK, "text/html; charset=utf-8", html)
            }
            "/report.json" => {
                let (run, stages, a, _) = self.current();
                text(
                    StatusCode::OK,
                    "application/json",
                    crate::report::render_json(&run, &stages, &a),
                )
            }
            "/report.md" => {
                let (run, stages, a, _) = self.current();
                text(
                    StatusCode::OK,
                    "text/markdown; charset=utf-8",
                    crate::report::render_markdown(&run, &stages, &a),
                )
            }
            "/api/status" => text(
                StatusCode::OK,
                "application/json",
                serde_json::json!({
                    "state": if self.running.load(Ordering::Relaxed) { "running" } else { "idle" },
                    "finished_runs": self.runs.load(Ordering::Relaxed),
                })
                .to_string(),
            ),
            "/api/stages" => {
                let stages = self.live.lock().unwrap_or_else(|e| e.into_inner()).clone();
                text(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_string(&stages).unwrap_or_else(|_| "[]".into()),
                )
            }
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}

/// Bind the listen address; the error names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (server.listen): {e}"),
        )
    })
}

/// The server's own ceilings (`[server]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
}

impl ServerLimits {
    pub fn from_config(c: &crate::config::raw::ServerConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            header_read_timeout: c.header_read_timeout,
            idle_timeout: c.idle_timeout,
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::from_config(&Default::default())
    }
}

/// Serve on a thread of its own, with its own single-threaded runtime, until `shutdown`.
///
/// Why not a task on the daemon's runtime: at full load every worker is busy with VUs, and a
/// scrape queued behind them waited several milliseconds for a turn (bench/run exporter).
/// On its own thread the kernel schedules a scrape as soon as it arrives, so `/metrics` and
/// `/healthz` answer in the time their work takes, and the load only loses that time.
pub fn spawn_server_thread(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // A tokio listener belongs to the runtime that made it: hand the socket over as std.
    let std_listener = listener.into_std()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("loadspec-http".into())
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(l) => serve(l, state, limits, shutdown).await,
                    Err(e) => tracing::error!(error = %e, "the HTTP server cannot start"),
                }
            })
        })
}

/// The open connections, oldest first, each with the token that closes it.
#[derive(Default)]
struct Open {
    next_id: u64,
    conns: std::collections::VecDeque<(u64, CancellationToken)>,
}

impl Open {
    /// Register a new connection; at the cap, close the oldest to make room. The newest
    /// connection is the one most likely to be a scrape that is about to send its request;
    /// one that has been open longest is most likely idle or hostile.
    fn admit(&mut self, cap: usize) -> (u64, CancellationToken) {
        while self.conns.len() >= cap {
            match self.conns.pop_front() {
                Some((_, kill)) => kill.cancel(),
                None => break,
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let kill = CancellationToken::new();
        self.conns.push_back((id, kill.clone()));
        (id, kill)
    }

    fn remove(&mut self, id: u64) {
        self.conns.retain(|(i, _)| *i != id);
    }
}

/// Serve until `shutdown`; open keep-alive connections are closed gracefully. Every
/// connection has a header-read timeout and an idle timeout, and at most
/// `max_connections` are open (docs/reliability.md).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let open: Arc<Mutex<Open>> = Arc::default();
    let started = tokio::time::Instant::now();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and the like: the descriptors come back as connections close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let (id, kill) = open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(limits.max_connections);
        let (state, shutdown, open) = (state.clone(), shutdown.clone(), open.clone());
        tokio::spawn(async move {
            // Milliseconds since `started` of the last request seen, for the idle timeout.
            let last = Arc::new(std::sync::atomic::AtomicU64::new(
                started.elapsed().as_millis() as u64,
            ));
            let seen = last.clone();
            let svc = service_fn(move |req| {
                let state = state.clone();
                seen.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                async move { Ok::<_, Infallible>(state.route(&req)) }
            });
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let idle = limits.idle_timeout;
            loop {
                let since =
                    started + std::time::Duration::from_millis(last.load(Ordering::Relaxed));
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = tokio::time::sleep_until(since + idle) => {
                        if started.elapsed() >= std::time::Duration::from_millis(last.load(Ordering::Relaxed)) + idle {
                            break;
                        }
                    }
                    _ = kill.cancelled() => break,
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn.as_mut()).await;
                        break;
                    }
                }
            }
            open.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        });
    }
}
