//! `ezimg export FILE`: a tar of verified cache entries and the lock.

use anyhow::Result;

use super::{load_lock, selection};
use crate::artifact::{Cache, archive};
use crate::cli::{ExportArgs, Global};

/// `ezimg export FILE`.
pub fn run(g: &Global, a: &ExportArgs) -> Result<()> {
    let lk = load_lock(g, &a.store)?;
    let names = selection(g, &lk, &a.select, true)?;
    let cache = Cache::resolve(a.store.cache_dir.as_deref())?;
    let sum = archive::export(&lk, &cache, &names, &a.file, a.allow_missing)?;
    if !sum.missing.is_empty() {
        eprintln!(
            "ezimg: WARNING: not cached, left out: {}",
            sum.missing.join(", ")
        );
    }
    eprintln!(
        "ezimg: wrote {} ({} artifact(s), {} bytes, and the lock)",
        a.file.display(),
        sum.exported.len(),
        sum.bytes
    );
    Ok(())
}
