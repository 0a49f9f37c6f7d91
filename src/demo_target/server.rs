//! Serving: the accept loop over HTTP/1.1 keep-alive connections, graceful shutdown on a
//! cancellation token (stop accepting, let in-flight requests finish), [`run`] that serves
//! until an injected shutdown future resolves, and [`spawn`] with its [`DemoHandle`] for
//! running a demo target inside a test or another command.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::DemoTargetConfig;
use super::handlers;
use super::state::{DemoState, DemoStats};

/// Serves `cfg` on `listener` until `shutdown` is cancelled, then stops accepting and returns
/// once every in-flight request has been answered (idle keep-alive connections are closed).
/// Fails only if the base memory cannot be allocated.
pub async fn serve(
    listener: TcpListener,
    cfg: DemoTargetConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let state = Arc::new(DemoState::new(cfg)?);
    serve_state(listener, state, shutdown).await
}

/// [`serve`] with a state the caller keeps, to read its stats.
pub async fn serve_state(
    listener: TcpListener,
    state: Arc<DemoState>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Usually EMFILE under a connection flood: back off instead of spinning; the
                // connections already open keep being served.
                tracing::warn!(error = %e, "demo-target: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let st = Arc::clone(&state);
        let svc = service_fn(move |req| handlers::handle(Arc::clone(&st), req));
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Clients resetting mid-request is normal under load; not worth a warning.
                tracing::debug!(error = %e, "demo-target: connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Why [`run`] ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("demo-target failed: {0}")]
    Serve(io::Error),
    #[error("demo-target task failed: {0}")]
    Task(tokio::task::JoinError),
    #[error("requests still in flight at the shutdown timeout ({0:?})")]
    DrainTimeout(Duration),
}

/// Serves `state` on `listener` until `shutdown` resolves (the command passes
/// [`crate::shutdown::drain_signal`], a test any future), then stops accepting and waits up to
/// `drain_timeout` for in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: Arc<DemoState>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<(), RunError> {
    let cancel = CancellationToken::new();
    let mut server = tokio::spawn(serve_state(listener, state, cancel.clone()));
    let finished = |r: Result<io::Result<()>, tokio::task::JoinError>| match r {
        Ok(r) => r.map_err(RunError::Serve),
        Err(e) => Err(RunError::Task(e)),
    };
    tokio::select! {
        () = shutdown => tracing::info!("draining in-flight requests"),
        r = &mut server => return finished(r),
    }
    cancel.cancel();
    match tokio::time::timeout(drain_timeout, server).await {
        Ok(r) => finished(r),
        Err(_) => Err(RunError::DrainTimeout(drain_timeout)),
    }
}

/// Starts a demo target on `127.0.0.1:0` in the current runtime; returns its address and a
/// handle that reads its stats and stops it (on [`DemoHandle::shutdown`] or on drop).
pub async fn spawn(cfg: DemoTargetConfig) -> io::Result<(SocketAddr, DemoHandle)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(DemoState::new(cfg)?);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve_state(listener, Arc::clone(&state), cancel.clone()));
    Ok((
        addr,
        DemoHandle {
            state,
            cancel,
            task: Some(task),
        },
    ))
}

/// A running in-process demo target.
pub struct DemoHandle {
    state: Arc<DemoState>,
    cancel: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl DemoHandle {
    /// The shared state (config, counters).
    pub fn state(&self) -> &Arc<DemoState> {
        &self.state
    }

    /// A snapshot of the counters, the same data as `GET /_stats`.
    pub fn stats(&self) -> DemoStats {
        self.state.stats()
    }

    /// Stops accepting and waits until in-flight requests are answered.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.cancel.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for DemoHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl std::fmt::Debug for DemoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoHandle").finish_non_exhaustive()
    }
}
