//! The command line: `run`, `validate`, `demo`, `demo-target`, `import`. Invalid config (or a
//! bad option) exits with code 2 before anything starts; other failures exit 1; a `run` whose
//! SLA broke exits 99 (see [`crate::ci`]).

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

use crate::experiment::progress::Display;
use crate::load::plan::Shard;
use crate::logging::{LogFormat, LogOptions};

#[derive(Debug, Parser)]
#[command(
    name = "loadspec",
    version,
    about = "Load an HTTP API, measure the containers behind it, and recommend the container spec that meets a latency SLA."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the configured plan, sweep or search, serving /metrics and /report.
    Run(RunArgs),
    /// Check a config file and print it with secrets redacted; exit 2 if it is invalid.
    Validate(ValidateArgs),
    /// One capacity analysis of a (sharded) run from Prometheus: the same report as `run`.
    Analyze(crate::analyze::AnalyzeArgs),
    /// The embedded default: sweep a demo-target child process and print a recommendation.
    Demo(crate::demo::DemoArgs),
    /// Run the emulated AI image API with known per-request costs.
    DemoTarget(crate::demo_target::DemoTargetArgs),
    /// Convert another tool's load test (a k6 script) into a loadspec plan.
    Import(crate::import::ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The TOML config file (LOADSPEC__SECTION__KEY environment variables override it).
    #[arg(long, short, env = "LOADSPEC_CONFIG")]
    pub config: PathBuf,
    /// Run this replica's share of every stage: I/N with 0 <= I < N. Also from
    /// LOADSPEC_SHARD, or from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs) with
    /// LOADSPEC_SHARDS=N.
    #[arg(long, value_name = "I/N", env = "LOADSPEC_SHARD")]
    pub shard: Option<Shard>,
    /// The common wall-clock start of every shard: unix seconds or RFC 3339 (0: none).
    /// Overrides experiment.start_at.
    #[arg(long, value_name = "TIME", env = "LOADSPEC_START_AT")]
    pub start_at: Option<String>,
    /// The run's id in loadspec_run_info and the report folder; overrides experiment.run_id.
    #[arg(long, value_name = "ID", env = "LOADSPEC_RUN_ID")]
    pub run_id: Option<String>,
    /// Log format; overrides log.format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Write the end-of-run summary as JSON (schema in docs/ci.md), after every run.
    #[arg(long, value_name = "FILE.json")]
    pub summary_export: Option<PathBuf>,
    /// Write a JUnit XML report: one testcase per SLA criterion and per check.
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
    /// Print nothing but errors and the verdict line (no summary, no progress, no info log).
    #[arg(long, short)]
    pub quiet: bool,
    /// No colour in the output (the NO_COLOR environment variable does the same).
    #[arg(long)]
    pub no_color: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[arg(long, short, env = "LOADSPEC_CONFIG")]
    pub config: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => run(a),
        Command::Validate(a) => validate(a),
        Command::Analyze(a) => crate::analyze::main(a),
        Command::Demo(a) => crate::demo::main(a),
        Command::DemoTarget(a) => crate::demo_target::main(a),
        Command::Import(a) => crate::import::main(a),
    }
}

fn validate(a: ValidateArgs) -> ExitCode {
    match crate::config::load(&a.config) {
        Ok(s) => {
            match toml::to_string_pretty(&crate::config::redacted(&s.raw)) {
                Ok(t) => print!("{t}"),
                Err(e) => eprintln!("(cannot print the effective config: {e})"),
            }
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!(
                "{}: valid ({} scenario(s))",
                a.config.display(),
                s.scenarios.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// A panic anywhere (a VU task, the observer, the server thread) is a bug: log it and exit
/// with status 70 instead of letting the task die silently and the daemon report a plan that
/// did not run (issue: an overflow panic in the executor ended in exit 0). Container limits a
/// sweep or search changed are put back first.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "internal error: a task panicked; exiting with status 70");
        default(info);
        let _ = std::thread::spawn(restore_limits).join();
        std::process::exit(70);
    }));
}

/// Put back, within 5 s, container limits a sweep or search changed and has not restored.
fn restore_limits() {
    crate::containers::limits::restore_pending_blocking(std::time::Duration::from_secs(5))
}

