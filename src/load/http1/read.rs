//! Response decoding, in place in the connection's read buffer with `httparse`: the head
//! (interim 1xx responses skipped), the body framing of RFC 9112 §6 (no body for HEAD, 1xx,
//! 204 and 304; chunked when `Transfer-Encoding` ends in `chunked`; else `Content-Length`;
//! else until the server closes), and the body, kept only when the caller wants it.

use std::io;
use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::AsyncReadExt;

use super::conn::{is_closed, Conn, Fail, KEEP_BUF, READ_BUF};
use super::{Limits, Want};
use crate::load::FailureReason;

/// Header slots kept on the stack; a configured limit above it parses into a heap array.
const STACK_HEADERS: usize = 256;
/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 64 * 1024;

/// The body kept for captures: up to `cap` bytes; past it the bytes are dropped and `over`
/// is set, so a 200 MB response costs no more memory than the cap.
pub(crate) struct Kept {
    pub(crate) buf: Option<BytesMut>,
    cap: u64,
    pub(crate) over: bool,
}

impl Kept {
    pub(crate) fn new(want: bool, cap: u64) -> Self {
        Self {
            buf: want.then(BytesMut::new),
            cap,
            over: false,
        }
    }

    pub(crate) fn keep(&mut self, bytes: &[u8]) {
        if let Some(b) = self.buf.as_mut() {
            if (b.len() + bytes.len()) as u64 > self.cap {
                self.buf = None;
                self.over = true;
            } else {
                b.extend_from_slice(bytes);
            }
        }
    }
}

