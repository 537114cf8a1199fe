//! A NoCloud seed as a FAT12/16 image labelled `CIDATA`, written in-process with `fatfs`
//! (no mkfs, mtools or root needed), byte-reproducible: fixed timestamps, a volume id derived
//! from the content.

use std::io::{Cursor, Write};
use std::path::Path;

use anyhow::{Context, Result};
use fatfs::{Date, DateTime, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider};
use sha2::{Digest, Sha256};

/// The label cloud-init's NoCloud looks for (it accepts `cidata` in either case).
pub const LABEL: [u8; 11] = *b"CIDATA     ";

/// Every timestamp in the image: 2000-01-01 00:00:00, as the bundle's default epoch. FAT stores
/// local time without a zone, so a fixed value is as good as any and keeps images identical.
#[derive(Debug)]
struct FixedTime;

const FIXED_DATE: Date = Date {
    year: 2000,
    month: 1,
    day: 1,
};

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        FIXED_DATE
    }
    fn get_current_date_time(&self) -> DateTime {
        DateTime {
            date: FIXED_DATE,
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

const KIB: u64 = 1024;

/// Image size for `files`: their data in 4 KiB clusters (the largest fatfs picks below 256 MiB)
/// plus room for boot sector, FATs and root directory, rounded to 64 KiB.
fn size_for(files: &[(&str, &[u8])]) -> u64 {
    let data: u64 = files
        .iter()
        .map(|(_, c)| (c.len() as u64).div_ceil(4 * KIB) * 4 * KIB)
        .sum();
    let meta = 128 * KIB + data / 64;
    (data + meta).div_ceil(64 * KIB) * 64 * KIB
}

/// The volume id (the `UUID` blkid shows): the first bytes of a digest of names and contents,
/// so different seeds differ and the same seed is the same.
fn volume_id(files: &[(&str, &[u8])]) -> u32 {
    let mut h = Sha256::new();
    for (name, content) in files {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((content.len() as u64).to_le_bytes());
        h.update(content);
    }
    let d = h.finalize();
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// The image bytes for `files` (flat names in the root directory).
pub fn image(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    for (name, _) in files {
        if name.is_empty() || name.contains(['/', '\\']) {
            anyhow::bail!("seed file name {name:?}: must be a plain name");
        }
    }
    let id = volume_id(files);
    let mut size = size_for(files);
    // The estimate is generous; should a future fatfs need more, grow instead of failing.
    for _ in 0..4 {
        match build(files, size, id) {
            Ok(img) => return Ok(img),
            Err(e) if is_no_space(&e) => size *= 2,
            Err(e) => return Err(e),
        }
    }
    build(files, size, id)
}

fn is_no_space(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::UnexpectedEof
                || io.to_string().contains("No space")
        })
}

fn build(files: &[(&str, &[u8])], size: u64, id: u32) -> Result<Vec<u8>> {
    let len = usize::try_from(size).context("seed image too large")?;
    let mut disk = Cursor::new(vec![0u8; len]);
    fatfs::format_volume(
        &mut disk,
        FormatVolumeOptions::new().volume_label(LABEL).volume_id(id),
    )
    .context("formatting the FAT seed image")?;
    disk.set_position(0);
    {
        let fs = FileSystem::new(&mut disk, FsOptions::new().time_provider(&FIXED_TIME))
            .context("opening the new FAT seed image")?;
        {
            let root = fs.root_dir();
            for (name, content) in files {
                let mut f = root
                    .create_file(name)
                    .with_context(|| format!("creating {name} in the FAT seed image"))?;
                f.truncate()
                    .with_context(|| format!("writing {name} in the FAT seed image"))?;
                f.write_all(content)
                    .with_context(|| format!("writing {name} in the FAT seed image"))?;
                f.flush()
                    .with_context(|| format!("writing {name} in the FAT seed image"))?;
            }
        }
        fs.unmount().context("closing the FAT seed image")?;
    }
    Ok(disk.into_inner())
}

/// Write the seed image for `files` to `out` (replaced atomically: no partial image is left).
pub fn write(files: &[(&str, &[u8])], out: &Path) -> Result<()> {
    let img = image(files)?;
    crate::fsutil::write_atomic(out, &img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_volume_is_recognised_so_image_can_grow() {
        let data = vec![7u8; 300 * 1024];
        let files = [("user-data", data.as_slice())];
        let e = build(&files, 256 * KIB, 1).expect_err("too small");
        assert!(is_no_space(&e), "{e:#}");
        let img = image(&files).expect("image");
        assert!(img.len() as u64 >= size_for(&files));
    }
}
