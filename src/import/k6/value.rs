//! What a k6 expression is worth at import time. The importer does not run JavaScript: it
//! evaluates the small part of it that describes requests (literals, objects, `__ENV`, string
//! concatenation, `open`, `http.file`, `JSON.stringify`, responses and data rows) into a
//! [`Val`], and everything else into [`Val::Unknown`] with the reason, so that the place that
//! needs the value can report it with its position.

use std::path::PathBuf;
use std::time::Duration;

use oxc_ast::ast::{Expression, FormalParameters, Statement};
use oxc_span::Span;

/// A request of the step lists built while walking: `setup` or the iteration's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRef {
    pub setup: bool,
    pub idx: usize,
}

/// A function found in the script: its parameters and its body.
#[derive(Debug, Clone, Copy)]
pub struct FnRef<'a> {
    pub span: Span,
    pub params: &'a FormalParameters<'a>,
    pub body: FnBody<'a>,
}

#[derive(Debug, Clone, Copy)]
pub enum FnBody<'a> {
    Stmts(&'a [Statement<'a>]),
    Expr(&'a Expression<'a>),
}

/// The import-time value of an expression.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    /// A loadspec template: literal text with `${` escaped, and `${NAME}` for variables.
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    /// Keys in the script's order.
    Obj(Vec<(String, Val<'a>)>),
    Arr(Vec<Val<'a>>),
    /// `open(path)` / `open(path, 'b')`, with the path as the script wrote it, resolved
    /// against the script's directory.
    Open {
        path: PathBuf,
        binary: bool,
    },
    /// `http.file(open(path, 'b'), filename, content_type)`.
    File {
        path: PathBuf,
        filename: Option<String>,
        content_type: Option<String>,
    },
    /// `JSON.stringify(value)`.
    Json(Box<Val<'a>>),
    /// The rows of a CSV or JSON file (`SharedArray`, `papaparse.parse(...).data`).
    Rows(PathBuf),
    /// One row of [`Val::Rows`]: its fields are the file's columns, `${column}`.
    Row {
        per_vu: bool,
    },
    /// The response of a request.
    Response(StepRef),
    /// `res.json('a.b')` / `res.json().a.b`: a JSON pointer into a response.
    JsonOf {
        step: StepRef,
        pointer: String,
    },
    Func(FnRef<'a>),
    /// Not representable; `reason` says why, `span` where.
    Unknown {
        reason: String,
        span: Span,
    },
}

impl<'a> Val<'a> {
    pub fn unknown(reason: impl Into<String>, span: Span) -> Self {
        Val::Unknown {
            reason: reason.into(),
            span,
        }
    }

    /// A field of an object value.
    pub fn get(&self, key: &str) -> Option<&Val<'a>> {
        match self {
            Val::Obj(kv) => kv.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Literal text, if this is a plain string with no variable in it.
    pub fn literal(&self) -> Option<String> {
        match self {
            Val::Str(s) if !has_var(s) => Some(s.replace("$${", "${")),
            _ => None,
        }
    }

    pub fn num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// A short description for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Num(_) => "a number",
            Val::Bool(_) => "a boolean",
            Val::Null => "null",
            Val::Obj(_) => "an object",
            Val::Arr(_) => "an array",
            Val::Open { .. } => "the contents of a file",
            Val::File { .. } => "an http.file()",
            Val::Json(_) => "a JSON.stringify() value",
            Val::Rows(_) => "a data file's rows",
            Val::Row { .. } => "a whole data row",
            Val::Response(_) => "a whole response",
            Val::JsonOf { .. } => "a value from a response",
            Val::Func(_) => "a function",
            Val::Unknown { .. } => "an unknown value",
        }
    }
}

/// Literal script text as template text: `${` would start a variable, so it is written `$${`.
pub fn lit(s: &str) -> String {
    s.replace("${", "$${")
}

/// Whether template text refers to a variable: a `${` not right after a `$` (loadspec reads
/// `$${` as a literal `${`).
pub fn has_var(t: &str) -> bool {
    t.match_indices("${")
        .any(|(i, _)| i == 0 || t.as_bytes()[i - 1] != b'$')
}

/// A loadspec label (scenario or step name): letters, digits, `-`, `_` and `.`, anything else
/// as `-`, at most `max` characters.
pub fn label(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect()
}

/// A number as k6 would print it into a string: integers without a fraction.
pub fn num_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// A k6 duration: a string such as `"30s"`, `"1m30s"`, `"500ms"`, `"1h"`, or a number of
/// milliseconds.
pub fn duration(v: &Val<'_>) -> Option<Duration> {
    match v {
        Val::Num(ms) if *ms >= 0.0 && ms.is_finite() => Some(Duration::from_secs_f64(ms / 1000.0)),
        Val::Str(_) => {
            let s = v.literal()?;
            let s = s.trim();
            if let Ok(ms) = s.parse::<f64>() {
                return (ms >= 0.0 && ms.is_finite()).then(|| Duration::from_secs_f64(ms / 1000.0));
            }
            humantime::parse_duration(s).ok()
        }
        _ => None,
    }
}

/// A duration as loadspec's config writes it.
pub fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_told_from_escaped_dollars() {
        assert!(has_var("${A}"));
        assert!(has_var("x/${A}/y"));
        assert!(!has_var("$${A}"));
        assert!(!has_var("plain"));
        assert!(
            !has_var("$$${A}"),
            "loadspec reads `$${{` as a literal after any `$`"
        );
    }

    #[test]
    fn k6_durations() {
        let s = |t: &str| duration(&Val::Str(t.into()));
        assert_eq!(s("30s"), Some(Duration::from_secs(30)));
        assert_eq!(s("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(s("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(
            duration(&Val::Num(1500.0)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(s("soon"), None);
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
    }
}
