//! A bootable raw disk from a root tree, the same bytes for the same tree: what makes base
//! images and role images byte-reproducible.
//!
//! A filesystem that a kernel has mounted and written is not reproducible (block allocation,
//! journal, the clock in every inode). So ezimg never ships one: the base's tree (mmdebstrap)
//! and the baked guest's tree (read back from its disk after the bake VM powered off) are both
//! written afresh with `mkfs.ext4 -d`, which sorts directory entries and allocates in order.
//! What mkfs takes from the host is made fixed first:
//! - mtimes: every file this build wrote (newer than its start) gets [`EPOCH`]; files as their
//!   packages shipped them keep their time (Python's `.pyc` headers record it);
//! - atimes: [`EPOCH`] everywhere; ctimes (mkfs copies the host's, which no one can set) are
//!   overwritten with `debugfs` after mkfs; mkfs's own times come from `E2FSPROGS_FAKE_TIME`;
//! - filesystem UUID and directory hash seed come from the caller's key, the MBR label id too.
//!
//! Free space is never written (a fresh sparse file), so it reads as zeros and
//! `qemu-img convert` stores none of it.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::process;

/// Every time ezimg writes into an image: 2000-01-01, as the bundles and seed images.
pub const EPOCH: u64 = crate::bundle::DEFAULT_EPOCH;

/// Start of the one partition (sector 2048): the MBR and GRUB's core image live before it.
pub const PART_OFFSET: u64 = 1 << 20;

/// The disk's shape: size, filesystem UUID (also the directory hash seed), MBR label id.
#[derive(Debug, Clone)]
pub struct Layout {
    pub size: u64,
    pub uuid: String,
    pub label_id: String,
}

impl Layout {
    /// The partition as e2fsprogs' tools open it: `disk?offset=N`.
    fn part_spec(&self, raw: &Path) -> OsString {
        let mut s = raw.as_os_str().to_owned();
        s.push(format!("?offset={PART_OFFSET}"));
        s
    }

    /// `mkfs.ext4` arguments that write `tree` into the partition of `raw`.
    pub fn mkfs_args(&self, tree: &Path, raw: &Path) -> Vec<OsString> {
        let mut v: Vec<OsString> = ["-q", "-F", "-L", "ezimg-root", "-U", &self.uuid, "-E"]
            .iter()
            .map(OsString::from)
            .collect();
        v.push(format!("offset={PART_OFFSET},hash_seed={}", self.uuid).into());
        v.push("-d".into());
        v.push(tree.into());
        v.push(raw.into());
        v.push(format!("{}k", (self.size - PART_OFFSET) / 1024).into());
        v
    }
}

/// A sparse raw disk of `layout.size` with one bootable Linux partition from 1 MiB.
pub fn partition(raw: &Path, layout: &Layout) -> Result<()> {
    let f = std::fs::File::create(raw).with_context(|| format!("creating {}", raw.display()))?;
    f.set_len(layout.size)
        .with_context(|| format!("sizing {}", raw.display()))?;
    drop(f);
    process::run_with_stdin(
        Command::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(raw),
        Some(
            format!(
                "label: dos\nlabel-id: 0x{}\nstart={}, type=83, bootable\n",
                layout.label_id,
                PART_OFFSET / 512
            )
            .as_bytes(),
        ),
        "writing the partition table (sfdisk)",
    )?;
    Ok(())
}

/// Partition `raw` and write `tree` into it as ext4 (times as the module says; the tree's
/// mtimes and atimes must already be clamped: [`clamp_times`]).
pub fn write(tree: &Path, raw: &Path, layout: &Layout) -> Result<()> {
    partition(raw, layout)?;
    process::run(
        Command::new("mkfs.ext4")
            .args(layout.mkfs_args(tree, raw))
            .env("E2FSPROGS_FAKE_TIME", EPOCH.to_string()),
        "making the ext4 root (mkfs.ext4 -d)",
    )?;
    fix_ctimes(raw, layout)
}

/// Set every in-use inode's ctime to [`EPOCH`] (mkfs copied the host's).
pub fn fix_ctimes(raw: &Path, layout: &Layout) -> Result<()> {
    let spec = layout.part_spec(raw);
    let text = process::run_stdout(
        Command::new("dumpe2fs").arg(&spec),
        "reading the inode bitmap (dumpe2fs)",
    )?;
    let used = used_inodes(&text)
        .with_context(|| format!("reading dumpe2fs's output for {}", raw.display()))?;
    let mut cmds = String::new();
    for ino in used {
        let _ = writeln!(cmds, "sif <{ino}> ctime 0x{EPOCH:x}");
    }
    process::run_with_stdin(
        Command::new("debugfs")
            .args(["-w", "-f", "-"])
            .arg(&spec)
            .env("E2FSPROGS_FAKE_TIME", EPOCH.to_string()),
        Some(cmds.as_bytes()),
        "fixing inode ctimes (debugfs)",
    )?;
    Ok(())
}

