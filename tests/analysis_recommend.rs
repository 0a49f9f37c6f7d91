//! Recommendation sizing, rounding, costs and situations, checked against hand-computed
//! figures and the seed document's tables.

use loadspec::analysis::recommend::SituationKind;
use loadspec::analysis::synthetic::SyntheticService;
use loadspec::analysis::{analyze, AnalysisConfig, CapacityAnalysis};
use loadspec::config::{PricesConfig, SlaConfig};

const MIB: u64 = 1 << 20;

/// Prices that give the seed's Seoul figures: 1 vCPU / 1.5 GiB at $0.0276 per hour.
fn seed_prices() -> PricesConfig {
    PricesConfig {
        vcpu_hour: 0.0195,
        memory_gib_hour: 0.0054,
        currency: "USD".into(),
    }
}

/// A seed-like service without noise: 15 TPS and 0.4 cores per VU (0.5 vCPU per VU at 80 %),
/// memory 700 MiB + 250 MiB per VU, one core: saturates at 2.5 VUs.
fn seed_like(cpu_limit: f64) -> CapacityAnalysis {
    let svc = SyntheticService {
        service_time: 1.0 / 15.0,
        cpu_seconds_per_request: 0.4 / 15.0,
        cpu_limit_cores: cpu_limit,
        memory_base_bytes: (700 * MIB) as f64,
        memory_bytes_per_vu: (250 * MIB) as f64,
        memory_limit_bytes: (4096 * MIB) as f64,
        noise: 0.0,
        ..Default::default()
    };
    let vus: Vec<f64> = (1..=6).map(f64::from).collect();
    analyze(
        &svc.stages(&vus, 1),
        &SlaConfig::default(),
        &seed_prices(),
        &AnalysisConfig::default(),
    )
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn rows_round_up_to_steps_and_reproduce_the_seed_baseline() {
    let a = seed_like(1.0);
    assert_eq!(a.sla_capacity.max_vus, Some(2.0));
    let row = |n: u32| a.recommendations.iter().find(|r| r.vus == n).unwrap();
    // (vus, cpus, memory MiB): cpus = 0.4 N / 0.8 up to 0.5; memory = (700 + 250 N) × 1.2 up
    // to 256 MiB.
    for (n, cpus, mib) in [
        (1, 0.5, 1280),
        (2, 1.0, 1536),
        (3, 1.5, 1792),
        (4, 2.0, 2048),
        (10, 5.0, 3840),
    ] {
        let r = row(n);
        assert_eq!(r.spec.cpus, cpus, "{n} VUs");
        assert_eq!(r.spec.memory_bytes, mib * MIB, "{n} VUs");
        assert!(
            close(r.expected_tps.unwrap(), 15.0 * f64::from(n), 1e-6),
            "{n}"
        );
        assert_eq!(r.extrapolated, n > 6, "{n}");
    }
    // The seed's stable line: 2 VUs → 1 vCPU / 1.5 GB, ~30 TPS, $0.0276/h, $0.00092 per TPS.
    let r = row(2);
    assert!(close(r.cost_per_hour, 0.0276, 1e-9), "{}", r.cost_per_hour);
    assert!(close(r.cost_per_month, 19.872, 1e-6));
    assert!(close(r.cost_per_tps_hour.unwrap(), 0.00092, 1e-9));
    assert_eq!(r.spec.to_string(), "1 vCPU / 1.5 GiB");
}

#[test]
fn seed_cost_table_prices() {
    let p = seed_prices();
    let gib = 1024.0 * 1024.0 * 1024.0;
    for (cpus, gb, hour, month) in [
        (0.5, 0.75, 0.0138, 9.94),
        (1.0, 1.5, 0.0276, 19.87),
        (2.0, 3.0, 0.0552, 39.74),
    ] {
        let h = p.cost_per_hour(cpus, gb * gib);
        assert!(close(h, hour, 1e-9), "{cpus}/{gb}: {h}");
        assert!(close(h * 720.0, month, 0.005), "{cpus}/{gb}: {}", h * 720.0);
    }
}

#[test]
fn cost_table_has_one_row_per_spec_and_marks_the_cheapest_per_tps() {
    let a = seed_like(1.0);
    let specs: Vec<_> = a.costs.iter().map(|c| c.spec).collect();
    for (i, s) in specs.iter().enumerate() {
        assert!(!specs[i + 1..].contains(s), "duplicate spec {s}");
    }
    assert_eq!(a.costs.iter().filter(|c| c.most_efficient).count(), 1);
    let best = a.costs.iter().find(|c| c.most_efficient).unwrap();
    assert!(!best.extrapolated);
    let min = a
        .costs
        .iter()
        .filter(|c| !c.extrapolated)
        .filter_map(|c| c.cost_per_tps_hour)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best.cost_per_tps_hour, Some(min));
    // Sorted by price.
    assert!(a
        .costs
        .windows(2)
        .all(|w| w[0].cost_per_hour <= w[1].cost_per_hour));
}

