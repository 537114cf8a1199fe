//! `build --format iso`: an installer-like ISO built here from Debian packages (isolinux, GRUB's
//! EFI image in a FAT efiboot.img, BIOS and EFI El Torito entries) is remastered, and the result
//! is read back with xorriso, osirrox, mtools and isoinfo: ks.cfg and the bundle are on it, every
//! boot line carries `inst.ks=` with the udev-escaped label (the volume id has spaces), both El
//! Torito entries survive, the EFI image's grub.cfg was edited, the file is 0600, a second
//! remaster gives the same bytes, the media-check digest matches; bad inputs write nothing.

#[path = "support/installer_iso.rs"]
mod fixture;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use ezimg::output::installer_iso::{self, Content};
use support::run;

const VOLID: &str = "CentOS 7 x86_64";
const KS_ARG: &str = "inst.ks=hd:LABEL=CentOS\\x207\\x20x86_64:/ks.cfg";

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).expect("utf-8")
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn sha256(p: &Path) -> String {
    ezimg::digest::sha256_hex(&std::fs::read(p).expect("read"))
}

/// Files in `dir` other than those named: a failed remaster must leave none.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// Every boot line of the remastered ISO `iso` (isolinux, GRUB on the ISO and in the EFI
/// image) carries `KS_ARG` once; the local-boot entry is untouched.
fn assert_boot_lines(iso: &Path, work: &Path) {
    let isolinux = text(fixture::extract(iso, "/isolinux/isolinux.cfg", work));
    let appends: Vec<&str> = isolinux
        .lines()
        .filter(|l| l.trim_start().starts_with("append"))
        .collect();
    assert_eq!(appends.len(), 2, "{isolinux}");
    for l in &appends {
        assert!(l.ends_with(&format!(" {KS_ARG}")), "{l:?} in\n{isolinux}");
        assert_eq!(l.matches("inst.ks=").count(), 1, "{l:?}");
    }
    assert!(isolinux.contains("  localboot 0xffff\n"), "{isolinux}");
    let grub = text(fixture::extract(iso, "/EFI/BOOT/grub.cfg", work));
    let efi_img = work.join("efiboot.img");
    std::fs::write(&efi_img, fixture::extract(iso, "/images/efiboot.img", work)).expect("write");
    let inner = text(
        run(Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&efi_img)
            .arg("::/EFI/BOOT/grub.cfg"))
        .stdout,
    );
    for (what, cfg) in [("ISO grub.cfg", &grub), ("efiboot.img grub.cfg", &inner)] {
        let linux: Vec<&str> = cfg
            .lines()
            .filter(|l| l.trim_start().starts_with("linuxefi"))
            .collect();
        assert_eq!(linux.len(), 2, "{what}:\n{cfg}");
        for l in linux {
            assert!(l.ends_with(&format!(" {KS_ARG}")), "{what}: {l:?}");
        }
        assert!(
            cfg.contains("\tinitrdefi /images/pxeboot/initrd.img\n"),
            "{what}"
        );
    }
}

/// Both El Torito entries, BIOS isolinux.bin and the EFI image, are there after the remaster.
fn assert_el_torito(iso: &Path) {
    let r = text(
        run(Command::new("xorriso")
            .arg("-indev")
            .arg(iso)
            .args(["-report_el_torito", "plain"]))
        .stdout,
    );
    let boot: Vec<&str> = r
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .collect();
    assert_eq!(boot.len(), 2, "{r}");
    assert!(boot[0].contains(" BIOS "), "{r}");
    assert!(boot[1].contains(" UEFI "), "{r}");
    assert!(
        r.contains("El Torito img path :   1  /isolinux/isolinux.bin"),
        "{r}"
    );
    assert!(
        r.contains("El Torito img path :   2  /images/efiboot.img"),
        "{r}"
    );
    assert!(r.contains("boot-info-table"), "{r}");
}

