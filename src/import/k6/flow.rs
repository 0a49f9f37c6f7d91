//! Walks the script: module-level declarations (imports, `options`, `open()`, `SharedArray`),
//! then one function at a time (`setup`, `default` or a scenario's `exec`) statement by
//! statement, evaluating expressions into [`Val`]s. `http.*` calls become steps, `check()`
//! sets their `expect`, `sleep()` adds think time, and `res.json()` values used later become
//! captures. Control flow that would make an iteration send different requests (`if`, loops)
//! is not imported and is reported with the requests inside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oxc_ast::ast::{
    Argument, BinaryOperator, BindingPattern, CallExpression, Declaration, Expression,
    LogicalOperator, NewExpression, Program, Statement, TemplateLiteral, VariableDeclaration,
};
use oxc_ast_visit::{walk, Visit};
use oxc_span::{GetSpan, Span};

use super::requests::{self, Step};
use super::value::{lit, num_text, FnBody, FnRef, StepRef, Val};
use super::Finding;
use crate::config::raw::CaptureConfig;

/// How deep user functions may call each other (and expressions nest) before the importer
/// gives up on that branch; real scripts stay far below.
const MAX_DEPTH: usize = 64;

/// A data file the iteration reads rows of.
#[derive(Debug, Clone, PartialEq)]
pub struct DataUse {
    pub path: PathBuf,
    pub per_vu: bool,
}

pub struct Walker<'a> {
    pub src: &'a str,
    pub script_dir: PathBuf,
    pub findings: Vec<Finding>,
    /// Things done differently from k6 that are not left out (printed in the header).
    pub notes: Vec<String>,
    /// Checks whose predicates did not become `expect`, kept as comments.
    pub comments: Vec<String>,
    /// Local name → k6 builtin (`http`, `check`, `sleep`, `SharedArray`, ...).
    builtins: HashMap<String, &'static str>,
    /// `scopes[0]` holds the module's globals.
    scopes: Vec<HashMap<String, Val<'a>>>,
    pub functions: HashMap<String, FnRef<'a>>,
    // The state of one scenario's walk.
    pub setup_phase: bool,
    pub setup_steps: Vec<Step>,
    pub steps: Vec<Step>,
    pub sleeps: Vec<f64>,
    pub data: Option<DataUse>,
    returned: Option<Val<'a>>,
    depth: usize,
}

impl<'a> Walker<'a> {
    pub fn new(src: &'a str, script: &Path) -> Self {
        let script_dir = script.parent().map(Path::to_path_buf).unwrap_or_default();
        Self {
            src,
            script_dir,
            findings: Vec::new(),
            notes: Vec::new(),
            comments: Vec::new(),
            builtins: HashMap::new(),
            scopes: vec![HashMap::new()],
            functions: HashMap::new(),
            setup_phase: false,
            setup_steps: Vec::new(),
            steps: Vec::new(),
            sleeps: Vec::new(),
            data: None,
            returned: None,
            depth: 0,
        }
    }

    /// `line:col` (1-based, columns in characters) of a byte offset.
    pub fn pos(&self, span: Span) -> (usize, usize) {
        super::line_col(self.src, span.start as usize)
    }

    /// The script text of a node, on one line and at most 100 characters.
    pub fn snippet(&self, span: Span) -> String {
        let text = self
            .src
            .get(span.start as usize..span.end as usize)
            .unwrap_or("");
        let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one.chars().count() > 100 {
            format!("{}…", one.chars().take(99).collect::<String>())
        } else {
            one
        }
    }

    /// Record something left out. Setup is walked once per scenario, so the same finding
    /// is kept once.
    pub fn report(&mut self, span: Span, reason: impl Into<String>, affects: impl Into<String>) {
        let (line, col) = self.pos(span);
        let f = Finding {
            line,
            col,
            reason: reason.into(),
            affects: affects.into(),
        };
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let t = text.into();
        if !self.notes.contains(&t) {
            self.notes.push(t);
        }
    }

