//! Bootable kickstart ISOs (`build --format iso`): the pinned vendor installer ISO remastered
//! the way lorax's `mkksiso` does, so a node installs from one disc with no install server.
//!
//! `ks.cfg` goes in the root and `inst.ks=hd:LABEL=<volume id>:/ks.cfg` on every boot line: the
//! isolinux `append` lines of entries with a kernel and the GRUB `linux`/`linuxefi` lines, in
//! the ISO's config files and in the grub.cfg inside the EFI boot image (edited with mtools, no
//! mount). The label is escaped as udev names `/dev/disk/by-label/` links (and mkksiso does):
//! every byte outside `a-zA-Z0-9#+.:=@_-` becomes `\xNN`, so `CentOS 7 x86_64` is
//! `CentOS\x207\x20x86_64`. xorriso then writes a new image from the old one plus the changed and
//! added files, replaying its El Torito boot entries (BIOS and EFI) as they were.
//!
//! Same inputs, same bytes: every file date and the volume dates are fixed (the bundle's epoch),
//! the FAT entries mtools rewrites take the fixed mtime of their source, and the media-check
//! digest (`implantisomd5`, as mkksiso does: the vendor's default entry checks the medium) is a
//! function of the image. The ISO holds the node's secrets: it is written 0600 inside a private
//! temporary folder beside its destination and renamed into place when complete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::process;

/// The bundle's epoch, 2000-01-01T00:00:00Z: every date in the image.
const EPOCH: u64 = 946_684_800;

/// Where ezimg's own files go on the ISO: the bundle and `artifacts/`.
pub const MEDIA_DIR: &str = "ezimg";

/// isolinux configs mkksiso edits.
const ISOLINUX_CFGS: [&str; 1] = ["isolinux/isolinux.cfg"];
/// GRUB configs mkksiso edits (UEFI and BIOS GRUB).
const GRUB_CFGS: [&str; 4] = [
    "EFI/BOOT/grub.cfg",
    "EFI/BOOT/BOOT.conf",
    "boot/grub2/grub.cfg",
    "boot/grub/grub.cfg",
];

/// Tools a remaster runs.
const TOOLS: [&str; 6] = [
    "xorriso",
    "osirrox",
    "mtype",
    "mcopy",
    "mdir",
    "implantisomd5",
];

/// What a remaster needs to know of the vendor ISO.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    /// The volume id as recorded (unescaped).
    pub volid: String,
    /// Every file, without the leading `/`.
    pub files: BTreeSet<String>,
    /// The El Torito EFI image's path (`images/efiboot.img`), if the ISO has one.
    pub efi_image: Option<String>,
}

impl Source {
    /// The ISO carries a package repository (a DVD or el7's Minimal ISO, not a boot ISO): the
    /// kickstart then installs from it (`cdrom`) and needs no network.
    pub fn has_packages(&self) -> bool {
        ["repodata/repomd.xml", "BaseOS/repodata/repomd.xml"]
            .iter()
            .any(|f| self.files.contains(*f))
    }

    /// The kernel argument every boot line gets.
    pub fn ks_arg(&self) -> String {
        format!("inst.ks=hd:LABEL={}:/ks.cfg", udev_escape(&self.volid))
    }
}

