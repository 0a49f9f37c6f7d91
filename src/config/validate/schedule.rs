//! A scenario's executor and its schedule fields into a `Schedule`: which fields each executor
//! requires, which it does not use, and the stages, each starting where the last one ended.

use std::time::Duration;

use crate::config::raw::ScenarioConfig;
use crate::config::Errors;
use crate::load::plan::{ExecutorKind, RateStage, Schedule, Stage, VuStage};

/// Which schedule fields an executor uses, so stray ones are reported.
fn check_unused(sc: &ScenarioConfig, path: &str, errs: &mut Errors) {
    use ExecutorKind::*;
    let k = sc.executor;
    let fields: [(&str, bool, &[ExecutorKind]); 11] = [
        ("vus", sc.vus.is_some(), &[ConstantVus, PerVuIterations]),
        (
            "duration",
            sc.duration.is_some(),
            &[ConstantVus, ConstantArrivalRate],
        ),
        ("iterations", sc.iterations.is_some(), &[PerVuIterations]),
        (
            "max_duration",
            sc.max_duration.is_some(),
            &[PerVuIterations],
        ),
        (
            "stages",
            !sc.stages.is_empty(),
            &[RampingVus, RampingArrivalRate],
        ),
        ("step", sc.step, &[RampingVus, RampingArrivalRate]),
        ("start_vus", sc.start_vus.is_some(), &[RampingVus]),
        ("rate", sc.rate.is_some(), &[ConstantArrivalRate]),
        ("start_rate", sc.start_rate.is_some(), &[RampingArrivalRate]),
        (
            "pre_allocated_vus",
            sc.pre_allocated_vus.is_some(),
            &[ConstantArrivalRate, RampingArrivalRate],
        ),
        (
            "graceful_ramp_down",
            sc.graceful_ramp_down.is_some(),
            &[RampingVus],
        ),
    ];
    for (name, set, allowed) in fields {
        if set && !allowed.contains(&k) {
            errs.add(
                format!("{path}.{name}"),
                format!("is not used by executor {}", k.as_str()),
            );
        }
    }
    let uses_rate = matches!(k, ConstantArrivalRate | RampingArrivalRate);
    if !uses_rate && (sc.time_unit.is_some() || sc.max_vus.is_some()) {
        let name = if sc.time_unit.is_some() {
            "time_unit"
        } else {
            "max_vus"
        };
        errs.add(
            format!("{path}.{name}"),
            format!("is not used by executor {}", k.as_str()),
        );
    }
}

fn required<T: Copy>(
    v: Option<T>,
    path: &str,
    field: &str,
    k: ExecutorKind,
    errs: &mut Errors,
) -> Option<T> {
    if v.is_none() {
        errs.add(
            format!("{path}.{field}"),
            format!("is required by executor {}", k.as_str()),
        );
    }
    v
}

fn nonzero_duration(
    d: Option<Duration>,
    path: &str,
    field: &str,
    k: ExecutorKind,
    errs: &mut Errors,
) -> Option<Duration> {
    let d = required(d, path, field, k, errs)?;
    if d.is_zero() {
        errs.add(format!("{path}.{field}"), "must be greater than 0s");
        return None;
    }
    Some(d)
}

/// The configured stages, each starting where the previous one ended (the first at `start`).
/// `target` checks one stage's target (reporting under its path) and converts it.
fn build_stages<T: Copy>(
    sc: &ScenarioConfig,
    path: &str,
    start: T,
    errs: &mut Errors,
    mut target: impl FnMut(f64, &str, &mut Errors) -> T,
) -> Vec<Stage<T>> {
    let mut from = start;
    let mut out = Vec::new();
    for (i, s) in sc.stages.iter().enumerate() {
        let sp = format!("{path}.stages[{i}]");
        if s.duration.is_zero() {
            errs.add(format!("{sp}.duration"), "must be greater than 0s");
        }
        let to = target(s.target, &sp, errs);
        out.push(Stage {
            name: s.name.clone().unwrap_or_else(|| format!("stage-{i}")),
            duration: s.duration,
            from,
            to,
            step: sc.step,
        });
        from = to;
    }
    out
}

