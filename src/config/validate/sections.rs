//! The sections that need no conversion, checked in place: `[sla]`, `[prices]`,
//! `[containers]`, `[analysis]` and `[experiment]` (each by the module that owns it),
//! `[server]`, `[limits]` with the VU ceiling every VU count is held to, `[lifecycle]`, `[log]`
//! and `[metrics]`.

use std::time::Duration;

use super::fmt_dur;
use crate::config::raw::RawConfig;
use crate::config::Errors;
use crate::load::plan::ExecutorKind;

/// Bounds of the `[limits]` keys themselves, so a limit cannot be turned off by accident.
const MAX_VUS_CEILING: u64 = 1_000_000;

/// Every section check, in the order the errors are listed.
pub(super) fn validate(raw: &RawConfig, errs: &mut Errors) {
    raw.sla.validate("sla", errs);
    raw.prices.validate("prices", errs);
    raw.containers.validate("containers", errs);
    raw.analysis.validate("analysis", errs);
    raw.analysis.validate_with_sla("analysis", &raw.sla, errs);
    let names: Vec<String> = raw.scenarios.iter().map(|s| s.name.clone()).collect();
    let docker = raw.containers.source == crate::containers::SourceKind::Docker;
    raw.experiment.validate("experiment", &names, docker, errs);
    validate_server(raw, errs);
    validate_limits(raw, errs);
    check_vu_ceiling(raw, errs);
    if raw.lifecycle.drain_timeout.is_zero() {
        errs.add("lifecycle.drain_timeout", "must be greater than 0s");
    }
    if raw.lifecycle.exit_grace > Duration::from_secs(600) {
        errs.add("lifecycle.exit_grace", "must be at most 10m");
    }
    if raw.log.progress_interval < Duration::from_millis(100) {
        errs.add(
            "log.progress_interval",
            format!(
                "must be at least 100ms, got {}",
                fmt_dur(raw.log.progress_interval)
            ),
        );
    }
    if raw.target.timeout.is_zero() {
        errs.add("target.timeout", "must be greater than 0s");
    }
    validate_buckets(&raw.metrics.buckets, errs);
}

fn validate_server(raw: &RawConfig, errs: &mut Errors) {
    let srv = &raw.server;
    if !(1..=4096).contains(&srv.max_connections) {
        errs.add(
            "server.max_connections",
            format!("must be between 1 and 4096, got {}", srv.max_connections),
        );
    }
    for (name, d) in [
        ("server.header_read_timeout", srv.header_read_timeout),
        ("server.idle_timeout", srv.idle_timeout),
    ] {
        if d.is_zero() {
            errs.add(name, "must be greater than 0s");
        }
    }
}

/// The `[limits]` keys themselves.
fn validate_limits(raw: &RawConfig, errs: &mut Errors) {
    let l = &raw.limits;
    if !(1..=MAX_VUS_CEILING).contains(&l.max_vus) {
        errs.add(
            "limits.max_vus",
            format!("must be between 1 and {MAX_VUS_CEILING}, got {}", l.max_vus),
        );
    }
    if !(1024..=16 * 1024 * 1024).contains(&l.max_response_head) {
        errs.add(
            "limits.max_response_head",
            format!(
                "must be between 1KiB and 16MiB, got {} bytes",
                l.max_response_head
            ),
        );
    }
    if !(16..=8192).contains(&l.max_response_headers) {
        errs.add(
            "limits.max_response_headers",
            format!(
                "must be between 16 and 8192, got {}",
                l.max_response_headers
            ),
        );
    }
    if !(1024..=1024 * 1024 * 1024).contains(&l.max_capture_body) {
        errs.add(
            "limits.max_capture_body",
            format!(
                "must be between 1KiB and 1GiB, got {} bytes",
                l.max_capture_body
            ),
        );
    }
    if l.connect_backoff_min.is_zero() {
        errs.add("limits.connect_backoff_min", "must be greater than 0s");
    }
    if l.connect_backoff_max < l.connect_backoff_min {
        errs.add(
            "limits.connect_backoff_max",
            format!(
                "must be at least limits.connect_backoff_min ({}), got {}",
                fmt_dur(l.connect_backoff_min),
                fmt_dur(l.connect_backoff_max)
            ),
        );
    }
}

