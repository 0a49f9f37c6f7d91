//! The connection cache of one VU (one connection per target authority, no pool shared by
//! VUs), and the exchange on a connection: write the request, read its response, keep the
//! connection when the response leaves it reusable, and replace a kept-alive connection the
//! server closed while idle once.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::read::{read_chunked, read_exact, read_head, read_to_eof, Framing, Kept};
use super::write::{write_all, write_file};
use super::{Limits, RawRequest, Response, Target, Want};
use crate::load::net::{HttpVersion, Phases, Stream, Transport};
use crate::load::tls;
use crate::load::FailureReason;

/// A connection's read buffer starts this small, so 10,000 idle VUs stay cheap.
pub(super) const READ_BUF: usize = 4 * 1024;
/// A read buffer grown past this by a large response is dropped after it.
pub(super) const KEEP_BUF: usize = 64 * 1024;

/// Sockets the VUs hold now, over all VUs, and how many they may hold: the file-descriptor
/// limit minus what the server and the rest of the process need
/// ([`set_socket_budget`]). Past the budget a connect fails with `fd_limit` without a system
/// call, so the VUs can never take the descriptors `/metrics` needs.
static SOCKETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static BUDGET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// Cap the sockets all VUs together may hold (set once at start by the binary).
pub fn set_socket_budget(n: u64) {
    BUDGET.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// One socket counted against the budget while it lives.
struct Slot;

impl Slot {
    fn take() -> Option<Self> {
        use std::sync::atomic::Ordering::Relaxed;
        if SOCKETS.fetch_add(1, Relaxed) >= BUDGET.load(Relaxed) {
            SOCKETS.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        SOCKETS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(super) struct Conn {
    _slot: Slot,
    authority: String,
    host: String,
    pub(super) stream: Stream,
    pub(super) buf: BytesMut,
    /// It carried a request before: an EOF before the answer means the server closed it idle.
    pub(super) reused: bool,
    /// A TLS error met while reading or writing, in plain words: the failure is then `tls`.
    pub(super) tls_cause: Option<String>,
    /// When the first byte of the current response arrived.
    pub(super) first_byte: Option<Instant>,
}

impl Conn {
    /// Keep the cause of an I/O error that came from TLS (an alert, a bad record).
    pub(super) fn note(&mut self, e: &io::Error) {
        if tls::tls_error(e).is_some() {
            self.tls_cause = Some(tls::describe(e, &self.host));
        }
    }
}

/// The connections of one VU, its scratch buffer for request heads, and the set-up phases of
/// its last request.
#[derive(Default)]
pub struct Conns {
    conns: Vec<Conn>,
    head: Vec<u8>,
    limits: Limits,
    /// Bytes the socket took during the last [`Conns::send_raw`], also when it failed.
    pub last_sent: u64,
    /// Whether the last [`Conns::send_raw`] opened a connection: `Some(true)` it did,
    /// `Some(false)` it failed to, `None` it reused one (the target's up/down state).
    pub last_connect: Option<bool>,
    transport: Arc<Transport>,
    phases: Phases,
    /// The VU's number: its HTTP/2 connection is `slot mod http2_connections`.
    slot: u64,
    h2: crate::load::h2::H2Conns,
    /// Requests sent again on a new connection since [`Conns::take_retries`].
    retries: u64,
}

/// Why an exchange ended without a response.
pub(super) enum Fail {
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
    pub fn new(transport: Arc<Transport>, slot: u64, limits: Limits) -> Self {
        Self {
            transport,
            slot,
            limits,
            ..Default::default()
        }
    }

    /// The set-up phases of the last request (none when it reused a connection).
    pub fn phases(&self) -> Phases {
        self.phases
    }

    fn take(&mut self, t: &Target) -> Option<Conn> {
        let i = self
            .conns
            .iter()
            .position(|c| c.authority == t.authority && c.stream.is_tls() == t.tls)?;
        Some(self.conns.swap_remove(i))
    }

    async fn connect(
        transport: &Transport,
        t: &Target,
        phases: &mut Phases,
    ) -> Result<Conn, FailureReason> {
        let Some(fd_slot) = Slot::take() else {
            super::warn_fd_limit(&io::Error::other(
                "the VUs' share of the file-descriptor limit is in use",
            ));
            return Err(FailureReason::FdLimit);
        };
        let stream = transport
            .connect(&t.authority, &t.host, t.tls, phases)
            .await?;
        Ok(Conn {
            _slot: fd_slot,
            authority: t.authority.clone(),
            host: t.host.clone(),
            stream,
            buf: BytesMut::with_capacity(READ_BUF),
            reused: false,
            tls_cause: None,
            first_byte: None,
        })
    }

    /// The reason of a failed exchange: `tls` when a TLS error caused it (its cause is logged
    /// once), else what the exchange said.
    fn reason(&self, conn: &mut Conn, f: Fail) -> FailureReason {
        if let Some(cause) = conn.tls_cause.take() {
            if let Some(t) = self.transport.tls() {
                t.note(&cause);
            }
            return FailureReason::Tls;
        }
        match f {
            Fail::Closed => FailureReason::Io,
            Fail::Reason(r) => r,
        }
    }

    /// Resends since the last call (a kept-alive connection found closed, then replaced).
    pub fn take_retries(&mut self) -> u64 {
        std::mem::take(&mut self.retries)
    }

    /// Send an `http::Request` (tests build requests this way; the VUs use
    /// [`Conns::send_raw`] with heads they prepared).
    #[cfg(test)]
    pub async fn send(
        &mut self,
        target: &super::Target,
        req: http::Request<Vec<bytes::Bytes>>,
        keep_body: bool,
        timeout: Duration,
    ) -> Result<Response, FailureReason> {
        use super::write::{write_header, write_request_line};
        use bytes::Bytes;
        use http::Method;
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
            target,
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

    /// Connect, noting the outcome in `last_connect`.
    async fn open(&mut self, t: &Target) -> Result<Conn, FailureReason> {
        let r = Self::connect(&self.transport, t, &mut self.phases).await;
        // Only the target's answer counts for its up/down state, not loadspec's own limits.
        match &r {
            Ok(_) => self.last_connect = Some(true),
            Err(FailureReason::Connect) => self.last_connect = Some(false),
            Err(_) => {}
        }
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
        self.last_sent = 0;
        self.last_connect = None;
        let limits = self.limits;
        self.phases = Phases::default();
        if self.transport.http_version() == HttpVersion::Http2 {
            let (t, slot) = (&*self.transport, self.slot);
            let cap = limits.max_capture_body;
            let fut = self.h2.send(t, slot, &req, want, cap, &mut self.phases);
            return tokio::time::timeout(timeout, fut)
                .await
                .unwrap_or(Err(FailureReason::Timeout));
        }
        let fut = async {
            let mut conn = match self.take(req.target) {
                Some(c) => c,
                None => self.open(req.target).await?,
            };
            loop {
                match exchange(&mut conn, &req, want, &limits, &mut self.last_sent).await {
                    Ok((mut resp, reusable)) => {
                        resp.timing.connect = self.phases.connect;
                        if reusable {
                            conn.reused = true;
                            if conn.buf.capacity() > KEEP_BUF {
                                conn.buf = BytesMut::with_capacity(READ_BUF);
                            }
                            self.conns.push(conn);
                        }
                        return Ok(resp);
                    }
                    // Closed before any byte of the response arrived (a response byte makes
                    // any later failure the request's own): safe to send again, even a POST
                    // the server never answered. Counted, never silent.
                    Err(Fail::Closed) if conn.reused => {
                        self.retries += 1;
                        conn = self.open(req.target).await?;
                    }
                    Err(f) => return Err(self.reason(&mut conn, f)),
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

/// Write the request, read its response; the bool says whether the connection can carry the
/// next request.
async fn exchange(
    conn: &mut Conn,
    req: &RawRequest<'_>,
    want: Want,
    limits: &Limits,
    sent: &mut u64,
) -> Result<(Response, bool), Fail> {
    let written = match (&mut conn.stream, req.file) {
        // The body by page reference needs the plain socket; over TLS every byte must pass
        // through the cipher, so it goes out from memory like any other body.
        (Stream::Plain(s), Some(f)) => write_file(s, req.head, f, sent).await,
        (Stream::Plain(s), None) => write_all(s, req.head, req.body, sent).await,
        (s @ Stream::Tls(_), _) => match write_all(s, req.head, req.body, sent).await {
            // rustls holds the last record until flushed.
            Ok(()) => s.flush().await,
            e => e,
        },
    };
    if let Err(e) = written {
        conn.note(&e);
        return Err(if conn.reused && is_closed(&e) {
            Fail::Closed
        } else {
            Fail::Reason(FailureReason::Io)
        });
    }
    let written_at = Instant::now();
    conn.buf.clear();
    conn.first_byte = None;
    let (status, framing, close, headers, head_len) =
        read_head(conn, req.head_only, want, limits).await?;
    let waiting = conn
        .first_byte
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(written_at));
    let mut body = Kept::new(want.body, limits.max_capture_body);
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
            body: body.buf.map(BytesMut::freeze),
            body_over_cap: body.over,
            received: head_len + len,
            timing: super::Timing {
                connect: Duration::ZERO,
                waiting,
            },
        },
        reusable,
    ))
}

pub(super) fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::super::{FileBody, Target};
    use super::*;
    use bytes::Bytes;
    use http::header::HOST;
    use http::Method;
    use http::Request;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

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
            target: &Target::parse(&format!("http://{addr}/")).unwrap(),
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
