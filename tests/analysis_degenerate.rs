//! Degenerate input never panics: `analyze` returns what it can, says what is missing, and the
//! result still serializes to JSON and back.

use loadspec::analysis::synthetic::SyntheticService;
use loadspec::analysis::{analyze, AnalysisConfig, CapacityAnalysis, StageSummary};
use loadspec::config::{PricesConfig, SlaConfig};

fn run(stages: &[StageSummary]) -> CapacityAnalysis {
    run_with(stages, &AnalysisConfig::default())
}

fn run_with(stages: &[StageSummary], cfg: &AnalysisConfig) -> CapacityAnalysis {
    let a = analyze(stages, &SlaConfig::default(), &PricesConfig::default(), cfg);
    let json = serde_json::to_string(&a).expect("serializes");
    let back: CapacityAnalysis = serde_json::from_str(&json).expect("parses back");
    // Floats may differ in the last bit after a JSON round trip; the structure may not.
    assert_eq!(back.points.len(), a.points.len());
    assert_eq!(back.recommendations.len(), a.recommendations.len());
    assert_eq!(back.knee.vus, a.knee.vus);
    assert_eq!(back.warnings, a.warnings);
    a
}

fn good(n: usize) -> Vec<StageSummary> {
    let vus: Vec<f64> = (1..=n).map(|v| v as f64).collect();
    SyntheticService::default().stages(&vus, 5)
}

#[test]
fn no_stages() {
    let a = run(&[]);
    assert!(a.recommendations.is_empty() && a.situations.is_empty());
    assert!(a.warnings.iter().any(|w| w.contains("no usable stage")));
    assert_eq!(a.knee.vus, None);
}

#[test]
fn one_stage_gives_a_ratio_model_through_the_origin() {
    let a = run(&good(2)[1..]);
    let cpu = a.models.cpu.as_ref().unwrap();
    assert_eq!(cpu.base, 0.0);
    assert!((cpu.slope - 0.25).abs() < 0.02);
    assert!(a
        .warnings
        .iter()
        .any(|w| w.contains("one distinct VU count")));
    assert!(!a.recommendations.is_empty());
    let ratio = a.models.ratio.as_ref().unwrap();
    assert_eq!(ratio.vus, 2.0);
}

#[test]
fn zero_tps_and_nan_everywhere() {
    let mut stages = good(4);
    for s in &mut stages {
        s.tps = 0.0;
        let l = s.latency.as_mut().expect("synthetic stages have latency");
        l.avg = f64::NAN;
        l.p95 = f64::INFINITY;
        s.containers[0].cpu_cores_avg = f64::NAN;
        s.groups.clear();
    }
    stages[0].vus = f64::NAN;
    stages[1].vus = 0.0;
    let a = run(&stages);
    assert_eq!(a.points.len(), 2);
    // Non-finite latencies are unknown, not 0 ms.
    assert!(a
        .points
        .iter()
        .all(|p| p.latency_avg.is_none() && p.latency_p95.is_none()));
    assert!(a.models.cpu.is_none() && a.models.tps.is_none());
    assert!(a.recommendations.is_empty());
    assert!(
        a.warnings.iter().any(|w| w.contains("TPS 0")),
        "{:?}",
        a.warnings
    );
    assert!(a.warnings.iter().any(|w| w.contains("VUs is NaN")));
    assert_eq!(a.sla_capacity.max_vus, None);
}

#[test]
fn no_containers_and_unknown_group() {
    let mut stages = good(5);
    for s in &mut stages {
        s.containers.clear();
        s.groups.clear();
    }
    let a = run(&stages);
    assert!(a.models.cpu.is_none() && a.models.memory.is_none());
    assert!(a.models.tps.is_some());
    assert!(a.warnings.iter().any(|w| w.contains("no container data")));
    assert!(a.warnings.iter().any(|w| w.contains("no recommendation")));

    let cfg = AnalysisConfig {
        group: Some("missing".into()),
        ..Default::default()
    };
    let a = run_with(&good(5), &cfg);
    assert!(a.models.cpu.is_none());
    assert!(
        a.warnings.iter().any(|w| w.contains("group missing")),
        "{:?}",
        a.warnings
    );
}

#[test]
fn repeated_vus_and_falling_tps() {
    let mut stages = good(3);
    stages.extend(good(3));
    stages.reverse();
    let a = run(&stages);
    assert_eq!(a.points.len(), 6);
    assert!(a.points.windows(2).all(|w| w[0].vus <= w[1].vus));
    assert!(a.models.cpu.is_some());

    let mut falling = good(4);
    for (i, s) in falling.iter_mut().enumerate() {
        s.tps = 100.0 / (i as f64 + 1.0);
    }
    let a = run(&falling);
    assert_eq!(a.knee.vus, Some(1.0));
}

#[test]
fn zero_limits_mean_unknown_utilization() {
    let mut stages = good(3);
    for s in &mut stages {
        s.containers[0].cpu_limit_cores = 0.0;
        s.containers[0].memory_limit_bytes = 0.0;
    }
    let a = run(&stages);
    assert!(a.points.iter().all(|p| p.cpu_utilization.is_none()));
    assert!(a.tested_spec.is_none());
}
