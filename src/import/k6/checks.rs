//! `check(res, { name: (r) => predicate })`: predicates on the status code become the step's
//! `expect`; any other predicate is kept as a comment in the plan's header and reported.
//! Recognised: `r.status === N`, `r.status == N` (either side), `[a, b].includes(r.status)`,
//! and `||` of those.

use oxc_ast::ast::{BinaryOperator, CallExpression, Expression, LogicalOperator, Statement};
use oxc_span::GetSpan;

use super::flow::Walker;
use super::value::{FnBody, Val};

pub fn check<'a>(w: &mut Walker<'a>, c: &'a CallExpression<'a>) -> Val<'a> {
    let target = match c.arguments.first() {
        Some(a) => w.arg(a),
        None => Val::Null,
    };
    let Val::Response(step) = target else {
        w.report(
            c.span,
            format!("check() on {} is not imported", target.kind()),
            "no request",
        );
        return Val::Bool(true);
    };
    let Some(Expression::ObjectExpression(obj)) = c
        .arguments
        .get(1)
        .and_then(|a| a.as_expression())
        .map(|e| e.get_inner_expression())
    else {
        w.report(
            c.span,
            "check() without an object literal of predicates",
            "no request",
        );
        return Val::Bool(true);
    };
    let (req_name, mut expect) = {
        let list = if step.setup { &w.setup_steps } else { &w.steps };
        match list.get(step.idx) {
            Some(s) => (s.req.name.clone(), s.req.expect.clone()),
            None => return Val::Bool(true),
        }
    };
    for p in &obj.properties {
        let oxc_ast::ast::ObjectPropertyKind::ObjectProperty(p) = p else {
            w.report(
                p.span(),
                "a spread in check() is not imported",
                "no request",
            );
            continue;
        };
        let name = p.key.static_name().unwrap_or_default().to_string();
        let codes = w.func_of(&p.value).and_then(|f| {
            let param = match f.params.items.first().map(|i| &i.pattern) {
                Some(oxc_ast::ast::BindingPattern::BindingIdentifier(id)) => id.name.as_str(),
                _ => return None,
            };
            let body = match f.body {
                FnBody::Expr(e) => e,
                FnBody::Stmts([Statement::ReturnStatement(r)]) => r.argument.as_ref()?,
                FnBody::Stmts(_) => return None,
            };
            status_codes(body, param)
        });
        match codes {
            Some(codes) => expect.extend(codes),
            None => {
                let (line, col) = w.pos(p.span);
                let text = w.snippet(p.value.span());
                w.comments.push(format!(
                    "{line}:{col}: check {name:?} on request {req_name:?}: {text}"
                ));
                w.report(
                    p.span,
                    format!(
                        "check {name:?} is not a status check (r.status === N, == N or [..].includes(r.status)); kept as a comment"
                    ),
                    format!("the checks of request {req_name:?}"),
                );
            }
        }
    }
    expect.sort_unstable();
    expect.dedup();
    let list = if step.setup {
        &mut w.setup_steps
    } else {
        &mut w.steps
    };
    if let Some(s) = list.get_mut(step.idx) {
        s.req.expect = expect;
    }
    Val::Bool(true)
}

/// The status codes a predicate accepts, if it is only about the status.
fn status_codes(e: &Expression<'_>, param: &str) -> Option<Vec<u16>> {
    match e.get_inner_expression() {
        Expression::BinaryExpression(b)
            if matches!(
                b.operator,
                BinaryOperator::StrictEquality | BinaryOperator::Equality
            ) =>
        {
            let (l, r) = (&b.left, &b.right);
            if is_status(l, param) {
                code(r).map(|c| vec![c])
            } else if is_status(r, param) {
                code(l).map(|c| vec![c])
            } else {
                None
            }
        }
        Expression::LogicalExpression(l) if l.operator == LogicalOperator::Or => {
            let mut a = status_codes(&l.left, param)?;
            a.extend(status_codes(&l.right, param)?);
            Some(a)
        }
        Expression::CallExpression(c) => {
            let Expression::StaticMemberExpression(m) = c.callee.get_inner_expression() else {
                return None;
            };
            let Expression::ArrayExpression(arr) = m.object.get_inner_expression() else {
                return None;
            };
            if m.property.name.as_str() != "includes" || c.arguments.len() != 1 {
                return None;
            }
            if !is_status(c.arguments[0].as_expression()?, param) {
                return None;
            }
            arr.elements
                .iter()
                .map(|el| code(el.as_expression()?))
                .collect()
        }
        _ => None,
    }
}

fn is_status(e: &Expression<'_>, param: &str) -> bool {
    e.is_specific_member_access(param, "status")
}

fn code(e: &Expression<'_>) -> Option<u16> {
    match e.get_inner_expression() {
        Expression::NumericLiteral(n)
            if n.value.fract() == 0.0 && (100.0..=599.0).contains(&n.value) =>
        {
            Some(n.value as u16)
        }
        _ => None,
    }
}
