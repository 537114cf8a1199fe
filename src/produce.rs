//! What `build` renders for a role, shared with `check`: `build` writes each piece into its
//! staging folder, `check` only looks at it. One code path for both is what makes "whatever
//! `check` passes, `build` builds" hold, and the static checks (`lint`) see the bytes that ship.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::artifact::{Cache, FetchOptions, Lock};
use crate::bundle::{self, Bundle};
use crate::cli::Format;
use crate::cluster::{Loaded, Os};
use crate::data::DataTree;
use crate::lint::BashSyntax;
use crate::outdir::{Kind, Owner};
use crate::output::{
    BundleRef, NodeInput, cloudinit, installer_iso, kickstart, seed_fat, seed_iso,
};
use crate::pins;
use crate::plan::{self, Catalog, NodePlan};
use crate::secrets::Store;

/// One rendered output file.
pub struct Piece<'a> {
    /// Path under `--out`: `<role>/<node>/ks.cfg`.
    pub rel: String,
    pub bytes: &'a [u8],
    /// Holds secrets (ks.cfg, seeds): written 0600.
    pub private: bool,
    pub owner: Owner,
}

/// Everything rendering needs besides the role.
pub struct Job<'a> {
    pub loaded: &'a Loaded,
    pub tree: &'a DataTree,
    pub catalog: &'a Catalog<'a>,
    pub store: &'a Store,
    pub lock: &'a Lock,
    pub cache: &'a Cache,
    /// `--data`, where stages may also live.
    pub data_dir: Option<&'a std::path::Path>,
    pub formats: &'a [Format],
    /// `--bundle-url`: where `--out` is served; a node fetches `<base>/<role>/<bundle file>`
    /// (else the bundle is embedded in its kickstart and seed).
    pub bundle_base: Option<String>,
    pub artifacts_from: Option<String>,
    /// `build --fetch`: get artifacts and compile stages; `None` pins only what is known.
    pub fetch: Option<&'a FetchOptions>,
    /// The files layers get from the build (the install server's binary, cluster file, lock).
    pub supplies: &'a crate::supplied::Supplies<'a>,
}

/// A rendered role.
pub struct Rendered {
    pub plans: Vec<NodePlan>,
    pub bundle: Bundle,
    /// Verified files of the role's artifacts that are at hand (cache, fetched, built).
    pub resolved: pins::Resolved,
    /// (artifact, why) the nodes would lack.
    pub missing: Vec<(String, String)>,
    /// `--format iso`: the installer ISOs to remaster (slow, big: `build` writes them once it
    /// knows the build goes ahead; `check` never asks for them).
    pub isos: Vec<PendingIso>,
}

/// A node's installer ISO, rendered but not written.
pub struct PendingIso {
    pub role: String,
    pub node: String,
    /// Path under `--out`: `<role>/<node>/<node>-install.iso`.
    pub rel: String,
    pub source: installer_iso::Source,
    /// The kickstart that goes on it (bundle and artifacts from the medium).
    pub ks: String,
    /// The node's artifacts: (path on the ISO, verified cache file).
    pub artifacts: Vec<(String, std::path::PathBuf)>,
}

/// The installer ISO pin `--format iso` remasters for `os`.
pub fn installer_pin(os: Os) -> Option<&'static str> {
    match os {
        Os::El7 => Some("centos7-installer-iso"),
        Os::El9 => Some("rocky9-boot-iso"),
        Os::Debian12 => None,
    }
}

/// The pinned installer ISO `name` in the verified cache (fetched first with `fetch` when it
/// has a digest), or why it is not at hand (`--format iso` and `--format pxe` both use it).
pub fn verified_installer(
    lock: &Lock,
    cache: &Cache,
    name: &str,
    fetch: Option<&FetchOptions>,
) -> Result<std::result::Result<std::path::PathBuf, String>> {
    let art = lock.find(name).with_context(|| {
        format!(
            "the installer ISO `{name}` is not pinned in the lock {}",
            lock.origin
        )
    })?;
    if cache.lookup(art).is_none()
        && art.sha256.is_some()
        && let Some(f) = fetch
    {
        crate::artifact::ensure(lock, &[name], f)?;
    }
    Ok(cache.lookup(art).ok_or_else(|| {
        if art.sha256.is_none() && art.sha512.is_none() {
            format!(
                "no digest pinned (`ezimg lock {name}` on a machine that reaches it, or `--mirror`)"
            )
        } else {
            format!(
                "{} is not in the verified cache (`ezimg fetch {name}`, or `build --fetch [--mirror URL|DIR]`)",
                art.file
            )
        }
    }))
}

