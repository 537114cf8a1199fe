//! Container images for air-gapped sites: the images a cluster runs (the lock's `[[image]]`
//! pins) pulled by digest into an OCI layout inside the verified cache, carried with
//! `export`/`import`, and pushed to the site's registry, which every node's containerd uses
//! as its mirror (`hosts.toml`).
//!
//! Trust: a pin's digest names the exact manifest (or multi-platform index) bytes; each
//! manifest is hashed before it is parsed, and each blob as it streams. Nothing reaches
//! `sha256/` or `index.json` until the whole image is verified, so a cut or a tampered blob
//! leaves no valid-looking entry; a cut blob's partial file stays in `tmp/` and the next
//! pull continues it with HTTP Range.

pub mod layout;
pub mod manifest;
pub mod offline;
pub mod reference;
pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::artifact::lock::ImagePin;
use crate::artifact::{Cache, Lock};
use crate::digest::{Hashes, sha256_hex};
use manifest::{Descriptor, Parsed, Platform};
pub use reference::Reference;
use registry::{Net, Registry};

/// The registry an image reference pulls from (`docker.io` when it names none); empty when
/// the reference does not parse (the cluster file's checks report that).
pub fn registry_of(reference: &str) -> String {
    Reference::parse(reference)
        .map(|r| r.registry)
        .unwrap_or_default()
}

