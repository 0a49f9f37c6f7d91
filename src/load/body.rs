//! Request bodies. Multipart files are read once, by the config's load phase, before any body
//! is built ([`FileContents`]); a body without variables is encoded once
//! into a single `Bytes` that every request shares (a reference-count bump, no copy of the
//! image). A body with `${var}`s keeps its constant pieces, the file parts included, as shared
//! `Bytes` and renders only the variable text per request.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use serde::{Deserialize, Serialize};

use super::template::{Escape, Template};

/// A request's `body` table as written in the config (`type = "json"`, …).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BodyConfig {
    Json {
        json: serde_json::Value,
    },
    Form {
        fields: BTreeMap<String, String>,
    },
    Text {
        text: String,
        content_type: Option<String>,
    },
    Multipart {
        #[serde(default)]
        fields: Vec<TextPart>,
        #[serde(default)]
        files: Vec<FilePart>,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TextPart {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilePart {
    pub name: String,
    pub path: PathBuf,
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Chunk {
    Bytes(Bytes),
    Text(Template),
}

#[derive(Debug, Clone)]
pub enum BodySpec {
    Empty,
    Static {
        bytes: Bytes,
        content_type: HeaderValue,
    },
    Templated {
        chunks: Vec<Chunk>,
        content_type: HeaderValue,
    },
}

impl BodySpec {
    pub fn content_type(&self) -> Option<&HeaderValue> {
        match self {
            BodySpec::Empty => None,
            BodySpec::Static { content_type, .. } | BodySpec::Templated { content_type, .. } => {
                Some(content_type)
            }
        }
    }

    /// The body's chunks when it is the same for every request (no variables), so a request
    /// can send it without rendering anything.
    pub fn static_chunks(&self) -> Option<&[Bytes]> {
        match self {
            BodySpec::Empty => Some(&[]),
            BodySpec::Static { bytes, .. } => Some(std::slice::from_ref(bytes)),
            BodySpec::Templated { .. } => None,
        }
    }

    /// The body for one request, as chunks for one vectored write (constant pieces, the file
    /// parts included, are shared `Bytes`).
    pub fn render(&self, vars: &[Option<String>]) -> Vec<Bytes> {
        match self {
            BodySpec::Empty => Vec::new(),
            BodySpec::Static { bytes, .. } => vec![bytes.clone()],
            BodySpec::Templated { chunks, .. } => chunks
                .iter()
                .map(|c| match c {
                    Chunk::Bytes(b) => b.clone(),
                    Chunk::Text(t) => Bytes::from(t.render(vars)),
                })
                .collect(),
        }
    }

    fn from_chunks(chunks: Vec<Chunk>, content_type: HeaderValue) -> Self {
        // Merge neighbouring constant pieces; a fully constant body becomes one shared Bytes.
        let mut merged: Vec<Chunk> = Vec::new();
        for c in chunks {
            let c = match c {
                Chunk::Text(t) => match t.as_static() {
                    Some(s) => Chunk::Bytes(Bytes::from(s.to_string())),
                    None => Chunk::Text(t),
                },
                b => b,
            };
            match (merged.last_mut(), c) {
                (Some(Chunk::Bytes(prev)), Chunk::Bytes(next)) => {
                    let mut v = Vec::with_capacity(prev.len() + next.len());
                    v.extend_from_slice(prev);
                    v.extend_from_slice(&next);
                    *prev = Bytes::from(v);
                }
                (_, c) => merged.push(c),
            }
        }
        match merged.as_slice() {
            [] => BodySpec::Static {
                bytes: Bytes::new(),
                content_type,
            },
            [Chunk::Bytes(b)] => BodySpec::Static {
                bytes: b.clone(),
                content_type,
            },
            _ => BodySpec::Templated {
                chunks: merged,
                content_type,
            },
        }
    }
}

/// The multipart files' contents, by `path` as the config writes it, read before any body is
/// built (by the config's load phase, so no file is read while scenarios are built). A file
/// named by several steps is held once; its error is reported at every step that names it.
pub type FileContents = HashMap<PathBuf, Result<Bytes, Arc<io::Error>>>;

/// Parses one template of a body field; reports errors itself and returns None on error.
pub type FieldParser<'a> = dyn FnMut(&str, Escape, String) -> Option<Template> + 'a;

/// Parse every string value of `v` on its own, with its key path (`a.b[2].c`); false when
/// one failed (the parser has reported it under that path).
fn json_leaves_parse(v: &serde_json::Value, path: &str, parse: &mut FieldParser<'_>) -> bool {
    match v {
        serde_json::Value::String(s) if s.contains("${") => {
            parse(s, Escape::Json, path.to_string()).is_some()
        }
        serde_json::Value::Array(a) => a.iter().enumerate().fold(true, |ok, (i, x)| {
            json_leaves_parse(x, &format!("{path}[{i}]"), parse) && ok
        }),
        serde_json::Value::Object(o) => o.iter().fold(true, |ok, (k, x)| {
            json_leaves_parse(x, &format!("{path}.{k}"), parse) && ok
        }),
        _ => true,
    }
}

/// Build a body from its config. `path` is the config path of the body (for errors), `files`
/// holds the multipart files' contents.
pub fn build(
    cfg: &BodyConfig,
    path: &str,
    files: &FileContents,
    parse: &mut FieldParser<'_>,
    errs: &mut crate::config_error::Errors,
) -> Option<BodySpec> {
    match cfg {
        BodyConfig::Json { json } => {
            // Each string value first, so an error names its key (`….json.password`).
            if !json_leaves_parse(json, &format!("{path}.json"), parse) {
                return None;
            }
            // Serialize, then template the text: substitutions are JSON-escaped.
            let text = serde_json::to_string(json).ok()?;
            let t = parse(&text, Escape::Json, format!("{path}.json"))?;
            Some(BodySpec::from_chunks(
                vec![Chunk::Text(t)],
                HeaderValue::from_static("application/json"),
            ))
        }
        BodyConfig::Text { text, content_type } => {
            let ct = match content_type {
                None => HeaderValue::from_static("text/plain; charset=utf-8"),
                Some(ct) => match HeaderValue::from_str(ct) {
                    Ok(v) => v,
                    Err(_) => {
                        errs.add(
                            format!("{path}.content_type"),
                            format!("not a valid header value: {ct:?}"),
                        );
                        return None;
                    }
                },
            };
            let t = parse(text, Escape::None, format!("{path}.text"))?;
            Some(BodySpec::from_chunks(vec![Chunk::Text(t)], ct))
        }
        BodyConfig::Form { fields } => {
            let mut chunks = Vec::new();
            for (i, (k, v)) in fields.iter().enumerate() {
                let sep = if i == 0 { "" } else { "&" };
                let key = parse(k, Escape::Form, format!("{path}.fields.{k}"))?;
                chunks.push(Chunk::Bytes(Bytes::from(format!(
                    "{sep}{}=",
                    key.render(&[])
                ))));
                chunks.push(Chunk::Text(parse(
                    v,
                    Escape::Form,
                    format!("{path}.fields.{k}"),
                )?));
            }
            Some(BodySpec::from_chunks(
                chunks,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            ))
        }
        BodyConfig::Multipart {
            fields,
            files: file_parts,
        } => {
            // Each part's headers and content first; the boundary is chosen once the
            // contents are known.
            let mut parts: Vec<(String, Chunk)> = Vec::new();
            let mut ok = true;
            for (i, f) in fields.iter().enumerate() {
                if !valid_part_name(&f.name) {
                    errs.add(
                        format!("{path}.fields[{i}].name"),
                        format!(
                            "must be non-empty without quotes or line breaks, got {:?}",
                            f.name
                        ),
                    );
                    ok = false;
                    continue;
                }
                let head = format!(
                    "Content-Disposition: form-data; name=\"{}\"\r\n\r\n",
                    f.name
                );
                match parse(&f.value, Escape::None, format!("{path}.fields[{i}].value")) {
                    Some(t) => parts.push((head, Chunk::Text(t))),
                    None => ok = false,
                }
            }
            for (i, f) in file_parts.iter().enumerate() {
                let p = format!("{path}.files[{i}]");
                if !valid_part_name(&f.name) {
                    errs.add(
                        format!("{p}.name"),
                        format!(
                            "must be non-empty without quotes or line breaks, got {:?}",
                            f.name
                        ),
                    );
                    ok = false;
                    continue;
                }
                let data = match files.get(&f.path) {
                    Some(Ok(d)) => d.clone(),
                    Some(Err(e)) => {
                        errs.add(format!("{p}.path"), e);
                        ok = false;
                        continue;
                    }
                    None => {
                        // Only a caller that skipped the load phase gets here.
                        errs.add(
                            format!("{p}.path"),
                            "was not read before the body was built",
                        );
                        ok = false;
                        continue;
                    }
                };
                let filename = f.filename.clone().unwrap_or_else(|| {
                    f.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "file".into())
                });
                if !valid_part_name(&filename) {
                    errs.add(
                        format!("{p}.filename"),
                        "must not contain quotes or line breaks",
                    );
                    ok = false;
                    continue;
                }
                let ct = f
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into());
                if ct.contains(['\r', '\n']) {
                    errs.add(format!("{p}.content_type"), "must not contain line breaks");
                    ok = false;
                    continue;
                }
                let head = format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{filename}\"\r\nContent-Type: {ct}\r\n\r\n",
                    f.name
                );
                parts.push((head, Chunk::Bytes(data)));
            }
            if !ok {
                return None;
            }
            // The boundary must not occur in any part (RFC 2046 §5.1.1), or the receiver
            // splits the body there.
            let boundary = boundary_for(parts.iter().filter_map(|(_, c)| match c {
                Chunk::Bytes(b) => Some(&b[..]),
                Chunk::Text(t) => t.as_static().map(str::as_bytes),
            }));
            let mut chunks = Vec::with_capacity(parts.len() * 3 + 1);
            for (head, content) in parts {
                chunks.push(Chunk::Bytes(Bytes::from(format!("--{boundary}\r\n{head}"))));
                chunks.push(content);
                chunks.push(Chunk::Bytes(Bytes::from_static(b"\r\n")));
            }
            chunks.push(Chunk::Bytes(Bytes::from(format!("--{boundary}--\r\n"))));
            let ct = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
                .expect("the boundary is visible ASCII");
            Some(BodySpec::from_chunks(chunks, ct))
        }
    }
}

/// `----loadspec-boundary-7d9f1c2a5e3b`, or the same with a counter appended, the first that
/// none of `parts` contains. (A variable rendered at run time is not known here; the fixed
/// random-looking base makes a clash there vanishingly unlikely.)
fn boundary_for<'a>(parts: impl Iterator<Item = &'a [u8]>) -> String {
    let parts: Vec<&[u8]> = parts.collect();
    let base = "----loadspec-boundary-7d9f1c2a5e3b";
    (0u64..)
        .map(|n| {
            if n == 0 {
                base.to_string()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|b| {
            !parts
                .iter()
                .any(|p| p.windows(b.len()).any(|w| w == b.as_bytes()))
        })
        .unwrap_or_else(|| base.to_string())
}

fn valid_part_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(['"', '\r', '\n'])
}
