//! `ezimg check`: validate, render every output of every node, print a summary.

use std::io::Write;

use anyhow::{Context, Result};

use super::{Inputs, resolve_lock, validated};
use crate::artifact::Cache;
use crate::cli::{CheckArgs, Format, Global};
use crate::cluster::{self, Loaded};
use crate::lint::BashSyntax;
use crate::produce::{self, Job};
use crate::secrets::{self, Store};

/// The store `build` would use, to render with: the real one when it exists (so its problems
/// show now), else a throwaway one made the same way (the first build makes the real one).
fn check_store(g: &Global, loaded: &Loaded) -> Result<(Store, Option<tempfile::TempDir>)> {
    let dir = secrets::locate(g.secrets.as_deref(), loaded);
    if dir.exists() {
        let store = secrets::load(&dir, loaded)?;
        if store.registry_cert_unsaved() {
            eprintln!(
                "note: the registry's certificate in {} is missing or does not cover the \
                 registry's names: the next `ezimg build` issues it (checked with one issued in \
                 memory)",
                dir.display()
            );
        }
        return Ok((store, None));
    }
    eprintln!(
        "note: no secret store at {} yet: the first `ezimg build` creates it (checked with a \
         throwaway one)",
        dir.display()
    );
    let (store, tmp) = secrets::throwaway(loaded)?;
    Ok((store, Some(tmp)))
}

pub fn run(g: &Global, a: &CheckArgs) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, false)?;
    let c = &inputs.loaded.cluster;
    let lock = resolve_lock(g, &a.lock)?;
    let (store, _tmp) = check_store(g, &inputs.loaded)?;
    let cache = Cache::resolve(None)?;
    let formats = [Format::Bundle, Format::Kickstart, Format::CloudInit];
    let supplies = crate::supplied::Supplies::new(&inputs.loaded, &lock, g.data.as_deref());
    let job = Job {
        loaded: &inputs.loaded,
        tree: &inputs.tree,
        catalog: &catalog,
        store: &store,
        lock: &lock,
        cache: &cache,
        data_dir: g.data.as_deref(),
        formats: &formats,
        bundle_base: None,
        artifacts_from: None,
        fetch: None,
        supplies: &supplies,
    };
    // Render every output of every node as `build --all` does, and look at nothing but errors.
    let mut lint = BashSyntax::default();
    let produce::Checked {
        files,
        skipped,
        applied_layers,
        missing,
    } = produce::check_roles(&job, &c.roles_in_use(), &mut lint)?;
    lint.finish()?;
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| writeln!(out, "{line}").context("writing to standard output");
    say(format!("{}: ok", inputs.loaded.origin()))?;
    say(format!(
        "  cluster {} for {}: {} nodes, VIP {} ({} VRRP, router id {})",
        c.name,
        c.os,
        c.nodes.len(),
        c.vrrp.vip,
        match c.vrrp.mode {
            cluster::VrrpMode::Multicast => "multicast",
            cluster::VrrpMode::Unicast => "unicast",
        },
        c.vrrp.router_id
    ))?;
    say(format!(
        "  networks: nodes {} via {}, services {}, pods {} (disjoint)",
        c.network.cidr, c.network.gateway, c.network.service_cidr, c.network.pod_cidr
    ))?;
    for role in c.roles_in_use() {
        let r = catalog.role(&role)?;
        let hosts: Vec<&str> = c.nodes_of(&role).map(|n| n.hostname.as_str()).collect();
        say(format!(
            "  role {role}: {} ({} layers), {} node(s): {}",
            r.description,
            r.layers.len(),
            hosts.len(),
            abbreviate(&hosts)
        ))?;
    }
    say(format!(
        "  data: {} ({} layers); {skipped} layer/node pairs skipped (see `ezimg plan`)",
        inputs.tree.origin,
        catalog.layers.len()
    ))?;
    say(format!(
        "  rendered {files} output files (bundles, kickstart, cloud-init seeds) of every node; \
         step and bootstrap scripts pass bash -n"
    ))?;
    say(format!("  lock: {}", lock.describe()))?;
    if !missing.is_empty() {
        let names: Vec<&str> = missing.keys().map(|(n, _)| n.as_str()).collect();
        say(format!(
            "  {} artifact(s) not at hand: {} (`build` lists why and refuses without --fetch \
             or --allow-incomplete)",
            names.len(),
            names.join(", ")
        ))?;
    }
    // Seed flags a layer leaves out on purpose: said here so no departure is silent.
    for name in &applied_layers {
        let Some(layer) = catalog.layers.get(name) else {
            continue;
        };
        for d in &layer.manifest.dropped_flags {
            let seed = if d.seed.is_empty() {
                String::new()
            } else {
                format!(" (seed {})", d.seed)
            };
            say(format!(
                "  seed flag left out by layer {name}: {} {}{seed}: {}",
                d.component, d.flag, d.reason
            ))?;
        }
    }
    Ok(())
}

/// `a, b, c` for a few names; `a, b, … (N more), z` for many, so 300 nodes stay one short line.
fn abbreviate(names: &[&str]) -> String {
    const SHOWN: usize = 6;
    if names.len() <= SHOWN {
        return names.join(", ");
    }
    format!(
        "{}, … ({} more), {}",
        names[..SHOWN - 1].join(", "),
        names.len() - SHOWN,
        names[names.len() - 1]
    )
}
