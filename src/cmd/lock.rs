//! `ezimg lock`: record the sha256 of pins that have none, and the digest of images that have
//! none.

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
    let images = dest.wanted_images(&a.names)?;
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
    if names.is_empty() && (images.is_empty() || a.offline) {
        if !images.is_empty() {
            eprintln!(
                "ezimg: offline: {} image(s) without a digest left as they are",
                images.len()
            );
        }
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
    let image_digests = if a.offline || images.is_empty() {
        Vec::new()
    } else {
        let net = crate::images::registry::Net {
            tls: crate::images::registry::Tls {
                ca_file: a.registry_ca_file.clone(),
                plain_http: a.registry_plain_http,
            },
            ..Default::default()
        };
        rt.block_on(crate::images::learn_digests(
            lk,
            &images,
            a.images_from.as_deref(),
            &net,
        ))?
    };
    for (r, d) in &image_digests {
        eprintln!(
            "ezimg: WARNING: TRUST ON FIRST USE: {r}: no published digest; recording {d}, \
             what its registry names the tag now. Check it against another source before \
             committing {}.",
            dest.path.display()
        );
    }
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
    if !image_digests.is_empty() {
        crate::images::write_digests(&dest.path, &image_digests)?;
    }
    if dest.new {
        eprintln!(
            "ezimg: wrote {} (a copy of {})",
            dest.path.display(),
            lk.origin
        );
    }
    eprintln!(
        "ezimg: recorded {} digest(s) in {}",
        records.len() + image_digests.len(),
        dest.path.display()
    );
    Ok(())
}
