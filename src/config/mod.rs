//! Configuration: raw serde types ([`raw`]), layered loading ([`load`]), and one validation
//! pass ([`validate`]) into typed [`Settings`] whose errors name the field path and reason.
pub mod duration;
pub mod error;
pub mod files;
pub mod load;
pub mod raw;
pub mod sla;
pub mod validate;

pub use error::{ConfigError, Errors, FieldError};
pub use load::{load, load_raw, parse_raw};
pub use sla::{PricesConfig, SlaConfig};
pub use validate::{redacted, validate, Settings};
