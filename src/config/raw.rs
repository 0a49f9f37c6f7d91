//! Raw configuration as it is written in TOML. These types mirror the file one to one and reject
//! unknown keys; [`super::validate`] turns them into the typed [`super::Settings`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{PricesConfig, SlaConfig};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub target: TargetConfig,
    pub lifecycle: LifecycleConfig,
    pub sla: SlaConfig,
    pub prices: PricesConfig,
    pub metrics: MetricsConfig,
    pub reports: ReportsConfig,
    pub containers: crate::containers::ContainersConfig,
    pub analysis: crate::analysis::AnalysisConfig,
    pub experiment: super::experiment::ExperimentConfig,
    pub limits: LimitsConfig,
    pub scenarios: Vec<ScenarioConfig>,
}

/// `[limits]`, owned by the load engine it bounds.
pub use crate::load::limits::LimitsConfig;

impl RawConfig {
    /// The latency thresholds (seconds) that must be histogram bucket edges: `sla.latency_p95`,
    /// `sla.latency_p99` and the search's N2 (`experiment.search.latency_p95`).
    pub fn sla_latency_edges(&self) -> Vec<f64> {
        [
            Some(self.sla.latency_p95),
            self.sla.latency_p99,
            self.experiment.search.latency_p95,
        ]
        .into_iter()
        .flatten()
        .map(crate::exposition::buckets::secs)
        .collect()
    }

    /// The buckets of the latency histograms: `metrics.buckets` with every SLA latency added
    /// as an edge, so the bucket at the SLA counts exactly the responses within it.
    pub fn latency_buckets(&self) -> Vec<f64> {
        crate::exposition::buckets::with_edges(&self.metrics.buckets, &self.sla_latency_edges())
    }
}

/// Where `/metrics`, `/healthz`, `/readyz` and `/report` are served.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Most connections served at once. At the cap the oldest connection is closed for the
    /// new one, so clients that hold connections open cannot lock Prometheus out, and the
    /// server never takes more file descriptors than this from the VUs' budget.
    pub max_connections: usize,
    /// A request head must arrive within this (slowloris).
    #[serde(with = "crate::units::duration")]
    pub header_read_timeout: Duration,
    /// A connection without a request for this long is closed.
    #[serde(with = "crate::units::duration")]
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".parse().expect("static address"),
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

pub use crate::load::body::{BodyConfig, FilePart, TextPart};
pub use crate::load::plan::{DataMode, ExecutorKind, OnSetupFailure};
pub use crate::logging::LogFormat;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// How often the progress line is logged.
    #[serde(with = "crate::units::duration")]
    pub progress_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            progress_interval: Duration::from_secs(5),
        }
    }
}

/// Defaults shared by every request: base URL, bearer token, headers, timeout.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    pub base_url: Option<String>,
    /// Sent as `Authorization: Bearer <token>`; `${VAR}` reads it from the environment.
    pub bearer_token: Option<String>,
    pub headers: BTreeMap<String, String>,
    #[serde(with = "crate::units::duration")]
    pub timeout: Duration,
    /// TLS of `https://` URLs: private CA, SNI override, client certificate.
    pub tls: crate::load::tls::TlsConfig,
    /// `"1.1"` (each VU owns its connection) or `"2"` (ALPN over TLS, h2c over http).
    pub http_version: crate::load::net::HttpVersion,
    /// With HTTP/2: connections per target, shared by the VUs (VU i uses connection i mod N).
    pub http2_connections: u32,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            bearer_token: None,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(60),
            tls: Default::default(),
            http_version: Default::default(),
            http2_connections: 1,
        }
    }
}

/// What the daemon does when the plan has run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFinish {
    /// Keep serving /metrics and /report until signalled.
    #[default]
    Idle,
    /// Run the plan again.
    Repeat,
    /// Exit with status 0.
    Exit,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    pub on_finish: OnFinish,
    /// How long SIGTERM waits for in-flight requests before giving up on them.
    #[serde(with = "crate::units::duration")]
    pub drain_timeout: Duration,
    /// With `on_finish = "exit"`: keep serving `/metrics` after the plan until one more scrape
    /// has taken the final values, for at most this long (0s: exit at once). A Kubernetes Job's
    /// pods then complete without losing their last samples.
    #[serde(with = "crate::units::duration")]
    pub exit_grace: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            on_finish: OnFinish::Idle,
            drain_timeout: Duration::from_secs(30),
            exit_grace: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Histogram buckets of `loadspec_http_request_duration_seconds` and
    /// `loadspec_iteration_duration_seconds`, seconds. The default (see
    /// [`crate::exposition::buckets`]) resolves a p95 within 10 % from 5 ms to 10 s and reaches
    /// 120 s because AI endpoints are slow. The SLA latencies are always added as edges.
    pub buckets: Vec<f64>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            buckets: crate::exposition::buckets::DEFAULT.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// Directory under which each run writes `<run id>-<timestamp>/report.{md,json,html}`.
    pub dir: PathBuf,
    pub enabled: bool,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("reports"),
            enabled: true,
        }
    }
}

