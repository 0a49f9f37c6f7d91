//! The write path: request heads serialized into a byte buffer, and the request sent with one
//! `writev`, or, for a large constant body, the head with `MSG_MORE` and the body by page
//! reference ([`FileBody`]: `tee`+`splice` from a pipe, then `sendfile` from a memfd).

use std::io::{self, IoSlice};

use bytes::Bytes;
use http::Method;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load::{splice, sys};

/// A large constant body kept in a memfd and sent with `sendfile(2)`: the kernel takes its
/// pages by reference instead of copying the bytes into the socket on every request (the
/// copy was the largest single cost of the S3 upload, bench/README.md).
pub struct FileBody {
    file: std::fs::File,
    len: usize,
    /// The same bytes in a pipe, tried first ([`splice`]).
    pipe: Option<splice::PipeBody>,
}

impl FileBody {
    /// Smaller bodies are cheaper to copy than to send in two system calls.
    pub const MIN_LEN: usize = 16 * 1024;

    /// The chunks in a memfd; None when it cannot be made (the body is then copied).
    pub fn new(chunks: &[Bytes]) -> Option<Self> {
        use std::io::Write;
        let mut file = sys::memfd(c"loadspec-body")?;
        for c in chunks {
            file.write_all(c).ok()?;
        }
        Some(Self {
            file,
            len: chunks.iter().map(Bytes::len).sum(),
            pipe: splice::PipeBody::new(chunks),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `METHOD target HTTP/1.1\r\n`.
pub fn write_request_line(out: &mut Vec<u8>, method: &Method, path: &str) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// `name: value\r\n`.
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Head and body in one `writev` when they fit, as many as it takes otherwise. `sent` counts
/// the bytes the socket took, also when the write fails half-way (`data_sent`).
pub(super) async fn write_all(
    stream: &mut (impl AsyncWrite + Unpin),
    head: &[u8],
    body: &[Bytes],
    sent: &mut u64,
) -> io::Result<()> {
    const MAX: usize = 8;
    if body.len() >= MAX {
        for b in std::iter::once(head).chain(body.iter().map(|b| &b[..])) {
            let mut rest = b;
            while !rest.is_empty() {
                let n = stream.write(rest).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                *sent += n as u64;
                rest = &rest[n..];
            }
        }
        return Ok(());
    }
    let mut slices = [IoSlice::new(&[]); MAX];
    slices[0] = IoSlice::new(head);
    for (s, b) in slices[1..].iter_mut().zip(body) {
        *s = IoSlice::new(b);
    }
    let mut bufs = &mut slices[..=body.len()];
    while !bufs.is_empty() {
        let n = stream.write_vectored(bufs).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *sent += n as u64;
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// The head with `MSG_MORE` (it leaves with the first body segment), then the body from its
/// pipe and, for what the socket did not take, with `sendfile`, each waiting for the socket to
/// be writable when it is full.
pub(super) async fn write_file(
    stream: &TcpStream,
    head: &[u8],
    f: &FileBody,
    written: &mut u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let sock = stream.as_raw_fd();
    let mut sent = 0;
    while sent < head.len() {
        let n = stream
            .async_io(Interest::WRITABLE, || sys::send_more(sock, &head[sent..]))
            .await?;
        sent += n;
        *written += n as u64;
    }
    let mut off: libc::off_t = 0;
    if let Some(p) = &f.pipe {
        // Whatever the socket did not take from the pipe goes out with sendfile below.
        off = stream
            .async_io(Interest::WRITABLE, || splice::send(sock, p))
            .await? as libc::off_t;
        *written += off as u64;
    }
    while (off as usize) < f.len {
        let n = stream
            .async_io(Interest::WRITABLE, || {
                let left = f.len - off as usize;
                sys::sendfile(sock, f.file.as_raw_fd(), &mut off, left)
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *written += n as u64;
    }
    Ok(())
}
