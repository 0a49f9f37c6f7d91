//! The emulated AI image API (in progress).

/// Command-line options of `loadspec demo-target`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoTargetArgs {}

/// Entry point of `loadspec demo-target`.
pub fn main(_args: DemoTargetArgs) -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
