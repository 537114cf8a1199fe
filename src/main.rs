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
        Command::Fetch(a) => ezimg::commands::fetch(&cli.global, a),
        Command::Lock(a) => ezimg::commands::lock(&cli.global, a),
        Command::Export(a) => ezimg::commands::export(&cli.global, a),
        Command::Import(a) => ezimg::commands::import(a),
        Command::Stage(a) => ezimg::commands::stage(&cli.global, a),
        Command::Base(a) => ezimg::base::command(a),
        Command::Secrets(a) => ezimg::commands::secrets(&cli.global, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ezimg: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
