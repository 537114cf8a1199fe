//! What a role's bundle pins for each artifact its layers need, and (with `build --fetch`) the
//! verified files themselves: lock artifacts from the cache or the network, `<stage>-stage`
//! artifacts from the build stage (compiled once, cached by the hash of every input).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::artifact::{self, Cache, FetchOptions, Lock};
use crate::bundle::{ArtifactPin, Signer};
use crate::cluster::Os;
use crate::data::DataTree;
use crate::stage;

/// Suffix of artifacts produced by a build stage (`nginx-stage` is the `nginx` stage's output).
pub const STAGE_SUFFIX: &str = "-stage";

#[derive(Debug, Default)]
pub struct Resolved {
    pub pins: BTreeMap<String, ArtifactPin>,
    /// Artifact name -> verified local file, for the artifacts that were fetched or built.
    pub files: BTreeMap<String, PathBuf>,
}

/// How `resolve` may get files: `None` only pins what is already known (no network, no compile).
pub struct Getter<'a> {
    pub fetch: &'a FetchOptions,
}

fn stage_pin(name: &str, key: &str, sha256: &str) -> ArtifactPin {
    ArtifactPin {
        sha256: Some(sha256.to_string()),
        file: format!("{name}-{}.tar.gz", &key[..key.len().min(16)]),
        signer: None,
    }
}

/// Pins (and with `get`, files) for `needed` artifact names.
pub fn resolve(
    lock: &Lock,
    cache: &Cache,
    data: Option<&Path>,
    os: Os,
    needed: &[String],
    get: Option<&Getter>,
) -> Result<Resolved> {
    let mut out = Resolved::default();
    let (stages, plain): (Vec<&String>, Vec<&String>) =
        needed.iter().partition(|n| n.ends_with(STAGE_SUFFIX));
    // The host builder is Debian 12: what it compiles needs Debian 12's glibc. Another target's
    // output comes from a VM builder run before (`ezimg stage build NAME --target OS`), found
    // by its inputs; without one, `--fetch` stops here, before anything is fetched.
    let mut stages = stages;
    if os != Os::Debian12 {
        for name in std::mem::take(&mut stages) {
            let pin = match built_for_target(lock, cache, data, os, name)? {
                Some((tarball, m)) => {
                    if get.is_some() {
                        out.files.insert(name.clone(), tarball);
                    }
                    stage_pin(name, &m.key, &m.output.sha256)
                }
                None if get.is_some() => {
                    let stage = name.trim_end_matches(STAGE_SUFFIX);
                    anyhow::bail!(
                        "artifact {name}: its build stage for {os} needs a builder of that OS: \
                         build it with the VM builder (`ezimg stage build {stage} --target {os} \
                         --deps-from DIR`: the {os} cloud image with the build dependencies as \
                         RPMs, no network), or use the distro package (role param \
                         {stage}_source = \"distro\")"
                    );
                }
                None => ArtifactPin {
                    sha256: None,
                    file: format!("{name}.tar.gz"),
                    signer: None,
                },
            };
            out.pins.insert(name.clone(), pin);
        }
    }
    for name in &plain {
        let a = lock.get(name)?;
        out.pins.insert(
            name.to_string(),
            ArtifactPin {
                // The lock's digest, or the one recorded when a signature or git tree check
                // passed (those pins need no digest in the lock).
                sha256: cache.known_sha256(a).as_ref().map(|d| d.hex()),
                file: a.file.clone(),
                signer: a.signer().map(|k| Signer {
                    fingerprint: k.fingerprint.clone(),
                    key: k.armored.clone(),
                    key_file: k.file.clone(),
                }),
            },
        );
    }
    if let Some(g) = get
        && !plain.is_empty()
    {
        for (n, p) in artifact::ensure(lock, &plain, g.fetch)? {
            out.files.insert(n, p);
        }
    }
    for name in stages {
        let stage_name = name.trim_end_matches(STAGE_SUFFIX);
        let st = stage::load(stage_name, data)
            .with_context(|| format!("artifact {name} comes from build stage {stage_name}"))?;
        let source_names: Vec<String> = st.spec.sources.iter().map(|s| s.name.clone()).collect();
        let sources: BTreeMap<String, PathBuf> = match get {
            Some(g) => artifact::ensure(lock, &source_names, g.fetch)?
                .into_iter()
                .collect(),
            None => {
                let mut found = BTreeMap::new();
                for s in &source_names {
                    if let Some(p) = lock.find(s).and_then(|a| cache.lookup(a)) {
                        found.insert(s.clone(), p);
                    }
                }
                if found.len() != source_names.len() {
                    out.pins.insert(
                        name.clone(),
                        ArtifactPin {
                            sha256: None,
                            file: format!("{name}.tar.gz"),
                            signer: None,
                        },
                    );
                    continue;
                }
                found
            }
        };
        let mut opts = stage::BuildOptions::new(cache.root());
        // The output is checked for the node's OS before it is cached or pinned.
        opts.target = os.as_str().to_string();
        opts.data = data.map(Path::to_path_buf);
        if get.is_some() {
            let o = stage::build(&st, &sources, &opts)?;
            out.pins.insert(
                name.clone(),
                stage_pin(name, &o.key, &o.manifest.output.sha256),
            );
            out.files.insert(name.clone(), o.tarball);
        } else {
            let key = stage::cache_key(&st, &sources, &opts)?;
            let pin = match stage::lookup(cache.root(), &key)? {
                Some((tarball, m)) if os == Os::Debian12 => {
                    // A cached output is pinned only if it runs on the node.
                    let target = stage::Target::load(&opts.target, data)?;
                    stage::target::check(&tarball, &target, Some(&st)).with_context(|| {
                        format!("artifact {name}: cached output {}", tarball.display())
                    })?;
                    stage_pin(name, &key, &m.output.sha256)
                }
                _ => ArtifactPin {
                    sha256: None,
                    file: format!("{name}.tar.gz"),
                    signer: None,
                },
            };
            out.pins.insert(name.clone(), pin);
        }
    }
    Ok(out)
}