/// A file to add to the ISO.
pub enum Content<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// Escape a volume label as udev does for `/dev/disk/by-label/` (what `hd:LABEL=` looks up).
pub fn udev_escape(label: &str) -> String {
    let mut out = String::new();
    for b in label.bytes() {
        if b.is_ascii_alphanumeric() || b"#+.:=@_-".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Append `arg` to a boot line, replacing an `inst.ks=` it already has (a remastered ISO
/// remastered again boots one kickstart, not two).
fn append_arg(line: &str, arg: &str) -> String {
    let kept: String = if line.split_whitespace().any(|w| w.starts_with("inst.ks=")) {
        let indent = &line[..line.len() - line.trim_start().len()];
        let words: Vec<&str> = line
            .split_whitespace()
            .filter(|w| !w.starts_with("inst.ks="))
            .collect();
        format!("{indent}{}", words.join(" "))
    } else {
        line.trim_end().to_string()
    };
    format!("{kept} {arg}")
}

fn first_word(line: &str) -> String {
    line.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// isolinux: `arg` on the `append` line of every `label` entry that boots a kernel (`kernel`
/// or `linux`; not `localboot`). Returns the new text and how many lines changed.
pub fn edit_isolinux(text: &str, arg: &str) -> (String, usize) {
    let lines: Vec<&str> = text.lines().collect();
    // Each line's entry (index of its `label` line), and whether that entry has a kernel.
    let mut entry = vec![None; lines.len()];
    let mut has_kernel = std::collections::BTreeMap::new();
    let mut cur = None;
    for (i, l) in lines.iter().enumerate() {
        match first_word(l).as_str() {
            "label" => {
                cur = Some(i);
                has_kernel.insert(i, false);
            }
            "kernel" | "linux" => {
                if let Some(c) = cur {
                    has_kernel.insert(c, true);
                }
            }
            _ => {}
        }
        entry[i] = cur;
    }
    let mut n = 0;
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let boots = entry[i].is_some_and(|e| has_kernel.get(&e) == Some(&true));
        if boots && first_word(l) == "append" {
            out.push_str(&append_arg(l, arg));
            n += 1;
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    (out, n)
}

/// GRUB: `arg` on every `linux`, `linuxefi` and `linux16` line.
pub fn edit_grub(text: &str, arg: &str) -> (String, usize) {
    let mut n = 0;
    let mut out = String::new();
    for l in text.lines() {
        if matches!(first_word(l).as_str(), "linux" | "linuxefi" | "linux16") {
            out.push_str(&append_arg(l, arg));
            n += 1;
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    (out, n)
}

/// Fail naming the tools a remaster lacks and the script that installs them.
pub fn require_tools() -> Result<()> {
    let missing: Vec<&str> = TOOLS.into_iter().filter(|p| !process::have(p)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "--format iso needs {} (Debian packages xorriso, mtools, isomd5sum; \
             scripts/setup.sh installs them)",
            missing.join(", ")
        );
    }
    Ok(())
}

fn xorriso(args: &[&std::ffi::OsStr]) -> Command {
    let mut c = Command::new("xorriso");
    c.env("LANG", "C").env("LC_ALL", "C").args(args);
    c
}

/// Read the volume id, file list and El Torito entries of `iso`.
pub fn inspect(iso: &Path) -> Result<Source> {
    require_tools()?;
    let meta = std::fs::metadata(iso).with_context(|| format!("reading {}", iso.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{}: not a file", iso.display());
    }
    // xorriso takes any other file for a blank medium: look for the primary volume descriptor
    // (type 1, `CD001`) at sector 16 first.
    let mut head = [0u8; 6];
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f =
            std::fs::File::open(iso).with_context(|| format!("opening {}", iso.display()))?;
        let found = f.seek(SeekFrom::Start(16 * 2048)).is_ok() && f.read_exact(&mut head).is_ok();
        if !found || head != *b"\x01CD001" {
            anyhow::bail!(
                "{}: not an ISO 9660 image (no primary volume descriptor at sector 16)",
                iso.display()
            );
        }
    }
    let what = format!("reading {} as an ISO 9660 image", iso.display());
    let info = process::run_stdout(
        xorriso(&[
            "-indev".as_ref(),
            iso.as_os_str(),
            "-pvd_info".as_ref(),
            "-report_el_torito".as_ref(),
            "plain".as_ref(),
        ])
        .stdin(std::process::Stdio::null()),
        &what,
    )?;
    let volid = info
        .lines()
        .find_map(|l| l.strip_prefix("Volume Id    : "))
        .map(str::to_string)
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("{}: no volume id (not an ISO 9660 image?)", iso.display()))?;
    // `El Torito boot img :   2  UEFI  y ...` then `El Torito img path :   2  /images/efiboot.img`.
    let mut efi_no = None;
    let mut bios = false;
    let mut paths = Vec::new();
    for l in info.lines() {
        if let Some(rest) = l.strip_prefix("El Torito boot img :") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            match w.get(1) {
                Some(&"UEFI") => efi_no = w.first().map(|s| s.to_string()),
                Some(&"BIOS") => bios = true,
                _ => {}
            }
        } else if let Some(rest) = l.strip_prefix("El Torito img path :") {
            let mut w = rest.split_whitespace();
            if let (Some(no), Some(p)) = (w.next(), w.next()) {
                paths.push((no.to_string(), p.trim_start_matches('/').to_string()));
            }
        }
    }
    if !bios && efi_no.is_none() {
        anyhow::bail!(
            "{}: no El Torito boot image: not a bootable installer ISO",
            iso.display()
        );
    }
    let efi_image = efi_no.and_then(|no| paths.iter().find(|(n, _)| *n == no).map(|p| p.1.clone()));
    let listing = process::run_stdout(
        xorriso(&[
            "-indev".as_ref(),
            iso.as_os_str(),
            "-pkt_output".as_ref(),
            "on".as_ref(),
            "-find".as_ref(),
            "/".as_ref(),
            "-type".as_ref(),
            "f".as_ref(),
        ])
        .stdin(std::process::Stdio::null()),
        &what,
    )?;
    // `R:1: '/isolinux/isolinux.cfg'` (xorriso quotes the name; ' inside as '"'"').
    let files = listing
        .lines()
        .filter_map(|l| l.strip_prefix("R:1: "))
        .map(|q| {
            q.trim_matches('\'')
                .replace("'\"'\"'", "'")
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    Ok(Source {
        path: iso.to_path_buf(),
        volid,
        files,
        efi_image,
    })
}

/// Set a file's mtime to the epoch (mtools copies it into FAT entries; xorriso gets fixed dates
/// anyway).
fn fix_mtime(path: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(EPOCH))
        .with_context(|| format!("setting the date of {}", path.display()))
}

fn mtools(prog: &str) -> Command {
    let mut c = Command::new(prog);
    // Local time goes into FAT dates; the image may not be a multiple of a track.
    c.env("TZ", "UTC")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("LANG", "C")
        .stdin(std::process::Stdio::null());
    c
}

/// Update the GRUB configs inside the EFI boot image `img`; returns the boot lines changed.
fn edit_efi_image(img: &Path, arg: &str, work: &Path) -> Result<usize> {
    let what = format!("listing the EFI boot image {}", img.display());
    let listing = process::run_stdout(
        mtools("mdir").args(["-/", "-b", "-i"]).arg(img).arg("::/"),
        &what,
    )?;
    let mut n = 0;
    for (i, entry) in listing.lines().map(str::trim).enumerate() {
        let inside = entry.trim_start_matches("::").trim_start_matches('/');
        // FAT names are case-insensitive.
        if !GRUB_CFGS
            .iter()
            .any(|c| c.starts_with("EFI/") && c.eq_ignore_ascii_case(inside))
        {
            continue;
        }
        let text = process::run_stdout(
            mtools("mtype")
                .arg("-i")
                .arg(img)
                .arg(format!("::/{inside}")),
            &format!("reading {inside} in {}", img.display()),
        )?;
        let (new, k) = edit_grub(&text, arg);
        let tmp = work.join(format!("efi-cfg-{i}"));
        std::fs::write(&tmp, new).with_context(|| format!("writing {}", tmp.display()))?;
        fix_mtime(&tmp)?;
        process::run(
            mtools("mcopy")
                .args(["-o", "-m", "-i"])
                .arg(img)
                .arg(&tmp)
                .arg(format!("::/{inside}")),
            &format!("writing {inside} into {}", img.display()),
        )?;
        n += k;
    }
    Ok(n)
}

/// Remaster `src` into `out` (0600, replaced atomically): `ks.cfg` and `files` (ISO path ->
/// content) added, every boot line given `inst.ks=`.
pub fn remaster(src: &Source, ks: &[u8], files: &[(String, Content)], out: &Path) -> Result<()> {
    require_tools()?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Private (0700) and beside `out`: the rename stays on one filesystem, nobody reads the
    // secrets meanwhile, and a failure leaves nothing (dropped with the folder).
    let work = tempfile::Builder::new()
        .prefix(".ezimg-iso-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary folder in {}", parent.display()))?;
    let w = work.path();
    let arg = src.ks_arg();
    let iso = src.path.as_os_str();

    // The boot configs mkksiso knows, and the EFI boot image, edited outside the image.
    let mut updates: Vec<(PathBuf, String)> = Vec::new();
    let mut lines = 0;
    let cfgs = ISOLINUX_CFGS
        .iter()
        .map(|c| (*c, true))
        .chain(GRUB_CFGS.iter().map(|c| (*c, false)));
    for (i, (cfg, isolinux)) in cfgs.enumerate() {
        if !src.files.contains(cfg) {
            continue;
        }
        let host = w.join(format!("cfg-{i}"));
        extract(iso, cfg, &host)?;
        let text = std::fs::read_to_string(&host)
            .with_context(|| format!("{}: /{cfg} is not text", src.path.display()))?;
        let (new, n) = if isolinux {
            edit_isolinux(&text, &arg)
        } else {
            edit_grub(&text, &arg)
        };
        std::fs::write(&host, new).with_context(|| format!("writing {}", host.display()))?;
        lines += n;
        updates.push((host, cfg.to_string()));
    }
    if let Some(img) = &src.efi_image {
        let host = w.join("efiboot.img");
        extract(iso, img, &host)?;
        lines += edit_efi_image(&host, &arg, w)?;
        updates.push((host, img.clone()));
    }
    if lines == 0 {
        anyhow::bail!(
            "{}: no boot line to add inst.ks= to (looked in {}, {} and the EFI boot image): \
             not an installer ISO",
            src.path.display(),
            ISOLINUX_CFGS.join(", "),
            GRUB_CFGS.join(", ")
        );
    }

    // Added files: bytes go through the private folder.
    let mut maps: Vec<(PathBuf, String)> = Vec::new();
    let ks_host = w.join("ks.cfg");
    std::fs::write(&ks_host, ks).with_context(|| format!("writing {}", ks_host.display()))?;
    maps.push((ks_host, "ks.cfg".into()));
    for (i, (dest, content)) in files.iter().enumerate() {
        if dest.is_empty()
            || dest
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            anyhow::bail!("ISO path {dest:?}: must be a relative path without `..`");
        }
        let host = match content {
            Content::File(p) => p.to_path_buf(),
            Content::Bytes(b) => {
                let p = w.join(format!("add-{i}"));
                std::fs::write(&p, b).with_context(|| format!("writing {}", p.display()))?;
                p
            }
        };
        maps.push((host, dest.clone()));
    }
    let big = maps
        .iter()
        .map(|(h, _)| std::fs::metadata(h).map(|m| m.len()))
        .collect::<std::io::Result<Vec<u64>>>()
        .context("reading the files to add to the ISO")?
        .into_iter()
        .any(|len| len >= 4 << 30);

    let tmp_iso = w.join("out.iso");
    let epoch = format!("={EPOCH}");
    let mut cmd = xorriso(&[]);
    cmd.env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .arg("-indev")
        .arg(iso)
        .arg("-outdev")
        .arg(&tmp_iso)
        // Fixed dates: files, the volume, and the GPT/"uuid" date GRUB searches by.
        .args(["-volume_date", "all_file_dates", &epoch])
        .args(["-volume_date", "c", &epoch, "-volume_date", "m", &epoch])
        .args(["-volume_date", "uuid", "2000010100000000"])
        .args(["-boot_image", "any", "replay"]);
    if big {
        cmd.args(["-compliance", "iso_9660_level=3"]);
    }
    for (host, dest) in &updates {
        cmd.arg("-update").arg(host).arg(format!("/{dest}"));
    }
    for (host, dest) in &maps {
        cmd.arg("-map").arg(host).arg(format!("/{dest}"));
    }
    cmd.stdin(std::process::Stdio::null());
    process::run(
        &mut cmd,
        &format!("remastering {} with xorriso", src.path.display()),
    )?;
    // The vendor's default boot entry checks the medium against this digest.
    process::run(
        Command::new("implantisomd5")
            .arg("--force")
            .arg(&tmp_iso)
            .stdin(std::process::Stdio::null()),
        "implanting the media-check digest (implantisomd5)",
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp_iso, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", tmp_iso.display()))?;
        let f = std::fs::File::open(&tmp_iso)
            .with_context(|| format!("opening {}", tmp_iso.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp_iso.display()))?;
    }
    std::fs::rename(&tmp_iso, out)
        .with_context(|| format!("renaming {} to {}", tmp_iso.display(), out.display()))?;
    Ok(())
}

/// Copy `inside` (a path in the ISO) out to `host`, writable.
pub fn extract(iso: &std::ffi::OsStr, inside: &str, host: &Path) -> Result<()> {
    let mut c = Command::new("osirrox");
    c.env("LANG", "C")
        .arg("-indev")
        .arg(iso)
        .arg("-extract")
        .arg(format!("/{inside}"))
        .arg(host)
        .stdin(std::process::Stdio::null());
    process::run(
        &mut c,
        &format!("extracting /{inside} from {}", Path::new(iso).display()),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} writable", host.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_udev() {
        assert_eq!(udev_escape("CentOS 7 x86_64"), "CentOS\\x207\\x20x86_64");
        assert_eq!(udev_escape("Rocky-9-5-x86_64-dvd"), "Rocky-9-5-x86_64-dvd");
        assert_eq!(udev_escape("a/b(c)"), "a\\x2fb\\x28c\\x29");
    }

    #[test]
    fn isolinux_kernel_entries_only() {
        let cfg = "default vesamenu.c32\nlabel linux\n  kernel vmlinuz\n  append initrd=initrd.img quiet\nlabel local\n  localboot 0xffff\n  append x\n";
        let (out, n) = edit_isolinux(cfg, "inst.ks=hd:LABEL=A:/ks.cfg");
        assert_eq!(n, 1);
        assert!(out.contains("append initrd=initrd.img quiet inst.ks=hd:LABEL=A:/ks.cfg\n"));
        assert!(out.contains("  append x\n"));
    }

    #[test]
    fn grub_lines_and_no_second_ks() {
        let cfg =
            "menuentry 'x' {\n\tlinuxefi /vmlinuz inst.ks=old quiet\n\tinitrdefi /initrd.img\n}\n";
        let (out, n) = edit_grub(cfg, "inst.ks=new");
        assert_eq!(n, 1);
        assert!(
            out.contains("\tlinuxefi /vmlinuz quiet inst.ks=new\n"),
            "{out}"
        );
    }
}
