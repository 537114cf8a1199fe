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
    let (entries, index, _not_pulled) = crate::images::export_members(&lk, &cache)?;
    let mut extra = archive::Extra::default();
    let n_images = index.as_ref().map_or(0, |_| {
        crate::images::list(&lk, &cache)
            .map(|l| l.iter().filter(|i| i.cached.is_some()).count())
            .unwrap_or(0)
    });
    for (d, p) in entries {
        extra.entries.push((format!("image blob {d}"), d, p));
    }
    if let Some(t) = index {
        extra.files.push(("images/index.json".into(), t));
    }
    let sum = archive::export_with(&lk, &cache, &names, &extra, &a.file, a.allow_missing)?;
    if !sum.missing.is_empty() {
        eprintln!(
            "ezimg: WARNING: not cached, left out: {}",
            sum.missing.join(", ")
        );
    }
    eprintln!(
        "ezimg: wrote {} ({} artifact(s), {n_images} image(s), {} bytes, and the lock)",
        a.file.display(),
        sum.exported.len() - extra.entries.len().min(sum.exported.len()),
        sum.bytes
    );
    Ok(())
}
