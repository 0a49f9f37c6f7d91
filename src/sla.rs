//! The latency/error/CPU SLA and the prices used for cost figures. Both are exported as gauges
//! (`loadspec_sla_*`, `loadspec_price_*`) so alert rules compare against the config, never
//! against literals.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_error::Errors;

/// What "within the SLA" means for a stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    /// p95 latency bound.
    #[serde(with = "crate::units::duration")]
    pub latency_p95: Duration,
    /// Optional p99 bound.
    #[serde(with = "crate::units::duration")]
    pub latency_p99: Option<Duration>,
    /// Highest acceptable error ratio, 0..1.
    pub error_ratio: f64,
    /// CPU utilization of the limit above which a container counts as saturated, 0..1. The
    /// seed's stable line was 91.7 % and saturation 99.6 %; 0.85 leaves room for bursts.
    pub cpu_utilization: f64,
    /// Exit `loadspec run` with code 99 when a run that ends the process (`on_finish = "exit"`)
    /// broke the SLA, so a CI job fails. False: report the verdict but exit 0.
    pub fail_on_breach: bool,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            latency_p95: Duration::from_secs(2),
            latency_p99: None,
            error_ratio: 0.01,
            cpu_utilization: 0.85,
            fail_on_breach: true,
        }
    }
}

impl SlaConfig {
    pub fn validate(&self, path: &str, errs: &mut Errors) {
        if self.latency_p95.is_zero() {
            errs.add(format!("{path}.latency_p95"), "must be greater than 0s");
        }
        if let Some(p99) = self.latency_p99 {
            if p99 < self.latency_p95 {
                errs.add(
                    format!("{path}.latency_p99"),
                    format!(
                        "must not be below latency_p95 ({}), got {}",
                        humantime::format_duration(self.latency_p95),
                        humantime::format_duration(p99)
                    ),
                );
            }
        }
        errs.check_range(&format!("{path}.error_ratio"), self.error_ratio, 0.0, 1.0);
        if !(self.cpu_utilization > 0.0 && self.cpu_utilization <= 1.0) {
            errs.add(
                format!("{path}.cpu_utilization"),
                format!(
                    "must be above 0 and at most 1, got {}",
                    self.cpu_utilization
                ),
            );
        }
    }
}

/// Cloud prices for cost per hour and per TPS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricesConfig {
    /// Price of one vCPU for one hour.
    pub vcpu_hour: f64,
    /// Price of one GiB of memory for one hour.
    pub memory_gib_hour: f64,
    /// Currency code shown in reports.
    pub currency: String,
}

impl Default for PricesConfig {
    /// Chosen so that the seed's Seoul figures come out: 0.5 vCPU / 0.75 GB at $0.0138 per
    /// hour and 1 vCPU / 1.5 GB at $0.0276 per hour (GB read as GiB, as the seed did).
    fn default() -> Self {
        Self {
            vcpu_hour: 0.0195,
            memory_gib_hour: 0.0054,
            currency: "USD".into(),
        }
    }
}

impl PricesConfig {
    /// Hourly price of a spec.
    pub fn cost_per_hour(&self, cpus: f64, memory_bytes: f64) -> f64 {
        cpus * self.vcpu_hour + memory_bytes / (1024.0 * 1024.0 * 1024.0) * self.memory_gib_hour
    }

    pub fn validate(&self, path: &str, errs: &mut Errors) {
        for (k, v) in [
            ("vcpu_hour", self.vcpu_hour),
            ("memory_gib_hour", self.memory_gib_hour),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                errs.add(format!("{path}.{k}"), format!("must be 0 or more, got {v}"));
            }
        }
        if self.currency.trim().is_empty() {
            errs.add(format!("{path}.currency"), "must not be empty");
        }
    }
}
