//! `ezimg fetch`: download artifacts from the lock into the verified cache.

use std::io::Write;

use anyhow::{Context, Result};

use super::{fetch_options, load_lock, selection};
use crate::artifact::{self, Cache};
use crate::cli::{FetchArgs, Global};

/// `ezimg fetch`: print `name<TAB>path` of each verified file on stdout.
pub fn run(g: &Global, a: &FetchArgs) -> Result<()> {
    let lock = load_lock(g, &a.store)?;
    let names = selection(g, &lock, &a.select, false)?;
    let mut opts = fetch_options(Cache::resolve(a.store.cache_dir.as_deref())?, &a.net)?;
    opts.offline = a.offline;
    opts.verify_cached = a.verify;
    let got = artifact::ensure(&lock, &names, &opts)?;
    let mut out = std::io::stdout().lock();
    for (name, path) in got {
        writeln!(out, "{name}\t{}", path.display()).context("writing to standard output")?;
    }
    Ok(())
}
