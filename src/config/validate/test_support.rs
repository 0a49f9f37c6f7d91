//! What the unit tests of every part share: a config from TOML text, and the errors that
//! `validate` gives for it, one `path: reason` line each.

use std::path::Path;

use crate::config::raw::RawConfig;
use crate::config::{parse_raw, ConfigError};

/// A valid scenario with one request, to append steps or set fields after.
pub const SCENARIO: &str = r#"
[[scenarios]]
name = "s"
executor = "constant-vus"
duration = "1s"
vus = 1
[[scenarios.requests]]
name = "r"
url = "http://127.0.0.1:1/"
"#;

pub fn raw(text: &str) -> RawConfig {
    parse_raw(text, "test").expect("the test config parses")
}

/// The `path: reason` lines of validating `text` (relative files against `dir`); empty when
/// it is valid.
pub fn errors_in(text: &str, dir: &Path) -> Vec<String> {
    match super::validate(raw(text), dir) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(v)) => v.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("not a validation error: {e}"),
    }
}

pub fn errors_of(text: &str) -> Vec<String> {
    errors_in(text, Path::new("."))
}

/// [`SCENARIO`] with `fields` (TOML lines) set on the scenario itself.
pub fn scenario_with(fields: &str) -> String {
    SCENARIO.replace(
        "[[scenarios.requests]]",
        &format!("{fields}\n[[scenarios.requests]]"),
    )
}
