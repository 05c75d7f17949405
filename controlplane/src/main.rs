//! The `shardcast` binary: a thin wrapper over the library; see `cli` for the commands.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardcast: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
