//! The report files: written under `<dir>/<run_id>-<timestamp>/`, JSON parses back into the
//! documented schema, Markdown holds the tables, no secret leaks, and the HTML renders in real
//! headless chromium with its charts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use loadspec::analysis::synthetic::SyntheticService;
use loadspec::analysis::{analyze, AnalysisConfig, CapacityAnalysis, StageSummary};
use loadspec::config::{PricesConfig, SlaConfig};
use loadspec::report::{
    render_html, write_reports, ReportDocument, RestoredLimits, RunInfo, TestedLimits,
    SCHEMA_VERSION,
};

const SECRET: &str = "s3cr3t-token";

fn fixture() -> (RunInfo, Vec<StageSummary>, CapacityAnalysis) {
    let svc = SyntheticService::default();
    let vus: Vec<f64> = (1..=8).map(f64::from).collect();
    let stages = svc.stages(&vus, 42);
    let a = analyze(
        &stages,
        &SlaConfig::default(),
        &PricesConfig::default(),
        &AnalysisConfig::default(),
    );
    let mut run = RunInfo::new("sweep-1");
    run.started = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    run.ended = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_300));
    run.mode = Some("sweep".into());
    run.set_target(&format!(
        "http://user:{SECRET}@127.0.0.1:8080/api?token={SECRET}"
    ));
    run.tested_spec = Some(TestedLimits {
        cpus: Some(1.0),
        memory_bytes: Some(4_000_000_000),
    });
    run.notes.push("synthetic <b>fixture</b> & co".into());
    run.restored_limits.push(RestoredLimits {
        container: "app-0".into(),
        cpus: Some(2.0),
        memory_bytes: None,
    });
    (run, stages, a)
}

#[test]
fn files_parse_and_hold_the_tables() {
    let (run, stages, a) = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let paths = write_reports(tmp.path(), &run, &stages, &a).unwrap();
    assert_eq!(paths.dir, tmp.path().join("sweep-1-20231114T221320Z"));

    let json = std::fs::read_to_string(&paths.json).unwrap();
    let doc: ReportDocument = serde_json::from_str(&json).unwrap();
    assert_eq!(doc.schema_version, SCHEMA_VERSION);
    assert_eq!(doc.stages.len(), 8);
    assert_eq!(doc.analysis.knee.vus, Some(4.0));
    assert_eq!(doc.run.mode.as_deref(), Some("sweep"));
    assert_eq!(doc.run.target.as_deref(), Some("http://127.0.0.1:8080/api"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["schema_version", "generator", "run", "stages", "analysis"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert!(v["analysis"]["models"]["cpu"]["slope"].is_f64());
    assert!(v["analysis"]["recommendations"][0]["spec"]["cpus"].is_f64());

    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    for heading in [
        "## Findings",
        "## Stages",
        "## Models",
        "## Recommendation",
        "## Cost",
        "## Situations",
    ] {
        assert!(md.contains(heading), "missing {heading}\n{md}");
    }
    assert!(md.contains("| Test | VUs | Duration | Avg | p95 | Max | CPU | Memory | TPS |"));
    assert!(md.contains("knee (TPS plateau"), "{md}");
    assert!(md.contains("Knee at 4 VUs"), "{md}");
    assert!(md.contains("★ lowest cost per TPS"));
    // One recommendation row per configured VU count.
    let rec = md.split("## Recommendation").nth(1).unwrap();
    let rec = rec.split("## Cost").next().unwrap();
    assert_eq!(rec.lines().filter(|l| l.starts_with("| ")).count(), 1 + 10);

    for p in [&paths.markdown, &paths.json, &paths.html] {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(!text.contains(SECRET), "{} leaks the token", p.display());
    }
    let html = std::fs::read_to_string(&paths.html).unwrap();
    assert!(html.contains("synthetic &lt;b&gt;fixture&lt;/b&gt; &amp; co"));
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(!html.contains("<script"), "self-contained: no scripts");
    assert!(!html.contains("http://") || !html.contains("src=\"http"));
}

#[test]
fn degenerate_analysis_still_renders() {
    let a = analyze(
        &[],
        &SlaConfig::default(),
        &PricesConfig::default(),
        &AnalysisConfig::default(),
    );
    let html = render_html(&RunInfo::new("empty"), &[], &a);
    assert!(html.contains("No data."));
    assert!(html.contains("no usable stage"));
    let md = loadspec::report::render_markdown(&RunInfo::new("empty"), &[], &a);
    assert!(md.contains("_No data._"));
}

/// Run chromium with a deadline; `None` when it is not installed.
fn screenshot(html: &Path, png: &Path) -> Option<std::process::ExitStatus> {
    let mut child = match Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,2400",
            &format!("file://{}", html.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot start chromium: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn html_renders_in_headless_chromium() {
    let (run, stages, a) = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let paths = write_reports(tmp.path(), &run, &stages, &a).unwrap();
    let png = tmp.path().join("report.png");
    let Some(status) = screenshot(&paths.html, &png) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("chromium is not installed and CI=true");
        }
        eprintln!("skipping: chromium not installed");
        return;
    };
    assert!(status.success(), "chromium exited with {status}");
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 2400));
    // A blank page compresses to a few KB; charts and tables do not.
    assert!(
        bytes.len() > 60_000,
        "screenshot only {} bytes",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("LOADSPEC_KEEP_SCREENSHOT") {
        std::fs::copy(&png, &keep).unwrap();
        std::fs::copy(&paths.html, format!("{keep}.html")).unwrap();
        std::fs::copy(&paths.json, format!("{keep}.json")).unwrap();
    }
}
