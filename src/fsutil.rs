//! Small filesystem helpers shared by the caches and the outputs: atomic file replacement and
//! work folders (the cache entry pattern and its locks: [`crate::keyed_cache`]). Every file
//! ezimg publishes appears whole or not at all, so a crash or a full disk never leaves a
//! half-written lock, manifest or image behind.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Write `bytes` to `path` atomically: a temporary file in the same folder (created if
/// missing), fsync, rename over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes).map_err(Into::into))
}

/// Like [`write_atomic`], the content written by `fill` (e.g. a serializer).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    fill(tmp.as_file_mut()).with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// [`write_atomic`], readable by all (cache manifests and images hold no secret).
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write_atomic(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Read and parse a JSON file (cache manifests).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// A fresh `.work-*` folder inside the cache folder `dir` (created if missing): same
/// filesystem as the entries it becomes, so publishing them is a rename. Removed on drop.
pub fn work_dir(dir: &Path) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a work directory in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() -> Result<()> {
        let d = tempfile::tempdir()?;
        let p = d.path().join("sub/file.txt");
        write_atomic(&p, b"one")?;
        write_atomic(&p, b"two")?;
        assert_eq!(std::fs::read(&p)?, b"two");
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        assert_eq!(names, vec![std::ffi::OsString::from("file.txt")]);
        // A failing writer leaves the old content.
        let r = write_atomic_with(&p, |_| anyhow::bail!("serializer failed"));
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p)?, b"two");
        Ok(())
    }
}
