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

use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::FailureReason;

/// Largest response head accepted; a bigger one is a malformed response.
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers parsed.
const MAX_HEADERS: usize = 100;
/// A connection's read buffer starts this small, so 10,000 idle VUs stay cheap.
const READ_BUF: usize = 4 * 1024;
/// A read buffer grown past this by a large response is dropped after it.
const KEEP_BUF: usize = 64 * 1024;

/// Where a request goes: the connection key and the request target.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    pub host_header: HeaderValue,
    /// Origin-form request target (`/path?query`).
    pub path: Uri,
}

impl Target {
    /// Parse an absolute `http://` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("not an http:// URL: {url:?}"));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("URL has no host: {url:?}"))?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let host_header =
            HeaderValue::from_str(uri.authority().map(|a| a.as_str()).unwrap_or(host))
                .map_err(|_| format!("invalid host in {url:?}"))?;
        let path: Uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|e| format!("invalid path in {url:?}: {e}"))?;
        Ok(Self {
            authority,
            host_header,
            path,
        })
    }

    /// The request target as written in the request line.
    pub fn path_str(&self) -> &str {
        self.path.path_and_query().map_or("/", |p| p.as_str())
    }
}

/// A completed exchange.
pub struct Response {
    pub status: u16,
    /// The response headers, when the caller asked for them (else empty).
    pub headers: HeaderMap,
    /// The body, kept only when the caller asked for it (captures).
    pub body: Option<Bytes>,
    /// Bytes received: the exact head plus the body length.
    pub received: u64,
}

/// What the caller needs from a response besides its status and size.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub body: bool,
    pub headers: bool,
}

/// A large constant body kept in a memfd and sent with `sendfile(2)`: the kernel takes its
/// pages by reference instead of copying the bytes into the socket on every request (the
/// copy was the largest single cost of the S3 upload, bench/README.md).
pub struct FileBody {
    file: std::fs::File,
    len: usize,
    /// The same bytes in a pipe, tried first ([`super::splice`]).
    pipe: Option<super::splice::PipeBody>,
}

impl FileBody {
    /// Smaller bodies are cheaper to copy than to send in two system calls.
    pub const MIN_LEN: usize = 16 * 1024;

