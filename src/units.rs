//! Byte sizes as people write them (`256MiB`, `1.5GB`, Docker's `1024m`) and as reports show
//! them (`1.5 GiB`), plus serde helpers so config fields accept either a number of bytes or a
//! size string.
//!
//! Parsing is [`ByteSize`]'s (SI `KB`/`MB`/`GB` are powers of 1000; `KiB`/`Ki`/`k` and friends
//! powers of 1024, as `docker run --memory` reads them), in [`size`].

use std::fmt;

use serde::{de, Deserializer, Serializer};

pub mod duration;
pub mod size;

pub use size::{ByteSize, SizeError};

const KIB: f64 = 1024.0;

/// Parse `256MiB`, `1.5 GB`, `1024m` or `4096` into bytes.
pub fn parse_bytes(input: &str) -> Result<u64, SizeError> {
    input.parse::<ByteSize>().map(ByteSize::bytes)
}

/// A number with at most three decimals and no trailing zeros: `1.50` → `1.5`, `2.00` → `2`.
pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Human form with binary units and at most two decimals: `768 MiB`, `1.5 GiB`, `512 B`.
pub fn format_bytes(bytes: f64) -> String {
    if !bytes.is_finite() {
        return "n/a".to_string();
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes;
    let mut i = 0;
    while v.abs() >= KIB && i + 1 < units.len() {
        v /= KIB;
        i += 1;
    }
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {}", units[i])
}

/// Serde helpers for a `u64` byte count that config files may write as a number of bytes or a
/// size string: `#[serde(with = "crate::units::bytes")]`. Serializes as a plain number so JSON
/// consumers need no parser.
pub mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(BytesVisitor)
    }
}

/// Like [`bytes`] for `Option<u64>`: `#[serde(default, with = "crate::units::opt_bytes")]`.
pub mod opt_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(OptBytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> de::Visitor<'de> for BytesVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte count or a size such as \"256MiB\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("size must not be negative, got {v}")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if v.is_finite() && v >= 0.0 && v <= u64::MAX as f64 {
            Ok(v.round() as u64)
        } else {
            Err(E::custom(format!("size must be 0 or more, got {v}")))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_bytes(v).map_err(E::custom)
    }
}

struct OptBytesVisitor;

impl<'de> de::Visitor<'de> for OptBytesVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("nothing, a byte count or a size such as \"256MiB\"")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        bytes::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_decimal_and_docker_units() {
        assert_eq!(parse_bytes("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("1024m").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("1.5 GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes(" 2g ").unwrap(), 2 << 30);
    }

    #[test]
    fn rejects_garbage_with_reason() {
        let e = parse_bytes("12 parsecs").unwrap_err();
        assert!(e.to_string().contains("unknown unit `parsecs`"), "{e}");
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("1.2.3MiB").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn formats_with_binary_units() {
        assert_eq!(format_bytes(768.0 * 1024.0 * 1024.0), "768 MiB");
        assert_eq!(format_bytes(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(f64::NAN), "n/a");
    }

    #[test]
    fn serde_accepts_number_or_string() {
        #[derive(serde::Deserialize)]
        struct S {
            #[serde(with = "bytes")]
            a: u64,
            #[serde(default, with = "opt_bytes")]
            b: Option<u64>,
        }
        let s: S = toml::from_str("a = \"256MiB\"\nb = 1024").unwrap();
        assert_eq!((s.a, s.b), (256 << 20, Some(1024)));
        let s: S = serde_json::from_str(r#"{"a": 10}"#).unwrap();
        assert_eq!((s.a, s.b), (10, None));
        assert!(toml::from_str::<S>("a = \"lots\"").is_err());
    }
}