/// The schedule of `sc` under `path`; None when one of its fields is wrong (each reported).
pub(super) fn schedule(sc: &ScenarioConfig, path: &str, errs: &mut Errors) -> Option<Schedule> {
    use ExecutorKind::*;
    check_unused(sc, path, errs);
    let before = errs.len();
    let sched = match sc.executor {
        ConstantVus => constant_vus(sc, path, errs),
        RampingVus => ramping_vus(sc, path, errs),
        ConstantArrivalRate | RampingArrivalRate => arrival(sc, path, errs),
        PerVuIterations => per_vu_iterations(sc, path, errs),
    };
    (errs.len() == before).then_some(sched)
}

fn constant_vus(sc: &ScenarioConfig, path: &str, errs: &mut Errors) -> Schedule {
    let k = sc.executor;
    let vus = required(sc.vus, path, "vus", k, errs);
    if let Some(v) = vus {
        errs.check_min(&format!("{path}.vus"), v, 1);
    }
    let d = nonzero_duration(sc.duration, path, "duration", k, errs);
    Schedule::Vus {
        stages: vec![VuStage {
            name: "steady".into(),
            duration: d.unwrap_or_default(),
            from: vus.unwrap_or(0),
            to: vus.unwrap_or(0),
            step: true,
        }],
        graceful_ramp_down: Duration::from_secs(30),
    }
}

fn ramping_vus(sc: &ScenarioConfig, path: &str, errs: &mut Errors) -> Schedule {
    if sc.stages.is_empty() {
        errs.add(
            format!("{path}.stages"),
            "ramping-vus needs at least one stage",
        );
    }
    let min = if sc.step { 1.0 } else { 0.0 };
    let stages = build_stages(sc, path, sc.start_vus.unwrap_or(0), errs, |t, sp, errs| {
        if !(t.is_finite() && t.fract() == 0.0 && t >= min) {
            errs.add(
                format!("{sp}.target"),
                if t.fract() != 0.0 {
                    format!("must be a whole number of VUs, got {t}")
                } else {
                    format!("must be at least {min}, got {t}")
                },
            );
        }
        t.max(0.0) as u64
    });
    Schedule::Vus {
        stages,
        graceful_ramp_down: sc.graceful_ramp_down.unwrap_or(Duration::from_secs(30)),
    }
}

/// Both arrival-rate executors: rates are per `time_unit` in the file, per second in the plan.
fn arrival(sc: &ScenarioConfig, path: &str, errs: &mut Errors) -> Schedule {
    let k = sc.executor;
    let unit = sc.time_unit.unwrap_or(Duration::from_secs(1));
    if unit.is_zero() {
        errs.add(format!("{path}.time_unit"), "must be greater than 0s");
    }
    let per_sec = |r: f64| {
        if unit.is_zero() {
            0.0
        } else {
            r / unit.as_secs_f64()
        }
    };
    let pre = required(sc.pre_allocated_vus, path, "pre_allocated_vus", k, errs).unwrap_or(1);
    errs.check_min(&format!("{path}.pre_allocated_vus"), pre, 1);
    let max = sc.max_vus.unwrap_or(pre);
    if max < pre {
        errs.add(
            format!("{path}.max_vus"),
            format!("must be at least pre_allocated_vus ({pre}), got {max}"),
        );
    }
    let stages = if k == ExecutorKind::ConstantArrivalRate {
        let rate = required(sc.rate, path, "rate", k, errs).unwrap_or(1.0);
        if !(rate.is_finite() && rate > 0.0) {
            errs.add(
                format!("{path}.rate"),
                format!("must be above 0, got {rate}"),
            );
        }
        let d = nonzero_duration(sc.duration, path, "duration", k, errs);
        vec![RateStage {
            name: "steady".into(),
            duration: d.unwrap_or_default(),
            from: per_sec(rate),
            to: per_sec(rate),
            step: true,
        }]
    } else {
        if sc.stages.is_empty() {
            errs.add(
                format!("{path}.stages"),
                "ramping-arrival-rate needs at least one stage",
            );
        }
        build_stages(
            sc,
            path,
            per_sec(sc.start_rate.unwrap_or(0.0)),
            errs,
            |t, sp, errs| {
                if !(t.is_finite() && t >= 0.0) {
                    errs.add(
                        format!("{sp}.target"),
                        format!("must be 0 or more, got {t}"),
                    );
                }
                per_sec(t.max(0.0))
            },
        )
    };
    Schedule::Arrival {
        stages,
        pre_allocated_vus: pre,
        max_vus: max,
    }
}