#[test]
fn situations_follow_the_seed() {
    let a = seed_like(1.0);
    let get = |k: SituationKind| a.situations.iter().find(|s| s.kind == k).unwrap();
    let stable = get(SituationKind::Stable);
    assert_eq!((stable.vus, stable.spec.cpus), (2, 1.0));
    assert_eq!(stable.spec.memory_bytes, 1536 * MIB);
    let hp = get(SituationKind::HighPerformance);
    assert_eq!(
        (hp.vus, hp.spec.cpus, hp.spec.memory_bytes),
        (4, 2.0, 2048 * MIB)
    );
    // 6 VUs at 95 %: 2.4 / 0.95 = 2.53 → 3 vCPU (the seed's 3 vCPU); memory
    // (700 + 1500) × 1.4 = 3080 → 3328 MiB.
    let burst = get(SituationKind::EventBurst);
    assert_eq!(
        (burst.vus, burst.spec.cpus, burst.spec.memory_bytes),
        (6, 3.0, 3328 * MIB)
    );
    // Scale out on the 2-VU baseline to the table's 10 VUs: 5 replicas.
    let so = get(SituationKind::ScaleOut);
    assert_eq!((so.replicas, so.vus, so.spec), (5, 10, stable.spec));
    assert!(close(so.cost_per_hour, 5.0 * stable.cost_per_hour, 1e-12));
    let auto = a.autoscaling.as_ref().unwrap();
    assert_eq!(auto.vus_per_replica, 2);
    assert_eq!(auto.cpu_utilization_target, 0.8);
    assert!(close(auto.tps_per_replica.unwrap(), 30.0, 1e-6));
}

#[test]
fn configured_replica_size_max_cpus_and_min_cpus() {
    let svc = SyntheticService {
        noise: 0.0,
        cpu_limit_cores: 8.0,
        ..Default::default()
    };
    let cfg = AnalysisConfig {
        vus: vec![1, 4, 20],
        replica_max_vus: Some(4),
        max_cpus: Some(4.0),
        min_cpus: 1.0,
        ..Default::default()
    };
    let vus: Vec<f64> = (1..=8).map(f64::from).collect();
    let a = analyze(
        &svc.stages(&vus, 1),
        &SlaConfig::default(),
        &PricesConfig::default(),
        &cfg,
    );
    // 0.25 cores / 0.8 = 0.3125 → 0.5, raised to min_cpus 1.
    assert_eq!(a.recommendations[0].spec.cpus, 1.0);
    // 20 VUs: 5 / 0.8 = 6.25 → 6.5 > max 4.
    let big = &a.recommendations[2];
    assert_eq!(big.spec.cpus, 6.5);
    assert!(big.exceeds_max_cpus && big.extrapolated);
    let so = a
        .situations
        .iter()
        .find(|s| s.kind == SituationKind::ScaleOut)
        .unwrap();
    assert_eq!((so.replicas, so.vus), (5, 20));
}
