//! Layers (`layers/<name>/layer.toml`): one concern of the seeds as data.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::Os;
use crate::data::DataTree;
use crate::tomlfile;

fn default_mode() -> String {
    "0644".into()
}
fn yes() -> bool {
    true
}

/// A file the layer installs; `src` is rendered with minijinja unless `template = false`, or
/// (no `src`) the build supplies it (`supplied`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    #[serde(default)]
    pub src: String,
    /// Content that is not in the layer's folder but comes from the build (`crate::supplied`):
    /// the ezimg binary, the cluster file and the lock the install server reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplied: Option<Supplied>,
    pub dest: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "yes")]
    pub template: bool,
    /// Subset of the layer's targets this file is for (all when empty).
    #[serde(default)]
    pub os: Vec<Os>,
    /// A schema the rendered file must satisfy, checked at plan time (so `check`, `plan` and
    /// `build` all refuse a file the node's tool would reject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<FileCheck>,
    /// Optional minijinja expression per node: the file is installed only when it is true
    /// (the CA keys only on masters, the init config only on the first master).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileCheck {
    /// A kubeadm v1beta3 configuration (`kubeadm::parse` + `kubeadm::check`).
    Kubeadm,
}

/// What a `supplied` file holds (see `crate::supplied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Supplied {
    /// The ezimg executable, checked to run on the node's OS.
    EzimgBinary,
    /// The cluster file as `ezimg serve` reads it, without its secrets.
    ClusterFile,
    /// The artifacts.lock the build pinned from.
    Lock,
}

/// A flag a seed asks for that the layer deliberately leaves out, and why (`ezimg check`
/// lists them, so a departure from the seeds is never silent).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DroppedFlag {
    pub component: String,
    pub flag: String,
    #[serde(default)]
    pub seed: String,
    pub reason: String,
}

/// A step script, run by `apply` after the layer's files are installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    pub src: String,
    #[serde(default)]
    pub os: Vec<Os>,
}

/// A systemd unit installed to `/etc/systemd/system/<name>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSpec {
    pub src: String,
    /// Unit file name; defaults to the basename of `src` without `.j2`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "yes")]
    pub enable: bool,
    #[serde(default)]
    pub os: Vec<Os>,
}

impl UnitSpec {
    pub fn unit_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let base = self.src.rsplit('/').next().unwrap_or(&self.src);
            base.strip_suffix(".j2").unwrap_or(base).to_string()
        })
    }
}

/// An artifact from `artifacts.lock` the layer needs on the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    pub name: String,
    #[serde(default)]
    pub os: Vec<Os>,
    /// Optional minijinja expression: the artifact is needed only when it is true (e.g. the
    /// CNI plugins only where containerd does not bring its own).
    #[serde(default)]
    pub when: Option<String>,
}

/// The distribution packages the layer's scripts install (`ez_pkg_install`), per OS: `all` for
/// every targeted OS plus each OS's own names. Declared so the image bake can put them in the
/// base without reading scripts; `plan` checks them against the rendered scripts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    #[serde(default)]
    pub all: Vec<String>,
    #[serde(default)]
    pub el7: Vec<String>,
    #[serde(default)]
    pub el9: Vec<String>,
    #[serde(default)]
    pub debian12: Vec<String>,
}

impl Packages {
    /// The list of one OS alone (without `all`).
    fn own(&self, os: Os) -> &[String] {
        match os {
            Os::El7 => &self.el7,
            Os::El9 => &self.el9,
            Os::Debian12 => &self.debian12,
        }
    }