fn per_vu_iterations(sc: &ScenarioConfig, path: &str, errs: &mut Errors) -> Schedule {
    let k = sc.executor;
    let vus = required(sc.vus, path, "vus", k, errs).unwrap_or(1);
    errs.check_min(&format!("{path}.vus"), vus, 1);
    let iterations = required(sc.iterations, path, "iterations", k, errs).unwrap_or(1);
    errs.check_min(&format!("{path}.iterations"), iterations, 1);
    let max_duration = sc.max_duration.unwrap_or(Duration::from_secs(600));
    if max_duration.is_zero() {
        errs.add(format!("{path}.max_duration"), "must be greater than 0s");
    }
    Schedule::PerVuIterations {
        vus,
        iterations,
        max_duration,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::raw;
    use super::*;

    /// The schedule of the first scenario of `text` (None on errors) and its `path: reason`
    /// error lines.
    fn checked(text: &str) -> (Option<Schedule>, Vec<String>) {
        let raw = raw(text);
        let mut errs = Errors::new();
        let s = schedule(&raw.scenarios[0], "sc", &mut errs);
        match errs.finish(()) {
            Ok(()) => (s, Vec::new()),
            Err(crate::config::ConfigError::Invalid(v)) => {
                (s, v.iter().map(ToString::to_string).collect())
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// The schedule of a valid `text`.
    fn sched(text: &str) -> Schedule {
        let (s, e) = checked(text);
        assert_eq!(e, Vec::<String>::new());
        s.expect("no errors, so a schedule")
    }

    /// The error lines of an invalid `text`.
    fn errors(text: &str) -> Vec<String> {
        let e = checked(text).1;
        assert!(!e.is_empty(), "valid: {text}");
        e
    }

    const HEAD: &str = "[[scenarios]]\nname = \"s\"\n";

    #[test]
    fn missing_and_unused_fields_are_named() {
        let e = errors(&format!("{HEAD}executor = \"constant-vus\"\nrate = 3.0\n"));
        assert_eq!(
            e,
            vec![
                "sc.rate: is not used by executor constant-vus",
                "sc.vus: is required by executor constant-vus",
                "sc.duration: is required by executor constant-vus",
            ]
        );
    }

    #[test]
    fn ramping_stages_chain_and_check_their_targets() {
        let s = sched(&format!(
            "{HEAD}executor = \"ramping-vus\"\nstart_vus = 2\n[[scenarios.stages]]\nduration = \"1s\"\ntarget = 5\n[[scenarios.stages]]\nduration = \"2s\"\ntarget = 1\n"
        ));
        let Schedule::Vus { stages, .. } = s else {
            panic!("{s:?}")
        };
        assert_eq!(
            stages.iter().map(|s| (s.from, s.to)).collect::<Vec<_>>(),
            vec![(2, 5), (5, 1)]
        );
        let e = errors(&format!(
            "{HEAD}executor = \"ramping-vus\"\n[[scenarios.stages]]\nduration = \"0s\"\ntarget = 1.5\n"
        ));
        assert_eq!(
            e,
            vec![
                "sc.stages[0].duration: must be greater than 0s",
                "sc.stages[0].target: must be a whole number of VUs, got 1.5",
            ]
        );
    }

    #[test]
    fn arrival_rates_are_per_second_and_max_vus_is_at_least_pre_allocated() {
        let s = sched(&format!(
            "{HEAD}executor = \"constant-arrival-rate\"\nrate = 30.0\ntime_unit = \"1m\"\nduration = \"1s\"\npre_allocated_vus = 2\n"
        ));
        let Schedule::Arrival {
            stages, max_vus, ..
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!((stages[0].from, max_vus), (0.5, 2));
        let e = errors(&format!(
            "{HEAD}executor = \"ramping-arrival-rate\"\npre_allocated_vus = 3\nmax_vus = 2\n"
        ));
        assert_eq!(
            e,
            vec![
                "sc.max_vus: must be at least pre_allocated_vus (3), got 2",
                "sc.stages: ramping-arrival-rate needs at least one stage",
            ]
        );
    }

    #[test]
    fn per_vu_iterations_needs_counts_of_at_least_one() {
        let e = errors(&format!(
            "{HEAD}executor = \"per-vu-iterations\"\nvus = 0\niterations = 0\n"
        ));
        assert_eq!(
            e,
            vec![
                "sc.vus: must be at least 1, got 0",
                "sc.iterations: must be at least 1, got 0",
            ]
        );
    }
}
