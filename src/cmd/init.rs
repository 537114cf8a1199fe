//! `ezimg init`: write the default cluster file.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::InitArgs;
use crate::{bundle, cluster, secrets};

pub fn run(a: &InitArgs) -> Result<()> {
    let text = cluster::init_text();
    if a.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing to standard output")?;
        return Ok(());
    }
    // Only the file: a mistyped folder is an error, not a new tree of folders.
    if let Some(parent) = a.out.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        anyhow::bail!(
            "{}: folder {} does not exist (init creates no folders)",
            a.out.display(),
            parent.display()
        );
    }
    if a.out.exists() && !a.force {
        anyhow::bail!(
            "{} already exists (use --force to overwrite)",
            a.out.display()
        );
    }
    bundle::write_file(&a.out, text.as_bytes())?;
    if let Some((line, gi)) = secrets::ignore_store(&a.out)? {
        eprintln!("added {line} to {}", gi.display());
    }
    eprintln!(
        "wrote {}: edit it, then run `ezimg check -c {}`",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}
