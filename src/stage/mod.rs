//! Build stages: compile something once (nginx with its patches, keepalived) from pinned
//! sources, pack what `make install` wrote into a deterministic tarball, and cache it by the
//! sha256 of every input, like a multi-stage container build.
//!
//! A stage is data (`stages/<name>.toml`, embedded, or `<data dir>/stages/`); see
//! `stages/README.md` for the format. [`build`] takes the resolved local source paths (artifact
//! name → archive or directory), so the CLI can point it at the artifact cache and tests at
//! fixtures.

pub mod cache;
pub mod elf;
pub mod run;
pub mod spec;
pub mod target;
pub mod vm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};

pub use cache::{default_cache_root, lookup, unpack_output};
pub use run::{Builder, build, cache_key, find_for_target};
pub use spec::{Rule, Stage, StageSpec};
pub use target::Target;

static STAGES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/stages");

/// The target the host builder builds for (it is a Debian 12 machine): the default of
/// [`BuildOptions::target`].
pub const HOST_TARGET: &str = "debian12";

/// Bumped when the builder or packing changes what a key produces.
pub const FORMAT: &str = "ezimg-stage-v1";

/// Names of the stages: embedded ones, plus those in `<data>/stages/` if given.
pub fn names(data: Option<&Path>) -> Result<Vec<String>> {
    let mut v: Vec<String> = STAGES
        .files()
        .filter_map(|f| {
            let p = f.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    if let Some(d) = data {
        let dir = d.join("stages");
        if dir.is_dir() {
            for e in std::fs::read_dir(&dir)
                .with_context(|| format!("reading directory {}", dir.display()))?
            {
                let p = e
                    .with_context(|| format!("reading directory {}", dir.display()))?
                    .path();
                if p.extension().is_some_and(|x| x == "toml")
                    && let Some(s) = p.file_stem().and_then(|s| s.to_str())
                {
                    v.push(s.to_string());
                }
            }
        }
    }
    v.sort();
    v.dedup();
    Ok(v)
}

/// The embedded stage `name` (`stages/<name>.toml` of this build of ezimg).
pub fn embedded(name: &str) -> Result<Stage> {
    let file = format!("{name}.toml");
    let f = STAGES.get_file(&file).with_context(|| {
        format!(
            "no stage named {name:?} (stages: {})",
            names(None).unwrap_or_default().join(", ")
        )
    })?;
    let text = f
        .contents_utf8()
        .with_context(|| format!("<embedded>/stages/{file}: not UTF-8"))?;
    let stage = Stage::parse(text, &format!("<embedded>/stages/{file}"), &|local| {
        STAGES
            .get_file(local)
            .map(|f| f.contents().to_vec())
            .with_context(|| format!("no file stages/{local} embedded"))
    })?;
    if stage.spec.name != name {
        anyhow::bail!(
            "<embedded>/stages/{file}: name: {:?} differs from the file name",
            stage.spec.name
        );
    }
    Ok(stage)
}

/// A stage by name or path: a path (`…/x.toml`), else `<data>/stages/<name>.toml` when it
/// exists, else the embedded stage.
pub fn load(name: &str, data: Option<&Path>) -> Result<Stage> {
    if name.ends_with(".toml") || name.contains('/') {
        return Stage::load_file(Path::new(name));
    }
    if let Some(d) = data {
        let p = d.join("stages").join(format!("{name}.toml"));
        if p.exists() {
            return Stage::load_file(&p);
        }
    }
    embedded(name)
}

/// How to run a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Cache root; outputs go to `<root>/stages/`.
    pub cache_root: PathBuf,
    /// Overrides of the stage's `[vars]` (part of the cache key).
    pub vars: BTreeMap<String, String>,
    /// `{{ jobs }}` (not part of the cache key).
    pub jobs: usize,
    /// Where temporary work directories go (default: the system temp dir).
    pub work_root: Option<PathBuf>,
    /// Keep the work directory (printed) instead of removing it.
    pub keep_work: bool,
    /// No progress lines on stderr.
    pub quiet: bool,
    /// Build even when the cache has the key (the new output replaces the entry).
    pub rebuild: bool,
    pub builder: Builder,
    /// The target the output is for (`stages/targets/<target>.toml`): the output is checked
    /// against it before it is cached, and a cached output before it is returned.
    pub target: String,
    /// `--data`: `<data>/stages/targets/` overrides the embedded target lists.
    pub data: Option<PathBuf>,
    /// The VM builder's limit for the whole build in the guest.
    pub vm_timeout: Duration,
    /// The VM builder for el7/el9: the vendor cloud image (from the verified cache) ...
    pub vendor_image: Option<PathBuf>,
    /// ... and the directory of build-dependency RPMs it installs offline.
    pub deps_from: Option<PathBuf>,
}

impl BuildOptions {
    pub fn new(cache_root: impl Into<PathBuf>) -> Self {
        BuildOptions {
            cache_root: cache_root.into(),
            vars: BTreeMap::new(),
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            work_root: None,
            keep_work: false,
            quiet: false,
            rebuild: false,
            builder: Builder::Host,
            target: HOST_TARGET.to_string(),
            data: None,
            vm_timeout: Duration::from_secs(4 * 3600),
            vendor_image: None,
            deps_from: None,
        }
    }
}

/// One input of a build, by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// `stage-file`, `source`, `local-patch`.
    pub kind: String,
    pub name: String,
    pub sha256: String,
}