    /// The packages for `os`: `all`, then the OS's own, in declaration order.
    pub fn for_os(&self, os: Os) -> Vec<String> {
        self.all.iter().chain(self.own(os)).cloned().collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub description: String,
    /// Where in the seed guides the step comes from.
    #[serde(default)]
    pub seed: String,
    /// OS targets the layer acts on.
    pub targets: Vec<Os>,
    /// OS targets it deliberately does nothing on, and why: nothing is skipped silently.
    #[serde(default)]
    pub skip: BTreeMap<Os, String>,
    /// Optional minijinja expression over the render context; false => skipped with this reason.
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    #[serde(default, rename = "script")]
    pub scripts: Vec<ScriptSpec>,
    #[serde(default, rename = "unit")]
    pub units: Vec<UnitSpec>,
    #[serde(default, rename = "artifact")]
    pub artifacts: Vec<ArtifactSpec>,
    #[serde(default, rename = "dropped_flag")]
    pub dropped_flags: Vec<DroppedFlag>,
    #[serde(default)]
    pub packages: Packages,
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub manifest: Manifest,
}

impl Layer {
    pub fn dir(&self) -> String {
        format!("layers/{}", self.name)
    }
}

/// True when `list` is empty (applies to all) or names `os`.
pub fn for_os(list: &[Os], os: Os) -> bool {
    list.is_empty() || list.contains(&os)
}

pub fn load(tree: &DataTree, name: &str) -> Result<Layer> {
    let path = format!("layers/{name}/layer.toml");
    let text = tree
        .get_str(&path)
        .with_context(|| format!("missing layer {name:?}"))?;
    let manifest: Manifest = tomlfile::parse(text, &format!("{}/{path}", tree.origin))?;
    let layer = Layer {
        name: name.to_string(),
        manifest,
    };
    check(tree, &layer)?;
    Ok(layer)
}

/// Structural checks: every OS is targeted or skipped with a reason, sources exist.
fn check(tree: &DataTree, layer: &Layer) -> Result<()> {
    let m = &layer.manifest;
    let at = format!("{}/{}/layer.toml", tree.origin, layer.dir());
    for os in Os::ALL {
        let targeted = m.targets.contains(&os);
        let skipped = m.skip.contains_key(&os);
        if targeted == skipped {
            anyhow::bail!(
                "{at}: OS {os} must be either in `targets` or in `[skip]` with a reason (exactly one)"
            );
        }
    }
    for f in &m.files {
        if f.supplied.is_some() != f.src.is_empty() {
            anyhow::bail!(
                "{at}: file {:?} needs exactly one of `src` (in the folder) and `supplied`",
                f.dest
            );
        }
    }
    let srcs = m
        .files
        .iter()
        .filter(|f| f.supplied.is_none())
        .map(|f| (&f.src, &f.os))
        .chain(m.scripts.iter().map(|s| (&s.src, &s.os)))
        .chain(m.units.iter().map(|u| (&u.src, &u.os)));
    for (src, oses) in srcs {
        if tree.get(&format!("{}/{src}", layer.dir())).is_none() {
            anyhow::bail!("{at}: source {src:?} does not exist in {}", layer.dir());
        }
        if let Some(os) = oses.iter().find(|o| !m.targets.contains(o)) {
            anyhow::bail!("{at}: {src:?} names OS {os}, which the layer does not target");
        }
    }
    for f in &m.files {
        if !f.dest.starts_with('/') || f.dest.contains("/../") {
            anyhow::bail!("{at}: file dest {:?} must be an absolute path", f.dest);
        }
        if u32::from_str_radix(&f.mode, 8).map_or(true, |m| m > 0o7777) {
            anyhow::bail!("{at}: file {:?} has mode {:?}, not octal", f.dest, f.mode);
        }
    }
    for os in Os::ALL {
        if !m.packages.own(os).is_empty() && !m.targets.contains(&os) {
            anyhow::bail!("{at}: [packages] {os} is set, but the layer does not target {os}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in m.packages.for_os(os) {
            if !is_package_name(&p) {
                anyhow::bail!(
                    "{at}: [packages] {p:?} is not a package name (letters, digits, `+-._`) \
                     or an absolute path (a file the package provides)"
                );
            }
            if !seen.insert(p.clone()) {
                anyhow::bail!("{at}: [packages] {p:?} is listed twice for {os}");
            }
        }
    }
    Ok(())
}

/// What `ez_pkg_install` takes: a package name, or (rpm) an absolute path a package provides.
fn is_package_name(p: &str) -> bool {
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
    };
    match p.strip_prefix('/') {
        Some(path) => path.split('/').all(word),
        None => word(p) && !p.starts_with('-'),
    }
}

/// The arguments a rendered script passes to `ez_pkg_install` (backslash-continued lines
/// joined; a word starting a comment or a redirection ends the list).
pub fn pkg_install_args(script: &str) -> Vec<String> {
    let text = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("ez_pkg_install ") else {
            continue;
        };
        for w in rest.split_whitespace() {
            if w.starts_with('#') || w.starts_with(['|', '&', ';', '>', '<']) {
                break;
            }
            out.push(w.to_string());
        }
    }
    out
}

