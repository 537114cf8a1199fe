//! `--out`: builds write into a staging folder inside it, then each role folder they touch is
//! swapped in with a rename, so a failed build leaves `--out` as it was.
//!
//! A build replaces exactly what it produces: the new role folder is the old one (hard links)
//! minus what this build is responsible for, plus what it wrote. `ezimg-outputs.json` records
//! every file ezimg wrote and for which role, node and format, so that a later build can tell
//! its own files from the operator's and remove the outputs of nodes and roles that left the
//! cluster: their ks.cfg and seeds hold secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;

/// The manifest's file name in `--out`.
pub const MANIFEST: &str = "ezimg-outputs.json";
const MANIFEST_VERSION: u32 = 1;

/// What kind of output a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Bundle,
    Kickstart,
    CloudInit,
    Qcow2,
    Artifacts,
    /// A node's bootable installer ISO (`--format iso`): holds its secrets.
    Iso,
    /// The PXE tree `pxe/` (`--format pxe`): the cluster's, not a role's.
    Pxe,
    /// The lock's container images as an OCI layout `images/` (`--format images`): the
    /// cluster's.
    Images,
}

impl Kind {
    /// Outputs of the whole cluster (recorded with an empty role): never stale by role.
    pub fn cluster_wide(self) -> bool {
        matches!(self, Kind::Pxe | Kind::Images)
    }
}

/// Who a file belongs to: a role's (bundle, image, artifacts) or one node's (ks.cfg, seed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// Empty for the cluster-wide kinds ([`Kind::cluster_wide`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    owner: Owner,
    sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    ezimg_outputs: u32,
    cluster: String,
    /// Path relative to `--out` -> what it is.
    files: BTreeMap<String, Record>,
}

/// The cluster as it is now, to tell which recorded outputs are stale.
pub struct Current<'a> {
    /// Hostname -> role of every node.
    pub nodes: BTreeMap<&'a str, &'a str>,
}

impl Current<'_> {
    /// Why `owner`'s outputs no longer belong to the cluster, if so.
    fn stale(&self, owner: &Owner) -> Option<String> {
        if owner.kind.cluster_wide() {
            return None;
        }
        match &owner.node {
            Some(n) => match self.nodes.get(n.as_str()) {
                None => Some(format!("node {n} is no longer in the cluster")),
                Some(r) if *r != owner.role => {
                    Some(format!("node {n} now has role {r}, not {}", owner.role))
                }
                Some(_) => None,
            },
            None => (!self.nodes.values().any(|r| *r == owner.role))
                .then(|| format!("role {} has no node in the cluster", owner.role)),
        }
    }
}

pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
    done: bool,
    /// `out` did not exist before: a failed build removes it again (if still empty).
    made_out: bool,
    old: Manifest,
    /// Files (or folders) written into staging, with their owner and, when the writer had the
    /// bytes at hand, their sha256.
    produced: Vec<(String, Owner, Option<String>)>,
    /// What this build is responsible for: recorded files of these owners that it does not
    /// write again are removed.
    scope: BTreeSet<Owner>,
    /// Files in `out` this build replaces though no manifest records them (a PXE tree `serve`
    /// wrote): not carried over into the new folder.
    superseded: BTreeSet<String>,
}

fn read_manifest(path: &Path, cluster: &str) -> Result<Manifest> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Manifest {
                ezimg_outputs: MANIFEST_VERSION,
                cluster: cluster.to_string(),
                files: BTreeMap::new(),
            });
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let m: Manifest = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not an ezimg output manifest (move it away, or use another --out)",
            path.display()
        )
    })?;
    if m.ezimg_outputs != MANIFEST_VERSION {
        anyhow::bail!(
            "{}: manifest version {} is not supported (this ezimg writes {MANIFEST_VERSION})",
            path.display(),
            m.ezimg_outputs
        );
    }
    if m.cluster != cluster {
        anyhow::bail!(
            "{} holds the outputs of cluster {:?}, not {cluster:?} ({}): build each cluster \
             into its own --out",
            path.parent().unwrap_or(path).display(),
            m.cluster,
            path.display()
        );
    }
    Ok(m)
}

