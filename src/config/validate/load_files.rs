//! The load phase: every file the config names is read here, after the section checks and
//! before the transport or any scenario is built, so a missing, oversized or non-regular file
//! stops the config before anything starts and no other part of `validate` does file I/O.
//! Each goes through `files::read_checked` (regular files only, with its kind's limit): the
//! scenarios' data files (`files::DATA_LIMIT`, parsed by [`super::data`]), the multipart files
//! (`files::BODY_LIMIT`, built into bodies by `load::body::build`) and the `[target.tls]` PEM
//! files (`load::tls::MAX_PEM_BYTES`, parsed by `load::tls::TlsClient::new`). A read error is
//! kept with the file and reported where the part that uses it is checked, so the errors come
//! in the config's order.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::data::{self, DataError, Table};
use crate::config::raw::{DataConfig, RawConfig, ScenarioConfig};
use crate::files::{self, FileError};
use crate::load::body::{BodyConfig, FileContents};
use crate::load::tls::{TlsConfig, TlsPems, TlsSetupError, MAX_PEM_BYTES};

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

/// What the config's files hold (or why each could not be read).
pub(super) struct Loaded {
    /// `[target.tls]`'s PEM files.
    pub tls: TlsPems,
    /// Each scenario's data file read and parsed, by scenario index; None where it names none.
    pub data: Vec<Option<Result<Table, DataFileError>>>,
    /// Every multipart file of every step, by its path as written.
    pub bodies: FileContents,
}

/// Read every file `raw` names; relative paths resolve against `base_dir`.
pub(super) fn load(raw: &RawConfig, base_dir: &Path) -> Loaded {
    Loaded {
        tls: tls_pems(&raw.target.tls, base_dir),
        data: data_files(&raw.scenarios, base_dir),
        bodies: body_files(&raw.scenarios, base_dir),
    }
}

/// `path` as written in the config, relative to the config file's directory unless absolute.
fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    base_dir.join(path)
}

/// Each scenario's data file read and parsed, by scenario index; None where it names none.
fn data_files(
    scenarios: &[ScenarioConfig],
    base_dir: &Path,
) -> Vec<Option<Result<Table, DataFileError>>> {
    scenarios
        .iter()
        .map(|sc| sc.data.as_ref().map(|d| load_data(d, base_dir)))
        .collect()
}

/// The multipart files of every setup and request step, each read once however many steps
/// name it.
fn body_files(scenarios: &[ScenarioConfig], base_dir: &Path) -> FileContents {
    let mut out = FileContents::new();
    let parts = scenarios
        .iter()
        .flat_map(|sc| sc.setup.iter().chain(&sc.requests))
        .filter_map(|r| match &r.body {
            Some(BodyConfig::Multipart { files, .. }) => Some(files),
            _ => None,
        })
        .flatten();
    for part in parts {
        if !out.contains_key(&part.path) {
            let read = files::read_regular(&resolve(base_dir, &part.path), files::BODY_LIMIT)
                .map(Bytes::from)
                .map_err(Arc::new);
            out.insert(part.path.clone(), read);
        }
    }
    out
}

/// The PEM files `[target.tls]` names (under `target.tls`), each at most [`MAX_PEM_BYTES`].
fn tls_pems(tls: &TlsConfig, base_dir: &Path) -> TlsPems {
    let read = |path: &Option<PathBuf>, key: &str| {
        let field = format!("{}.{key}", super::target::TLS);
        path.as_ref()
            .map(|p| pem_file(&resolve(base_dir, p), field))
    };
    TlsPems {
        ca_file: read(&tls.ca_file, "ca_file"),
        client_cert: read(&tls.client_cert, "client_cert"),
        client_key: read(&tls.client_key, "client_key"),
    }
}

/// One PEM file; the reasons keep the TLS keys' wording (`cannot read …`, `… allowed`).
fn pem_file(file: &Path, field: String) -> Result<Vec<u8>, TlsSetupError> {
    files::read_checked(file, MAX_PEM_BYTES).map_err(|e| {
        let shown = file.display();
        let reason = match e {
            FileError::Io { cause, .. } => format!("cannot read {shown}: {cause}"),
            FileError::TooLarge { len, .. } => {
                format!("{shown} is {len} bytes, more than the {MAX_PEM_BYTES} allowed")
            }
            other => other.to_string(),
        };
        TlsSetupError { field, reason }
    })
}

