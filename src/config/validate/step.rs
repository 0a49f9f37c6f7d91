//! One request step, checked by concern: the method, the URL (with credentials in it), the
//! headers and auth, the body, the expected statuses and timeout, and the captures. Every
//! `${name}` must be visible at this step ([`Vars`]).

use http::{HeaderName, Method};

use super::scenario::Ctx;
use super::target::{check_url, take_userinfo};
use super::vars::Vars;
use super::{check_statuses, valid_label};
use crate::config::raw::{CaptureConfig, RequestConfig, TargetConfig};
use crate::config::Errors;
use crate::load::body::{self, BodySpec};
use crate::load::plan::{Capture, CaptureKind, Expect, Step};
use crate::load::template::{Escape, Template};

/// An `Authorization` value and the field it comes from.
type Auth = (String, String);

/// The step at `rp`; None when it has errors (all recorded). Captures are defined in `vars`
/// after the step is parsed, so they are visible to later steps only.
pub(super) fn step(
    r: &RequestConfig,
    rp: &str,
    ctx: &Ctx<'_>,
    vars: &mut Vars,
    errs: &mut Errors,
) -> Option<Step> {
    let before = errs.len();
    let method = method(r, rp, errs);
    let (url, basic) = url(r, rp, ctx.base_url, vars, errs);
    let headers = headers(r, rp, ctx.target, basic, vars, errs);
    let body = body(r, rp, method.as_ref(), ctx, vars, errs);
    check_statuses(&r.expect, &format!("{rp}.expect"), errs);
    let timeout = r.timeout.unwrap_or(ctx.target.timeout);
    if timeout.is_zero() {
        errs.add(format!("{rp}.timeout"), "must be greater than 0s");
    }
    let captures = captures(r, rp, vars, errs);
    if errs.len() != before {
        return None;
    }
    Some(Step {
        name: r.name.clone(),
        method: method?,
        url: url?,
        headers,
        body: body?,
        expect: if r.expect.is_empty() {
            Expect::Any2xx
        } else {
            Expect::Codes(r.expect.clone())
        },
        timeout,
        captures,
    })
}

/// Parse `s` as a template; an error is recorded under `field`.
fn template(
    s: &str,
    esc: Escape,
    field: String,
    vars: &Vars,
    errs: &mut Errors,
) -> Option<Template> {
    vars.parse(s, esc).map_err(|e| errs.add(field, e)).ok()
}

fn method(r: &RequestConfig, rp: &str, errs: &mut Errors) -> Option<Method> {
    Method::from_bytes(r.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| {
            errs.add(
                format!("{rp}.method"),
                format!("not an HTTP method: {:?}", r.method),
            )
        })
        .ok()
}

/// The URL text and the field it comes from: `url` as given, or `path` after the base URL.
fn url_source(
    r: &RequestConfig,
    rp: &str,
    base_url: Option<&str>,
    errs: &mut Errors,
) -> Option<(String, String)> {
    match (&r.url, &r.path) {
        (Some(_), Some(_)) => {
            errs.add(format!("{rp}.path"), "give either url or path, not both");
            None
        }
        (Some(u), None) => Some((u.clone(), format!("{rp}.url"))),
        (None, Some(p)) => match base_url {
            Some(b) => {
                if !p.starts_with('/') {
                    errs.add(
                        format!("{rp}.path"),
                        format!("must start with '/', got {p:?}"),
                    );
                }
                Some((format!("{b}{p}"), format!("{rp}.path")))
            }
            None => {
                errs.add(
                    format!("{rp}.path"),
                    "needs target.base_url (or give an absolute url instead)",
                );
                None
            }
        },
        (None, None) => {
            errs.add(
                format!("{rp}.url"),
                "give url, or path with target.base_url",
            );
            None
        }
    }
}

