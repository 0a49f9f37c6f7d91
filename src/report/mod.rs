//! Reports of one experiment: report.md, report.json (schema in docs/report-schema.md) and a
//! self-contained report.html with SVG charts, written into `<dir>/<run_id>-<timestamp>/`.
//! [`render_markdown`] and [`render_html`] serve the daemon's `/report` from the same code.
//!
//! - [`tables`]: the tables as text, shared by Markdown and HTML.
//! - [`markdown`], [`html`]: the two renderers; [`svg`]: the charts.

pub mod format;
pub mod html;
pub mod markdown;
pub mod svg;
pub mod tables;

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use html::render_html;
pub use markdown::render_markdown;

use crate::analysis::{CapacityAnalysis, StageSummary};
use format::{format_bytes, trim_float};

/// Version of report.json's layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// A container's limits before a search changed them, as put back at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoredLimits {
    pub container: String,
    pub cpus: Option<f64>,
    #[serde(default, with = "crate::units::opt_bytes")]
    pub memory_bytes: Option<u64>,
}

/// The spec the experiment ran at (as configured, which may differ from what containers report).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestedLimits {
    pub cpus: Option<f64>,
    #[serde(default, with = "crate::units::opt_bytes")]
    pub memory_bytes: Option<u64>,
}

/// What the experiment was. Every field but the id is optional so the caller fills what it
/// knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    pub run_id: String,
    #[serde(with = "humantime_serde")]
    pub started: Option<SystemTime>,
    #[serde(with = "humantime_serde")]
    pub ended: Option<SystemTime>,
    /// `plan`, `sweep` or `search`.
    pub mode: Option<String>,
    /// Base URL of the target. Credentials, query and fragment are stripped when set through
    /// [`RunInfo::set_target`] and again when rendered, so a token never reaches a report.
    pub target: Option<String>,
    pub tested_spec: Option<TestedLimits>,
    /// Set when the experiment was aborted (the process exits non-zero): why.
    pub error: Option<String>,
    pub notes: Vec<String>,
    /// For search: the limits found before the experiment and restored after it.
    pub restored_limits: Vec<RestoredLimits>,
    /// `I/N` when this process ran one shard of N: its report sees that shard's load only
    /// (`loadspec analyze` gives the whole run). The report folder names the shard.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<String>,
}

/// Strip user info, query and fragment from a URL; an unparseable one becomes a placeholder
/// rather than being copied verbatim (it could hold a secret).
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(unparseable URL)".to_string(),
    }
}

impl RunInfo {
    pub fn new(run_id: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            ..Default::default()
        }
    }

    pub fn set_target(&mut self, url: &str) {
        self.target = Some(redact_url(url));
    }

    /// Label/value pairs for the report header.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let time = |t: &SystemTime| humantime::format_rfc3339_seconds(*t).to_string();
        if let Some(m) = &self.mode {
            out.push(("Mode", m.clone()));
        }
        if let Some(t) = &self.target {
            out.push(("Target", redact_url(t)));
        }
        if let Some(e) = &self.error {
            out.push(("Error", format!("experiment aborted: {e}")));
        }
        if let Some(t) = &self.started {
            out.push(("Started", time(t)));
        }
        if let Some(t) = &self.ended {
            out.push(("Ended", time(t)));
        }
        if let Some(s) = &self.tested_spec {
            let cpus = s.cpus.map(|c| format!("{} vCPU", trim_float(c)));
            let mem = s.memory_bytes.map(|m| format_bytes(m as f64));
            let parts: Vec<String> = [cpus, mem].into_iter().flatten().collect();
            out.push(("Tested spec", parts.join(" / ")));
        }
        for r in &self.restored_limits {
            let cpus = r
                .cpus
                .map_or("unlimited".into(), |c| format!("{} vCPU", trim_float(c)));
            let mem = r
                .memory_bytes
                .map_or("unlimited".into(), |m| format_bytes(m as f64));
            out.push((
                "Restored limits",
                format!("{}: {cpus} / {mem}", r.container),
            ));
        }
        for n in &self.notes {
            out.push(("Note", n.clone()));
        }
        out
    }
}

