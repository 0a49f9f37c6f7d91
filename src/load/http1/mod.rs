//! The HTTP/1.1 client. Each VU owns its connections (one per target authority), as k6 and
//! wrk do: no connection pool shared by all VUs, so no pool lock on the hot path, and the
//! server sees exactly one connection per active VU.
//!
//! The VU's own task drives its socket: it writes the request head and body with one
//! `writev` (a large constant body by page reference: [`FileBody`], [`super::splice`]) and
//! parses the response in place with `httparse`. Measured against hyper's
//! client connection (bench/README.md), this removes the per-connection task, the two
//! channels between it and the VU, and the response `HeaderMap` unless the caller wants the
//! headers. The framing rules are RFC 9112 §6: no body for HEAD, 1xx, 204 and 304; chunked
//! when `Transfer-Encoding` ends in `chunked`; else `Content-Length`; else until the server
//! closes.
//!
//! Files: `target` parses URLs, `write` serializes and sends requests, `read` decodes
//! responses, `conn` keeps a VU's connections and runs the exchange on one; the system calls
//! are in [`super::sys`].

mod conn;
mod read;
pub(crate) use read::Kept;
mod target;
mod write;

use bytes::Bytes;
use http::HeaderMap;

pub use super::limits::Limits;
pub use conn::{set_socket_budget, Conns};
pub use target::{Target, TargetError};
pub use write::{write_header, write_request_line, FileBody};

/// One WARN line per process when sockets run out (EMFILE/ENFILE): the cause is loadspec's
/// own file-descriptor limit, which the user raises, not the target. Each such request is
/// still counted, with reason `fd_limit`.
pub(crate) fn warn_fd_limit(e: &std::io::Error) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %e,
            "out of file descriptors: requests fail with reason fd_limit; raise `ulimit -n` or lower the VUs"
        );
    }
}

/// A completed exchange.
pub struct Response {
    pub status: u16,
    /// The response headers, when the caller asked for them (else empty).
    pub headers: HeaderMap,
    /// The body, kept only when the caller asked for it (captures) and it was within
    /// `Limits::max_capture_body`.
    pub body: Option<Bytes>,
    /// The caller asked for the body and it was over `Limits::max_capture_body`: it was read
    /// to the end (the connection stays usable) but not kept.
    pub body_over_cap: bool,
    /// Bytes received: the exact head plus the body length.
    pub received: u64,
    /// The phases k6 reports apart.
    pub timing: Timing,
}

/// The phases of one exchange, kept apart so each has its own histogram. The request's
/// duration is its whole time less the set-up phases: the connect here, and the TLS handshake,
/// which [`Conns::phases`] reports whether or not a response came.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// TCP connects this request waited for (zero on a kept-alive connection); the TCP
    /// connect only.
    pub connect: std::time::Duration,
    /// From the request's last byte written to the response's first byte (TTFB).
    pub waiting: std::time::Duration,
}

/// What the caller needs from a response besides its status and size.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub body: bool,
    pub headers: bool,
}

/// A request already serialized: its head (request line, headers, blank line) and body.
pub struct RawRequest<'a> {
    pub target: &'a Target,
    pub head: &'a [u8],
    pub body: &'a [Bytes],
    /// The same body in a memfd; when present it is sent instead of `body`.
    pub file: Option<&'a FileBody>,
    /// A HEAD request: the response has no body whatever its headers say.
    pub head_only: bool,
}
