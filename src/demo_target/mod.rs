//! `loadspec demo-target`: an emulated AI image API standing in for the seed's Spring Boot +
//! FastAPI stack, with per-request costs that are configured and therefore known — the ground
//! truth that loadspec's capacity analysis must recover (see docs/demo-target.md).
//!
//! # Layout
//! - [`config`]: the command-line options and the validated [`DemoTargetConfig`].
//! - [`size`]: byte sizes such as `8MiB` on the command line.
//! - [`cost`]: real CPU burned against the thread's CPU clock, and touched, unmappable memory.
//! - [`state`]: counters, sessions, rotations and the stall window ([`DemoState`]).
//! - [`multipart`]: the S3 upload parsed with `multer`.
//! - [`handlers`]: routing and every endpoint.
//! - [`server`]: the accept loop, graceful shutdown, [`spawn`] and [`DemoHandle`].
//! - [`tls`]: the TLS server config (`--tls-cert`, `--tls-key`, `--tls-client-ca`) and a CA
//!   made in memory for the demo and the tests.
//!
//! This file holds only the command's entry point: runtime, logging, the shutdown signal it
//! hands to [`server::run`], and the `listening on` line.

pub mod config;
pub mod cost;
pub mod handlers;
pub mod multipart;
pub mod server;
pub mod state;
pub mod tls;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use crate::units::ByteSize;
pub use config::{DemoTargetArgs, DemoTargetConfig, StatusMix};
pub use server::{serve, serve_state, serve_with, spawn, spawn_tls, DemoHandle, RunError};
pub use state::{DemoState, DemoStats, MultipartSeen};

/// Entry point of `loadspec demo-target`. Exit codes: 0 after a clean drain, 1 if the server
/// cannot start or requests outlive `--shutdown-timeout`, 130 on a second signal; clap exits
/// with 2 on invalid flags before this runs.
pub fn main(args: DemoTargetArgs) -> ExitCode {
    crate::logging::init(crate::logging::LogFormat::Text);
    let cfg = DemoTargetConfig::from_args(&args);
    let rt = match crate::runtime::build(
        args.workers.map(usize::from),
        Some(usize::from(args.blocking_threads)),
    ) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(run(&args, cfg));
    // Blocking CPU burns of abandoned requests must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

async fn run(args: &DemoTargetArgs, cfg: DemoTargetConfig) -> ExitCode {
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --listen {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: --listen {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let state = match DemoState::new(cfg) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!(
                "error: --base-memory {}: cannot allocate: {e}",
                args.base_memory
            );
            return ExitCode::FAILURE;
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            match tls::server_config_files(cert, key, args.tls_client_ca.as_deref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let shutdown = match crate::shutdown::drain_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = state.config();
    tracing::info!(
        %addr,
        cpu_ms = c.cpu.as_secs_f64() * 1000.0,
        simple_cpu_ms = c.simple_cpu.as_secs_f64() * 1000.0,
        mem_per_request = %c.mem_per_request,
        base_memory = %c.base_memory,
        delay_ms = c.delay.as_secs_f64() * 1000.0,
        fail_ratio = c.fail_ratio,
        mix = %c.mix,
        tls = tls.is_some(),
        "demo-target started"
    );
    // A parent process (loadspec demo, tests) reads the bound port from this line.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    drop(out);

    match server::run(listener, state, tls, shutdown, args.shutdown_timeout).await {
        Ok(()) => {
            tracing::info!("demo-target stopped");
            ExitCode::SUCCESS
        }
        Err(e @ server::RunError::DrainTimeout(_)) => {
            tracing::warn!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
