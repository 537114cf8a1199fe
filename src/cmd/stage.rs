//! `ezimg stage build|list|check`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::cli::{Global, StageArgs, StageCheckArgs, StageCommand};
use crate::stage;

/// `ezimg stage check`: the stage named, else the one the manifest next to the tarball names.
fn check(g: &Global, c: &StageCheckArgs) -> Result<()> {
    let name = match &c.stage {
        Some(n) => n.clone(),
        None => stage::Manifest::beside(&c.tarball)?.stage,
    };
    let st = stage::load(&name, g.data.as_deref())?;
    let target = stage::Target::load(&c.target, g.data.as_deref())?;
    stage::target::check(&c.tarball, &target, Some(&st))?;
    println!(
        "ok: {} (stage {}) runs on {}: glibc <= {}, every NEEDED soname in {}",
        c.tarball.display(),
        st.spec.name,
        target.name,
        target.glibc,
        target.origin
    );
    Ok(())
}

/// `ezimg stage build|list|check`.
pub fn run(g: &Global, a: &StageArgs) -> Result<()> {
    match &a.command {
        StageCommand::Check(c) => check(g, c),
        StageCommand::List => {
            for name in stage::names(g.data.as_deref())? {
                println!("{}", stage::load(&name, g.data.as_deref())?.summary());
            }
            Ok(())
        }
        StageCommand::Build(b) => {
            let st = stage::load(&b.name, g.data.as_deref())?;
            let pairs = |list: &[String], what: &str| -> Result<BTreeMap<String, String>> {
                list.iter()
                    .map(|kv| {
                        kv.split_once('=')
                            .filter(|(k, _)| !k.is_empty())
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .with_context(|| format!("--{what} {kv:?}: expected NAME=VALUE"))
                    })
                    .collect()
            };
            let sources: BTreeMap<String, std::path::PathBuf> = pairs(&b.sources, "source")?
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            // Sources not given on the command line would come from the artifact cache
            // (artifacts.lock); until `ezimg build` wires the fetch, say which are missing.
            let missing: Vec<&str> = st
                .spec
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .filter(|n| !sources.contains_key(*n))
                .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "stage {}: no local path for source(s) {}: pass --source NAME=PATH (archive or directory) for each",
                    st.spec.name,
                    missing.join(", ")
                );
            }
            let root = match &b.cache_dir {
                Some(d) => d.clone(),
                None => stage::default_cache_root()?,
            };
            let mut opts = stage::BuildOptions::new(root);
            opts.data = g.data.clone();
            opts.vars = pairs(&b.vars, "var")?;
            if let Some(j) = b.jobs {
                opts.jobs = j.max(1);
            }
            opts.rebuild = b.rebuild;
            opts.keep_work = b.keep_work;
            opts.target = b.target.clone();
            opts.builder = b.builder.unwrap_or(if b.target == stage::HOST_TARGET {
                stage::Builder::Host
            } else {
                stage::Builder::Vm
            });
            opts.vm_timeout = std::time::Duration::from_secs(b.vm_timeout);
            opts.deps_from = b.deps_from.clone();
            // The el builders boot the vendor cloud image the lock pins, from the verified cache.
            if opts.builder == stage::Builder::Vm
                && let Some(vendor) = stage::vm::vendor_image_name(&b.target)
            {
                let (lock, _) = crate::artifact::Lock::resolve(None, g.data.as_deref(), None)?;
                let cache = crate::artifact::Cache::new(opts.cache_root.clone());
                opts.vendor_image = lock.find(vendor).and_then(|a| cache.lookup(a));
            }
            let o = stage::build(&st, &sources, &opts)?;
            if o.cached {
                println!(
                    "cache hit: stage {} ({:.2}s)",
                    st.spec.name,
                    o.elapsed.as_secs_f64()
                );
            } else {
                println!(
                    "built: stage {} ({:.1}s)",
                    st.spec.name,
                    o.elapsed.as_secs_f64()
                );
            }
            println!(
                "  tarball  {} (sha256 {})",
                o.tarball.display(),
                o.manifest.output.sha256
            );
            println!("  manifest {}", o.manifest_path.display());
            if let Some(out) = &b.out {
                std::fs::copy(&o.tarball, out)
                    .with_context(|| format!("copying the stage tarball to {}", out.display()))?;
                let mut mj = out.as_os_str().to_owned();
                mj.push(".json");
                std::fs::copy(&o.manifest_path, &mj).with_context(|| {
                    format!(
                        "copying the manifest to {}",
                        std::path::Path::new(&mj).display()
                    )
                })?;
                println!("  copied to {}", out.display());
            }
            Ok(())
        }
    }
}
