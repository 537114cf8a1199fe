//! `ezimg completions`: print a shell completion script.

use anyhow::Result;

use crate::cli::CompletionsArgs;

pub fn run(a: &CompletionsArgs) -> Result<()> {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "ezimg", &mut std::io::stdout());
    Ok(())
}