/// Descriptors the server, the log, the container source and config reloads may hold besides
/// the VUs' sockets.
const FD_RESERVE: u64 = 64;

/// Raise the soft file-descriptor limit to the hard one, and warn when the plan's VUs (one
/// socket each) plus the server's connection cap and a reserve exceed it: those VUs would fail
/// with reason `fd_limit` instead of loading the target.
fn check_fd_budget(settings: &crate::config::Settings) {
    let soft = match crate::load::sys::raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the file-descriptor limit");
            return;
        }
    };
    let exp = &settings.raw.experiment;
    let vus: u64 = settings
        .scenarios
        .iter()
        .map(|s| s.schedule.max_vus())
        .sum::<u64>()
        .max(exp.sweep.vus.iter().copied().max().unwrap_or(0))
        .max(exp.search.vus);
    let others = settings.raw.server.max_connections as u64 + FD_RESERVE;
    // The server's descriptors are kept apart: the VUs together never hold more than the rest
    // (at least half of a very low limit, so a few VUs still run).
    crate::load::http1::set_socket_budget(soft - others.min(soft / 2));
    let need = vus + others;
    if need > soft {
        tracing::warn!(
            fd_limit = soft,
            needed = need,
            max_vus = vus,
            "the file-descriptor limit is lower than the plan needs (one per VU, plus the server's \
             max_connections and a reserve); requests beyond it fail with reason fd_limit: raise \
             `ulimit -n` (hard limit) or lower the VUs"
        );
    } else {
        tracing::debug!(fd_limit = soft, needed = need, "file-descriptor limit");
    }
}

/// Shard, common start and run id, from the flags or the environment.
#[derive(Debug, PartialEq)]
struct ScaleOut {
    shard: Shard,
    start_at: Option<crate::config::start::StartAt>,
    run_id: Option<String>,
}

