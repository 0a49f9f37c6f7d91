//! The analysis results as gauges (docs/architecture.md, "Where each metric is made"): the fitted CPU and memory models, the knee,
//! the highest TPS, and the recommended cpus and memory per VU count.
//!
//! A figure the analysis could not produce is not exported at all, rather than exported as 0
//! or NaN, so a dashboard shows "no data" instead of a wrong number: every gauge is a
//! `GaugeVec`, which drops its series on `reset`.
//!
//! Every gauge has a `group` label: the container group the analysis measured
//! (`analysis.group`), or `all` when it summed every container, so panels can follow the
//! dashboards' `$group` variable (`group=~"$group|all"`).

use prometheus::{GaugeVec, Opts, Registry, Result};

use crate::analysis::points::ResourceSource;
use crate::analysis::CapacityAnalysis;

/// Handles of the analysis gauges.
#[derive(Clone)]
pub struct ModelMetrics {
    cpu_cores_per_vu: GaugeVec,
    cpu_base_cores: GaugeVec,
    memory_base_bytes: GaugeVec,
    memory_bytes_per_vu: GaugeVec,
    knee_vus: GaugeVec,
    max_tps: GaugeVec,
    cost_per_tps_hour: GaugeVec,
    recommended_cpus: GaugeVec,
    recommended_memory_bytes: GaugeVec,
    recommended_cost_per_hour: GaugeVec,
    recommended_cost_per_tps_hour: GaugeVec,
}

/// The label value of `group` for an analysis.
pub fn group_label(a: &CapacityAnalysis) -> &str {
    match &a.source {
        ResourceSource::Group { name } => name,
        ResourceSource::AllContainers => "all",
    }
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn set(g: &GaugeVec, labels: &[&str], v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        g.with_label_values(labels).set(v);
    }
}

const G: &[&str] = &["group"];
const GV: &[&str] = &["group", "vus"];

impl ModelMetrics {
    /// Register every analysis gauge on `registry`.
    pub fn new(registry: &Registry) -> Result<Self> {
        Ok(Self {
            cpu_cores_per_vu: gauge(
                registry,
                "loadspec_model_cpu_cores_per_vu",
                "Fitted CPU cores per VU (least squares below the knee).",
                G,
            )?,
            cpu_base_cores: gauge(
                registry,
                "loadspec_model_cpu_base_cores",
                "Fitted CPU cores at zero VUs.",
                G,
            )?,
            memory_base_bytes: gauge(
                registry,
                "loadspec_model_memory_base_bytes",
                "Fitted memory at zero VUs.",
                G,
            )?,
            memory_bytes_per_vu: gauge(
                registry,
                "loadspec_model_memory_bytes_per_vu",
                "Fitted memory per VU.",
                G,
            )?,
            knee_vus: gauge(
                registry,
                "loadspec_model_knee_vus",
                "VUs at which the tested spec stops scaling.",
                G,
            )?,
            max_tps: gauge(
                registry,
                "loadspec_model_max_tps",
                "Highest TPS of any measured stage.",
                G,
            )?,
            cost_per_tps_hour: gauge(
                registry,
                "loadspec_model_cost_per_tps_hour",
                "Hourly price of the tested limits divided by the highest TPS of any stage.",
                G,
            )?,
            recommended_cost_per_hour: gauge(
                registry,
                "loadspec_recommended_cost_per_hour",
                "Hourly price of the recommended spec for a VU count.",
                GV,
            )?,
            recommended_cost_per_tps_hour: gauge(
                registry,
                "loadspec_recommended_cost_per_tps_hour",
                "Hourly price of the recommended spec per TPS it is expected to serve.",
                GV,
            )?,
            recommended_cpus: gauge(
                registry,
                "loadspec_recommended_cpus",
                "Recommended --cpus for a VU count.",
                GV,
            )?,
            recommended_memory_bytes: gauge(
                registry,
                "loadspec_recommended_memory_bytes",
                "Recommended --memory for a VU count.",
                GV,
            )?,
        })
    }

