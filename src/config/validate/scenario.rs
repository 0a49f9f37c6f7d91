//! One scenario: its schedule, its data set, its setup and request steps (names unique within
//! the scenario, variables defined before use) and its setup-failure policy; warnings for
//! combinations that are valid but probably not meant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::load_files::DataFileError;
use super::vars::Vars;
use super::{check_statuses, data::Table, fmt_dur, label_reason, valid_label};
use crate::config::raw::{RequestConfig, ScenarioConfig, TargetConfig};
use crate::config::Errors;
use crate::load::plan::{DataMode, DataSet, Scenario, SetupPolicy, Step};

/// What every step of every scenario is checked against.
pub(super) struct Ctx<'a> {
    pub target: &'a TargetConfig,
    /// `target.base_url` without its trailing `/`.
    pub base_url: Option<&'a str>,
    /// The multipart files' contents, from the load phase.
    pub bodies: &'a crate::load::body::FileContents,
}

/// The scenario at `path`, with `data` its data file from the load phase; None when it has
/// errors (all recorded).
pub(super) fn scenario(
    sc: &ScenarioConfig,
    path: &str,
    ctx: &Ctx<'_>,
    data: Option<Result<Table, DataFileError>>,
    errs: &mut Errors,
    warnings: &mut Vec<String>,
) -> Option<Scenario> {
    let schedule = super::schedule::schedule(sc, path, errs);
    if sc.requests.is_empty() {
        errs.add(
            format!("{path}.requests"),
            "at least one request is required",
        );
    }
    let mut vars = Vars::default();
    for (list, key) in [(&sc.setup, "setup"), (&sc.requests, "requests")] {
        for (i, r) in list.iter().enumerate() {
            for c in &r.captures {
                vars.defined_at
                    .entry(c.name.clone())
                    .or_insert_with(|| format!("{path}.{key}[{i}]"));
            }
        }
    }
    let data = sc
        .data
        .as_ref()
        .zip(data)
        .and_then(|(d, loaded)| match loaded {
            Err(e) => {
                errs.add(format!("{path}.data.file"), e);
                None
            }
            Ok(t) => Some(DataSet {
                vars: t
                    .columns
                    .iter()
                    .map(|c| {
                        vars.columns.push(c.clone());
                        vars.define(c)
                    })
                    .collect(),
                rows: t.rows,
                mode: d.mode,
            }),
        });
    let mut step_names = HashMap::new();
    let mut build = |list: &[RequestConfig], key: &str, vars: &mut Vars, errs: &mut Errors| {
        step_list(
            list,
            &format!("{path}.{key}"),
            ctx,
            &mut step_names,
            vars,
            errs,
        )
    };
    let setup = build(&sc.setup, "setup", &mut vars, errs);
    vars.section = 1;
    let steps = build(&sc.requests, "requests", &mut vars, errs);
    data_warnings(sc, path, &vars, warnings);
    let think_time = sc.think_time.unwrap_or_default();
    let setup_policy = setup_policy(sc, path, errs);
    Some(Scenario {
        name: sc.name.clone(),
        executor: sc.executor,
        start: sc.start.unwrap_or_default(),
        think_time,
        schedule: schedule?,
        setup,
        steps,
        var_names: vars.names,
        data,
        // Set by the caller from `[limits]`, which is not per scenario.
        limits: Default::default(),
        setup_policy,
        transport: Arc::default(),
    })
}

/// The steps of one list (`….setup` or `….requests` at `list_path`); `names` holds the step
/// names of the scenario so far, which must be unique across both lists.
fn step_list(
    list: &[RequestConfig],
    list_path: &str,
    ctx: &Ctx<'_>,
    names: &mut HashMap<String, String>,
    vars: &mut Vars,
    errs: &mut Errors,
) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let rp = format!("{list_path}[{i}]");
        if !valid_label(&r.name) {
            errs.add(format!("{rp}.name"), label_reason(&r.name));
        } else if let Some(prev) = names.insert(r.name.clone(), rp.clone()) {
            errs.add(
                format!("{rp}.name"),
                format!("{:?} is already used by {prev}", r.name),
            );
        }
        if let Some(s) = super::step::step(r, &rp, ctx, vars, errs) {
            out.push(s);
        }
    }
    out
}

