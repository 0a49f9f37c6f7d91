//! The common wall-clock start of a sharded run (`--start-at`, `LOADSPEC_START_AT`,
//! `experiment.start_at`) and the run's identity. Every shard maps its plan onto the same
//! timeline: a shard that starts early waits for the instant, and one that starts late joins in
//! phase, skipping the part of the plan that has already elapsed, instead of shifting it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How far ahead a start may be: a typo (milliseconds given as seconds) must not park the
/// daemon for years.
pub const MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// A start instant as written: unix seconds (`1796083200`, fractions allowed) or RFC 3339
/// (`2026-12-01T00:00:00Z`). `0` and the empty string mean "no common start" (the default
/// that the Kubernetes manifests ship before a run writes its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StartAt(pub SystemTime);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StartAtError {
    #[error("expected unix seconds (e.g. 1796083200) or RFC 3339 (e.g. 2026-12-01T00:00:00Z), got {0:?}")]
    Syntax(String),
    #[error("{0:?} is out of range")]
    Range(String),
    #[error("0 means no start; leave the key out instead")]
    Zero,
}

impl StartAt {
    /// Parse; `Ok(None)` for the "unset" spellings.
    pub fn parse(raw: &str) -> Result<Option<Self>, StartAtError> {
        let s = raw.trim();
        if s.is_empty() || s == "0" {
            return Ok(None);
        }
        if let Ok(secs) = s.parse::<f64>() {
            // Below 2001 or past 2200 is a unit mistake (milliseconds, or a duration).
            if !(1e9..=7.3e9).contains(&secs) {
                return Err(StartAtError::Range(s.to_string()));
            }
            return Ok(Some(Self(UNIX_EPOCH + Duration::from_secs_f64(secs))));
        }
        humantime::parse_rfc3339_weak(s)
            .map(|t| Some(Self(t)))
            .map_err(|_| StartAtError::Syntax(s.to_string()))
    }

    pub fn unix_seconds(&self) -> u64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Where `now` stands against the start: `Ahead(d)` to wait, `Behind(d)` already elapsed.
    pub fn offset_from(&self, now: SystemTime) -> Offset {
        match self.0.duration_since(now) {
            Ok(ahead) => Offset::Ahead(ahead),
            Err(e) => Offset::Behind(e.duration()),
        }
    }
}

/// The position of now relative to a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    Ahead(Duration),
    Behind(Duration),
}

impl TryFrom<String> for StartAt {
    type Error = StartAtError;
    fn try_from(s: String) -> Result<Self, StartAtError> {
        StartAt::parse(&s)?.ok_or(StartAtError::Zero)
    }
}

impl From<StartAt> for String {
    fn from(s: StartAt) -> String {
        humantime::format_rfc3339(s.0).to_string()
    }
}

impl std::str::FromStr for StartAt {
    type Err = StartAtError;
    fn from_str(s: &str) -> Result<Self, StartAtError> {
        StartAt::try_from(s.to_string())
    }
}

/// The run's identity, shared by every shard of one run: the configured id, else one derived
/// from the common start (so shards agree without talking), else the mode and run counter.
pub fn run_id(configured: Option<&str>, start: Option<StartAt>, mode: &str, runs: u64) -> String {
    match (configured, start) {
        (Some(id), _) => id.to_string(),
        (None, Some(s)) => format!("{mode}-{}", s.unix_seconds()),
        (None, None) => format!("{mode}-{runs}"),
    }
}

/// A run id is a label value and part of a folder name: 1–64 of `[A-Za-z0-9._-]`.
pub fn check_run_id(id: &str) -> Result<(), RunIdError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(ok) || id.starts_with('.') {
        return Err(RunIdError::Invalid(id.to_string()));
    }
    Ok(())
}

/// Why a run id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunIdError {
    #[error("must be 1 to 64 characters of A-Z a-z 0-9 . _ - (not starting with .), got {0:?}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_seconds_and_rfc3339_to_the_same_instant() {
        let a = StartAt::parse("1796083200").unwrap().unwrap();
        let b = StartAt::parse("2026-12-01T00:00:00Z").unwrap().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.unix_seconds(), 1_796_083_200);
        let frac = StartAt::parse("1796083200.5\n").unwrap().unwrap();
        assert_eq!(
            frac.0.duration_since(a.0).unwrap(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn zero_and_empty_mean_unset_and_nonsense_is_an_error() {
        assert_eq!(StartAt::parse("0\n"), Ok(None));
        assert_eq!(StartAt::parse(""), Ok(None));
        assert!(matches!(
            StartAt::parse("tomorrow"),
            Err(StartAtError::Syntax(_))
        ));
        // Milliseconds given as seconds.
        assert!(matches!(
            StartAt::parse("1796083200000"),
            Err(StartAtError::Range(_))
        ));
        assert!(matches!(StartAt::parse("-5"), Err(StartAtError::Range(_))));
    }

    #[test]
    fn offset_says_ahead_or_behind() {
        let s = StartAt::parse("1796083200").unwrap().unwrap();
        assert_eq!(
            s.offset_from(s.0 - Duration::from_secs(3)),
            Offset::Ahead(Duration::from_secs(3))
        );
        assert_eq!(
            s.offset_from(s.0 + Duration::from_secs(7)),
            Offset::Behind(Duration::from_secs(7))
        );
    }

    #[test]
    fn shards_of_one_start_share_a_run_id() {
        let s = StartAt::parse("1796083200").ok().flatten();
        assert_eq!(run_id(None, s, "plan", 1), run_id(None, s, "plan", 1));
        assert_eq!(run_id(None, s, "plan", 1), "plan-1796083200");
        assert_eq!(run_id(Some("nightly-42"), s, "plan", 1), "nightly-42");
        assert_eq!(run_id(None, None, "plan", 2), "plan-2");
    }

    #[test]
    fn run_ids_are_label_and_path_safe() {
        assert!(check_run_id("nightly-42.a_b").is_ok());
        for bad in ["", "../x", "a/b", "a b", ".hidden", &"x".repeat(65)] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
    }
}
