//! An installer-like ISO made from Debian packages, shaped like CentOS 7's: isolinux
//! (`isolinux.bin`, `ldlinux.c32`, an `isolinux.cfg` with install, media-check and local-boot
//! entries), `EFI/BOOT/grub.cfg` with `linuxefi` lines, an `images/efiboot.img` FAT image holding
//! its own `EFI/BOOT/grub.cfg` and a GRUB `BOOTX64.EFI`, El Torito entries for BIOS and EFI, and
//! a `repodata/repomd.xml` (the packages of a Minimal ISO).
//!
//! Included with `#[path]` by tests/iso.rs and tests/vm_iso.rs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::run;

/// The tools this needs: (command, Debian package).
pub const TOOLS: [(&str, &str); 6] = [
    ("xorriso", "xorriso"),
    ("mcopy", "mtools"),
    ("mkfs.vfat", "dosfstools"),
    ("grub-mkimage", "grub-efi-amd64-bin"),
    ("implantisomd5", "isomd5sum"),
    ("isoinfo", "genisoimage"),
];

/// Files (not commands) from packages: (path, Debian package).
pub const FILES: [(&str, &str); 3] = [
    ("/usr/lib/ISOLINUX/isolinux.bin", "isolinux"),
    (
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        "syslinux-common",
    ),
    ("/usr/lib/grub/x86_64-efi/linux.mod", "grub-efi-amd64-bin"),
];

/// Every tool and file is here, or the test is skipped (failed under CI) naming what lacks.
pub fn tools_present() -> bool {
    for (cmd, pkg) in TOOLS {
        if crate::support::have_tool(cmd).is_none() {
            crate::support::skip_or_fail(
                &crate::support::current_test(),
                &format!("{cmd} ({pkg}) is not installed (scripts/test-deps.sh installs it)"),
            );
            return false;
        }
    }
    for (f, pkg) in FILES {
        if !Path::new(f).exists() {
            crate::support::skip_or_fail(
                &crate::support::current_test(),
                &format!("{f} ({pkg}) is missing (scripts/test-deps.sh installs it)"),
            );
            return false;
        }
    }
    true
}

/// CentOS 7's isolinux.cfg head: a menu, one minute to choose.
pub const MENU_HEAD: &str = "default vesamenu.c32\ntimeout 600\n";

/// The installer's isolinux.cfg, CentOS 7's shape (`label` entries; `localboot` has no kernel)
/// after `head`.
pub fn isolinux_cfg(head: &str, volid_escaped: &str, extra: &str) -> String {
    format!(
        "{head}\nlabel linux\n  menu label ^Install CentOS 7\n  \
         kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL={volid_escaped} quiet{extra}\n\n\
         label check\n  menu label Test this ^media & install CentOS 7\n  menu default\n  \
         kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL={volid_escaped} rd.live.check quiet{extra}\n\n\
         menu begin ^Troubleshooting\n\nlabel local\n  menu label Boot from ^local drive\n  \
         localboot 0xffff\n\nmenu end\n"
    )
}

/// A GRUB config with two entries (`linuxefi`/`initrdefi`), CentOS 7's EFI shape.
pub fn grub_cfg(volid_escaped: &str) -> String {
    format!(
        "set default=\"1\"\nset timeout=60\n\nmenuentry 'Install CentOS 7' --class fedora {{\n\
         \tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL={volid_escaped} quiet\n\
         \tinitrdefi /images/pxeboot/initrd.img\n}}\n\
         menuentry 'Test this media & install CentOS 7' --class fedora {{\n\
         \tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL={volid_escaped} rd.live.check quiet\n\
         \tinitrdefi /images/pxeboot/initrd.img\n}}\n"
    )
}

/// Build the ISO `dir/name` with volume id `volid`; `kernel`/`initrd` are copied in as the
/// installer's (placeholders when None); isolinux.cfg starts with `head` ([`MENU_HEAD`]) and
/// `isolinux_extra` goes at the end of each append line.
pub fn build(
    dir: &Path,
    name: &str,
    volid: &str,
    kernel: Option<(&Path, &Path)>,
    head: &str,
    isolinux_extra: &str,
) -> PathBuf {
    let esc = ezimg::output::installer_iso::udev_escape(volid);
    let t = dir.join(format!("{name}.tree"));
    for d in ["isolinux", "EFI/BOOT", "images/pxeboot", "repodata"] {
        std::fs::create_dir_all(t.join(d)).expect("mkdir");
    }
    for (f, _) in &FILES[..2] {
        let p = Path::new(f);
        std::fs::copy(p, t.join("isolinux").join(p.file_name().expect("name"))).expect("copy");
    }
    match kernel {
        Some((k, i)) => {
            for d in ["isolinux", "images/pxeboot"] {
                std::fs::copy(k, t.join(d).join("vmlinuz")).expect("copy kernel");
                std::fs::copy(i, t.join(d).join("initrd.img")).expect("copy initrd");
            }
        }
        None => {
            for d in ["isolinux", "images/pxeboot"] {
                std::fs::write(t.join(d).join("vmlinuz"), "kernel").expect("write");
                std::fs::write(t.join(d).join("initrd.img"), "initrd").expect("write");
            }
        }
    }
    std::fs::write(
        t.join("isolinux/isolinux.cfg"),
        isolinux_cfg(head, &esc, isolinux_extra),
    )
    .expect("write");
    std::fs::write(t.join("EFI/BOOT/grub.cfg"), grub_cfg(&esc)).expect("write");
    std::fs::write(t.join("repodata/repomd.xml"), "<repomd/>\n").expect("write");
    let efi = t.join("EFI/BOOT/BOOTX64.EFI");
    run(Command::new("grub-mkimage")
        .args(["-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o"])
        .arg(&efi)
        .args(["normal", "configfile", "linux", "search", "iso9660", "fat"]));
    let img = t.join("images/efiboot.img");
    run(Command::new("mkfs.vfat")
        .args(["-n", "ANACONDA", "-C"])
        .arg(&img)
        .arg("4096"));
    let m = |prog: &str| {
        let mut c = Command::new(prog);
        c.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&img);
        c
    };
    run(m("mmd").args(["::/EFI", "::/EFI/BOOT"]));
    run(m("mcopy")
        .arg(t.join("EFI/BOOT/grub.cfg"))
        .arg(&efi)
        .arg("::/EFI/BOOT/"));
    let iso = dir.join(name);
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-o"])
        .arg(&iso)
        .args(["-V", volid, "-J", "-R"])
        .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args([
            "-eltorito-alt-boot",
            "-e",
            "images/efiboot.img",
            "-no-emul-boot",
        ])
        .arg(&t));
    std::fs::remove_dir_all(&t).expect("remove tree");
    iso
}

/// One file of an ISO (Rock Ridge names).
pub fn extract(iso: &Path, inside: &str, dir: &Path) -> Vec<u8> {
    let dest = dir.join(format!("x-{}", inside.replace('/', "_")));
    let _ = std::fs::remove_file(&dest);
    run(Command::new("osirrox")
        .arg("-indev")
        .arg(iso)
        .arg("-extract")
        .arg(inside)
        .arg(&dest));
    std::fs::read(&dest).unwrap_or_else(|e| panic!("{inside} from {}: {e}", iso.display()))
}
