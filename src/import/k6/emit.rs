//! The plan as TOML: a header comment (what was left out and why, checks kept as comments,
//! where loadspec differs from k6), `[target]` with the scripts' common origin as `base_url`
//! (so `LOADSPEC__TARGET__BASE_URL` points the plan elsewhere), `[lifecycle] on_finish =
//! "exit"` (a k6 run ends when its scenarios end), `[sla]` from thresholds, and the scenarios
//! written through loadspec's own config types with empty keys left out.

use std::collections::BTreeSet;
use std::path::Path;

use super::options::Sla;
use super::requests::relative_to;
use super::value::fmt_duration;
use super::Finding;
use crate::config::raw::{BodyConfig, ScenarioConfig};
use crate::config::validate::load_files::load_data;
use crate::load::template::{Escape, Resolved, Template};

pub struct Plan<'p> {
    pub script: &'p Path,
    pub out_dir: &'p Path,
    pub scenarios: Vec<ScenarioConfig>,
    pub sla: Sla,
    pub findings: &'p [Finding],
    pub notes: &'p [String],
    pub comments: &'p [String],
}

/// The common `scheme://host:port` of every URL, when all of them have the same literal one.
fn common_origin(scenarios: &[ScenarioConfig]) -> Option<String> {
    let mut origin: Option<&str> = None;
    for r in scenarios
        .iter()
        .flat_map(|s| s.setup.iter().chain(&s.requests))
    {
        let o = origin_of(r.url.as_deref()?)?;
        match origin {
            None => origin = Some(o),
            Some(prev) if prev == o => {}
            Some(_) => return None,
        }
    }
    origin.map(str::to_string)
}

fn origin_of(url: &str) -> Option<&str> {
    let rest_at = url.find("://")? + 3;
    let scheme = &url[..rest_at - 3];
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = url[rest_at..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| rest_at + i);
    let origin = &url[..end];
    (!origin.contains('$') && end > rest_at).then_some(origin)
}

pub fn emit(plan: Plan<'_>) -> Result<String, toml::ser::Error> {
    let mut scenarios = plan.scenarios;
    let origin = common_origin(&scenarios);
    for sc in &mut scenarios {
        for r in sc.setup.iter_mut().chain(sc.requests.iter_mut()) {
            if let (Some(o), Some(u)) = (&origin, &r.url) {
                let rest = &u[o.len()..];
                r.path = Some(if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("/{rest}")
                });
                r.url = None;
            }
            if let Some(BodyConfig::Multipart { files, .. }) = &mut r.body {
                for f in files {
                    f.path = relative_to(&f.path, plan.out_dir);
                }
            }
        }
        if let Some(d) = &mut sc.data {
            d.file = relative_to(&d.file, plan.out_dir);
        }
    }

    let env = needed_env(&scenarios, plan.out_dir);
    let mut doc = toml::Table::new();
    let mut target = toml::Table::new();
    if let Some(o) = &origin {
        target.insert("base_url".into(), o.clone().into());
    }
    doc.insert("target".into(), target.into());
    let mut lifecycle = toml::Table::new();
    lifecycle.insert("on_finish".into(), "exit".into());
    doc.insert("lifecycle".into(), lifecycle.into());
    if plan.sla != Sla::default() {
        let mut sla = toml::Table::new();
        if let Some(d) = plan.sla.latency_p95 {
            sla.insert("latency_p95".into(), fmt_duration(d).into());
        }
        if let Some(d) = plan.sla.latency_p99 {
            sla.insert("latency_p99".into(), fmt_duration(d).into());
        }
        if let Some(r) = plan.sla.error_ratio {
            sla.insert("error_ratio".into(), r.into());
        }
        doc.insert("sla".into(), sla.into());
    }
    let mut list = Vec::new();
    for sc in &scenarios {
        let mut v = toml::Value::try_from(sc)?;
        prune(&mut v);
        list.push(v);
    }
    doc.insert("scenarios".into(), toml::Value::Array(list));
    let body = toml::to_string_pretty(&doc)?;
    Ok(format!(
        "{}\n{body}",
        header(
            &plan.script.display().to_string(),
            &env,
            plan.findings,
            plan.notes,
            plan.comments
        )
    ))
}

