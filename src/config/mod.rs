//! Configuration: raw serde types ([`raw`]), layered loading ([`load`]), and one validation
//! pass ([`validate`]) into typed [`Settings`] whose errors name the field path and reason.
pub mod experiment;
pub mod load;
pub mod raw;
pub mod start;
pub mod validate;

pub use crate::config_error::{ConfigError, Errors, FieldError};
pub use crate::sla::{PricesConfig, SlaConfig};
pub use load::{load, load_raw, parse_raw};
pub use validate::{redacted, validate, Settings};
