//! `[target]` and every URL: the base URL, the scheme and host of a URL, credentials written
//! into a URL, and the transport (TLS, HTTP version, HTTP/2 connections).

use crate::config::raw::{RawConfig, TargetConfig};
use crate::config::Errors;
use crate::load::tls::TlsPems;

/// Where the TLS keys sit, the prefix of their errors.
pub(super) const TLS: &str = "target.tls";

/// `target.base_url` checked and without its trailing `/`, so a step's `path` appends to it.
pub(super) fn base_url(target: &TargetConfig, errs: &mut Errors) -> Option<String> {
    target.base_url.as_deref().map(|u| {
        check_url(u, "target.base_url", errs);
        u.trim_end_matches('/').to_string()
    })
}

/// The URL without `user:password@`, and the `Authorization: Basic` value for it, when it has
/// userinfo. The credentials are percent-decoded as RFC 3986 writes them.
pub(super) fn take_userinfo(u: &str) -> Option<(String, String)> {
    let mut url = url::Url::parse(u).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let creds = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or(""))
    );
    let _ = url.set_username("");
    let _ = url.set_password(None);
    use base64::Engine as _;
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    );
    // url::Url adds a '/' to an empty path; keep the user's spelling otherwise.
    let mut stripped = url.to_string();
    if !u.trim_end().ends_with('/') && url.path() == "/" && url.query().is_none() {
        stripped.pop();
    }
    Some((stripped, value))
}

/// The client settings of `target`: TLS (from the PEM files' contents, read by the load
/// phase), HTTP version, HTTP/2 connections. The TLS client is built at once (so a bad key
/// stops the start) when a TLS key is set or a URL is https.
pub(super) fn transport(
    raw: &RawConfig,
    pems: &TlsPems,
    errs: &mut Errors,
) -> crate::load::net::Transport {
    let https = |u: &Option<String>| u.as_deref().is_some_and(|u| u.starts_with("https:"));
    let eager = https(&raw.target.base_url)
        || raw
            .scenarios
            .iter()
            .flat_map(|s| s.setup.iter().chain(&s.requests))
            .any(|r| https(&r.url));
    let n = raw.target.http2_connections;
    let max = crate::load::net::MAX_HTTP2_CONNECTIONS;
    if !(1..=max).contains(&n) {
        errs.add(
            "target.http2_connections",
            format!("must be from 1 to {max}, got {n}"),
        );
    }
    let t = &raw.target;
    crate::load::net::Transport::new(&t.tls, TLS, pems, eager, t.http_version, n).unwrap_or_else(
        |es| {
            for e in es {
                errs.add(e.field, e.reason);
            }
            Default::default()
        },
    )
}

/// Whether `u` is an absolute http(s) URL with a host; the error, under `path`, says which.
pub(super) fn check_url(u: &str, path: &str, errs: &mut Errors) -> bool {
    match url::Url::parse(u) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {
            if url.host_str().is_none() {
                errs.add(path, format!("has no host: {u:?}"));
                return false;
            }
            true
        }
        Ok(url) => {
            errs.add(
                path,
                format!(
                    "scheme must be http or https, got {:?} in {u:?}",
                    url.scheme()
                ),
            );
            false
        }
        Err(e) => {
            errs.add(path, format!("not a valid URL ({e}): {u:?}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_of, SCENARIO};
    use super::*;

    #[test]
    fn userinfo_becomes_basic_auth_and_leaves_the_url() {
        let (url, auth) = take_userinfo("http://al%40ice:p+w@h:8/x").unwrap();
        assert_eq!(url, "http://h:8/x");
        // base64("al@ice:p+w")
        assert_eq!(auth, "Basic YWxAaWNlOnArdw==");
        assert_eq!(take_userinfo("http://u@h").unwrap().0, "http://h");
        assert_eq!(take_userinfo("http://h/"), None);
        assert_eq!(take_userinfo("not a url"), None);
    }

    #[test]
    fn urls_need_http_and_a_host() {
        let mut errs = Errors::new();
        let ok: Vec<bool> = ["https://h/p", "ftp://h/", "http://", "/rel"]
            .iter()
            .zip(["a", "b", "c", "d"])
            .map(|(u, field)| check_url(u, field, &mut errs))
            .collect();
        assert_eq!(ok, [true, false, false, false]);
        let Err(crate::config::ConfigError::Invalid(e)) = errs.finish(()) else {
            panic!("errors expected")
        };
        let e: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            [
                "b: scheme must be http or https, got \"ftp\" in \"ftp://h/\"",
                "c: not a valid URL (empty host): \"http://\"",
                "d: not a valid URL (relative URL without a base): \"/rel\"",
            ]
        );
    }

    #[test]
    fn target_section_errors_name_their_keys() {
        let e = errors_of(&format!(
            "[target]\nbase_url = \"ftp://h\"\ntimeout = \"0s\"\nhttp2_connections = 0\n{SCENARIO}"
        ));
        assert_eq!(e[0], "target.timeout: must be greater than 0s");
        assert_eq!(
            e[1],
            "target.base_url: scheme must be http or https, got \"ftp\" in \"ftp://h\""
        );
        assert!(
            e[2].starts_with("target.http2_connections: must be from 1 to "),
            "{e:?}"
        );
        // A step without its own timeout inherits the target's.
        assert_eq!(
            e[3],
            "scenarios[0].requests[0].timeout: must be greater than 0s"
        );
        assert_eq!(e.len(), 4, "{e:?}");
    }
}
