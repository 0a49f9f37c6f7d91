//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or
//! JSON lines. Stdout is kept for the summaries a user reads or a script parses.

use serde::{Deserialize, Serialize};

/// How log lines are written: `text` for people, `json` (one object a line) for collectors.
/// The `[log] format` config key and `--log-format` select it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Install the global subscriber; a second call (tests, reloads) is a no-op.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: escape codes in files and pipes break grep and parsers.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}