/// A patch as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    pub patch: String,
    pub sha256: String,
    pub target: String,
}

/// An edit as applied, with how many places it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditRecord {
    pub file: String,
    pub rule: Rule,
    pub matches: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// `<key>.tar.gz`
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub entries: usize,
    /// Paths in the tarball are relative to `/`.
    pub paths: Vec<String>,
}

/// `<key>.json` next to the tarball.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub stage: String,
    pub description: String,
    pub key: String,
    /// Which builder ran and on what: `host: Debian GNU/Linux 12 (bookworm), cc (Debian 12.2.0-14) 12.2.0`.
    pub builder: String,
    pub prefix: String,
    pub vars: BTreeMap<String, String>,
    pub inputs: Vec<Input>,
    /// Unpacked source directories by name.
    pub sources: BTreeMap<String, String>,
    /// The configure command and flags as run (relative source paths).
    pub configure: Vec<String>,
    pub build: Vec<Vec<String>>,
    pub install: Vec<Vec<String>>,
    pub patches: Vec<PatchRecord>,
    pub edits: Vec<EditRecord>,
    pub output: OutputRecord,
    /// What `make install` wrote outside the output paths (not packed).
    pub dropped: Vec<String>,
    /// Seconds the cold build took.
    pub build_seconds: f64,
}

impl Manifest {
    /// The manifest next to a stage tarball: `T.json`, else `T` without `.tar.gz` plus `.json`.
    pub fn beside(tarball: &Path) -> Result<Manifest> {
        let t = tarball.display().to_string();
        let candidates = [
            format!("{t}.json"),
            format!("{}.json", t.strip_suffix(".tar.gz").unwrap_or(&t)),
        ];
        let m = candidates
            .iter()
            .find(|p| Path::new(p).is_file())
            .with_context(|| {
                format!(
                    "{t}: no manifest next to it ({}); pass --stage NAME",
                    candidates.join(" or ")
                )
            })?;
        let text = std::fs::read_to_string(m).with_context(|| format!("reading {m}"))?;
        serde_json::from_str(&text).with_context(|| format!("{m}: not a stage manifest"))
    }
}

/// The result of [`build`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// True when the cache had it: nothing was unpacked or compiled.
    pub cached: bool,
    pub key: String,
    pub tarball: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    pub elapsed: Duration,
}
