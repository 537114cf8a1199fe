//! The OCI / Docker manifest and index documents, as far as pulling and pushing needs them:
//! which blobs an image is made of and which platform a manifest is for. Unknown fields are
//! kept out of the model on purpose: manifests are stored and pushed as the exact bytes their
//! digest names, never re-serialized.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Every manifest type ezimg reads, for `Accept`.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted (registries refuse more than 4 MiB too).
pub const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The descriptor's digest; only sha256 is accepted (what the cache is keyed by).
    pub fn sha256(&self) -> Result<Sha256Digest> {
        let hex = self
            .digest
            .strip_prefix("sha256:")
            .with_context(|| format!("digest {:?} is not sha256:<hex>", self.digest))?;
        hex.parse()
            .with_context(|| format!("digest {:?} is not sha256:<hex>", self.digest))
    }
}

/// A manifest or an index: which one is decided by `mediaType` (or the response's type).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// A multi-platform index / manifest list.
    Index {
        media_type: String,
        manifests: Vec<Descriptor>,
    },
    /// One image: its config and layers.
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl Parsed {
    pub fn media_type(&self) -> &str {
        match self {
            Parsed::Index { media_type, .. } | Parsed::Image { media_type, .. } => media_type,
        }
    }
}

/// Parse `bytes`; `content_type` is the registry's `Content-Type`, used when the document
/// carries no `mediaType` (both are allowed by the OCI spec).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed> {
    let doc: Doc = serde_json::from_slice(bytes).context("not a manifest (JSON)")?;
    let media_type = doc
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
        .unwrap_or_default();
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Parsed::Index {
            media_type,
            manifests: doc.manifests.context("an index without `manifests`")?,
        }),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Parsed::Image {
            media_type,
            config: doc.config.context("a manifest without `config`")?,
            layers: doc.layers.unwrap_or_default(),
        }),
        "" if doc.manifests.is_some() => Ok(Parsed::Index {
            media_type: OCI_INDEX.into(),
            manifests: doc.manifests.unwrap_or_default(),
        }),
        "" if doc.config.is_some() => Ok(Parsed::Image {
            media_type: OCI_MANIFEST.into(),
            config: doc.config.context("a manifest without `config`")?,
            layers: doc.layers.unwrap_or_default(),
        }),
        other => bail!("manifest type {other:?} is not supported (OCI or Docker schema 2 only)"),
    }
}

/// `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: None,
        }),
        [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: Some(v.to_string()),
        }),
        _ => bail!("platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"),
    }
}

/// The index entry for `want` (a variant is compared only when asked for).
pub fn pick<'a>(manifests: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    manifests.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == want.os
                && p.architecture == want.architecture
                && (want.variant.is_none() || p.variant == want.variant)
        })
    })
}
