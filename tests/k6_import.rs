//! `loadspec import k6`: scripts of our own, one per feature, each imported by the real binary,
//! validated, and run for a few seconds against an in-process demo-target on 127.0.0.1:0. The
//! seed's upload script must reach demo-target exactly as examples/s3-image-upload.toml's
//! request does. Every run is bounded in iterations or duration.

mod support_core;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use loadspec::config::raw::{ExecutorKind, OnFinish, RawConfig};
use loadspec::demo_target::{DemoStats, DemoTargetConfig};
use loadspec::experiment::plan::ScenarioTotals;
use support_core::*;

const BIN: &str = env!("CARGO_BIN_EXE_loadspec");
const PROMPT: &str = "미니멀하고 화이톤의 셋업";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k6")
        .join(name)
}

/// A plan written by `loadspec import k6` into its own temp dir.
struct Plan {
    dir: tempfile::TempDir,
    path: PathBuf,
    text: String,
    stderr: String,
}

impl Plan {
    fn raw(&self) -> RawConfig {
        loadspec::config::parse_raw(&self.text, "imported plan").expect("the plan parses")
    }
}

fn loadspec(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run loadspec")
}

/// Import `name` and check that `loadspec validate` accepts the plan with `envs` set.
fn import(name: &str, envs: &[(&str, &str)]) -> Plan {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.toml");
    let script = fixture(name);
    let out = loadspec(
        &["import", "k6", script.to_str().unwrap(), "-o", path.to_str().unwrap()],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import {name} failed: {stderr}");
    let text = std::fs::read_to_string(&path).expect("the plan was written");
    let v = loadspec(&["validate", "--config", path.to_str().unwrap()], envs);
    assert!(
        v.status.success(),
        "validate rejected the plan of {name}: {}\n{text}",
        String::from_utf8_lossy(&v.stderr)
    );
    Plan {
        dir,
        path,
        text,
        stderr,
    }
}

/// Run the plan in-process against `target` (the plan's base URL is replaced, as
/// `LOADSPEC__TARGET__BASE_URL` would) and return its per-scenario totals.
async fn run(plan: Plan, target: SocketAddr, within: Duration) -> Vec<ScenarioTotals> {
    let raw = plan.raw();
    run_raw(raw, plan.dir, target, within).await
}

async fn run_raw(
    mut raw: RawConfig,
    dir: tempfile::TempDir,
    target: SocketAddr,
    within: Duration,
) -> Vec<ScenarioTotals> {
    raw.target.base_url = Some(format!("http://{target}"));
    raw.reports.enabled = false;
    raw.lifecycle.on_finish = OnFinish::Idle;
    raw.analysis.settle = Duration::from_millis(200);
    let text = toml::to_string(&raw).expect("serialize");
    let d = start_in(&text, dir, "0/1").await;
    d.wait_runs(1, within).await;
    let fin = d.stop().await;
    fin.last.expect("a run finished").0.totals
}

fn served(stats: &DemoStats, route: &str, code: u16) -> u64 {
    stats
        .requests
        .get(route)
        .and_then(|m| m.get(&code))
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_script_uploads_exactly_like_the_s3_example() {
    std::env::set_var("TOKEN", "tok-seed");
    let plan = import("seed_upload.js", &[("TOKEN", "tok-seed")]);
    let raw = plan.raw();
    let sc = &raw.scenarios[0];
    assert_eq!(sc.executor, ExecutorKind::ConstantVus);
    assert_eq!(sc.vus, Some(5));
    assert_eq!(sc.duration, Some(Duration::from_secs(1)));
    assert!(plan.text.contains("Nothing in the script was left out"), "{}", plan.text);

    let (addr, server) = target(DemoTargetConfig::free()).await;
    let totals = run(plan, addr, Duration::from_secs(30)).await;
    let imported = server.stats();
    let seen_imported = imported.last_multipart.clone().expect("a multipart body arrived");
    let ok = served(&imported, "POST /api/v1/ai-images", 200);
    assert!(ok > 0, "{:?}", imported.requests);
    assert_eq!(totals[0].requests, ok, "every upload was answered 200");
    assert_eq!(totals[0].failed_checks, 0);

    // The example, with its own request unchanged, run once against a fresh target.
    let mut example =
        loadspec::config::load_raw(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/s3-image-upload.toml")))
            .expect("the example parses");
    example.target.bearer_token = Some("tok-seed".into());
    example.target.base_url = Some("http://127.0.0.1:1".into());
    example.containers = Default::default();
    let s = &mut example.scenarios[0];
    s.executor = ExecutorKind::PerVuIterations;
    s.vus = Some(1);
    s.iterations = Some(2);
    s.stages.clear();
    s.step = false;
    let (addr2, server2) = target(DemoTargetConfig::free()).await;
    let (dir, _) = dir_with_png();
    run_raw(example, dir, addr2, Duration::from_secs(30)).await;
    let seen_example = server2.stats().last_multipart.expect("the example's body arrived");

    assert_eq!(seen_imported, seen_example, "same fields, bytes and header");
    assert_eq!(seen_imported.field_names, vec!["prompt", "beforeImagePath"]);
    assert_eq!(seen_imported.prompt.as_deref(), Some(PROMPT));
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/test.png")).unwrap();
    assert_eq!(seen_imported.file_bytes, png.len() as u64);
    assert_eq!(seen_imported.file_fnv64, fnv64(&png));
    assert!(seen_imported.bearer_present);
}
