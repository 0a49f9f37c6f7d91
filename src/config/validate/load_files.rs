//! The load phase: the files the scenarios name are read here, each through
//! `files::read_regular` (regular files only, at most `files::DATA_LIMIT`), after the section
//! checks and before any scenario is built, so a missing or oversized file stops the config
//! before anything starts. Parsing is [`super::data`]'s.

use std::io;
use std::path::{Path, PathBuf};

use super::data::{self, DataError, Table};
use crate::config::raw::{DataConfig, ScenarioConfig};

/// Why a data file gave no table.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    /// Not readable, not a regular file, or too large; the message names the path.
    #[error(transparent)]
    Read(#[from] io::Error),
    #[error("{} is not UTF-8: invalid byte at offset {offset} (line {line}, column {col})", .file.display())]
    NotUtf8 {
        file: PathBuf,
        offset: usize,
        line: usize,
        col: usize,
    },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Each scenario's data file read and parsed, by scenario index; None where it names none.
pub(super) fn data_files(
    scenarios: &[ScenarioConfig],
    base_dir: &Path,
) -> Vec<Option<Result<Table, DataFileError>>> {
    scenarios
        .iter()
        .map(|sc| sc.data.as_ref().map(|d| load_data(d, base_dir)))
        .collect()
}

/// Read and parse one data file; a relative path resolves against `base_dir`.
pub(crate) fn load_data(d: &DataConfig, base_dir: &Path) -> Result<Table, DataFileError> {
    let file = if d.file.is_absolute() {
        d.file.clone()
    } else {
        base_dir.join(&d.file)
    };
    let bytes = crate::files::read_regular(&file, crate::files::DATA_LIMIT)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let (line, col) = crate::files::line_col(e.as_bytes(), offset);
        DataFileError::NotUtf8 {
            file: file.clone(),
            offset,
            line,
            col,
        }
    })?;
    Ok(data::parse(&text, &file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(file: &str) -> DataConfig {
        DataConfig {
            file: file.into(),
            mode: Default::default(),
        }
    }

    #[test]
    fn reads_relative_to_the_config_and_names_the_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.csv"), "u\nal\n").unwrap();
        let t = load_data(&cfg("d.csv"), dir.path()).unwrap();
        assert_eq!(
            (t.columns, t.rows),
            (vec!["u".to_string()], vec![vec!["al".to_string()]])
        );
        let missing = load_data(&cfg("nope.csv"), dir.path()).unwrap_err();
        assert!(matches!(missing, DataFileError::Read(_)), "{missing:?}");
        assert!(missing.to_string().contains("nope.csv"), "{missing}");
        std::fs::write(dir.path().join("b.csv"), b"u\nx\n\xffy\n").unwrap();
        let e = load_data(&cfg("b.csv"), dir.path())
            .unwrap_err()
            .to_string();
        let shown = dir.path().join("b.csv");
        assert_eq!(
            e,
            format!(
                "{} is not UTF-8: invalid byte at offset 4 (line 3, column 1)",
                shown.display()
            )
        );
        let e = load_data(&cfg("/dev/null"), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
    }

    #[test]
    fn one_entry_per_scenario() {
        let raw = super::super::test_support::raw(&format!(
            "{}{}[scenarios.data]\nfile = \"missing.csv\"\n",
            super::super::test_support::SCENARIO,
            super::super::test_support::SCENARIO.replace("\"s\"", "\"t\"")
        ));
        let files = data_files(&raw.scenarios, Path::new("/nonexistent-dir"));
        assert!(files[0].is_none());
        assert!(matches!(files[1], Some(Err(DataFileError::Read(_)))));
    }
}
