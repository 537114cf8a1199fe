//! `ezimg lock`: record the sha256 of pins that have none.

use anyhow::{Context, Result, bail};

use super::{fetch_options, load_lock};
use crate::artifact::{self, Cache, Lock, lock};
use crate::cli::{Global, LockArgs};

/// `ezimg lock`: learn the sha256 of pins that have none and write it into the lock file.
pub fn run(g: &Global, a: &LockArgs) -> Result<()> {
    // Where the digests go: the lock in use, or a new file that the lock rule will read next.
    let (lk, path, new) = match &a.store.lock {
        Some(p) if !p.exists() => {
            let (base, why) = Lock::resolve(None, g.data.as_deref(), g.cluster.as_deref())?;
            eprintln!(
                "lock: {} does not exist yet: it will be {} ({why}) with the digests learnt",
                p.display(),
                base.origin
            );
            (base, p.clone(), true)
        }
        _ => {
            let lk = load_lock(g, &a.store)?;
            match (&lk.path, &g.cluster) {
                (Some(p), _) => {
                    let p = p.clone();
                    (lk, p, false)
                }
                (None, Some(c)) => {
                    let p = c.with_file_name("artifacts.lock");
                    (lk, p, true)
                }
                (None, None) => bail!(
                    "the lock in use is the one embedded in ezimg, which cannot record digests: \
                     `ezimg lock --lock FILE` writes a copy with them to FILE (then give \
                     `--lock FILE` or EZIMG_LOCK to check, build and fetch), or with \
                     `-c CLUSTER` it goes beside the cluster file, where they find it"
                ),
            }
        }
    };
    // Names that are no artifact are images (`[[image]]` references or `name:tag`).
    let (art_names, image_names): (Vec<String>, Vec<String>) =
        a.names.iter().cloned().partition(|n| lk.find(n).is_some());
    let images: Vec<String> = if a.names.is_empty() {
        lk.images
            .iter()
            .filter(|i| i.digest.is_none())
            .map(|i| i.reference.clone())
            .collect()
    } else if image_names.is_empty() {
        Vec::new()
    } else {
        crate::images::select(&lk, &image_names)?
            .into_iter()
            .filter(|i| i.digest.is_none())
            .map(|i| i.reference.clone())
            .collect()
    };
    let names: Vec<String> = if a.names.is_empty() {
        lk.artifacts
            .iter()
            .filter(|x| x.sha256.is_none())
            .map(|x| x.name.clone())
            .collect()
    } else {
        art_names
    };
    if a.check {
        let lacking: Vec<&str> = names
            .iter()
            .filter_map(|n| lk.find(n))
            .filter(|x| x.sha256.is_none())
            .map(|x| x.name.as_str())
            .collect();
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
    let learnt = rt.block_on(artifact::learn_digests(&lk, &names, &opts))?;
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
            &lk,
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
            path.display()
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
                path.display()
            );
        } else {
            eprintln!(
                "ezimg: {}: {} verified; recording {} ({} bytes)",
                l.record.name, l.how, l.record.sha256, l.record.size
            );
        }
    }
    let records: Vec<lock::Record> = learnt.into_iter().map(|l| l.record).collect();
    if new {
        std::fs::write(&path, &lk.text)
            .with_context(|| format!("writing the new lock {}", path.display()))?;
        eprintln!("ezimg: wrote {} (a copy of {})", path.display(), lk.origin);
    }
    if !records.is_empty() {
        lock::write_records(&path, &records)?;
    }
    if !image_digests.is_empty() {
        crate::images::write_digests(&path, &image_digests)?;
    }
    eprintln!(
        "ezimg: recorded {} digest(s) in {}",
        records.len() + image_digests.len(),
        path.display()
    );
    Ok(())
}
