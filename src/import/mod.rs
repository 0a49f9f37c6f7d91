//! `loadspec import`: turn another load tool's test into a loadspec plan. Today: k6 scripts
//! ([`k6`]).

pub mod k6;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub from: ImportFrom,
}

#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// Convert a k6 script (options, http.* requests, checks, sleep, setup, CSV data) to a plan.
    K6(k6::K6Args),
}

pub fn main(a: ImportArgs) -> ExitCode {
    match a.from {
        ImportFrom::K6(a) => k6::main(a),
    }
}
