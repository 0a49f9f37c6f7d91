//! Secrets in a config: which strings are secret (so errors and log lines can be cleaned of
//! them) and the config with them hidden (for printing). Kept apart from the checks because
//! it runs on every config, valid or not, and on every reload.

use crate::config::raw::RawConfig;

/// Headers whose values are secrets: redacted when the config is printed.
pub const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

const REDACTED: &str = "<redacted>";

/// Every secret the config holds or pulls in: bearer tokens, values of sensitive headers,
/// passwords in URLs, and the value of every environment variable a `${NAME}` reads (the usual
/// way to pass a token). Errors and log lines are cleaned of them.
pub fn secrets(raw: &RawConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |s: &str| {
        // Expand `${NAME}` from the environment as templates do, and keep both spellings.
        let mut rest = s;
        while let Some(p) = rest.find("${") {
            let after = &rest[p + 2..];
            let Some(end) = after.find('}') else { break };
            if let Ok(v) = std::env::var(after[..end].trim()) {
                if v.len() >= 4 {
                    out.push(v);
                }
            }
            rest = &after[end..];
        }
        if let Ok(u) = url::Url::parse(s) {
            if let Some(p) = u.password().filter(|p| p.len() >= 4) {
                out.push(p.to_string());
            }
        }
    };
    let value = serde_json::to_value(raw).unwrap_or_default();
    fn walk(v: &serde_json::Value, key: &str, f: &mut dyn FnMut(&str, &str)) {
        match v {
            serde_json::Value::String(s) => f(key, s),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, key, f)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| walk(x, k, f)),
            _ => {}
        }
    }
    let mut literal = Vec::new();
    walk(&value, "", &mut |key, s| {
        add(s);
        let key = key.to_ascii_lowercase();
        if key == "bearer_token" || SENSITIVE_HEADERS.contains(&key.as_str()) {
            literal.push(s.to_string());
        }
    });
    // A `${NAME}` is not itself a secret (its value was added above), and hiding it would
    // hide which variable an error is about.
    for s in literal.into_iter().filter(|s| !s.contains("${")) {
        // A header value such as `Bearer abc`: hide the whole value and its last word.
        if let Some(last) = s.split_whitespace().last().filter(|w| w.len() >= 4) {
            out.push(last.to_string());
        }
        out.push(s);
    }
    // A blank value hides nothing and would turn every space of every message into
    // `<redacted>` (validate refuses a blank token anyway, with a readable reason).
    out.retain(|s| !s.trim().is_empty());
    out.sort();
    out.dedup();
    out
}

/// The config with every secret replaced, for printing and logging.
pub fn redacted(raw: &RawConfig) -> RawConfig {
    let mut r = raw.clone();
    let hide = |h: &mut std::collections::BTreeMap<String, String>| {
        for (k, v) in h.iter_mut() {
            if SENSITIVE_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                *v = REDACTED.into();
            }
        }
    };
    if r.target.bearer_token.is_some() {
        r.target.bearer_token = Some(REDACTED.into());
    }
    hide(&mut r.target.headers);
    for sc in &mut r.scenarios {
        for req in sc.setup.iter_mut().chain(sc.requests.iter_mut()) {
            if req.bearer_token.is_some() {
                req.bearer_token = Some(REDACTED.into());
            }
            hide(&mut req.headers);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{raw, SCENARIO};
    use super::*;

    /// Secrets in the target, in a URL and in a step's header.
    fn cfg() -> crate::config::raw::RawConfig {
        let target = "[target]\nbearer_token = \"tok-target-1234\"\nheaders = { x-api-key = \"key-5678\", accept = \"text/plain\" }\n";
        let step = SCENARIO.replace("http://127.0.0.1:1/", "http://user:pa55word@127.0.0.1:1/")
            + "headers = { cookie = \"Bearer sess-9999\" }\n";
        raw(&format!("{target}{step}"))
    }

    #[test]
    fn secrets_lists_tokens_header_values_and_url_passwords() {
        let s = secrets(&cfg());
        for want in [
            "tok-target-1234",
            "key-5678",
            "pa55word",
            "Bearer sess-9999",
            "sess-9999",
        ] {
            assert!(s.iter().any(|x| x == want), "{want} missing from {s:?}");
        }
        assert!(!s.iter().any(|x| x == "text/plain"), "{s:?}");
    }

    #[test]
    fn blank_values_are_not_secrets_and_a_blank_token_is_refused_readably() {
        let step_token = SCENARIO.to_string() + "bearer_token = \"\\t \"\n";
        let text = format!(
            "[target]\nbearer_token = \" \"\nheaders = {{ cookie = \"   \" }}\n{step_token}"
        );
        assert_eq!(secrets(&raw(&text)), Vec::<String>::new());
        let why = "is empty after substitution; set the token (or its environment variable) or remove bearer_token";
        assert_eq!(
            super::super::test_support::errors_of(&text),
            [format!("scenarios[0].requests[0].bearer_token: {why}")]
        );
        let text = format!("[target]\nbearer_token = \" \"\n{SCENARIO}");
        assert_eq!(
            super::super::test_support::errors_of(&text),
            [format!("target.bearer_token: {why}")]
        );
    }

    #[test]
    fn redacted_hides_tokens_and_sensitive_headers_only() {
        let r = redacted(&cfg());
        assert_eq!(r.target.bearer_token.as_deref(), Some(REDACTED));
        assert_eq!(r.target.headers["x-api-key"], REDACTED);
        assert_eq!(r.target.headers["accept"], "text/plain");
        assert_eq!(r.scenarios[0].requests[0].headers["cookie"], REDACTED);
    }
}