/// The output of stage artifact `name` a VM builder made for `os` from the sources in the cache,
/// if there is one.
fn built_for_target(
    lock: &Lock,
    cache: &Cache,
    data: Option<&Path>,
    os: Os,
    name: &str,
) -> Result<Option<(PathBuf, stage::Manifest)>> {
    let stage_name = name.trim_end_matches(STAGE_SUFFIX);
    let st = stage::load(stage_name, data)
        .with_context(|| format!("artifact {name} comes from build stage {stage_name}"))?;
    let mut sources = BTreeMap::new();
    for s in &st.spec.sources {
        match lock.find(&s.name).and_then(|a| cache.lookup(a)) {
            Some(p) => sources.insert(s.name.clone(), p),
            None => return Ok(None),
        };
    }
    let mut opts = stage::BuildOptions::new(cache.root());
    opts.target = os.as_str().to_string();
    opts.data = data.map(Path::to_path_buf);
    stage::find_for_target(&st, &sources, &opts)
}

/// Put `files` in `dir` under their pinned names (hard link when possible), for `apply --artifacts`.
pub fn export_files(resolved: &Resolved, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, src) in &resolved.files {
        let pin = resolved
            .pins
            .get(name)
            .with_context(|| format!("artifact {name} has no pin"))?;
        let dst = dir.join(&pin.file);
        if std::fs::hard_link(src, &dst).is_err() {
            std::fs::copy(src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// The artifacts a role needs: the union of the `[[artifact]]` names of its layers (for every
/// OS the layers target), in layer order.
pub fn role_artifacts(tree: &DataTree, role: &str) -> Result<Vec<String>> {
    let catalog = crate::plan::Catalog::load(tree)?;
    let r = catalog.role(role)?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for l in &r.layers {
        let layer = catalog
            .layers
            .get(l)
            .with_context(|| format!("role {role:?}: layer {l:?} is not loaded"))?;
        for a in &layer.manifest.artifacts {
            if seen.insert(a.name.clone()) {
                out.push(a.name.clone());
            }
        }
    }
    Ok(out)
}

/// Names from `--role` (each), `--all` (the whole lock) and explicit names, checked against
/// the lock. A layer artifact named `<stage>-stage` is the output of a build stage, not a pin: it
/// stands for that stage's sources (`stages/<stage>.toml`, `[[source]] name`). Any other name the
/// lock lacks is an error naming the role.
pub fn select(
    lock: &Lock,
    data: Option<&std::path::Path>,
    roles: &[String],
    all: bool,
    names: &[String],
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    if all {
        out.extend(lock.names());
    }
    if !roles.is_empty() {
        let tree = DataTree::load(data)?;
        for role in roles {
            for n in role_artifacts(&tree, role)? {
                if lock.find(&n).is_some() {
                    out.push(n);
                } else if let Some(stage) = n.strip_suffix(STAGE_SUFFIX) {
                    let st = stage::load(stage, data).with_context(|| {
                        format!("role {role:?} needs {n:?}, the output of stage {stage:?}")
                    })?;
                    for src in &st.spec.sources {
                        if lock.find(&src.name).is_none() {
                            bail!(
                                "{}: source {:?} is not pinned in {}",
                                st.origin,
                                src.name,
                                lock.origin
                            );
                        }
                        out.push(src.name.clone());
                    }
                } else {
                    bail!(
                        "role {role:?} needs artifact {n:?}, which {} does not pin",
                        lock.origin
                    );
                }
            }
        }
    }
    out.extend(names.iter().cloned());
    let mut seen = BTreeSet::new();
    out.retain(|n| seen.insert(n.clone()));
    artifact::resolve(lock, &out)?;
    Ok(out)
}

/// Pins of every artifact any layer names, without fetching or compiling anything: what a
/// bundle built now would list.
pub fn artifact_pins(
    catalog: &crate::plan::Catalog,
    lock: &Lock,
) -> Result<BTreeMap<String, ArtifactPin>> {
    let mut names: Vec<String> = catalog
        .layers
        .values()
        .flat_map(|l| l.manifest.artifacts.iter().map(|a| a.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    let cache = Cache::resolve(None)?;
    Ok(resolve(lock, &cache, None, Os::Debian12, &names, None)?.pins)
}
