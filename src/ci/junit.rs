//! `--junit FILE.xml`: the run as JUnit XML for CI test views. Two suites: `sla`, one testcase
//! per SLA criterion, and `checks`, one per scenario and request. A failing testcase carries the
//! measured value in its message. The layout follows the Jenkins JUnit schema that
//! tests/fixtures/junit-10.xsd holds.

use std::fmt::Write as _;

use super::export::SummaryExport;

/// Escape text for an XML attribute or element (the HTML escaping serves: `&#39;` is XML
/// too), dropping the control characters XML 1.0 cannot hold.
fn esc(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|&c| c >= ' ' || matches!(c, '\t' | '\n' | '\r'))
        .collect();
    crate::report::format::escape(&kept)
}

struct Case {
    classname: String,
    name: String,
    /// (message, body) when it failed.
    failure: Option<(String, String)>,
}

fn suite(out: &mut String, name: &str, cases: &[Case], time: f64, timestamp: &str) {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let _ = writeln!(
        out,
        r#"  <testsuite name="{}" tests="{}" failures="{failures}" errors="0" skipped="0" time="{time:.3}" timestamp="{}">"#,
        esc(name),
        cases.len(),
        esc(timestamp)
    );
    for c in cases {
        let head = format!(
            r#"    <testcase classname="{}" name="{}" time="0""#,
            esc(&c.classname),
            esc(&c.name)
        );
        match &c.failure {
            None => {
                let _ = writeln!(out, "{head}/>");
            }
            Some((msg, body)) => {
                let _ = writeln!(
                    out,
                    "{head}>\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>",
                    esc(name),
                    esc(msg),
                    esc(body)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n");
}

/// The JUnit document.
pub fn render(doc: &SummaryExport) -> String {
    let time = doc.duration_seconds.max(0.0);
    let timestamp = doc
        .run
        .started
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default();
    let sla: Vec<Case> = doc
        .sla
        .verdict
        .criteria
        .iter()
        .map(|c| Case {
            classname: format!("loadspec.sla.{}", c.scenario),
            // The criterion without its value, so the test's identity is stable across runs.
            name: c.name.clone(),
            failure: (!c.passed).then(|| (c.text.clone(), format!("SLA breached: {}", c.text))),
        })
        .collect();
    let checks: Vec<Case> = doc
        .checks
        .iter()
        .map(|c| {
            let total = c.passes + c.fails;
            let msg = format!(
                "{} of {total} checks failed ({}), above the SLA's {}",
                c.fails,
                super::verdict::percent(c.fail_ratio),
                super::verdict::percent(doc.sla.error_ratio)
            );
            Case {
                classname: format!("loadspec.checks.{}", c.scenario),
                name: c.request.clone(),
                failure: (!c.within_sla)
                    .then(|| (msg.clone(), format!("{msg}; {} passed", c.passes))),
            }
        })
        .collect();
    let tests = sla.len() + checks.len();
    let failures = sla
        .iter()
        .chain(&checks)
        .filter(|c| c.failure.is_some())
        .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        r#"<testsuites name="loadspec {}" tests="{tests}" failures="{failures}" errors="0" time="{time:.3}">"#,
        esc(&doc.run.run_id)
    );
    suite(&mut out, "sla", &sla, time, &timestamp);
    suite(&mut out, "checks", &checks, time, &timestamp);
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(esc("a<b & \"c\"\u{1}'"), "a&lt;b &amp; &quot;c&quot;&#39;");
    }
}
