//! `artifacts.lock`: every external artifact ezimg may put on a node, pinned by digest.
//!
//! ```toml
//! lock_version = 1
//!
//! [[artifact]]
//! name = "nginx"                  # what layers name in `[[artifact]] name = …`
//! version = "1.23.0"
//! kind = "source"                 # rpm | tarball | source | image | zip | binary | manifest
//! file = "nginx-1.23.0.tar.gz"    # file name in mirrors and on the node
//! urls = ["https://…/nginx-1.23.0.tar.gz"]   # tried in order
//! sha256 = "<64 hex>"             # and/or sha512 = "<128 hex>"
//! size = 1234                     # optional; checked when present
//! verified = true                 # false: no public digest (trust on first use)
//! mirror_path = "a/b/file"        # optional path under `--mirror` (default: `file`)
//!
//! [[image]]                       # a container image the cluster runs
//! reference = "registry.k8s.io/pause:3.9"
//! digest = "sha256:<64 hex>"      # optional
//! used_by = "kubeadm"
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::hash::{Sha256Digest, Sha512Digest};
use crate::cluster::line_col;

/// The lock shipped inside the binary (the repository's `artifacts.lock`).
pub const EMBEDDED: &str = include_str!("../../artifacts.lock");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Rpm,
    Tarball,
    Source,
    Image,
    Zip,
    /// A single executable (kubeadm, kubelet, kubectl).
    Binary,
    /// A YAML manifest applied to the cluster (Calico's tigera-operator).
    Manifest,
}

/// A container image the cluster runs, by reference (and digest where one is published).
/// Recorded so an air-gapped site can mirror exactly these; nodes pull them through containerd.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePin {
    /// `repository:tag` as upstream publishes it.
    pub reference: String,
    /// `sha256:<hex>` of the manifest list, when published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// What runs it (`kubeadm`, `calico`).
    pub used_by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    lock_version: u32,
    #[serde(default, rename = "artifact")]
    artifacts: Vec<toml::Spanned<RawArtifact>>,
    #[serde(default, rename = "image")]
    images: Vec<toml::Spanned<ImagePin>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    name: String,
    version: String,
    kind: Kind,
    file: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    mirror_path: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    sha512: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default = "yes")]
    verified: bool,
}

fn yes() -> bool {
    true
}

/// One pinned artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    /// Plain file name (no `/`).
    pub file: String,
    /// Origins, tried in order (http or https).
    pub urls: Vec<reqwest::Url>,
    /// Path relative to a `--mirror` (defaults to `file`).
    pub mirror_path: Option<String>,
    pub sha256: Option<Sha256Digest>,
    pub sha512: Option<Sha512Digest>,
    pub size: Option<u64>,
    /// False for pins whose digest was not published upstream (recorded on first use).
    pub verified: bool,
    /// Line of the `[[artifact]]` table in the lock, for messages.
    pub line: usize,
}

impl Artifact {
    /// True when some digest is pinned (so a download can be checked).
    pub fn has_digest(&self) -> bool {
        self.sha256.is_some() || self.sha512.is_some()
    }
    /// The relative paths tried under a mirror, in order.
    pub fn mirror_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.mirror_path.iter().map(String::as_str).collect();
        if !v.contains(&self.file.as_str()) {
            v.push(&self.file);
        }
        v
    }
}

