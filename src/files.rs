//! Reading the files a config names (the config itself, data files, body and multipart files):
//! regular files only, each kind with a size limit, checked before a byte is read.
//!
//! Why: `std::fs::read("/dev/zero")` grows memory at the speed of the kernel's zero page, and
//! opening a FIFO for reading blocks until a writer appears, so a config pointing at either
//! froze or exhausted the daemon. `metadata` follows symlinks and never blocks, and a regular
//! file's length is known, so both are refused with the reason before any `open`.

use std::io::{self, Read};
use std::path::Path;

/// The config file: TOML a person writes.
pub const CONFIG_LIMIT: u64 = 1024 * 1024;
/// A scenario's data file (CSV or JSON rows), kept in memory for the whole run.
pub const DATA_LIMIT: u64 = 64 * 1024 * 1024;
/// One body or multipart file, kept in memory (and sent from there) for the whole run.
pub const BODY_LIMIT: u64 = 512 * 1024 * 1024;

/// Read `path` if it is a regular file of at most `limit` bytes; the error says why not (with
/// the path) and never echoes the content.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let shown = path.display();
    let err = |kind: io::ErrorKind, msg: String| io::Error::new(kind, msg);
    let meta = std::fs::metadata(path)
        .map_err(|e| err(e.kind(), format!("cannot read file {shown}: {e}")))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(err(
            io::ErrorKind::InvalidInput,
            format!(
                "{shown} is not a regular file (it is {}); give a regular file",
                kind(&ft)
            ),
        ));
    }
    if meta.len() > limit {
        return Err(err(
            io::ErrorKind::FileTooLarge,
            format!(
                "{shown} is {} bytes, more than the limit of {limit} bytes",
                meta.len()
            ),
        ));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| err(e.kind(), format!("cannot read file {shown}: {e}")))?;
    // The file may grow between the check and the read: never take more than the limit.
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| err(e.kind(), format!("cannot read file {shown}: {e}")))?;
    if buf.len() as u64 > limit {
        return Err(err(
            io::ErrorKind::FileTooLarge,
            format!("{shown} grew past the limit of {limit} bytes while it was read"),
        ));
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