/// Why the scale-out flags or variables are unusable; each names its flag or variable.
#[derive(Debug, thiserror::Error)]
enum ScaleOutError {
    #[error("JOB_COMPLETION_INDEX={index:?} with LOADSPEC_SHARDS={count:?}: {source}")]
    IndexedJob {
        index: String,
        count: String,
        source: crate::load::plan::ShardError,
    },
    #[error("LOADSPEC_SHARDS={0:?} is set but JOB_COMPLETION_INDEX is not (run as a Kubernetes Indexed Job, or pass --shard I/N)")]
    NoJobIndex(String),
    #[error("--start-at (LOADSPEC_START_AT): {0}")]
    StartAt(#[source] crate::config::start::StartAtError),
    #[error("--run-id (LOADSPEC_RUN_ID): {0}")]
    RunId(#[source] crate::config::start::RunIdError),
}

impl ScaleOut {
    /// `--shard`/LOADSPEC_SHARD first; else JOB_COMPLETION_INDEX with LOADSPEC_SHARDS. Errors
    /// name the flag or variable.
    fn resolve(a: &RunArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ScaleOutError> {
        let shard = match (a.shard, env("JOB_COMPLETION_INDEX"), env("LOADSPEC_SHARDS")) {
            (Some(s), _, _) => s,
            (None, Some(i), Some(n)) => format!("{}/{}", i.trim(), n.trim())
                .parse::<Shard>()
                .map_err(|source| ScaleOutError::IndexedJob {
                    index: i,
                    count: n,
                    source,
                })?,
            (None, None, Some(n)) => return Err(ScaleOutError::NoJobIndex(n)),
            (None, _, None) => Shard::default(),
        };
        let start_at = match a.start_at.as_deref() {
            Some(raw) => {
                crate::config::start::StartAt::parse(raw).map_err(ScaleOutError::StartAt)?
            }
            None => None,
        };
        if let Some(id) = &a.run_id {
            crate::config::start::check_run_id(id).map_err(ScaleOutError::RunId)?;
        }
        Ok(Self {
            shard,
            start_at,
            run_id: a.run_id.clone(),
        })
    }
}

fn run(a: RunArgs) -> ExitCode {
    let settings = match crate::config::load(&a.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let scale = match ScaleOut::resolve(&a, &|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = settings.raw.experiment.mode.check_shard(scale.shard) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let format = match a.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => settings.raw.log.format,
    };
    let ci = crate::ci::Outputs {
        summary_export: a.summary_export.clone(),
        junit: a.junit.clone(),
        print_verdict: true,
        color: crate::logging::use_color(a.no_color, std::io::stdout().is_terminal()),
    };
    if let Err(e) = ci.check() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let progress = if a.quiet {
        Display::Off
    } else if std::io::stderr().is_terminal() {
        Display::Bars {
            color: crate::logging::use_color(a.no_color, true),
        }
    } else {
        Display::Lines
    };
    crate::logging::init_with(
        format,
        LogOptions {
            quiet: a.quiet,
            no_color: a.no_color,
            bars: matches!(progress, Display::Bars { .. }),
        },
    );
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    exit_on_panic();
    crate::shutdown::before_exit(restore_limits);
    check_fd_budget(&settings);
    let effective = toml::to_string(&crate::config::redacted(&settings.raw)).unwrap_or_default();
    tracing::info!(config = %a.config.display(), shard = ?scale.shard, "starting loadspec {}", env!("CARGO_PKG_VERSION"));
    tracing::debug!(effective = %effective, "effective config (secrets redacted)");
    let rt = match crate::runtime::build(None, None) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let signals = crate::shutdown::listen(Some(
            settings.raw.lifecycle.drain_timeout + std::time::Duration::from_secs(1),
        ))?;
        crate::daemon::run(
            settings,
            crate::daemon::DaemonOptions {
                shard: scale.shard,
                start_at: scale.start_at,
                run_id: scale.run_id,
                config_path: Some(a.config.clone()),
                print_summary: !a.quiet,
                ci,
                progress,
                ..Default::default()
            },
            signals,
        )
        .await
    });
    match result {
        Ok(f) if !f.output_errors.is_empty() => {
            for e in &f.output_errors {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
        Ok(f) => match f.aborted() {
            // An aborted experiment judged nothing: a runtime failure, whatever the verdict.
            Some(why) => {
                eprintln!("error: experiment aborted: {why}");
                ExitCode::FAILURE
            }
            None => ExitCode::from(f.verdict.map_or(0, |v| v.exit_code())),
        },
        Err(e) => {
            tracing::error!(error = %e, "loadspec stopped with an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(shard: Option<&str>, start_at: Option<&str>) -> RunArgs {
        RunArgs {
            config: "x.toml".into(),
            shard: shard.map(|s| s.parse().unwrap()),
            start_at: start_at.map(str::to_string),
            run_id: None,
            log_format: None,
            summary_export: None,
            junit: None,
            quiet: false,
            no_color: false,
        }
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shard_comes_from_the_flag_then_the_indexed_job() {
        let e = env(&[("JOB_COMPLETION_INDEX", "2"), ("LOADSPEC_SHARDS", "3\n")]);
        let from_job = ScaleOut::resolve(&args(None, None), &e).unwrap();
        assert_eq!(from_job.shard, Shard { index: 2, count: 3 });
        let flag = ScaleOut::resolve(&args(Some("0/2"), None), &e).unwrap();
        assert_eq!(flag.shard, Shard { index: 0, count: 2 });
        let none = ScaleOut::resolve(&args(None, None), &env(&[])).unwrap();
        assert_eq!(none.shard, Shard::default());
    }

    #[test]
    fn bad_scale_out_input_names_its_source() {
        let e = env(&[("JOB_COMPLETION_INDEX", "3"), ("LOADSPEC_SHARDS", "3")]);
        let err = ScaleOut::resolve(&args(None, None), &e)
            .unwrap_err()
            .to_string();
        assert!(err.contains("JOB_COMPLETION_INDEX"), "{err}");
        let e = env(&[("LOADSPEC_SHARDS", "3")]);
        let err = ScaleOut::resolve(&args(None, None), &e)
            .unwrap_err()
            .to_string();
        assert!(err.contains("JOB_COMPLETION_INDEX is not"), "{err}");
        let err = ScaleOut::resolve(&args(None, Some("soon")), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--start-at"), "{err}");
        // The manifests' placeholder means "no common start".
        let ok = ScaleOut::resolve(&args(None, Some("0\n")), &env(&[])).unwrap();
        assert_eq!(ok.start_at, None);
    }
}
