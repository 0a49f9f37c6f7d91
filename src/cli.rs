//! The command line: `run`, `validate`, `demo`, `demo-target`. Invalid config (or a bad
//! option) exits with code 2 before anything starts; other failures exit 1; a `run` whose SLA
//! broke exits 99 (see [`crate::ci`]).

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
    /// The embedded default: sweep a demo-target child process and print a recommendation.
    Demo(crate::demo::DemoArgs),
    /// Run the emulated AI image API with known per-request costs.
    DemoTarget(crate::demo_target::DemoTargetArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The TOML config file (LOADSPEC__SECTION__KEY environment variables override it).
    #[arg(long, short, env = "LOADSPEC_CONFIG")]
    pub config: PathBuf,
    /// Run this replica's share of every stage: I/N with 0 <= I < N.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
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
        Command::Demo(a) => crate::demo::main(a),
        Command::DemoTarget(a) => crate::demo_target::main(a),
    }
}

fn validate(a: ValidateArgs) -> ExitCode {
    match crate::config::load(&a.config) {
        Ok(s) => {
            match toml::to_string_pretty(&crate::config::redacted(&s.raw)) {
                Ok(t) => print!("{t}"),
                Err(e) => eprintln!("(cannot print the effective config: {e})"),
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

fn run(a: RunArgs) -> ExitCode {
    let settings = match crate::config::load(&a.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
    let effective = toml::to_string(&crate::config::redacted(&settings.raw)).unwrap_or_default();
    tracing::info!(config = %a.config.display(), shard = ?a.shard, "starting loadspec {}", env!("CARGO_PKG_VERSION"));
    tracing::debug!(effective = %effective, "effective config (secrets redacted)");
    let rt = match crate::runtime::build(None, None) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let signals = crate::shutdown::listen()?;
        crate::daemon::run(
            settings,
            crate::daemon::DaemonOptions {
                shard: a.shard.unwrap_or_default(),
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
        Ok(f) => ExitCode::from(f.verdict.map_or(0, |v| v.exit_code())),
        Err(e) => {
            tracing::error!(error = %e, "loadspec stopped with an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
