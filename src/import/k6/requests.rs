//! `http.get/post/put/patch/del/head/options/request/batch` and `http.file` into loadspec
//! steps: URL, method, headers (an `Authorization: Bearer …` header becomes `bearer_token`),
//! body (object → form, `JSON.stringify` → json, string → text, object with `http.file` →
//! multipart), `timeout` and `tags.name`. A part that cannot be represented is reported with
//! the request it belongs to; the request is still written without that part.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oxc_ast::ast::CallExpression;
use oxc_span::Span;

use super::flow::Walker;
use super::value::{duration, label, StepRef, Val};
use crate::config::raw::{BodyConfig, FilePart, RequestConfig, TextPart};

/// One request of the plan, with where the script made it.
#[derive(Debug, Clone)]
pub struct Step {
    pub req: RequestConfig,
    pub line: usize,
    pub col: usize,
}

/// The `http.*` functions that send a request.
pub fn is_request_method(m: &str) -> bool {
    matches!(
        m,
        "get" | "post" | "put" | "patch" | "del" | "head" | "options" | "request" | "batch"
    )
}

/// `http.<method>(...)`: push the step(s) and return the response value.
pub fn http_call<'a>(w: &mut Walker<'a>, method: &str, c: &'a CallExpression<'a>) -> Val<'a> {
    let args: Vec<Val<'a>> = c.arguments.iter().map(|a| w.arg(a)).collect();
    let mut a = args.into_iter();
    let mut next = || a.next().unwrap_or(Val::Null);
    match method {
        "get" | "head" => {
            let url = next();
            let params = next();
            add(w, method, url, Val::Null, params, c.span)
        }
        "post" | "put" | "patch" | "del" | "options" => {
            let url = next();
            let body = next();
            let params = next();
            add(w, method, url, body, params, c.span)
        }
        "request" => {
            let m = next();
            let url = next();
            let body = next();
            let params = next();
            match m.literal() {
                Some(m) => add(w, &m, url, body, params, c.span),
                None => {
                    w.report(
                        c.span,
                        "http.request() with a computed method",
                        "this request",
                    );
                    Val::unknown("request not imported", c.span)
                }
            }
        }
        "batch" => batch(w, next(), c.span),
        "file" => {
            let data = next();
            let filename = next().literal();
            let content_type = next().literal();
            match data {
                Val::Open { path, .. } => {
                    let filename = filename
                        .or_else(|| path.file_name().map(|f| f.to_string_lossy().into_owned()));
                    Val::File {
                        path,
                        filename,
                        content_type,
                    }
                }
                _ => Val::unknown(
                    "http.file() of data that does not come from open(path, 'b')",
                    c.span,
                ),
            }
        }
        other => Val::unknown(format!("http.{other}() is not imported"), c.span),
    }
}

/// `http.batch([...])`: k6 sends them in parallel; loadspec runs them as steps in order.
fn batch<'a>(w: &mut Walker<'a>, reqs: Val<'a>, at: Span) -> Val<'a> {
    let (line, col) = w.pos(at);
    w.note(format!(
        "{line}:{col}: http.batch() requests run one after another as steps, not in parallel"
    ));
    let one = |w: &mut Walker<'a>, r: Val<'a>| -> Val<'a> {
        match r {
            Val::Str(_) => add(w, "GET", r, Val::Null, Val::Null, at),
            Val::Arr(parts) => {
                let mut p = parts.into_iter();
                let m = p
                    .next()
                    .and_then(|m| m.literal())
                    .unwrap_or_else(|| "GET".into());
                let url = p.next().unwrap_or(Val::Null);
                let body = p.next().unwrap_or(Val::Null);
                let params = p.next().unwrap_or(Val::Null);
                add(w, &m, url, body, params, at)
            }
            Val::Obj(_) => {
                let m = r
                    .get("method")
                    .and_then(Val::literal)
                    .unwrap_or_else(|| "GET".into());
                let url = r.get("url").cloned().unwrap_or(Val::Null);
                let body = r.get("body").cloned().unwrap_or(Val::Null);
                let params = r.get("params").cloned().unwrap_or(Val::Null);
                add(w, &m, url, body, params, at)
            }
            other => {
                w.report(
                    at,
                    format!("a batch entry that is {} is not imported", other.kind()),
                    "that batch entry",
                );
                Val::Null
            }
        }
    };
    match reqs {
        Val::Arr(list) => Val::Arr(list.into_iter().map(|r| one(w, r)).collect()),
        Val::Obj(kv) => Val::Obj(kv.into_iter().map(|(k, r)| (k, one(w, r))).collect()),
        other => {
            w.report(
                at,
                format!("http.batch() of {} is not imported", other.kind()),
                "the batch's requests",
            );
            Val::Null
        }
    }
}