    /// "the requests at 12:5 (http.get), …" for everything inside `span`'s statement.
    pub fn affected_requests(&self, stmt: &Statement<'a>) -> String {
        let mut f = HttpCalls::default();
        f.visit_statement(stmt);
        self.describe_calls(&f.found)
    }

    fn affected_in_expr(&self, e: &Expression<'a>) -> String {
        let mut f = HttpCalls::default();
        f.visit_expression(e);
        self.describe_calls(&f.found)
    }

    fn describe_calls(&self, found: &[(Span, String)]) -> String {
        if found.is_empty() {
            return "no request".into();
        }
        let list: Vec<String> = found
            .iter()
            .map(|(s, m)| {
                let (l, c) = self.pos(*s);
                format!("{m} at {l}:{c}")
            })
            .collect();
        format!("left out: {}", list.join(", "))
    }

    // ---- module level ------------------------------------------------------------------

    /// Imports, top-level declarations and functions. `options` ends up in the globals.
    pub fn module(&mut self, program: &'a Program<'a>) {
        for stmt in &program.body {
            match stmt {
                Statement::ImportDeclaration(d) => self.import(d),
                Statement::ExportDefaultDeclaration(d) => {
                    use oxc_ast::ast::ExportDefaultDeclarationKind as K;
                    let f = match &d.declaration {
                        K::FunctionDeclaration(f) => Some(function_ref(f)),
                        other => other.as_expression().and_then(|e| self.func_of(e)),
                    };
                    match f {
                        Some(f) => {
                            self.functions.insert("default".into(), f);
                        }
                        None => self.report(
                            d.span,
                            "the default export is not a function",
                            "every request",
                        ),
                    }
                }
                Statement::ExportDeclaration(d) => self.declaration(&d.declaration),
                Statement::ExportNamedDeclaration(d) => self.report(
                    d.span,
                    "`export { … }` lists are not imported; export the function itself",
                    "the functions it exports",
                ),
                Statement::VariableDeclaration(_) | Statement::FunctionDeclaration(_) => {
                    if let Some(decl) = stmt.as_declaration() {
                        self.declaration(decl);
                    }
                }
                Statement::EmptyStatement(_) => {}
                Statement::ExpressionStatement(e) => {
                    let affects = self.affected_in_expr(&e.expression);
                    self.report(
                        e.span,
                        "top-level statements run once in k6's init context and are not imported",
                        affects,
                    );
                }
                other => {
                    let affects = self.affected_requests(other);
                    self.report(
                        other.span(),
                        "this top-level statement is not imported",
                        affects,
                    );
                }
            }
        }
    }

    fn declaration(&mut self, decl: &'a Declaration<'a>) {
        match decl {
            Declaration::VariableDeclaration(v) => self.declare(v),
            Declaration::FunctionDeclaration(f) => {
                if let Some(name) = f.id.as_ref().map(|i| i.name.as_str().to_string()) {
                    let r = function_ref(f);
                    self.functions.insert(name.clone(), r);
                    self.bind(name, Val::Func(r));
                }
            }
            other => self.report(
                other.span(),
                "this declaration is not imported",
                "no request",
            ),
        }
    }

    fn import(&mut self, d: &'a oxc_ast::ast::ImportDeclaration<'a>) {
        use oxc_ast::ast::ImportDeclarationSpecifier as S;
        let source = d.source.value.as_str();
        for spec in d.specifiers.iter().flatten() {
            let (local, imported) = match spec {
                S::ImportDefaultSpecifier(s) => (s.local.name.as_str(), "default".to_string()),
                S::ImportNamespaceSpecifier(s) => (s.local.name.as_str(), "*".to_string()),
                S::ImportSpecifier(s) => (s.local.name.as_str(), s.imported.name().to_string()),
            };
            let builtin = match (source, imported.as_str()) {
                ("k6/http", "default" | "*") => Some("http"),
                ("k6", "check") => Some("check"),
                ("k6", "sleep") => Some("sleep"),
                ("k6", "group") => Some("group"),
                ("k6/data", "SharedArray") => Some("SharedArray"),
                ("k6/execution", "default" | "*") => Some("exec"),
                (s, "default" | "*") if s.contains("papaparse") => Some("papaparse"),
                (s, "randomItem") if s.contains("k6-utils") => Some("randomItem"),
                _ => None,
            };
            match builtin {
                Some(b) => {
                    self.builtins.insert(local.to_string(), b);
                }
                None => self.bind(
                    local.to_string(),
                    Val::unknown(
                        format!("`{local}` comes from '{source}', which is not imported"),
                        spec.span(),
                    ),
                ),
            }
        }
    }

