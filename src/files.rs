//! Reading the files a config names (the config itself, data files, multipart files, TLS PEM
//! files): regular files only, each kind with a size limit, checked before a byte is read.
//!
//! Why: `std::fs::read("/dev/zero")` grows memory at the speed of the kernel's zero page, and
//! opening a FIFO for reading blocks until a writer appears, so a config pointing at either
//! froze or exhausted the daemon. `metadata` follows symlinks and never blocks, and a regular
//! file's length is known, so both are refused with the reason before any `open`.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The config file: TOML a person writes.
pub const CONFIG_LIMIT: u64 = 1024 * 1024;
/// A scenario's data file (CSV or JSON rows), kept in memory for the whole run.
pub const DATA_LIMIT: u64 = 64 * 1024 * 1024;
/// One body or multipart file, kept in memory (and sent from there) for the whole run.
pub const BODY_LIMIT: u64 = 512 * 1024 * 1024;

/// Why a file a config names was not read; each message names the path and never echoes the
/// content. Callers that word a reason their own way (the TLS keys) match on the variant.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// `metadata`, `open` or `read` failed.
    #[error("cannot read file {}: {cause}", .path.display())]
    Io { path: PathBuf, cause: io::Error },
    #[error("{} is not a regular file (it is {kind}); give a regular file", .path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{} is {len} bytes, more than the limit of {limit} bytes", .path.display())]
    TooLarge { path: PathBuf, len: u64, limit: u64 },
    #[error("{} grew past the limit of {limit} bytes while it was read", .path.display())]
    Grew { path: PathBuf, limit: u64 },
}

impl From<FileError> for io::Error {
    fn from(e: FileError) -> Self {
        let kind = match &e {
            FileError::Io { cause, .. } => cause.kind(),
            FileError::NotRegular { .. } => io::ErrorKind::InvalidInput,
            FileError::TooLarge { .. } | FileError::Grew { .. } => io::ErrorKind::FileTooLarge,
        };
        io::Error::new(kind, e)
    }
}

/// Read `path` if it is a regular file of at most `limit` bytes; the error says why not (with
/// the path) and never echoes the content.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    Ok(read_checked(path, limit)?)
}

/// [`read_regular`] with the reason typed.
pub fn read_checked(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let io = |cause: io::Error| FileError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind(&ft),
        });
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
            limit,
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // The file may grow between the check and the read: never take more than the limit.
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(FileError::Grew {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

fn kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Line and column (1-based, columns in characters) of byte `offset` in `bytes`.
pub fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_fifos_dirs_and_large_files() {
        let e = read_regular(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        assert!(read_regular(dir.path(), 10)
            .unwrap_err()
            .to_string()
            .contains("directory"));
        let fifo = dir.path().join("f");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_regular(&fifo, 10)
            .unwrap_err()
            .to_string()
            .contains("FIFO"));
        let f = dir.path().join("big");
        std::fs::write(&f, [1u8; 11]).unwrap();
        assert!(read_regular(&f, 10)
            .unwrap_err()
            .to_string()
            .contains("limit of 10"));
        assert_eq!(read_regular(&f, 11).unwrap().len(), 11);
    }

    #[test]
    fn positions() {
        assert_eq!(line_col(b"ab\ncd\xffe", 5), (2, 3));
        assert_eq!(line_col(b"x", 0), (1, 1));
    }
}
