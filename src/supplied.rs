//! Files a layer installs that are not in its folder but come from the build: the install
//! server (layer `install-server`) needs the ezimg executable, the cluster file and the lock on
//! the ops node. `plan` records where they go; [`fill`] reads them once the build knows its lock,
//! so `plan`, `check` and `build` refuse the same things (a binary that cannot run on the node).

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cluster::{Access, Loaded, Os};
use crate::digest::sha256_hex;
use crate::layer::Supplied;
use crate::plan::NodePlan;
use crate::stage::elf;
use crate::stage::target::Target;

/// The role parameter naming the binary; empty: this ezimg's own executable.
pub const BINARY_PARAM: &str = "install_server_binary";

/// What the build supplies, read at most once per build.
pub struct Supplies<'a> {
    pub loaded: &'a Loaded,
    pub lock: &'a crate::artifact::Lock,
    /// `--data`, which may hold other target lists (`stages/targets/`).
    pub data_dir: Option<&'a Path>,
    /// (path, bytes) of the binary, read on first use.
    binary: OnceCell<(PathBuf, Vec<u8>)>,
}

impl<'a> Supplies<'a> {
    pub fn new(
        loaded: &'a Loaded,
        lock: &'a crate::artifact::Lock,
        data_dir: Option<&'a Path>,
    ) -> Self {
        Supplies {
            loaded,
            lock,
            data_dir,
            binary: OnceCell::new(),
        }
    }
}

/// Fill every supplied file of `plan` (a no-op for nodes whose layers have none).
pub fn fill(plan: &mut NodePlan, s: &Supplies) -> Result<()> {
    let binary_param = plan
        .params
        .get(BINARY_PARAM)
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let (os, role, host) = (plan.os, plan.role.clone(), plan.hostname.clone());
    for l in plan.layers.iter_mut().filter(|l| l.skipped.is_none()) {
        for f in l.files.iter_mut() {
            let Some(kind) = f.supplied else { continue };
            let content = match kind {
                Supplied::EzimgBinary => binary(s, &binary_param, os, &role)
                    .with_context(|| format!("layer {} of node {host}: {}", l.name, f.dest))?,
                Supplied::ClusterFile => cluster_file(s.loaded)?,
                Supplied::Lock => s.lock.text.clone().into_bytes(),
            };
            f.sha256 = sha256_hex(&content);
            f.size = content.len();
            f.content = content;
        }
    }
    Ok(())
}

/// The cluster file as `ezimg serve` on the node reads it: the model written back without what
/// only the nodes' own seeds may carry (`[access]`, `vrrp.auth_pass`), since a bundle is shared.
pub fn cluster_file(loaded: &Loaded) -> Result<Vec<u8>> {
    let mut c = loaded.cluster.clone();
    c.access = Access::default();
    c.vrrp.auth_pass = None;
    let body = toml::to_string(&c).context("writing the cluster file for the install server")?;
    let origin = match &loaded.path {
        Some(p) => p
            .file_name()
            .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into()),
        None => "the embedded default cluster".into(),
    };
    Ok(format!(
        "# Written by ezimg build from {origin} for `ezimg serve` (ezimg-serve.service): the\n\
         # cluster without [access] and vrrp.auth_pass, which only the nodes' seeds carry.\n{body}"
    )
    .into_bytes())
}

/// Where the binary is: the parameter, relative to the cluster file's folder, or this
/// executable.
fn binary_path(loaded: &Loaded, param: &str) -> Result<PathBuf> {
    if param.is_empty() {
        return std::env::current_exe().context("finding this ezimg's own executable");
    }
    let base = loaded
        .path
        .as_deref()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(base.join(param))
}

/// The binary's bytes, refused unless it runs on `os` (the stage check's target lists).
fn binary(s: &Supplies, param: &str, os: Os, role: &str) -> Result<Vec<u8>> {
    let field = format!("{}: roles.{role}.{BINARY_PARAM}", s.loaded.origin());
    if s.binary.get().is_none() {
        let path = binary_path(s.loaded, param)?;
        let data = std::fs::read(&path).with_context(|| {
            if param.is_empty() {
                format!("reading this ezimg's own executable {}", path.display())
            } else {
                format!("{field} = {param:?}: reading {}", path.display())
            }
        })?;
        let _ = s.binary.set((path, data));
    }
    let Some((path, data)) = s.binary.get() else {
        bail!("{field}: the binary was not read");
    };
    let which = if param.is_empty() {
        format!("this ezimg's own executable {}", path.display())
    } else {
        format!("{field} = {param:?} ({})", path.display())
    };
    let target = Target::load(os.as_str(), s.data_dir)?;
    let problems = runs_on(data, &target).with_context(|| format!("{which}: reading it"))?;
    if !problems.is_empty() {
        bail!(
            "{which} does not run on the {role} node's OS {os}:\n  {}\nGive an ezimg that \
             runs on {os} (glibc {}): a static musl build (`cargo build --release --target \
             x86_64-unknown-linux-musl`) runs anywhere; name it in the cluster file as \
             `[roles.{role}] {BINARY_PARAM} = \"path/to/ezimg\"` (relative to the cluster file)",
            problems.join("\n  "),
            target.glibc
        );
    }
    Ok(data.clone())
}

/// Why an executable does not run on `target` (empty: it does): not an x86-64 ELF executable,
/// a glibc symbol version above the target's, a library the target lacks.
pub fn runs_on(data: &[u8], target: &Target) -> Result<Vec<String>> {
    use object::Object;
    let Some(needs) = elf::needs(data)? else {
        return Ok(vec!["not an ELF executable".into()]);
    };
    let mut out = Vec::new();
    let arch = object::File::parse(data)
        .context("reading the ELF header")?
        .architecture();
    if arch != object::Architecture::X86_64 {
        out.push(format!("built for {arch:?}, the nodes are x86_64"));
    }
    if let Some(v) = &needs.glibc
        && *v > target.glibc
    {
        out.push(format!(
            "requires GLIBC_{v}, {} has glibc {}",
            target.name, target.glibc
        ));
    }
    for so in &needs.needed {
        if !target.base.contains(so) {
            out.push(format!(
                "needs {so}, which {} does not list for {}",
                target.origin, target.name
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn this_binary_runs_on_debian12_but_not_el7() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let deb = Target::load("debian12", None).unwrap();
        assert_eq!(runs_on(&exe, &deb).unwrap(), Vec::<String>::new());
        let el7 = Target::load("el7", None).unwrap();
        let p = runs_on(&exe, &el7).unwrap();
        assert!(
            p.iter().any(|p| p.contains("GLIBC_") && p.contains("2.17")),
            "{p:?}"
        );
        assert_eq!(
            runs_on(b"#!/bin/sh\necho\n", &el7).unwrap(),
            ["not an ELF executable"]
        );
    }

    #[test]
    fn cluster_file_round_trips_without_secrets() {
        let mut loaded = crate::cluster::load(None).unwrap();
        loaded.cluster.vrrp.auth_pass = Some("s3cret".into());
        loaded.cluster.access.root_password_hash = Some("$6$abc$def".into());
        let text = String::from_utf8(cluster_file(&loaded).unwrap()).unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("$6$abc"),
            "{text}"
        );
        let back = crate::cluster::parse(&text, "supplied").unwrap();
        assert_eq!(back.nodes.len(), loaded.cluster.nodes.len());
        assert_eq!(back.name, loaded.cluster.name);
        assert_eq!(
            toml::to_string(&back).unwrap(),
            text.split_once("carry.\n").unwrap().1
        );
    }
}
