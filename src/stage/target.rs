//! The stage check: a stage output is accepted for a target (el7, el9, debian12) only if every
//! ELF file in it can run there -- its highest GLIBC symbol version is at most the target's
//! glibc and each DT_NEEDED soname is one the target has. A binary compiled on the wrong
//! distribution would otherwise install fine and fail at its first start on the node.
//!
//! What a target has is data in the repository (`stages/targets/<target>.toml`, embedded, or
//! `<data>/stages/targets/`), so the check is the same on every machine: the target's glibc, the
//! sonames of its base install, and the sonames of each runtime package a stage may declare
//! (`[runtime] <target> = [...]` in the stage file).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::elf::{self, GlibcVersion};
use super::{STAGES, Stage};

/// A target's list as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    name: String,
    glibc: String,
    base: Vec<String>,
    #[serde(default)]
    packages: BTreeMap<String, Vec<String>>,
}

/// What a target node has, parsed.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub glibc: GlibcVersion,
    pub base: BTreeSet<String>,
    /// Runtime package -> the sonames it provides.
    pub packages: BTreeMap<String, BTreeSet<String>>,
    /// Where the list came from, for messages.
    pub origin: String,
}

impl Target {
    pub fn parse(text: &str, origin: &str) -> Result<Target> {
        let f: TargetFile = crate::tomlfile::parse(text, origin)?;
        let glibc = GlibcVersion::parse(&f.glibc).with_context(|| {
            format!(
                "{origin}: glibc: {:?} is not a version like \"2.17\"",
                f.glibc
            )
        })?;
        if f.base.is_empty() {
            bail!("{origin}: base: empty (a node has at least libc.so.6)");
        }
        Ok(Target {
            name: f.name,
            glibc,
            base: f.base.into_iter().collect(),
            packages: f
                .packages
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            origin: origin.to_string(),
        })
    }

    /// `<data>/stages/targets/<name>.toml` when it exists, else the embedded list.
    pub fn load(name: &str, data: Option<&Path>) -> Result<Target> {
        if let Some(d) = data {
            let p = d.join("stages/targets").join(format!("{name}.toml"));
            if p.exists() {
                let text = fs::read_to_string(&p)
                    .with_context(|| format!("reading target list {}", p.display()))?;
                return Self::checked_name(Target::parse(&text, &p.display().to_string())?, name);
            }
        }
        let file = format!("targets/{name}.toml");
        let f = STAGES.get_file(&file).with_context(|| {
            format!(
                "no target list named {name:?} (targets: {})",
                names().join(", ")
            )
        })?;
        let origin = format!("<embedded>/stages/{file}");
        let text = f
            .contents_utf8()
            .with_context(|| format!("{origin}: not UTF-8"))?;
        Self::checked_name(Target::parse(text, &origin)?, name)
    }

    fn checked_name(t: Target, name: &str) -> Result<Target> {
        if t.name != name {
            bail!(
                "{}: name: {:?} differs from the file name",
                t.origin,
                t.name
            );
        }
        Ok(t)
    }

