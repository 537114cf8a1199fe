//! A NoCloud seed as an ISO 9660 image with volume id `cidata`, the form `cloud-localds` and
//! most hypervisors use (a CD-ROM).
//!
//! Written in-process with `hadris-iso` (pinned exactly: it is a release candidate), with Rock
//! Ridge and Joliet so `user-data` keeps its lowercase name and dash (the primary tree holds
//! 8.3 uppercase names only). The writer reads no clock: every date is the fixed epoch below, so
//! two writes are byte-identical. Checked against `isoinfo -d`, `isoinfo -R/-J -x` and
//! `blkid` in `tests/cloudinit.rs`; no `xorriso` fallback was needed.

use std::path::Path;

use anyhow::{Context, Result};
use hadris_fs::{Content, DateTime, Node, Tree};
use hadris_iso::{IsoId, IsoOptions};
use hadris_storage::{BlockSize, MemDevice};

/// The volume id cloud-init's NoCloud looks for.
pub const VOLUME_ID: &str = "cidata";

/// Dates in the image: 2000-01-01T00:00:00Z, the bundle's default epoch.
const EPOCH: i64 = 946_684_800;

fn options() -> Result<IsoOptions> {
    let time =
        DateTime::from_unix_seconds(EPOCH).map_err(|e| anyhow::anyhow!("fixed ISO date: {e:?}"))?;
    Ok(IsoOptions::default()
        .with_id(IsoId::Volume, VOLUME_ID)
        .with_joliet()
        .with_rock_ridge()
        .with_time(time))
}

/// The image bytes for `files` (flat names in the root directory).
pub fn image(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut tree = Tree::new();
    for (name, content) in files {
        if name.is_empty() || name.contains(['/', '\\']) {
            anyhow::bail!("seed file name {name:?}: must be a plain name");
        }
        tree.insert(
            name.as_bytes(),
            Node::file(Content::bytes(content.to_vec())),
        )
        .map_err(|e| anyhow::anyhow!("adding {name} to the ISO seed: {e}"))?;
    }
    let opts = options()?;
    let size = hadris_iso::plan(&tree, &opts)
        .map_err(|e| anyhow::anyhow!("laying out the ISO seed: {e}"))?
        .size();
    let len = usize::try_from(size).context("ISO seed too large")?;
    let mut buf = vec![0u8; len];
    let block = BlockSize::new(2048).context("ISO block size")?;
    let report = hadris_iso::sync::write(MemDevice::new(buf.as_mut_slice(), block), &tree, &opts)
        .map_err(|e| anyhow::anyhow!("writing the ISO seed: {e}"))?;
    if let Some(w) = report.warnings().first() {
        // Something of the tree was not stored (e.g. a name): the seed would be wrong.
        anyhow::bail!("writing the ISO seed: {w}");
    }
    Ok(buf)
}

/// Write the seed image for `files` to `out` (replaced atomically, mode 0600: it holds secrets).
pub fn write(files: &[(&str, &[u8])], out: &Path) -> Result<()> {
    let img = image(files)?;
    crate::fsutil::write_atomic(out, &img)
}
