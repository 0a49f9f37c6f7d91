//! experiment (in progress).