/// Valid uses of a data file that are probably mistakes.
fn data_warnings(sc: &ScenarioConfig, path: &str, vars: &Vars, warnings: &mut Vec<String>) {
    let Some(d) = &sc.data else { return };
    let file = d.file.display();
    if d.mode == DataMode::RoundRobin && vars.uses_column.get() == [true, true] {
        warnings.push(format!(
            "{path}.data: mode = \"round-robin\" gives each iteration the next row of {file}, but setup runs once per VU with the VU's own row, so an iteration sends one row's columns with another row's login; use mode = \"per-vu\", or capture in setup what the iterations need"
        ));
    }
    let env = vars.from_env.borrow();
    if !env.is_empty() {
        let names: Vec<String> = env.iter().map(|n| format!("${{{n}}}")).collect();
        warnings.push(format!(
            "{path}: {} not a column of {file}; taken from the environment (a typo in the file's header row?)",
            names.join(", ") + if names.len() == 1 { " is" } else { " are" }
        ));
    }
}

/// The setup-failure and re-login policy of a scenario, with its limits.
fn setup_policy(sc: &ScenarioConfig, path: &str, errs: &mut Errors) -> SetupPolicy {
    let mut p = SetupPolicy::default();
    if let Some(r) = &sc.setup_retry {
        p.retries = r.max.unwrap_or(p.retries);
        p.backoff = r.backoff.unwrap_or(p.backoff);
    }
    p.on_failure = sc.on_setup_failure.unwrap_or_default();
    p.rerun_on = sc.rerun_setup_on.clone();
    p.max_reruns = sc.max_setup_reruns.unwrap_or(p.max_reruns);
    if p.retries > 100 {
        errs.add(
            format!("{path}.setup_retry.max"),
            format!("must be at most 100, got {}", p.retries),
        );
    }
    if p.backoff > Duration::from_secs(3600) {
        errs.add(
            format!("{path}.setup_retry.backoff"),
            format!("must be at most 1h, got {}", fmt_dur(p.backoff)),
        );
    }
    if p.max_reruns > 10_000 {
        errs.add(
            format!("{path}.max_setup_reruns"),
            format!("must be at most 10000, got {}", p.max_reruns),
        );
    }
    check_statuses(&p.rerun_on, &format!("{path}.rerun_setup_on"), errs);
    let configured = sc.setup_retry.is_some()
        || sc.on_setup_failure.is_some()
        || !sc.rerun_setup_on.is_empty()
        || sc.max_setup_reruns.is_some();
    if configured && sc.setup.is_empty() {
        errs.add(
            format!("{path}.setup"),
            "setup_retry, on_setup_failure, rerun_setup_on and max_setup_reruns need [[scenarios.setup]] steps",
        );
    }
    p
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_in, errors_of, raw, scenario_with, SCENARIO};

    #[test]
    fn step_names_are_unique_across_setup_and_requests() {
        let e = errors_of(&format!(
            "{SCENARIO}[[scenarios.setup]]\nname = \"r\"\nurl = \"http://h/\"\n[[scenarios.requests]]\nname = \"a b\"\nurl = \"http://h/\"\n"
        ));
        assert_eq!(
            e,
            vec![
                "scenarios[0].requests[0].name: \"r\" is already used by scenarios[0].setup[0]",
                "scenarios[0].requests[1].name: must be 1-64 characters of letters, digits, '-', '_' or '.', got \"a b\"",
            ]
        );
    }

    #[test]
    fn setup_policy_is_bounded_and_needs_setup_steps() {
        let e = errors_of(&scenario_with(
            "rerun_setup_on = [401, 700]\nmax_setup_reruns = 10001",
        ));
        assert_eq!(
            e,
            vec![
                "scenarios[0].max_setup_reruns: must be at most 10000, got 10001",
                "scenarios[0].rerun_setup_on[1]: must be an HTTP status 100-599, got 700",
                "scenarios[0].setup: setup_retry, on_setup_failure, rerun_setup_on and max_setup_reruns need [[scenarios.setup]] steps",
            ]
        );
    }

    #[test]
    fn data_file_errors_and_columns() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.csv"), "user\nal\n").unwrap();
        let with = |file: &str, url: &str| {
            SCENARIO.replace("url = \"http://127.0.0.1:1/\"", &format!("url = \"{url}\""))
                + &format!("[scenarios.data]\nfile = \"{file}\"\n")
        };
        let ok = with("d.csv", "http://h/${user}");
        assert!(errors_in(&ok, dir.path()).is_empty());
        let s = super::super::validate(raw(&ok), dir.path()).unwrap();
        assert_eq!(s.scenarios[0].var_names, vec!["user"]);
        let e = errors_in(&with("none.csv", "http://h/"), dir.path());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("scenarios[0].data.file: cannot read file "),
            "{e:?}"
        );
    }
}
