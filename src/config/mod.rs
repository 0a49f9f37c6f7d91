//! Configuration: raw serde types, layered loading, and validation into typed settings.
pub mod error;
pub use error::{ConfigError, Errors, FieldError};
