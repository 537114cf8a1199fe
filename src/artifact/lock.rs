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
//! git_tree = "<40 hex>"           # a commit archive: its content's git tree id
//! signed_by = "elrepo"            # an RPM: the `[[key]]` that must have signed it
//!
//! [[key]]                         # an OpenPGP key that signs pinned RPMs
//! name = "elrepo"
//! file = "keys/RPM-GPG-KEY-elrepo.org"   # the vendor's key file, relative to the lock
//! fingerprint = "<40 hex>"        # its full v4 fingerprint, checked against the file
//!
//! [[image]]                       # a container image the cluster runs
//! reference = "registry.k8s.io/pause:3.9"
//! digest = "sha256:<64 hex>"      # optional
//! used_by = "kubeadm"
//!
//! [[registry]]                    # where a registry's API is, when not at https://<its name>
//! name = "docker.io"
//! endpoint = "https://<host>"
//! ```
//!
//! A pin is verified by its digest, or, where upstream publishes none, by what the content
//! proves: `git_tree` (the archive unpacks to that git tree, see `gittree`) or `signed_by` (an
//! OpenPGP signature by the pinned key, see `rpmsig`). Those pins need no sha256 in the lock:
//! the cache records the sha256 of the verified file, and `ezimg lock` writes it here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::gittree::GitTreeId;
use crate::cluster::line_col;
use crate::digest::{Sha256Digest, Sha512Digest};

/// The lock shipped inside the binary (the repository's `artifacts.lock`).
pub const EMBEDDED: &str = include_str!("../../artifacts.lock");

/// The key files the embedded lock names, shipped with it (path relative to the lock).
const EMBEDDED_KEYS: &[(&str, &str)] = &[
    (
        "keys/RPM-GPG-KEY-elrepo.org",
        include_str!("../../keys/RPM-GPG-KEY-elrepo.org"),
    ),
    (
        "keys/RPM-GPG-KEY-centosofficial",
        include_str!("../../keys/RPM-GPG-KEY-centosofficial"),
    ),
];

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
    #[serde(default, rename = "key")]
    keys: Vec<toml::Spanned<RawKey>>,
    #[serde(default, rename = "registry")]
    registries: Vec<toml::Spanned<RegistryPin>>,
}

/// A registry whose API is not served at `https://<name>` (`[[registry]]`): image references
/// name the registry, pulls go to its endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryPin {
    /// The registry as image references write it (`docker.io`).
    pub name: String,
    /// `https://host[:port]` where its `/v2/` API answers.
    pub endpoint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    file: String,
    fingerprint: String,
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
    #[serde(default)]
    verified: Option<bool>,
    #[serde(default)]
    git_tree: Option<String>,
    #[serde(default)]
    signed_by: Option<String>,
}

/// An OpenPGP key that signs pinned artifacts (`[[key]]`).
#[derive(Debug, Clone)]
pub struct KeyPin {
    pub name: String,
    /// The vendor's key file, relative to the lock's folder.
    pub file: String,
    /// Full v4 fingerprint, 40 uppercase hex digits.
    pub fingerprint: String,
    /// Line of the `[[key]]` table, for messages.
    pub line: usize,
    /// The ASCII-armored key, checked against `fingerprint`; None when the file is missing.
    pub armored: Option<String>,
}

/// What, besides a digest, proves an artifact's content.
#[derive(Debug, Clone)]
pub enum Check {
    /// A commit archive whose unpacked content is this git tree.
    GitTree(GitTreeId),
    /// An RPM signed by this key.
    Signature(Arc<KeyPin>),
}

impl Check {
    /// A short name of the check, for messages.
    pub fn describe(&self) -> String {
        match self {
            Check::GitTree(id) => format!("git tree {id}"),
            Check::Signature(k) => {
                format!("OpenPGP signature by key {:?} ({})", k.name, k.fingerprint)
            }
        }
    }
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
    /// Verification by content (`git_tree`, `signed_by`), done on every download.
    pub check: Option<Check>,
    /// Line of the `[[artifact]]` table in the lock, for messages.
    pub line: usize,
}

