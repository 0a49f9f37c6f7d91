//! HTTP/2 (`target.http_version = "2"`) with hyper's client connection: ALPN `h2` over TLS,
//! prior knowledge (h2c) over plain TCP. Unlike HTTP/1.1, where each VU owns its connection,
//! the VUs share `target.http2_connections` connections per target, each VU its own stream:
//! VU `i` uses connection `i mod N`, so a run's connection count is fixed whatever its VUs.
//!
//! The request is the same serialized head the HTTP/1.1 path writes ([`RawRequest`]), parsed
//! back into an `http::Request` (one `httparse` pass per request), so every header rule of the
//! VU applies unchanged; connection-specific headers, which HTTP/2 forbids, are dropped. The
//! status, failure reasons and timings mean what they mean for HTTP/1.1: `connect` for TCP,
//! `tls` for the handshake (and a server that refuses `h2` by ALPN), `io` for a connection or
//! stream that breaks, `timeout` for the step's timeout.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::http1::Kept;
use http::{HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::http1::{RawRequest, Response, Target, Timing, Want};
use super::net::{Phases, Stream, Transport};
use super::FailureReason;

/// The request body: the step's chunks as data frames, without joining them.
pub type Body =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;
type Sender = SendRequest<Body>;
type Slot = tokio::sync::Mutex<Option<Sender>>;
/// A target's connections: its authority and whether it is https.
type TargetKey = (String, bool);

/// Most request headers parsed back from a serialized head.
const MAX_HEADERS: usize = 100;

/// The shared connections of a run: per target (authority and scheme) a fixed number of
/// slots, each holding one connection, made by the first VU that needs it.
#[derive(Default)]
pub struct Pool {
    targets: Mutex<HashMap<TargetKey, Arc<[Slot]>>>,
}

impl Pool {
    fn slots(&self, t: &Target, n: usize) -> Arc<[Slot]> {
        let mut m = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((t.authority.clone(), t.tls))
            .or_insert_with(|| (0..n.max(1)).map(|_| Slot::default()).collect())
            .clone()
    }
}

/// One VU's handles on the shared connections.
#[derive(Default)]
pub struct H2Conns {
    cached: Vec<(String, bool, Sender)>,
}

impl H2Conns {
    /// Send `req` on the VU's connection to its target, and read the whole response.
    pub async fn send(
        &mut self,
        transport: &Transport,
        slot: u64,
        req: &RawRequest<'_>,
        want: Want,
        max_capture_body: u64,
        phases: &mut Phases,
    ) -> Result<Response, FailureReason> {
        let t = req.target;
        let (mut sender, fresh) = self.sender(transport, slot, t, phases).await?;
        // HTTP/2 hands the request to the connection's task, so the last byte written is not
        // seen here: waiting counts from the hand-over to the response head (it includes the
        // upload of the body).
        let mut sent_at = Instant::now();
        let result = match sender.ready().await {
            Ok(()) => sender.send_request(build(req)?).await.map_err(Some),
            Err(_) => Err(None),
        };
        let resp = match result {
            Ok(r) => r,
            // A shared connection that closed before this request went out (the server's
            // GOAWAY, an idle close): replace it once, as HTTP/1.1 replaces an idle close.
            Err(e)
                if !fresh && sender.is_closed() && e.as_ref().is_none_or(|e| e.is_canceled()) =>
            {
                self.forget(t);
                let (mut s, _) = self.sender(transport, slot, t, phases).await?;
                s.ready().await.map_err(|e| reason(transport, &e))?;
                sent_at = Instant::now();
                s.send_request(build(req)?)
                    .await
                    .map_err(|e| reason(transport, &e))?
            }
            Err(Some(e)) => return Err(reason(transport, &e)),
            Err(None) => return Err(FailureReason::Io),
        };
        let waiting = sent_at.elapsed();
        let (parts, mut body) = resp.into_parts();
        // The same cap as HTTP/1.1: past `limits.max_capture_body` nothing more is kept.
        let mut kept = Kept::new(want.body, max_capture_body);
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| reason(transport, &e))?;
            if let Ok(data) = frame.into_data() {
                len += data.len() as u64;
                kept.keep(&data);
            }
        }
        let received = head_len(&parts.headers) + len;
        Ok(Response {
            status: parts.status.as_u16(),
            headers: if want.headers {
                parts.headers
            } else {
                Default::default()
            },
            body_over_cap: kept.over,
            body: kept.buf.map(BytesMut::freeze),
            received,
            timing: Timing {
                connect: phases.connect,
                waiting,
            },
        })
    }

    fn forget(&mut self, t: &Target) {
        self.cached
            .retain(|(a, tls, _)| !(a == &t.authority && *tls == t.tls));
    }

    /// The VU's connection to `t`: its cached handle, else the shared slot's connection, else
    /// a new one put into the slot. The bool is true for a connection made just now.
    async fn sender(
        &mut self,
        transport: &Transport,
        slot: u64,
        t: &Target,
        phases: &mut Phases,
    ) -> Result<(Sender, bool), FailureReason> {
        if let Some((_, _, s)) = self
            .cached
            .iter()
            .find(|(a, tls, s)| a == &t.authority && *tls == t.tls && !s.is_closed())
        {
            return Ok((s.clone(), false));
        }
        self.forget(t);
        let slots = transport.h2_pool().slots(t, transport.http2_connections());
        // One VU connects while the others sharing the slot wait for that connection.
        let mut g = slots[(slot % slots.len() as u64) as usize].lock().await;
        let (s, fresh) = match g.as_ref().filter(|s| !s.is_closed()) {
            Some(s) => (s.clone(), false),
            None => {
                let s = connect(transport, t, phases).await?;
                *g = Some(s.clone());
                (s, true)
            }
        };
        self.cached.push((t.authority.clone(), t.tls, s.clone()));
        Ok((s, fresh))
    }
}