/// One scenario: an executor with its schedule, and the requests of one iteration. Which
/// schedule fields are required depends on `executor`; validation says which are missing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    pub name: String,
    pub executor: ExecutorKind,
    /// Offset from the start of the run.
    #[serde(default, with = "crate::units::duration")]
    pub start: Option<Duration>,
    pub vus: Option<u64>,
    #[serde(default, with = "crate::units::duration")]
    pub duration: Option<Duration>,
    pub iterations: Option<u64>,
    #[serde(default, with = "crate::units::duration")]
    pub max_duration: Option<Duration>,
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// Jump to each stage's target at its start instead of ramping linearly.
    #[serde(default)]
    pub step: bool,
    pub start_vus: Option<u64>,
    pub rate: Option<f64>,
    pub start_rate: Option<f64>,
    #[serde(default, with = "crate::units::duration")]
    pub time_unit: Option<Duration>,
    pub pre_allocated_vus: Option<u64>,
    pub max_vus: Option<u64>,
    #[serde(default, with = "crate::units::duration")]
    pub think_time: Option<Duration>,
    /// How long a VU removed by a ramp-down may finish its iteration.
    #[serde(default, with = "crate::units::duration")]
    pub graceful_ramp_down: Option<Duration>,
    /// Once-per-VU steps (log in once, then loop).
    #[serde(default)]
    pub setup: Vec<RequestConfig>,
    /// The steps of one iteration, in order.
    #[serde(default)]
    pub requests: Vec<RequestConfig>,
    pub data: Option<DataConfig>,
    /// Retries of a failed setup: `{ max = 2, backoff = "1s" }`.
    pub setup_retry: Option<SetupRetryConfig>,
    /// What a VU does once its setup failed after the retries (default `stop-vu`).
    pub on_setup_failure: Option<OnSetupFailure>,
    /// Statuses of an iteration step that re-run the setup steps (an expired login).
    #[serde(default)]
    pub rerun_setup_on: Vec<u16>,
    /// How many times one VU may re-run its setup for `rerun_setup_on` (default 10).
    pub max_setup_reruns: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRetryConfig {
    /// Extra attempts after the first failed one (default 2, at most 100).
    pub max: Option<u32>,
    /// Pause before each retry (default 1s).
    #[serde(default, with = "humantime_serde")]
    pub backoff: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    #[serde(with = "crate::units::duration")]
    pub duration: Duration,
    /// VUs for VU executors, iterations per time unit for arrival-rate executors.
    pub target: f64,
    pub name: Option<String>,
}

/// One HTTP request (a step of an iteration).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// The `request` label; bounded, unlike URLs.
    pub name: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute URL; or use `path` joined onto `target.base_url`.
    pub url: Option<String>,
    pub path: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub bearer_token: Option<String>,
    pub body: Option<BodyConfig>,
    /// Expected status codes; default any 2xx.
    #[serde(default)]
    pub expect: Vec<u16>,
    #[serde(default, with = "crate::units::duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub captures: Vec<CaptureConfig>,
}

fn default_method() -> String {
    "GET".into()
}

/// Take a value from a response into a per-VU variable: exactly one of `json` (a JSON
/// pointer), `header`, or `regex` (first capture group, else the whole match).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    pub name: String,
    pub json: Option<String>,
    pub header: Option<String>,
    pub regex: Option<String>,
}

/// Rows of values (prompts, credentials) read once at start; columns become `${column}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub file: PathBuf,
    #[serde(default)]
    pub mode: DataMode,
}

#[cfg(test)]
mod latency_bucket_tests {
    use super::*;

    #[test]
    fn every_sla_latency_becomes_an_edge_once() {
        let mut raw = RawConfig::default();
        raw.metrics.buckets = vec![0.5, 1.0, 2.5];
        raw.sla.latency_p95 = Duration::from_millis(1805);
        raw.sla.latency_p99 = Some(Duration::from_millis(2500));
        raw.experiment.search.latency_p95 = Some(Duration::from_millis(300));
        assert_eq!(raw.latency_buckets(), vec![0.3, 0.5, 1.0, 1.805, 2.5]);
        // The default config: its 2 s SLA is already an edge of the default buckets.
        let d = RawConfig::default();
        assert_eq!(d.metrics.buckets, crate::exposition::buckets::DEFAULT);
        assert_eq!(d.latency_buckets(), crate::exposition::buckets::DEFAULT);
    }
}
