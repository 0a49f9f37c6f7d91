//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or
//! JSON lines. Stdout is kept for the summaries a user reads or a script parses.

use std::io::Write;
use std::sync::OnceLock;

use indicatif::MultiProgress;
use serde::{Deserialize, Serialize};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// How log lines are written: `text` for people, `json` (one object a line) for collectors.
/// The `[log] format` config key and `--log-format` select it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What the command line says about the log besides its format.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    /// `--quiet`: errors only, whatever `RUST_LOG` says.
    pub quiet: bool,
    /// `--no-color` or `NO_COLOR`: no escape codes even at a terminal.
    pub no_color: bool,
    /// Progress bars are drawn on stderr: write log lines above them.
    pub bars: bool,
}

/// Install the global subscriber; a second call (tests, reloads) is a no-op.
pub fn init(format: LogFormat) {
    init_with(format, LogOptions::default());
}

/// [`init`] with the command line's options.
pub fn init_with(format: LogFormat, opts: LogOptions) {
    let filter = if opts.quiet {
        tracing_subscriber::EnvFilter::new("error")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    // Colour only on a terminal: escape codes in files and pipes break grep and parsers.
    let color = use_color(
        opts.no_color,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let writer = if opts.bars {
        BoxMakeWriter::new(|| LogWriter)
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(color)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}

/// Colour on a stream: a terminal, no `--no-color`, and `NO_COLOR` unset or empty
/// (<https://no-color.org>).
pub fn use_color(no_color_flag: bool, is_terminal: bool) -> bool {
    let env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    is_terminal && !no_color_flag && !env
}

/// The terminal's progress bars: one set per process, because there is one stderr. The log
/// owns it so that log lines can be written above the bars.
pub fn terminal() -> &'static MultiProgress {
    static T: OnceLock<MultiProgress> = OnceLock::new();
    T.get_or_init(MultiProgress::new)
}

/// A stderr writer for the log that suspends the bars while a line is written, so log lines
/// and bars do not overwrite each other.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        terminal().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