    /// The chunks in a memfd; None when it cannot be made (the body is then copied).
    pub fn new(chunks: &[Bytes]) -> Option<Self> {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create takes a NUL-terminated name and returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(c"loadspec-body".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        for c in chunks {
            file.write_all(c).ok()?;
        }
        Some(Self {
            file,
            len: chunks.iter().map(Bytes::len).sum(),
            pipe: super::splice::PipeBody::new(chunks),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A request already serialized: its head (request line, headers, blank line) and body.
pub struct RawRequest<'a> {
    pub authority: &'a str,
    pub head: &'a [u8],
    pub body: &'a [Bytes],
    /// The same body in a memfd; when present it is sent instead of `body`.
    pub file: Option<&'a FileBody>,
    /// A HEAD request: the response has no body whatever its headers say.
    pub head_only: bool,
}

struct Conn {
    authority: String,
    stream: TcpStream,
    buf: BytesMut,
    /// It carried a request before: an EOF before the answer means the server closed it idle.
    reused: bool,
}

/// The connections of one VU, and its scratch buffer for request heads.
#[derive(Default)]
pub struct Conns {
    conns: Vec<Conn>,
    head: Vec<u8>,
}

/// Why an exchange ended without a response.
enum Fail {
    /// The connection was closed (or reset) before any byte of the response.
    Closed,
    Reason(FailureReason),
}

impl From<FailureReason> for Fail {
    fn from(r: FailureReason) -> Self {
        Fail::Reason(r)
    }
}

impl Conns {
    fn take(&mut self, authority: &str) -> Option<Conn> {
        let i = self.conns.iter().position(|c| c.authority == authority)?;
        Some(self.conns.swap_remove(i))
    }

    async fn connect(authority: &str) -> Result<Conn, FailureReason> {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|_| FailureReason::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            authority: authority.to_string(),
            stream,
            buf: BytesMut::with_capacity(READ_BUF),
            reused: false,
        })
    }

    /// Send an `http::Request` (tests build requests this way; the VUs use
    /// [`Conns::send_raw`] with heads they prepared).
    #[cfg(test)]
    pub async fn send(
        &mut self,
        target: &Target,
        req: http::Request<Vec<Bytes>>,
        keep_body: bool,
        timeout: Duration,
    ) -> Result<Response, FailureReason> {
        let (parts, body) = req.into_parts();
        let body_len: usize = body.iter().map(Bytes::len).sum();
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        write_request_line(&mut head, &parts.method, target.path_str());
        for (k, v) in &parts.headers {
            write_header(&mut head, k.as_str(), v.as_bytes());
        }
        if !parts.headers.contains_key(http::header::CONTENT_LENGTH) && body_len > 0 {
            write_header(&mut head, "content-length", body_len.to_string().as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let raw = RawRequest {
            authority: &target.authority,
            head: &head,
            body: &body,
            file: None,
            head_only: parts.method == Method::HEAD,
        };
        let want = Want {
            body: keep_body,
            headers: true,
        };
        let r = self.send_raw(raw, want, timeout).await;
        self.head = head;
        r
    }

    /// A scratch buffer for building a request head; give it back with [`Conns::put_head`].
    pub fn take_head(&mut self) -> Vec<u8> {
        let mut h = std::mem::take(&mut self.head);
        h.clear();
        h
    }

    pub fn put_head(&mut self, head: Vec<u8>) {
        self.head = head;
    }

    /// Send a serialized request and read the whole response, within `timeout`. A kept-alive
    /// connection that the server closed while idle is replaced once, before any response
    /// byte arrived; any other failure is the request's.
    pub async fn send_raw(
        &mut self,
        req: RawRequest<'_>,
        want: Want,
        timeout: Duration,
    ) -> Result<Response, FailureReason> {
        let fut = async {
            let mut conn = match self.take(req.authority) {
                Some(c) => c,
                None => Self::connect(req.authority).await?,
            };
            loop {
                match exchange(&mut conn, &req, want).await {
                    Ok((resp, reusable)) => {
                        if reusable {
                            conn.reused = true;
                            if conn.buf.capacity() > KEEP_BUF {
                                conn.buf = BytesMut::with_capacity(READ_BUF);
                            }
                            self.conns.push(conn);
                        }
                        return Ok(resp);
                    }
                    Err(Fail::Closed) if conn.reused => {
                        conn = Self::connect(req.authority).await?;
                    }
                    Err(Fail::Closed) => return Err(FailureReason::Io),
                    Err(Fail::Reason(r)) => return Err(r),
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            // The connection that timed out was dropped with the future: a late response
            // cannot be read as the answer to the next request.
            Err(_) => Err(FailureReason::Timeout),
        }
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

/// Write the request, read its response; the bool says whether the connection can carry the
/// next request.
async fn exchange(
    conn: &mut Conn,
    req: &RawRequest<'_>,
    want: Want,
) -> Result<(Response, bool), Fail> {
    let written = match req.file {
        Some(f) => write_file(&conn.stream, req.head, f).await,
        None => write_all(&mut conn.stream, req.head, req.body).await,
    };
    if let Err(e) = written {
        return Err(if conn.reused && is_closed(&e) {
            Fail::Closed
        } else {
            Fail::Reason(FailureReason::Io)
        });
    }
    conn.buf.clear();
    let (status, framing, close, headers, head_len) = read_head(conn, req.head_only, want).await?;
    let mut body = want.body.then(BytesMut::new);
    let (len, eof) = match framing {
        Framing::None => (0, false),
        Framing::Length(n) => (read_exact(conn, n, &mut body).await?, false),
        Framing::Chunked => (read_chunked(conn, &mut body).await?, false),
        Framing::Eof => (read_to_eof(conn, &mut body).await?, true),
    };
    let reusable = !close && !eof && conn.buf.is_empty();
    Ok((
        Response {
            status,
            headers,
            body: body.map(BytesMut::freeze),
            received: head_len + len,
        },
        reusable,
    ))
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Head and body in one `writev` when they fit, as many as it takes otherwise.
async fn write_all(stream: &mut TcpStream, head: &[u8], body: &[Bytes]) -> io::Result<()> {
    const MAX: usize = 8;
    if body.len() >= MAX {
        stream.write_all(head).await?;
        for b in body {
            stream.write_all(b).await?;
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
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// The head with `MSG_MORE` (it leaves with the first body segment), then the body from its
/// pipe and, for what the socket did not take, with `sendfile`, each waiting for the socket to
/// be writable when it is full.
async fn write_file(stream: &TcpStream, head: &[u8], f: &FileBody) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let sock = stream.as_raw_fd();
    let mut sent = 0;
    while sent < head.len() {
        let n = stream
            .async_io(Interest::WRITABLE, || {
                let rest = &head[sent..];
                // SAFETY: the pointer and length describe a live slice.
                let r = unsafe {
                    libc::send(
                        sock,
                        rest.as_ptr().cast(),
                        rest.len(),
                        libc::MSG_MORE | libc::MSG_NOSIGNAL,
                    )
                };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            })
            .await?;
        sent += n;
    }
    let mut off: libc::off_t = 0;
    if let Some(p) = &f.pipe {
        // Whatever the socket did not take from the pipe goes out with sendfile below.
        off = stream
            .async_io(Interest::WRITABLE, || super::splice::send(sock, p))
            .await? as libc::off_t;
    }
    while (off as usize) < f.len {
        let n = stream
            .async_io(Interest::WRITABLE, || {
                // SAFETY: both descriptors are open for the call; `off` is a live off_t.
                let r = unsafe {
                    libc::sendfile(sock, f.file.as_raw_fd(), &mut off, f.len - off as usize)
                };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Read more bytes into the connection buffer; `Ok(false)` at EOF.
async fn fill(conn: &mut Conn, want: usize) -> io::Result<bool> {
    conn.buf.reserve(want.clamp(READ_BUF, KEEP_BUF));
    Ok(conn.stream.read_buf(&mut conn.buf).await? > 0)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Eof,
}

type Head = (u16, Framing, bool, HeaderMap, u64);

/// Read and parse the response head, skipping interim (1xx) responses.
async fn read_head(conn: &mut Conn, head_only: bool, want: Want) -> Result<Head, Fail> {
    let mut head_bytes = 0u64;
    let mut any = false;
    loop {
        let parsed = {
            let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut hdrs);
            match r.parse(&conn.buf) {
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
                if conn.buf.len() > MAX_HEAD {
                    return Err(FailureReason::Body.into());
                }
                match fill(conn, READ_BUF).await {
                    Ok(true) => any = true,
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
fn consume(conn: &mut Conn, n: u64, body: &mut Option<BytesMut>) -> u64 {
    let take = (conn.buf.len() as u64).min(n) as usize;
    if let Some(b) = body.as_mut() {
        b.extend_from_slice(&conn.buf[..take]);
    }
    conn.buf.advance(take);
    take as u64
}

async fn read_exact(conn: &mut Conn, n: u64, body: &mut Option<BytesMut>) -> Result<u64, Fail> {
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

async fn read_to_eof(conn: &mut Conn, body: &mut Option<BytesMut>) -> Result<u64, Fail> {
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

/// Decode a chunked body (RFC 9112 §7.1); trailers are read and ignored.
async fn read_chunked(conn: &mut Conn, body: &mut Option<BytesMut>) -> Result<u64, Fail> {
    let mut total = 0;
    loop {
        let size = loop {
            match httparse::parse_chunk_size(&conn.buf) {
                Ok(httparse::Status::Complete((i, size))) => {
                    conn.buf.advance(i);
                    break size;
                }
                Ok(httparse::Status::Partial) if conn.buf.len() < MAX_HEAD => {
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
                        return Ok(total);
                    }
                    Some(p) => conn.buf.advance(p + 2),
                    None if conn.buf.len() < MAX_HEAD => {
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
    }
}

/// Approximate size of a message head: each header line plus its separators.
pub fn head_len(h: &HeaderMap) -> u64 {
    h.iter()
        .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
        .sum::<u64>()
        + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HOST;
    use http::Request;
    use tokio::net::TcpListener;

    #[test]
    fn target_parse() {
        let t = Target::parse("http://127.0.0.1:8080/api/v1/x?a=1").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path, "/api/v1/x?a=1");
        assert_eq!(t.path_str(), "/api/v1/x?a=1");
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.path, "/");
        assert!(Target::parse("nope").is_err());
    }

    /// A server that answers each request (read up to its blank line) with the next of
    /// `answers`: `CLOSE` closes the connection without answering, a leading `!` closes it
    /// after the answer. It stops after the last answer and returns the requests it saw.
    async fn serve(answers: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut answers = answers.into_iter();
            'conns: while let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_secs(5), l.accept()).await
            {
                loop {
                    let mut req = Vec::new();
                    let mut b = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => continue 'conns,
                            Ok(n) => req.extend_from_slice(&b[..n]),
                        }
                    }
                    seen.push(String::from_utf8_lossy(&req).into_owned());
                    let a = answers.next().unwrap_or(b"CLOSE");
                    let last = answers.len() == 0;
                    if a != b"CLOSE" {
                        let (a, close) = match a.strip_prefix(b"!") {
                            Some(rest) => (rest, true),
                            None => (a, false),
                        };
                        s.write_all(a).await.unwrap();
                        if close && !last {
                            continue 'conns;
                        }
                    }
                    if last {
                        break 'conns;
                    }
                    if a == b"CLOSE" {
                        continue 'conns;
                    }
                }
            }
            seen
        });
        (addr, h)
    }

    fn get(addr: &str, path: &str) -> (Target, Request<Vec<Bytes>>) {
        let t = Target::parse(&format!("http://{addr}{path}")).unwrap();
        let mut r = Request::new(Vec::new());
        r.headers_mut().insert(HOST, t.host_header.clone());
        (t, r)
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn framings_and_keep_alive() {
        const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n";
        let (addr, h) = serve(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            NO_CONTENT,
            b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nbye",
        ])
        .await;
        let mut c = Conns::default();
        let (t, r) = get(&addr, "/a?b=1");
        let a = c.send(&t, r, true, T).await.ok().unwrap();
        assert_eq!((a.status, a.body.as_deref()), (200, Some(&b"hello"[..])));
        assert_eq!(a.headers.get("x-a").unwrap(), "1");
        let (t, r) = get(&addr, "/b");
        let b = c.send(&t, r, true, T).await.ok().unwrap();
        assert_eq!((b.status, b.body.as_deref()), (201, Some(&b"abcde"[..])));
        let (t, r) = get(&addr, "/c");
        let d = c.send(&t, r, false, T).await.ok().unwrap();
        assert_eq!(
            (d.status, d.body, d.received),
            (204, None, NO_CONTENT.len() as u64)
        );
        let (t, mut r) = get(&addr, "/d");
        *r.method_mut() = Method::POST;
        *r.body_mut() = vec![Bytes::from_static(b"xy")];
        let e = c.send(&t, r, true, T).await.ok().unwrap();
        assert_eq!((e.status, e.body.as_deref()), (500, Some(&b"bye"[..])));
        assert!(c.conns.is_empty(), "the server closed it");
        drop(c);
        let seen = h.await.unwrap();
        assert_eq!(seen.len(), 4, "all on one connection: {seen:?}");
        assert!(
            seen[0].starts_with("GET /a?b=1 HTTP/1.1\r\nhost: "),
            "{}",
            seen[0]
        );
        assert!(seen[3].starts_with("POST /d HTTP/1.1\r\n"));
        assert!(seen[3].contains("content-length: 2\r\n"), "{}", seen[3]);
    }

    #[tokio::test]
    async fn idle_close_is_retried_once_and_failures_are_classified() {
        // First connection: one answer, then closed while idle. The second request must go
        // out again on a new connection.
        let (addr, h) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"CLOSE",
            b"!HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"CLOSE",
        ])
        .await;
        let mut c = Conns::default();
        let (t, r) = get(&addr, "/");
        assert_eq!(c.send(&t, r, false, T).await.ok().unwrap().status, 200);
        let (t, r) = get(&addr, "/");
        let cut = c.send(&t, r, false, T).await.err();
        assert_eq!(
            cut,
            Some(FailureReason::Io),
            "retried, then the body was cut short"
        );
        let (t, r) = get(&addr, "/");
        // A fresh connection closed before any answer is a failure, not retried.
        assert_eq!(c.send(&t, r, false, T).await.err(), Some(FailureReason::Io));
        let seen = h.await.unwrap();
        assert_eq!(seen.len(), 4);
        // Nothing listens now.
        let (t, r) = get(&addr, "/");
        assert_eq!(
            c.send(&t, r, false, T).await.err(),
            Some(FailureReason::Connect)
        );
    }

    #[tokio::test]
    async fn garbage_is_a_body_failure_and_silence_a_timeout() {
        let (addr, _h) = serve(vec![b"NOT HTTP\r\n\r\n"]).await;
        let mut c = Conns::default();
        let (t, r) = get(&addr, "/");
        assert_eq!(
            c.send(&t, r, false, T).await.err(),
            Some(FailureReason::Body)
        );
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (t, r) = get(&addr, "/");
        let t0 = std::time::Instant::now();
        let e = c.send(&t, r, false, Duration::from_millis(200)).await.err();
        assert_eq!(e, Some(FailureReason::Timeout));
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_file_body_arrives_byte_for_byte_after_its_head() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        // 300 KB: more than one socket buffer, so sendfile meets a full socket and waits.
        let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let chunks = [
            Bytes::from(body[..1000].to_vec()),
            Bytes::from(body[1000..].to_vec()),
        ];
        let f = FileBody::new(&chunks).expect("memfd");
        assert_eq!(f.len(), body.len());
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut b = vec![0u8; 65536];
            while got.len() < 300_000 + 43 {
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&b[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            got
        });
        let head = b"POST / HTTP/1.1\r\ncontent-length: 300000\r\n\r\n";
        assert_eq!(head.len(), 43);
        let mut c = Conns::default();
        let req = RawRequest {
            authority: &addr,
            head,
            body: &chunks,
            file: Some(&f),
            head_only: false,
        };
        let want = Want {
            body: false,
            headers: false,
        };
        let r = c.send_raw(req, want, T).await.ok().unwrap();
        assert_eq!(r.status, 200);
        let got = server.await.unwrap();
        assert_eq!(&got[..43], head);
        assert!(got[43..] == body[..], "the body differs");
    }
}
