//! The cache root and its folders, named in one place. The artifact cache, build stages, base
//! images and bakes all live under one root, so each of them asks here instead of asking the
//! others (which made `artifact` and `stage` depend on each other).
//!
//! ```text
//! <root>/sha256/   verified artifacts (artifact::Cache), with sha512/, verified/, tmp/
//! <root>/stages/   build stage outputs
//! <root>/base/     debian12 base images
//! <root>/bake/     baked role images
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `explicit` (`--cache-dir`), else `$EZIMG_CACHE_DIR`, else `$XDG_CACHE_HOME/ezimg` (or the
/// platform cache directory).
pub fn root(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("EZIMG_CACHE_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = dirs::cache_dir().context(
        "no cache directory: set XDG_CACHE_HOME or EZIMG_CACHE_DIR, or pass --cache-dir",
    )?;
    Ok(base.join("ezimg"))
}

/// `<root>/sha256`: verified artifacts, named by their sha256.
pub fn sha256(root: &Path) -> PathBuf {
    root.join("sha256")
}

/// `<root>/stages`: build stage outputs and manifests.
pub fn stages(root: &Path) -> PathBuf {
    root.join("stages")
}

/// `<root>/base`: base images.
pub fn base(root: &Path) -> PathBuf {
    root.join("base")
}

/// `<root>/bake`: baked role images.
pub fn bake(root: &Path) -> PathBuf {
    root.join("bake")
}
