//! The stage output cache (`<cache root>/stages/<key>.tar.gz` + `<key>.json`), the cache key,
//! and the deterministic packing of a staging tree.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::Manifest;
use crate::digest::{Hasher, sha256_file};

/// Fixed mtime of every tar entry (1980-01-01, the zip epoch), also the builds'
/// `SOURCE_DATE_EPOCH`.
pub const FIXED_MTIME: u64 = 315_532_800;

/// The cache root: `$EZIMG_CACHE_DIR`, else `$XDG_CACHE_HOME/ezimg` (the platform cache dir),
/// the same root the artifact cache uses. Stages live in `<root>/stages/`.
pub fn default_cache_root() -> Result<PathBuf> {
    crate::cachedir::root(None)
}

pub fn stages_dir(root: &Path) -> PathBuf {
    crate::cachedir::stages(root)
}

pub fn tarball_path(root: &Path, key: &str) -> PathBuf {
    stages_dir(root).join(format!("{key}.tar.gz"))
}

pub fn manifest_path(root: &Path, key: &str) -> PathBuf {
    stages_dir(root).join(format!("{key}.json"))
}

/// A writer that hashes what goes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(false),
        }
    }
    pub fn finish(self) -> (W, String, u64) {
        let h = self.hasher.finish();
        (self.inner, h.sha256.hex(), h.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// sha256 of a directory tree: sorted relative paths, kinds, exec bits, contents, link targets.
pub fn sha256_tree(root: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut entries = Vec::new();
    walk(root, Path::new(""), &mut entries)?;
    for e in &entries {
        h.update(e.rel.as_bytes());
        h.update([0]);
        match &e.kind {
            Kind::Dir => h.update(b"d"),
            Kind::Symlink(t) => {
                h.update(b"l");
                h.update(t.as_bytes());
            }
            Kind::File => {
                h.update(if e.mode & 0o111 != 0 { b"x" } else { b"f" });
                h.update(sha256_file(&root.join(&e.rel))?.as_bytes());
            }
        }
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

#[derive(Debug)]
enum Kind {
    Dir,
    File,
    Symlink(String),
}

#[derive(Debug)]
struct Entry {
    /// `/`-separated path relative to the walk root.
    rel: String,
    kind: Kind,
    mode: u32,
}

/// Pre-order walk, children sorted by name: parents come before their children.
fn walk(root: &Path, rel: &Path, out: &mut Vec<Entry>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .with_context(|| format!("reading directory {}", dir.display()))?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let p = root.join(&r);
        let md = fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
        let rel_s = r
            .to_str()
            .with_context(|| format!("{}: file name is not UTF-8", p.display()))?
            .to_string();
        let mode = md.permissions().mode() & 0o7777;
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(&p).with_context(|| format!("reading link {}", p.display()))?;
            let t = t
                .to_str()
                .with_context(|| format!("{}: link target is not UTF-8", p.display()))?
                .to_string();
            out.push(Entry {
                rel: rel_s,
                kind: Kind::Symlink(t),
                mode,
            });
        } else if ft.is_dir() {
            out.push(Entry {
                rel: rel_s,
                kind: Kind::Dir,
                mode,
            });
            walk(root, &r, out)?;
        } else if ft.is_file() {
            out.push(Entry {
                rel: rel_s,
                kind: Kind::File,
                mode,
            });
        } else {
            bail!("{}: not a file, directory or symlink", p.display());
        }
    }
    Ok(())
}

/// What [`pack`] wrote.
#[derive(Debug, Clone)]
pub struct Packed {
    pub sha256: String,
    pub size: u64,
    pub entries: usize,
    /// Top-most staging paths outside the output paths (not packed).
    pub dropped: Vec<String>,
}

/// Pack `paths` (absolute, as on the node) of the `staging` tree into a deterministic tar.gz:
/// pre-order sorted entries, mtime [`FIXED_MTIME`], uid/gid 0 (root), permission bits kept,
/// gzip header without name or time. Entry names are relative (`ezops/service/nginx/sbin/nginx`):
/// extract at `/`.
pub fn pack(staging: &Path, paths: &[String], out: impl Write) -> Result<Packed> {
    let roots: Vec<String> = paths
        .iter()
        .map(|p| p.trim_matches('/').to_string())
        .collect();
    for (p, r) in paths.iter().zip(&roots) {
        let full = staging.join(r);
        if !full.exists() {
            bail!(
                "the install step put nothing at {p} (looked in {}); check prefix/output.paths",
                full.display()
            );
        }
    }
    let mut all = Vec::new();
    walk(staging, Path::new(""), &mut all)?;
    let inside = |rel: &str| {
        roots.iter().any(|r| {
            r.is_empty()
                || rel == r
                || rel.starts_with(&format!("{r}/"))
                || r.starts_with(&format!("{rel}/"))
        })
    };
    let mut dropped: Vec<String> = Vec::new();
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(HashingWriter::new(out), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let mut entries = 0usize;
    for e in &all {
        if !inside(&e.rel) {
            if !dropped.iter().any(|d| e.rel.starts_with(&format!("{d}/"))) {
                dropped.push(e.rel.clone());
            }
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mtime(FIXED_MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").context("tar header")?;
        h.set_groupname("root").context("tar header")?;
        // Ancestors of an output root (`ezops/`, `ezops/service/`) get a plain 0755.
        let is_ancestor = roots.iter().any(|r| r.starts_with(&format!("{}/", e.rel)));
        match &e.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(if is_ancestor { 0o755 } else { e.mode });
                h.set_size(0);
                tar.append_data(&mut h, format!("{}/", e.rel), io::empty())
                    .with_context(|| format!("packing {}", e.rel))?;
            }
            Kind::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, &e.rel, t)
                    .with_context(|| format!("packing {}", e.rel))?;
            }
            Kind::File => {
                let p = staging.join(&e.rel);
                let f = fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
                let len = f
                    .metadata()
                    .with_context(|| format!("stat {}", p.display()))?
                    .len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(e.mode);
                h.set_size(len);
                tar.append_data(&mut h, &e.rel, f)
                    .with_context(|| format!("packing {}", e.rel))?;
            }
        }
        entries += 1;
    }
    let gz = tar.into_inner().context("finishing the tar stream")?;
    let hw = gz.finish().context("finishing the gzip stream")?;
    let (mut w, sha256, size) = hw.finish();
    w.flush().context("flushing the stage tarball")?;
    Ok(Packed {
        sha256,
        size,
        entries,
        dropped,
    })
}

/// Extract a stage tarball under `dest` (e.g. a test prefix or an image root).
pub fn unpack_output(tarball: &Path, dest: &Path) -> Result<()> {
    let f = fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(f)));
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    ar.unpack(dest)
        .with_context(|| format!("extracting {} into {}", tarball.display(), dest.display()))
}

