//! The analysis results as gauges (docs/architecture.md, "Where each metric is made"): the fitted CPU and memory models, the knee,
//! the highest TPS, and the recommended cpus and memory per VU count.
//!
//! A figure the analysis could not produce is not exported at all, rather than exported as 0
//! or NaN, so a dashboard shows "no data" instead of a wrong number. That is why even the
//! single-valued gauges are label-less `GaugeVec`s: a vec can drop its one series on `reset`.

use prometheus::{GaugeVec, Opts, Registry, Result};

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
    recommended_cpus: GaugeVec,
    recommended_memory_bytes: GaugeVec,
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn set(g: &GaugeVec, v: Option<f64>) {
    g.reset();
    if let Some(v) = v.filter(|v| v.is_finite()) {
        g.with_label_values(&[] as &[&str]).set(v);
    }
}

impl ModelMetrics {
    /// Register every analysis gauge on `registry`.
    pub fn new(registry: &Registry) -> Result<Self> {
        Ok(Self {
            cpu_cores_per_vu: gauge(
                registry,
                "loadspec_model_cpu_cores_per_vu",
                "Fitted CPU cores per VU (least squares below the knee).",
                &[],
            )?,
            cpu_base_cores: gauge(
                registry,
                "loadspec_model_cpu_base_cores",
                "Fitted CPU cores at zero VUs.",
                &[],
            )?,
            memory_base_bytes: gauge(
                registry,
                "loadspec_model_memory_base_bytes",
                "Fitted memory at zero VUs.",
                &[],
            )?,
            memory_bytes_per_vu: gauge(
                registry,
                "loadspec_model_memory_bytes_per_vu",
                "Fitted memory per VU.",
                &[],
            )?,
            knee_vus: gauge(
                registry,
                "loadspec_model_knee_vus",
                "VUs at which the tested spec stops scaling.",
                &[],
            )?,
            max_tps: gauge(
                registry,
                "loadspec_model_max_tps",
                "Highest TPS of any measured stage.",
                &[],
            )?,
            recommended_cpus: gauge(
                registry,
                "loadspec_recommended_cpus",
                "Recommended --cpus for a VU count.",
                &["vus"],
            )?,
            recommended_memory_bytes: gauge(
                registry,
                "loadspec_recommended_memory_bytes",
                "Recommended --memory for a VU count.",
                &["vus"],
            )?,
        })
    }

    /// Replace every exported figure with the analysis' (dropping those it lacks).
    pub fn update(&self, a: &CapacityAnalysis) {
        let m = &a.models;
        set(&self.cpu_cores_per_vu, m.cpu.as_ref().map(|f| f.slope));
        set(&self.cpu_base_cores, m.cpu.as_ref().map(|f| f.base));
        set(&self.memory_base_bytes, m.memory.as_ref().map(|f| f.base));
        set(
            &self.memory_bytes_per_vu,
            m.memory.as_ref().map(|f| f.slope),
        );
        set(&self.knee_vus, a.knee.vus);
        set(
            &self.max_tps,
            (!a.points.is_empty()).then_some(a.knee.max_tps),
        );
        self.recommended_cpus.reset();
        self.recommended_memory_bytes.reset();
        for r in &a.recommendations {
            let vus = r.vus.to_string();
            self.recommended_cpus
                .with_label_values(&[vus.as_str()])
                .set(r.spec.cpus);
            self.recommended_memory_bytes
                .with_label_values(&[vus.as_str()])
                .set(r.spec.memory_bytes as f64);
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
        assert!(t.contains("loadspec_model_cpu_cores_per_vu 0.25"), "{t}");
        assert!(t.contains("loadspec_model_knee_vus 4\n"), "{t}");
        assert!(t.contains("loadspec_model_max_tps 40\n"), "{t}");
        assert!(
            t.contains("loadspec_model_memory_bytes_per_vu 250000000"),
            "{t}"
        );
        // 0.25 × 4 / 0.8 = 1.25 → 1.5 cpus.
        assert!(
            t.contains("loadspec_recommended_cpus{vus=\"4\"} 1.5"),
            "{t}"
        );
        assert!(
            t.contains("loadspec_recommended_memory_bytes{vus=\"2\"}"),
            "{t}"
        );

        // An empty analysis removes every series instead of exporting zeros.
        let empty = analyze(&[], &SlaConfig::default(), &PricesConfig::default(), &cfg);
        mm.update(&empty);
        let t = text(&registry);
        assert!(!t.contains("loadspec_model_knee_vus "), "{t}");
        assert!(!t.contains("loadspec_recommended_cpus{"), "{t}");
        // Registering twice on one registry is an error, not a panic.
        assert!(ModelMetrics::new(&registry).is_err());
    }
}
