//! Serving: the accept loop over HTTP/1.1 keep-alive and HTTP/2 connections (h2c by prior
//! knowledge, or TLS with ALPN), graceful shutdown on a cancellation token (stop accepting, let
//! in-flight requests finish), [`run`] that serves until an injected shutdown future resolves,
//! and [`spawn`] with its [`DemoHandle`] for running a demo target inside a test or another
//! command.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
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
    serve_with(listener, state, None, shutdown).await
}

/// How long a client may take over its TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// [`serve_state`], over TLS when `tls` is given. Each connection speaks HTTP/1.1 or HTTP/2:
/// by ALPN over TLS, by the client's first bytes (the h2c preface) over plain TCP.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<DemoState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
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
        state.conns(|c| c.accepted += 1);
        let st = Arc::clone(&state);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let r = match acceptor {
                None => serve_conn(TokioIo::new(stream), st, watcher).await,
                Some(a) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(stream)).await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            st.conns(|c| c.tls_failed += 1);
                            tracing::debug!(error = %e, "demo-target: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            st.conns(|c| c.tls_failed += 1);
                            return;
                        }
                    };
                    let (_, session) = tls.get_ref();
                    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                    let h2 = session.alpn_protocol() == Some(b"h2");
                    st.conns(|c| {
                        match resumed {
                            true => c.tls_resumed += 1,
                            false => c.tls_full += 1,
                        }
                        c.h2_alpn += u64::from(h2);
                    });
                    serve_conn(TokioIo::new(tls), st, watcher).await
                }
            };
            if let Err(e) = r {
                // Clients resetting mid-request is normal under load; not worth a warning.
                tracing::debug!(error = %e, "demo-target: connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One connection, HTTP/1.1 (keep-alive) or HTTP/2, until the client closes it or a graceful
/// shutdown ends it.
async fn serve_conn<I>(
    io: TokioIo<I>,
    state: Arc<DemoState>,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handlers::handle(Arc::clone(&state), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    watcher.watch(conn).await
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

/// Serves `state` on `listener` (over TLS when `tls` is given) until `shutdown` resolves (the
/// command passes [`crate::shutdown::drain_signal`], a test any future), then stops accepting
/// and waits up to `drain_timeout` for in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: Arc<DemoState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<(), RunError> {
    let cancel = CancellationToken::new();
    let mut server = tokio::spawn(serve_with(listener, state, tls, cancel.clone()));
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
    spawn_tls(cfg, None).await
}

/// [`spawn`], serving TLS when `tls` is given.
pub async fn spawn_tls(
    cfg: DemoTargetConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<(SocketAddr, DemoHandle)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(DemoState::new(cfg)?);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve_with(
        listener,
        Arc::clone(&state),
        tls,
        cancel.clone(),
    ));
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
