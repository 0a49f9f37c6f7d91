//! Durations as written in the config (`"30s"`, `"5m"`, humantime), bounded at parse time.
//!
//! Why a bound: a stage of `"500000000000y"` parses into a valid `Duration`, and adding it to an
//! `Instant` later panics in the executor and the observer. Every duration field goes through
//! this module (`#[serde(with = "crate::units::duration")]`), so the error names the field
//! (the loader reports serde's path) and no run-time arithmetic sees a value above [`MAX`].

use std::time::Duration;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration any field accepts: 366 days. A plan that needs more is several runs.
pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration or an optional one, as a field holds it.
pub trait Field: Sized {
    fn longest(&self) -> Option<Duration>;
}

impl Field for Duration {
    fn longest(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl Field for Option<Duration> {
    fn longest(&self) -> Option<Duration> {
        *self
    }
}

/// Serialize as humantime text.
pub fn serialize<T, S>(d: &T, s: S) -> Result<S::Ok, S::Error>
where
    for<'a> humantime_serde::Serde<&'a T>: Serialize,
    S: Serializer,
{
    humantime_serde::serialize(d, s)
}

/// Parse humantime text and refuse anything above [`MAX`].
pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: Field,
    humantime_serde::Serde<T>: Deserialize<'de>,
    D: Deserializer<'de>,
{
    let v: T = humantime_serde::deserialize(d)?;
    check(v.longest()).map_err(D::Error::custom)?;
    Ok(v)
}

/// Why a duration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("must be at most 366 days, got {}", humantime::format_duration(*.0))]
    TooLong(Duration),
}

/// `Err` with the reason when `d` is above [`MAX`].
pub fn check(d: Option<Duration>) -> Result<(), DurationError> {
    match d {
        Some(d) if d > MAX => Err(DurationError::TooLong(d)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct F {
        #[serde(with = "super")]
        d: Duration,
        #[serde(default, with = "super")]
        o: Option<Duration>,
    }

    #[test]
    fn bounds_every_duration() {
        let ok: F = serde_json::from_str(r#"{"d":"366d","o":"1s"}"#).unwrap();
        assert_eq!(ok.d, MAX);
        assert_eq!(ok.o, Some(Duration::from_secs(1)));
        for bad in ["500000000000y", "18446744073709551615s", "367d"] {
            let e = serde_json::from_str::<F>(&format!(r#"{{"d":"{bad}"}}"#))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("at most 366 days"), "{bad}: {e}");
            let e = serde_json::from_str::<F>(&format!(r#"{{"d":"1s","o":"{bad}"}}"#))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("at most 366 days"), "{bad}: {e}");
        }
    }
}
