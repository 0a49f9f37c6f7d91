//! `loadspec analyze --prometheus URL`: one capacity analysis of a run from the data every
//! shard left in Prometheus. It finds the run's time range (`--run-id`, through
//! `loadspec_run_info`, or `--from/--to`), splits it into stage windows from
//! `loadspec_stage_index`, rebuilds each stage's summary with the shards' counters and
//! histogram buckets summed and the containers' CPU and memory from loadspec's container
//! series or cAdvisor's, then runs the same fits, knee, recommendation and cost as an
//! in-process run and writes the same Markdown/JSON/HTML report.

pub mod prom;
pub mod stages;
pub mod windows;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prom::{PromError, Prometheus};
use stages::{ContainerSeries, Reader};

use crate::analysis::{analyze, StageSummary};
use crate::config::start::{check_run_id, StartAt};
use crate::report::RunInfo;

/// The most points one range query asks for (Prometheus refuses more than 11,000).
const MAX_POINTS: f64 = 10_000.0;

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Prometheus' base URL, e.g. http://127.0.0.1:9090.
    #[arg(long, value_name = "URL")]
    pub prometheus: String,
    /// The run to analyse, as in loadspec_run_info{run_id}: only its shards' series count.
    #[arg(long, value_name = "ID", conflicts_with_all = ["from", "to"])]
    pub run_id: Option<String>,
    /// Start of the range to analyse (unix seconds or RFC 3339), with --to.
    #[arg(long, value_name = "TIME", requires = "to")]
    pub from: Option<String>,
    /// End of the range to analyse, with --from.
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<String>,
    /// How far back --run-id looks for the run.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub lookback: Duration,
    /// The run's config: its SLA, prices, [analysis] settings and reports.dir (defaults
    /// otherwise).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Query resolution: at most the scrape interval, so every stage boundary is seen.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// Where the containers' CPU and memory come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub containers: ContainerSeries,
    /// Reports directory; default: the config's reports.dir.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Prometheus(#[from] PromError),
    #[error("{0}")]
    NoData(String),
    #[error("cannot write the reports: {0}")]
    Write(#[from] std::io::Error),
}