/// What `ezimg build` recorded in `out`: the cluster's name and, per file (path relative to
/// `out`), whom it belongs to. For readers of a finished `--out` (`ezimg serve`), which must
/// tell a node's secret-bearing files from a role's public ones.
pub fn recorded(out: &Path) -> Result<(String, BTreeMap<String, Owner>)> {
    let path = out.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is {} the --out of `ezimg build`?)",
            path.display(),
            out.display()
        )
    })?;
    let m: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an ezimg output manifest", path.display()))?;
    if m.ezimg_outputs != MANIFEST_VERSION {
        anyhow::bail!(
            "{}: manifest version {} is not supported (this ezimg reads {MANIFEST_VERSION})",
            path.display(),
            m.ezimg_outputs
        );
    }
    let files = m.files.into_iter().map(|(k, r)| (k, r.owner)).collect();
    Ok((m.cluster, files))
}

impl Staging {
    /// Create `out` if needed and a fresh staging folder in it (same filesystem: renames are
    /// atomic). Refuses an `out` that holds another cluster's outputs.
    pub fn new(out: &Path, cluster: &str) -> Result<Self> {
        let made_out = !out.exists();
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating output directory {}", out.display()))?;
        let old = match read_manifest(&out.join(MANIFEST), cluster) {
            Ok(m) => m,
            Err(e) => {
                if made_out {
                    let _ = std::fs::remove_dir(out);
                }
                return Err(e);
            }
        };
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
            old,
            produced: Vec::new(),
            scope: BTreeSet::new(),
            superseded: BTreeSet::new(),
        })
    }

    /// Where to write `rel` while building.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The output directory itself (where the outputs end up).
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Say that the file `rel` of `out`, recorded or not, is not to be kept: this build
    /// writes its folder's generated files anew.
    pub fn supersede(&mut self, rel: String) {
        self.superseded.insert(rel);
    }

    /// Say that `rel` (a file or a folder, under `<role>/`) was written for `owner`.
    pub fn produced(&mut self, rel: &str, owner: Owner) {
        self.scope.insert(owner.clone());
        self.produced.push((rel.to_string(), owner, None));
    }

    /// Like [`Self::produced`] for one file whose sha256 is already known (a baked image: its
    /// manifest has it), so the commit does not hash hundreds of MiB again.
    pub fn produced_with_sha256(&mut self, rel: &str, owner: Owner, sha256: String) {
        self.scope.insert(owner.clone());
        self.produced.push((rel.to_string(), owner, Some(sha256)));
    }

    /// Write the file `rel` for `owner` (0600 when `private`: it holds secrets).
    pub fn write(&mut self, rel: &str, bytes: &[u8], private: bool, owner: Owner) -> Result<()> {
        let path = self.path(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        std::io::Write::write_all(&mut f, bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        self.scope.insert(owner.clone());
        self.produced
            .push((rel.to_string(), owner, Some(sha256_hex(bytes))));
        Ok(())
    }

    /// Say that this build is responsible for `owner`'s outputs even if it writes none (a
    /// kickstart no longer made for a debian12 node is removed).
    pub fn responsible_for(&mut self, owner: Owner) {
        self.scope.insert(owner);
    }

    /// Swap every touched role folder in and write the manifest. Returns one line per stale
    /// output removed (for nodes and roles that left the cluster).
    pub fn commit(mut self, current: &Current) -> Result<Vec<String>> {
        let mut files = self.old.files.clone();
        let mut remove: BTreeSet<String> = BTreeSet::new();
        let mut stale: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (rel, rec) in &self.old.files {
            if let Some(why) = current.stale(&rec.owner) {
                stale.entry(why).or_default().push(rel.clone());
            } else if !self.scope.contains(&rec.owner) {
                continue;
            }
            remove.insert(rel.clone());
            files.remove(rel);
        }
        // Before what this build wrote: a file it writes again is recorded anew.
        for rel in &self.superseded {
            files.remove(rel);
            remove.insert(rel.clone());
        }
        for (rel, owner, sha256) in &self.produced {
            if let Some(sha256) = sha256 {
                let rec = Record {
                    owner: owner.clone(),
                    sha256: sha256.clone(),
                };
                files.insert(rel.clone(), rec);
                continue;
            }
            if !self.dir.join(rel).exists() {
                continue;
            }
            for f in files_in(&self.dir, rel)? {
                let path = self.dir.join(&f);
                let h = crate::digest::sha256_file(&path)
                    .with_context(|| format!("hashing {}", path.display()))?;
                files.insert(
                    f,
                    Record {
                        owner: owner.clone(),
                        sha256: h,
                    },
                );
            }
        }
        let mut tops: BTreeSet<String> = BTreeSet::new();
        for rel in remove.iter().chain(self.produced.iter().map(|(r, _, _)| r)) {
            tops.insert(rel.split('/').next().unwrap_or(rel).to_string());
        }
        for top in &tops {
            self.swap(top, &remove)?;
        }
        let m = Manifest {
            ezimg_outputs: MANIFEST_VERSION,
            cluster: self.old.cluster.clone(),
            files,
        };
        let mut json = serde_json::to_vec_pretty(&m).context("serializing the manifest")?;
        json.push(b'\n');
        let tmp = self.dir.join(MANIFEST);
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        let dst = self.out.join(MANIFEST);
        std::fs::rename(&tmp, &dst)
            .with_context(|| format!("moving {} into place", dst.display()))?;
        self.done = true;
        remove_path(&self.dir)?;
        Ok(stale
            .into_iter()
            .map(|(why, rels)| {
                format!(
                    "removed {} output(s) ({why}; they held its secrets): {}",
                    rels.len(),
                    rels.join(", ")
                )
            })
            .collect())
    }

    /// Make `staging/top` the new `out/top`: keep every old file this build does not write or
    /// remove, then rename it into place.
    fn swap(&self, top: &str, remove: &BTreeSet<String>) -> Result<()> {
        let old_dir = self.out.join(top);
        let new_dir = self.dir.join(top);
        if old_dir.is_dir() {
            for rel in files_in(&self.out, top)? {
                let dst = self.dir.join(&rel);
                if remove.contains(&rel) || dst.exists() {
                    continue;
                }
                if let Some(p) = dst.parent() {
                    std::fs::create_dir_all(p)
                        .with_context(|| format!("creating {}", p.display()))?;
                }
                let src = self.out.join(&rel);
                if std::fs::hard_link(&src, &dst).is_err() {
                    std::fs::copy(&src, &dst).with_context(|| {
                        format!("copying {} to {}", src.display(), dst.display())
                    })?;
                }
            }
        }
        let aside = self.dir.join(format!(".old-{top}"));
        if old_dir.exists() {
            std::fs::rename(&old_dir, &aside)
                .with_context(|| format!("moving aside {}", old_dir.display()))?;
        }
        if new_dir.exists() {
            std::fs::rename(&new_dir, &old_dir)
                .with_context(|| format!("moving {} into place", old_dir.display()))?;
        }
        if aside.exists() {
            remove_path(&aside)?;
        }
        Ok(())
    }
}

/// Files under `root/rel` (or `rel` itself when it is a file), as paths relative to `root`.
fn files_in(root: &Path, rel: &str) -> Result<Vec<String>> {
    let start = root.join(rel);
    let meta = std::fs::symlink_metadata(&start)
        .with_context(|| format!("reading {}", start.display()))?;
    if !meta.is_dir() {
        return Ok(vec![rel.to_string()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![rel.to_string()];
    while let Some(d) = stack.pop() {
        let p = root.join(&d);
        for e in std::fs::read_dir(&p).with_context(|| format!("reading {}", p.display()))? {
            let e = e.with_context(|| format!("reading {}", p.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let child = format!("{d}/{name}");
            let ft = e
                .file_type()
                .with_context(|| format!("inspecting {}", e.path().display()))?;
            if ft.is_dir() {
                stack.push(child);
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn remove_path(p: &Path) -> Result<()> {
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
