//! `${name}` templates. Names that are scenario variables (captures, data columns) stay
//! placeholders and are filled per VU at run time; any other name is read from the environment
//! once, at load time. A template without variables renders to its literal with no allocation.

use std::fmt::Write as _;

/// How a substituted value is escaped for where it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    None,
    /// Inside a JSON string literal.
    Json,
    /// An `application/x-www-form-urlencoded` value.
    Form,
    /// A URL path or query component.
    Url,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(usize),
}

/// What a name in `${name}` refers to.
pub enum Resolved {
    /// Index into the VU's variables.
    Var(usize),
    /// A literal known at load time (an environment value).
    Literal(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    escape: Escape,
}

/// Why a `${…}` template does not parse; `E` is the resolver's error for a name it does not
/// know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError<E> {
    #[error("unclosed `${{` in {0:?}")]
    Unclosed(String),
    #[error("empty variable name `${{}}` in {0:?}")]
    EmptyName(String),
    /// The resolver's reason, e.g. which variables exist.
    #[error(transparent)]
    Unknown(E),
}

impl Template {
    /// A template with no variables.
    pub fn literal(s: impl Into<String>) -> Self {
        Self {
            parts: vec![Part::Lit(s.into())],
            escape: Escape::None,
        }
    }

    /// Parse `s`, asking `resolve` what each `${name}` means (its error is the reason the
    /// name is unknown). `$${` is a literal `${`.
    pub fn parse<E>(
        s: &str,
        escape: Escape,
        mut resolve: impl FnMut(&str) -> Result<Resolved, E>,
    ) -> Result<Self, TemplateError<E>> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(pos) = rest.find("${") {
            if rest[..pos].ends_with('$') {
                lit.push_str(&rest[..pos - 1]);
                lit.push_str("${");
                rest = &rest[pos + 2..];
                continue;
            }
            lit.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| TemplateError::Unclosed(s.to_string()))?;
            let name = after[..end].trim();
            if name.is_empty() {
                return Err(TemplateError::EmptyName(s.to_string()));
            }
            match resolve(name).map_err(TemplateError::Unknown)? {
                Resolved::Literal(v) => lit.push_str(&escape_value(&v, escape)),
                Resolved::Var(i) => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(i));
                }
            }
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() || parts.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self { parts, escape })
    }

    /// The literal text when the template has no run-time variables.
    pub fn as_static(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Variable indices this template reads.
    pub fn vars(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(i) => Some(*i),
            Part::Lit(_) => None,
        })
    }

    /// Render with the VU's variables; an unset variable renders empty.
    pub fn render(&self, vars: &[Option<String>]) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(i) => {
                    if let Some(Some(v)) = vars.get(*i) {
                        out.push_str(&escape_value(v, self.escape));
                    }
                }
            }
        }
        out
    }
}

fn escape_value(v: &str, escape: Escape) -> String {
    match escape {
        Escape::None => v.to_string(),
        Escape::Json => {
            let quoted = serde_json::to_string(v).unwrap_or_default();
            quoted[1..quoted.len().saturating_sub(1)].to_string()
        }
        Escape::Form | Escape::Url => {
            let mut out = String::with_capacity(v.len());
            for b in v.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        out.push(b as char)
                    }
                    b' ' if escape == Escape::Form => out.push('+'),
                    _ => {
                        let _ = write!(out, "%{b:02X}");
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, thiserror::Error)]
    #[error("unknown variable `{0}`")]
    struct Unknown(String);

    fn resolver(name: &str) -> Result<Resolved, Unknown> {
        match name {
            "token" => Ok(Resolved::Var(0)),
            "HOME_X" => Ok(Resolved::Literal("a\"b".into())),
            other => Err(Unknown(other.to_string())),
        }
    }

    #[test]
    fn static_and_vars() {
        let t = Template::parse("Bearer ${token}", Escape::None, resolver).unwrap();
        assert_eq!(t.as_static(), None);
        assert_eq!(t.render(&[Some("abc".into())]), "Bearer abc");
        let t = Template::parse("x=${HOME_X}", Escape::Json, resolver).unwrap();
        assert_eq!(t.as_static(), Some("x=a\\\"b"));
        let t = Template::parse("cost $${token}", Escape::None, resolver).unwrap();
        assert_eq!(t.as_static(), Some("cost ${token}"));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Template::parse("${nope}", Escape::None, resolver).unwrap_err();
        assert_eq!(e, TemplateError::Unknown(Unknown("nope".into())));
        assert_eq!(e.to_string(), "unknown variable `nope`");
        let e = Template::parse("${token", Escape::None, resolver).unwrap_err();
        assert_eq!(e, TemplateError::Unclosed("${token".into()));
        assert!(e.to_string().contains("unclosed"), "{e}");
    }

    #[test]
    fn form_escape() {
        assert_eq!(escape_value("a b&c/é", Escape::Form), "a+b%26c%2F%C3%A9");
    }
}
