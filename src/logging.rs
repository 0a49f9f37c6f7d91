//! Logging setup (in progress).
