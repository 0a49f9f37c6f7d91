//! `[analysis]` settings: how stages are measured (settle), which containers the models are
//! fitted on, the thresholds of the knee detection, and how recommendations are sized and
//! rounded. Every knob has a default that reproduces the seed document's way of sizing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_error::Errors;
use crate::sla::SlaConfig;

/// Settings of the capacity analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Time at the start of each stage that is not measured, so ramp-up and warm-up do not
    /// pollute the stage summary.
    #[serde(with = "crate::units::duration")]
    pub settle: Duration,
    /// Container group the resource models are fitted on (`backend`, `ai`). Unset: the sum of
    /// all measured containers.
    pub group: Option<String>,
    /// VU counts of the recommendation table.
    pub vus: Vec<u32>,
    /// CPU utilization of the recommended limit that the model's demand may reach, 0..1. Must
    /// not exceed `sla.cpu_utilization`, else the recommended spec would itself break the SLA.
    pub target_utilization: f64,
    /// Recommended cpus are rounded up to a multiple of this.
    pub cpus_step: f64,
    /// Recommended memory is rounded up to a multiple of this (bytes, or a size like "256MiB").
    #[serde(with = "crate::units::bytes")]
    pub memory_step: u64,
    /// Memory margin on top of the fitted model: 0.2 = 20 % more.
    pub headroom: f64,
    /// Smallest cpus ever recommended; 0 means one `cpus_step`.
    pub min_cpus: f64,
    /// Largest cpus for one container; rows above it say to scale out. Unset: no limit.
    pub max_cpus: Option<f64>,
    /// VUs one replica holds in the scale-out situation. Unset: the max VUs within the SLA
    /// measured at the tested spec (the seed's "scale out on the VU 2 baseline").
    pub replica_max_vus: Option<u32>,
    /// Knee: TPS has stopped growing when the marginal TPS per added VU falls below this
    /// fraction of the first stage's TPS per VU.
    pub knee_tps_gain_fraction: f64,
    /// Knee: latency bends upward when its elasticity to VUs, ln(lat2/lat1) / ln(vus2/vus1),
    /// exceeds this. 0 = flat latency (linear region); 1 = latency grows as fast as VUs, which
    /// Little's law (VUs = TPS × latency) gives once TPS is flat.
    pub knee_latency_elasticity: f64,
    /// High-performance situation: this many times the stable VUs.
    pub high_performance_factor: f64,
    /// Event-burst situation: this many times the stable VUs ...
    pub burst_factor: f64,
    /// ... sized to run hotter for a short time, at this CPU utilization, with twice the memory
    /// headroom.
    pub burst_utilization: f64,
    /// Hours in a month for monthly cost (the seed uses 720).
    pub hours_per_month: f64,
    /// Starved host: a stage whose host had less than this share of its CPUs idle, while the
    /// container stayed below `sla.cpu_utilization` of its limit and was not throttled, was
    /// held back by the host, not by its limit. 0 turns the check off.
    pub starved_host_idle: f64,
    /// Throttled seconds per second (CFS quota) from which a container counts as held by its
    /// own limit, even when its average utilization is lower.
    pub throttled_ratio: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            settle: Duration::from_secs(5),
            group: None,
            vus: (1..=10).collect(),
            target_utilization: 0.8,
            cpus_step: 0.5,
            memory_step: 256 << 20,
            headroom: 0.2,
            min_cpus: 0.0,
            max_cpus: None,
            replica_max_vus: None,
            knee_tps_gain_fraction: 0.25,
            knee_latency_elasticity: 0.5,
            high_performance_factor: 2.0,
            burst_factor: 3.0,
            burst_utilization: 0.95,
            hours_per_month: 720.0,
            starved_host_idle: 0.1,
            throttled_ratio: 0.05,
        }
    }
}

