//! `ezimg export` / `ezimg import`: move verified cache entries to a machine without network.
//!
//! The archive is a plain tar (the artifacts are already compressed):
//! `artifacts.lock` (a copy of the lock used) and `sha256/<hex>` for every entry. Import hashes
//! each entry (sha256 and sha512 in one pass) into a temporary file and adds it to the cache only
//! when its content matches its name.
//!
//! Pins verified by content (git tree, signature) may have no sha256 in the lock: the exporting
//! cache knows it through its `verified/` aliases. Those travel as `verified.list`
//! (`<alias> <sha256 hex>`) with the public keys they name (`keys/<fingerprint>.asc`), and import
//! writes an alias only after the check passed again here (tree recomputed, signature verified
//! with the key whose fingerprint the alias names).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::cache::Cache;
use super::lock::{Check, Lock};
use super::{gittree, rpmsig};
use crate::digest::{Hasher, Sha256Digest};

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    pub exported: Vec<String>,
    pub missing: Vec<String>,
    pub bytes: u64,
}

fn header(path: &str, size: u64, mode: u32) -> Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path)
        .with_context(|| format!("tar path {path:?}"))?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Write the cached entries of `names` and a copy of the lock to `out`. Each entry is rehashed
/// while it is written. Missing entries are an error unless `allow_missing`.
pub fn export(
    lock: &Lock,
    cache: &Cache,
    names: &[String],
    out: &Path,
    allow_missing: bool,
) -> Result<ExportSummary> {
    export_with(lock, cache, names, &Extra::default(), out, allow_missing)
}

/// More members for an export: cache entries that belong to no pin (image blobs) and plain
/// files (`images/index.json`).
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// `(label for messages, digest, cache path)`.
    pub entries: Vec<(String, Sha256Digest, PathBuf)>,
    /// `(tar path, content)`.
    pub files: Vec<(String, Vec<u8>)>,
}

/// [`export`] with `extra` members.
pub fn export_with(
    lock: &Lock,
    cache: &Cache,
    names: &[String],
    extra: &Extra,
    out: &Path,
    allow_missing: bool,
) -> Result<ExportSummary> {
    let mut sum = ExportSummary::default();
    let mut entries: Vec<(String, Sha256Digest, PathBuf)> = Vec::new();
    let mut verified = String::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    for n in names {
        let a = lock.get(n)?;
        match (cache.lookup(a), cache.known_sha256(a)) {
            (Some(p), Some(d)) => {
                if !entries.iter().any(|(_, e, _)| *e == d) {
                    entries.push((n.clone(), d, p));
                }
                if let Some(alias) = Cache::alias_name(a) {
                    verified.push_str(&format!("{alias} {}\n", d.hex()));
                }
                if let Some(Check::Signature(k)) = &a.check
                    && let Some(text) = &k.armored
                    && !keys.iter().any(|(f, _)| *f == k.fingerprint)
                {
                    keys.push((k.fingerprint.clone(), text.clone()));
                }
            }
            _ => sum.missing.push(n.clone()),
        }
    }
    for (label, d, p) in &extra.entries {
        if !entries.iter().any(|(_, e, _)| e == d) {
            entries.push((label.clone(), *d, p.clone()));
        }
    }
    if !sum.missing.is_empty() && !allow_missing {
        bail!(
            "not in the cache {} (run `ezimg fetch` first, or pass --allow-missing): {}",
            cache.root().display(),
            sum.missing.join(", ")
        );
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut tb = tar::Builder::new(std::io::BufWriter::new(
        tmp.reopen()
            .with_context(|| format!("opening {}", tmp.path().display()))?,
    ));
    let lt = lock.text.as_bytes();
    tb.append(&header("artifacts.lock", lt.len() as u64, 0o644)?, lt)
        .context("writing artifacts.lock to the archive")?;
    if !verified.is_empty() {
        let v = verified.as_bytes();
        tb.append(&header("verified.list", v.len() as u64, 0o644)?, v)
            .context("writing verified.list to the archive")?;
    }
    for (path, content) in &extra.files {
        tb.append(
            &header(path, content.len() as u64, 0o644)?,
            content.as_slice(),
        )
        .with_context(|| format!("writing {path} to the archive"))?;
    }
    for (fpr, text) in &keys {
        let t = text.as_bytes();
        tb.append(
            &header(&format!("keys/{fpr}.asc"), t.len() as u64, 0o644)?,
            t,
        )
        .context("writing a key to the archive")?;
    }
    for (name, d, p) in &entries {
        let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
        let len = f
            .metadata()
            .with_context(|| format!("reading metadata of {}", p.display()))?
            .len();
        let mut r = HashingReader {
            inner: f,
            hasher: Hasher::new(false),
        };
        tb.append(&header(&format!("sha256/{}", d.hex()), len, 0o444)?, &mut r)
            .with_context(|| format!("writing {} to the archive", p.display()))?;
        let got = r.hasher.finish();
        if got.sha256 != *d || got.size != len {
            bail!(
                "cache entry {} of {name} is corrupt (content is {}); remove it and fetch again",
                p.display(),
                got.sha256
            );
        }
        sum.exported.push(name.clone());
        sum.bytes += len;
    }
    let mut w = tb.into_inner().context("finishing the archive")?;
    w.flush()
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(sum)
}

struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    pub added: Vec<Sha256Digest>,
    pub already: Vec<Sha256Digest>,
    /// Entries refused, with why.
    pub rejected: Vec<String>,
    /// The archive's copy of the lock.
    pub lock_text: Option<String>,
    /// Aliases of content-verified entries, recorded after their check passed again.
    pub verified: Vec<String>,
    /// The archive's `images/index.json` (pulled images), for `images::adopt_index`.
    pub images_index: Option<Vec<u8>>,
}

