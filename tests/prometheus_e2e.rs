//! Proves the Prometheus rules and Grafana dashboards against a real Prometheus (Debian's
//! /usr/bin/prometheus) that scrapes a real loadspec run: loadspec puts a short stepped plan on
//! the demo target, measuring the demo target's process with the process source, and every
//! recording rule and every dashboard query (variables substituted with real label values)
//! must then return data whose values are all finite. A second test checks the dashboards'
//! structure without Prometheus: every panel has a datasource, a query, a unit and a title, and
//! queries only recording rules (or the model gauges, which need no rule).

mod observability;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observability::{
    dashboards, free_port, http_get, panels, recorded_names, repo, require, start_demo_target,
    start_prometheus, ChildGuard, Prom,
};
use serde_json::Value;

/// Raw (not recorded) series panels may query: the analysis results are plain gauges.
fn allowed_raw(name: &str) -> bool {
    name.starts_with("loadspec_model_") || name.starts_with("loadspec_recommended_")
}

/// Queries that may legitimately have no data at the end of the run, and why. Keep empty
/// unless a reason is real; everything else must return finite data.
const EXCLUDED: &[(&str, &str)] = &[];

fn rules_files() -> Vec<std::path::PathBuf> {
    let dir = repo().join("prometheus/rules");
    let mut v: Vec<_> = fs::read_dir(&dir)
        .expect("prometheus/rules")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_panel_has_datasource_query_unit_and_title_and_queries_recording_rules() {
    let files = rules_files();
    let recorded = recorded_names(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    let ident = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    let mut problems = Vec::new();
    let mut count = 0;
    for (file, d) in dashboards() {
        for p in panels(&d) {
            count += 1;
            let title = p["title"].as_str().unwrap_or("");
            let at = format!("{file}: panel {} {title:?}", p["id"]);
            if title.trim().is_empty() {
                problems.push(format!("{at}: no title"));
            }
            if p["datasource"]["uid"].as_str().unwrap_or("").is_empty() {
                problems.push(format!("{at}: no datasource"));
            }
            if p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or("")
                .is_empty()
            {
                problems.push(format!("{at}: no unit"));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: no query"));
            }
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or("");
                if expr.trim().is_empty() {
                    problems.push(format!("{at}: target {} has no expr", t["refId"]));
                }
                if t["datasource"]["uid"].as_str().unwrap_or("").is_empty() {
                    problems.push(format!("{at}: target {} has no datasource", t["refId"]));
                }
                for m in ident.find_iter(expr) {
                    let name = m.as_str();
                    let is_series = name.contains("loadspec") && !name.starts_with('$');
                    if is_series && !recorded.iter().any(|r| r == name) && !allowed_raw(name) {
                        problems.push(format!("{at}: queries {name}, not a recording rule"));
                    }
                }
            }
        }
    }
    assert!(
        count >= 20,
        "expected the two dashboards' panels, found {count}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A query to prove, where it comes from, and its last outcome.
struct Check {
    origin: String,
    expr: String,
    last: String,
    ok: bool,
}

/// `label_values(SELECTOR, LABEL)` of a Grafana query variable.
fn label_values_def(var: &Value) -> Option<(String, String)> {
    let def = var["definition"].as_str()?;
    let inner = def.strip_prefix("label_values(")?.strip_suffix(')')?;
    let (sel, label) = inner.rsplit_once(',')?;
    Some((sel.trim().to_string(), label.trim().to_string()))
}

fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = expr.to_string();
    for (k, v) in vars {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

/// Resolves every dashboard variable to one real value (regex-escaped, as Grafana does),
/// in dashboard order so `container` can depend on `group`. None while Prometheus has no
/// values for one of them yet.
fn resolve_variables(prom: &Prom) -> Option<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (_, d) in dashboards() {
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let Some((sel, label)) = label_values_def(v) else {
                continue;
            };
            let name = v["name"].as_str().expect("variable name").to_string();
            if vars.contains_key(&name) {
                continue;
            }
            let samples = prom.query(&substitute(&sel, &vars)).ok()?;
            let mut values: Vec<String> = samples
                .iter()
                .filter_map(|s| s.labels.get(&label)?.as_str().map(str::to_string))
                .collect();
            values.sort();
            vars.insert(name, regex::escape(values.first()?));
        }
    }
    Some(vars)
}

fn prometheus_config(loadspec_addr: &str) -> String {
    let text = fs::read_to_string(repo().join("prometheus/prometheus.yml")).expect("read");
    let rules = repo().join("prometheus/rules/*.yml");
    let mut out = text.clone();
    for (from, to) in [
        ("\"loadspec:9464\"", format!("\"{loadspec_addr}\"")),
        ("scrape_interval: 5s", "scrape_interval: 1s".to_string()),
        (
            "evaluation_interval: 5s",
            "evaluation_interval: 1s".to_string(),
        ),
        ("- rules/*.yml", format!("- {}", rules.display())),
    ] {
        assert!(
            out.contains(from),
            "prometheus/prometheus.yml no longer contains {from:?}; update this test"
        );
        out = out.replace(from, &to);
    }
    out
}

fn loadspec_config(metrics_port: u16, target: &str, closed_port: u16, pid: u32) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{metrics_port}"

[target]
base_url = "http://{target}"
bearer_token = "e2e-secret-token"

[reports]
# Every repeated run would write a report into the checkout's reports/.
enabled = false

[lifecycle]
# Keep the load going while the test queries Prometheus; the 30 s rate windows need it.
on_finish = "repeat"

[sla]
latency_p95 = "2s"
# Both SLA shares (p95 and p99) must have data.
latency_p99 = "3s"
error_ratio = 0.01
cpu_utilization = 0.85

[prices]
vcpu_hour = 0.02
memory_gib_hour = 0.0054
currency = "USD"

[containers]
source = "process"
pids = [{pid}]

[[scenarios]]
name = "e2e"
executor = "ramping-vus"
step = true
think_time = "20ms"
stages = [
  {{ duration = "4s", target = 1, name = "T1" }},
  {{ duration = "4s", target = 2, name = "T2" }},
  {{ duration = "4s", target = 5, name = "T3" }},
]

# Answered, expected: TPS, latency, the status-code mix.
[[scenarios.requests]]
name = "prompt"
method = "POST"
path = "/api/v1/ai-images/prompt"
expect = [200]
timeout = "10s"
body = {{ type = "json", json = {{ prompt = "a cat" }} }}

# Answered, unexpected: a 503 fails its check (error ratio, status codes).
[[scenarios.requests]]
name = "unavailable"
method = "GET"
path = "/api/v1/status/503"
expect = [200]
timeout = "10s"

# Not answered: a loopback port nobody listens on (failures by reason).
[[scenarios.requests]]
name = "closed-port"
method = "GET"
url = "http://127.0.0.1:{closed_port}/"
expect = [200]
timeout = "2s"
"#
    )
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn every_recording_rule_and_dashboard_query_has_finite_data_from_a_real_run() {
    let prometheus_bin = Path::new("/usr/bin/prometheus");
    if !require(prometheus_bin.exists(), "/usr/bin/prometheus") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");

    // The stack under test, and a port that refuses connections.
    // One CPU-burning thread at 20 ms a request caps the AI endpoint near 50 requests/s (a
    // little above: demo-target touches each request's memory on its async worker and takes
    // that time off the burn), and T3's 5 VUs ask for about 90, so the plan saturates it and
    // the analysis finds a knee (the knee gauge needs one).
    let (_demo, demo_addr) = start_demo_target(&["--cpu-ms", "20", "--blocking-threads", "1"]);
    let closed_port = free_port();

    let metrics_port = free_port();
    let loadspec_addr = format!("127.0.0.1:{metrics_port}");
    let config = tmp.path().join("loadspec.toml");
    fs::write(
        &config,
        loadspec_config(
            metrics_port,
            &demo_addr.to_string(),
            closed_port,
            _demo.0.id(),
        ),
    )
    .expect("write config");
    let loadspec_log = tmp.path().join("loadspec.log");
    let mut loadspec = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_loadspec"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::from(fs::File::create(&loadspec_log).unwrap()))
            .stderr(Stdio::from(
                fs::File::options()
                    .append(true)
                    .open(&loadspec_log)
                    .unwrap(),
            ))
            .spawn()
            .expect("spawn loadspec run"),
    );

    let (_prometheus, prom) = start_prometheus(&prometheus_config(&loadspec_addr), tmp.path());
    let prom_log = tmp.path().join("prometheus.log");

    // Every rules file loaded (a broken file would make Prometheus refuse to start at all).
    let groups = prom.get_data("/api/v1/rules").expect("/api/v1/rules");
    let loaded = groups["groups"].as_array().map_or(0, |g| g.len());
    assert!(
        loaded >= 6,
        "only {loaded} rule groups loaded:\n{}",
        tail(&prom_log)
    );

    let files = rules_files();
    let mut checks: Vec<Check> =
        recorded_names(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>())
            .into_iter()
            .map(|n| Check {
                origin: format!("recording rule {n}"),
                expr: n,
                last: "never queried".into(),
                ok: false,
            })
            .collect();

    let deadline = Instant::now() + Duration::from_secs(150);
    let mut vars = None;
    loop {
        if let Ok(Some(status)) = loadspec.0.try_wait() {
            panic!("loadspec exited early ({status}):\n{}", tail(&loadspec_log));
        }
        if vars.is_none() {
            vars = resolve_variables(&prom);
            if let Some(vars) = &vars {
                for (file, d) in dashboards() {
                    for p in panels(&d) {
                        for t in p["targets"].as_array().into_iter().flatten() {
                            checks.push(Check {
                                origin: format!("{file} panel {:?} {}", p["title"], t["refId"]),
                                expr: substitute(t["expr"].as_str().unwrap_or(""), vars),
                                last: "never queried".into(),
                                ok: false,
                            });
                        }
                    }
                    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
                        if let Some(expr) = a["expr"].as_str() {
                            checks.push(Check {
                                origin: format!("{file} annotation {:?}", a["name"]),
                                expr: substitute(expr, vars),
                                last: "never queried".into(),
                                ok: false,
                            });
                        }
                    }
                }
            }
        }
        for c in checks.iter_mut().filter(|c| !c.ok) {
            assert!(
                !c.expr.contains('$'),
                "{}: unsubstituted variable in {}",
                c.origin,
                c.expr
            );
            match prom.query(&c.expr) {
                Err(e) => c.last = format!("error: {e}"),
                Ok(s) if s.is_empty() => c.last = "no data".into(),
                Ok(s) => match s.iter().find(|s| !s.value.is_finite()) {
                    Some(bad) => c.last = format!("non-finite {} for {:?}", bad.value, bad.labels),
                    None => c.ok = true,
                },
            }
        }
        let pending: Vec<&Check> = checks
            .iter()
            .filter(|c| !c.ok && !EXCLUDED.iter().any(|(e, _)| *e == c.expr))
            .collect();
        if vars.is_some() && pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let list: Vec<String> = pending
                .iter()
                .map(|c| format!("  {}: {}\n    {}", c.origin, c.last, c.expr))
                .collect();
            panic!(
                "after 150 s, variables {vars:?}; {} of {} queries still without finite data:\n{}\n--- loadspec log:\n{}",
                pending.len(),
                checks.len(),
                list.join("\n"),
                tail(&loadspec_log)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // 38 rules, the two dashboards' panel targets and their annotations when this was written
    // (79); a parsing slip would shrink this silently.
    assert!(
        checks.len() >= 79,
        "only {} queries were checked",
        checks.len()
    );
}

/// The `loadspec_stage_info` samples of a `/metrics` body at 1, as `(scenario, stage)`.
fn active_stages(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("loadspec_stage_info{") && l.ends_with(" 1"))
        .map(str::to_string)
        .collect()
}