/// All layer names present in the tree.
pub fn names(tree: &DataTree) -> Vec<String> {
    tree.subdirs("layers")
        .into_iter()
        .filter(|n| tree.get(&format!("layers/{n}/layer.toml")).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_install_args_reads_continued_lines_and_stops_at_comments() {
        let script = "x\n  ez_pkg_install a b \\\n    c # d e\nez_pkg_installed f\nez_pkg_install /usr/bin/g >&2\n";
        assert_eq!(pkg_install_args(script), ["a", "b", "c", "/usr/bin/g"]);
        assert!(is_package_name("libglib2.0-0") && is_package_name("/usr/bin/curl"));
        for bad in ["-y", "a b", "", "/", "a/b", "$(x)"] {
            assert!(!is_package_name(bad), "{bad}");
        }
    }

    /// Every embedded layer that installs packages is planned on every OS it targets, in every
    /// role variant that selects it: planning checks its `[packages]` against its scripts.
    #[test]
    fn every_embedded_layer_declares_what_its_scripts_install() {
        let tree = DataTree::load(None).expect("data");
        let catalog = crate::plan::Catalog::load(&tree).expect("catalog");
        let variants = [
            "",
            "[roles.slb]\nlb = \"haproxy\"\n",
            "[roles.slb]\nnginx_source = \"distro\"\nkeepalived_source = \"distro\"\n",
            "[roles.ops]\nregistry = \"distribution\"\n",
            "[roles.ops]\ninstall_server = true\n",
        ];
        let mut seen: BTreeMap<(String, Os), Vec<String>> = BTreeMap::new();
        let dir = tempfile::tempdir().expect("tempdir");
        for os in Os::ALL {
            let distro = "[roles.ops]\ncontainerd_source = \"distro\"\n\
                          [roles.master]\ncontainerd_source = \"distro\"\n\
                          [roles.worker]\ncontainerd_source = \"distro\"\n";
            let extra = if os == Os::Debian12 {
                &[distro][..]
            } else {
                &[][..]
            };
            for v in variants.iter().chain(extra) {
                let text = crate::cluster::DEFAULT_TOML
                    .replace("os = \"el7\"", &format!("os = \"{os}\""))
                    + "\n"
                    + v;
                let f = dir.path().join("cluster.toml");
                std::fs::write(&f, text).expect("write");
                let loaded = crate::cluster::load(Some(&f)).expect("cluster");
                for node in &loaded.cluster.nodes {
                    let plan = crate::plan::plan_node(&catalog, &loaded, node)
                        .unwrap_or_else(|e| panic!("{os} {v:?} {}: {e:#}", node.hostname));
                    for l in plan.applied() {
                        seen.insert((l.name.clone(), os), l.packages.clone());
                    }
                }
            }
        }
        let mut checked = 0;
        for (name, layer) in &catalog.layers {
            let installs = layer.manifest.scripts.iter().any(|s| {
                tree.get_str(&format!("layers/{name}/{}", s.src))
                    .is_ok_and(|t| t.contains("ez_pkg_install "))
            });
            if !installs {
                continue;
            }
            for os in layer.manifest.targets.iter().copied() {
                let pkgs = seen
                    .get(&(name.clone(), os))
                    .unwrap_or_else(|| panic!("layer {name} never planned on {os}"));
                assert!(!pkgs.is_empty(), "layer {name} on {os}: no [packages]");
                checked += 1;
            }
        }
        assert!(checked >= 30, "only {checked} layer/OS pairs checked");
    }
}