/// The URL template, checked now with every `${name}` filled by a dummy so typos fail at
/// load; and the `Authorization: Basic` value when the URL held `user:password@`.
fn url(
    r: &RequestConfig,
    rp: &str,
    base_url: Option<&str>,
    vars: &Vars,
    errs: &mut Errors,
) -> (Option<Template>, Option<Auth>) {
    let mut basic = None;
    let dummies = vec![Some("x".to_string()); 64];
    let url = url_source(r, rp, base_url, errs).and_then(|(u, field)| {
        let mut t = template(&u, Escape::None, field.clone(), vars, errs)?;
        let probe = t.render(&dummies);
        if !check_url(&probe, &field, errs) {
            return None;
        }
        match take_userinfo(&probe) {
            None => {}
            Some((stripped, auth)) if t.as_static().is_some() => {
                // Credentials in the URL go out as `Authorization: Basic`, never in `Host`.
                t = Template::literal(stripped);
                basic = Some((auth, field.clone()));
            }
            Some(_) => {
                errs.add(
                    field,
                    "user:password@ in a URL with ${variables} is not supported; \
                     give the credentials as an Authorization header",
                );
                return None;
            }
        }
        // The client's own parser: what url::Url repairs (a space, a raw quote) it refuses,
        // and every request would fail at run time without a byte sent.
        if let Err(e) = crate::load::http1::Target::parse(&t.render(&dummies)) {
            errs.add(field, format!("cannot be sent: {e}"));
            return None;
        }
        Some(t)
    });
    (url, basic)
}

/// The headers to send: `target.headers` the step does not override, the step's own, then
/// the credentials as `Authorization`; each value a template.
fn headers(
    r: &RequestConfig,
    rp: &str,
    target: &TargetConfig,
    basic: Option<Auth>,
    vars: &Vars,
    errs: &mut Errors,
) -> Vec<(HeaderName, Template)> {
    // (name, value, field) of every header, before parsing.
    let mut srcs: Vec<(String, String, String)> = target
        .headers
        .iter()
        .filter(|(k, _)| !r.headers.keys().any(|rk| rk.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.clone(), v.clone(), format!("target.headers.{k}")))
        .collect();
    srcs.extend(
        r.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), format!("{rp}.headers.{k}"))),
    );
    srcs.extend(auth(r, rp, target, basic, &srcs, vars, errs));
    let mut headers = Vec::new();
    for (k, v, field) in srcs {
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            errs.add(field, format!("not a valid header name: {k:?}"));
            continue;
        };
        if let Some(t) = template(&v, Escape::None, field.clone(), vars, errs) {
            if let Some(s) = t.as_static() {
                if http::HeaderValue::from_str(s).is_err() {
                    // Never echo the value: it may hold a token.
                    errs.add(field, "not a valid header value (control characters?)");
                    continue;
                }
            }
            headers.push((name, t));
        }
    }
    headers
}

/// The `Authorization` headers that URL credentials and the bearer token add to `srcs`; one
/// source of credentials at most.
fn auth(
    r: &RequestConfig,
    rp: &str,
    target: &TargetConfig,
    basic: Option<Auth>,
    srcs: &[(String, String, String)],
    vars: &Vars,
    errs: &mut Errors,
) -> Vec<(String, String, String)> {
    let has_auth = |srcs: &[(String, String, String)]| {
        srcs.iter()
            .any(|(k, _, _)| k.eq_ignore_ascii_case("authorization"))
    };
    let bearer = r.bearer_token.as_ref().or(target.bearer_token.as_ref());
    let mut out = Vec::new();
    if let Some((value, field)) = basic {
        if bearer.is_some() || has_auth(srcs) {
            errs.add(
                field,
                "has user:password@ and there is also a bearer token or an Authorization header; give one of them",
            );
        } else {
            out.push(("authorization".into(), value, field));
        }
    }
    if let Some(tok) = bearer {
        let field = if r.bearer_token.is_some() {
            format!("{rp}.bearer_token")
        } else {
            "target.bearer_token".to_string()
        };
        // (URL credentials were not added: a bearer token rules them out above.)
        if has_auth(srcs) {
            errs.add(
                field.clone(),
                "conflicts with an Authorization header; give one of them",
            );
        }
        // `Bearer ` with nothing after it is sent without complaint by every client and
        // fails every request; an empty value is almost always an unset or empty variable.
        let probe = vars.parse(tok, Escape::None).ok();
        if probe
            .as_ref()
            .and_then(|t| t.as_static())
            .is_some_and(|t| t.trim().is_empty())
        {
            errs.add(
                field.clone(),
                "is empty after substitution; set the token (or its environment variable) or remove bearer_token",
            );
        }
        out.push(("authorization".into(), format!("Bearer {tok}"), field));
    }
    out
}