impl AnalysisConfig {
    /// Checks that need nothing but this section. See also [`Self::validate_with_sla`].
    pub fn validate(&self, path: &str, errs: &mut Errors) {
        if self.vus.is_empty() {
            errs.add(format!("{path}.vus"), "must list at least one VU count");
        }
        for (i, v) in self.vus.iter().enumerate() {
            if *v == 0 {
                errs.add(format!("{path}.vus[{i}]"), "must be at least 1, got 0");
            }
        }
        positive_at_most_one(
            errs,
            &format!("{path}.target_utilization"),
            self.target_utilization,
        );
        positive_at_most_one(
            errs,
            &format!("{path}.burst_utilization"),
            self.burst_utilization,
        );
        if !(self.cpus_step.is_finite() && self.cpus_step > 0.0) {
            errs.add(
                format!("{path}.cpus_step"),
                format!("must be greater than 0, got {}", self.cpus_step),
            );
        }
        if self.memory_step == 0 {
            errs.add(
                format!("{path}.memory_step"),
                "must be greater than 0, got 0",
            );
        }
        errs.check_range(&format!("{path}.headroom"), self.headroom, 0.0, 10.0);
        errs.check_range(&format!("{path}.min_cpus"), self.min_cpus, 0.0, 1e6);
        if let Some(max) = self.max_cpus {
            if !(max.is_finite() && max > 0.0 && max >= self.min_cpus) {
                errs.add(
                    format!("{path}.max_cpus"),
                    format!(
                        "must be greater than 0 and at least min_cpus ({}), got {max}",
                        self.min_cpus
                    ),
                );
            }
        }
        if self.replica_max_vus == Some(0) {
            errs.add(
                format!("{path}.replica_max_vus"),
                "must be at least 1, got 0",
            );
        }
        errs.check_range(
            &format!("{path}.knee_tps_gain_fraction"),
            self.knee_tps_gain_fraction,
            0.0,
            1.0,
        );
        errs.check_range(
            &format!("{path}.knee_latency_elasticity"),
            self.knee_latency_elasticity,
            0.0,
            10.0,
        );
        errs.check_range(
            &format!("{path}.high_performance_factor"),
            self.high_performance_factor,
            1.0,
            1000.0,
        );
        errs.check_range(
            &format!("{path}.burst_factor"),
            self.burst_factor,
            1.0,
            1000.0,
        );
        errs.check_range(
            &format!("{path}.hours_per_month"),
            self.hours_per_month,
            1.0,
            744.0,
        );
        errs.check_range(
            &format!("{path}.starved_host_idle"),
            self.starved_host_idle,
            0.0,
            1.0,
        );
        errs.check_range(
            &format!("{path}.throttled_ratio"),
            self.throttled_ratio,
            0.0,
            1000.0,
        );
    }

    /// Cross-section check: sizing for a utilization above the SLA's saturation line would
    /// recommend specs that are saturated by definition.
    pub fn validate_with_sla(&self, path: &str, sla: &SlaConfig, errs: &mut Errors) {
        if self.target_utilization > sla.cpu_utilization {
            errs.add(
                format!("{path}.target_utilization"),
                format!(
                    "must not exceed sla.cpu_utilization ({}), got {}",
                    sla.cpu_utilization, self.target_utilization
                ),
            );
        }
    }

    /// The smallest cpus a recommendation may have.
    pub fn effective_min_cpus(&self) -> f64 {
        self.min_cpus.max(self.cpus_step)
    }
}

fn positive_at_most_one(errs: &mut Errors, path: &str, v: f64) {
    if !(v > 0.0 && v <= 1.0) {
        errs.add(path, format!("must be above 0 and at most 1, got {v}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_parse_sizes() {
        let mut errs = Errors::new();
        AnalysisConfig::default().validate("analysis", &mut errs);
        AnalysisConfig::default().validate_with_sla("analysis", &SlaConfig::default(), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        let c: AnalysisConfig =
            toml::from_str("memory_step = \"128MiB\"\nsettle = \"2s\"\nvus = [2, 4]").unwrap();
        assert_eq!(c.memory_step, 128 << 20);
        assert_eq!(c.settle, Duration::from_secs(2));
        assert_eq!(c.vus, vec![2, 4]);
        assert!(toml::from_str::<AnalysisConfig>("nope = 1").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let c = AnalysisConfig {
            vus: vec![1, 0],
            target_utilization: 0.9,
            cpus_step: 0.0,
            ..Default::default()
        };
        let mut errs = Errors::new();
        c.validate("analysis", &mut errs);
        c.validate_with_sla("analysis", &SlaConfig::default(), &mut errs);
        let text = errs.finish(()).unwrap_err().to_string();
        assert!(
            text.contains("analysis.vus[1]: must be at least 1"),
            "{text}"
        );
        assert!(text.contains("analysis.cpus_step"), "{text}");
        assert!(
            text.contains("analysis.target_utilization: must not exceed sla.cpu_utilization"),
            "{text}"
        );
    }
}
