//! Cheap static checks on rendered scripts, run by `check` and `build` alike: a bash syntax
//! error in a layer's step script otherwise passes every ezimg command and fails on the node,
//! half-way through `apply`.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::digest::sha256_hex;

/// Scripts already found valid, by content: 300 nodes share a few dozen distinct scripts.
#[derive(Default)]
pub struct BashSyntax {
    seen: BTreeSet<String>,
    /// `bash` is not installed: said once, then nothing is checked.
    missing: bool,
}

impl BashSyntax {
    /// `bash -n` on `script`; `name` says what it is (`layers/sysctl/apply.sh for node slb-01`).
    pub fn check(&mut self, name: &str, script: &[u8]) -> Result<()> {
        let digest = sha256_hex(script);
        if self.missing || self.seen.contains(&digest) {
            return Ok(());
        }
        let child = Command::new("bash")
            .arg("-n")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "warning: bash is not installed here: step scripts are not syntax-checked"
                );
                self.missing = true;
                return Ok(());
            }
            Err(e) => return Err(e).context("running bash -n"),
        };
        // bash reads the script from stdin; a syntax error makes it stop reading, so a failed
        // write is not an error of ours.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(script);
        }
        let out = child.wait_with_output().context("running bash -n")?;
        if out.status.success() {
            self.seen.insert(digest);
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        // bash names stdin `bash: line N:`; name the script instead.
        let msg = err
            .lines()
            .map(|l| l.strip_prefix("bash: ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("; ");
        anyhow::bail!("{name}: bash syntax error (bash -n): {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_found_once_per_content() {
        let mut b = BashSyntax::default();
        b.check("ok.sh", b"if true; then echo ok; fi\n")
            .expect("valid");
        let e = b
            .check("bad.sh", b"echo a\nif true; then echo b\n")
            .expect_err("unterminated if");
        let e = format!("{e:#}");
        assert!(e.starts_with("bad.sh: bash syntax error"), "{e}");
        assert!(e.contains("line 3") || e.contains("line 2"), "{e}");
        // A failure is not remembered as checked.
        assert!(
            b.check("bad.sh", b"echo a\nif true; then echo b\n")
                .is_err()
        );
        assert_eq!(b.seen.len(), 1);
    }
}
