//! The HTTP/1.1 client. Each VU owns its connections (one per target authority), as k6 and
//! wrk do: no connection pool shared by all VUs, so no pool lock on the hot path, and the
//! server sees exactly one connection per active VU.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Uri};
use http_body_util::BodyExt;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::ReqBody;
use crate::metrics::FailureReason;

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
}

/// A completed exchange.
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body, kept only when the caller asked for it (captures).
    pub body: Option<Bytes>,
    /// Bytes received: an estimate of the head plus the exact body length.
    pub received: u64,
}

/// The connections of one VU.
#[derive(Default)]
pub struct Conns {
    conns: Vec<(String, SendRequest<ReqBody>)>,
}

impl Conns {
    fn take_ready(&mut self, authority: &str) -> Option<SendRequest<ReqBody>> {
        let i = self.conns.iter().position(|(a, _)| a == authority)?;
        let (_, s) = self.conns.swap_remove(i);
        (!s.is_closed()).then_some(s)
    }

    async fn connect(authority: &str) -> Result<SendRequest<ReqBody>, FailureReason> {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|_| FailureReason::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| FailureReason::Connect)?;
        tokio::spawn(async move {
            // The connection ends when the VU drops its sender or the server closes it; both
            // are normal, so the result is not interesting.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Send one request and read the whole response, within `timeout`.
    pub async fn send(
        &mut self,
        target: &Target,
        req: Request<ReqBody>,
        keep_body: bool,
        timeout: Duration,
    ) -> Result<Response, FailureReason> {
        let authority = target.authority.clone();
        let fut = async {
            let mut sender = match self.take_ready(&authority) {
                Some(s) => s,
                None => Self::connect(&authority).await?,
            };
            if sender.ready().await.is_err() {
                sender = Self::connect(&authority).await?;
            }
            let resp = sender.send_request(req).await.map_err(classify)?;
            let (parts, mut body) = resp.into_parts();
            let mut received = 17 + head_len(&parts.headers);
            let mut buf = keep_body.then(BytesMut::new);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| FailureReason::Body)?;
                if let Ok(data) = frame.into_data() {
                    received += data.len() as u64;
                    if let Some(b) = buf.as_mut() {
                        b.extend_from_slice(&data);
                    }
                }
            }
            // Keep the connection for the next request unless the server is closing it.
            if !sender.is_closed() {
                self.conns.push((authority.clone(), sender));
            }
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: buf.map(BytesMut::freeze),
                received,
            })
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            // The connection that timed out was dropped with the future: a late response
            // cannot be read as the answer to the next request.
            Err(_) => Err(FailureReason::Timeout),
        }
    }
}

fn classify(e: hyper::Error) -> FailureReason {
    if e.is_timeout() {
        FailureReason::Timeout
    } else if e.is_body_write_aborted() || e.is_incomplete_message() || e.is_canceled() {
        FailureReason::Io
    } else if e.is_parse() {
        FailureReason::Body
    } else {
        FailureReason::Io
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

    #[test]
    fn target_parse() {
        let t = Target::parse("http://127.0.0.1:8080/api/v1/x?a=1").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path, "/api/v1/x?a=1");
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.path, "/");
        assert!(Target::parse("nope").is_err());
    }
}