impl Artifact {
    /// True when some digest is pinned (so a download can be checked).
    pub fn has_digest(&self) -> bool {
        self.sha256.is_some() || self.sha512.is_some()
    }
    /// False for commit archives: their bytes may change upstream while their tree does not,
    /// so their `sha256`/`size` only record the bytes last accepted.
    pub fn bytes_pinned(&self) -> bool {
        !matches!(self.check, Some(Check::GitTree(_)))
    }
    /// The key that must have signed this artifact, if any.
    pub fn signer(&self) -> Option<&KeyPin> {
        match &self.check {
            Some(Check::Signature(k)) => Some(k),
            _ => None,
        }
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
    /// The keys `signed_by` names (`[[key]]`).
    pub keys: Vec<Arc<KeyPin>>,
    /// Registry endpoints (`[[registry]]`).
    pub registries: Vec<RegistryPin>,
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
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        lock.attach_keys(|file| {
            let p = dir.join(file);
            match std::fs::read_to_string(&p) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
            }
        })?;
        Ok(lock)
    }

    /// The lock compiled into the binary (with the key files it names).
    pub fn embedded() -> Result<Lock> {
        let mut lock = Lock::parse(EMBEDDED, "<embedded>/artifacts.lock")?;
        lock.attach_keys(|file| {
            Ok(EMBEDDED_KEYS
                .iter()
                .find(|(f, _)| *f == file)
                .map(|(_, t)| t.to_string()))
        })?;
        Ok(lock)
    }

    /// Read each `[[key]]`'s file through `read` (None: missing), check that it is the key the
    /// fingerprint pins, and hand it to the artifacts it signs. A file missing next to the lock
    /// is taken from the keys shipped in ezimg when one has that fingerprint (the fingerprint is
    /// what is trusted, not where the file lies: a lock copied out of the repository by
    /// `ezimg lock --lock FILE` keeps working). Otherwise it is not an error here: fetching an
    /// artifact signed by that key is refused, naming the file.
    pub fn attach_keys(&mut self, read: impl Fn(&str) -> Result<Option<String>>) -> Result<()> {
        let mut keys = Vec::new();
        for k in &self.keys {
            let mut k = KeyPin::clone(k);
            let shipped = || {
                EMBEDDED_KEYS
                    .iter()
                    .find(|(_, t)| super::rpmsig::load_key(t, &k.fingerprint).is_ok())
                    .map(|(_, t)| t.to_string())
            };
            if let Some(text) = read(&k.file)?.or_else(shipped) {
                super::rpmsig::load_key(&text, &k.fingerprint).with_context(|| {
                    format!(
                        "{}:{}: key {:?}: file {}",
                        self.origin, k.line, k.name, k.file
                    )
                })?;
                k.armored = Some(text);
            }
            keys.push(Arc::new(k));
        }
        for a in &mut self.artifacts {
            if let Some(Check::Signature(k)) = &mut a.check
                && let Some(new) = keys.iter().find(|n| n.name == k.name)
            {
                *k = new.clone();
            }
        }
        self.keys = keys;
        Ok(())
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
        let mut keys: Vec<Arc<KeyPin>> = Vec::new();
        for sp in raw.keys {
            let (line, _) = line_col(text, sp.span().start);
            let k = sp.into_inner();
            let at = format!("{origin}:{line}: key {:?}", k.name);
            if !valid_name(&k.name) {
                bail!("{at}: field `name`: use lowercase letters, digits, '.', '_' and '-'");
            }
            if keys.iter().any(|o| o.name == k.name) {
                bail!("{at}: field `name`: defined twice");
            }
            if !valid_rel_path(&k.file) {
                bail!(
                    "{at}: field `file`: {:?} must be a path relative to the lock, without `..`",
                    k.file
                );
            }
            let fingerprint: String = k.fingerprint.chars().filter(|c| *c != ' ').collect();
            if fingerprint.len() != 40 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "{at}: field `fingerprint`: {:?} is not a full v4 fingerprint (40 hex digits)",
                    k.fingerprint
                );
            }
            keys.push(Arc::new(KeyPin {
                name: k.name,
                file: k.file,
                fingerprint: fingerprint.to_ascii_uppercase(),
                line,
                armored: None,
            }));
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
            let check = match (&r.git_tree, &r.signed_by) {
                (Some(_), Some(_)) => {
                    bail!("{at}: give `git_tree` or `signed_by`, not both")
                }
                (Some(t), None) => {
                    if !matches!(r.kind, Kind::Source | Kind::Tarball) {
                        bail!(
                            "{at}: field `git_tree`: only a source or tarball (a commit archive) has one"
                        );
                    }
                    let id = t
                        .to_ascii_lowercase()
                        .parse::<GitTreeId>()
                        .with_context(|| format!("{at}: field `git_tree`"))?;
                    Some(Check::GitTree(id))
                }
                (None, Some(k)) => {
                    if r.kind != Kind::Rpm {
                        bail!("{at}: field `signed_by`: only an rpm is checked by signature");
                    }
                    let key = keys.iter().find(|x| x.name == *k).with_context(|| {
                        format!(
                            "{at}: field `signed_by`: no [[key]] named {k:?} (known: {})",
                            keys.iter()
                                .map(|x| x.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                    Some(Check::Signature(key.clone()))
                }
                (None, None) => None,
            };
            if check.is_some() && r.verified == Some(false) {
                bail!(
                    "{at}: field `verified`: this pin is verified by its {}; remove `verified = false`",
                    if r.git_tree.is_some() {
                        "git tree"
                    } else {
                        "signature"
                    }
                );
            }
            let verified = r.verified.unwrap_or(true);
            if verified && sha256.is_none() && sha512.is_none() && check.is_none() {
                bail!(
                    "{at}: a verified pin needs `sha256` or `sha512` (or `git_tree` for a commit \
                     archive, `signed_by` for a signed rpm); for a file without a published \
                     digest write `verified = false` and run `ezimg lock`"
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
                verified,
                check,
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
            if images.iter().any(|o: &ImagePin| o.reference == i.reference) {
                bail!("{at}: field `reference`: listed twice");
            }
            images.push(i);
        }
        let mut registries: Vec<RegistryPin> = Vec::new();
        for sp in raw.registries {
            let (line, _) = line_col(text, sp.span().start);
            let r = sp.into_inner();
            let at = format!("{origin}:{line}: registry {:?}", r.name);
            if r.name.is_empty() || r.name.contains('/') {
                bail!("{at}: field `name`: a registry host name, without a path");
            }
            if registries.iter().any(|o| o.name == r.name) {
                bail!("{at}: field `name`: defined twice");
            }
            let url = reqwest::Url::parse(&r.endpoint).with_context(|| {
                format!("{at}: field `endpoint`: {:?} is not a URL", r.endpoint)
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.path() != "/" {
                bail!(
                    "{at}: field `endpoint`: {:?} must be http(s)://host[:port]",
                    r.endpoint
                );
            }
            registries.push(r);
        }
        Ok(Lock {
            origin: origin.to_string(),
            path: None,
            text: text.to_string(),
            artifacts,
            images,
            keys,
            registries,
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
    let mut edits = Vec::new();
    for rec in records {
        let size = i64::try_from(rec.size).context("size does not fit in a TOML integer")?;
        edits.push((
            rec.name.as_str(),
            vec![
                ("sha256", toml_edit::value(rec.sha256.hex())),
                ("size", toml_edit::value(size)),
            ],
        ));
    }
    edit_tables(path, "artifact", "name", &edits)
}

/// Set fields of `[[kind]]` tables in the lock file at `path`, keeping its comments and
/// layout: each edit names a table by its `key` field and gives the fields to set. The result
/// is validated as a lock before it replaces the reviewed file (atomically).
pub fn edit_tables(
    path: &Path,
    kind: &str,
    key: &str,
    edits: &[(&str, Vec<(&str, toml_edit::Item)>)],
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let tables = doc
        .get_mut(kind)
        .and_then(|i| i.as_array_of_tables_mut())
        .with_context(|| format!("{}: no [[{kind}]] tables", path.display()))?;
    for (id, fields) in edits {
        let t = tables
            .iter_mut()
            .find(|t| t.get(key).and_then(|n| n.as_str()) == Some(*id))
            .with_context(|| format!("{}: no {kind} {id:?}", path.display()))?;
        for (field, value) in fields {
            t[*field] = value.clone();
        }
    }
    let out = doc.to_string();
    Lock::parse(&out, &path.display().to_string())?;
    crate::fsutil::write_atomic(path, out.as_bytes())
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
        // No trust on first use left for the RPMs and commit archives: signatures and trees.
        for n in ["kernel-ml", "kernel-ml-devel", "libseccomp-el8"] {
            let a = lock.get(n)?;
            let k = a.signer().with_context(|| format!("{n} has no signer"))?;
            assert!(
                a.verified && k.armored.is_some(),
                "{n}: key {} not shipped",
                k.file
            );
        }
        assert_eq!(
            lock.get("kernel-ml")?
                .signer()
                .map(|k| k.fingerprint.as_str()),
            Some("96C0104F631547311E0BB1AE309BC305BAADAE52")
        );
        assert_eq!(
            lock.get("libseccomp-el8")?
                .signer()
                .map(|k| k.fingerprint.as_str()),
            Some("99DB70FAE1D7CE227FB6488205B555B38483C65D")
        );
        for (n, tree) in [
            (
                "ngx_healthcheck_module",
                "f420c64db1c03437c0c2679ed68e7049f355330d",
            ),
            (
                "ngx_http_proxy_connect_module",
                "249a003fdb4aba4ad1631fa7be8cd8d3b10c474d",
            ),
            (
                "ngx_http_status_code_counter",
                "df61d4ecb5a0f755df2db6bf143eb733c120461b",
            ),
        ] {
            match &lock.get(n)?.check {
                Some(Check::GitTree(id)) => assert_eq!(id.hex(), tree),
                other => panic!("{n}: {other:?}"),
            }
        }
        Ok(())
    }

    const KEYED: &str = "lock_version = 1\n\n[[key]]\nname = \"k\"\nfile = \"k.asc\"\nfingerprint = \"96C0 104F 6315 4731 1E0B B1AE 309B C305 BAAD AE52\"\n\n[[artifact]]\nname = \"x\"\nversion = \"1\"\nkind = \"rpm\"\nfile = \"x.rpm\"\nurls = [\"https://example.invalid/x.rpm\"]\n";

    fn parse_err(text: &str) -> String {
        match Lock::parse(text, "t.lock") {
            Ok(_) => String::new(),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn content_checks_are_validated() {
        let ok = Lock::parse(&format!("{KEYED}signed_by = \"k\"\n"), "t.lock");
        assert!(ok.is_ok(), "{:?}", ok.err());
        let e = parse_err(&format!("{KEYED}signed_by = \"nope\"\n"));
        assert!(
            e.contains("t.lock:8") && e.contains("no [[key]] named \"nope\""),
            "{e}"
        );
        let e = parse_err(&format!("{KEYED}signed_by = \"k\"\nverified = false\n"));
        assert!(e.contains("field `verified`"), "{e}");
        let e = parse_err(&format!("{KEYED}git_tree = \"f420c64d\"\n"));
        assert!(e.contains("git_tree"), "{e}");
        let e = parse_err(&KEYED.replace("BAAD AE52", "BAAD"));
        assert!(e.contains("t.lock:3") && e.contains("fingerprint"), "{e}");
        let e = parse_err(&KEYED.replace("fingerprint", "fpr"));
        assert!(e.contains("fpr"), "{e}");
    }

    #[test]
    fn a_key_file_must_be_the_pinned_key() {
        let mut lock = match Lock::parse(&format!("{KEYED}signed_by = \"k\"\n"), "t.lock") {
            Ok(l) => l,
            Err(e) => panic!("{e:#}"),
        };
        let centos = EMBEDDED_KEYS[1].1;
        let e = lock
            .attach_keys(|_| Ok(Some(centos.to_string())))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            e.contains("t.lock:3") && e.contains("99DB70FAE1D7CE227FB6488205B555B38483C65D"),
            "{e}"
        );
        // A file missing next to the lock: the key shipped in ezimg with that fingerprint.
        assert!(lock.attach_keys(|_| Ok(None)).is_ok());
        assert!(
            lock.get("x")
                .ok()
                .and_then(|a| a.signer())
                .is_some_and(|k| k.armored.as_deref() == Some(EMBEDDED_KEYS[0].1))
        );
        // No shipped key has the fingerprint: not an error at load; fetching the RPM is.
        let other = KEYED.replace(
            "96C0 104F 6315 4731 1E0B B1AE 309B C305 BAAD AE52",
            "0000 104F 6315 4731 1E0B B1AE 309B C305 BAAD AE52",
        );
        let mut lock = match Lock::parse(&format!("{other}signed_by = \"k\"\n"), "t.lock") {
            Ok(l) => l,
            Err(e) => panic!("{e:#}"),
        };
        assert!(lock.attach_keys(|_| Ok(None)).is_ok());
        assert!(
            lock.get("x")
                .ok()
                .and_then(|a| a.signer())
                .is_some_and(|k| k.armored.is_none())
        );
    }

    #[test]
    fn images_and_registries_are_validated() {
        let base =
            "lock_version = 1\n\n[[image]]\nreference = \"r.example/a:1\"\nused_by = \"t\"\n";
        assert!(Lock::parse(base, "t.lock").is_ok());
        let e = parse_err(&format!(
            "{base}\n[[image]]\nreference = \"r.example/a:1\"\nused_by = \"t\"\n"
        ));
        assert!(e.contains("t.lock:7") && e.contains("listed twice"), "{e}");
        let e = parse_err(&base.replace("used_by", "digest = \"sha256:ab\"\nused_by"));
        assert!(
            e.contains("t.lock:3") && e.contains("field `digest`"),
            "{e}"
        );
        let e = parse_err(&base.replace("used_by", "platform = \"x\"\nused_by"));
        assert!(e.contains("platform"), "{e}");
        let reg = "\n[[registry]]\nname = \"r.example\"\nendpoint = \"https://api.r.example\"\n";
        let lock = Lock::parse(&format!("{base}{reg}"), "t.lock");
        assert!(lock.is_ok_and(|l| l.registries.len() == 1));
        let e = parse_err(&format!(
            "{base}{}",
            reg.replace("https://api.r.example", "ftp://x")
        ));
        assert!(
            e.contains("t.lock:7") && e.contains("field `endpoint`"),
            "{e}"
        );
        let e = parse_err(&format!(
            "{base}{}",
            reg.replace("https://api.r.example", "https://x/v2")
        ));
        assert!(e.contains("field `endpoint`"), "{e}");
        let e = parse_err(&format!("{base}{reg}{reg}"));
        assert!(e.contains("defined twice"), "{e}");
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