/// Re-check `entry` against what the alias `name` claims; Ok when it holds.
fn recheck_alias(name: &str, entry: &Path, keys: &[(String, String)]) -> Result<()> {
    if let Some(id) = name.strip_prefix("gittree-") {
        let want: gittree::GitTreeId = id.parse()?;
        let got = gittree::tree_of_archive(entry)?;
        if got != want {
            bail!("the entry unpacks to git tree {got}, not {want}");
        }
        return Ok(());
    }
    if let Some(rest) = name.strip_prefix("rpm-")
        && let Some(fpr) = rest.get(..40)
    {
        let text = keys
            .iter()
            .find(|(f, _)| f == fpr)
            .map(|(_, t)| t)
            .with_context(|| format!("no key {fpr} in the archive"))?;
        let key = rpmsig::load_key(text, fpr)?;
        rpmsig::verify_rpm(entry, &key, fpr)?;
        return Ok(());
    }
    bail!("unknown kind of alias")
}

/// Add every `sha256/<hex>` entry of the tar at `file` to `cache`, each only after its content
/// hashed to its name. Bad entries are skipped and reported; the call fails if there were any.
pub fn import(cache: &Cache, file: &Path) -> Result<ImportSummary> {
    cache.init()?;
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let mut sum = ImportSummary::default();
    let mut verified = String::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    let entries = ar
        .entries()
        .with_context(|| format!("reading {}", file.display()))?;
    for e in entries {
        let mut e = e.with_context(|| format!("reading {}", file.display()))?;
        let path = e
            .path()
            .with_context(|| format!("{}: entry with a bad path", file.display()))?
            .to_string_lossy()
            .into_owned();
        let at = format!("{}: entry {path:?}", file.display());
        if path == "artifacts.lock" {
            let mut s = String::new();
            e.read_to_string(&mut s)
                .with_context(|| format!("{at}: reading"))?;
            sum.lock_text = Some(s);
            continue;
        }
        if path == "images/index.json" {
            let mut v = Vec::new();
            e.read_to_end(&mut v)
                .with_context(|| format!("{at}: reading"))?;
            sum.images_index = Some(v);
            continue;
        }
        if path == "verified.list" {
            e.read_to_string(&mut verified)
                .with_context(|| format!("{at}: reading"))?;
            continue;
        }
        if let Some(fpr) = path
            .strip_prefix("keys/")
            .and_then(|p| p.strip_suffix(".asc"))
        {
            let mut s = String::new();
            e.read_to_string(&mut s)
                .with_context(|| format!("{at}: reading"))?;
            keys.push((fpr.to_string(), s));
            continue;
        }
        let Some(hexname) = path.strip_prefix("sha256/") else {
            sum.rejected.push(format!("{at}: not a cache entry"));
            continue;
        };
        let want: Sha256Digest = match hexname.parse() {
            Ok(d) => d,
            Err(err) => {
                sum.rejected.push(format!("{at}: {err:#}"));
                continue;
            }
        };
        if e.header().entry_type() != tar::EntryType::Regular {
            sum.rejected.push(format!("{at}: not a regular file"));
            continue;
        }
        let dest = cache.sha256_path(&want);
        if dest.is_file() {
            sum.already.push(want);
            continue;
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("import-")
            .suffix(".part")
            .tempfile_in(cache.tmp_dir())
            .with_context(|| format!("creating a file in {}", cache.tmp_dir().display()))?;
        let mut h = Hasher::new(true);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = e.read(&mut buf).with_context(|| format!("{at}: reading"))?;
            if n == 0 {
                break;
            }
            tmp.write_all(&buf[..n])
                .with_context(|| format!("writing {}", tmp.path().display()))?;
            h.update(&buf[..n]);
        }
        let got = h.finish();
        if got.sha256 != want {
            sum.rejected
                .push(format!("{at}: content is {}, not {want}", got.sha256));
            continue; // the temporary file is removed on drop
        }
        let (_, tmp_path) = tmp
            .keep()
            .with_context(|| format!("keeping a file in {}", cache.tmp_dir().display()))?;
        if let Err(err) = cache.insert_verified(&tmp_path, &got) {
            let _ = fs::remove_file(&tmp_path);
            return Err(err);
        }
        sum.added.push(want);
    }
    for line in verified.lines().filter(|l| !l.trim().is_empty()) {
        let at = format!("{}: verified.list: {line:?}", file.display());
        let Some((name, hexname)) = line.split_once(' ') else {
            sum.rejected
                .push(format!("{at}: expected `<alias> <sha256>`"));
            continue;
        };
        let d: Sha256Digest = match hexname.trim().parse() {
            Ok(d) => d,
            Err(err) => {
                sum.rejected.push(format!("{at}: {err:#}"));
                continue;
            }
        };
        let entry = cache.sha256_path(&d);
        if !entry.is_file() {
            sum.rejected.push(format!("{at}: no such entry"));
            continue;
        }
        match recheck_alias(name, &entry, &keys) {
            Ok(()) => {
                cache.record_alias(name, &d)?;
                sum.verified.push(name.to_string());
            }
            Err(err) => sum.rejected.push(format!("{at}: {err:#}")),
        }
    }
    if !sum.rejected.is_empty() {
        bail!(
            "{} entr{} rejected (the others were imported):\n    {}",
            sum.rejected.len(),
            if sum.rejected.len() == 1 { "y" } else { "ies" },
            sum.rejected.join("\n    ")
        );
    }
    Ok(sum)
}
