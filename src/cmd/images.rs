//! `ezimg images list|pull|push`.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::load_lock;
use crate::artifact::Cache;
use crate::cli::{Global, ImagesArgs, ImagesCommand, RegistryNet};
use crate::images::{self, manifest, registry};

fn net(n: &RegistryNet) -> registry::Net {
    registry::Net {
        tls: registry::Tls {
            ca_file: n.ca_file.clone(),
            plain_http: n.plain_http,
        },
        retries: n.retries,
        timeout: Duration::from_secs(n.timeout.max(1)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// `ezimg images …`.
pub fn run(g: &Global, a: &ImagesArgs) -> Result<()> {
    match &a.command {
        ImagesCommand::List(a) => {
            let lk = load_lock(g, &a.store)?;
            let cache = Cache::resolve(a.store.cache_dir.as_deref())?;
            for l in images::list(&lk, &cache)? {
                let pinned = l.pinned.as_deref().unwrap_or("unpinned (run `ezimg lock`)");
                let state = match &l.cached {
                    Some((m, size)) => format!("cached {m} {size} bytes"),
                    None => "not pulled".into(),
                };
                println!("{}\t{}\t{pinned}\t{state}", l.reference, l.used_by);
            }
        }
        ImagesCommand::Pull(a) => {
            let lk = load_lock(g, &a.store)?;
            let cache = Cache::resolve(a.store.cache_dir.as_deref())?;
            let opts = images::PullOptions {
                from: a.from.clone(),
                platform: manifest::parse_platform(&a.platform)?,
                net: net(&a.net),
            };
            let pulled = runtime()?.block_on(images::pull(&lk, &cache, &a.names, &opts))?;
            for p in &pulled {
                if p.already {
                    eprintln!(
                        "ezimg: {}: already in the cache ({})",
                        p.reference, p.manifest
                    );
                } else {
                    eprintln!(
                        "ezimg: {}: pulled {} ({} bytes downloaded)",
                        p.reference, p.manifest, p.downloaded
                    );
                }
            }
            eprintln!(
                "ezimg: {} image(s) in {}",
                pulled.len(),
                images::layout::dir(&cache).display()
            );
        }
        ImagesCommand::Push(a) => {
            let lk = load_lock(g, &a.store)?;
            let cache = Cache::resolve(a.store.cache_dir.as_deref())?;
            let loaded = crate::cluster::load(g.cluster.as_deref())?;
            let node_names = images::NodeNames::of(&loaded.cluster);
            let target = match &a.registry {
                Some(r) => r.clone(),
                None => {
                    let r = loaded.cluster.registry_mirror.clone();
                    if r.is_empty() {
                        bail!(
                            "{}: registry_mirror is empty: give --registry HOST[:PORT]",
                            loaded.origin()
                        );
                    }
                    eprintln!(
                        "ezimg: registry: {r} (registry_mirror of {})",
                        loaded.origin()
                    );
                    r
                }
            };
            let store = match &a.from {
                Some(dir) => images::layout::Store::Dir(dir),
                None => images::layout::Store::Cache(&cache),
            };
            let pushed = runtime()?.block_on(images::push(
                &lk,
                &store,
                &a.names,
                &target,
                &node_names,
                &net(&a.net),
            ))?;
            for p in &pushed {
                eprintln!(
                    "ezimg: {} = {} ({} blob(s) uploaded, {} already there)",
                    p.target, p.manifest, p.uploaded, p.skipped
                );
            }
        }
    }
    Ok(())
}
