//! loadspec: put steady or stepped load on an HTTP API, measure the containers that serve it,
//! and answer which container spec (`--cpus`, `--memory`) serves N users within a latency SLA.
//!
//! # Layout
//! - [`config`]: serde types, layered loading (file, then `LOADSPEC__*` environment), and one
//!   `validate()` that turns the raw file into a typed [`config::Settings`] or a list of errors
//!   that name the field path. It composes the sections that other modules own.
//! - [`load`]: the engine: request building, the HTTP client, the closed (VU) and open
//!   (arrival-rate) executors, shards, failure reasons, and the handles requests record into.
//! - [`containers`]: samplers for Docker (bollard) and plain processes (/proc), and the limits
//!   control used by sweep and search experiments.
//! - [`metrics`]: every exported metric, defined in one place, plus the container collector.
//! - [`analysis`]: stage summaries, model fitting, knee detection, recommendation and cost.
//! - [`report`]: Markdown, JSON and HTML (server-side SVG) reports.
//! - [`experiment`]: plan, sweep and search orchestration, and the progress bars/lines.
//! - [`ci`]: the SLA verdict that sets the exit code (99 when broken), the summary export and
//!   the JUnit report.
//! - [`server`]: hyper server for `/metrics`, `/healthz`, `/readyz`, `/report`.
//! - [`daemon`], [`demo`], [`cli`]: the commands and what runs them.
//! - [`demo_target`]: the emulated AI image API with known per-request costs.
//! - [`import`]: `loadspec import k6`, a k6 script into a plan.
//! - Leaves shared by the above: [`units`] (byte sizes, bounded durations, number forms),
//!   [`config_error`] (field errors), [`files`] (bounded reads of the files a config names),
//!   [`sla`] (SLA and prices), [`latency`] (HDR recorder and its summary),
//!   [`exposition`] (metric primitives and the text format), [`logging`], [`shutdown`]
//!   (signals) and [`runtime`] (the tokio runtime builder).
//!
//! # Layers
//! Dependencies run one way: a module imports only modules of a lower layer, never one of its
//! own layer or above, so there are no cycles between modules. `tests/layers.rs` checks every
//! `crate::` path in `src/` against this list (run `cargo test --test layers`); a new
//! top-level module must be added here. docs/architecture.md explains the order.
//!
//! 1. [`units`], [`config_error`], [`files`], [`latency`], [`exposition`], [`logging`], [`shutdown`], [`runtime`]
//! 2. [`sla`]
//! 3. [`load`], [`containers`], [`analysis`]
//! 4. [`metrics`], [`report`], [`config`], [`demo_target`]
//! 5. [`experiment`], [`server`]
//! 6. [`ci`]
//! 7. [`daemon`], [`analyze`]
//! 8. [`demo`], [`import`]
//! 9. [`cli`]

pub mod analysis;
pub mod analyze;
pub mod ci;
pub mod cli;
pub mod config;
pub mod config_error;
pub mod containers;
pub mod daemon;
pub mod demo;
pub mod demo_target;
pub mod experiment;
pub mod exposition;
pub mod files;
pub mod import;
pub mod latency;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod sla;
pub mod units;