/// A new HTTP/2 connection to `t`, its driver spawned on the runtime.
async fn connect(
    transport: &Transport,
    t: &Target,
    phases: &mut Phases,
) -> Result<Sender, FailureReason> {
    let stream = transport
        .connect(&t.authority, &t.host, t.tls, phases)
        .await?;
    if let Stream::Tls(s) = &stream {
        if s.get_ref().1.alpn_protocol() != Some(b"h2") {
            if let Some(c) = transport.tls() {
                c.note(&format!(
                    "{} did not agree to HTTP/2 by ALPN (set target.http_version = \"1.1\")",
                    t.host
                ));
            }
            return Err(FailureReason::Tls);
        }
    }
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| reason(transport, &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "http2 connection ended with an error");
        }
    });
    Ok(sender)
}

/// `tls` when a TLS error is in the chain (its cause logged once), else `io`.
fn reason(transport: &Transport, e: &hyper::Error) -> FailureReason {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if super::tls::tls_error(io).is_some() {
                if let Some(c) = transport.tls() {
                    c.note(&super::tls::describe(io, "the server"));
                }
                return FailureReason::Tls;
            }
        }
        src = s.source();
    }
    FailureReason::Io
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2); `Host` becomes the `:authority`.
fn connection_specific(name: &str) -> bool {
    [
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The `http::Request` a serialized HTTP/1.1 head and body describe.
fn build(req: &RawRequest<'_>) -> Result<http::Request<Body>, FailureReason> {
    // Uninitialised slots, as for responses (src/load/http1/read.rs): only the headers found
    // are written.
    let mut hdrs = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut []);
    // The head was built by the VU: a parse failure is ours, never the target's.
    if !matches!(
        r.parse_with_uninit_headers(req.head, &mut hdrs),
        Ok(httparse::Status::Complete(_))
    ) {
        return Err(FailureReason::Io);
    }
    let t = req.target;
    let scheme = if t.tls { "https" } else { "http" };
    let host = t.host_header.to_str().unwrap_or(&t.authority);
    let uri = format!("{scheme}://{host}{}", r.path.unwrap_or("/"));
    let mut b = http::Request::builder()
        .method(
            Method::from_bytes(r.method.unwrap_or("GET").as_bytes())
                .map_err(|_| FailureReason::Io)?,
        )
        .uri(uri)
        .version(http::Version::HTTP_2);
    for h in r.headers.iter().filter(|h| !connection_specific(h.name)) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            b = b.header(k, v);
        }
    }
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = req
        .body
        .iter()
        .map(|c| Ok(Frame::data(c.clone())))
        .collect();
    b.body(StreamBody::new(futures::stream::iter(frames)))
        .map_err(|_| FailureReason::Io)
}

/// Approximate size of a response head: each header line plus its separators (HTTP/2 sends
/// them compressed; this is what they would take in HTTP/1.1, so `data_received` compares).
fn head_len(h: &http::HeaderMap) -> u64 {
    h.iter()
        .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
        .sum::<u64>()
        + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_becomes_an_h2_request_without_connection_headers() {
        let t = Target::parse("https://api.example:8443/x?y=1").unwrap();
        let head = b"POST /x?y=1 HTTP/1.1\r\nuser-agent: loadspec/0.1\r\nhost: api.example:8443\r\nconnection: keep-alive\r\ncontent-length: 3\r\n\r\n";
        let body = [Bytes::from_static(b"a"), Bytes::from_static(b"bc")];
        let raw = RawRequest {
            target: &t,
            head,
            body: &body,
            file: None,
            head_only: false,
        };
        let r = build(&raw).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "https://api.example:8443/x?y=1");
        assert_eq!(r.version(), http::Version::HTTP_2);
        let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["user-agent", "content-length"]);
    }
}