/// A parsed and validated lock.
#[derive(Debug, Clone)]
pub struct Lock {
    /// Where it came from (a path, or `<embedded>/artifacts.lock`).
    pub origin: String,
    /// The file on disk, when there is one (needed to record digests).
    pub path: Option<PathBuf>,
    /// The exact text (exported next to the cache entries).
    pub text: String,
    pub artifacts: Vec<Artifact>,
    /// The container images the cluster needs (`[[image]]`).
    pub images: Vec<ImagePin>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn valid_rel_path(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.contains('\\')
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Lock {
    /// Read and validate a lock file.
    pub fn load(path: &Path) -> Result<Lock> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lock = Lock::parse(&text, &path.display().to_string())?;
        lock.path = Some(path.to_path_buf());
        Ok(lock)
    }

    /// The lock compiled into the binary.
    pub fn embedded() -> Result<Lock> {
        Lock::parse(EMBEDDED, "<embedded>/artifacts.lock")
    }

    /// The lock a command uses, by one rule (never the current directory implicitly: the same
    /// command must give the same outputs wherever it runs):
    /// `--lock FILE` / `EZIMG_LOCK`, else `<--data DIR>/artifacts.lock`, else `artifacts.lock`
    /// beside the cluster file (`-c`), else the lock embedded in ezimg. Returns the lock and
    /// which of these it is.
    pub fn resolve(
        explicit: Option<&Path>,
        data_dir: Option<&Path>,
        cluster_file: Option<&Path>,
    ) -> Result<(Lock, &'static str)> {
        if let Some(p) = explicit {
            return Ok((Lock::load(p)?, "--lock / EZIMG_LOCK"));
        }
        if let Some(d) = data_dir {
            let p = d.join("artifacts.lock");
            if p.is_file() {
                return Ok((Lock::load(&p)?, "in the --data directory"));
            }
        }
        if let Some(c) = cluster_file {
            let p = c.with_file_name("artifacts.lock");
            if p.is_file() {
                return Ok((Lock::load(&p)?, "beside the cluster file"));
            }
        }
        Ok((Lock::embedded()?, "embedded in ezimg"))
    }

    /// `resolve` without a cluster file.
    pub fn discover(explicit: Option<&Path>, data_dir: Option<&Path>) -> Result<Lock> {
        Ok(Lock::resolve(explicit, data_dir, None)?.0)
    }

    /// How messages and plans name this lock: where it is and the sha256 of its text.
    pub fn describe(&self) -> String {
        format!(
            "{} (sha256 {})",
            self.origin,
            crate::digest::sha256_hex(self.text.as_bytes())
        )
    }

    /// Parse and validate; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Lock> {
        let raw: RawLock = crate::tomlfile::parse(text, origin)?;
        if raw.lock_version != 1 {
            bail!(
                "{origin}: lock_version {} is not supported (this ezimg reads 1)",
                raw.lock_version
            );
        }
        let mut seen = BTreeSet::new();
        let mut artifacts = Vec::new();
        for sp in raw.artifacts {
            let (line, _) = line_col(text, sp.span().start);
            let r = sp.into_inner();
            let at = format!("{origin}:{line}: artifact {:?}", r.name);
            if !valid_name(&r.name) {
                bail!("{at}: field `name`: use lowercase letters, digits, '.', '_' and '-'");
            }
            if !seen.insert(r.name.clone()) {
                bail!("{at}: field `name`: defined twice");
            }
            if r.version.trim().is_empty() {
                bail!("{at}: field `version` is empty");
            }
            if !valid_rel_path(&r.file) || r.file.contains('/') || r.file.starts_with('.') {
                bail!("{at}: field `file`: {:?} must be a plain file name", r.file);
            }
            let mut urls = Vec::new();
            for u in &r.urls {
                let url = reqwest::Url::parse(u)
                    .with_context(|| format!("{at}: field `urls`: {u:?} is not a URL"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    bail!("{at}: field `urls`: {u:?} must be http or https");
                }
                urls.push(url);
            }
            if let Some(mp) = &r.mirror_path
                && !valid_rel_path(mp)
            {
                bail!("{at}: field `mirror_path`: {mp:?} must be a relative path without `..`");
            }
            if urls.is_empty() && r.mirror_path.is_none() {
                bail!(
                    "{at}: give `urls`, or `mirror_path` for an artifact only found via --mirror"
                );
            }
            let sha256 = r
                .sha256
                .as_deref()
                .map(str::parse::<Sha256Digest>)
                .transpose()
                .with_context(|| format!("{at}: field `sha256`"))?;
            let sha512 = r
                .sha512
                .as_deref()
                .map(str::parse::<Sha512Digest>)
                .transpose()
                .with_context(|| format!("{at}: field `sha512`"))?;
            if r.verified && sha256.is_none() && sha512.is_none() {
                bail!(
                    "{at}: a verified pin needs `sha256` or `sha512`; for a file without a \
                     published digest write `verified = false` and run `ezimg lock`"
                );
            }
            if r.size == Some(0) {
                bail!("{at}: field `size` is 0");
            }
            artifacts.push(Artifact {
                name: r.name,
                version: r.version,
                kind: r.kind,
                file: r.file,
                urls,
                mirror_path: r.mirror_path,
                sha256,
                sha512,
                size: r.size,
                verified: r.verified,
                line,
            });
        }
        let mut images = Vec::new();
        for sp in raw.images {
            let (line, _) = line_col(text, sp.span().start);
            let i = sp.into_inner();
            let at = format!("{origin}:{line}: image {:?}", i.reference);
            let (repo, tag) = i.reference.rsplit_once(':').unwrap_or(("", ""));
            if repo.is_empty() || tag.is_empty() || tag.contains('/') {
                bail!("{at}: field `reference`: expected repository:tag");
            }
            if let Some(d) = &i.digest
                && !(d.len() == 71
                    && d.starts_with("sha256:")
                    && d[7..].bytes().all(|b| b.is_ascii_hexdigit()))
            {
                bail!("{at}: field `digest`: expected sha256:<64 hex>");
            }
            images.push(i);
        }
        Ok(Lock {
            origin: origin.to_string(),
            path: None,
            text: text.to_string(),
            artifacts,
            images,
        })
    }

    pub fn find(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }

    /// The artifact called `name`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<&Artifact> {
        self.find(name).with_context(|| {
            format!(
                "{}: no artifact {name:?} (known: {})",
                self.origin,
                self.names().join(", ")
            )
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.artifacts.iter().map(|a| a.name.clone()).collect()
    }
}

/// A digest (and size) learnt by `ezimg lock`, to be written back.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// Write `records` into the lock file at `path`, keeping its comments and layout
/// (sets `sha256` and `size` of each named `[[artifact]]`). The file is replaced atomically.
pub fn write_records(path: &Path, records: &[Record]) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let tables = doc
        .get_mut("artifact")
        .and_then(|i| i.as_array_of_tables_mut())
        .with_context(|| format!("{}: no [[artifact]] tables", path.display()))?;
    for rec in records {
        let t = tables
            .iter_mut()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(rec.name.as_str()))
            .with_context(|| format!("{}: no artifact {:?}", path.display(), rec.name))?;
        t["sha256"] = toml_edit::value(rec.sha256.hex());
        let size = i64::try_from(rec.size).context("size does not fit in a TOML integer")?;
        t["size"] = toml_edit::value(size);
    }
    let out = doc.to_string();
    // Re-validate before replacing the reviewed file.
    Lock::parse(&out, &path.display().to_string())?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, out.as_bytes())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_lock_is_valid() -> Result<()> {
        let lock = Lock::embedded()?;
        for n in [
            "kernel-ml",
            "nginx",
            "debian12-genericcloud",
            "ngx_healthcheck_module",
        ] {
            lock.get(n)?;
        }
        let deb = lock.get("debian12-genericcloud")?;
        assert!(deb.urls.is_empty() && deb.sha512.is_some());
        assert!(!lock.get("kernel-ml")?.verified);
        Ok(())
    }

    #[test]
    fn errors_name_line_and_field() {
        let text = "lock_version = 1\n\n[[artifact]]\nname = \"x\"\nversion = \"1\"\nkind = \"source\"\nfile = \"x.tar.gz\"\nurls = [\"https://example.invalid/x\"]\nsha256 = \"abc\"\n";
        let e = format!(
            "{:#}",
            Lock::parse(text, "t.lock")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        assert!(e.contains("t.lock:3") && e.contains("sha256"), "{e}");
    }
}
