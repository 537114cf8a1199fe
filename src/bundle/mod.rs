//! The role bundle: one deterministic tar.gz that every delivery path runs (`apply`).
//!
//! Layout: `apply`, `lib/ezimg.sh`, `bundle.env`, `plan.json`, `artifacts.list`,
//! `nodes/<host>/steps` (what to install, in order), `blobs/<sha256>` (file contents, stored once
//! however many nodes share them) and `MANIFEST` (sha256 of every other member). When an
//! artifact is a signed RPM: `signatures.list` (`<artifact> <key fingerprint>`) and
//! `keys/<fingerprint>.asc` (the pinned public key), so the node checks the signature itself.
//! The line formats of these files are `format`'s.

pub mod format;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use serde_json::json;

use crate::digest::sha256_hex;
use crate::output::NodeInput;
use crate::plan::NodePlan;
use format::{ArtifactLine, Step};

const APPLY: &str = include_str!("apply.sh");
const LIB: &str = include_str!("lib.sh");

/// Where delivery paths put things on the node (see `bootstrap_script`).
pub const NODE_STATE_DIR: &str = "/var/lib/ezimg";
pub const NODE_SECRETS_DIR: &str = "/etc/ezimg/secrets";
pub const NODE_BOOTSTRAP: &str = "/var/lib/ezimg/bootstrap.sh";

/// Fixed member mtime when `SOURCE_DATE_EPOCH` is unset (2000-01-01, as the seed images).
pub const DEFAULT_EPOCH: u64 = 946_684_800;

/// The mtime reproducible outputs use: `SOURCE_DATE_EPOCH` or the fixed default.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        Err(_) => Ok(DEFAULT_EPOCH),
    }
}

/// A pinned artifact as the node sees it: `None` digest means unpinned (refused on the node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPin {
    pub sha256: Option<String>,
    pub file: String,
    /// The key that must have signed it (an RPM pinned with `signed_by`).
    pub signer: Option<Signer>,
}

/// The pinned key of a signed artifact, shipped in the bundle (it is public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Full v4 fingerprint, 40 uppercase hex digits.
    pub fingerprint: String,
    /// The ASCII-armored key; None when the lock's key file is missing.
    pub key: Option<String>,
    /// The key file the lock names, for messages.
    pub key_file: String,
}

#[derive(Debug, Clone)]
pub struct Bundle {
    pub role: String,
    pub file_name: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// A deterministic tar.gz of `entries` (path -> (mode, content)): sorted, uid/gid 0, fixed mtime.
pub fn tar_gz(entries: &BTreeMap<String, (u32, Vec<u8>)>, mtime: u64) -> Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    // Directories interleaved with files in one sorted order, each parent before its children.
    let mut members: BTreeMap<String, Option<(u32, &[u8])>> = BTreeMap::new();
    for (path, (mode, content)) in entries {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            acc.push_str(part);
            acc.push('/');
            members.entry(acc.clone()).or_insert(None);
        }
        members.insert(path.clone(), Some((*mode, content.as_slice())));
    }
    for (path, member) in &members {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        let data: &[u8] = match member {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                &[]
            }
            Some((mode, content)) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                content
            }
        };
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, path, data)
            .with_context(|| format!("adding {path} to the archive"))?;
    }
    let gz = tar.into_inner().context("finishing the tar stream")?;
    gz.finish().context("finishing gzip")
}