/// In-use inodes from `dumpe2fs` (its per-group "Free inodes:" ranges): the root directory and
/// every inode from the first non-reserved one up.
fn used_inodes(dumpe2fs: &str) -> Result<Vec<u64>> {
    let field = |name: &str| -> Result<u64> {
        dumpe2fs
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no `{name}` line"))
    };
    let count = field("Inode count:")?;
    let per_group = field("Inodes per group:")?;
    let first = field("First inode:")?;
    let mut free = vec![false; count as usize + 1];
    let mut groups = 0u64;
    for l in dumpe2fs.lines() {
        // Group lines are indented; the superblock's own "Free inodes:" count is not.
        let Some(ranges) = l.strip_prefix("  Free inodes:") else {
            continue;
        };
        groups += 1;
        for r in ranges.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let (a, b): (u64, u64) = (
                a.parse().with_context(|| format!("free range {r:?}"))?,
                b.parse().with_context(|| format!("free range {r:?}"))?,
            );
            if a == 0 || b < a || b > count {
                anyhow::bail!("free range {r:?} outside 1..={count}");
            }
            for i in a..=b {
                free[i as usize] = true;
            }
        }
    }
    if groups * per_group != count {
        anyhow::bail!("{groups} groups of {per_group} inodes, but {count} inodes");
    }
    Ok(std::iter::once(2)
        .chain((first..=count).filter(|&i| !free[i as usize]))
        .collect())
}

/// Clamp the times of everything under `root` (not crossing filesystems): an mtime at or after
/// `since` (written by this build) becomes [`EPOCH`]; every atime becomes [`EPOCH`].
pub fn clamp_times(root: &Path, since: SystemTime) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let epoch = filetime::FileTime::from_unix_time(EPOCH as i64, 0);
    let since = filetime::FileTime::from_system_time(since);
    let dev = std::fs::symlink_metadata(root)
        .with_context(|| format!("reading {}", root.display()))?
        .dev();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md =
            std::fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        if md.is_dir() && md.dev() == dev {
            for e in std::fs::read_dir(&p).with_context(|| format!("listing {}", p.display()))? {
                stack.push(
                    e.with_context(|| format!("listing {}", p.display()))?
                        .path(),
                );
            }
        }
        let mtime = filetime::FileTime::from_last_modification_time(&md);
        let mtime = if mtime >= since { epoch } else { mtime };
        filetime::set_symlink_file_times(&p, epoch, mtime)
            .with_context(|| format!("setting the times of {}", p.display()))?;
    }
    Ok(())
}

/// The first `PART_OFFSET` bytes of a disk: its MBR and GRUB's core image (embedded before the
/// partition, found by the filesystem UUID, so it boots any filesystem with that UUID).
pub fn boot_area(raw: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(raw).with_context(|| format!("opening {}", raw.display()))?;
    let mut v = vec![0u8; PART_OFFSET as usize];
    f.read_exact(&mut v)
        .with_context(|| format!("reading the boot area of {}", raw.display()))?;
    Ok(v)
}

/// Write a boot area taken with [`boot_area`] over the start of `raw`.
pub fn put_boot_area(raw: &Path, area: &[u8]) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(raw)
        .with_context(|| format!("opening {}", raw.display()))?;
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.write_all(area))
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing the boot area of {}", raw.display()))
}

/// A loop device, detached when dropped (on every path, errors included).
pub struct Loop {
    pub dev: String,
}

impl Loop {
    pub fn attach(file: &Path) -> Result<Loop> {
        let out = process::run_stdout(
            Command::new("losetup")
                .args(["--find", "--show", "--partscan"])
                .arg(file),
            "attaching a loop device (losetup)",
        )?;
        let dev = out.trim().to_string();
        if !dev.starts_with("/dev/loop") {
            anyhow::bail!("losetup printed {dev:?}, not a loop device");
        }
        Ok(Loop { dev })
    }

    /// The first partition's node. Without udev (containers) the kernel may not have scanned
    /// the table: ask with partx, then wait for devtmpfs.
    pub fn part1(&self) -> Result<String> {
        let p = format!("{}p1", self.dev);
        if !Path::new(&p).exists() {
            let _ = process::run(
                Command::new("partx").args(["--add", &self.dev]),
                "reading the partition table (partx)",
            );
        }
        for _ in 0..50 {
            if Path::new(&p).exists() {
                return Ok(p);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        anyhow::bail!("{p} did not appear after partx --add {}", self.dev)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_inodes_are_the_complement_of_the_free_ranges() {
        let text = "Inode count:              16\nInodes per group:         8\n\
                    First inode:              11\nFree inodes:              13\n\
                    Group 0: (Blocks 1-8)\n  Free inodes: \n\
                    Group 1: (Blocks 9-16)\n  Free inodes: 13-14, 16\n";
        assert_eq!(used_inodes(text).expect("parsed"), vec![2, 11, 12, 15]);
        assert!(used_inodes(&text.replace(", 16\n", ", 17\n")).is_err());
        assert!(used_inodes("Inode count: 8\n").is_err());
    }
}