/// The verified vendor ISO for `os`, read; or why it is not at hand.
fn installer_source(
    job: &Job,
    role: &str,
) -> Result<std::result::Result<installer_iso::Source, (String, String)>> {
    let os = job.loaded.cluster.os;
    let Some(name) = installer_pin(os) else {
        anyhow::bail!("--format iso is for el7 and el9 (a kickstart installer), not {os}");
    };
    let art = job.lock.find(name).with_context(|| {
        format!(
            "--format iso remasters the installer ISO `{name}`, which the lock {} does not pin",
            job.lock.origin
        )
    })?;
    let path = match verified_installer(job.lock, job.cache, name, job.fetch)? {
        Ok(p) => p,
        Err(why) => {
            return Ok(Err((
                name.to_string(),
                format!("{why}; no ISO is written for role {role}"),
            )));
        }
    };
    let src = installer_iso::inspect(&path)
        .with_context(|| format!("the installer ISO `{name}` ({})", art.file))?;
    Ok(Ok(src))
}

/// The owner of a node's output of `format`, if it has per-node outputs.
pub fn node_owner(role: &str, node: &str, format: Format) -> Option<Owner> {
    let kind = match format {
        Format::Kickstart => Kind::Kickstart,
        Format::CloudInit => Kind::CloudInit,
        Format::Iso => Kind::Iso,
        Format::Bundle | Format::Qcow2 | Format::Pxe | Format::Images => return None,
    };
    Some(Owner {
        role: role.to_string(),
        node: Some(node.to_string()),
        kind,
    })
}

/// The owner of a role-level output.
pub fn role_owner(role: &str, kind: Kind) -> Owner {
    Owner {
        role: role.to_string(),
        node: None,
        kind,
    }
}