/// Build the bundle of one role from the plans of its nodes.
pub fn build(
    role: &str,
    plans: &[NodePlan],
    artifacts: &BTreeMap<String, ArtifactPin>,
) -> Result<Bundle> {
    let first = plans
        .first()
        .with_context(|| format!("role {role} has no node to bundle"))?;
    let mut entries: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    entries.insert("apply".into(), (0o755, APPLY.as_bytes().to_vec()));
    entries.insert("lib/ezimg.sh".into(), (0o644, LIB.as_bytes().to_vec()));
    let env = format::write_bundle_env(&[
        ("cluster", &first.cluster),
        ("role", role),
        ("os", first.os.as_str()),
        ("ezimg", env!("CARGO_PKG_VERSION")),
    ])?;
    entries.insert("bundle.env".into(), (0o644, env.into_bytes()));
    let mut needed: Vec<String> = Vec::new();
    for plan in plans {
        if plan.role != role {
            anyhow::bail!("node {} has role {}, not {role}", plan.hostname, plan.role);
        }
        let mut steps = Vec::new();
        for l in plan.applied() {
            steps.push(Step::Layer {
                name: l.name.clone(),
            });
            for f in &l.files {
                if f.supplied.is_some() && f.content.is_empty() {
                    anyhow::bail!(
                        "node {}: layer {}: {} is supplied by the build and was not \
                         (supplied::fill)",
                        plan.hostname,
                        l.name,
                        f.dest
                    );
                }
                steps.push(Step::File {
                    mode: f.mode.clone(),
                    sha256: f.sha256.clone(),
                    dest: f.dest.clone(),
                });
                entries.insert(format!("blobs/{}", f.sha256), (0o644, f.content.clone()));
            }
            for u in &l.units {
                steps.push(Step::Unit {
                    name: u.name.clone(),
                    enable: u.enable,
                });
            }
            for s in &l.scripts {
                steps.push(Step::Script {
                    sha256: s.sha256.clone(),
                    src: format!("{}/{}", l.name, s.src),
                });
                entries.insert(format!("blobs/{}", s.sha256), (0o644, s.content.clone()));
            }
        }
        let steps = format::write_steps(&steps)
            .with_context(|| format!("node {}: the bundle's steps", plan.hostname))?;
        entries.insert(
            format!("nodes/{}/steps", plan.hostname),
            (0o644, steps.into_bytes()),
        );
        needed.extend(plan.artifacts());
    }
    needed.sort();
    needed.dedup();
    let mut list = Vec::new();
    let mut signatures = String::new();
    for name in &needed {
        let pin = artifacts.get(name).with_context(|| {
            format!("role {role} needs artifact {name:?}, which artifacts.lock does not pin")
        })?;
        list.push(ArtifactLine {
            name: name.clone(),
            sha256: pin.sha256.clone(),
            file: pin.file.clone(),
        });
        if let Some(sig) = &pin.signer {
            let key = sig.key.as_ref().with_context(|| {
                format!(
                    "role {role}: artifact {name:?} must be signed by the key with fingerprint \
                     {}, whose file {} is missing next to the lock; add the vendor's key file",
                    sig.fingerprint, sig.key_file
                )
            })?;
            signatures.push_str(&format::signature_line(name, &sig.fingerprint)?);
            entries.insert(
                format!("keys/{}.asc", sig.fingerprint),
                (0o644, key.clone().into_bytes()),
            );
        }
    }
    let list = format::write_artifacts_list(&list)
        .with_context(|| format!("role {role}: the bundle's artifacts.list"))?;
    entries.insert("artifacts.list".into(), (0o644, list.into_bytes()));
    if !signatures.is_empty() {
        entries.insert("signatures.list".into(), (0o644, signatures.into_bytes()));
    }
    let plan_json = serde_json::to_vec_pretty(&json!({ "role": role, "nodes": plans }))
        .context("serializing the plan")?;
    entries.insert("plan.json".into(), (0o644, plan_json));

    let mut manifest = String::new();
    for (path, (_, content)) in &entries {
        manifest.push_str(&format::manifest_line(&sha256_hex(content), path));
    }
    entries.insert("MANIFEST".into(), (0o644, manifest.into_bytes()));

    let bytes = tar_gz(&entries, source_date_epoch()?)?;
    Ok(Bundle {
        role: role.to_string(),
        file_name: format!("ezimg-{role}-bundle.tar.gz"),
        sha256: sha256_hex(&bytes),
        bytes,
    })
}

/// Single-quote `s` for POSIX shells.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script every delivery path runs on the node: verify and unpack the bundle, then `apply`.
/// It expects the bundle at `/var/lib/ezimg/<file>` (or fetches `bundle.url`) and secrets in
/// `/etc/ezimg/secrets/<name>`, both put there by the seed or kickstart.
pub fn bootstrap_script(input: &NodeInput) -> String {
    let b = input.bundle;
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "# ezimg bootstrap: node {} of cluster {}. Unpacks the role bundle and runs apply.\n",
        input.node.hostname, input.cluster.name
    ));
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "bundle={NODE_STATE_DIR}/{}\nsha={}\nurl={}\nnode={}\nartifacts={}\n",
        shell_quote(&b.file_name),
        b.sha256,
        shell_quote(b.url.as_deref().unwrap_or("")),
        shell_quote(&input.node.hostname),
        shell_quote(input.artifacts_from.as_deref().unwrap_or("")),
    ));
    let missing = if b.in_image {
        format!(
            " (this seed goes with the role image its build baked, ezimg-{}.qcow2, which \
             holds the bundle)",
            input.node.role
        )
    } else {
        String::new()
    };
    s.push_str(
        &r#"mkdir -p /var/lib/ezimg /opt/ezimg /etc/ezimg
# The seed or kickstart wrote the secrets; whatever made their folder, only root may list it.
if [ -d /etc/ezimg/secrets ]; then chmod 0700 /etc/ezimg/secrets; fi
if [ ! -f "$bundle" ]; then
    [ -n "$url" ] || { echo "ezimg: no bundle at $bundle and no URL to fetch it@MISSING@" >&2; exit 1; }
    curl -fsSL --retry 5 --retry-delay 2 -o "$bundle.part" "$url"
    mv -f "$bundle.part" "$bundle"
fi
if [ "$(sha256sum "$bundle" | cut -d' ' -f1)" != "$sha" ]; then
    echo "ezimg: $bundle does not match sha256 $sha" >&2
    exit 1
fi
dir=/opt/ezimg/bundle-$sha
if [ ! -d "$dir" ]; then
    tmp=$(mktemp -d /opt/ezimg/.unpack.XXXXXX)
    tar -xzf "$bundle" -C "$tmp" --no-same-owner
    mv "$tmp" "$dir"
fi
ln -sfn "$dir" /opt/ezimg/current
printf '%s\n' "$node" >/etc/ezimg/node
if [ -n "$artifacts" ]; then
    exec "$dir/apply" --node "$node" --artifacts "$artifacts"
fi
exec "$dir/apply" --node "$node"
"#
        .replace("@MISSING@", &missing),
    );
    s
}

/// Write `bytes` as a `sha256sum -c` line for `file_name`.
pub fn sha256_line(sha256: &str, file_name: &str) -> String {
    format::manifest_line(sha256, file_name)
}

/// Write a file only its owner may read: node outputs that carry secrets (ks.cfg, user-data).
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write_file(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))
}

/// Write helper used by outputs: create parents and write.
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
