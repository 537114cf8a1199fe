//! Content-addressed artifact cache.
//!
//! Layout under the root (`--cache-dir`, else `$EZIMG_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/ezimg`, else `~/.cache/ezimg`):
//!
//! - `sha256/<hex>`: a verified file whose sha256 is its name (read-only). Only ever created by
//!   renaming a fully written and verified file, so a killed download never leaves a file here.
//! - `sha512/<hex>`: a one-line alias holding the sha256 hex of the same content, written only
//!   after both digests were computed over the same bytes. It lets sha512-only pins (Debian's
//!   images) be found without rehashing.
//! - `verified/<pin>`: a one-line alias holding the sha256 hex of a file that was verified by
//!   content rather than by a pinned digest: `gittree-<tree id>` for commit archives,
//!   `rpm-<key fingerprint>-<file>` for signed RPMs. Written only after the check passed, so
//!   such pins are found again without network (and `ezimg lock` can record the sha256).
//! - `tmp/<key>.part`: partial downloads (resumed with HTTP Range), `tmp/<key>.lock`: advisory
//!   locks so two ezimg processes never write the same partial file.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::lock::{Artifact, Check};
use crate::digest::{Hashes, Sha256Digest, Sha512Digest, hash_file};

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A cache entry found to be wrong by [`Cache::verify_all`].
#[derive(Debug, Clone)]
pub struct BadEntry {
    pub path: PathBuf,
    pub problem: String,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// `explicit`, else `$EZIMG_CACHE_DIR`, else `$XDG_CACHE_HOME/ezimg` (or the platform cache
    /// directory).
    pub fn resolve(explicit: Option<&Path>) -> Result<Cache> {
        Ok(Cache::new(crate::cachedir::root(explicit)?))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sha256_path(&self, d: &Sha256Digest) -> PathBuf {
        crate::cachedir::sha256(&self.root).join(d.hex())
    }

    fn sha512_alias(&self, d: &Sha512Digest) -> PathBuf {
        self.root.join("sha512").join(d.hex())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Create the directories.
    pub fn init(&self) -> Result<()> {
        for d in ["sha256", "sha512", "tmp"] {
            let p = self.root.join(d);
            fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        Ok(())
    }

    /// The sha256 an alias points to.
    pub fn resolve_sha512(&self, d: &Sha512Digest) -> Option<Sha256Digest> {
        let text = fs::read_to_string(self.sha512_alias(d)).ok()?;
        text.trim().parse().ok()
    }

    /// The name of the alias of a content-verified pin (None for digest-only pins).
    pub fn alias_name(a: &Artifact) -> Option<String> {
        Some(match a.check.as_ref()? {
            Check::GitTree(id) => format!("gittree-{}", id.hex()),
            Check::Signature(k) => format!("rpm-{}-{}", k.fingerprint, a.file),
        })
    }

    fn verified_alias(&self, a: &Artifact) -> Option<PathBuf> {
        Some(self.root.join("verified").join(Cache::alias_name(a)?))
    }

    /// Record that the entry `d` passed `a`'s content check.
    pub fn record_verified(&self, a: &Artifact, d: &Sha256Digest) -> Result<()> {
        match Cache::alias_name(a) {
            Some(name) => self.record_alias(&name, d),
            None => Ok(()),
        }
    }

    /// Write the alias `name` (see [`Cache::alias_name`]) for entry `d`. Only for an entry that
    /// has just passed the check the name stands for.
    pub(crate) fn record_alias(&self, name: &str, d: &Sha256Digest) -> Result<()> {
        if name.contains('/') || name.starts_with('.') {
            bail!("bad alias name {name:?}");
        }
        let alias = self.root.join("verified").join(name);
        crate::fsutil::write_atomic(&alias, format!("{}\n", d.hex()).as_bytes())
    }

    /// The sha256 of `a`'s content, when known: pinned, learnt through a sha512 alias, or
    /// recorded when its content check passed. A commit archive's bytes may change upstream
    /// while its tree does not, so for those a pinned sha256 counts only while it is cached.
    pub fn known_sha256(&self, a: &Artifact) -> Option<Sha256Digest> {
        let pinned = a
            .sha256
            .or_else(|| a.sha512.as_ref().and_then(|d| self.resolve_sha512(d)));
        let recorded = || {
            let text = fs::read_to_string(self.verified_alias(a)?).ok()?;
            text.trim().parse::<Sha256Digest>().ok()
        };
        match &a.check {
            None => pinned,
            Some(Check::Signature(_)) => pinned.or_else(recorded),
            Some(Check::GitTree(_)) => match pinned {
                Some(d) if self.sha256_path(&d).is_file() => Some(d),
                _ => recorded().or(pinned),
            },
        }
    }

    /// The cached file of `a`, if present. Entries are trusted (they are only created verified);
    /// [`Cache::verify_entry`] rehashes one.
    pub fn lookup(&self, a: &Artifact) -> Option<PathBuf> {
        let d = self.known_sha256(a)?;
        let p = self.sha256_path(&d);
        let meta = fs::metadata(&p).ok()?;
        if !meta.is_file() || (a.bytes_pinned() && a.size.is_some_and(|s| s != meta.len())) {
            return None;
        }
        Some(p)
    }

    /// Rehash the entry at `path` (named by its sha256); a wrong entry is removed.
    pub fn verify_entry(&self, path: &Path, with_sha512: bool) -> Result<Hashes> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: not a cache entry", path.display()))?;
        let want: Sha256Digest = name
            .parse()
            .with_context(|| format!("{}: not a cache entry", path.display()))?;
        let got = hash_file(path, with_sha512)?;
        if got.sha256 != want {
            let _ = fs::remove_file(path);
            bail!(
                "cache entry {} is corrupt (content is {}); removed it",
                path.display(),
                got.sha256
            );
        }
        Ok(got)
    }

    /// Move a fully written file whose digests are `h` into the cache, atomically.
    pub fn insert_verified(&self, tmp: &Path, h: &Hashes) -> Result<PathBuf> {
        self.init()?;
        let dest = self.sha256_path(&h.sha256);
        let f = fs::File::open(tmp).with_context(|| format!("opening {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        let mut perms = f
            .metadata()
            .with_context(|| format!("reading metadata of {}", tmp.display()))?
            .permissions();
        perms.set_readonly(true);
        fs::set_permissions(tmp, perms)
            .with_context(|| format!("making {} read-only", tmp.display()))?;
        fs::rename(tmp, &dest)
            .with_context(|| format!("moving {} to {}", tmp.display(), dest.display()))?;
        if let Some(d512) = &h.sha512 {
            self.write_alias(d512, &h.sha256)?;
        }
        Ok(dest)
    }

    fn write_alias(&self, d512: &Sha512Digest, d256: &Sha256Digest) -> Result<()> {
        let alias = self.sha512_alias(d512);
        crate::fsutil::write_atomic(&alias, format!("{}\n", d256.hex()).as_bytes())
    }

    /// Every `sha256/<hex>` entry.
    pub fn entries(&self) -> Result<Vec<(Sha256Digest, PathBuf)>> {
        let dir = crate::cachedir::sha256(&self.root);
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for e in rd {
            let e = e.with_context(|| format!("listing {}", dir.display()))?;
            let p = e.path();
            if let Some(d) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<Sha256Digest>().ok())
            {
                out.push((d, p));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Rehash every entry and alias; report (without removing) the ones that are wrong.
    pub fn verify_all(&self) -> Result<Vec<BadEntry>> {
        let mut bad = Vec::new();
        for (d, p) in self.entries()? {
            let got = hash_file(&p, false)?;
            if got.sha256 != d {
                bad.push(BadEntry {
                    path: p,
                    problem: format!("content is {}", got.sha256),
                });
            }
        }
        let adir = self.root.join("sha512");
        if let Ok(rd) = fs::read_dir(&adir) {
            for e in rd {
                let p = e
                    .with_context(|| format!("listing {}", adir.display()))?
                    .path();
                let Some(d512) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<Sha512Digest>().ok())
                else {
                    continue;
                };
                let Some(d256) = self.resolve_sha512(&d512) else {
                    bad.push(BadEntry {
                        path: p,
                        problem: "unreadable alias".into(),
                    });
                    continue;
                };
                let target = self.sha256_path(&d256);
                if target.exists() && hash_file(&target, true)?.sha512 != Some(d512) {
                    bad.push(BadEntry {
                        path: p,
                        problem: format!("alias points to {d256}, whose sha512 differs"),
                    });
                }
            }
        }
        Ok(bad)
    }

    /// Take the advisory lock for a partial download key, waiting for other processes.
    pub(crate) async fn lock_key(&self, key: &str) -> Result<fs::File> {
        self.init()?;
        let p = self.tmp_dir().join(format!("{key}.lock"));
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(f),
                Err(fs::TryLockError::WouldBlock) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", p.display()));
                }
            }
        }
    }
}
