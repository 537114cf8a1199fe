//! Atomic output: build into a staging folder inside `--out`, then swap each finished piece in
//! with a rename, so a failed build leaves `--out` as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
    done: bool,
    /// `out` did not exist before: a failed build removes it again (if still empty).
    made_out: bool,
}

impl Staging {
    /// Create `out` if needed and a fresh staging folder in it (same filesystem: renames are atomic).
    pub fn new(out: &Path) -> Result<Self> {
        let made_out = !out.exists();
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating output directory {}", out.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(".ezimg-staging-")
            .tempdir_in(out)
            .with_context(|| format!("output directory {} is not writable", out.display()))?
            .keep();
        Ok(Staging {
            out: out.to_path_buf(),
            dir,
            done: false,
            made_out,
        })
    }

    /// Where to write `rel` while building.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Move every staged `rel` (file or folder) over its counterpart in `out`.
    pub fn commit(mut self, rels: &[String]) -> Result<()> {
        for rel in rels {
            let src = self.dir.join(rel);
            let dst = self.out.join(rel);
            if let Some(p) = dst.parent() {
                std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
            }
            let old = self.dir.join(format!(".old-{}", rel.replace('/', "_")));
            let had_old = dst.exists();
            if had_old {
                std::fs::rename(&dst, &old)
                    .with_context(|| format!("moving aside {}", dst.display()))?;
            }
            std::fs::rename(&src, &dst)
                .with_context(|| format!("moving {} into place", dst.display()))?;
            if had_old {
                remove(&old)?;
            }
        }
        self.done = true;
        remove(&self.dir)
    }
}

fn remove(p: &Path) -> Result<()> {
    let r = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    r.with_context(|| format!("removing {}", p.display()))
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
            if self.made_out {
                // Only if empty: nothing else may have been put there meanwhile.
                let _ = std::fs::remove_dir(&self.out);
            }
        }
    }
}