    /// Replace every exported figure with the analysis' (dropping those it lacks).
    pub fn update(&self, a: &CapacityAnalysis) {
        for g in [
            &self.cpu_cores_per_vu,
            &self.cpu_base_cores,
            &self.memory_base_bytes,
            &self.memory_bytes_per_vu,
            &self.knee_vus,
            &self.max_tps,
            &self.cost_per_tps_hour,
            &self.recommended_cpus,
            &self.recommended_memory_bytes,
            &self.recommended_cost_per_hour,
            &self.recommended_cost_per_tps_hour,
        ] {
            g.reset();
        }
        let m = &a.models;
        let g = [group_label(a)];
        set(&self.cpu_cores_per_vu, &g, m.cpu.as_ref().map(|f| f.slope));
        set(&self.cpu_base_cores, &g, m.cpu.as_ref().map(|f| f.base));
        set(
            &self.memory_base_bytes,
            &g,
            m.memory.as_ref().map(|f| f.base),
        );
        set(
            &self.memory_bytes_per_vu,
            &g,
            m.memory.as_ref().map(|f| f.slope),
        );
        set(&self.knee_vus, &g, a.knee.vus);
        let max_tps = (!a.points.is_empty()).then_some(a.knee.max_tps);
        set(&self.max_tps, &g, max_tps);
        // What one TPS costs on the limits under test, at the best throughput measured: the
        // live cost-per-TPS rule divides by the current rate, which is tiny while ramping down.
        let tested = a.tested_spec.as_ref().and_then(|t| {
            let price = a
                .prices
                .cost_per_hour(t.cpu_limit_cores?, t.memory_limit_bytes?);
            Some(price / max_tps.filter(|t| *t > 0.0)?)
        });
        set(&self.cost_per_tps_hour, &g, tested);
        for r in &a.recommendations {
            let l = [g[0], &r.vus.to_string()];
            set(&self.recommended_cpus, &l, Some(r.spec.cpus));
            set(
                &self.recommended_memory_bytes,
                &l,
                Some(r.spec.memory_bytes as f64),
            );
            set(&self.recommended_cost_per_hour, &l, Some(r.cost_per_hour));
            set(&self.recommended_cost_per_tps_hour, &l, r.cost_per_tps_hour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::synthetic::SyntheticService;
    use crate::analysis::{analyze, AnalysisConfig};
    use crate::sla::{PricesConfig, SlaConfig};

    fn text(r: &Registry) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&r.gather())
            .unwrap()
    }

    #[test]
    fn exports_models_and_drops_what_is_missing() {
        let registry = Registry::new();
        let mm = ModelMetrics::new(&registry).unwrap();
        let stages = SyntheticService {
            noise: 0.0,
            ..Default::default()
        }
        .stages(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1);
        let cfg = AnalysisConfig {
            vus: vec![2, 4],
            ..Default::default()
        };
        let a = analyze(
            &stages,
            &SlaConfig::default(),
            &PricesConfig::default(),
            &cfg,
        );
        mm.update(&a);
        let t = text(&registry);
        assert!(
            t.contains("loadspec_model_cpu_cores_per_vu{group=\"all\"} 0.25"),
            "{t}"
        );
        assert!(
            t.contains("loadspec_model_knee_vus{group=\"all\"} 4\n"),
            "{t}"
        );
        assert!(
            t.contains("loadspec_model_max_tps{group=\"all\"} 40\n"),
            "{t}"
        );
        assert!(
            t.contains("loadspec_model_memory_bytes_per_vu{group=\"all\"} 250000000"),
            "{t}"
        );
        // 0.25 × 4 / 0.8 = 1.25 → 1.5 cpus.
        assert!(
            t.contains("loadspec_recommended_cpus{group=\"all\",vus=\"4\"} 1.5"),
            "{t}"
        );
        assert!(
            t.contains("loadspec_recommended_memory_bytes{group=\"all\",vus=\"2\"}"),
            "{t}"
        );

        // The recommendation table's prices, per VU count, under the same group label.
        let r4 = a.recommendations.iter().find(|r| r.vus == 4).unwrap();
        let want = format!(
            "loadspec_recommended_cost_per_hour{{group=\"all\",vus=\"4\"}} {}\n",
            r4.cost_per_hour
        );
        assert!(t.contains(&want), "{want} in {t}");
        let per_tps = r4.cost_per_tps_hour.expect("expected TPS");
        let want = format!(
            "loadspec_recommended_cost_per_tps_hour{{group=\"all\",vus=\"4\"}} {per_tps}\n"
        );
        assert!(t.contains(&want), "{want} in {t}");
        // Cost per TPS of the tested limits at the best measured TPS (40): 1 cpu and 1 GiB.
        let mut tested = a.clone();
        tested.source = ResourceSource::Group {
            name: "backend".into(),
        };
        tested.tested_spec = Some(crate::analysis::TestedSpec {
            cpu_limit_cores: Some(1.0),
            memory_limit_bytes: Some(1073741824.0),
        });
        mm.update(&tested);
        let t = text(&registry);
        let want = format!(
            "loadspec_model_cost_per_tps_hour{{group=\"backend\"}} {}\n",
            (0.0195 + 0.0054) / 40.0
        );
        assert!(t.contains(&want), "{want} in {t}");
        assert!(
            !t.contains("group=\"all\""),
            "the old group's series are gone: {t}"
        );

        // An empty analysis removes every series instead of exporting zeros.
        let empty = analyze(&[], &SlaConfig::default(), &PricesConfig::default(), &cfg);
        mm.update(&empty);
        let t = text(&registry);
        assert!(!t.contains("loadspec_model_knee_vus{"), "{t}");
        assert!(!t.contains("loadspec_recommended_cpus{"), "{t}");
        // Registering twice on one registry is an error, not a panic.
        assert!(ModelMetrics::new(&registry).is_err());
    }
}
