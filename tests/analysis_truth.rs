//! The rules that keep a report from showing a wrong number, each on synthetic stages of a
//! service with known costs (`analysis::synthetic`): a spec saturated from its first stage,
//! an OOM kill, a dead target, a starved host, stages without responses and R² of too few
//! points. Expected values come from the service's configured costs, not from a run.

use loadspec::analysis::points::Exclusion;
use loadspec::analysis::synthetic::SyntheticService;
use loadspec::analysis::{
    analyze, AnalysisConfig, CapacityAnalysis, ContainerEvent, ContainerEventKind, HostCpu,
    StageSummary, TargetDown,
};
use loadspec::config::{PricesConfig, SlaConfig};
use loadspec::report::{render_json, render_markdown, tables, RunInfo};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn analyze_default(stages: &[StageSummary]) -> CapacityAnalysis {
    analyze(
        stages,
        &SlaConfig::default(),
        &PricesConfig::default(),
        &AnalysisConfig::default(),
    )
}

/// demo-target's default cost behind `--cpus 1`: 20 ms of CPU per request and nothing else, so
/// one VU alone keeps a core busy and the seed's T1 (10 VUs) is already at the limit.
fn seed_like() -> SyntheticService {
    SyntheticService {
        service_time: 0.02,
        cpu_seconds_per_request: 0.02,
        noise: 0.0,
        memory_limit_bytes: GIB,
        memory_base_bytes: 64e6,
        memory_bytes_per_vu: 2e6,
        ..SyntheticService::default()
    }
}

#[test]
fn saturated_from_the_first_stage_gives_lower_bounds_and_a_sweep() {
    let svc = seed_like();
    let stages = svc.stages(&[10.0, 50.0, 100.0, 200.0], 1);
    let a = analyze_default(&stages);
    assert_eq!(a.knee.vus, Some(10.0), "{:?}", a.knee);
    let lb = a.models.lower_bounds.as_ref().expect("lower bounds");
    assert!(lb.first_stage);
    assert_eq!(lb.stage, "T1");
    // The limit (1 core) over the first stage's VUs, and the TPS one core serves over them.
    let cores_per_vu = svc.cpu_limit_cores / 10.0;
    let tps_per_vu = svc.cpu_limit_cores / svc.cpu_seconds_per_request / 10.0;
    assert!((lb.cpu_cores_per_vu.unwrap() - cores_per_vu).abs() < 1e-9);
    assert!((lb.tps_per_vu - tps_per_vu).abs() < 1e-9);
    assert!(
        lb.describe().starts_with("≥ 0.1 cores/VU, ≥ 5 TPS/VU"),
        "{}",
        lb.describe()
    );
    assert!(lb
        .describe()
        .contains("the limit was reached at the first stage"));
    // Nothing per VU is derived from a capped stage.
    assert!(a.models.cpu.is_none() && a.models.tps.is_none() && a.models.ratio.is_none());
    assert!(a.recommendations.is_empty() && a.situations.is_empty());
    assert!(a.autoscaling.is_none() && a.costs.is_empty());
    // The sweep to run instead: 1 VU up to the first stage, at the tested spec.
    let snippet = a.sweep_suggestion.as_deref().expect("sweep snippet");
    assert!(snippet.contains("mode = \"sweep\""), "{snippet}");
    assert!(
        snippet.contains("vus = [1, 2, 3, 4, 5, 7, 10]"),
        "{snippet}"
    );
    let parsed: toml::Value = toml::from_str(snippet).expect("the snippet is valid TOML");
    assert_eq!(
        parsed["experiment"]["sweep"]["vus"][0].as_integer(),
        Some(1)
    );
    assert!(a
        .alerts
        .iter()
        .any(|w| w.starts_with("Saturated from the first stage")));
    let md = render_markdown(&RunInfo::new("t"), &stages, &a);
    assert!(
        md.contains("## Read this first") && md.contains("```toml"),
        "{md}"
    );
}

#[test]
fn a_spec_with_two_stages_below_the_knee_keeps_its_models() {
    // Default service: saturates at 4 VUs, so 1, 2, 3 lie below the knee.
    let stages = SyntheticService::default().stages(&[1.0, 2.0, 3.0, 4.0, 6.0], 3);
    let a = analyze_default(&stages);
    assert!(a.models.lower_bounds.is_none());
    assert!(a.models.cpu.is_some() && !a.recommendations.is_empty());
    assert!(a.sweep_suggestion.is_none());
}

fn oom(at: f64, limit: u64) -> ContainerEvent {
    ContainerEvent {
        container: "demo".into(),
        group: "app".into(),
        kind: ContainerEventKind::OomKill,
        at_seconds: at,
        at: None,
        memory_limit_bytes: limit,
        cpu_limit_cores: 1.0,
        after_load_seconds: None,
    }
}

