//! The tokio runtime builder every command shares (`run`, `demo`, `demo-target`), in a module of
//! its own so the commands don't import each other to get it.

use std::future::Future;
use std::io;
use std::process::ExitCode;

use tokio::runtime::{Builder, Runtime};

/// A multi-threaded runtime with I/O and timers. `workers` and `max_blocking_threads` default
/// to tokio's (one worker per core, 512 blocking threads). The caller exits 1 if it fails.
pub fn build(workers: Option<usize>, max_blocking_threads: Option<usize>) -> io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    if let Some(n) = max_blocking_threads {
        builder.max_blocking_threads(n);
    }
    builder.build()
}

/// Run a command's future on a default runtime: the shared start of `demo` and `analyze`.
/// Exit 1 when no runtime can be built.
pub fn run_command<F: Future<Output = ExitCode>>(fut: F) -> ExitCode {
    match build(None, None) {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