/// The body (its files' contents from the load phase); a GET or HEAD may not have one.
fn body(
    r: &RequestConfig,
    rp: &str,
    method: Option<&Method>,
    ctx: &Ctx<'_>,
    vars: &Vars,
    errs: &mut Errors,
) -> Option<BodySpec> {
    let body = match &r.body {
        None => Some(BodySpec::Empty),
        Some(b) => {
            // `build` records its own errors in `errs`; the templates' go after them.
            let mut template_errs = Errors::new();
            let spec = {
                let mut p = |s: &str, esc: Escape, field: String| {
                    template(s, esc, field, vars, &mut template_errs)
                };
                body::build(b, &format!("{rp}.body"), ctx.bodies, &mut p, errs)
            };
            errs.extend(template_errs);
            spec
        }
    };
    if matches!(
        body,
        Some(BodySpec::Static { .. } | BodySpec::Templated { .. })
    ) && method.is_some_and(|m| m == Method::GET || m == Method::HEAD)
    {
        errs.add(
            format!("{rp}.body"),
            format!("a {} request cannot have a body", r.method),
        );
    }
    body
}

/// The captures, each defined in `vars` once checked.
fn captures(r: &RequestConfig, rp: &str, vars: &mut Vars, errs: &mut Errors) -> Vec<Capture> {
    let mut out = Vec::new();
    for (i, c) in r.captures.iter().enumerate() {
        if let Some(kind) = capture_kind(c, &format!("{rp}.captures[{i}]"), vars, errs) {
            out.push(Capture {
                name: c.name.clone(),
                var: vars.define(&c.name),
                kind,
            });
        }
    }
    out
}

