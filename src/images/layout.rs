//! The pulled images as an OCI image layout inside the verified cache:
//!
//! ```text
//! <cache>/images/oci-layout      {"imageLayoutVersion": "1.0.0"}
//! <cache>/images/index.json      one descriptor per pulled image (its platform manifest)
//! <cache>/images/blobs/sha256 -> ../../sha256   the cache's verified entries
//! ```
//!
//! Blobs are ordinary cache entries (`sha256/<hex>`, verified before the rename that creates
//! them), so `export`/`import` and `serve` carry and check them like any artifact, and tools
//! that read OCI layouts (skopeo `oci:<cache>/images:<ref>`) read the same files. An image is
//! listed in `index.json` only after every blob it needs is in the cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::manifest::{self, Descriptor};
use crate::artifact::Cache;
use crate::digest::Sha256Digest;

/// The annotation naming the image (the lock's reference).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation holding the digest the lock pins (an index, or this manifest itself).
pub const PINNED: &str = "io.ezimg.pinned-digest";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            schema_version: 2,
            media_type: manifest::OCI_INDEX.into(),
            manifests: Vec::new(),
        }
    }
}

/// `<cache>/images`.
pub fn dir(cache: &Cache) -> PathBuf {
    cache.root().join("images")
}

/// Read `index.json` (empty when there is none).
pub fn read(cache: &Cache) -> Result<Index> {
    let p = dir(cache).join("index.json");
    if !p.exists() {
        return Ok(Index::default());
    }
    crate::fsutil::read_json(&p)
}

/// The entry for `reference` pinned at `pinned`, when pulled.
pub fn find<'a>(index: &'a Index, reference: &str, pinned: &str) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| {
        d.annotations.get(REF_NAME).map(String::as_str) == Some(reference)
            && d.annotations.get(PINNED).map(String::as_str) == Some(pinned)
    })
}

/// Create the layout's fixed files (idempotent).
fn init(cache: &Cache) -> Result<()> {
    cache.init()?;
    let d = dir(cache);
    std::fs::create_dir_all(d.join("blobs"))
        .with_context(|| format!("creating {}", d.display()))?;
    let ol = d.join("oci-layout");
    if !ol.exists() {
        crate::fsutil::write_atomic(&ol, b"{\"imageLayoutVersion\":\"1.0.0\"}\n")?;
    }
    let link = d.join("blobs").join("sha256");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(Path::new("../../sha256"), &link)
            .with_context(|| format!("creating the symlink {}", link.display()))?;
    }
    Ok(())
}

/// Record `desc` (annotated with the reference and the pin) in `index.json`, replacing an
/// earlier entry of the same reference. Sorted by reference, so the file is reproducible.
pub fn record(cache: &Cache, mut desc: Descriptor, reference: &str, pinned: &str) -> Result<()> {
    init(cache)?;
    let _guard = crate::keyed_cache::EntryLock::take(
        &dir(cache).join(".lock"),
        "image index update",
        false,
    )?;
    let mut index = read(cache)?;
    desc.annotations.insert(REF_NAME.into(), reference.into());
    desc.annotations.insert(PINNED.into(), pinned.into());
    index
        .manifests
        .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(reference));
    index.manifests.push(desc);
    index.manifests.sort_by(|a, b| {
        a.annotations
            .get(REF_NAME)
            .cmp(&b.annotations.get(REF_NAME))
    });
    let mut text = serde_json::to_vec_pretty(&index).context("serializing index.json")?;
    text.push(b'\n');
    crate::fsutil::write_atomic(&dir(cache).join("index.json"), &text)
}

/// Where a layout's `index.json` and blobs are: the cache's layout (its blobs are cache
/// entries), or a standalone one such as `build --format images` writes
/// (`<dir>/blobs/sha256/<hex>`), which `images push --from DIR` reads.
#[derive(Debug, Clone, Copy)]
pub enum Store<'a> {
    Cache(&'a Cache),
    Dir(&'a Path),
}

impl Store<'_> {
    /// The file of blob `d`.
    pub fn blob(&self, d: &Sha256Digest) -> PathBuf {
        match self {
            Store::Cache(c) => c.sha256_path(d),
            Store::Dir(dir) => dir.join("blobs").join("sha256").join(d.hex()),
        }
    }

    /// The layout's `index.json` (a cache without one: empty).
    pub fn index(&self) -> Result<Index> {
        match self {
            Store::Cache(c) => read(c),
            Store::Dir(dir) => {
                if !dir.join("oci-layout").is_file() {
                    anyhow::bail!(
                        "{}: not an OCI image layout (no oci-layout file; `ezimg build \
                         --format images` writes one into <out>/images)",
                        dir.display()
                    );
                }
                crate::fsutil::read_json(&dir.join("index.json"))
            }
        }
    }

    /// For messages: the cache or the folder.
    pub fn describe(&self) -> String {
        match self {
            Store::Cache(c) => format!("the cache {}", c.root().display()),
            Store::Dir(d) => format!("the image layout {}", d.display()),
        }
    }
}

/// The blobs an image entry needs: its manifest, config and layers (read from the cache).
pub fn blobs_of(cache: &Cache, desc: &Descriptor) -> Result<Vec<Descriptor>> {
    blobs_in(&Store::Cache(cache), desc)
}

/// [`blobs_of`] for any layout.
pub fn blobs_in(store: &Store, desc: &Descriptor) -> Result<Vec<Descriptor>> {
    let p = store.blob(&desc.sha256()?);
    let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    match manifest::parse(&bytes, Some(&desc.media_type))
        .with_context(|| format!("{}: manifest {}", p.display(), desc.digest))?
    {
        manifest::Parsed::Image { config, layers, .. } => {
            let mut v = vec![desc.clone(), config];
            v.extend(layers);
            Ok(v)
        }
        manifest::Parsed::Index { .. } => {
            anyhow::bail!(
                "{}: an index where a platform manifest was expected",
                p.display()
            )
        }
    }
}

/// References in the index mapped to their entries.
pub fn by_reference(index: &Index) -> BTreeMap<String, &Descriptor> {
    index
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(REF_NAME).map(|r| (r.clone(), d)))
        .collect()
}