#[test]
fn an_oom_kill_is_on_its_stage_and_caps_the_memory_recommendation() {
    let svc = SyntheticService {
        noise: 0.0,
        memory_limit_bytes: 4e9,
        ..SyntheticService::default()
    };
    let mut stages = svc.stages(&[1.0, 2.0, 3.0, 4.0, 6.0, 8.0], 1);
    // The 8-VU stage: killed with a 2 GiB limit (the model says 700 MB + 250 MB × 8 = 2.7 GB
    // would be needed, so the kill is consistent with the model, and below 8 VUs the model
    // asks for less than the limit).
    let limit = 2u64 << 30;
    stages[5].events.push(oom(3.2, limit));
    let cfg = AnalysisConfig {
        vus: vec![2, 6, 8, 10],
        headroom: 0.0,
        ..AnalysisConfig::default()
    };
    let a = analyze(
        &stages,
        &SlaConfig::default(),
        &PricesConfig::default(),
        &cfg,
    );
    assert_eq!(a.events.len(), 1);
    assert_eq!(a.events[0].stage, "T6");
    assert_eq!(a.events[0].vus, 8.0);
    let floor = a.oom.as_ref().expect("oom floor");
    assert_eq!((floor.vus, floor.memory_limit_bytes), (8.0, limit));
    // The OOM stage is not a measurement of the spec.
    let p = a.points.iter().find(|p| p.stage == "T6").unwrap();
    assert!(matches!(
        p.excluded,
        Some(Exclusion::ContainerEvent {
            kind: ContainerEventKind::OomKill,
            ..
        })
    ));
    let fitted: Vec<f64> = a
        .models
        .memory
        .as_ref()
        .unwrap()
        .points
        .iter()
        .map(|p| p.x)
        .collect();
    assert!(!fitted.contains(&8.0), "{fitted:?}");
    for r in &a.recommendations {
        if r.vus >= 8 {
            assert!(r.spec.memory_bytes > limit, "{r:?}");
            let note = r.oom_note.as_deref().expect("note");
            assert!(note.contains("OOM-killed at 8 VUs with 2 GiB"), "{note}");
        } else {
            assert!(r.oom_note.is_none(), "{r:?}");
        }
    }
    for s in &a.situations {
        if s.vus >= 8 && s.replicas == 1 {
            assert!(s.spec.memory_bytes > limit, "{s:?}");
        }
    }
    assert!(a
        .alerts
        .iter()
        .any(|w| w.starts_with("OOM kill of demo (group app) in stage T6 (8 VUs) at +3.2s")));
    assert!(a
        .alerts
        .iter()
        .any(|w| w.contains("2 GiB was not enough for 8 VUs")));
    let table = tables::stages(&stages, &a);
    let row = table.rows.iter().find(|r| r[0] == "T6").unwrap();
    assert!(
        row.last().unwrap().contains("OOM kill of demo at +3.2s"),
        "{row:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&RunInfo::new("t"), &stages, &a)).unwrap();
    assert_eq!(json["stages"][5]["events"][0]["kind"], "oom_kill");
    assert_eq!(json["analysis"]["events"][0]["stage"], "T6");
}

/// The default service without noise, at 1, 2, 3, 4 and 6 VUs (T1–T5): saturated at 4.
fn five_noiseless_stages() -> (SyntheticService, Vec<StageSummary>) {
    let svc = SyntheticService {
        noise: 0.0,
        ..SyntheticService::default()
    };
    let stages = svc.stages(&[1.0, 2.0, 3.0, 4.0, 6.0], 1);
    (svc, stages)
}

#[test]
fn a_container_stuck_at_its_memory_limit_is_named_and_a_late_kill_says_it_came_after_the_load() {
    let (svc, mut stages) = five_noiseless_stages();
    // T5: memory at 97 % of the limit for the whole window and no response, no event.
    let t5 = &mut stages[4];
    for r in t5.groups.iter_mut().chain(t5.containers.iter_mut()) {
        r.memory_bytes_avg = 0.97 * r.memory_limit_bytes;
        r.memory_bytes_max = r.memory_limit_bytes;
        r.memory_utilization = 0.97;
    }
    t5.latency = None;
    t5.tps = 0.0;
    let a = analyze_default(&stages);
    let stuck: Vec<&String> = a
        .alerts
        .iter()
        .filter(|w| w.contains("stuck at its memory limit"))
        .collect();
    assert_eq!(stuck.len(), 1, "{:?}", a.alerts);
    assert!(
        stuck[0].starts_with("Stage T5 (6 VUs): memory at 97 % of its limit"),
        "{}",
        stuck[0]
    );

    // The same stage with the kill the after-plan watch saw 1.2 s after the load ended: the
    // kill is the alert, with its timing, and the stuck alert is not repeated.
    let mut kill = oom(13.2, svc.memory_limit_bytes as u64);
    kill.after_load_seconds = Some(1.2);
    stages[4].events.push(kill);
    let a = analyze_default(&stages);
    assert!(
        a.alerts
            .iter()
            .all(|w| !w.contains("stuck at its memory limit")),
        "{:?}",
        a.alerts
    );
    assert!(
        a.alerts.iter().any(|w| {
            w.starts_with(
            "OOM kill of demo (group app) in stage T5 (6 VUs) at +13.2s, 1.2 s after the load ended"
        )
        }),
        "{:?}",
        a.alerts
    );
    let table = tables::stages(&stages, &a);
    let row = table.rows.iter().find(|r| r[0] == "T5").unwrap();
    assert!(
        row.last()
            .unwrap()
            .contains("OOM kill of demo at +13.2s, 1.2 s after the load ended"),
        "{row:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&RunInfo::new("t"), &stages, &a)).unwrap();
    assert_eq!(json["stages"][4]["events"][0]["after_load_seconds"], 1.2);
    assert!(json["stages"][3]["events"].as_array().unwrap().is_empty());
}

#[test]
fn a_dead_target_is_not_throughput() {
    let (svc, mut stages) = five_noiseless_stages();
    // The last stage: the target died; 30 000 connect failures a second, 2 s of responses.
    let last = stages.last_mut().unwrap();
    let ok = 80;
    let failed = 30_000 * 28;
    last.requests = ok + failed;
    last.errors = failed;
    last.tps = ok as f64 / last.window_seconds;
    last.request_rate = last.requests as f64 / last.window_seconds;
    last.error_ratio = failed as f64 / last.requests as f64;
    last.target_down = Some(TargetDown {
        from_seconds: 2.0,
        back_at_seconds: None,
        connect_failures: failed,
    });
    let a = analyze_default(&stages);
    let p = a.points.iter().find(|p| p.vus == 6.0).unwrap();
    assert_eq!(
        p.excluded,
        Some(Exclusion::TargetDown { from_seconds: 2.0 })
    );
    // Highest TPS is the saturated service's, not the failure rate.
    let max_tps = svc.cpu_limit_cores / svc.cpu_seconds_per_request;
    assert!(
        (a.knee.max_tps - max_tps).abs() < 1e-6,
        "{}",
        a.knee.max_tps
    );
    assert!(a.models.fit_vus.iter().all(|v| *v < 6.0));
    let table = tables::stages(&stages, &a);
    let row = table.rows.last().unwrap();
    let tps_col = table.headers.iter().position(|h| h == "TPS").unwrap();
    assert_eq!(row[tps_col], format!("{:.1}", ok as f64 / 30.0));
    assert_eq!(row[tps_col + 1], format!("{:.1}", last_rate(&stages)));
    assert!(
        row.last().unwrap().contains("target down from +2.0s"),
        "{row:?}"
    );
    assert!(a
        .alerts
        .iter()
        .any(|w| w.contains("target down from +2.0s")));
    let findings = tables::findings(&a).join("\n");
    assert!(findings.contains(&format!(
        "Highest TPS measured (successful requests): {max_tps:.1}"
    )));
}

fn last_rate(stages: &[StageSummary]) -> f64 {
    stages.last().unwrap().request_rate
}

#[test]
fn a_starved_host_is_told_apart_from_the_limit() {
    // The container's limit is 2 cores, so 0.25 cores/VU is reached at 8 VUs. At 3 and 4 VUs
    // the host had no idle CPU: the container got 0.5 cores, below its limit and unthrottled.
    let svc = SyntheticService {
        noise: 0.0,
        cpu_limit_cores: 2.0,
        ..SyntheticService::default()
    };
    let mut stages = svc.stages(&[1.0, 2.0, 3.0, 4.0, 5.0], 1);
    for s in &mut stages {
        s.host = Some(HostCpu {
            idle_ratio: 0.6,
            cpus: 4,
        });
    }
    for i in [2, 3] {
        let s = &mut stages[i];
        s.host = Some(HostCpu {
            idle_ratio: 0.02,
            cpus: 4,
        });
        // Starved: TPS capped by the 0.5 cores the host gave.
        s.tps = 0.5 / svc.cpu_seconds_per_request;
        for r in s.containers.iter_mut().chain(s.groups.iter_mut()) {
            r.cpu_cores_avg = 0.5;
            r.cpu_utilization = 0.25;
            r.cpu_throttled_ratio = 0.0;
        }
    }
    let starved_then = analyze_default(&stages);
    let flagged: Vec<&str> = starved_then
        .points
        .iter()
        .filter(|p| matches!(p.excluded, Some(Exclusion::StarvedHost { .. })))
        .map(|p| p.stage.as_str())
        .collect();
    assert_eq!(flagged, ["T3", "T4"]);
    // The plateau at 2–3 VUs is the host's; the fit uses 1, 2 and 5 VUs and finds the
    // configured 0.25 cores/VU.
    assert_ne!(starved_then.knee.vus, Some(2.0), "{:?}", starved_then.knee);
    let cpu = starved_then.models.cpu.as_ref().unwrap();
    assert!((cpu.slope - svc.cpu_per_vu()).abs() < 1e-9, "{cpu:?}");
    assert!(starved_then
        .alerts
        .iter()
        .any(|w| w.starts_with("Starved host in stage(s) T3 (3 VUs), T4 (4 VUs)")));
    let table = tables::stages(&stages, &starved_then);
    assert!(table.rows[2].last().unwrap().contains("starved host"));

    // On a host with just the limit's 2 CPUs the host is the limit: nothing to tell apart.
    let mut host_is_limit = stages.clone();
    for s in &mut host_is_limit {
        s.host.as_mut().unwrap().cpus = 2;
    }
    let a = analyze_default(&host_is_limit);
    assert!(a.points.iter().all(|p| p.excluded.is_none()));

    // The same low utilization while throttled is the limit, not the host.
    for s in &mut stages[2..4] {
        let s = &mut *s;
        for r in s.containers.iter_mut().chain(s.groups.iter_mut()) {
            r.cpu_throttled_ratio = 0.4;
        }
    }
    let throttled = analyze_default(&stages);
    assert!(throttled.points.iter().all(|p| p.excluded.is_none()));
    // A busy host under stages that kept scaling held nothing back: no knee, nothing left out.
    let mut scaling = svc.stages(&[1.0, 2.0, 3.0], 1);
    for s in &mut scaling {
        s.host = Some(HostCpu {
            idle_ratio: 0.02,
            cpus: 4,
        });
    }
    let a = analyze_default(&scaling);
    assert_eq!(a.knee.vus, None);
    assert!(a.points.iter().all(|p| p.excluded.is_none()));
    // And a busy host with the container at its limit is the limit reached.
    let mut at_limit = svc.stages(&[4.0, 8.0, 10.0], 1);
    for s in &mut at_limit {
        s.host = Some(HostCpu {
            idle_ratio: 0.0,
            cpus: 2,
        });
    }
    let a = analyze_default(&at_limit);
    let last = a.points.last().unwrap();
    assert!(last.cpu_utilization.unwrap() >= 0.85 && last.excluded.is_none());
}

#[test]
fn no_response_means_no_latency() {
    let mut stages = SyntheticService::default().stages(&[1.0, 2.0, 3.0], 1);
    let s = &mut stages[2];
    s.latency = None;
    s.tps = 0.0;
    s.errors = s.requests;
    s.error_ratio = 1.0;
    s.status = [("timeout".to_string(), s.requests)].into_iter().collect();
    let a = analyze_default(&stages);
    let p = &a.points[2];
    assert_eq!(
        (p.latency_avg, p.latency_p95, p.latency_max),
        (None, None, None)
    );
    let t = tables::stages(&stages, &a);
    let avg = t.headers.iter().position(|h| h == "Avg").unwrap();
    assert_eq!(&t.rows[2][avg..avg + 3], ["–", "–", "–"]);
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&RunInfo::new("t"), &stages, &a)).unwrap();
    assert!(json["stages"][2]["latency"].is_null());
    assert!(json["analysis"]["points"][2]["latency_p95"].is_null());
    assert!(a.sla_capacity.verdicts[2]
        .reasons
        .iter()
        .any(|r| r == "no successful responses"));
}

#[test]
fn r2_needs_three_points() {
    let stages = SyntheticService::default().stages(&[1.0, 2.0, 4.0, 8.0], 1);
    let a = analyze_default(&stages);
    // Below the knee at 4 VUs: 1 and 2 VUs, two points.
    assert_eq!(a.models.fit_vus, [1.0, 2.0]);
    assert_eq!(a.models.cpu.as_ref().unwrap().r2, None);
    let t = tables::models(&a);
    assert_eq!(t.rows[0][3], "–", "{:?}", t.rows[0]);
    // Memory uses all four stages and has an R².
    assert!(a.models.memory.as_ref().unwrap().r2.is_some());
    assert_ne!(t.rows[2][3], "–");
}