/// Read more bytes into the connection buffer; `Ok(false)` at EOF.
async fn fill(conn: &mut Conn, want: usize) -> io::Result<bool> {
    conn.buf.reserve(want.clamp(READ_BUF, KEEP_BUF));
    match conn.stream.read_buf(&mut conn.buf).await {
        Ok(n) => Ok(n > 0),
        // Many servers close a TLS connection without close_notify, which rustls reports as
        // an unexpected EOF: for the framing it is the end of the stream, as on plain TCP.
        Err(e)
            if conn.stream.is_tls()
                && e.kind() == io::ErrorKind::UnexpectedEof
                && crate::load::tls::tls_error(&e).is_none() =>
        {
            Ok(false)
        }
        Err(e) => {
            conn.note(&e);
            Err(e)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    Eof,
}

pub(super) type Head = (u16, Framing, bool, HeaderMap, u64);

/// Read and parse the response head, skipping interim (1xx) responses. A head over the
/// limits (bytes or lines) is `header_too_large`, not a malformed response.
pub(super) async fn read_head(
    conn: &mut Conn,
    head_only: bool,
    want: Want,
    limits: &Limits,
) -> Result<Head, Fail> {
    let mut head_bytes = 0u64;
    let mut any = false;
    loop {
        let parsed = {
            // Uninitialised slots: httparse writes only the headers it finds, so a response
            // does not pay for clearing 256 × 32 bytes first (3 % of the CPU of a keep-alive
            // GET over TLS, by perf, when the array was `[EMPTY_HEADER; 256]`).
            let mut stack =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
            let mut heap;
            let hdrs: &mut [MaybeUninit<httparse::Header<'_>>] =
                if limits.max_headers <= STACK_HEADERS {
                    &mut stack[..limits.max_headers]
                } else {
                    heap = Vec::with_capacity(limits.max_headers);
                    &mut heap.spare_capacity_mut()[..limits.max_headers]
                };
            let mut r = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut r, &conn.buf, hdrs)
            {
                Ok(httparse::Status::Complete(n)) if n > limits.max_head => {
                    return Err(FailureReason::HeaderTooLarge.into())
                }
                Ok(httparse::Status::Complete(n)) => {
                    let status = r.code.unwrap_or(0);
                    let (framing, close) = framing(&r, head_only)?;
                    let map = if want.headers {
                        header_map(r.headers)
                    } else {
                        HeaderMap::new()
                    };
                    Some((n, status, framing, close, map))
                }
                Ok(httparse::Status::Partial) => None,
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(FailureReason::HeaderTooLarge.into())
                }
                Err(_) => return Err(FailureReason::Body.into()),
            }
        };
        match parsed {
            Some((n, status, framing, close, map)) => {
                conn.buf.advance(n);
                head_bytes += n as u64;
                // 101 switches protocols: there is no next response to wait for.
                if (100..200).contains(&status) && status != 101 {
                    continue;
                }
                return Ok((status, framing, close, map, head_bytes));
            }
            None => {
                if conn.buf.len() > limits.max_head {
                    return Err(FailureReason::HeaderTooLarge.into());
                }
                match fill(conn, READ_BUF).await {
                    Ok(true) => {
                        if !any {
                            conn.first_byte = Some(std::time::Instant::now());
                        }
                        any = true;
                    }
                    Ok(false) if !any && head_bytes == 0 => return Err(Fail::Closed),
                    Ok(false) => return Err(FailureReason::Io.into()),
                    Err(e) if !any && head_bytes == 0 && is_closed(&e) => return Err(Fail::Closed),
                    Err(_) => return Err(FailureReason::Io.into()),
                }
            }
        }
    }
}

/// The body framing and whether the server closes the connection after this response.
fn framing(r: &httparse::Response<'_, '_>, head_only: bool) -> Result<(Framing, bool), Fail> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = r.version == Some(0);
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(Fail::Reason(FailureReason::Body))?;
            if length.is_some_and(|l| l != n) {
                return Err(FailureReason::Body.into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && r.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    let status = r.code.unwrap_or(0);
    let framing = if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Eof
    };
    Ok((framing, close))
}

fn header_map(hdrs: &[httparse::Header<'_>]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(hdrs.len());
    for h in hdrs {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            map.append(k, v);
        }
    }
    map
}

/// Move up to `n` buffered bytes into the kept body (if any); returns how many.
fn consume(conn: &mut Conn, n: u64, body: &mut Kept) -> u64 {
    let take = (conn.buf.len() as u64).min(n) as usize;
    body.keep(&conn.buf[..take]);
    conn.buf.advance(take);
    take as u64
}

pub(super) async fn read_exact(conn: &mut Conn, n: u64, body: &mut Kept) -> Result<u64, Fail> {
    let mut left = n;
    loop {
        left -= consume(conn, left, body);
        if left == 0 {
            return Ok(n);
        }
        match fill(conn, left.min(KEEP_BUF as u64) as usize).await {
            Ok(true) => {}
            // Cut short: the message is incomplete.
            _ => return Err(FailureReason::Io.into()),
        }
    }
}

pub(super) async fn read_to_eof(conn: &mut Conn, body: &mut Kept) -> Result<u64, Fail> {
    let mut n = 0;
    loop {
        n += consume(conn, u64::MAX, body);
        match fill(conn, KEEP_BUF).await {
            Ok(true) => {}
            Ok(false) => return Ok(n),
            Err(_) => return Err(FailureReason::Io.into()),
        }
    }
}

/// Decode a chunked body (RFC 9112 §7.1); trailers are read and ignored. Returns the bytes
/// on the wire, chunk-size lines and trailers included (`data_received` counts the wire).
pub(super) async fn read_chunked(conn: &mut Conn, body: &mut Kept) -> Result<u64, Fail> {
    let mut total = 0;
    loop {
        let size = loop {
            match httparse::parse_chunk_size(&conn.buf) {
                Ok(httparse::Status::Complete((i, size))) => {
                    conn.buf.advance(i);
                    total += i as u64;
                    break size;
                }
                Ok(httparse::Status::Partial) if conn.buf.len() < MAX_CHUNK_LINE => {
                    if !matches!(fill(conn, READ_BUF).await, Ok(true)) {
                        return Err(FailureReason::Io.into());
                    }
                }
                _ => return Err(FailureReason::Body.into()),
            }
        };
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                match conn.buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        conn.buf.advance(2);
                        return Ok(total + 2);
                    }
                    Some(p) => {
                        conn.buf.advance(p + 2);
                        total += p as u64 + 2;
                    }
                    None if conn.buf.len() < MAX_CHUNK_LINE => {
                        if !matches!(fill(conn, READ_BUF).await, Ok(true)) {
                            return Err(FailureReason::Io.into());
                        }
                    }
                    None => return Err(FailureReason::Body.into()),
                }
            }
        }
        total += read_exact(conn, size, body).await?;
        while conn.buf.len() < 2 {
            if !matches!(fill(conn, READ_BUF).await, Ok(true)) {
                return Err(FailureReason::Io.into());
            }
        }
        if &conn.buf[..2] != b"\r\n" {
            return Err(FailureReason::Body.into());
        }
        conn.buf.advance(2);
        total += 2;
    }
}
