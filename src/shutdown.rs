//! Signals: SIGTERM and SIGINT start a graceful drain (no new iterations, in-flight requests
//! finish up to the drain deadline, then the final summary); a second one exits at once.
//! SIGHUP asks for a config reload. Signals arrive as [`SignalEvent`]s on a channel so the
//! daemon decides what they mean; nothing here exits the process except the second signal
//! and the drain watchdog, and both put back container limits a sweep or search changed.
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

/// What runs before the process exits from here (the caller's clean-up: the daemon puts back
/// container limits a sweep or search changed). Set once with [`before_exit`]; a leaf module
/// cannot name that clean-up itself.
static BEFORE_EXIT: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Run `f` before this module exits the process (a second signal, the drain watchdog).
pub fn before_exit(f: fn()) {
    let _ = BEFORE_EXIT.set(f);
}

/// Run the clean-up, then exit with `code`. The clean-up runs on a thread of its own: it may
/// need a runtime, and the caller may be inside one.
fn exit_restoring(code: i32) -> ! {
    if let Some(f) = BEFORE_EXIT.get().copied() {
        let _ = std::thread::spawn(f).join();
    }
    std::process::exit(code)
}

/// Start listening for SIGTERM, SIGINT and SIGHUP. Must be called inside a tokio runtime.
/// With `hard_stop`, the first SIGTERM also starts a watchdog: if the daemon has not stopped
/// after that long (the drain timeout plus one second), the process exits with status 1 anyway.
pub fn listen(
    hard_stop: Option<std::time::Duration>,
) -> std::io::Result<mpsc::UnboundedReceiver<SignalEvent>> {
    listen_to(&[SIGTERM, SIGINT, SIGHUP], hard_stop)
}

/// A future that resolves at the first SIGTERM or SIGINT (a second one exits with 130).
/// SIGHUP keeps its default action. Must be called inside a tokio runtime.
pub fn drain_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut rx = listen_to(&[SIGTERM, SIGINT], None)?;
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

fn listen_to(
    which: &[i32],
    hard_stop: Option<std::time::Duration>,
) -> std::io::Result<mpsc::UnboundedReceiver<SignalEvent>> {
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
                    tracing::warn!("second signal: exiting without draining");
                    exit_restoring(130);
                }
                _ => {
                    draining = true;
                    tracing::info!("signal received: draining (send it again to exit at once)");
                    if let Some(after) = hard_stop {
                        std::thread::spawn(move || {
                            std::thread::sleep(after);
                            tracing::error!(
                                after = %humantime::format_duration(after),
                                "the drain did not finish within lifecycle.drain_timeout + 1s; exiting"
                            );
                            exit_restoring(1);
                        });
                    }
                    let _ = tx.send(SignalEvent::Drain);
                }
            }
        }
    });
    Ok(rx)
}
