//! Running external programs (mmdebstrap, sfdisk, mkfs, apt-ftparchive, xorriso, qemu-img, cc …)
//! one way: the error names what was being done and the command line, and carries the tail of
//! the program's standard error, as bootc's `CommandRunExt`. A failing tool's own words are
//! what a user needs to fix it, so they must never be lost.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};

/// Lines of a failing tool's stderr kept in the error.
pub const TAIL_LINES: usize = 30;

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a log file (only its last 64 KiB are read: logs of a big build run to
/// megabytes).
pub fn tail_file(path: &Path, n: usize) -> String {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(no log: {e})"),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    tail_lines(&String::from_utf8_lossy(&buf), n)
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 300 {
        s.truncate(300);
        s.push('…');
    }
    s
}

/// Run `cmd` to completion with its output captured; fail with `what`, the command line and
/// the tail of stderr (or stdout when stderr is empty) unless it exits 0.
pub fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    run_with_stdin(cmd, None, what)
}

/// Like [`run`], feeding `input` to the program's standard input (`None`: no input).
pub fn run_with_stdin(cmd: &mut Command, input: Option<&[u8]>, what: &str) -> Result<Output> {
    let line = describe(cmd);
    let cannot_run = || format!("{what}: cannot run `{line}` (is it installed?)");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = match input {
        None => cmd.output().with_context(cannot_run)?,
        Some(bytes) => {
            let mut child = cmd.spawn().with_context(cannot_run)?;
            let mut stdin = child.stdin.take().context("no stdin pipe")?;
            // Fed from another thread while this one drains the output: a program that writes
            // as it reads (debugfs echoes each command) would otherwise fill its stdout pipe
            // while we block filling its stdin.
            let out = std::thread::scope(|s| {
                let writer = s.spawn(move || {
                    let r = stdin.write_all(bytes);
                    drop(stdin);
                    r
                });
                let out = child.wait_with_output();
                (out, writer.join())
            });
            let (out, wrote) = out;
            let out = out.with_context(|| format!("{what}: waiting for `{line}`"))?;
            // A program that exits without reading its input shows up in its exit status.
            let wrote = wrote.unwrap_or_else(|_| Err(std::io::Error::other("the writer panicked")));
            if out.status.success() {
                wrote.with_context(|| format!("{what}: writing the input of `{line}`"))?;
            }
            out
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let text = if err.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            err.into_owned()
        };
        anyhow::bail!(
            "{what} failed ({}): `{line}`\n--- last lines of its output ---\n{}",
            out.status,
            tail_lines(&text, TAIL_LINES)
        );
    }
    Ok(out)
}

/// Like [`run`], returning stdout as text.
pub fn run_stdout(cmd: &mut Command, what: &str) -> Result<String> {
    let out = run(cmd, what)?;
    String::from_utf8(out.stdout).with_context(|| format!("{what}: output is not UTF-8"))
}

/// True if `prog` can be found (absolute path, or on PATH plus the sbin directories).
pub fn have(prog: &str) -> bool {
    if prog.contains('/') {
        return Path::new(prog).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .any(|d| d.join(prog).is_file())
}

/// Fail with the setup script's name unless every tool in `progs` is there.
pub fn require(progs: &[&str], what: &str) -> Result<()> {
    let missing: Vec<&str> = progs.iter().copied().filter(|p| !have(p)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{what} needs {} (run scripts/vm-deps.sh as root to install them)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// True when running as root (uid 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_the_command_and_quotes_stderr() {
        let err = run(
            Command::new("sh").args(["-c", "echo one >&2; echo two >&2; exit 3"]),
            "testing",
        )
        .expect_err("exit 3 must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("testing failed"), "{msg}");
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("one\ntwo"), "{msg}");
    }

    #[test]
    fn stdin_is_fed() -> Result<()> {
        let out = run_with_stdin(&mut Command::new("cat"), Some(b"label: dos\n"), "cat")?;
        assert_eq!(out.stdout, b"label: dos\n");
        let err =
            run(&mut Command::new("/nonexistent/prog"), "missing").expect_err("no such program");
        assert!(format!("{err:#}").contains("cannot run"), "{err:#}");
        Ok(())
    }

    #[test]
    fn a_large_input_echoed_back_does_not_deadlock() -> Result<()> {
        // Far more than a pipe holds, in both directions at once.
        let big = vec![b'x'; 4 << 20];
        let out = run_with_stdin(&mut Command::new("cat"), Some(&big), "cat")?;
        assert_eq!(out.stdout.len(), big.len());
        Ok(())
    }
}