/// What one capture takes (JSON pointer, header or regex); its name must be a new variable.
fn capture_kind(
    c: &CaptureConfig,
    cp: &str,
    vars: &Vars,
    errs: &mut Errors,
) -> Option<CaptureKind> {
    if !valid_label(&c.name) || c.name.contains('.') {
        errs.add(
            format!("{cp}.name"),
            format!("must be letters, digits, '-' or '_', got {:?}", c.name),
        );
        return None;
    }
    if vars.columns.contains(&c.name) {
        errs.add(
            format!("{cp}.name"),
            format!(
                "{:?} is already a data column of the scenario's data file; use another name",
                c.name
            ),
        );
        return None;
    }
    let kinds = [c.json.is_some(), c.header.is_some(), c.regex.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        errs.add(cp, "give exactly one of json, header or regex");
        return None;
    }
    if let Some(p) = &c.json {
        if !(p.is_empty() || p.starts_with('/')) {
            errs.add(
                format!("{cp}.json"),
                format!("a JSON pointer starts with '/', got {p:?}"),
            );
            return None;
        }
        return Some(CaptureKind::JsonPointer(p.clone()));
    }
    if let Some(h) = &c.header {
        return HeaderName::from_bytes(h.as_bytes())
            .map(CaptureKind::Header)
            .map_err(|_| {
                errs.add(
                    format!("{cp}.header"),
                    format!("not a valid header name: {h:?}"),
                )
            })
            .ok();
    }
    let re = c.regex.as_deref().unwrap_or_default();
    regex::Regex::new(re)
        .map(CaptureKind::Regex)
        .map_err(|e| errs.add(format!("{cp}.regex"), format!("invalid regex: {e}")))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_of, raw, SCENARIO};

    /// Where the step under test is: the second request of [`SCENARIO`].
    const P: &str = "scenarios[0].requests[1]";

    /// The errors of [`SCENARIO`] with one more request whose fields are `fields`.
    fn errors_of_step(fields: &str) -> Vec<String> {
        errors_of(&format!(
            "{SCENARIO}[[scenarios.requests]]\nname = \"x\"\n{fields}\n"
        ))
    }

    /// The step with `fields` gives exactly `want`, each written after the step's path.
    fn check(fields: &str, want: &[&str]) {
        let want: Vec<String> = want.iter().map(|w| format!("{P}{w}")).collect();
        assert_eq!(errors_of_step(fields), want, "for {fields}");
    }

    #[test]
    fn method_and_url_errors_name_their_field() {
        check(
            "method = \"G T\"\nurl = \"http://h/\"",
            &[".method: not an HTTP method: \"G T\""],
        );
        check(
            "url = \"http://h/\"\npath = \"/\"",
            &[".path: give either url or path, not both"],
        );
        check(
            "path = \"/\"",
            &[".path: needs target.base_url (or give an absolute url instead)"],
        );
        check("", &[".url: give url, or path with target.base_url"]);
        // A variable captured by an earlier step, in a URL with credentials.
        let e = errors_of_step(
            "url = \"http://h/\"\ncaptures = [{ name = \"id\", json = \"/id\" }]\n[[scenarios.requests]]\nname = \"y\"\nurl = \"http://u:p@h/${id}\"",
        );
        assert_eq!(
            e,
            ["scenarios[0].requests[2].url: user:password@ in a URL with ${variables} is not supported; give the credentials as an Authorization header"]
        );
    }

    #[test]
    fn url_credentials_become_one_authorization_header() {
        let text = SCENARIO.replace("http://127.0.0.1:1/", "http://al:pw@127.0.0.1:1/");
        let s = super::super::validate(raw(&text), std::path::Path::new(".")).unwrap();
        let step = &s.scenarios[0].steps[0];
        assert_eq!(step.url.as_static(), Some("http://127.0.0.1:1/"));
        let auth: Vec<_> = step
            .headers
            .iter()
            .filter(|(n, _)| n == "authorization")
            .map(|(_, v)| v.as_static())
            .collect();
        assert_eq!(auth, vec![Some("Basic YWw6cHc=")]);
        check(
            "url = \"http://al:pw@h/\"\nbearer_token = \"abcd\"",
            &[".url: has user:password@ and there is also a bearer token or an Authorization header; give one of them"],
        );
    }

    #[test]
    fn headers_and_bearer_tokens_conflict_and_are_checked() {
        check(
            "url = \"http://h/\"\nbearer_token = \"\"\nheaders = { authorization = \"x\", \"bad name\" = \"v\" }",
            &[
                ".bearer_token: conflicts with an Authorization header; give one of them",
                ".bearer_token: is empty after substitution; set the token (or its environment variable) or remove bearer_token",
                ".headers.bad name: not a valid header name: \"bad name\"",
            ],
        );
    }

    #[test]
    fn a_get_has_no_body_and_expect_and_timeout_are_checked() {
        check(
            "url = \"http://h/\"\nexpect = [42]\ntimeout = \"0s\"\nbody = { type = \"text\", text = \"hi\" }",
            &[
                ".body: a GET request cannot have a body",
                ".expect[0]: must be an HTTP status 100-599, got 42",
                ".timeout: must be greater than 0s",
            ],
        );
        check(
            "method = \"POST\"\nurl = \"http://h/\"\nbody = { type = \"text\", text = \"${nope_not_set_anywhere}\" }",
            &[".body.text: unknown variable `${nope_not_set_anywhere}`: not a capture, a data column or a set environment variable"],
        );
    }

    #[test]
    fn captures_need_one_kind_a_new_name_and_come_after_their_step() {
        let e = errors_of_step(
            "url = \"http://h/${tok}\"\ncaptures = [{ name = \"tok\", json = \"a\" }, { name = \"a.b\", header = \"x\" }, { name = \"c\" }, { name = \"d\", regex = \"(\" }]",
        );
        let want = [
            format!("{P}.url: variable `${{tok}}` is used before it is captured (it is captured by {P})"),
            format!("{P}.captures[0].json: a JSON pointer starts with '/', got \"a\""),
            format!("{P}.captures[1].name: must be letters, digits, '-' or '_', got \"a.b\""),
            format!("{P}.captures[2]: give exactly one of json, header or regex"),
        ];
        assert_eq!(e[..4], want, "{e:?}");
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(
            e[4].starts_with(&format!("{P}.captures[3].regex: invalid regex: ")),
            "{e:?}"
        );
    }
}
