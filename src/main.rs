use std::process::ExitCode;

use clap::Parser;
use ezimg::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Init(a) => ezimg::commands::init(a),
        Command::Check => ezimg::commands::check(&cli.global),
        Command::Plan(a) => ezimg::commands::plan(&cli.global, a),
        Command::Build(a) => ezimg::commands::build(&cli.global, a),
        Command::Completions(a) => ezimg::commands::completions(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ezimg: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
