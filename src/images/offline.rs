//! The lock's images as one standalone OCI image layout (`build --format images` writes it into
//! `<out>/images/`), so an offline copy of `--out` carries the site's images with it and
//! `ezimg images push --from <out>/images` fills the site registry from it. The cache's own
//! layout cannot be copied as it is: its blobs are a symlink into the cache.
//!
//! ```text
//! images/oci-layout          {"imageLayoutVersion":"1.0.0"}
//! images/index.json          one descriptor per image (its platform manifest), sorted by
//!                            reference, annotated with the reference and the pinned digest
//! images/blobs/sha256/<hex>  manifests, configs, layers, and each pinned index
//! ```
//!
//! Every blob is checked against its name as it is copied; every file gets the same mtime
//! ([`crate::bundle::source_date_epoch`]): the same lock and cache give the same bytes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::layout::{self, Index};
use super::manifest::Descriptor;
use crate::artifact::{Cache, Lock};
use crate::digest::{Sha256Digest, sha256_hex};

/// What [`write`] wrote: each file (path under the layout) with its sha256, and how many
/// images.
pub struct Written {
    pub files: Vec<(String, String)>,
    pub images: usize,
}

/// The lock's images in `cache`: each one's index entry (annotated) and the blobs it needs.
/// Every image must be pinned and completely pulled; else the error names each one.
fn collect(lock: &Lock, cache: &Cache) -> Result<Vec<(Descriptor, Vec<Sha256Digest>)>> {
    let index = layout::read(cache)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for i in &lock.images {
        let Some(pinned) = i.digest.as_deref() else {
            missing.push(format!("{} (no digest pinned: `ezimg lock`)", i.reference));
            continue;
        };
        let Some(d) = layout::find(&index, &i.reference, pinned) else {
            missing.push(format!("{} (not pulled)", i.reference));
            continue;
        };
        let mut blobs = Vec::new();
        let mut complete = true;
        match layout::blobs_of(cache, d) {
            Ok(bs) => {
                for b in bs {
                    let h = b.sha256()?;
                    complete &= cache.sha256_path(&h).is_file();
                    blobs.push(h);
                }
            }
            Err(_) => complete = false,
        }
        if pinned != d.digest {
            // The pinned index too, so the pin can still be checked from the copy.
            let h: Sha256Digest = pinned
                .strip_prefix("sha256:")
                .unwrap_or(pinned)
                .parse()
                .with_context(|| format!("{}: pinned digest {pinned}", lock.origin))?;
            complete &= cache.sha256_path(&h).is_file();
            blobs.push(h);
        }
        if !complete {
            missing.push(format!("{} (pulled in part)", i.reference));
            continue;
        }
        found.push((d.clone(), blobs));
    }
    if !missing.is_empty() {
        bail!(
            "--format images: {} image(s) of {} are not in the cache {}:\n    {}\n\
             `ezimg images pull --lock {}` them first (or import an export that has them); \
             nothing was written",
            missing.len(),
            lock.origin,
            cache.root().display(),
            missing.join("\n    "),
            lock.origin
        );
    }
    found.sort_by(|a, b| {
        a.0.annotations
            .get(layout::REF_NAME)
            .cmp(&b.0.annotations.get(layout::REF_NAME))
    });
    Ok(found)
}

/// Write the lock's images from `cache` as an OCI layout into the new folder `dest`, every
/// file stamped `mtime_secs`. Fails, naming them, when an image is not (completely) pulled.
pub fn write(lock: &Lock, cache: &Cache, dest: &Path, mtime_secs: u64) -> Result<Written> {
    let images = collect(lock, cache)?;
    let mtime = UNIX_EPOCH + Duration::from_secs(mtime_secs);
    let blob_dir = dest.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir)
        .with_context(|| format!("creating {}", blob_dir.display()))?;
    let mut files = BTreeMap::new();
    let layout_file = b"{\"imageLayoutVersion\":\"1.0.0\"}\n";
    put(&dest.join("oci-layout"), layout_file, mtime)?;
    files.insert("oci-layout".to_string(), sha256_hex(layout_file));
    let mut index = Index::default();
    for (desc, blobs) in images {
        for h in blobs {
            let rel = format!("blobs/sha256/{}", h.hex());
            if files.contains_key(&rel) {
                continue;
            }
            copy_verified(&cache.sha256_path(&h), &dest.join(&rel), &h, mtime)?;
            files.insert(rel, h.hex());
        }
        index.manifests.push(desc);
    }
    let mut text = serde_json::to_vec_pretty(&index).context("serializing index.json")?;
    text.push(b'\n');
    put(&dest.join("index.json"), &text, mtime)?;
    files.insert("index.json".to_string(), sha256_hex(&text));
    Ok(Written {
        files: files.into_iter().collect(),
        images: index.manifests.len(),
    })
}

fn put(path: &Path, bytes: &[u8], mtime: SystemTime) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    (&f).write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.set_modified(mtime)
        .with_context(|| format!("setting the mtime of {}", path.display()))
}

/// Copy the cache entry `src` to `dst`, hashing as it goes: a cache entry changed since it was
/// verified is not carried on.
fn copy_verified(src: &Path, dst: &Path, want: &Sha256Digest, mtime: SystemTime) -> Result<()> {
    let mut r = std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut w =
        std::fs::File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut h = crate::digest::Hasher::new(false);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r
            .read(&mut buf)
            .with_context(|| format!("reading {}", src.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        w.write_all(&buf[..n])
            .with_context(|| format!("writing {}", dst.display()))?;
    }
    let got = h.finish().sha256;
    if got != *want {
        bail!(
            "cache entry {} is corrupt (its sha256 is {}); `ezimg images pull` the image again",
            src.display(),
            got.hex()
        );
    }
    w.set_modified(mtime)
        .with_context(|| format!("setting the mtime of {}", dst.display()))
}
