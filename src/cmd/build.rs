//! `ezimg build`: render a role's, a node's or every node's outputs into `--out`, then bake the
//! qcow2 images asked for.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{Inputs, resolve_lock, validated};
use crate::artifact::mirror::Mirror;
use crate::artifact::{Cache, FetchOptions};
use crate::cli::{BuildArgs, Format, Global};
use crate::cluster::{self, Loaded, Os};
use crate::image::{self, PendingBake};
use crate::lint::BashSyntax;
use crate::outdir::{Current, Staging};
use crate::plan::{self, Catalog};
use crate::produce::{self, Job, Piece};
use crate::secrets::{self, Store};

/// Open the cluster's store for a build, creating it on the first build (said loudly).
fn build_store(g: &Global, loaded: &Loaded) -> Result<Store> {
    let dir = secrets::locate(g.secrets.as_deref(), loaded);
    let (store, created) = secrets::open(&dir, loaded, secrets::IfMissing::Create)?;
    if created {
        eprintln!(
            "created secret store {} (cluster CA, front-proxy and etcd CAs, service-account key, \
             bootstrap token, VRRP password): back it up and keep it out of version control; \
             every later build of this cluster needs it",
            dir.display()
        );
    }
    Ok(store)
}

/// What `build` was asked for: the roles, and one node of them or all.
fn targets<'a>(
    c: &'a cluster::Cluster,
    catalog: &Catalog,
    a: &'a BuildArgs,
) -> Result<(Vec<String>, Option<&'a str>)> {
    if a.all {
        return Ok((c.roles_in_use(), None));
    }
    if let Some(n) = &a.node {
        let node = plan::select_nodes(c, a.role.as_deref(), Some(n))?[0];
        return Ok((vec![node.role.clone()], Some(n.as_str())));
    }
    let r = a.role.as_deref().context(
        "say what to build: --role ROLE (its nodes), --node HOSTNAME (one node) or --all",
    )?;
    catalog.role(r)?;
    plan::select_nodes(c, Some(r), None)?;
    Ok((vec![r.to_string()], None))
}

/// Remaster a node's installer ISO into `staging` (after the build was found complete enough).
fn write_iso(
    staging: &mut Staging,
    iso: &produce::PendingIso,
    bundle: &crate::bundle::Bundle,
) -> Result<()> {
    use crate::output::installer_iso::{self, Content};
    let mut files = vec![(
        format!("{}/{}", installer_iso::MEDIA_DIR, bundle.file_name),
        Content::Bytes(&bundle.bytes),
    )];
    files.extend(
        iso.artifacts
            .iter()
            .map(|(dest, path)| (dest.clone(), Content::File(path))),
    );
    eprintln!(
        "iso {}: remastering {}…",
        iso.node,
        iso.source
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
    );
    installer_iso::remaster(
        &iso.source,
        iso.ks.as_bytes(),
        &files,
        &staging.path(&iso.rel),
    )?;
    let owner =
        produce::node_owner(&iso.role, &iso.node, Format::Iso).context("the ISO is per node")?;
    staging.produced(&iso.rel, owner);
    Ok(())
}

pub fn run(g: &Global, a: &BuildArgs) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, true)?;
    let c = &inputs.loaded.cluster;
    let (roles, only) = targets(c, &catalog, a)?;
    let lock = resolve_lock(g, &a.lock)?;
    // --out first: a build it refuses creates no secret store.
    let mut staging = Staging::new(&a.out, &c.name)?;
    let store = build_store(g, &inputs.loaded)?;
    let cache = Cache::resolve(None)?;
    let fetch = if a.fetch {
        let mut o = FetchOptions::new(cache.clone());
        o.mirrors = a
            .mirror
            .iter()
            .map(|m| m.parse())
            .collect::<Result<Vec<Mirror>>>()?;
        Some(o)
    } else {
        None
    };
    let job = Job {
        loaded: &inputs.loaded,
        tree: &inputs.tree,
        catalog: &catalog,
        store: &store,
        lock: &lock,
        cache: &cache,
        data_dir: g.data.as_deref(),
        formats: &a.format,
        bundle_base: a
            .bundle_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string()),
        artifacts_from: a.artifacts_from.clone(),
        fetch: fetch.as_ref(),
    };
    let mut lint = BashSyntax::default();
    let mut bakes = Vec::new();
    let mut incomplete = BTreeMap::new();
    let mut built = Vec::new();
    let mut isos = Vec::new();
    if c.os == Os::Debian12 && a.format.contains(&Format::Kickstart) {
        eprintln!(
            "note: no kickstart for debian12 (kickstart is for el7/el9); use the cloud-init seed"
        );
    }
    for role in &roles {
        produce::claim(&mut staging, c, role, only, &a.format);
        let mut sink = |p: Piece| staging.write(&p.rel, p.bytes, p.private, p.owner);
        let r = produce::role(&job, role, only, &mut lint, &mut sink)
            .with_context(|| format!("building role {role}"))?;
        for key in r.missing {
            incomplete
                .entry(key)
                .or_insert_with(Vec::new)
                .push(role.clone());
        }
        produce::write_artifacts(&mut staging, role, &r.resolved)?;
        isos.extend(r.isos.into_iter().map(|i| (i, r.bundle.clone())));
        if a.format.contains(&Format::Bundle) {
            built.push(format!(
                "built {role}/{} (sha256 {})",
                r.bundle.file_name, r.bundle.sha256
            ));
        }
        if a.format.contains(&Format::Qcow2) {
            let rel = format!("{role}/ezimg-{role}.qcow2");
            bakes.push(PendingBake {
                role: role.to_string(),
                bundle: r.bundle.bytes,
                plans: r.plans,
                dest: staging.path(&rel),
                rel,
            });
        }
    }
    lint.finish()?;
    // Outputs that would fail on the node are not written unless asked for (and then said).
    if !incomplete.is_empty() {
        let list = produce::missing_lines(&incomplete);
        if !a.allow_incomplete {
            anyhow::bail!(
                "{} artifact(s) the nodes need are missing; nothing was written:\n  {list}\n\
                 (--allow-incomplete writes the outputs anyway: each node then stops before \
                 changing anything, naming what is missing)",
                incomplete.len()
            );
        }
        eprintln!(
            "INCOMPLETE (--allow-incomplete): these nodes will refuse to install, before \
             changing anything, until:\n  {list}"
        );
    }
    for (iso, bundle) in &isos {
        write_iso(&mut staging, iso, bundle)
            .with_context(|| format!("the installer ISO of node {}", iso.node))?;
        built.push(format!("built {}", iso.rel));
    }
    let bake_opts = image::BakeOptions {
        jobs: a.bake_jobs.unwrap_or_else(image::BakeOptions::default_jobs),
        timeout: std::time::Duration::from_secs(a.bake_timeout),
    };
    image::run_bakes(&bakes, &lock, &bake_opts)?;
    for b in &bakes {
        produce::record_bake(&mut staging, b)?;
    }
    let current = Current {
        nodes: c
            .nodes
            .iter()
            .map(|n| (n.hostname.as_str(), n.role.as_str()))
            .collect(),
    };
    let removed = staging.commit(&current)?;
    for b in built {
        eprintln!("{b}");
    }
    for r in removed {
        eprintln!("{r}");
    }
    eprintln!("outputs in {}", a.out.display());
    Ok(())
}
