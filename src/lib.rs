//! loadspec: put steady or stepped load on an HTTP API, measure the containers that serve it,
//! and answer which container spec (`--cpus`, `--memory`) serves N users within a latency SLA.
//!
//! # Layout
//! - [`config`]: serde types, layered loading (file, then `LOADSPEC__*` environment), and one
//!   `validate()` that turns the raw file into a typed [`config::Settings`] or a list of errors
//!   that name the field path.
//! - [`load`]: request building, the HTTP client, the closed (VU) and open (arrival-rate)
//!   executors, shards, and the recorder that feeds metrics and per-stage HDR histograms.
//! - [`containers`]: samplers for Docker (bollard) and plain processes (/proc), and the limits
//!   control used by sweep and search experiments.
//! - [`metrics`]: every exported metric, defined in one place, plus the container collector.
//! - [`analysis`]: stage summaries, model fitting, knee detection, recommendation and cost.
//! - [`report`]: Markdown, JSON and HTML (server-side SVG) reports.
//! - [`experiment`]: plan, sweep and search orchestration.
//! - [`server`]: hyper server for `/metrics`, `/healthz`, `/readyz`, `/report`.
//! - [`demo_target`]: the emulated AI image API with known per-request costs.
//! - [`shutdown`]: cancellation, draining and signal handling.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod demo;
pub mod demo_target;
pub mod experiment;
pub mod exposition;
pub mod latency;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod units;
