//! Signals: SIGTERM and SIGINT start a graceful drain (no new iterations, in-flight requests
//! finish up to the drain deadline, then the final summary); a second one exits at once.
//! SIGHUP asks for a config reload. Signals arrive as [`SignalEvent`]s on a channel so the
//! daemon decides what they mean; nothing here exits the process except the second signal.
//! Servers that only drain (the demo target) take [`drain_signal`], a future they are handed
//! as their shutdown, as mini-redis's `server::run(listener, shutdown)` is.

use std::future::Future;

use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGTERM or SIGINT, the first time.
    Drain,
    /// SIGHUP.
    Reload,
}

/// Start listening for SIGTERM, SIGINT and SIGHUP. Must be called inside a tokio runtime.
pub fn listen() -> std::io::Result<mpsc::UnboundedReceiver<SignalEvent>> {
    listen_to(&[SIGTERM, SIGINT, SIGHUP])
}

/// A future that resolves at the first SIGTERM or SIGINT (a second one exits with 130).
/// SIGHUP keeps its default action. Must be called inside a tokio runtime.
pub fn drain_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut rx = listen_to(&[SIGTERM, SIGINT])?;
    Ok(async move {
        while let Some(ev) = rx.recv().await {
            if ev == SignalEvent::Drain {
                return;
            }
        }
        // The listener is gone (the runtime is shutting down): never ask for a drain.
        std::future::pending::<()>().await
    })
}

fn listen_to(which: &[i32]) -> std::io::Result<mpsc::UnboundedReceiver<SignalEvent>> {
    let mut signals = Signals::new(which)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut draining = false;
        while let Some(sig) = signals.next().await {
            match sig {
                SIGHUP => {
                    let _ = tx.send(SignalEvent::Reload);
                }
                _ if draining => {
                    // The user asked twice: stop now, skipping the drain.
                    eprintln!("second signal: exiting without draining");
                    std::process::exit(130);
                }
                _ => {
                    draining = true;
                    tracing::info!("signal received: draining (send it again to exit at once)");
                    let _ = tx.send(SignalEvent::Drain);
                }
            }
        }
    });
    Ok(rx)
}
