//! Layered loading: the TOML file, then `LOADSPEC__SECTION__KEY` environment variables, then
//! deserialization with the failing field's path in the error.

use std::path::Path;

use super::raw::RawConfig;
use super::validate::{validate, Settings};
use super::ConfigError;

/// Read, layer and deserialize the file; no validation beyond types and unknown keys.
pub fn load_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let read_err = |source: std::io::Error| ConfigError::Read {
        path: path.display().to_string(),
        source,
    };
    let bytes = crate::files::read_regular(path, crate::files::CONFIG_LIMIT).map_err(read_err)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let (line, col) = crate::files::line_col(e.as_bytes(), at);
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8: invalid byte at offset {at} (line {line}, column {col})"),
        ))
    })?;
    parse_raw(&text, &path.display().to_string())
}

/// Parse TOML text (layered with the environment) into the raw config.
pub fn parse_raw(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    // Parse once with `toml` first: its errors carry the line and column (an integer of 2^63
    // or more, nesting past its depth limit), which the `config` crate's message drops.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(ConfigError::Parse(format!("{origin}: {e}")));
    }
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("LOADSPEC")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .map_err(|e| ConfigError::Parse(format!("{origin}: {e}")))?;
    // Go through a JSON value so serde_path_to_error can name the failing field.
    let value: serde_json::Value = built
        .try_deserialize()
        .map_err(|e| ConfigError::Parse(format!("{origin}: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::Invalid(vec![super::FieldError {
            path: if path.is_empty() {
                origin.to_string()
            } else {
                path
            },
            reason: e.into_inner().to_string(),
        }])
    })
}

/// Load and validate a config file; relative paths in it resolve against its directory.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let raw = load_raw(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut s = validate(raw, dir)?;
    s.source = Some(path.to_path_buf());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_case_and_paths_are_named() {
        let raw = parse_raw(
            r#"
            [target]
            base_url = "http://127.0.0.1:1"
            headers = { "X-Trace-Id" = "abc" }
            [[scenarios]]
            name = "s"
            executor = "constant-vus"
            vus = 1
            duration = "1s"
            [[scenarios.requests]]
            name = "r"
            path = "/x"
            "#,
            "t",
        )
        .unwrap();
        assert!(
            raw.target.headers.contains_key("X-Trace-Id"),
            "{:?}",
            raw.target.headers
        );
        let err = parse_raw(
            r#"
            [[scenarios]]
            name = "s"
            executor = "constant-vus"
            vus = 1
            duration = "1s"
            bogus = 3
            "#,
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("scenarios[0]") && err.contains("bogus"),
            "{err}"
        );
    }
}
