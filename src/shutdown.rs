//! Shutdown (in progress).