/// Every field that asks for VUs, against `limits.max_vus`: each VU costs memory and a socket,
/// and a typo of 4294967296 would otherwise allocate until the machine runs out.
fn check_vu_ceiling(raw: &RawConfig, errs: &mut Errors) {
    let max = raw.limits.max_vus;
    let mut check = |path: String, v: f64| {
        if v > max as f64 {
            errs.add(
                path,
                format!("must be at most limits.max_vus ({max}), got {v}; raise limits.max_vus to allow more"),
            );
        }
    };
    for (i, sc) in raw.scenarios.iter().enumerate() {
        let p = format!("scenarios[{i}]");
        for (name, v) in [
            ("vus", sc.vus),
            ("start_vus", sc.start_vus),
            ("pre_allocated_vus", sc.pre_allocated_vus),
            ("max_vus", sc.max_vus),
        ] {
            if let Some(v) = v {
                check(format!("{p}.{name}"), v as f64);
            }
        }
        if sc.executor == ExecutorKind::RampingVus {
            for (j, st) in sc.stages.iter().enumerate() {
                check(format!("{p}.stages[{j}].target"), st.target);
            }
        }
    }
    for (i, v) in raw.experiment.sweep.vus.iter().enumerate() {
        check(format!("experiment.sweep.vus[{i}]"), *v as f64);
    }
    check(
        "experiment.search.vus".into(),
        raw.experiment.search.vus as f64,
    );
}

fn validate_buckets(b: &[f64], errs: &mut Errors) {
    if b.is_empty() {
        errs.add("metrics.buckets", "must list at least one bucket");
    }
    for (i, w) in b.windows(2).enumerate() {
        if w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater) {
            errs.add(
                format!("metrics.buckets[{}]", i + 1),
                format!(
                    "must be greater than the previous bucket {}, got {}",
                    w[0], w[1]
                ),
            );
        }
    }
    if let Some(first) = b.first() {
        if !(first.is_finite() && *first > 0.0) {
            errs.add(
                "metrics.buckets[0]",
                format!("must be above 0, got {first}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_of, SCENARIO};

    #[test]
    fn server_limits_and_lifecycle_name_their_keys() {
        let e = errors_of(&format!(
            "[server]\nmax_connections = 0\n[limits]\nmax_vus = 2\nconnect_backoff_min = \"2s\"\nconnect_backoff_max = \"1s\"\n[lifecycle]\nexit_grace = \"11m\"\n[log]\nprogress_interval = \"10ms\"\n{SCENARIO}"
        ));
        for want in [
            "server.max_connections: must be between 1 and 4096, got 0",
            "limits.connect_backoff_max: must be at least limits.connect_backoff_min (2s), got 1s",
            "lifecycle.exit_grace: must be at most 10m",
            "log.progress_interval: must be at least 100ms, got 10ms",
        ] {
            assert!(e.iter().any(|l| l == want), "{want} not in {e:?}");
        }
    }

    #[test]
    fn every_vu_count_is_held_to_max_vus() {
        // The default sweep and search go up to 10 VUs.
        let e = errors_of(&format!("[limits]\nmax_vus = 10\n{SCENARIO}"));
        assert!(e.is_empty(), "{e:?}");
        let sc = SCENARIO.replace("vus = 1", "vus = 11");
        let e = errors_of(&format!("[limits]\nmax_vus = 10\n{sc}"));
        assert_eq!(
            e,
            vec!["scenarios[0].vus: must be at most limits.max_vus (10), got 11; raise limits.max_vus to allow more"]
        );
    }

    #[test]
    fn buckets_must_rise_from_above_zero() {
        let e = errors_of(&format!("[metrics]\nbuckets = [0.0, 0.5, 0.5]\n{SCENARIO}"));
        assert_eq!(
            e,
            vec![
                "metrics.buckets[2]: must be greater than the previous bucket 0.5, got 0.5",
                "metrics.buckets[0]: must be above 0, got 0",
            ]
        );
        let e = errors_of(&format!("[metrics]\nbuckets = []\n{SCENARIO}"));
        assert_eq!(e, vec!["metrics.buckets: must list at least one bucket"]);
    }
}
