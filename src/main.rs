use std::process::ExitCode;

use clap::Parser;
use ezimg::cli::Cli;

fn main() -> ExitCode {
    quiet_broken_pipe();
    let cli = Cli::parse();
    let g = match cli.inputs() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("ezimg: error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = ezimg::cmd::run(&g, &cli.command);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`ezimg plan | head`): nothing more to say, like other tools.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ezimg: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    })
}

/// `println!` panics when stdout is a closed pipe (Rust ignores SIGPIPE, and restoring it needs
/// unsafe code): end quietly instead, whichever command was printing.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}