fn add<'a>(
    w: &mut Walker<'a>,
    method: &str,
    url: Val<'a>,
    body: Val<'a>,
    params: Val<'a>,
    at: Span,
) -> Val<'a> {
    let method = match method.to_ascii_uppercase().as_str() {
        "DEL" => "DELETE".to_string(),
        m => m.to_string(),
    };
    let url = match w.text(url, at) {
        Ok(u) => u,
        Err(u) => {
            left_out(w, &u, at, "the URL", format!("{method} request left out"));
            return Val::unknown("request not imported", at);
        }
    };
    let (line, col) = w.pos(at);
    let mut req = RequestConfig {
        name: String::new(),
        method,
        url: Some(url),
        path: None,
        headers: BTreeMap::new(),
        bearer_token: None,
        body: None,
        expect: Vec::new(),
        timeout: None,
        captures: Vec::new(),
    };
    let label = format!(
        "request {} {} at {line}:{col}",
        req.method,
        req.url.as_deref().unwrap_or("")
    );
    let mut tag_name = None;
    let mut content_type = None;
    match &params {
        Val::Null => {}
        Val::Obj(kv) => {
            for (k, v) in kv.clone() {
                match k.as_str() {
                    "headers" => {
                        content_type = headers(w, &mut req, v, at, &label);
                    }
                    "timeout" => match duration(&v) {
                        Some(d) if !d.is_zero() => req.timeout = Some(d),
                        _ => w.report(at, "params.timeout is not a duration", label.clone()),
                    },
                    "tags" => tag_name = v.get("name").and_then(Val::literal),
                    other => w.report(at, format!("params.{other} is not imported"), label.clone()),
                }
            }
        }
        other => w.report(
            span_of(other, at),
            format!("params that are {} are not imported", other.kind()),
            label.clone(),
        ),
    }
    req.body = body_of(w, body, content_type, at, &label);
    req.name = unique_name(w, tag_name.as_deref(), &req);
    let step = Step { req, line, col };
    let r = StepRef {
        setup: w.setup_phase,
        idx: if w.setup_phase {
            w.setup_steps.len()
        } else {
            w.steps.len()
        },
    };
    if w.setup_phase {
        w.setup_steps.push(step);
    } else {
        w.steps.push(step);
    }
    Val::Response(r)
}

/// Headers into the request; returns the Content-Type header, which goes with the body.
fn headers<'a>(
    w: &mut Walker<'a>,
    req: &mut RequestConfig,
    v: Val<'a>,
    at: Span,
    label: &str,
) -> Option<String> {
    let Val::Obj(kv) = v else {
        w.report(
            span_of(&v, at),
            format!("headers that are {} are not imported", v.kind()),
            label,
        );
        return None;
    };
    let mut content_type = None;
    for (k, v) in kv {
        let value = match w.text(v, at) {
            Ok(t) => t,
            Err(u) => {
                // A credential header's reason could quote the script's secret; say less.
                let reason = if is_secret_header(&k) {
                    "its value is not a string, __ENV or a captured value".to_string()
                } else {
                    unknown_reason(&u)
                };
                w.report(
                    span_of(&u, at),
                    format!("header {k}: {reason}"),
                    format!("{label} (sent without this header)"),
                );
                continue;
            }
        };
        if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(value);
        } else if k.eq_ignore_ascii_case("authorization") && value.starts_with("Bearer ") {
            req.bearer_token = Some(value["Bearer ".len()..].to_string());
        } else {
            req.headers.insert(k, value);
        }
    }
    content_type
}

