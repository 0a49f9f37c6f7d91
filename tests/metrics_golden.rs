//! The `/metrics` contract as a golden file, as node_exporter keeps one: a fixed plan against a
//! real demo-target on 127.0.0.1:0, with the process source measuring this test process
//! (named `golden-app`),
//! produces an exposition whose `# HELP` and `# TYPE` lines, metric names and label sets must
//! equal `tests/fixtures/metrics.golden`. Sample values are masked (`<v>`), so load, timing and
//! machine don't matter; a renamed metric, a new label or a changed help text does.
//!
//! After an intended change to the metrics, regenerate the file and commit the diff:
//! `UPDATE_GOLDEN=1 cargo test --test metrics_golden`.

mod support_core;
mod support_text;

use std::time::Duration;

use loadspec::demo_target::DemoTargetConfig;
use support_core::*;
use support_text::find_unquoted;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics.golden");

/// The exposition with every sample value replaced by `<v>`; comment lines stay as they are.
fn mask(exposition: &str) -> String {
    let mut out = String::new();
    for line in exposition.lines() {
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(series(line));
            out.push_str(" <v>");
        }
        out.push('\n');
    }
    out
}

/// `name{labels}` of a sample line, without its value (label values may hold spaces and `}`).
fn series(line: &str) -> &str {
    &line[..find_unquoted(line, " ").unwrap_or(line.len())]
}

fn plan(target: &str) -> String {
    format!(
        r#"
[target]
base_url = "http://{target}"
[lifecycle]
on_finish = "idle"
[reports]
enabled = false
[analysis]
settle = "0s"
[containers]
source = "process"
pids = [{pid}]
process_name = "golden-app"
interval = "100ms"

# 1.5 s with a 50 ms think time: at most ~60 requests, and about 15 container samples inside
# the stage, so the fitted-model gauges are always there (they are absent without samples).
[[scenarios]]
name = "golden"
executor = "constant-vus"
vus = 2
duration = "1500ms"
think_time = "50ms"
{request}"#,
        pid = std::process::id(),
        // No bearer token: the demo target answers every request 401, so the `code` label set
        // is the same however many requests a loaded machine manages to send. The 401 is the
        // expected answer here, so the requests count as successes and the per-TPS gauges
        // (TPS counts successful requests only) have a TPS to divide by.
        request = s3_request(None).replace("expect = [200]", "expect = [401]"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposition_matches_the_golden_file() {
    let (addr, _target) = target(DemoTargetConfig::free()).await;
    let d = start(&plan(&addr.to_string())).await;
    d.wait_runs(1, Duration::from_secs(60)).await;
    // The container sampler runs every 100 ms; wait until this process has been measured so
    // the container series are there, bounded in time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = d.metrics().await;
        if body.contains("container=\"golden-app\"") {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no container series for golden-app within 10 s:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    d.stop().await;
    let got = mask(&body);
    assert!(
        got.lines().filter(|l| l.starts_with("# TYPE ")).count() > 20,
        "suspiciously few families:\n{got}"
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &got).expect("write the golden file");
        eprintln!("rewrote {GOLDEN}");
        return;
    }
    let want = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| {
        panic!("{GOLDEN}: {e}; create it with UPDATE_GOLDEN=1 cargo test --test metrics_golden")
    });
    if got != want {
        let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        let missing: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).collect();
        let added: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).collect();
        panic!(
            "/metrics differs from tests/fixtures/metrics.golden (values masked).\n\
             in the golden file only:\n{missing:#?}\nin /metrics only:\n{added:#?}\n\
             If the change is intended: UPDATE_GOLDEN=1 cargo test --test metrics_golden"
        );
    }
}

#[test]
fn masking_keeps_names_labels_and_comments() {
    let text = "# HELP a_total Things.\n# TYPE a_total counter\n\
                a_total{x=\"1 }\",y=\"q\\\"z\"} 42\nb 3.5\n\n";
    assert_eq!(
        mask(text),
        "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1 }\",y=\"q\\\"z\"} <v>\nb <v>\n"
    );
}