/// Render `role` (every node's plan, its bundle, and for each node, or only `only`, the
/// requested per-node outputs), handing each file to `sink`; the scripts go to `lint`, which
/// the caller finishes once all roles are rendered.
pub fn role(
    job: &Job,
    role: &str,
    only: Option<&str>,
    lint: &mut BashSyntax,
    sink: &mut dyn FnMut(Piece) -> Result<()>,
) -> Result<Rendered> {
    let c = &job.loaded.cluster;
    let role_nodes: Vec<_> = c.nodes_of(role).collect();
    let mut plans = role_nodes
        .iter()
        .map(|n| plan::plan_node(job.catalog, job.loaded, n))
        .collect::<Result<Vec<_>>>()?;
    for p in &mut plans {
        crate::supplied::fill(p, job.supplies)?;
    }
    // The bundle carries every node's steps, whichever nodes this build writes.
    for p in &plans {
        for l in p.applied() {
            for s in &l.scripts {
                lint.check(
                    &format!(
                        "{}/layers/{}/{} (rendered for {})",
                        job.tree.origin, l.name, s.src, p.hostname
                    ),
                    &s.content,
                )?;
            }
        }
    }
    let mut needed: Vec<String> = plans.iter().flat_map(NodePlan::artifacts).collect();
    needed.sort();
    needed.dedup();
    let getter = job.fetch.map(|f| pins::Getter { fetch: f });
    let mut resolved = pins::resolve(
        job.lock,
        job.cache,
        job.data_dir,
        c.os,
        &needed,
        getter.as_ref(),
    )?;
    let mut missing = missing_artifacts(role, c.os, job, &mut resolved);
    let iso_source = if job.formats.contains(&Format::Iso) {
        match installer_source(job, role)? {
            Ok(src) => Some(src),
            Err(m) => {
                missing.push(m);
                None
            }
        }
    } else {
        None
    };
    let mut isos = Vec::new();
    let b = bundle::build(role, &plans, &resolved.pins)?;
    if job.formats.contains(&Format::Bundle) {
        let rel = format!("{role}/{}", b.file_name);
        let owner = role_owner(role, Kind::Bundle);
        sink(Piece {
            rel: rel.clone(),
            bytes: &b.bytes,
            private: false,
            owner: owner.clone(),
        })?;
        sink(Piece {
            rel: format!("{rel}.sha256"),
            bytes: bundle::sha256_line(&b.sha256, &b.file_name).as_bytes(),
            private: false,
            owner,
        })?;
    }
    let bref = BundleRef {
        file_name: b.file_name.clone(),
        sha256: b.sha256.clone(),
        bytes: b.bytes.clone(),
        url: job
            .bundle_base
            .as_ref()
            .map(|base| format!("{base}/{role}/{}", b.file_name)),
        // Only debian12 roles are baked; their seeds are for that image.
        in_image: job.formats.contains(&Format::Qcow2) && c.os == Os::Debian12,
    };
    for (node, p) in role_nodes.iter().zip(&plans) {
        if only.is_some_and(|o| o != node.hostname) {
            continue;
        }
        let input = NodeInput {
            cluster: c,
            node,
            plan: p,
            bundle: &bref,
            secrets: crate::secrets::node_secrets(job.store, p)?,
            artifacts_from: job.artifacts_from.clone(),
        };
        lint.check(
            &format!("the bootstrap script of node {}", node.hostname),
            bundle::bootstrap_script(&input).as_bytes(),
        )?;
        let dir = format!("{role}/{}", node.hostname);
        if job.formats.contains(&Format::Kickstart) && c.os != Os::Debian12 {
            let ks = kickstart::render(job.tree, &input)
                .with_context(|| format!("kickstart for {}", node.hostname))?;
            sink(Piece {
                rel: format!("{dir}/ks.cfg"),
                bytes: ks.as_bytes(),
                private: true,
                owner: node_owner(role, &node.hostname, Format::Kickstart)
                    .context("kickstart is per node")?,
            })?;
        }
        if let Some(src) = &iso_source {
            isos.push(node_iso(job, &input, src, &resolved, &dir, &mut missing)?);
        }
        if job.formats.contains(&Format::CloudInit) {
            let seed = cloudinit::render(&input)
                .with_context(|| format!("cloud-init seed for {}", node.hostname))?;
            let owner = node_owner(role, &node.hostname, Format::CloudInit)
                .context("cloud-init is per node")?;
            for (name, bytes) in seed.files() {
                sink(Piece {
                    rel: format!("{dir}/seed/{name}"),
                    bytes,
                    private: true,
                    owner: owner.clone(),
                })?;
            }
            let fat = seed_fat::image(&seed.files())
                .with_context(|| format!("FAT seed image for {}", node.hostname))?;
            sink(Piece {
                rel: format!("{dir}/seed.img"),
                bytes: &fat,
                private: true,
                owner: owner.clone(),
            })?;
            let iso = seed_iso::image(&seed.files())
                .with_context(|| format!("ISO seed image for {}", node.hostname))?;
            sink(Piece {
                rel: format!("{dir}/seed.iso"),
                bytes: &iso,
                private: true,
                owner,
            })?;
        }
    }
    Ok(Rendered {
        plans,
        bundle: b,
        resolved,
        missing,
        isos,
    })
}

/// Render what node `input`'s installer ISO holds: a kickstart that takes the bundle and the
/// artifacts from the medium, and those artifacts. An artifact not at hand is `missing` (the
/// ISO is the node's only source).
fn node_iso(
    job: &Job,
    input: &NodeInput,
    src: &installer_iso::Source,
    resolved: &pins::Resolved,
    dir: &str,
    missing: &mut Vec<(String, String)>,
) -> Result<PendingIso> {
    let node = &input.node.hostname;
    let mut artifacts = Vec::new();
    for name in input.plan.artifacts() {
        let pin = resolved.pins.get(&name);
        match (pin, resolved.files.get(&name)) {
            (Some(pin), Some(path)) => artifacts.push((
                format!("{}/artifacts/{}", installer_iso::MEDIA_DIR, pin.file),
                path.clone(),
            )),
            _ => missing.push((
                name.clone(),
                format!(
                    "not in the verified cache, and node {node}'s ISO carries its artifacts                      (`ezimg fetch {name}`, or `build --fetch`)"
                ),
            )),
        }
    }
    artifacts.sort();
    artifacts.dedup();
    // The bundle is read from the medium, not embedded or fetched; artifacts likewise.
    let bundle = BundleRef {
        url: None,
        in_image: false,
        ..input.bundle.clone()
    };
    let media_input = NodeInput {
        cluster: input.cluster,
        node: input.node,
        plan: input.plan,
        bundle: &bundle,
        secrets: input.secrets.clone(),
        artifacts_from: (!artifacts.is_empty())
            .then(|| format!("{}/artifacts", crate::bundle::NODE_STATE_DIR)),
    };
    let media = kickstart::Media {
        label: src.volid.clone(),
        install_from_media: src.has_packages(),
    };
    let ks = kickstart::render_for_media(job.tree, &media_input, &media)
        .with_context(|| format!("the ISO's kickstart for {node}"))?;
    Ok(PendingIso {
        role: input.node.role.clone(),
        node: node.clone(),
        rel: format!("{dir}/{node}-install.iso"),
        source: src.clone(),
        ks,
        artifacts,
    })
}

