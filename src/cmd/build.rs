//! `ezimg build`: render a role's, a node's or every node's outputs into `--out`, then bake the
//! qcow2 images asked for.

use anyhow::{Context, Result};

use super::{Inputs, resolve_lock, validated};
use crate::artifact::mirror::Mirror;
use crate::artifact::{Cache, FetchOptions};
use crate::build;
use crate::cli::{BuildArgs, Format, Global};
use crate::cluster::{self, Loaded, Os};
use crate::image;
use crate::plan::{self, Catalog};
use crate::produce::Job;
use crate::secrets::{self, Store};
use crate::supplied::{self, Supplies};

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

pub fn run(g: &Global, a: &BuildArgs) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, true)?;
    let c = &inputs.loaded.cluster;
    let (roles, only) = targets(c, &catalog, a)?;
    let lock = resolve_lock(g, &a.lock)?;
    let pxe = a.format.contains(&Format::Pxe);
    if a.serve_url.is_some() && !pxe {
        anyhow::bail!("--serve-url is for --format pxe (the URL its boot configs point at)");
    }
    // Before --out: a default URL the cluster cannot give fails with nothing made.
    let pxe_url = match (&a.serve_url, pxe) {
        (Some(u), _) => Some(u.as_str().trim_end_matches('/').to_string()),
        (None, true) => Some(crate::serve::default_serve_url(c)?),
        (None, false) => None,
    };
    let supplies = Supplies::new(&inputs.loaded, &lock, g.data.as_deref());
    // A supplied file the build refuses (an ezimg binary the ops node cannot run) is refused
    // before anything is written.
    let per_role = a.format.iter().any(|f| build::per_role(*f));
    for n in roles
        .iter()
        .flat_map(|r| c.nodes_of(r))
        .filter(|_| per_role)
    {
        let mut p = plan::plan_node(&catalog, &inputs.loaded, n)?;
        supplied::fill(&mut p, &supplies)?;
    }
    // --out first: a build it refuses creates no secret store.
    let mut outputs = build::Outputs::open(&a.out, c)?;
    let cache = Cache::resolve(None)?;
    // The cluster-wide outputs first: a missing image fails before minutes of baking.
    if a.format.contains(&Format::Images) {
        outputs.write_images(&lock, &cache)?;
    }
    if let Some(base_url) = pxe_url {
        let opts = crate::serve::pxe::PxeOptions {
            base_url,
            kernel: None,
            initrd: None,
            repo: None,
            append: None,
            dhcp: crate::serve::dnsmasq::DhcpMode::Proxy,
        };
        let iso = pxe_installer(c, &lock, &cache, a)?;
        for note in outputs.write_pxe(c, &opts, iso.as_deref())? {
            eprintln!("pxe: {note}");
        }
    }
    if per_role {
        let req = build::Request {
            roles: &roles,
            only,
            allow_incomplete: a.allow_incomplete,
            bake: image::BakeOptions {
                jobs: a.bake_jobs.unwrap_or_else(image::BakeOptions::default_jobs),
                timeout: std::time::Duration::from_secs(a.bake_timeout),
            },
        };
        let store = build_store(g, &inputs.loaded)?;
        build_roles(
            g,
            a,
            &inputs,
            &catalog,
            (&lock, &cache, &store, &supplies),
            &mut outputs,
            &req,
        )?;
    }
    let done = outputs.commit()?;
    for b in done.built {
        eprintln!("{b}");
    }
    for r in done.removed {
        eprintln!("{r}");
    }
    eprintln!("outputs in {}", a.out.display());
    Ok(())
}

/// The pinned vendor installer ISO in the verified cache (fetched first with `--fetch` when it
/// has a digest), whose pxeboot kernel and initrd `--format pxe` puts in the PXE tree; `None`
/// (and a note saying how to get them) when it is not at hand or the OS has none.
fn pxe_installer(
    c: &crate::cluster::Cluster,
    lock: &crate::artifact::Lock,
    cache: &Cache,
    a: &BuildArgs,
) -> Result<Option<std::path::PathBuf>> {
    let Some(name) = crate::produce::installer_pin(c.os) else {
        return Ok(None);
    };
    let dir = crate::serve::pxe::installer_dir(c.os);
    if lock.find(name).is_none() {
        eprintln!(
            "pxe: the lock {} pins no `{name}`: copy the installer's vmlinuz and initrd.img to \
             pxe/installer/{dir}/ yourself",
            lock.origin
        );
        return Ok(None);
    }
    let fetch = fetch_options(a, cache)?;
    match crate::produce::verified_installer(lock, cache, name, fetch.as_ref())? {
        Ok(iso) => Ok(Some(iso)),
        Err(why) => {
            eprintln!(
                "pxe: pxe/installer/{dir}/ gets no vmlinuz and initrd.img from the installer ISO \
                 `{name}`: {why}; or copy them there yourself"
            );
            Ok(None)
        }
    }
}

/// `--fetch [--mirror …]` as fetch options on `cache`; `None` without `--fetch`.
fn fetch_options(a: &BuildArgs, cache: &Cache) -> Result<Option<FetchOptions>> {
    if !a.fetch {
        return Ok(None);
    }
    let mut o = FetchOptions::new(cache.clone());
    o.mirrors = a
        .mirror
        .iter()
        .map(|m| m.parse())
        .collect::<Result<Vec<Mirror>>>()?;
    Ok(Some(o))
}

/// Render the roles' outputs into `outputs` and bake the images asked for, from the lock,
/// the cache and the secret store.
fn build_roles(
    g: &Global,
    a: &BuildArgs,
    inputs: &Inputs,
    catalog: &Catalog,
    (lock, cache, store, supplies): (&crate::artifact::Lock, &Cache, &Store, &Supplies),
    outputs: &mut build::Outputs,
    req: &build::Request,
) -> Result<()> {
    let c = &inputs.loaded.cluster;
    let fetch = fetch_options(a, cache)?;
    let job = Job {
        loaded: &inputs.loaded,
        tree: &inputs.tree,
        catalog,
        store,
        lock,
        cache,
        data_dir: g.data.as_deref(),
        formats: &a.format,
        bundle_base: a
            .bundle_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string()),
        artifacts_from: a.artifacts_from.clone(),
        fetch: fetch.as_ref(),
        supplies,
    };
    if c.os == Os::Debian12 && a.format.contains(&Format::Kickstart) {
        eprintln!(
            "note: no kickstart for debian12 (kickstart is for el7/el9); use the cloud-init seed"
        );
    }
    build::build(&job, outputs, req)
}