/// Leave out what a reader would not write: empty optional lists and tables, `step = false`.
fn prune(v: &mut toml::Value) {
    match v {
        toml::Value::Table(t) => {
            t.retain(|k, v| {
                prune(v);
                let empty = matches!(v, toml::Value::Array(a) if a.is_empty())
                    || matches!(v, toml::Value::Table(t) if t.is_empty());
                // Only keys whose absence means the same; an empty JSON body or form stays.
                let optional = matches!(
                    k,
                    "setup" | "requests" | "stages" | "captures" | "expect" | "headers"
                );
                !((empty && optional) || (k == "step" && matches!(v, toml::Value::Boolean(false))))
            });
        }
        toml::Value::Array(a) => a.iter_mut().for_each(prune),
        _ => {}
    }
}

/// The `${NAME}`s that are neither a capture nor a data column: loadspec reads them from the
/// environment when the plan is loaded, and refuses the plan when one is unset.
fn needed_env(scenarios: &[ScenarioConfig], out_dir: &Path) -> Vec<String> {
    let mut names = BTreeSet::new();
    for sc in scenarios {
        let steps = || sc.setup.iter().chain(&sc.requests);
        let mut known: BTreeSet<String> = steps()
            .flat_map(|r| r.captures.iter().map(|c| c.name.clone()))
            .collect();
        if let Some(d) = &sc.data {
            if let Ok(table) = load_data(d, out_dir) {
                known.extend(table.columns);
            }
        }
        let mut texts: Vec<&str> = Vec::new();
        for r in steps() {
            texts.extend(r.url.as_deref());
            texts.extend(r.path.as_deref());
            texts.extend(r.bearer_token.as_deref());
            texts.extend(r.headers.values().map(String::as_str));
            match &r.body {
                Some(BodyConfig::Text { text, .. }) => texts.push(text),
                Some(BodyConfig::Form { fields }) => {
                    texts.extend(fields.values().map(String::as_str))
                }
                Some(BodyConfig::Multipart { fields, .. }) => {
                    texts.extend(fields.iter().map(|f| f.value.as_str()))
                }
                Some(BodyConfig::Json { json }) => json_strings(json, &mut texts),
                None => {}
            }
        }
        for t in texts {
            let _ = Template::parse(t, Escape::None, |n| {
                if !known.contains(n) {
                    names.insert(n.to_string());
                }
                Ok::<_, std::convert::Infallible>(Resolved::Var(0))
            });
        }
    }
    names.into_iter().collect()
}

fn json_strings<'j>(v: &'j serde_json::Value, out: &mut Vec<&'j str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(m) => m.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

fn header(
    script: &str,
    env: &[String],
    findings: &[Finding],
    notes: &[String],
    comments: &[String],
) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let mut h = format!(
        "# loadspec plan imported from {} by `loadspec import k6`.\n\
         # Check it with `loadspec validate --config FILE`, run it with `loadspec run --config FILE`.\n",
        one_line(script)
    );
    if !env.is_empty() {
        h.push_str(&format!(
            "# It reads these environment variables when it is loaded: {}.\n",
            env.join(", ")
        ));
    }
    if findings.is_empty() {
        h.push_str("# Nothing in the script was left out.\n");
    } else {
        h.push_str(&format!("#\n# Left out ({}):\n", findings.len()));
        for f in findings {
            h.push_str(&format!("#   {}\n", one_line(&f.to_string())));
        }
    }
    if !comments.is_empty() {
        h.push_str("#\n# Checks that are not status checks, kept as written:\n");
        for c in comments {
            h.push_str(&format!("#   {}\n", one_line(c)));
        }
    }
    if !notes.is_empty() {
        h.push_str("#\n# Where this plan differs from the k6 run:\n");
        for n in notes {
            h.push_str(&format!("#   {}\n", one_line(n)));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(origin_of("http://h:8080/a?b"), Some("http://h:8080"));
        assert_eq!(origin_of("http://h:8080"), Some("http://h:8080"));
        assert_eq!(origin_of("${BASE}/a"), None);
        assert_eq!(origin_of("http://${HOST}/a"), None);
    }
}
