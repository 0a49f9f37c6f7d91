//! The command line: `run`, `validate`, `demo`, `demo-target`. Invalid config exits with code
//! 2 before anything starts; other failures exit 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::load::plan::Shard;
use crate::logging::LogFormat;

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
    crate::logging::init(format);
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
                print_summary: true,
                ..Default::default()
            },
            signals,
        )
        .await
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "loadspec stopped with an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