    /// The sonames a node of this target has for `stage`: the base install plus the stage's
    /// declared runtime packages. A declared package the list does not know is an error (the
    /// list is to be extended, not guessed).
    pub fn allowed_for(&self, stage: Option<&Stage>) -> Result<BTreeSet<String>> {
        let mut allowed = self.base.clone();
        let Some(stage) = stage else {
            return Ok(allowed);
        };
        for p in stage.spec.runtime.get(&self.name).into_iter().flatten() {
            let sonames = self.packages.get(p).with_context(|| {
                format!(
                    "{}: runtime.{}: package {p:?} is not in {} [packages] (known: {}); add the \
                     sonames it provides there",
                    stage.origin,
                    self.name,
                    self.origin,
                    self.packages.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            allowed.extend(sonames.iter().cloned());
        }
        Ok(allowed)
    }

    fn runtime_note(&self, stage: Option<&Stage>) -> String {
        match stage.and_then(|s| s.spec.runtime.get(&self.name)) {
            Some(p) if !p.is_empty() => format!("base + runtime packages {}", p.join(", ")),
            _ => "base; the stage declares no runtime packages for it".into(),
        }
    }
}

/// Names of the embedded target lists.
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = STAGES
        .get_dir("targets")
        .map(|d| {
            d.files()
                .filter_map(|f| {
                    let p = f.path();
                    (p.extension()? == "toml")
                        .then(|| p.file_stem()?.to_str().map(str::to_string))?
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// One ELF file of a stage output that cannot run on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path inside the stage tarball (`ezops/service/nginx/sbin/nginx`).
    pub file: String,
    pub what: String,
}

/// Check every ELF file in a stage tarball against `target`; returns the problems (empty: the
/// output runs there). Files that are not ELF, and static binaries, are ignored. Sonames of
/// shared libraries the tarball itself ships count as present.
pub fn problems(tarball: &Path, target: &Target, stage: Option<&Stage>) -> Result<Vec<Problem>> {
    let allowed = target.allowed_for(stage)?;
    let f = fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(f)));
    let mut found: Vec<(String, elf::Needs)> = Vec::new();
    let mut shipped: BTreeSet<String> = BTreeSet::new();
    for e in ar
        .entries()
        .with_context(|| format!("reading {}", tarball.display()))?
    {
        let mut e = e.with_context(|| format!("reading {}", tarball.display()))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = e
            .path()
            .with_context(|| format!("{}: an entry name", tarball.display()))?
            .to_string_lossy()
            .into_owned();
        let mut magic = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            let r = e
                .read(&mut magic[n..])
                .with_context(|| format!("{}: reading {path}", tarball.display()))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if !elf::is_elf(&magic[..n]) {
            continue;
        }
        let mut data = magic[..n].to_vec();
        e.read_to_end(&mut data)
            .with_context(|| format!("{}: reading {path}", tarball.display()))?;
        let needs = elf::needs(&data)
            .with_context(|| format!("{}: {path}: not a readable ELF file", tarball.display()))?
            .with_context(|| format!("{}: {path}: not an ELF file", tarball.display()))?;
        if let Some(s) = &needs.soname {
            shipped.insert(s.clone());
        }
        if let Some(base) = Path::new(&path).file_name().and_then(|b| b.to_str()) {
            shipped.insert(base.to_string());
        }
        found.push((path, needs));
    }
    let mut out = Vec::new();
    for (path, needs) in found {
        if let Some(v) = &needs.glibc
            && *v > target.glibc
        {
            out.push(Problem {
                file: path.clone(),
                what: format!(
                    "requires GLIBC_{v}, {} has glibc {}",
                    target.name, target.glibc
                ),
            });
        }
        for s in &needs.needed {
            if !allowed.contains(s) && !shipped.contains(s) {
                out.push(Problem {
                    file: path.clone(),
                    what: format!(
                        "needs {s}, which {} does not list for {} ({})",
                        target.origin,
                        target.name,
                        target.runtime_note(stage)
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Refuse a stage output that cannot run on `target`: the error names each file, the symbol
/// version or soname, and the target.
pub fn check(tarball: &Path, target: &Target, stage: Option<&Stage>) -> Result<()> {
    let p = problems(tarball, target, stage)?;
    if p.is_empty() {
        return Ok(());
    }
    let what = stage.map_or_else(
        || tarball.display().to_string(),
        |s| format!("stage {}", s.spec.name),
    );
    let lines: Vec<String> = p
        .iter()
        .map(|p| format!("  {}: {}", p.file, p.what))
        .collect();
    bail!(
        "{what}: the output does not run on {} ({} problem(s)):\n{}",
        target.name,
        p.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn embedded_lists_parse_with_their_glibc() {
        assert_eq!(names(), ["debian12", "el7", "el9"]);
        for (n, g) in [("el7", "2.17"), ("el9", "2.34"), ("debian12", "2.36")] {
            let t = Target::load(n, None).unwrap();
            assert_eq!(t.glibc, GlibcVersion::parse(g).unwrap());
            assert!(t.base.contains("libc.so.6"), "{n}");
        }
        let e = Target::load("el8", None).unwrap_err().to_string();
        assert!(e.contains("el8") && e.contains("debian12, el7, el9"), "{e}");
    }

    #[test]
    fn product_stages_declare_known_runtime_packages() {
        for s in ["nginx", "keepalived"] {
            let st = crate::stage::embedded(s).unwrap();
            for t in names() {
                let target = Target::load(&t, None).unwrap();
                assert!(
                    st.spec.runtime.contains_key(&t),
                    "stage {s}: no runtime.{t}"
                );
                target.allowed_for(Some(&st)).unwrap();
            }
            // The layer that unpacks the output declares (and so installs) the same packages
            // on the node, for each OS.
            let tree = crate::data::DataTree::load(None).unwrap();
            let layer = crate::layer::load(&tree, s).unwrap();
            for (t, pkgs) in &st.spec.runtime {
                let os: crate::cluster::Os = t.parse().unwrap();
                let declared = layer.manifest.packages.for_os(os);
                for p in pkgs {
                    assert!(
                        declared.contains(p),
                        "stage {s}: runtime.{t} package {p} is not in layers/{s} [packages] {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_list_names_file_and_field() {
        let e = Target::parse(
            "name = \"x\"\nglibc = \"two\"\nbase = [\"libc.so.6\"]\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("x.toml: glibc") && e.contains("two"), "{e}");
        let e = Target::parse("name = \"x\"\nglibc = \"2.17\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("base"), "{e}");
    }
}