/// report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportDocument {
    pub schema_version: u32,
    /// `loadspec <version>`.
    pub generator: String,
    pub run: RunInfo,
    pub stages: Vec<StageSummary>,
    pub analysis: CapacityAnalysis,
}

impl ReportDocument {
    pub fn new(run: &RunInfo, stages: &[StageSummary], analysis: &CapacityAnalysis) -> Self {
        let mut run = run.clone();
        run.target = run.target.as_deref().map(redact_url);
        Self {
            schema_version: SCHEMA_VERSION,
            generator: format!("loadspec {}", env!("CARGO_PKG_VERSION")),
            run,
            stages: stages.to_vec(),
            analysis: analysis.clone(),
        }
    }
}

/// report.json as text.
pub fn render_json(run: &RunInfo, stages: &[StageSummary], analysis: &CapacityAnalysis) -> String {
    // Serializing these plain structs cannot fail: every map key is a string.
    serde_json::to_string_pretty(&ReportDocument::new(run, stages, analysis))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Where the files went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    pub dir: PathBuf,
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub html: PathBuf,
}

/// `<run_id>-<YYYYMMDDTHHMMSSZ>` with anything but `[A-Za-z0-9._-]` in the id replaced, so the
/// id cannot climb out of the reports directory.
pub fn report_dir_name(run: &RunInfo) -> String {
    let id: String = run
        .run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = id.trim_matches('.');
    let id = if id.is_empty() { "run" } else { id };
    let t = run.started.unwrap_or_else(SystemTime::now);
    let stamp: String = humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    // Shards of one run share the id and the start: the shard keeps their folders apart on a
    // shared volume.
    match run.shard.as_deref().and_then(|s| s.split_once('/')) {
        Some((i, n)) => format!("{id}-{stamp}-shard-{i}of{n}"),
        None => format!("{id}-{stamp}"),
    }
}

/// Write report.md, report.json and report.html into `dir/<run_id>-<timestamp>/`.
pub fn write_reports(
    dir: &Path,
    run: &RunInfo,
    stages: &[StageSummary],
    analysis: &CapacityAnalysis,
) -> io::Result<ReportPaths> {
    let out = dir.join(report_dir_name(run));
    std::fs::create_dir_all(&out)?;
    let paths = ReportPaths {
        markdown: out.join("report.md"),
        json: out.join("report.json"),
        html: out.join("report.html"),
        dir: out,
    };
    std::fs::write(&paths.markdown, render_markdown(run, stages, analysis))?;
    std::fs::write(&paths.json, render_json(run, stages, analysis))?;
    std::fs::write(&paths.html, render_html(run, stages, analysis))?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            redact_url("https://user:secret@api.example.com:8443/v1?token=abc#x"),
            "https://api.example.com:8443/v1"
        );
        assert_eq!(redact_url("not a url secret"), "(unparseable URL)");
    }

    #[test]
    fn dir_names_are_safe() {
        let mut r = RunInfo::new("../../etc/x y");
        r.started = Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86400));
        assert_eq!(report_dir_name(&r), "_.._etc_x_y-19700102T000000Z");
        assert!(report_dir_name(&RunInfo::new("")).starts_with("run-"));
    }

    #[test]
    fn shards_of_one_run_write_to_folders_that_name_the_shard() {
        let mut run = RunInfo::new("plan-1796083200");
        run.started = Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_083_200));
        assert_eq!(report_dir_name(&run), "plan-1796083200-20261201T000000Z");
        run.shard = Some("1/3".into());
        assert_eq!(
            report_dir_name(&run),
            "plan-1796083200-20261201T000000Z-shard-1of3"
        );
    }
}
