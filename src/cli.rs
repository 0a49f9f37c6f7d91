//! Command line (in progress).
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "loadspec", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the emulated AI image API.
    DemoTarget(crate::demo_target::DemoTargetArgs),
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::DemoTarget(a) => crate::demo_target::main(a),
    }
}