pub fn main(a: AnalyzeArgs) -> ExitCode {
    crate::logging::init(crate::logging::LogFormat::Text);
    crate::runtime::run_command(async move {
        match run(a).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ AnalyzeError::Input(_)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn time_arg(flag: &str, raw: &str) -> Result<f64, AnalyzeError> {
    match StartAt::parse(raw) {
        Ok(Some(t)) => Ok(unix(t.0)),
        Ok(None) => Err(AnalyzeError::Input(format!(
            "--{flag}: give a time, not {raw:?}"
        ))),
        Err(e) => Err(AnalyzeError::Input(format!("--{flag}: {e}"))),
    }
}

fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The run's first and last scrape of `loadspec_run_info`.
async fn run_range(
    prom: &Prometheus,
    id: &str,
    lookback: Duration,
) -> Result<(f64, f64), AnalyzeError> {
    let end = unix(SystemTime::now());
    let start = end - lookback.as_secs_f64();
    let step = (lookback.as_secs_f64() / MAX_POINTS).ceil().max(1.0);
    let q = format!("max(loadspec_run_info{{run_id={}}})", quote(id));
    let series = prom.range(&q, start, end, step).await?;
    let pts: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    match (pts.iter().copied().reduce(f64::min), pts.iter().copied().reduce(f64::max)) {
        (Some(a), Some(b)) => Ok((a - step, b + step)),
        _ => Err(AnalyzeError::NoData(format!(
            "no loadspec_run_info{{run_id={}}} in the last {} of {q:?}: is the run id right, and did Prometheus scrape the generators?",
            quote(id),
            humantime::format_duration(lookback)
        ))),
    }
}

async fn run(a: AnalyzeArgs) -> Result<(), AnalyzeError> {
    let settings = match &a.config {
        Some(p) => Some(crate::config::load(p).map_err(|e| AnalyzeError::Input(e.to_string()))?),
        None => None,
    };
    let raw = settings.as_ref().map(|s| s.raw.clone()).unwrap_or_default();
    if let Some(id) = &a.run_id {
        check_run_id(id).map_err(|e| AnalyzeError::Input(format!("--run-id: {e}")))?;
    }
    if a.step.is_zero() || a.step > Duration::from_secs(60) {
        return Err(AnalyzeError::Input(
            "--step: must be between 1ms and 60s".into(),
        ));
    }
    let prom = Prometheus::new(&a.prometheus).map_err(|e| AnalyzeError::Input(e.to_string()))?;
    let (from, to) = match (&a.run_id, &a.from, &a.to) {
        (Some(id), _, _) => run_range(&prom, id, a.lookback).await?,
        (None, Some(f), Some(t)) => (time_arg("from", f)?, time_arg("to", t)?),
        _ => {
            return Err(AnalyzeError::Input(
                "give --run-id ID, or --from T --to T".into(),
            ))
        }
    };
    if to <= from {
        return Err(AnalyzeError::Input("--to must be after --from".into()));
    }
    let step = a.step.as_secs_f64().max(((to - from) / MAX_POINTS).ceil());
    let run_filter = a
        .run_id
        .as_ref()
        .map(|id| format!("loadspec_run_info{{run_id={}}}", quote(id)));
    let reader = Reader {
        prom: &prom,
        run_filter: run_filter.clone(),
        containers: a.containers,
    };
    // Every shard of the run reports its stage; a sample counts only where all of them are
    // present and agree, so a window never mixes two stages' load (shards are scraped at
    // different moments of an interval) or misses a shard that had not started or had ended.
    let expected_shards = match &run_filter {
        Some(f) => prom
            .instant(
                &format!(
                    "max(max_over_time({f}[{}s])) by (shards)",
                    (to - from).ceil() as u64
                ),
                to,
            )
            .await?
            .iter()
            .filter_map(|s| s.labels.get("shards")?.parse::<u64>().ok())
            .max()
            .unwrap_or(1),
        None => 1,
    };
    let x = match &run_filter {
        Some(f) => format!("(loadspec_stage_index and on(instance, job) {f})"),
        None => "loadspec_stage_index".to_string(),
    };
    let idx = format!(
        "min by (scenario) ({x}) and on(scenario) (max by (scenario) ({x}) == min by (scenario) ({x})) and on(scenario) (count by (scenario) ({x}) >= {expected_shards})"
    );
    let settle = raw.analysis.settle.as_secs_f64();
    let mut stages: Vec<StageSummary> = Vec::new();
    let mut shards = std::collections::BTreeSet::new();
    for s in prom.range(&idx, from, to, step).await? {
        let scenario = s.labels.get("scenario").cloned().unwrap_or_default();
        for w in windows::split(&scenario, &s.points, step) {
            let (m0, m1) = w.measured(settle);
            if m1 - m0 < 1.0 {
                tracing::warn!(scenario = %scenario, stage = w.index, "stage window under 1 s at this step; skipped");
                continue;
            }
            let name_q = format!(
                "max by (stage) (loadspec_stage_info{{scenario={}}})",
                quote(&scenario)
            );
            let name = prom
                .instant(&name_q, (w.start + w.end) / 2.0)
                .await?
                .first()
                .and_then(|x| x.labels.get("stage").cloned())
                .unwrap_or_else(|| format!("stage-{}", w.index));
            eprintln!("  {scenario}/{name}: {:.0} s measured", m1 - m0);
            stages.push(reader.stage(&w, &name, m0, m1).await?);
        }
    }
    // Whole-run totals: every shard's counters at their last value (fresh processes start them
    // at 0), so nothing is extrapolated.
    let whole = format!("{}s", (to - from).ceil() as u64);
    let last = |m: &str| match &run_filter {
        Some(f) => format!(
            "sum(max_over_time({m}[{whole}]) and on(instance, job) max_over_time({f}[{whole}]))"
        ),
        None => format!("sum(max_over_time({m}[{whole}]))"),
    };
    let total = |v: Vec<prom::Sample>| v.first().map(|s| s.value).unwrap_or(0.0).round() as u64;
    let total_requests = total(prom.instant(&last("loadspec_checks_total"), to).await?);
    let total_failed = total(
        prom.instant(&last(r#"loadspec_checks_total{result="fail"}"#), to)
            .await?,
    );
    if let Some(f) = &run_filter {
        for x in prom
            .instant(&format!("max_over_time({f}[{whole}])"), to)
            .await?
        {
            shards.insert(x.labels.get("shard").cloned().unwrap_or_default());
        }
    }
    if stages.is_empty() {
        return Err(AnalyzeError::NoData(format!(
            "no stage of any scenario between {} and {} (loadspec_stage_index is empty there)",
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(from)),
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(to))
        )));
    }
    let analysis = analyze(&stages, &raw.sla, &raw.prices, &raw.analysis);
    let mut run = RunInfo::new(
        a.run_id
            .clone()
            .unwrap_or_else(|| format!("analyze-{}", from as u64)),
    );
    run.mode = Some("analyze".into());
    run.started = Some(UNIX_EPOCH + Duration::from_secs_f64(from));
    run.ended = Some(UNIX_EPOCH + Duration::from_secs_f64(to));
    if let Some(u) = &raw.target.base_url {
        run.set_target(u);
    }
    run.notes.push(format!(
        "rebuilt from Prometheus ({}) with {} shard(s) summed; latency quantiles interpolated in the histogram buckets ({}), so they are exact only to the bucket around them",
        crate::report::redact_url(&a.prometheus),
        shards.len().max(1),
        bucket_note(&raw.metrics.buckets)
    ));
    run.notes.push(format!(
        "{total_requests} requests in total over all shards, {total_failed} failed their checks"
    ));
    println!(
        "{}",
        crate::experiment::console::render_table(&crate::report::tables::stages(
            &stages, &analysis
        ))
    );
    println!(
        "  total requests: {total_requests} ({total_failed} failed checks), shards: {}",
        shards.len().max(1)
    );
    println!(
        "{}",
        crate::experiment::console::render_table(&crate::report::tables::models(&analysis))
    );
    let dir = a.out.clone().unwrap_or_else(|| raw.reports.dir.clone());
    let paths = tokio::task::spawn_blocking(move || {
        crate::report::write_reports(&dir, &run, &stages, &analysis)
    })
    .await
    .map_err(|e| AnalyzeError::Write(std::io::Error::other(e.to_string())))??;
    println!("  reports: {}", paths.dir.display());
    Ok(())
}

/// The bucket edges around the usual SLA range, for the report's resolution note.
fn bucket_note(buckets: &[f64]) -> String {
    let edges: Vec<String> = buckets
        .iter()
        .filter(|b| (0.05..=10.0).contains(*b))
        .map(|b| crate::units::trim_float(*b))
        .collect();
    format!("edges between 50 ms and 10 s: {} s", edges.join(", "))
}
