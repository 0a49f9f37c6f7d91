//! Byte sizes as written in configs and flags (`8MiB`, `512KB`, `1024m`, `0`): parsing,
//! validation and display, so every size is read the same way and errors name the reason.

use std::fmt;
use std::str::FromStr;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// A number of bytes, parsed from a human size.
///
/// Units: `B`; SI `KB`/`MB`/`GB` (powers of 1000); binary `KiB`/`MiB`/`GiB`, Kubernetes-style
/// `Ki`/`Mi`/`Gi`, and Docker-style single letters `k`/`m`/`g` (powers of 1024, as in
/// `docker run --memory=1024m`). Units are case-insensitive, a space before the unit is allowed,
/// and the number may have a fraction (`1.5GiB`). A bare number is bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }
}

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("empty size; expected a number with an optional unit such as 8MiB")]
    Empty,
    #[error("`{0}` is not a number; expected a number with an optional unit such as 8MiB")]
    Number(String),
    #[error("unknown unit `{0}`; use B, KB, MB, GB, KiB, MiB or GiB")]
    Unit(String),
    #[error("`{0}` is too large (more than 2^64 bytes)")]
    TooLarge(String),
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SizeError::Empty);
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        if num.is_empty() {
            return Err(SizeError::Number(s.to_string()));
        }
        let unit = unit.trim();
        let mult = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "mb" => 1000 * 1000,
            "gb" => 1000 * 1000 * 1000,
            "k" | "ki" | "kib" => KIB,
            "m" | "mi" | "mib" => MIB,
            "g" | "gi" | "gib" => GIB,
            _ => return Err(SizeError::Unit(unit.to_string())),
        };
        // Whole numbers take the exact integer path; only fractions go through f64.
        let bytes = if let Ok(n) = num.parse::<u64>() {
            n.checked_mul(mult)
                .ok_or_else(|| SizeError::TooLarge(s.to_string()))?
        } else {
            let f: f64 = num
                .parse()
                .ok()
                .filter(|f: &f64| f.is_finite() && *f >= 0.0)
                .ok_or_else(|| SizeError::Number(num.to_string()))?;
            let b = (f * mult as f64).round();
            if b >= u64::MAX as f64 {
                return Err(SizeError::TooLarge(s.to_string()));
            }
            b as u64
        };
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly, so the output parses back to the
    /// same value (`8MiB`, `1536KiB`, `100B`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if b != 0 && b.is_multiple_of(size) {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{b}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases = [
            ("0", 0),
            ("100", 100),
            ("100B", 100),
            ("8MiB", 8 * MIB),
            ("8 mib", 8 * MIB),
            ("1024m", 1024 * MIB),
            ("512KB", 512_000),
            ("2GB", 2_000_000_000),
            ("1Gi", GIB),
            ("1.5GiB", GIB + GIB / 2),
            ("64KiB", 64 * KIB),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<ByteSize>(), Ok(ByteSize(want)), "{s}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!("".parse::<ByteSize>(), Err(SizeError::Empty));
        assert!(matches!("8XB".parse::<ByteSize>(), Err(SizeError::Unit(u)) if u == "XB"));
        assert!(matches!(
            "-1MiB".parse::<ByteSize>(),
            Err(SizeError::Number(_))
        ));
        assert!(matches!(
            "1.2.3MiB".parse::<ByteSize>(),
            Err(SizeError::Number(_))
        ));
        assert!(matches!(
            "99999999999GiB".parse::<ByteSize>(),
            Err(SizeError::TooLarge(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for b in [0, 1, 1000, 1024, 1536 * KIB, 8 * MIB, 3 * GIB] {
            let s = ByteSize(b).to_string();
            assert_eq!(s.parse::<ByteSize>(), Ok(ByteSize(b)), "{s}");
        }
        assert_eq!(ByteSize::mib(8).to_string(), "8MiB");
    }
}
