//! Which `${name}` a step may use: data columns, then setup captures, then iteration captures,
//! in definition order, else the environment. A name is usable in a step only once it is
//! defined before that step.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};

use crate::load::template::{Escape, Resolved, Template, TemplateError};

/// Why a `${name}` cannot be used where it is.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(super) enum VarError {
    #[error("variable `${{{name}}}` is used before it is captured (it is captured by {at})")]
    BeforeCapture { name: String, at: String },
    #[error(
        "unknown variable `${{{0}}}`: not a capture, a data column or a set environment variable"
    )]
    Unknown(String),
}

/// Variables of a scenario in definition order.
#[derive(Default)]
pub(super) struct Vars {
    pub names: Vec<String>,
    /// Where each capture is defined, to explain use-before-definition.
    pub defined_at: HashMap<String, String>,
    /// Names visible now.
    visible: HashMap<String, usize>,
    /// Data file columns, which captures may not reuse: a row would silently overwrite the
    /// captured value at every iteration (or the capture the row), whichever ran last.
    pub columns: Vec<String>,
    /// Which list is being built: 0 setup, 1 requests.
    pub section: usize,
    /// Whether the setup (0) and the requests (1) use a data column.
    pub uses_column: Cell<[bool; 2]>,
    /// Names filled from the environment.
    pub from_env: RefCell<BTreeSet<String>>,
}

impl Vars {
    pub fn resolve(&self, name: &str) -> Result<Resolved, VarError> {
        if let Some(i) = self.visible.get(name) {
            if self.columns.iter().any(|c| c == name) {
                let mut u = self.uses_column.get();
                u[self.section] = true;
                self.uses_column.set(u);
            }
            return Ok(Resolved::Var(*i));
        }
        if let Some(at) = self.defined_at.get(name) {
            return Err(VarError::BeforeCapture {
                name: name.to_string(),
                at: at.clone(),
            });
        }
        let v = std::env::var(name).map_err(|_| VarError::Unknown(name.to_string()))?;
        self.from_env.borrow_mut().insert(name.to_string());
        Ok(Resolved::Literal(v))
    }

    /// Parse the template `s` against the names visible now.
    pub fn parse(&self, s: &str, escape: Escape) -> Result<Template, TemplateError<VarError>> {
        Template::parse(s, escape, |n| self.resolve(n))
    }

    /// Make `name` visible from here on; its index (the same one if it was defined before).
    pub fn define(&mut self, name: &str) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            self.visible.insert(name.to_string(), i);
            return i;
        }
        self.names.push(name.to_string());
        let i = self.names.len() - 1;
        self.visible.insert(name.to_string(), i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of `r` (`Resolved` is not `Debug`, so no `unwrap_err`).
    fn err(r: Result<Resolved, VarError>) -> VarError {
        match r {
            Ok(_) => panic!("resolved"),
            Err(e) => e,
        }
    }

    #[test]
    fn names_resolve_once_defined_and_say_why_not_before() {
        let mut v = Vars::default();
        v.defined_at.insert("tok".into(), "s.setup[0]".into());
        assert_eq!(
            err(v.resolve("tok")).to_string(),
            "variable `${tok}` is used before it is captured (it is captured by s.setup[0])"
        );
        assert_eq!(v.define("tok"), 0);
        assert_eq!(v.define("id"), 1);
        assert_eq!(v.define("tok"), 0);
        assert!(matches!(v.resolve("id"), Ok(Resolved::Var(1))));
        let unset = "LOADSPEC_TEST_SURELY_UNSET_VAR";
        assert_eq!(err(v.resolve(unset)), VarError::Unknown(unset.into()));
        assert!(v.from_env.borrow().is_empty());
    }

    #[test]
    fn column_use_is_counted_per_section() {
        let mut v = Vars::default();
        v.columns.push("user".into());
        v.define("user");
        v.section = 1;
        assert!(matches!(v.resolve("user"), Ok(Resolved::Var(0))));
        assert_eq!(v.uses_column.get(), [false, true]);
    }
}
