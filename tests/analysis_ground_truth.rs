//! The analysis recovers the known costs of a synthetic service: per-VU CPU, per-VU and base
//! memory within 15 %, the knee where the CPU limit is reached, and the max VUs within the SLA.

use loadspec::analysis::knee::KneeCriterion;
use loadspec::analysis::synthetic::SyntheticService;
use loadspec::analysis::{analyze, AnalysisConfig};
use loadspec::config::{PricesConfig, SlaConfig};

fn within(actual: f64, truth: f64, tol: f64) -> bool {
    ((actual - truth) / truth).abs() <= tol
}

fn vus(range: std::ops::RangeInclusive<u32>) -> Vec<f64> {
    range.map(f64::from).collect()
}

#[test]
fn recovers_per_vu_cpu_memory_and_knee_at_the_cpu_limit() {
    let svc = SyntheticService::default();
    assert_eq!(svc.saturation_vus(), 4.0);
    for seed in 0..20 {
        let stages = svc.stages(&vus(1..=8), seed);
        let a = analyze(
            &stages,
            &SlaConfig::default(),
            &PricesConfig::default(),
            &AnalysisConfig::default(),
        );
        let cpu = a.models.cpu.as_ref().expect("cpu model");
        assert!(
            within(cpu.slope, 0.25, 0.15),
            "seed {seed}: cpu/VU {}",
            cpu.slope
        );
        let mem = a.models.memory.as_ref().expect("memory model");
        assert!(
            within(mem.slope, 250e6, 0.15),
            "seed {seed}: mem/VU {}",
            mem.slope
        );
        assert!(
            within(mem.base, 700e6, 0.15),
            "seed {seed}: mem base {}",
            mem.base
        );
        assert_eq!(a.knee.vus, Some(4.0), "seed {seed}: {:?}", a.knee);
        assert!(
            a.knee.triggered_by.contains(&KneeCriterion::TpsPlateau),
            "seed {seed}: {:?}",
            a.knee
        );
        // One core at 85 %: 3 VUs use 0.75 cores, 4 VUs use all of it.
        assert_eq!(a.sla_capacity.max_vus, Some(3.0), "seed {seed}");
        assert!(
            within(a.knee.max_tps, 40.0, 0.05),
            "seed {seed}: {}",
            a.knee.max_tps
        );
        let tps = a.models.tps.as_ref().unwrap();
        assert!(
            within(tps.slope, 10.0, 0.05),
            "seed {seed}: TPS/VU {}",
            tps.slope
        );
        let per_tps = a.models.cpu_per_tps.as_ref().unwrap();
        assert!(
            within(per_tps.slope, 0.025, 0.25),
            "seed {seed}: cores/TPS {}",
            per_tps.slope
        );
    }
}

#[test]
fn every_criterion_agrees_on_a_clean_saturation() {
    let svc = SyntheticService {
        noise: 0.0,
        ..Default::default()
    };
    let a = analyze(
        &svc.stages(&vus(1..=8), 1),
        &SlaConfig::default(),
        &PricesConfig::default(),
        &AnalysisConfig::default(),
    );
    let mut got = a.knee.triggered_by.clone();
    got.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        got,
        vec![
            KneeCriterion::CpuUtilization,
            KneeCriterion::LatencyBend,
            KneeCriterion::TpsPlateau
        ]
    );
    assert_eq!(a.knee.stage.as_deref(), Some("T4"));
    let cpu = a.models.cpu.as_ref().unwrap();
    assert!((cpu.slope - 0.25).abs() < 1e-9 && cpu.base.abs() < 1e-9);
    assert!((cpu.r2.expect("R² of 3+ points") - 1.0).abs() < 1e-9);
    // Stages below the knee only: 1, 2 and 3 VUs.
    assert_eq!(a.models.fit_vus, vec![1.0, 2.0, 3.0]);
}

#[test]
fn cpu_base_and_a_group_of_containers() {
    // Two containers with 4 cores between them never saturate under 8 VUs: no knee, all
    // stages fitted, and the base CPU comes back.
    let svc = SyntheticService {
        cpu_base_cores: 0.2,
        cpu_limit_cores: 4.0,
        containers: 2,
        ..Default::default()
    };
    for (group, seed) in [(None, 7), (Some("app".to_string()), 8)] {
        let cfg = AnalysisConfig {
            group: group.clone(),
            ..Default::default()
        };
        let a = analyze(
            &svc.stages(&vus(1..=8), seed),
            &SlaConfig::default(),
            &PricesConfig::default(),
            &cfg,
        );
        let cpu = a.models.cpu.as_ref().unwrap();
        assert!(within(cpu.slope, 0.25, 0.15), "{group:?}: {}", cpu.slope);
        assert!(within(cpu.base, 0.2, 0.5), "{group:?}: base {}", cpu.base);
        assert_eq!(a.knee.vus, None, "{group:?}: {:?}", a.knee);
        assert_eq!(a.sla_capacity.max_vus, Some(8.0));
        assert_eq!(a.tested_spec.as_ref().unwrap().cpu_limit_cores, Some(4.0));
        assert!(
            a.warnings.iter().any(|w| w.contains("no knee")),
            "{:?}",
            a.warnings
        );
    }
}

#[test]
fn coarse_stages_still_place_the_knee_on_a_tested_stage() {
    // 2, 4, 6, 8 VUs with saturation at 5: TPS grows by half a VU's worth from 4 to 6, then
    // not at all; CPU crosses a 75 % SLA line at 4 (0.25 × 4 = 1.0 of 1.25 cores).
    let svc = SyntheticService {
        cpu_limit_cores: 1.25,
        noise: 0.01,
        ..Default::default()
    };
    let sla = SlaConfig {
        cpu_utilization: 0.75,
        ..Default::default()
    };
    let a = analyze(
        &svc.stages(&[2.0, 4.0, 6.0, 8.0], 3),
        &sla,
        &PricesConfig::default(),
        &AnalysisConfig::default(),
    );
    assert_eq!(a.knee.vus, Some(4.0), "{:?}", a.knee);
    assert_eq!(a.knee.triggered_by, vec![KneeCriterion::CpuUtilization]);
    assert!(a
        .knee
        .signals
        .iter()
        .any(|s| s.criterion == KneeCriterion::TpsPlateau && s.vus == 6.0));
    // The default target utilization 0.8 is above this SLA's 0.75: sized at 0.75, with a
    // warning.
    assert_eq!(a.target_utilization, 0.75);
    assert!(a.warnings.iter().any(|w| w.contains("target_utilization")));
}