#[test]
fn remaster_adds_the_kickstart_and_marks_every_boot_line_reproducibly() {
    if !fixture::tools_present() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let src_iso = fixture::build(d.path(), "in.iso", VOLID, None, fixture::MENU_HEAD, "");
    let src = installer_iso::inspect(&src_iso).expect("inspect");
    assert_eq!(src.volid, VOLID);
    assert_eq!(src.efi_image.as_deref(), Some("images/efiboot.img"));
    assert!(src.has_packages());
    assert_eq!(src.ks_arg(), KS_ARG);
    let ks = b"# the kickstart\ntext\n";
    let bundle = b"bundle bytes".to_vec();
    let art = d.path().join("art.tar.gz");
    std::fs::write(&art, b"artifact bytes").expect("write");
    let files = [
        (
            "ezimg/ezimg-worker-bundle.tar.gz".to_string(),
            Content::Bytes(&bundle),
        ),
        ("ezimg/artifacts/a.tar.gz".to_string(), Content::File(&art)),
    ];
    let out1 = d.path().join("one/node.iso");
    installer_iso::remaster(&src, ks, &files, &out1).expect("remaster");
    assert_eq!(mode(&out1), 0o600, "the ISO holds the node's secrets");
    let work = d.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    assert_eq!(fixture::extract(&out1, "/ks.cfg", &work), ks);
    assert_eq!(
        fixture::extract(&out1, "/ezimg/ezimg-worker-bundle.tar.gz", &work),
        bundle
    );
    assert_eq!(
        fixture::extract(&out1, "/ezimg/artifacts/a.tar.gz", &work),
        b"artifact bytes"
    );
    // isoinfo reads the volume id and the Rock Ridge names as a second, independent reader.
    let info = text(run(Command::new("isoinfo").arg("-d").arg("-i").arg(&out1)).stdout);
    assert!(info.contains(&format!("Volume id: {VOLID}\n")), "{info}");
    let listing = text(run(Command::new("isoinfo").args(["-R", "-f", "-i"]).arg(&out1)).stdout);
    for f in [
        "/ks.cfg",
        "/ezimg/ezimg-worker-bundle.tar.gz",
        "/isolinux/ldlinux.c32",
    ] {
        assert!(listing.lines().any(|l| l == f), "{f} not in\n{listing}");
    }
    assert_boot_lines(&out1, &work);
    assert_el_torito(&out1);
    // The vendor's default entry runs the media check: the implanted digest must match.
    run(Command::new("checkisomd5").arg(&out1));
    assert_eq!(leftovers(out1.parent().expect("parent"), &[]).len(), 1);

    // Same inputs a second later (a clock that leaks in shows up), same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out2 = d.path().join("two/node.iso");
    installer_iso::remaster(&src, ks, &files, &out2).expect("remaster again");
    assert_eq!(sha256(&out1), sha256(&out2), "two remasters differ");

    // Remastering the remastered ISO boots one kickstart, not two.
    let again = installer_iso::inspect(&out1).expect("inspect remastered");
    let out3 = d.path().join("three/node.iso");
    installer_iso::remaster(&again, ks, &[], &out3).expect("remaster twice");
    assert_boot_lines(&out3, &work);
}

#[test]
fn bad_input_isos_are_refused_and_nothing_is_written() {
    if !fixture::tools_present() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let out_dir = d.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = out_dir.join("node.iso");

    // Not an ISO at all.
    let junk = d.path().join("junk.iso");
    std::fs::write(&junk, vec![0x5a; 64 * 1024]).expect("write");
    let err = format!("{:#}", installer_iso::inspect(&junk).expect_err("junk"));
    assert!(
        err.contains("junk.iso") && err.contains("ISO 9660"),
        "unclear error: {err}"
    );

    // An ISO without El Torito boot entries.
    let tree = d.path().join("plain");
    std::fs::create_dir(&tree).expect("mkdir");
    std::fs::write(tree.join("README"), "data\n").expect("write");
    let plain = d.path().join("plain.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-V", "DATA", "-o"])
        .arg(&plain)
        .arg(&tree));
    let err = format!("{:#}", installer_iso::inspect(&plain).expect_err("plain"));
    assert!(
        err.contains("plain.iso") && err.contains("no El Torito boot image"),
        "{err}"
    );

    // Bootable, but no boot line to put inst.ks= on: refused before anything is written.
    let no_lines = fixture::build(
        d.path(),
        "nolines.iso",
        "NO LINES",
        None,
        fixture::MENU_HEAD,
        "",
    );
    let mut src = installer_iso::inspect(&no_lines).expect("inspect");
    src.files.retain(|f| !f.ends_with(".cfg"));
    src.efi_image = None;
    let err = format!(
        "{:#}",
        installer_iso::remaster(&src, b"ks", &[], &out).expect_err("no boot line")
    );
    assert!(
        err.contains("nolines.iso") && err.contains("no boot line"),
        "{err}"
    );
    assert!(
        leftovers(&out_dir, &[]).is_empty(),
        "a refused remaster left {:?}",
        leftovers(&out_dir, &[])
    );
}