fn is_secret_header(name: &str) -> bool {
    [
        "authorization",
        "cookie",
        "proxy-authorization",
        "x-api-key",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

fn body_of<'a>(
    w: &mut Walker<'a>,
    body: Val<'a>,
    content_type: Option<String>,
    at: Span,
    label: &str,
) -> Option<BodyConfig> {
    match body {
        Val::Null => None,
        Val::Str(text) => Some(BodyConfig::Text { text, content_type }),
        Val::Json(v) => match json(w, *v, at) {
            Ok(json) => Some(BodyConfig::Json { json }),
            Err(u) => {
                left_out(
                    w,
                    &u,
                    at,
                    "the JSON body",
                    format!("{label} (sent without a body)"),
                );
                None
            }
        },
        Val::Obj(kv) if kv.iter().any(|(_, v)| matches!(v, Val::File { .. })) => {
            let mut fields = Vec::new();
            let mut files = Vec::new();
            for (name, v) in kv {
                match v {
                    Val::File {
                        path,
                        filename,
                        content_type,
                    } => files.push(FilePart {
                        name,
                        path,
                        filename,
                        content_type,
                    }),
                    other => {
                        let what = format!("multipart field {name}");
                        if let Some(value) = field_text(w, other, at, &what, label) {
                            fields.push(TextPart { name, value });
                        }
                    }
                }
            }
            Some(BodyConfig::Multipart { fields, files })
        }
        Val::Obj(kv) => {
            let mut fields = BTreeMap::new();
            for (name, v) in kv {
                if let Some(value) = field_text(w, v, at, &format!("form field {name}"), label) {
                    fields.insert(name, value);
                }
            }
            Some(BodyConfig::Form { fields })
        }
        other => {
            left_out(
                w,
                &other,
                at,
                "the body",
                format!("{label} (sent without a body)"),
            );
            None
        }
    }
}

/// A value as JSON; strings keep their `${name}` variables, which loadspec fills in.
fn json<'a>(w: &mut Walker<'a>, v: Val<'a>, at: Span) -> Result<serde_json::Value, Val<'a>> {
    use serde_json::Value as J;
    Ok(match v {
        Val::Null => J::Null,
        Val::Bool(b) => J::Bool(b),
        Val::Num(n) => serde_json::Number::from_f64(n)
            .map(J::Number)
            .unwrap_or(J::Null),
        Val::Obj(kv) => {
            let mut m = serde_json::Map::new();
            for (k, v) in kv {
                m.insert(k, json(w, v, at)?);
            }
            J::Object(m)
        }
        Val::Arr(a) => J::Array(
            a.into_iter()
                .map(|v| json(w, v, at))
                .collect::<Result<_, _>>()?,
        ),
        other => J::String(w.text(other, at)?),
    })
}

/// Report `v` (an unknown or unusable value) as left out: "`what`: why", affecting `effect`.
fn left_out(w: &mut Walker<'_>, v: &Val<'_>, at: Span, what: &str, effect: String) {
    w.report(
        span_of(v, at),
        format!("{what}: {}", unknown_reason(v)),
        effect,
    );
}

/// The text of a form or multipart field, or a report that the request goes without it.
fn field_text<'a>(
    w: &mut Walker<'a>,
    v: Val<'a>,
    at: Span,
    what: &str,
    label: &str,
) -> Option<String> {
    w.text(v, at)
        .map_err(|u| {
            left_out(
                w,
                &u,
                at,
                what,
                format!("{label} (sent without this field)"),
            )
        })
        .ok()
}

fn unknown_reason(v: &Val<'_>) -> String {
    match v {
        Val::Unknown { reason, .. } => reason.clone(),
        other => format!("{} is not imported here", other.kind()),
    }
}

fn span_of(v: &Val<'_>, at: Span) -> Span {
    match v {
        Val::Unknown { span, .. } => *span,
        _ => at,
    }
}

/// The step's `request` label: `tags.name`, else the last fixed path segment, else the
/// method; unique within the scenario (setup included).
fn unique_name(w: &Walker<'_>, tag: Option<&str>, req: &RequestConfig) -> String {
    let from_url = || {
        let url = req.url.as_deref().unwrap_or("");
        let path = url.split(['?', '#']).next().unwrap_or("");
        let path = path
            .split("://")
            .nth(1)
            .map_or(path, |rest| rest.find('/').map_or("", |i| &rest[i..]));
        // `/status/200` reads better as `status-200` than as `200`.
        let segs: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty() && !s.contains("${"))
            .collect();
        match segs.as_slice() {
            [.., a, b] if b.bytes().all(|c| c.is_ascii_digit()) => Some(format!("{a}-{b}")),
            [.., b] => Some(b.to_string()),
            [] => None,
        }
    };
    let base = label(
        &tag.map(str::to_string)
            .or_else(from_url)
            .unwrap_or_else(|| req.method.to_ascii_lowercase()),
        56,
    );
    let base = if base.is_empty() {
        "request".to_string()
    } else {
        base
    };
    let taken = |n: &str| {
        w.setup_steps
            .iter()
            .chain(&w.steps)
            .any(|s| s.req.name == n)
    };
    let mut name = base.clone();
    let mut k = 2;
    while taken(&name) {
        name = format!("{base}-{k}");
        k += 1;
    }
    name
}

/// `path` relative to `dir` (both made absolute first), for files the plan names.
pub fn relative_to(path: &Path, dir: &Path) -> PathBuf {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .map(|p| normalize(&p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let (path, dir) = (abs(path), abs(dir));
    let p: Vec<_> = path.components().collect();
    let d: Vec<_> = dir.components().collect();
    let common = p.iter().zip(&d).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return path;
    }
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out
}

/// Drop `.` and fold `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_walk_up_and_down() {
        assert_eq!(
            relative_to(Path::new("/a/b/c/test.png"), Path::new("/a/b/out")),
            PathBuf::from("../c/test.png")
        );
        assert_eq!(
            relative_to(Path::new("/a/./b/test.png"), Path::new("/a/b")),
            PathBuf::from("test.png")
        );
    }
}
