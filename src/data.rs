//! The data ezimg renders from (layers, roles, kickstart templates): embedded in the binary,
//! or read from a directory so that a new tuning step needs no recompile.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use include_dir::{Dir, include_dir};

static LAYERS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/layers");
static ROLES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/roles");
static KICKSTART: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/kickstart");

/// The top-level folders a data tree holds.
pub const TOP: [&str; 3] = ["layers", "roles", "kickstart"];

/// Every data file by its `/`-separated path (`layers/sysctl/layer.toml`).
#[derive(Debug, Clone)]
pub struct DataTree {
    files: BTreeMap<String, Vec<u8>>,
    /// Where the tree came from, for messages (`<embedded>` or a directory).
    pub origin: String,
    /// Top folders a `--data` directory lacks, taken from the embedded tree instead.
    pub embedded_tops: Vec<&'static str>,
}

fn walk_embedded(dir: &Dir<'_>, top: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for f in dir.files() {
        out.insert(
            format!("{top}/{}", f.path().to_string_lossy()),
            f.contents().to_vec(),
        );
    }
    for d in dir.dirs() {
        walk_embedded(d, top, out);
    }
}

fn walk_disk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("reading directory {}", dir.display()))?;
        let p = e.path();
        let ft = e
            .file_type()
            .with_context(|| format!("inspecting {}", p.display()))?;
        if ft.is_dir() {
            walk_disk(root, &p, out)?;
        } else if ft.is_file() {
            let rel = p
                .strip_prefix(root)
                .with_context(|| format!("{} is outside {}", p.display(), root.display()))?;
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            out.insert(key, bytes);
        }
    }
    Ok(())
}

impl DataTree {
    pub fn embedded() -> Self {
        let mut files = BTreeMap::new();
        walk_embedded(&LAYERS, "layers", &mut files);
        walk_embedded(&ROLES, "roles", &mut files);
        walk_embedded(&KICKSTART, "kickstart", &mut files);
        DataTree {
            files,
            origin: "<embedded>".into(),
            embedded_tops: TOP.to_vec(),
        }
    }

    /// Read `dir/{layers,roles,kickstart}`; a missing folder falls back to the embedded one
    /// (listed in `embedded_tops`, for the caller to say), but not all three: that is the
    /// wrong folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("data directory {} does not exist", dir.display());
        }
        if !TOP.iter().any(|t| dir.join(t).is_dir()) {
            anyhow::bail!(
                "data directory {} has none of layers/, roles/, kickstart/ (a copy of the \
                 repository's, or the folders to override)",
                dir.display()
            );
        }
        let embedded = Self::embedded();
        let mut files = BTreeMap::new();
        let mut embedded_tops = Vec::new();
        for top in TOP {
            let sub = dir.join(top);
            if sub.is_dir() {
                walk_disk(dir, &sub, &mut files)?;
            } else {
                embedded_tops.push(top);
                let prefix = format!("{top}/");
                for (k, v) in embedded.files.range(prefix.clone()..) {
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    files.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(DataTree {
            files,
            origin: dir.display().to_string(),
            embedded_tops,
        })
    }

    /// `--data DIR` if given, else the embedded tree.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        match dir {
            Some(d) => Self::from_dir(d),
            None => Ok(Self::embedded()),
        }
    }

    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    pub fn get_str(&self, path: &str) -> Result<&str> {
        let bytes = self
            .get(path)
            .with_context(|| format!("{}: no file {path}", self.origin))?;
        std::str::from_utf8(bytes).with_context(|| format!("{}/{path}: not UTF-8", self.origin))
    }

    /// Immediate sub-folder names of `dir` (e.g. the layer names under `layers`).
    pub fn subdirs(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|rest| rest.split_once('/').map(|(d, _)| d.to_string()))
            .collect();
        names.dedup();
        names
    }

    /// Files directly in `dir` whose name ends with `suffix`, as (name, path).
    pub fn files_in(&self, dir: &str, suffix: &str) -> Vec<(String, String)> {
        let prefix = format!("{dir}/");
        self.files
            .keys()
            .filter_map(|k| {
                let rest = k.strip_prefix(&prefix)?;
                (!rest.contains('/') && rest.ends_with(suffix))
                    .then(|| (rest.to_string(), k.clone()))
            })
            .collect()
    }
}