/// A lock like the repository's, with the CentOS installer ISO pinned to `iso_sha` and
/// nerdctl-full to `art_sha` (the test's own files), beside a link to the repository's keys.
fn test_lock(dir: &Path, iso_sha: &str, art_sha: &str) -> PathBuf {
    let root = support::root();
    let text = std::fs::read_to_string(root.join("artifacts.lock")).expect("read lock");
    let pin = |text: &str, name: &str, sha: &str| -> String {
        let start = text
            .find(&format!("name = \"{name}\""))
            .unwrap_or_else(|| panic!("{name} pinned"));
        let at = start + text[start..].find("sha256 = \"").expect("sha256") + 10;
        format!("{}{sha}{}", &text[..at], &text[at + 64..])
    };
    let text = pin(&text, "centos7-installer-iso", iso_sha);
    let text = pin(&text, "nerdctl-full", art_sha);
    let lock_dir = dir.join("lock");
    std::fs::create_dir_all(&lock_dir).expect("mkdir");
    std::os::unix::fs::symlink(root.join("keys"), lock_dir.join("keys")).expect("link keys");
    let lock = lock_dir.join("artifacts.lock");
    std::fs::write(&lock, text).expect("write lock");
    lock
}

fn put_in_cache(cache: &Path, file: &Path) -> String {
    let sha = sha256(file);
    let dir = cache.join("sha256");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(file, dir.join(&sha)).expect("copy into cache");
    sha
}

fn ezimg(d: &Path, cache: &Path, lock: &Path) -> Command {
    let mut c = Command::cargo_bin("ezimg").expect("binary");
    c.env_remove("EZIMG_CLUSTER")
        .env_remove("EZIMG_DATA")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("EZIMG_ALLOW_INCOMPLETE")
        .env("EZIMG_CACHE_DIR", cache)
        .env("EZIMG_SECRETS", d.join("secrets"))
        .env("EZIMG_LOCK", lock);
    c
}

#[test]
fn build_format_iso_puts_kickstart_bundle_and_artifacts_on_the_node_iso() {
    if !fixture::tools_present() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let cache = d.path().join("cache");
    let iso = fixture::build(d.path(), "vendor.iso", VOLID, None, fixture::MENU_HEAD, "");
    let iso_sha = put_in_cache(&cache, &iso);
    let art = d.path().join("nerdctl-full.tar.gz");
    std::fs::write(&art, b"stands in for nerdctl-full").expect("write");
    let art_sha = put_in_cache(&cache, &art);
    let lock = test_lock(d.path(), &iso_sha, &art_sha);
    let out = d.path().join("out");
    let build = |out: &Path| {
        let o = ezimg(d.path(), &cache, &lock)
            .args(["build", "--node", "worker-01", "--format", "bundle,iso"])
            .arg("--allow-incomplete")
            .arg("--out")
            .arg(out)
            .output()
            .expect("ezimg runs");
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{stderr}");
        stderr
    };
    let stderr = build(&out);
    let node_iso = out.join("worker/worker-01/worker-01-install.iso");
    assert!(
        stderr.contains("built worker/worker-01/worker-01-install.iso"),
        "{stderr}"
    );
    assert_eq!(mode(&node_iso), 0o600);
    let work = d.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    let ks = text(fixture::extract(&node_iso, "/ks.cfg", &work));
    // From the medium: packages (`cdrom`, no repository URL), bundle and artifacts.
    assert!(ks.lines().any(|l| l == "cdrom"), "{ks}");
    assert!(!ks.contains("url --url="), "{ks}");
    assert!(ks.contains("%post --nochroot"), "{ks}");
    assert!(ks.contains("label='CentOS 7 x86_64'"), "{ks}");
    assert!(ks.contains("artifacts='/var/lib/ezimg/artifacts'"), "{ks}");
    assert!(
        !ks.contains("EZIMG_BUNDLE_B64"),
        "the bundle is on the ISO, not in the ks"
    );
    let bundle = std::fs::read(out.join("worker/ezimg-worker-bundle.tar.gz")).expect("bundle");
    assert_eq!(
        fixture::extract(&node_iso, "/ezimg/ezimg-worker-bundle.tar.gz", &work),
        bundle
    );
    assert_eq!(
        fixture::extract(
            &node_iso,
            "/ezimg/artifacts/nerdctl-full-1.3.1-linux-amd64.tar.gz",
            &work
        ),
        b"stands in for nerdctl-full"
    );
    assert_boot_lines(&node_iso, &work);
    assert_el_torito(&node_iso);
    // The kickstart on the ISO is one anaconda accepts (pykickstart, as tests/kickstart.rs).
    let ksv = support::root().join(".venv/bin/ksvalidator");
    if let Some(ksv) = support::tool(&ksv, "pykickstart") {
        let p = work.join("iso-ks.cfg");
        std::fs::write(&p, &ks).expect("write");
        run(Command::new(ksv).args(["-v", "RHEL7"]).arg(&p));
    }
    // The media %post is bash that parses.
    let body: String = ks
        .split("%post --nochroot")
        .nth(1)
        .and_then(|s| s.split_once('\n'))
        .and_then(|(_, rest)| rest.split("%end").next())
        .expect("media post body")
        .to_string();
    run(Command::new("bash").args(["-n", "-c", &body]));
    if let Some(sc) = support::host_tool("shellcheck") {
        let p = work.join("media-post.sh");
        std::fs::write(&p, format!("#!/bin/bash\n{body}")).expect("write");
        run(Command::new(sc).arg(&p));
    }
    // The manifest records it as the node's (served to that node only).
    let manifest = std::fs::read_to_string(out.join("ezimg-outputs.json")).expect("manifest");
    assert!(
        manifest.contains("\"worker/worker-01/worker-01-install.iso\""),
        "{manifest}"
    );
    // Same inputs, same ISO.
    let out2 = d.path().join("out2");
    build(&out2);
    assert_eq!(
        sha256(&node_iso),
        sha256(&out2.join("worker/worker-01/worker-01-install.iso"))
    );
}

