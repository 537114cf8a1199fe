//! `ezimg lock`: record the sha256 of pins that have none.

use anyhow::{Context, Result, bail};

use super::fetch_options;
use crate::artifact::{self, Cache, lock, record};
use crate::cli::{Global, LockArgs};

/// `ezimg lock`: learn the sha256 of pins that have none and write it into the lock file.
pub fn run(g: &Global, a: &LockArgs) -> Result<()> {
    let dest = record::destination(
        a.store.lock.as_deref(),
        g.data.as_deref(),
        g.cluster.as_deref(),
    )?;
    eprintln!("{}", dest.note);
    let lk = &dest.lock;
    let names = dest.wanted(&a.names);
    if a.check {
        let lacking = dest.lacking(&names);
        if !lacking.is_empty() {
            bail!(
                "{}: no sha256 recorded for {}",
                lk.origin,
                lacking.join(", ")
            );
        }
        eprintln!("ezimg: {}: every pin has a sha256", lk.origin);
        return Ok(());
    }
    if names.is_empty() {
        eprintln!(
            "ezimg: {}: every pin has a sha256; nothing to do",
            lk.origin
        );
        return Ok(());
    }
    let mut opts = fetch_options(Cache::resolve(a.store.cache_dir.as_deref())?, &a.net)?;
    opts.offline = a.offline;
    opts.allow_unverified = true;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let learnt = rt.block_on(artifact::learn_digests(lk, &names, &opts))?;
    for l in &learnt {
        if l.tofu {
            eprintln!(
                "ezimg: WARNING: TRUST ON FIRST USE: {} has no published digest; recording {} \
                 ({} bytes) as downloaded from {}. Check it against another source before \
                 committing {}.",
                l.record.name,
                l.record.sha256,
                l.record.size,
                l.source,
                dest.path.display()
            );
        } else {
            eprintln!(
                "ezimg: {}: {} verified; recording {} ({} bytes)",
                l.record.name, l.how, l.record.sha256, l.record.size
            );
        }
    }
    let records: Vec<lock::Record> = learnt.into_iter().map(|l| l.record).collect();
    dest.record(&records)?;
    if dest.new {
        eprintln!(
            "ezimg: wrote {} (a copy of {})",
            dest.path.display(),
            lk.origin
        );
    }
    eprintln!(
        "ezimg: recorded {} digest(s) in {}",
        records.len(),
        dest.path.display()
    );
    Ok(())
}