/// What a node of `role` could not get: artifacts with no digest, stage outputs not built, files
/// neither in the cache nor fetched. Files found in the cache join `resolved.files`, so the
/// build exports them beside the bundle.
fn missing_artifacts(
    role: &str,
    os: crate::cluster::Os,
    job: &Job,
    resolved: &mut pins::Resolved,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, pin) in &resolved.pins {
        if resolved.files.contains_key(name) {
            continue;
        }
        let stage = name.ends_with(pins::STAGE_SUFFIX);
        let Some(_) = &pin.sha256 else {
            out.push((
                name.clone(),
                if stage && os != crate::cluster::Os::Debian12 {
                    format!(
                        "the build stage's output is not built, and a build for {os} needs an \
                         {os} builder (`ezimg stage build {0} --target {os} --deps-from DIR`: the \
                         VM builder), or use role param {0}_source = \"distro\"",
                        name.trim_end_matches(pins::STAGE_SUFFIX)
                    )
                } else if stage {
                    format!(
                        "the build stage's output is not built (`ezimg build --role {role} \
                         --fetch` compiles it)"
                    )
                } else if let Some(check) = job.lock.find(name).and_then(|a| a.check.as_ref()) {
                    // Verified by content: fetching it verifies it and records its sha256.
                    format!(
                        "not in the verified cache (`ezimg fetch {name}`, or `build --fetch \
                         [--mirror URL|DIR]`; verified by its {})",
                        check.describe()
                    )
                } else {
                    format!(
                        "no digest pinned, upstream publishes none (`ezimg lock {name}` on a \
                         machine that reaches it, or `--mirror`)"
                    )
                },
            ));
            continue;
        };
        if let Some(p) = job.lock.find(name).and_then(|art| job.cache.lookup(art)) {
            resolved.files.insert(name.clone(), p);
            continue;
        }
        // The operator serves artifacts from elsewhere: the node fetches and verifies them.
        if job
            .artifacts_from
            .as_deref()
            .is_some_and(|f| f.starts_with("http"))
        {
            continue;
        }
        out.push((
            name.clone(),
            format!(
                "{} is not in the verified cache (`ezimg fetch {name}`, or `build --fetch \
                 [--mirror URL|DIR]`)",
                pin.file
            ),
        ));
    }
    out
}

/// Group (artifact, why) per role into the lines `build` and `check` print.
pub fn missing_lines(missing: &BTreeMap<(String, String), Vec<String>>) -> String {
    missing
        .iter()
        .map(|((name, why), roles)| format!("{name} (roles {}): {why}", roles.join(", ")))
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// What `check` learns from rendering every output of every node of some roles, nothing
/// written.
#[derive(Default)]
pub struct Checked {
    /// Output files rendered.
    pub files: usize,
    /// Layer/node pairs skipped.
    pub skipped: usize,
    /// Layers applied on at least one node.
    pub applied_layers: std::collections::BTreeSet<String>,
    /// (artifact, why) not at hand, with the roles that need it.
    pub missing: BTreeMap<(String, String), Vec<String>>,
}

/// Render every output of every node of `roles` as `build --all` does, counting instead of
/// writing; the scripts go through `lint`.
pub fn check_roles(job: &Job, roles: &[String], lint: &mut BashSyntax) -> Result<Checked> {
    let mut c = Checked::default();
    for role in roles {
        let mut files = 0usize;
        let r = self::role(job, role, None, lint, &mut |_p: Piece| {
            files += 1;
            Ok(())
        })
        .with_context(|| format!("role {role}"))?;
        c.files += files;
        for p in &r.plans {
            c.skipped += p.layers.iter().filter(|l| l.skipped.is_some()).count();
            c.applied_layers.extend(p.applied().map(|l| l.name.clone()));
        }
        for key in r.missing {
            c.missing
                .entry(key)
                .or_insert_with(Vec::new)
                .push(role.clone());
        }
    }
    Ok(c)
}