#[test]
fn a_missing_or_unpinned_installer_iso_is_reported_and_no_iso_is_written() {
    if !fixture::tools_present() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let cache = d.path().join("cache");
    let art = d.path().join("nerdctl-full.tar.gz");
    std::fs::write(&art, b"x").expect("write");
    let art_sha = put_in_cache(&cache, &art);
    // Pinned, not in the cache.
    let lock = test_lock(d.path(), &"ab".repeat(32), &art_sha);
    let out = d.path().join("out");
    let o = ezimg(d.path(), &cache, &lock)
        .args(["build", "--node", "worker-01", "--format", "iso", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    for needle in [
        "centos7-installer-iso (roles worker): CentOS-7-x86_64-Minimal-2009.iso is not in the verified cache",
        "`ezimg fetch centos7-installer-iso`",
        "nothing was written",
    ] {
        assert!(stderr.contains(needle), "lacks {needle:?}:\n{stderr}");
    }
    assert!(!out.exists(), "a refused build wrote {}", out.display());
    // --allow-incomplete: the rest is written, the ISO is not.
    let o = ezimg(d.path(), &cache, &lock)
        .args(["build", "--node", "worker-01", "--format", "kickstart,iso"])
        .args(["--allow-incomplete", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("INCOMPLETE") && stderr.contains("no ISO is written"));
    assert!(out.join("worker/worker-01/ks.cfg").exists());
    assert!(!out.join("worker/worker-01/worker-01-install.iso").exists());

    // el9's boot ISO has no digest pinned yet: `ezimg lock` is the step.
    let cluster = d.path().join("el9.toml");
    std::fs::write(
        &cluster,
        support::default_cluster().replace("os = \"el7\"", "os = \"el9\""),
    )
    .expect("write");
    let out9 = d.path().join("out9");
    let o = ezimg(d.path(), &cache, &lock)
        .args(["build", "-c"])
        .arg(&cluster)
        .args(["--node", "worker-01", "--format", "iso", "--out"])
        .arg(&out9)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("rocky9-boot-iso (roles worker): no digest pinned")
            && stderr.contains("`ezimg lock rocky9-boot-iso`"),
        "{stderr}"
    );
    assert!(!out9.exists());

    // A cached file that is not an ISO: a clear error naming it, nothing written.
    let junk = d.path().join("junk.iso");
    std::fs::write(&junk, vec![0u8; 40_000]).expect("write");
    let junk_sha = put_in_cache(&cache, &junk);
    let lock_dir = d.path().join("junk");
    let lock = test_lock(&lock_dir, &junk_sha, &art_sha);
    let o = ezimg(d.path(), &cache, &lock)
        .args(["build", "--node", "worker-01", "--format", "iso"])
        .args(["--allow-incomplete", "--out"])
        .arg(d.path().join("outj"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("centos7-installer-iso")
            && stderr.contains("CentOS-7-x86_64-Minimal-2009.iso")
            && stderr.contains("ISO 9660"),
        "{stderr}"
    );
    assert!(!d.path().join("outj").exists());
}

/// The ISO's kickstart on el7 and el9, from a full ISO (`cdrom`) or a boot ISO (the repository
/// URLs): anaconda's parser accepts it, and the bundle is read from the medium, not embedded.
#[test]
fn media_kickstarts_validate_on_el7_and_el9() {
    use ezimg::cluster::Os;
    use ezimg::output::kickstart;
    let Some(ksv) = support::tool(
        &support::root().join(".venv/bin/ksvalidator"),
        "pykickstart",
    ) else {
        return;
    };
    let tree = ezimg::data::DataTree::embedded();
    let d = tempfile::tempdir().expect("tempdir");
    for (os, version) in [(Os::El7, "RHEL7"), (Os::El9, "RHEL9")] {
        let fx = support::seed_inputs::Fixture::new(os, None);
        let input = &fx.inputs()[0];
        for full in [true, false] {
            let media = kickstart::Media {
                label: VOLID.into(),
                install_from_media: full,
            };
            let ks = kickstart::render_for_media(&tree, input, &media).expect("render");
            let what = format!("{os} full={full}");
            assert_eq!(ks.lines().any(|l| l == "cdrom"), full, "{what}:\n{ks}");
            assert_eq!(ks.contains("url --url="), !full, "{what}");
            assert!(!ks.contains("EZIMG_BUNDLE_B64"), "{what}: bundle embedded");
            let nochroot = ks.find("%post --nochroot").expect("media %post");
            let chroot = ks.find("%post --interpreter").expect("%post");
            assert!(nochroot < chroot, "{what}: the media copy must run first");
            let p = d.path().join(format!("{os}-{full}.ks.cfg"));
            std::fs::write(&p, &ks).expect("write");
            let o = run(Command::new(&ksv).args(["-v", version]).arg(&p));
            let out = String::from_utf8_lossy(&o.stdout).to_lowercase();
            assert!(!out.contains("deprecat"), "{what}: {out}");
        }
    }
}

/// `build --format pxe` puts the pinned installer's pxeboot kernel and initrd (from the
/// verified vendor ISO, `images/pxeboot/`) into the PXE tree where the boot configs point, and
/// records them; with the ISO not at hand it says how to get them and writes none.
#[test]
fn build_format_pxe_takes_the_installer_kernel_and_initrd_from_the_pinned_iso() {
    if !fixture::tools_present() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let cache = d.path().join("cache");
    let iso = fixture::build(d.path(), "vendor.iso", VOLID, None, fixture::MENU_HEAD, "");
    let iso_sha = put_in_cache(&cache, &iso);
    let art = d.path().join("nerdctl-full.tar.gz");
    std::fs::write(&art, b"x").expect("write");
    let art_sha = put_in_cache(&cache, &art);
    let lock = test_lock(d.path(), &iso_sha, &art_sha);
    let build = |cache: &Path, out: &Path| {
        let o = ezimg(d.path(), cache, &lock)
            .args(["build", "--all", "--format", "pxe", "--out"])
            .arg(out)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{stderr}");
        stderr
    };
    let out = d.path().join("out");
    let log = build(&cache, &out);
    let inst = out.join("pxe/installer/centos-7.9.2009");
    assert_eq!(
        text(std::fs::read(inst.join("vmlinuz")).expect("kernel")),
        "kernel"
    );
    assert_eq!(
        text(std::fs::read(inst.join("initrd.img")).expect("initrd")),
        "initrd"
    );
    for f in ["vmlinuz", "initrd.img"] {
        assert_eq!(mode(&inst.join(f)), 0o644, "{f}");
    }
    assert!(
        log.contains("built pxe/installer/centos-7.9.2009/ (vmlinuz and initrd.img from"),
        "{log}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("ezimg-outputs.json")).expect("outputs manifest"),
    )
    .expect("json");
    for f in ["vmlinuz", "initrd.img"] {
        assert_eq!(
            manifest["files"][format!("pxe/installer/centos-7.9.2009/{f}")]["kind"],
            "pxe",
            "{manifest}"
        );
    }
    // Where the boot configs point (serve::pxe, the default kernel and initrd paths).
    assert_eq!(
        ezimg::serve::pxe::installer_dir(ezimg::cluster::Os::El7),
        "centos-7.9.2009"
    );

    // Not in the cache: a note naming the pin and the command, and no installer files.
    let empty = d.path().join("empty-cache");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out2 = d.path().join("out2");
    let log = build(&empty, &out2);
    assert!(
        log.contains("pxe/installer/centos-7.9.2009/ gets no vmlinuz and initrd.img")
            && log.contains("`ezimg fetch centos7-installer-iso`"),
        "{log}"
    );
    assert!(!out2.join("pxe/installer").exists());
}
