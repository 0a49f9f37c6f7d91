//! How a VU reaches the target: a TCP connection, with TLS for `https://` ([`super::tls`]),
//! HTTP/1.1 or HTTP/2 ([`super::h2`]), and the timing of the connection's phases. [`Transport`] is the part of the validated config the
//! client needs; it is built once and shared by every VU.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls::{Alpn, TlsClient, TlsConfig, TlsPems, TlsSetupError};
use super::FailureReason;

/// A connection to the target, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How long the phases before the request took, for the connection a request opened (all
/// `None` when it reused one).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    /// TCP connects (all of them, when a closed kept-alive connection was replaced).
    pub connect: Duration,
    /// The TLS handshake, from the TCP connection to the handshake's end.
    pub tls_handshake: Option<Duration>,
}

/// `target.http_version`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum HttpVersion {
    #[default]
    #[serde(rename = "1.1")]
    Http1,
    #[serde(rename = "2")]
    Http2,
}

/// Most HTTP/2 connections per target (`target.http2_connections`).
pub const MAX_HTTP2_CONNECTIONS: u32 = 1024;

/// The client side of the target config: TLS, the HTTP version, and the HTTP/2 connections
/// the VUs share.
pub struct Transport {
    tls_cfg: TlsConfig,
    tls: OnceLock<Option<Arc<TlsClient>>>,
    version: HttpVersion,
    http2_connections: u32,
    h2: super::h2::Pool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls_cfg)
            .field("version", &self.version)
            .field("http2_connections", &self.http2_connections)
            .finish_non_exhaustive()
    }
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            tls_cfg: TlsConfig::default(),
            tls: OnceLock::new(),
            version: HttpVersion::Http1,
            http2_connections: 1,
            h2: Default::default(),
        }
    }
}

impl Transport {
    /// Check the TLS keys under `prefix` (`target.tls`), with the contents of the files they
    /// name in `pems`. With `eager` (the config sets a TLS key or names an https URL) the TLS
    /// client is built now, so its errors stop the start; otherwise on the first https
    /// request, which spares http-only runs the system store (and then no file is named).
    pub fn new(
        tls: &TlsConfig,
        prefix: &str,
        pems: &TlsPems,
        eager: bool,
        version: HttpVersion,
        http2_connections: u32,
    ) -> Result<Self, Vec<TlsSetupError>> {
        let t = Self {
            tls_cfg: tls.clone(),
            tls: OnceLock::new(),
            version,
            http2_connections: http2_connections.clamp(1, MAX_HTTP2_CONNECTIONS),
            h2: Default::default(),
        };
        if eager || *tls != TlsConfig::default() {
            let c = TlsClient::new(tls, prefix, pems, t.alpn())?;
            let _ = t.tls.set(Some(Arc::new(c)));
        }
        Ok(t)
    }

    /// The TLS client. Built here only for the default `[target.tls]` (no files to read);
    /// None if that failed.
    pub fn tls(&self) -> Option<&Arc<TlsClient>> {
        self.tls
            .get_or_init(|| {
                let no_files = TlsPems::default();
                match TlsClient::new(&self.tls_cfg, "target.tls", &no_files, self.alpn()) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(errs) => {
                        for e in errs {
                            tracing::error!("TLS set-up failed: {e}");
                        }
                        None
                    }
                }
            })
            .as_ref()
    }

    fn alpn(&self) -> Alpn {
        match self.version {
            HttpVersion::Http1 => Alpn::Http1,
            HttpVersion::Http2 => Alpn::H2,
        }
    }

    pub fn http_version(&self) -> HttpVersion {
        self.version
    }

    /// HTTP/2 connections per target.
    pub fn http2_connections(&self) -> usize {
        self.http2_connections as usize
    }

    pub(super) fn h2_pool(&self) -> &super::h2::Pool {
        &self.h2
    }

    /// True when `target.tls.insecure_skip_verify` is on.
    pub fn insecure(&self) -> bool {
        self.tls_cfg.insecure_skip_verify
    }

    /// A connection to `authority`, with TLS to `host` when `tls`. A TCP failure is reason
    /// `connect`, a TLS one `tls` (its cause logged once by the TLS client).
    pub async fn connect(
        &self,
        authority: &str,
        host: &str,
        tls: bool,
        phases: &mut Phases,
    ) -> Result<Stream, FailureReason> {
        let t0 = Instant::now();
        let tcp = TcpStream::connect(authority).await;
        phases.connect += t0.elapsed();
        let tcp = tcp.map_err(|e| match e.raw_os_error() {
            // Out of descriptors is loadspec's own limit, not the target's.
            Some(libc::EMFILE | libc::ENFILE) => {
                crate::load::http1::warn_fd_limit(&e);
                FailureReason::FdLimit
            }
            _ => FailureReason::Connect,
        })?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return Ok(Stream::Plain(tcp));
        }
        let client = self.tls().ok_or(FailureReason::Tls)?;
        let t0 = Instant::now();
        let s = client
            .handshake(host, tcp)
            .await
            .map_err(|_| FailureReason::Tls)?;
        phases.tls_handshake = Some(t0.elapsed());
        Ok(Stream::Tls(Box::new(s)))
    }
}