    fn builtin(&self, name: &str) -> Option<&'static str> {
        if self.lookup(name).is_some() && !self.builtins.contains_key(name) {
            return None;
        }
        self.builtins.get(name).copied()
    }

    // ---- scopes ------------------------------------------------------------------------

    fn bind(&mut self, name: String, v: Val<'a>) {
        if let Some(s) = self.scopes.last_mut() {
            s.insert(name, v);
        }
    }

    /// `name = v`: the innermost binding of `name` changes.
    fn assign(&mut self, name: &str, v: Val<'a>) {
        match self.scopes.iter_mut().rev().find(|s| s.contains_key(name)) {
            Some(s) => {
                s.insert(name.to_string(), v);
            }
            None => self.bind(name.to_string(), v),
        }
    }

    pub fn lookup(&self, name: &str) -> Option<&Val<'a>> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    /// Start one scenario's walk.
    pub fn reset(&mut self) {
        self.setup_phase = false;
        self.setup_steps.clear();
        self.steps.clear();
        self.sleeps.clear();
        self.data = None;
        self.returned = None;
        self.scopes.truncate(1);
    }

    /// Call a script function with arguments; returns what it returned.
    pub fn call_fn(&mut self, f: FnRef<'a>, args: Vec<Val<'a>>, at: Span) -> Val<'a> {
        if self.depth >= MAX_DEPTH {
            return Val::unknown("functions nest too deep to import", at);
        }
        self.depth += 1;
        let mut scope = HashMap::new();
        let mut args = args.into_iter();
        for p in &f.params.items {
            let v = args.next().unwrap_or(Val::Null);
            if let BindingPattern::BindingIdentifier(id) = &p.pattern {
                scope.insert(id.name.as_str().to_string(), v);
            } else {
                self.scopes.push(HashMap::new());
                self.destructure(&p.pattern, v);
                if let Some(s) = self.scopes.pop() {
                    scope.extend(s);
                }
            }
        }
        self.scopes.push(scope);
        let outer = self.returned.take();
        let ret = match f.body {
            FnBody::Stmts(stmts) => {
                self.walk_stmts(stmts);
                self.returned.take().unwrap_or(Val::Null)
            }
            FnBody::Expr(e) => self.eval(e),
        };
        self.returned = outer;
        self.scopes.pop();
        self.depth -= 1;
        ret
    }

    // ---- statements --------------------------------------------------------------------

    fn walk_stmts(&mut self, stmts: &'a [Statement<'a>]) {
        for s in stmts {
            if self.returned.is_some() {
                break;
            }
            self.walk_stmt(s);
        }
    }

    fn walk_stmt(&mut self, s: &'a Statement<'a>) {
        match s {
            Statement::VariableDeclaration(d) => self.declare(d),
            Statement::FunctionDeclaration(_) => {
                if let Some(decl) = s.as_declaration() {
                    self.declaration(decl);
                }
            }
            Statement::ExpressionStatement(e) => {
                if let Val::Unknown { reason, span } = self.eval(&e.expression) {
                    let affects = self.affected_in_expr(&e.expression);
                    self.report(span, reason, affects);
                }
            }
            Statement::ReturnStatement(r) => {
                let v = match &r.argument {
                    Some(e) => self.eval(e),
                    None => Val::Null,
                };
                self.returned = Some(v);
            }
            Statement::BlockStatement(b) => {
                self.scopes.push(HashMap::new());
                self.walk_stmts(&b.body);
                self.scopes.pop();
            }
            Statement::EmptyStatement(_) => {}
            other => {
                let reason = match other {
                    Statement::IfStatement(_) | Statement::SwitchStatement(_) => {
                        "conditions are not imported: every step of a loadspec iteration runs every time"
                    }
                    Statement::ForStatement(_)
                    | Statement::ForInStatement(_)
                    | Statement::ForOfStatement(_)
                    | Statement::WhileStatement(_)
                    | Statement::DoWhileStatement(_) => {
                        "loops are not imported: write each request as its own step"
                    }
                    Statement::TryStatement(_) => "try/catch is not imported",
                    _ => "this statement is not imported",
                };
                let affects = self.affected_requests(other);
                self.report(other.span(), reason, affects);
            }
        }
    }

    fn declare(&mut self, d: &'a VariableDeclaration<'a>) {
        for decl in &d.declarations {
            let v = match &decl.init {
                Some(e) => self.eval(e),
                None => Val::Null,
            };
            self.destructure(&decl.id, v);
        }
    }

    /// Bind `const x = v` and `const { a, b: c } = v`.
    fn destructure(&mut self, pat: &'a BindingPattern<'a>, v: Val<'a>) {
        match pat {
            BindingPattern::BindingIdentifier(id) => self.bind(id.name.as_str().to_string(), v),
            BindingPattern::ObjectPattern(o) => {
                for p in &o.properties {
                    let field = match p.key.static_name() {
                        Some(k) => self.member(v.clone(), &k, p.span),
                        None => Val::unknown("a computed key is not imported", p.span),
                    };
                    self.destructure(&p.value, field);
                }
            }
            other => {
                let names = binding_names(other);
                for n in names {
                    let u = Val::unknown("array destructuring is not imported", other.span());
                    self.bind(n, u);
                }
            }
        }
    }

    // ---- expressions -------------------------------------------------------------------

    pub fn eval(&mut self, e: &'a Expression<'a>) -> Val<'a> {
        if self.depth >= MAX_DEPTH {
            return Val::unknown("the expression nests too deep to import", e.span());
        }
        self.depth += 1;
        let v = self.eval_inner(e.get_inner_expression());
        self.depth -= 1;
        v
    }

    fn eval_inner(&mut self, e: &'a Expression<'a>) -> Val<'a> {
        match e {
            Expression::StringLiteral(s) => Val::Str(lit(s.value.as_str())),
            Expression::NumericLiteral(n) => Val::Num(n.value),
            Expression::BooleanLiteral(b) => Val::Bool(b.value),
            Expression::NullLiteral(_) => Val::Null,
            Expression::TemplateLiteral(t) => self.template(t),
            Expression::Identifier(id) => {
                let name = id.name.as_str();
                match self.lookup(name) {
                    Some(v) => v.clone(),
                    None if name == "undefined" => Val::Null,
                    None => Val::unknown(format!("`{name}` has no value at import time"), id.span),
                }
            }
            Expression::ObjectExpression(o) => {
                use oxc_ast::ast::ObjectPropertyKind as P;
                let mut kv = Vec::new();
                for p in &o.properties {
                    match p {
                        P::ObjectProperty(p) if !p.computed || p.key.static_name().is_some() => {
                            let key = p.key.static_name().unwrap_or_default().to_string();
                            let v = self.eval(&p.value);
                            kv.push((key, v));
                        }
                        P::SpreadProperty(s) => match self.eval(&s.argument) {
                            Val::Obj(inner) => kv.extend(inner),
                            other => {
                                return Val::unknown(
                                    format!("spreading {} is not imported", other.kind()),
                                    s.span,
                                )
                            }
                        },
                        P::ObjectProperty(p) => {
                            return Val::unknown("a computed key is not imported", p.span)
                        }
                    }
                }
                Val::Obj(kv)
            }
            Expression::ArrayExpression(a) => {
                let mut out = Vec::new();
                for el in &a.elements {
                    match el.as_expression() {
                        Some(x) => out.push(self.eval(x)),
                        None => return Val::unknown("spreads and holes are not imported", a.span),
                    }
                }
                Val::Arr(out)
            }
            Expression::BinaryExpression(b) if b.operator == BinaryOperator::Addition => {
                let l = self.eval(&b.left);
                let r = self.eval(&b.right);
                match (&l, &r) {
                    (Val::Num(x), Val::Num(y)) => Val::Num(x + y),
                    _ => match (self.text(l, b.left.span()), self.text(r, b.right.span())) {
                        (Ok(x), Ok(y)) => Val::Str(x + &y),
                        (Err(u), _) | (_, Err(u)) => u,
                    },
                }
            }
            Expression::LogicalExpression(l)
                if matches!(l.operator, LogicalOperator::Or | LogicalOperator::Coalesce) =>
            {
                self.env_default(l)
            }
            Expression::StaticMemberExpression(m) => {
                if m.object.is_specific_id("__ENV") {
                    return env_var(m.property.name.as_str(), m.span);
                }
                let obj = self.eval(&m.object);
                self.member(obj, m.property.name.as_str(), m.span)
            }
            Expression::ComputedMemberExpression(m) => {
                let key = self.eval(&m.expression);
                if m.object.is_specific_id("__ENV") {
                    return match key.literal() {
                        Some(k) => env_var(&k, m.span),
                        None => Val::unknown("a computed __ENV name is not imported", m.span),
                    };
                }
                let obj = self.eval(&m.object);
                match (obj, key) {
                    (Val::Rows(path), _) => {
                        let per_vu = mentions_vu(&m.expression);
                        self.use_rows(path, per_vu, m.span)
                    }
                    (Val::Arr(items), Val::Num(i)) if i >= 0.0 && (i as usize) < items.len() => {
                        items[i as usize].clone()
                    }
                    (obj, key) => match key.literal() {
                        Some(k) => self.member(obj, &k, m.span),
                        None => Val::unknown("a computed index is not imported", m.span),
                    },
                }
            }
            Expression::CallExpression(c) => self.call(c),
            Expression::AssignmentExpression(a) => {
                use oxc_ast::ast::{AssignmentOperator, AssignmentTarget};
                match (&a.left, a.operator) {
                    (
                        AssignmentTarget::AssignmentTargetIdentifier(id),
                        AssignmentOperator::Assign,
                    ) => {
                        let v = self.eval(&a.right);
                        self.assign(id.name.as_str(), v.clone());
                        v
                    }
                    _ => Val::unknown(
                        format!("`{}` is not imported", self.snippet(a.span)),
                        a.span,
                    ),
                }
            }
            Expression::NewExpression(n) => self.new_expr(n),
            Expression::ArrowFunctionExpression(_) | Expression::FunctionExpression(_) => self
                .func_of(e)
                .map(Val::Func)
                .unwrap_or_else(|| Val::unknown("this function is not imported", e.span())),
            other => Val::unknown(
                format!("`{}` is not imported", self.snippet(other.span())),
                other.span(),
            ),
        }
    }

    pub fn func_of(&self, e: &'a Expression<'a>) -> Option<FnRef<'a>> {
        use oxc_ast::ast::ArrowFunctionBody as AB;
        match e.get_inner_expression() {
            Expression::ArrowFunctionExpression(a) => Some(FnRef {
                span: a.span,
                params: &a.params,
                body: match &a.body {
                    AB::FunctionBody(b) => FnBody::Stmts(&b.statements),
                    other => FnBody::Expr(other.as_expression()?),
                },
            }),
            Expression::FunctionExpression(f) => Some(function_ref(f)),
            _ => None,
        }
    }

    fn template(&mut self, t: &'a TemplateLiteral<'a>) -> Val<'a> {
        let mut out = String::new();
        for (i, q) in t.quasis.iter().enumerate() {
            let text = q.value.cooked.as_ref().unwrap_or(&q.value.raw);
            out.push_str(&lit(text.as_str()));
            if let Some(x) = t.expressions.get(i) {
                let v = self.eval(x);
                match self.text(v, x.span()) {
                    Ok(s) => out.push_str(&s),
                    Err(u) => return u,
                }
            }
        }
        Val::Str(out)
    }

    /// `__ENV.X || 'default'`: loadspec has no default for a variable, so the default is
    /// written; set it in the plan or override it (for the base URL,
    /// `LOADSPEC__TARGET__BASE_URL`).
    fn env_default(&mut self, l: &'a oxc_ast::ast::LogicalExpression<'a>) -> Val<'a> {
        let left = self.eval(&l.left);
        let right = self.eval(&l.right);
        match (&left, right.literal()) {
            (Val::Str(s), Some(_)) if s.starts_with("${") => {
                let (line, col) = self.pos(l.span);
                self.note(format!(
                    "{line}:{col}: `{}` uses the default {:?}: loadspec variables have no defaults",
                    self.snippet(l.span),
                    right.literal().unwrap_or_default()
                ));
                right
            }
            (Val::Unknown { .. }, _) => right,
            _ => left,
        }
    }

    /// Text of a value used in a string (URL, header, form field).
    pub fn text(&mut self, v: Val<'a>, at: Span) -> Result<String, Val<'a>> {
        match v {
            Val::Str(s) => Ok(s),
            Val::Num(n) => Ok(num_text(n)),
            Val::Bool(b) => Ok(b.to_string()),
            Val::Null => Ok("null".into()),
            Val::JsonOf { step, pointer } => Ok(format!("${{{}}}", self.capture(step, &pointer))),
            u @ Val::Unknown { .. } => Err(u),
            other => Err(Val::unknown(
                format!("{} cannot be used as text", other.kind()),
                at,
            )),
        }
    }

    /// The variable that holds `pointer` of `step`'s response, adding the capture once.
    pub fn capture(&mut self, step: StepRef, pointer: &str) -> String {
        let list = if step.setup {
            &self.setup_steps
        } else {
            &self.steps
        };
        let existing = list.get(step.idx).and_then(|s| {
            s.req
                .captures
                .iter()
                .find(|c| c.json.as_deref() == Some(pointer))
        });
        if let Some(c) = existing {
            return c.name.clone();
        }
        let base: String = pointer
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("value")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect();
        let taken = |n: &str| {
            self.setup_steps
                .iter()
                .chain(&self.steps)
                .any(|s| s.req.captures.iter().any(|c| c.name == n))
        };
        let mut name = base.clone();
        let mut k = 2;
        while taken(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        let list = if step.setup {
            &mut self.setup_steps
        } else {
            &mut self.steps
        };
        if let Some(s) = list.get_mut(step.idx) {
            s.req.captures.push(CaptureConfig {
                name: name.clone(),
                json: Some(pointer.to_string()),
                header: None,
                regex: None,
            });
        }
        name
    }

    pub fn member(&mut self, obj: Val<'a>, prop: &str, at: Span) -> Val<'a> {
        match obj {
            Val::Obj(_) => obj
                .get(prop)
                .cloned()
                .unwrap_or_else(|| Val::unknown(format!("the object has no `{prop}`"), at)),
            Val::Arr(a) if prop == "length" => Val::Num(a.len() as f64),
            Val::Row { .. } => Val::Str(format!("${{{prop}}}")),
            Val::JsonOf { step, pointer } => Val::JsonOf {
                step,
                pointer: format!("{pointer}/{}", json_pointer_token(prop)),
            },
            Val::Response(_) => Val::unknown(
                format!("`res.{prop}` is not imported (only res.json() values become captures)"),
                at,
            ),
            u @ Val::Unknown { .. } => u,
            other => Val::unknown(format!("`.{prop}` of {} is not imported", other.kind()), at),
        }
    }

    fn use_rows(&mut self, path: PathBuf, per_vu: bool, at: Span) -> Val<'a> {
        let want = DataUse { path, per_vu };
        match &self.data {
            Some(d) if d.path != want.path => return Val::unknown(
                "a second data file in one iteration is not imported (one data file per scenario)",
                at,
            ),
            _ => {}
        }
        if !per_vu {
            let (line, col) = self.pos(at);
            self.note(format!(
                "{line}:{col}: rows not chosen by __VU are used in turn (data mode round-robin)"
            ));
        }
        self.data = Some(want);
        Val::Row { per_vu }
    }

    // ---- calls -------------------------------------------------------------------------

    fn args(&mut self, c: &'a CallExpression<'a>) -> Vec<Val<'a>> {
        c.arguments.iter().map(|a| self.arg(a)).collect()
    }

    pub fn arg(&mut self, a: &'a Argument<'a>) -> Val<'a> {
        match a.as_expression() {
            Some(e) => self.eval(e),
            None => Val::unknown("spread arguments are not imported", a.span()),
        }
    }

    fn call(&mut self, c: &'a CallExpression<'a>) -> Val<'a> {
        let callee = c.callee.get_inner_expression();
        if let Expression::StaticMemberExpression(m) = callee {
            let method = m.property.name.as_str();
            if let Expression::Identifier(obj) = m.object.get_inner_expression() {
                let name = obj.name.as_str();
                match (self.builtin(name), name, method) {
                    (Some("http"), ..) => return requests::http_call(self, method, c),
                    (Some("papaparse"), _, "parse") => return self.papaparse(c),
                    (_, "JSON", "stringify") if self.lookup("JSON").is_none() => {
                        let v = self.args(c).into_iter().next().unwrap_or(Val::Null);
                        return Val::Json(Box::new(v));
                    }
                    (_, "JSON", "parse") if self.lookup("JSON").is_none() => {
                        return match self.args(c).into_iter().next() {
                            Some(Val::Open { path, .. }) => Val::Rows(path),
                            _ => Val::unknown("JSON.parse of this value is not imported", c.span),
                        };
                    }
                    (_, "console", _) if self.lookup("console").is_none() => return Val::Null,
                    _ => {}
                }
            }
            if method == "json" {
                let obj = self.eval(&m.object);
                if let Val::Response(step) = obj {
                    let path = self.args(c).into_iter().next();
                    return match path {
                        None | Some(Val::Null) => Val::JsonOf {
                            step,
                            pointer: String::new(),
                        },
                        Some(p) => match p.literal() {
                            Some(p) => Val::JsonOf {
                                step,
                                pointer: gjson_pointer(&p),
                            },
                            None => {
                                Val::unknown("a computed res.json() path is not imported", c.span)
                            }
                        },
                    };
                }
            }
        }
        if let Expression::Identifier(id) = callee {
            let name = id.name.as_str();
            match self.builtin(name) {
                Some("check") => return super::checks::check(self, c),
                Some("sleep") => return self.sleep(c),
                Some("group") => {
                    return match c.arguments.get(1).and_then(|a| a.as_expression()) {
                        Some(f) => match self.func_of(f) {
                            Some(f) => self.call_fn(f, Vec::new(), c.span),
                            None => Val::unknown("group() without a function literal", c.span),
                        },
                        None => Val::unknown("group() without a function", c.span),
                    }
                }
                Some("randomItem") => {
                    return match self.args(c).into_iter().next() {
                        Some(Val::Rows(p)) => self.use_rows(p, false, c.span),
                        _ => Val::unknown("randomItem() of this value is not imported", c.span),
                    }
                }
                _ => {}
            }
            if name == "open" && self.lookup("open").is_none() {
                return self.open(c);
            }
            if let Some(Val::Func(f)) = self.lookup(name).cloned() {
                let args = self.args(c);
                return self.call_fn(f, args, c.span);
            }
        }
        Val::unknown(
            format!("the call `{}` is not imported", self.snippet(callee.span())),
            c.span,
        )
    }

    fn open(&mut self, c: &'a CallExpression<'a>) -> Val<'a> {
        let args = self.args(c);
        let Some(path) = args.first().and_then(Val::literal) else {
            return Val::unknown("open() needs a literal path", c.span);
        };
        let binary = args.get(1).and_then(Val::literal).as_deref() == Some("b");
        Val::Open {
            path: self.script_dir.join(path),
            binary,
        }
    }

    /// `papaparse.parse(open('users.csv'), { header: true })` → `{ data: rows }`.
    fn papaparse(&mut self, c: &'a CallExpression<'a>) -> Val<'a> {
        let args = self.args(c);
        let header = matches!(
            args.get(1).and_then(|o| o.get("header")),
            Some(Val::Bool(true))
        );
        match args.into_iter().next() {
            Some(Val::Open { path, .. }) if header => {
                Val::Obj(vec![("data".into(), Val::Rows(path))])
            }
            Some(Val::Open { .. }) => Val::unknown(
                "papaparse without { header: true } gives rows without column names; not imported",
                c.span,
            ),
            _ => Val::unknown("papaparse.parse() of this value is not imported", c.span),
        }
    }

    fn sleep(&mut self, c: &'a CallExpression<'a>) -> Val<'a> {
        match self.args(c).into_iter().next() {
            Some(Val::Num(n)) if n >= 0.0 && n.is_finite() => {
                self.sleeps.push(n);
                Val::Null
            }
            _ => {
                self.report(
                    c.span,
                    "sleep() with a computed duration is not imported",
                    "the think time of the scenario",
                );
                Val::Null
            }
        }
    }

    fn new_expr(&mut self, n: &'a NewExpression<'a>) -> Val<'a> {
        if let Expression::Identifier(id) = &n.callee {
            if self.builtin(id.name.as_str()) == Some("SharedArray") {
                let f = n
                    .arguments
                    .get(1)
                    .and_then(|a| a.as_expression())
                    .and_then(|e| self.func_of(e));
                return match f.map(|f| self.call_fn(f, Vec::new(), n.span)) {
                    Some(Val::Rows(p)) => Val::Rows(p),
                    Some(Val::Unknown { reason, span }) => Val::Unknown { reason, span },
                    _ => Val::unknown(
                        "a SharedArray that does not return a CSV or JSON file's rows is not imported",
                        n.span,
                    ),
                };
            }
        }
        Val::unknown(
            format!("`new {}` is not imported", self.snippet(n.callee.span())),
            n.span,
        )
    }
}

