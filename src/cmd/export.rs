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
    // Pulled images travel too: their blobs and the layout's index of them.
    let part = crate::images::export_members(&lk, &cache)?;
    let mut extra = archive::Extra::default();
    for (d, p) in &part.entries {
        extra
            .entries
            .push((format!("image blob {d}"), *d, p.clone()));
    }
    if let Some(t) = &part.index {
        extra.files.push(("images/index.json".into(), t.clone()));
    }
    let sum = archive::export_with(&lk, &cache, &names, &extra, &a.file, a.allow_missing)?;
    if !sum.missing.is_empty() {
        eprintln!(
            "ezimg: WARNING: not cached, left out: {}",
            sum.missing.join(", ")
        );
    }
    eprintln!(
        "ezimg: wrote {} ({} artifact(s), {} image(s), {} bytes, and the lock)",
        a.file.display(),
        sum.exported.len().saturating_sub(extra.entries.len()),
        part.images,
        sum.bytes
    );
    Ok(())
}