/// A sweep runs one plan per VU count. The dashboards annotate `loadspec_stage_info == 1`, so
/// at any scrape at most one stage of the scenario may be 1, and none once the sweep is over
/// (before, every earlier sweep stage stayed at 1 and the annotations piled up).
#[test]
fn stage_info_marks_only_the_current_sweep_stage() {
    let (_demo, demo_addr) = start_demo_target(&[]);
    let port = free_port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("sweep.toml");
    fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
[target]
base_url = "http://{demo_addr}"
[lifecycle]
on_finish = "idle"
[reports]
enabled = false
[containers]
source = "none"
[analysis]
settle = "0s"
[experiment]
mode = "sweep"
[experiment.sweep]
vus = [1, 2, 3]
stage_duration = "2s"
stop_on_break = false
[[scenarios]]
name = "sw"
executor = "constant-vus"
vus = 1
duration = "2s"
think_time = "50ms"
[[scenarios.requests]]
name = "health"
path = "/healthz"
"#
        ),
    )
    .expect("write config");
    let mut loadspec = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_loadspec"))
            .args(["run", "--config"])
            .arg(&config)
            .current_dir(tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn loadspec run"),
    );
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::BTreeSet::new();
    let mut finished = false;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = loadspec.0.try_wait() {
            panic!("loadspec exited ({status})");
        }
        let Ok((200, body)) = http_get(&addr, "/metrics") else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let active = active_stages(&body);
        assert!(active.len() <= 1, "more than one active stage: {active:?}");
        seen.extend(active.iter().cloned());
        // The sweep is over when the report knows three stages; give the observer a moment.
        if let Ok((200, report)) = http_get(&addr, "/report.json") {
            let stages = serde_json::from_str::<Value>(&report)
                .ok()
                .and_then(|r| r["stages"].as_array().map(|a| a.len()));
            if stages == Some(3) && body.contains("loadspec_vus{scenario=\"sw\"} 0") {
                let (_, after) = http_get(&addr, "/metrics").expect("/metrics");
                assert_eq!(
                    active_stages(&after),
                    Vec::<String>::new(),
                    "after the sweep"
                );
                finished = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        finished,
        "the sweep did not finish within 60 s; stages seen: {seen:?}"
    );
    assert!(
        seen.len() >= 2,
        "saw too few stages to prove anything: {seen:?}"
    );
}