/// The cached entry for `key`, verified: the manifest names the key and the tarball's sha256
/// matches it. A damaged entry is removed and reported as a miss.
pub fn lookup(root: &Path, key: &str) -> Result<Option<(PathBuf, Manifest)>> {
    let mpath = manifest_path(root, key);
    let tpath = tarball_path(root, key);
    if !mpath.exists() {
        return Ok(None);
    }
    let bad = |why: String| -> Result<Option<(PathBuf, Manifest)>> {
        eprintln!(
            "warning: stage cache entry {} is damaged ({why}); rebuilding",
            mpath.display()
        );
        let _ = fs::remove_file(&mpath);
        let _ = fs::remove_file(&tpath);
        Ok(None)
    };
    let text = match fs::read_to_string(&mpath) {
        Ok(t) => t,
        Err(e) => return bad(e.to_string()),
    };
    let m: Manifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => return bad(format!("manifest: {e}")),
    };
    if m.key != key {
        return bad(format!("manifest is for key {}", m.key));
    }
    if !tpath.exists() {
        return bad("tarball missing".into());
    }
    let sha = sha256_file(&tpath)?;
    if sha != m.output.sha256 {
        return bad(format!(
            "tarball sha256 {sha}, manifest says {}",
            m.output.sha256
        ));
    }
    Ok(Some((tpath, m)))
}

/// The cached output whose tarball has `sha256`, among entries whose key starts with
/// `key_prefix` (bundles name stage outputs `<stage>-stage-<key[..16]>.tar.gz`). Verified like
/// [`lookup`].
pub fn find_output(root: &Path, key_prefix: &str, sha256: &str) -> Result<Option<PathBuf>> {
    let dir = stages_dir(root);
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut keys: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|k| k.starts_with(key_prefix))
                .map(str::to_string)
        })
        .collect();
    keys.sort();
    for key in keys {
        if let Some((path, m)) = lookup(root, &key)?
            && m.output.sha256 == sha256
        {
            return Ok(Some(path));
        }
    }
    Ok(None)
}