/// The lock's images named by `names` (all when empty): a full reference, or the last path
/// component with its tag (`pause:3.9`) when that is unambiguous.
pub fn select<'a>(lock: &'a Lock, names: &[String]) -> Result<Vec<&'a ImagePin>> {
    if names.is_empty() {
        return Ok(lock.images.iter().collect());
    }
    let mut out: Vec<&ImagePin> = Vec::new();
    for n in names {
        let hits: Vec<&ImagePin> = lock
            .images
            .iter()
            .filter(|i| i.reference == *n || i.reference.rsplit('/').next() == Some(n.as_str()))
            .collect();
        match hits.as_slice() {
            [one] => {
                if !out.iter().any(|o| o.reference == one.reference) {
                    out.push(one)
                }
            }
            [] => bail!(
                "{}: no image {n:?} (known: {})",
                lock.origin,
                lock.images
                    .iter()
                    .map(|i| i.reference.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            many => bail!(
                "{}: {n:?} matches {}; give the full reference",
                lock.origin,
                many.iter()
                    .map(|i| i.reference.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

/// Where pulls of `r` go: `from` (a mirror registry) when given, else the lock's
/// `[[registry]]` endpoint for its registry, else the registry itself.
fn endpoint(lock: &Lock, r: &Reference, from: Option<&str>) -> String {
    if let Some(f) = from {
        return f.to_string();
    }
    lock.registries
        .iter()
        .find(|x| x.name == r.registry)
        .map(|x| x.endpoint.clone())
        .unwrap_or_else(|| r.registry.clone())
}

/// One line of `ezimg images list`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub reference: String,
    pub used_by: String,
    pub pinned: Option<String>,
    /// The platform manifest in the cache, and the image's total size.
    pub cached: Option<(String, u64)>,
}

/// The lock's images and whether each is in the cache.
pub fn list(lock: &Lock, cache: &Cache) -> Result<Vec<Listed>> {
    let index = layout::read(cache)?;
    let mut out = Vec::new();
    for i in &lock.images {
        let cached = match &i.digest {
            Some(p) => match layout::find(&index, &i.reference, p) {
                Some(d) => {
                    // A manifest gone from the cache: the image is simply not there.
                    let blobs = layout::blobs_of(cache, d).unwrap_or_default();
                    let complete = !blobs.is_empty()
                        && blobs
                            .iter()
                            .all(|b| b.sha256().is_ok_and(|h| cache.sha256_path(&h).is_file()));
                    complete.then(|| (d.digest.clone(), blobs.iter().map(|b| b.size).sum()))
                }
                None => None,
            },
            None => None,
        };
        out.push(Listed {
            reference: i.reference.clone(),
            used_by: i.used_by.clone(),
            pinned: i.digest.clone(),
            cached,
        });
    }
    Ok(out)
}

/// How `pull` works.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Pull every image from this registry (`host[:port]` or URL) instead of its own, keeping
    /// the repository path: a mirror or a connected site's registry.
    pub from: Option<String>,
    pub platform: Platform,
    pub net: Net,
}

/// What `pull` did for one image.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub reference: String,
    pub manifest: String,
    pub downloaded: u64,
    pub already: bool,
}

/// A manifest written to `tmp/` (removed on drop unless committed).
struct Staged {
    path: tempfile::TempPath,
    hashes: Hashes,
}

fn stage_bytes(cache: &Cache, bytes: &[u8]) -> Result<Staged> {
    use std::io::Write;
    cache.init()?;
    let mut f = tempfile::Builder::new()
        .prefix("manifest-")
        .suffix(".part")
        .tempfile_in(cache.tmp_dir())
        .with_context(|| format!("creating a file in {}", cache.tmp_dir().display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", f.path().display()))?;
    let mut h = crate::digest::Hasher::new(false);
    h.update(bytes);
    Ok(Staged {
        path: f.into_temp_path(),
        hashes: h.finish(),
    })
}

/// Pull the images `names` (all of the lock's when empty) by their pinned digests.
pub async fn pull(
    lock: &Lock,
    cache: &Cache,
    names: &[String],
    opts: &PullOptions,
) -> Result<Vec<Pulled>> {
    let imgs = select(lock, names)?;
    let unpinned: Vec<&str> = imgs
        .iter()
        .filter(|i| i.digest.is_none())
        .map(|i| i.reference.as_str())
        .collect();
    if !unpinned.is_empty() {
        bail!(
            "no digest recorded in {} for:\n    {}\n`ezimg lock` asks each one's registry once \
             for the digest of its tag (trust on first use, said loudly) and records it; review \
             the digests, then pull checks against them",
            lock.origin,
            unpinned.join("\n    ")
        );
    }
    cache.init()?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for img in imgs {
        match pull_one(lock, cache, img, opts).await {
            Ok(p) => out.push(p),
            Err(e) => errors.push(format!("{}: {e:#}", img.reference)),
        }
    }
    if !errors.is_empty() {
        bail!(
            "could not pull {} image(s) (nothing of them was added to the cache):\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    Ok(out)
}

async fn pull_one(
    lock: &Lock,
    cache: &Cache,
    img: &ImagePin,
    opts: &PullOptions,
) -> Result<Pulled> {
    let pinned = img.digest.clone().context("no digest pinned")?;
    let r = Reference::parse(&img.reference)?;
    if let Some(d) = layout::find(&layout::read(cache)?, &img.reference, &pinned)
        && layout::blobs_of(cache, d).is_ok_and(|bs| {
            bs.iter()
                .all(|b| b.sha256().is_ok_and(|h| cache.sha256_path(&h).is_file()))
        })
    {
        return Ok(Pulled {
            reference: img.reference.clone(),
            manifest: d.digest.clone(),
            downloaded: 0,
            already: true,
        });
    }
    let reg = Registry::new(&endpoint(lock, &r, opts.from.as_deref()), &opts.net)?;
    let repo = &r.repository;
    let (bytes, ct) = reg.manifest(repo, &pinned).await?;
    let mut staged = vec![stage_bytes(cache, &bytes)?];
    let (desc, parsed) = match manifest::parse(&bytes, ct.as_deref())
        .with_context(|| format!("manifest {pinned}"))?
    {
        Parsed::Index { manifests, .. } => {
            let want = &opts.platform;
            let d = manifest::pick(&manifests, want).with_context(|| {
                format!(
                    "index {pinned} has no {}/{} image",
                    want.os, want.architecture
                )
            })?;
            let (b2, ct2) = reg.manifest(repo, &d.digest).await?;
            if b2.len() as u64 != d.size {
                bail!(
                    "manifest {}: {} bytes, the index says {}",
                    d.digest,
                    b2.len(),
                    d.size
                );
            }
            let p2 = manifest::parse(&b2, ct2.as_deref().or(Some(&d.media_type)))
                .with_context(|| format!("manifest {}", d.digest))?;
            if matches!(p2, Parsed::Index { .. }) {
                bail!("manifest {}: an index inside an index", d.digest);
            }
            staged.push(stage_bytes(cache, &b2)?);
            let mut d = d.clone();
            d.media_type = p2.media_type().to_string();
            d.annotations.clear();
            (d, p2)
        }
        p @ Parsed::Image { .. } => (
            Descriptor {
                media_type: p.media_type().to_string(),
                digest: pinned.clone(),
                size: bytes.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            },
            p,
        ),
    };
    let Parsed::Image { config, layers, .. } = parsed else {
        bail!("manifest {}: not an image", desc.digest);
    };
    let mut parts: Vec<(PathBuf, Hashes)> = Vec::new();
    let mut downloaded = 0;
    for b in std::iter::once(&config).chain(layers.iter()) {
        let d = b
            .sha256()
            .with_context(|| format!("manifest {}", desc.digest))?;
        if cache.sha256_path(&d).is_file() || parts.iter().any(|(_, h)| h.sha256 == d) {
            continue;
        }
        let key = format!("blob-{}", d.hex());
        let _lock = cache.lock_key(&key).await?;
        let part = cache.tmp_dir().join(format!("{key}.part"));
        let h = reg.blob(repo, b, &part).await?;
        downloaded += h.size;
        parts.push((part, h));
    }
    // Every piece verified: now, and only now, into the cache.
    for s in staged {
        if cache.sha256_path(&s.hashes.sha256).is_file() {
            continue;
        }
        let p = s.path.keep().context("keeping a staged manifest")?;
        cache.insert_verified(&p, &s.hashes)?;
    }
    for (p, h) in parts {
        if cache.sha256_path(&h.sha256).is_file() {
            let _ = std::fs::remove_file(&p);
            continue;
        }
        cache.insert_verified(&p, &h)?;
    }
    layout::record(cache, desc.clone(), &img.reference, &pinned)?;
    Ok(Pulled {
        reference: img.reference.clone(),
        manifest: desc.digest,
        downloaded,
        already: false,
    })
}

/// What `push` did for one image.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `<registry>/<repository>:<tag>`.
    pub target: String,
    pub manifest: String,
    pub uploaded: usize,
    pub skipped: usize,
}

/// How nodes name the images: kubeadm pulls its images from `kubernetes.image_repository`,
/// containerd its sandbox image by `sandbox_image`; both differ from the upstream references
/// the lock pins, and the site registry must hold each image where nodes will ask for it.
#[derive(Debug, Clone, Default)]
pub struct NodeNames {
    /// `kubernetes.image_repository` of the cluster file.
    pub image_repository: Option<String>,
    /// `sandbox_image` of the cluster file.
    pub sandbox_image: Option<String>,
}

impl NodeNames {
    pub fn of(cluster: &crate::cluster::Cluster) -> NodeNames {
        NodeNames {
            image_repository: Some(cluster.kubernetes.image_repository.clone()),
            sandbox_image: Some(cluster.sandbox_image.clone()),
        }
    }

    /// The references nodes pull `img` by (one or more).
    pub fn references(&self, img: &ImagePin) -> Vec<String> {
        let last = img.reference.rsplit('/').next().unwrap_or(&img.reference);
        let mut out = Vec::new();
        match &self.image_repository {
            // kubeadm: `<repo>/<name>:<tag>` for a repository of its own (coredns too, which
            // is `coredns/coredns` only under the default registry).
            Some(repo)
                if img.used_by == "kubeadm" && !img.reference.starts_with(&format!("{repo}/")) =>
            {
                out.push(format!("{repo}/{last}"))
            }
            _ => out.push(img.reference.clone()),
        }
        // containerd pulls its sandbox image by the cluster file's name only.
        if let Some(sb) = &self.sandbox_image
            && sb.rsplit('/').next() == Some(last)
            && !out.contains(sb)
        {
            if img.used_by == "containerd" {
                out.clear();
            }
            out.push(sb.clone());
        }
        out
    }
}

/// The repository and tag an image has in the site registry: its path without the registry,
/// which is where containerd asks a mirror for it (`/v2/<path>/manifests/<tag>?ns=<registry>`).
pub fn site_repository(reference: &str) -> Result<(String, String)> {
    let r = Reference::parse(reference)?;
    Ok((r.repository, r.tag))
}

/// Push the pulled images `names` (all when empty) to `registry`, each under every name
/// nodes pull it by.
pub async fn push(
    lock: &Lock,
    store: &layout::Store<'_>,
    names: &[String],
    registry: &str,
    node_names: &NodeNames,
    net: &Net,
) -> Result<Vec<Pushed>> {
    let imgs = select(lock, names)?;
    let index = store.index()?;
    let hint = match store {
        layout::Store::Cache(_) => "`ezimg images pull` it (or import an export that has it) first",
        layout::Store::Dir(_) => {
            "build the layout again with this lock (`ezimg build --all --format images`)"
        }
    };
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut todo = Vec::new();
    for i in &imgs {
        let entry = i
            .digest
            .as_deref()
            .and_then(|p| layout::find(&index, &i.reference, p))
            .with_context(|| {
                format!(
                    "{} (pinned {}) is not in {}: {hint}",
                    i.reference,
                    i.digest.as_deref().unwrap_or("nothing: run `ezimg lock`"),
                    store.describe()
                )
            })?;
        for node_ref in node_names.references(i) {
            let key = site_repository(&node_ref)?;
            if let Some(other) = seen.insert(key.clone(), i.reference.clone()) {
                bail!(
                    "{} and {other} would both be {}:{} in the site registry",
                    i.reference,
                    key.0,
                    key.1
                );
            }
            todo.push((key, entry.clone()));
        }
    }
    let reg = Registry::new(registry, net)?;
    let mut out = Vec::new();
    for ((repo, tag), entry) in todo {
        let blobs = layout::blobs_in(store, &entry)?;
        let mut uploaded = 0;
        let mut skipped = 0;
        for b in &blobs[1..] {
            let path = store.blob(&b.sha256()?);
            if !path.is_file() {
                bail!(
                    "{repo}:{tag}: blob {} is missing from {}; pull the image again",
                    b.digest,
                    store.describe()
                );
            }
            if reg.has_blob(&repo, &b.digest).await? {
                skipped += 1;
                continue;
            }
            reg.upload_blob(&repo, &b.digest, &path)
                .await
                .with_context(|| format!("{repo}:{tag}: uploading {}", b.digest))?;
            uploaded += 1;
        }
        let mpath = store.blob(&entry.sha256()?);
        let bytes =
            std::fs::read(&mpath).with_context(|| format!("reading {}", mpath.display()))?;
        if format!("sha256:{}", sha256_hex(&bytes)) != entry.digest {
            bail!(
                "{} is corrupt (not {}); pull the image again",
                mpath.display(),
                entry.digest
            );
        }
        reg.put_manifest(&repo, &tag, &entry.media_type, &bytes)
            .await
            .with_context(|| format!("{repo}:{tag}: pushing the manifest"))?;
        out.push(Pushed {
            target: format!("{}/{repo}:{tag}", registry_label(&reg)),
            manifest: entry.digest.clone(),
            uploaded,
            skipped,
        });
    }
    Ok(out)
}

fn registry_label(reg: &Registry) -> String {
    let u = reg.url();
    match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap_or("")),
        None => u.host_str().unwrap_or("").to_string(),
    }
}

/// Ask each unpinned image's registry for the digest its tag names now (trust on first use:
/// nothing checks it). Returns `(reference, sha256:<hex>)`.
pub async fn learn_digests(
    lock: &Lock,
    names: &[String],
    from: Option<&str>,
    net: &Net,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for i in select(lock, names)?
        .into_iter()
        .filter(|i| i.digest.is_none())
    {
        let r = Reference::parse(&i.reference)?;
        let reg = Registry::new(&endpoint(lock, &r, from), net)?;
        let (bytes, ct) = reg
            .manifest(&r.repository, &r.tag)
            .await
            .with_context(|| format!("{}: resolving the tag", i.reference))?;
        manifest::parse(&bytes, ct.as_deref())
            .with_context(|| format!("{}: the registry's answer", i.reference))?;
        out.push((
            i.reference.clone(),
            format!("sha256:{}", sha256_hex(&bytes)),
        ));
    }
    Ok(out)
}

/// Write image digests into the lock file at `path` (its `[[image]]` tables), keeping its
/// layout; re-validated before it replaces the file.
pub fn write_digests(path: &Path, digests: &[(String, String)]) -> Result<()> {
    let edits: Vec<_> = digests
        .iter()
        .map(|(reference, digest)| {
            (
                reference.as_str(),
                vec![("digest", toml_edit::value(digest.as_str()))],
            )
        })
        .collect();
    crate::artifact::lock::edit_tables(path, "image", "reference", &edits)
}

/// What `export` adds for the images.
#[derive(Debug, Clone, Default)]
pub struct ExportPart {
    /// The cache entries of the pulled images (manifests, configs, layers, pinned indexes).
    pub entries: Vec<(crate::digest::Sha256Digest, PathBuf)>,
    /// The layout's `index.json` limited to the lock's images; None when none is pulled.
    pub index: Option<Vec<u8>>,
    /// How many images it holds.
    pub images: usize,
    /// The lock's images that are not (completely) in the cache.
    pub not_pulled: Vec<String>,
}

/// Tar members for `export`: the cache entries of every pulled image of the lock and the
/// layout's `index.json` limited to them.
pub fn export_members(lock: &Lock, cache: &Cache) -> Result<ExportPart> {
    let index = layout::read(cache)?;
    let mut entries = Vec::new();
    let mut keep = layout::Index::default();
    let mut missing = Vec::new();
    for i in &lock.images {
        let Some(d) = i
            .digest
            .as_deref()
            .and_then(|p| layout::find(&index, &i.reference, p))
        else {
            missing.push(i.reference.clone());
            continue;
        };
        let Ok(mut blobs) = layout::blobs_of(cache, d) else {
            missing.push(i.reference.clone());
            continue;
        };
        if let Some(p) = &i.digest
            && *p != d.digest
        {
            // The pinned index: exported too, so the pin can be checked on the other side.
            blobs.push(Descriptor {
                media_type: String::new(),
                digest: p.clone(),
                size: 0,
                platform: None,
                annotations: BTreeMap::new(),
            });
        }
        let mut paths = Vec::new();
        for b in &blobs {
            let h = b.sha256()?;
            paths.push((h, cache.sha256_path(&h)));
        }
        if !paths.iter().all(|(_, p)| p.is_file()) {
            missing.push(i.reference.clone());
            continue;
        }
        for (h, p) in paths {
            if !entries.iter().any(|(e, _)| *e == h) {
                entries.push((h, p));
            }
        }
        keep.manifests.push(d.clone());
    }
    let index = if keep.manifests.is_empty() {
        None
    } else {
        let mut t = serde_json::to_vec_pretty(&keep).context("serializing index.json")?;
        t.push(b'\n');
        Some(t)
    };
    Ok(ExportPart {
        entries,
        index,
        images: keep.manifests.len(),
        not_pulled: missing,
    })
}

/// After `import`: record the images of an exported `index.json` whose blobs are all in the
/// cache now (imported entries are verified by their names), and whose pinned index, when
/// the pin is one, lists the manifest. Returns the references recorded.
pub fn adopt_index(cache: &Cache, text: &[u8]) -> Result<Vec<String>> {
    let index: layout::Index =
        serde_json::from_slice(text).context("images/index.json in the archive")?;
    let mut done = Vec::new();
    for d in index.manifests {
        let (Some(reference), Some(pinned)) = (
            d.annotations.get(layout::REF_NAME).cloned(),
            d.annotations.get(layout::PINNED).cloned(),
        ) else {
            bail!("images/index.json: an entry without reference or pinned digest");
        };
        let blobs = layout::blobs_of(cache, &d)
            .with_context(|| format!("images/index.json: {reference}"))?;
        for b in &blobs {
            if !cache.sha256_path(&b.sha256()?).is_file() {
                bail!(
                    "images/index.json: {reference}: blob {} is not in the archive",
                    b.digest
                );
            }
        }
        if pinned != d.digest {
            let pd: crate::digest::Sha256Digest = pinned
                .strip_prefix("sha256:")
                .unwrap_or(&pinned)
                .parse()
                .with_context(|| format!("{reference}: pinned digest {pinned}"))?;
            let p = cache.sha256_path(&pd);
            let bytes = std::fs::read(&p)
                .with_context(|| format!("{reference}: the pinned index {pinned} is missing"))?;
            match manifest::parse(&bytes, None)? {
                Parsed::Index { manifests, .. }
                    if manifests.iter().any(|m| m.digest == d.digest) => {}
                _ => bail!(
                    "{reference}: the pinned index {pinned} does not list {}",
                    d.digest
                ),
            }
        }
        let mut clean = d.clone();
        clean.annotations.clear();
        layout::record(cache, clean, &reference, &pinned)?;
        done.push(reference);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(reference: &str, used_by: &str) -> ImagePin {
        ImagePin {
            reference: reference.into(),
            digest: None,
            used_by: used_by.into(),
        }
    }

    #[test]
    fn nodes_pull_kubeadm_images_from_the_image_repository() {
        let n = NodeNames {
            image_repository: Some("mirror.example/google_containers".into()),
            sandbox_image: Some("mirror.example/google_containers/pause:3.8".into()),
        };
        assert_eq!(
            n.references(&pin("upstream.example/coredns/coredns:v1.11.1", "kubeadm")),
            ["mirror.example/google_containers/coredns:v1.11.1"]
        );
        assert_eq!(
            n.references(&pin("upstream.example/pause:3.8", "containerd")),
            ["mirror.example/google_containers/pause:3.8"]
        );
        assert_eq!(
            n.references(&pin("upstream.example/pause:3.8", "test")),
            [
                "upstream.example/pause:3.8",
                "mirror.example/google_containers/pause:3.8"
            ]
        );
        assert_eq!(
            n.references(&pin("hub.example/calico/node:v3.27.0", "calico")),
            ["hub.example/calico/node:v3.27.0"]
        );
        // The default repository: kubeadm keeps `coredns/coredns`.
        let d = NodeNames {
            image_repository: Some("upstream.example".into()),
            sandbox_image: None,
        };
        assert_eq!(
            d.references(&pin("upstream.example/coredns/coredns:v1.11.1", "kubeadm")),
            ["upstream.example/coredns/coredns:v1.11.1"]
        );
    }

    #[test]
    fn the_embedded_lock_maps_to_distinct_site_repositories() -> Result<()> {
        let lock = Lock::embedded()?;
        let cluster = crate::cluster::load(None)?.cluster;
        let n = NodeNames::of(&cluster);
        let mut seen = std::collections::BTreeSet::new();
        for i in &lock.images {
            for r in n.references(i) {
                assert!(seen.insert(site_repository(&r)?), "{r} twice");
            }
        }
        // The sandbox image is among them, where containerd asks for it.
        assert!(seen.contains(&site_repository(&cluster.sandbox_image)?));
        Ok(())
    }
}
