//! Where a request goes: an absolute URL parsed into the connection key (`host:port`), the
//! `Host` header and the origin-form request target.

use http::uri::InvalidUri;
use http::{HeaderValue, Uri};

/// Why a URL cannot be a request target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid URL {url:?}: {source}")]
    Invalid { url: String, source: InvalidUri },
    #[error("not an http:// or https:// URL: {0:?}")]
    Scheme(String),
    #[error("URL has no host: {0:?}")]
    NoHost(String),
    #[error("invalid host in {0:?}")]
    Host(String),
    #[error("invalid path in {url:?}: {source}")]
    Path { url: String, source: InvalidUri },
}

/// Where a request goes: the connection key and the request target.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    /// The URL's host, without IPv6 brackets: the TLS server name.
    pub host: String,
    /// An `https://` URL: the connection speaks TLS.
    pub tls: bool,
    pub host_header: HeaderValue,
    /// Origin-form request target (`/path?query`).
    pub path: Uri,
}

impl Target {
    /// Parse an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let uri: Uri = url.parse().map_err(|source| TargetError::Invalid {
            url: url.to_string(),
            source,
        })?;
        let (tls, default_port) = match uri.scheme_str() {
            Some("http") => (false, 80),
            Some("https") => (true, 443),
            _ => return Err(TargetError::Scheme(url.to_string())),
        };
        let host = uri
            .host()
            .ok_or_else(|| TargetError::NoHost(url.to_string()))?;
        let port = uri.port_u16().unwrap_or(default_port);
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        // `host[:port]` as written, without any `user:password@`: credentials never go into
        // `Host` (validation turns static ones into `Authorization: Basic`).
        let written = uri.authority().map_or(host, |a| a.as_str());
        let written = written.rsplit_once('@').map_or(written, |(_, h)| h);
        let host_header =
            HeaderValue::from_str(written).map_err(|_| TargetError::Host(url.to_string()))?;
        let path: Uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|source| TargetError::Path {
                url: url.to_string(),
                source,
            })?;
        Ok(Self {
            authority,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            tls,
            host_header,
            path,
        })
    }

    /// The request target as written in the request line.
    pub fn path_str(&self) -> &str {
        self.path.path_and_query().map_or("/", |p| p.as_str())
    }
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
        assert_eq!(t.path_str(), "/api/v1/x?a=1");
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.path, "/");
        assert!(!t.tls);
        assert!(Target::parse("nope").is_err());
        let t = Target::parse("http://user:secret@127.0.0.1:81/x").unwrap();
        assert_eq!(t.host_header, "127.0.0.1:81");
        assert_eq!(t.authority, "127.0.0.1:81");
        assert!(matches!(
            Target::parse("ftp://x/"),
            Err(TargetError::Scheme(_))
        ));
        let t = Target::parse("https://[::1]/x").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host.as_str(), t.tls),
            ("[::1]:443", "::1", true)
        );
        assert_eq!(t.host_header, "[::1]");
        let t = Target::parse("https://example.com:8443").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host.as_str()),
            ("example.com:8443", "example.com")
        );
    }
}