/// Read and parse one data file; a relative path resolves against `base_dir`.
pub(crate) fn load_data(d: &DataConfig, base_dir: &Path) -> Result<Table, DataFileError> {
    let file = resolve(base_dir, &d.file);
    let bytes = files::read_regular(&file, files::DATA_LIMIT)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let (line, col) = files::line_col(e.as_bytes(), offset);
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
    use super::super::test_support::{raw, SCENARIO};
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
        let raw = raw(&format!(
            "{SCENARIO}{}[scenarios.data]\nfile = \"missing.csv\"\n",
            SCENARIO.replace("\"s\"", "\"t\"")
        ));
        let files = data_files(&raw.scenarios, Path::new("/nonexistent-dir"));
        assert!(files[0].is_none());
        assert!(matches!(files[1], Some(Err(DataFileError::Read(_)))));
    }

    /// A POST step named `name` with a multipart body of `files` (TOML inline tables).
    fn multipart_step(name: &str, files: &str) -> String {
        format!("[[scenarios.requests]]\nname = \"{name}\"\nurl = \"http://h/\"\nmethod = \"POST\"\nbody = {{ type = \"multipart\", files = [{files}] }}\n")
    }

    #[test]
    fn multipart_files_are_read_once_by_their_written_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"A\0B").unwrap();
        let text = format!(
            "{SCENARIO}{}{}",
            multipart_step(
                "p1",
                "{ name = \"f\", path = \"a.bin\" }, { name = \"g\", path = \"nope.bin\" }"
            ),
            multipart_step("p2", "{ name = \"f\", path = \"a.bin\" }")
        );
        let bodies = load(&raw(&text), dir.path()).bodies;
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        let a = bodies[Path::new("a.bin")].as_ref().unwrap();
        assert_eq!(&a[..], b"A\0B");
        let e = bodies[Path::new("nope.bin")]
            .as_ref()
            .unwrap_err()
            .to_string();
        let shown = dir.path().join("nope.bin");
        assert!(
            e.starts_with(&format!("cannot read file {}: ", shown.display())),
            "{e}"
        );
        // The error is reported at the step's field, as before the load phase existed.
        let errs = super::super::test_support::errors_in(&text, dir.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0],
            format!("scenarios[0].requests[1].body.files[1].path: {e}")
        );
    }

    #[test]
    fn tls_files_are_read_with_the_keys_wording() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'x'; MAX_PEM_BYTES as usize + 1]).unwrap();
        std::fs::write(dir.path().join("ok.pem"), "pem text").unwrap();
        let tls = TlsConfig {
            ca_file: Some("missing.pem".into()),
            client_cert: Some("ok.pem".into()),
            client_key: Some(big.clone()),
            ..Default::default()
        };
        let pems = tls_pems(&tls, dir.path());
        let missing = pems.ca_file.unwrap().unwrap_err();
        assert_eq!(missing.field, "target.tls.ca_file");
        let shown = dir.path().join("missing.pem");
        assert!(
            missing
                .reason
                .starts_with(&format!("cannot read {}: ", shown.display()))
                && missing.reason.contains("os error 2"),
            "{}",
            missing.reason
        );
        assert_eq!(pems.client_cert.unwrap().unwrap(), b"pem text");
        let too_big = pems.client_key.unwrap().unwrap_err();
        assert_eq!(
            (too_big.field.as_str(), too_big.reason),
            (
                "target.tls.client_key",
                format!(
                    "{} is {} bytes, more than the {MAX_PEM_BYTES} allowed",
                    big.display(),
                    MAX_PEM_BYTES + 1
                )
            )
        );
        let tls = TlsConfig {
            ca_file: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let e = tls_pems(&tls, Path::new("/")).ca_file.unwrap().unwrap_err();
        assert_eq!(
            e.reason,
            format!(
                "{} is not a regular file (it is a directory); give a regular file",
                dir.path().display()
            )
        );
        assert!(tls_pems(&TlsConfig::default(), dir.path())
            .ca_file
            .is_none());
    }
}