fn function_ref<'a>(f: &'a oxc_ast::ast::Function<'a>) -> FnRef<'a> {
    FnRef {
        span: f.span,
        params: &f.params,
        body: FnBody::Stmts(f.body.as_ref().map(|b| &b.statements[..]).unwrap_or(&[])),
    }
}

fn env_var<'a>(name: &str, at: Span) -> Val<'a> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Val::Str(format!("${{{name}}}"))
    } else {
        Val::unknown(format!("__ENV.{name} is not a usable variable name"), at)
    }
}

/// k6's `res.json('a.b.0')` path (gjson) as a JSON pointer `/a/b/0`.
fn gjson_pointer(path: &str) -> String {
    path.split('.')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", json_pointer_token(s)))
        .collect()
}

fn json_pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Whether a row index is chosen per VU (`__VU`, `exec.vu.idInTest`).
fn mentions_vu(e: &Expression<'_>) -> bool {
    #[derive(Default)]
    struct Vu(bool);
    impl<'a> Visit<'a> for Vu {
        fn visit_identifier_reference(&mut self, it: &oxc_ast::ast::IdentifierReference<'a>) {
            self.0 |= it.name.as_str() == "__VU";
        }
        fn visit_identifier_name(&mut self, it: &oxc_ast::ast::IdentifierName<'a>) {
            self.0 |= matches!(it.name.as_str(), "idInTest" | "idInInstance");
        }
    }
    let mut v = Vu::default();
    v.visit_expression(e);
    v.0
}

fn binding_names(p: &BindingPattern<'_>) -> Vec<String> {
    #[derive(Default)]
    struct Names(Vec<String>);
    impl<'a> Visit<'a> for Names {
        fn visit_binding_identifier(&mut self, it: &oxc_ast::ast::BindingIdentifier<'a>) {
            self.0.push(it.name.as_str().to_string());
        }
    }
    let mut n = Names::default();
    n.visit_binding_pattern(p);
    n.0
}

/// The `http.*` request calls inside a node, for "which requests does this affect".
#[derive(Default)]
struct HttpCalls {
    found: Vec<(Span, String)>,
}

impl<'a> Visit<'a> for HttpCalls {
    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        if let Expression::StaticMemberExpression(m) = it.callee.get_inner_expression() {
            let method = m.property.name.as_str();
            if m.object.is_specific_id("http") && requests::is_request_method(method) {
                self.found.push((it.span, format!("http.{method}")));
            }
        }
        walk::walk_call_expression(self, it);
    }
}
