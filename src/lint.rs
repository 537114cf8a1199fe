//! Cheap static checks on rendered scripts, run by `check` and `build` alike: a bash syntax
//! error in a layer's step script otherwise passes every ezimg command and fails on the node,
//! half-way through `apply`.
//!
//! One bash process parses every distinct script (as the body of a function it defines but never
//! calls: bash's own parser, nothing executed), so 300 nodes cost one process, not 600.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::digest::sha256_hex;

/// The driver: defines each script as a function body with `eval`, reporting those bash cannot
/// parse. `{ :;` keeps a script of comments only valid and its line numbers unchanged.
const DRIVER: &str = r#"cd "$1" || exit 3
i=0
while [ -e "$i.sh" ]; do
    src=$(<"$i.sh") || exit 3
    if ! eval "ezimg_lint_$i() { :; $src
}" 2>"$i.err"; then
        echo "$i"
    fi
    i=$((i + 1))
done
"#;

/// Scripts to check, by content: 300 nodes share most of theirs.
#[derive(Default)]
pub struct BashSyntax {
    seen: BTreeSet<String>,
    pending: Vec<(String, Vec<u8>)>,
}

impl BashSyntax {
    /// Queue `script` for `finish`; `name` says what it is
    /// (`layers/sysctl/apply.sh (rendered for slb-01)`).
    pub fn check(&mut self, name: &str, script: &[u8]) -> Result<()> {
        if self.seen.insert(sha256_hex(script)) {
            self.pending.push((name.to_string(), script.to_vec()));
        }
        Ok(())
    }

    /// Parse every queued script; an error names each one bash refuses, with bash's reason.
    pub fn finish(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let dir = tempfile::tempdir().context("creating a folder for bash -n")?;
        for (i, (_, script)) in pending.iter().enumerate() {
            let p = dir.path().join(format!("{i}.sh"));
            std::fs::write(&p, script).with_context(|| format!("writing {}", p.display()))?;
        }
        let out = match Command::new("bash")
            .args(["-c", DRIVER, "ezimg-lint"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "warning: bash is not installed here: step scripts are not syntax-checked"
                );
                return Ok(());
            }
            Err(e) => return Err(e).context("running bash to parse the step scripts"),
        };
        if !out.status.success() {
            anyhow::bail!(
                "bash could not check the step scripts: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut errors = Vec::new();
        for i in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<usize>().ok())
        {
            let Some((name, _)) = pending.get(i) else {
                continue;
            };
            let err =
                std::fs::read_to_string(dir.path().join(format!("{i}.err"))).unwrap_or_default();
            // `ezimg-lint: eval: line 8: syntax error …`: keep from `line`, counted in the
            // script.
            let msg = err
                .lines()
                .map(|l| script_lines(l.find("line ").map_or(l, |at| &l[at..])))
                .collect::<Vec<_>>()
                .join("; ");
            errors.push(format!("{name}: bash syntax error: {msg}"));
        }
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("\n"));
        }
        Ok(())
    }
}

/// bash numbers eval'd lines from the driver's `eval` line: `line N` in the script is
/// `line N + that` in the message.
fn script_lines(msg: &str) -> String {
    let eval_line = DRIVER
        .lines()
        .position(|l| l.contains("eval "))
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    let mut rest = msg;
    while let Some(at) = rest.find("line ") {
        out.push_str(&rest[..at + 5]);
        rest = &rest[at + 5..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) if n >= eval_line => out.push_str(&(n - eval_line).to_string()),
            _ => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_found_and_named() {
        let mut b = BashSyntax::default();
        b.check("ok.sh", b"#!/bin/bash\nif true; then echo ok; fi\n")
            .expect("queued");
        b.check("comments.sh", b"# nothing to do\n")
            .expect("queued");
        b.check("heredoc.sh", b"cat <<'EOF'\n}\nEOF\necho after\n")
            .expect("queued");
        b.finish().expect("valid scripts pass");
        b.check("bad.sh", b"echo a\nif true; then echo b\n")
            .expect("queued");
        b.check("bad2.sh", b"echo a\necho b )\n").expect("queued");
        b.check("ok.sh", b"#!/bin/bash\nif true; then echo ok; fi\n")
            .expect("already checked");
        let e = format!("{:#}", b.finish().expect_err("two are broken"));
        assert!(e.contains("bad.sh: bash syntax error: line 3: "), "{e}");
        assert!(
            e.contains(
                "bad2.sh: bash syntax error: line 2: syntax error near unexpected token `)'"
            ),
            "{e}"
        );
        assert!(!e.contains("ok.sh"), "{e}");
        // Nothing is executed.
        let mut b = BashSyntax::default();
        let marker = tempfile::tempdir().expect("tempdir");
        let touch = format!("touch {}/ran\n", marker.path().display());
        b.check("touch.sh", touch.as_bytes()).expect("queued");
        b.finish().expect("valid");
        assert!(!marker.path().join("ran").exists(), "the script ran");
    }
}
