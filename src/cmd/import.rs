//! `ezimg import FILE`: add the entries of an export tar to the cache, verifying each.

use anyhow::{Context, Result};

use crate::artifact::{Cache, archive};
use crate::cli::ImportArgs;

/// `ezimg import FILE`.
pub fn run(a: &ImportArgs) -> Result<()> {
    let cache = Cache::resolve(a.cache_dir.as_deref())?;
    let sum = archive::import(&cache, &a.file)?;
    if let (Some(out), Some(text)) = (&a.lock_out, &sum.lock_text) {
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    if let Some(index) = &sum.images_index {
        let refs = crate::images::adopt_index(&cache, index)?;
        eprintln!(
            "ezimg: imported {} image(s): {}",
            refs.len(),
            refs.join(", ")
        );
    }
    eprintln!(
        "ezimg: imported {} entr{} into {} ({} already there)",
        sum.added.len(),
        if sum.added.len() == 1 { "y" } else { "ies" },
        cache.root().display(),
        sum.already.len()
    );
    Ok(())
}
