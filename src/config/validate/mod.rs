//! One `validate()` from the raw file to typed [`Settings`]. Every error names the field path,
//! the value and the reason; all errors are collected so one run shows them all.
//!
//! The parts, by job:
//! - [`sections`]: the plain sections (`[server]`, `[limits]`, `[lifecycle]`, `[log]`,
//!   `[metrics]`) and the VU ceiling;
//! - [`target`]: `[target]`, URLs and the transport (TLS, HTTP version);
//! - [`schedule`]: a scenario's executor fields into a `Schedule`;
//! - [`scenario`]: one scenario (names, variables, setup policy) and its steps;
//! - [`step`]: one request (method, URL, headers and auth, body, captures);
//! - [`vars`]: which `${name}` a step may use;
//! - [`load_files`]: the load phase, the only part that reads files: data files (which
//!   [`data`] parses and checks), multipart files and the TLS PEM files;
//! - [`redact`]: secrets, hidden from errors and from the printed config.
//!
//! Request bodies are built by `load::body::build`, called per step with the files' contents.

pub(crate) mod data;
pub(crate) mod load_files;
mod redact;
mod scenario;
mod schedule;
mod sections;
mod step;
mod target;
mod vars;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::raw::RawConfig;
use super::{ConfigError, Errors};
use crate::load::plan::{Scenario, ScenarioRef};

pub use redact::{redacted, secrets, SENSITIVE_HEADERS};

/// The validated configuration: the raw file (for printing and for sections that need no
/// conversion) and the typed plan.
#[derive(Debug, Clone)]
pub struct Settings {
    pub raw: RawConfig,
    pub scenarios: Vec<ScenarioRef>,
    /// The file it came from, for reloads.
    pub source: Option<PathBuf>,
    /// Valid but probably not meant: printed by `validate`, logged by `run`.
    pub warnings: Vec<String>,
}

/// Validate `raw`; relative file paths resolve against `base_dir`.
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Settings, ConfigError> {
    let secrets = secrets(&raw);
    validate_inner(raw, base_dir).map_err(|e| e.redact(&secrets))
}

fn validate_inner(raw: RawConfig, base_dir: &Path) -> Result<Settings, ConfigError> {
    let mut errs = Errors::new();
    sections::validate(&raw, &mut errs);
    let base_url = target::base_url(&raw.target, &mut errs);
    if raw.scenarios.is_empty() {
        errs.add("scenarios", "at least one scenario is required");
    }
    // Every file is read here, before the transport or any scenario is built and long before
    // anything starts; a file's error is recorded where the checks of the part that uses it
    // reach it (the TLS keys, its scenario, its step), so the errors keep the config's order.
    let load_files::Loaded {
        tls,
        mut data,
        bodies,
    } = load_files::load(&raw, base_dir);
    let transport = Arc::new(target::transport(&raw, &tls, &mut errs));
    let ctx = scenario::Ctx {
        target: &raw.target,
        base_url: base_url.as_deref(),
        bodies: &bodies,
    };
    let mut names = HashMap::new();
    let mut scenarios = Vec::new();
    let mut warnings = Vec::new();
    for (i, sc) in raw.scenarios.iter().enumerate() {
        let path = format!("scenarios[{i}]");
        if !valid_label(&sc.name) {
            errs.add(format!("{path}.name"), label_reason(&sc.name));
        } else if let Some(prev) = names.insert(sc.name.clone(), i) {
            errs.add(
                format!("{path}.name"),
                format!("{:?} is already used by scenarios[{prev}]", sc.name),
            );
        }
        if let Some(mut s) =
            scenario::scenario(sc, &path, &ctx, data[i].take(), &mut errs, &mut warnings)
        {
            s.limits = crate::load::http1::Limits::from_config(&raw.limits);
            scenarios.push(Arc::new(Scenario {
                transport: transport.clone(),
                ..s
            }));
        }
    }
    errs.finish(Settings {
        raw,
        scenarios,
        source: None,
        warnings,
    })
}

fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A scenario, step or column name: it becomes a label value and a variable name.
fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why `name` is not a [`valid_label`].
fn label_reason(name: &str) -> String {
    format!("must be 1-64 characters of letters, digits, '-', '_' or '.', got {name:?}")
}

/// Every entry of the list at `field` is an HTTP status.
fn check_statuses(codes: &[u16], field: &str, errs: &mut Errors) {
    for (i, c) in codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            errs.add(
                format!("{field}[{i}]"),
                format!("must be an HTTP status 100-599, got {c}"),
            );
        }
    }
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::test_support::{errors_of, SCENARIO};
    use super::*;

    #[test]
    fn names_and_statuses_are_checked_with_their_paths() {
        assert!(valid_label("a-b_c.1"));
        assert!(!valid_label("") && !valid_label("a b") && !valid_label(&"x".repeat(65)));
        let mut errs = Errors::new();
        check_statuses(&[200, 99, 600], "x.expect", &mut errs);
        let e = errs.finish(()).unwrap_err().to_string();
        assert!(
            e.contains("x.expect[1]: must be an HTTP status 100-599, got 99"),
            "{e}"
        );
        assert!(
            e.contains("x.expect[2]: must be an HTTP status 100-599, got 600"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_scenario_names_and_no_scenarios_are_errors() {
        let twice = format!("{SCENARIO}{SCENARIO}");
        let e = errors_of(&twice);
        assert!(
            e.contains(&"scenarios[1].name: \"s\" is already used by scenarios[0]".to_string()),
            "{e:?}"
        );
        let e = errors_of("[target]\nbase_url = \"http://127.0.0.1:1\"\n");
        assert_eq!(
            e,
            vec!["scenarios: at least one scenario is required".to_string()]
        );
    }

    #[test]
    fn errors_hide_secrets() {
        let cfg = format!(
            "[target]\nbearer_token = \"sekrit-42\"\n{SCENARIO}\n[[scenarios.requests]]\nname = \"bad\"\nurl = \"ftp://h/sekrit-42\"\n"
        );
        let e = errors_of(&cfg);
        assert_eq!(
            e,
            vec![
                "scenarios[0].requests[1].url: scheme must be http or https, got \"ftp\" in \"ftp://h/<redacted>\""
                    .to_string()
            ]
        );
    }
}
