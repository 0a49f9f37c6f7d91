//! Configuration errors, shared by the validation of every config section (so a leaf: it
//! imports nothing of the crate). Every error names the field path (`scenarios[1].stages[0].target`),
//! the offending value where there is one, and the reason, so a user can fix the file without
//! reading the source.

use std::fmt;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path with indices, e.g. `scenarios[0].requests[1].body.files[0].path`.
    pub path: String,
    /// What the reader should change, e.g. `must be at least 1, got 0`.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Everything that can stop a config from loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("invalid config:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The same error with every secret replaced by `<redacted>`: a field's message may quote
    /// a URL or value that holds a token (issue: the token printed on stderr and logged on a
    /// failed reload).
    pub fn redact(self, secrets: &[String]) -> Self {
        let hide = |s: String| redact_text(s, secrets);
        match self {
            ConfigError::Read { path, source } => {
                // Keep the original error (its OS code too) unless its text holds a secret.
                let text = source.to_string();
                let hidden = hide(text.clone());
                ConfigError::Read {
                    path: hide(path),
                    source: if hidden == text {
                        source
                    } else {
                        std::io::Error::new(source.kind(), hidden)
                    },
                }
            }
            ConfigError::Parse(s) => ConfigError::Parse(hide(s)),
            ConfigError::Invalid(v) => ConfigError::Invalid(
                v.into_iter()
                    .map(|e| FieldError {
                        path: hide(e.path),
                        reason: hide(e.reason),
                    })
                    .collect(),
            ),
        }
    }
}

/// `text` with each secret (longest first, so one that contains another goes whole) replaced.
pub fn redact_text(mut text: String, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in sorted {
        if text.contains(s.as_str()) {
            text = text.replace(s.as_str(), "<redacted>");
        }
    }
    text
}

/// Collects field errors while validating, so one run reports every problem at once.
#[derive(Debug, Default)]
pub struct Errors {
    errors: Vec<FieldError>,
}

impl Errors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that `path` is wrong because of `reason`.
    pub fn add(&mut self, path: impl Into<String>, reason: impl fmt::Display) {
        self.errors.push(FieldError {
            path: path.into(),
            reason: reason.to_string(),
        });
    }

    /// How many errors so far; compare before and after a section to see if it failed.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Take over another collector's errors.
    pub fn extend(&mut self, other: Errors) {
        self.errors.extend(other.errors);
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else every recorded error.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid(self.errors))
        }
    }

    /// Checks shared by many fields: a number that must lie in a range.
    pub fn check_range(&mut self, path: &str, value: f64, min: f64, max: f64) {
        if !(value.is_finite() && value >= min && value <= max) {
            self.add(
                path,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    /// A count that must be at least `min`.
    pub fn check_min(&mut self, path: &str, value: u64, min: u64) {
        if value < min {
            self.add(path, format!("must be at least {min}, got {value}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_errors_keep_their_io_error_and_lose_only_secrets() {
        let e = ConfigError::Read {
            path: "/etc/x".into(),
            source: std::io::Error::from_raw_os_error(2),
        }
        .redact(&["sekrit".to_string()]);
        let source = std::error::Error::source(&e).expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.raw_os_error(), Some(2));
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        let e = ConfigError::Read {
            path: "/srv/sekrit/x".into(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no sekrit"),
        }
        .redact(&["sekrit".to_string()]);
        assert_eq!(
            e.to_string(),
            "cannot read config file /srv/<redacted>/x: no <redacted>"
        );
        let ConfigError::Read { source, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn errors_collect_with_their_paths() {
        let mut errs = Errors::new();
        errs.check_min("a.n", 0, 1);
        errs.check_range("a.f", f64::NAN, 0.0, 1.0);
        errs.check_range("a.g", 0.5, 0.0, 1.0);
        assert_eq!(errs.len(), 2);
        assert_eq!(
            errs.finish(()).unwrap_err().to_string(),
            "invalid config:\n  a.n: must be at least 1, got 0\n  a.f: must be between 0 and 1, got NaN"
        );
    }
}
