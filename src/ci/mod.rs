//! Load tests in CI: the SLA verdict that sets the exit code (99 when broken), the summary
//! export (`--summary-export FILE.json`) and the JUnit report (`--junit FILE.xml`), written
//! after every run. docs/ci.md documents the schema and the pipeline examples.
//!
//! - [`verdict`]: criteria with measured values, the summary's last line, the exit code.
//! - [`export`]: the JSON document.
//! - [`junit`]: the JUnit XML, rendered from the JSON document.

pub mod export;
pub mod junit;
pub mod verdict;

use std::path::{Path, PathBuf};

pub use export::SummaryExport;
pub use verdict::{Verdict, EXIT_SLA_BREACHED};

use crate::config::Settings;
use crate::experiment::Outcome;
use crate::report::RunInfo;

/// Why an output option cannot be written; names the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputsError {
    #[error("{opt}: {} is not a file name", .path.display())]
    NotAFile { opt: &'static str, path: PathBuf },
    #[error("{opt}: directory {} does not exist", .dir.display())]
    NoDirectory { opt: &'static str, dir: PathBuf },
}

/// Where the CI files go and what is printed; set from the command line.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub summary_export: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    /// Print the verdict line even when the summary is not printed (`--quiet`).
    pub print_verdict: bool,
    /// ANSI colour in what is printed to stdout.
    pub color: bool,
}

impl Outputs {
    /// Check before anything starts that each file's directory exists, so a typo fails as a
    /// usage error (exit 2) instead of after a long run. Names the option and the reason.
    pub fn check(&self) -> Result<(), OutputsError> {
        for (opt, p) in [
            ("--summary-export", &self.summary_export),
            ("--junit", &self.junit),
        ] {
            let Some(p) = p else { continue };
            if p.as_os_str().is_empty() || p.is_dir() {
                return Err(OutputsError::NotAFile {
                    opt,
                    path: p.clone(),
                });
            }
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return Err(OutputsError::NoDirectory {
                    opt,
                    dir: dir.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    /// Write the files this run asked for; the errors, one per file that could not be written.
    pub fn write(
        &self,
        settings: &Settings,
        run: &RunInfo,
        outcome: &Outcome,
        verdict: &Verdict,
    ) -> Vec<String> {
        if self.summary_export.is_none() && self.junit.is_none() {
            return Vec::new();
        }
        let doc = SummaryExport::new(settings, run, outcome, verdict);
        let mut errors = Vec::new();
        for (p, text) in [
            (&self.summary_export, doc.to_json()),
            (&self.junit, junit::render(&doc)),
        ] {
            let Some(p) = p else { continue };
            match write_atomic(p, text.as_bytes()) {
                Ok(()) => tracing::info!(path = %p.display(), "written"),
                Err(e) => {
                    let msg = format!("cannot write {}: {e}", p.display());
                    tracing::error!("{msg}");
                    errors.push(msg);
                }
            }
        }
        errors
    }
}

/// Write through a temporary file in the same directory and rename it, so a CI step that
/// reads the file never sees half of it.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
