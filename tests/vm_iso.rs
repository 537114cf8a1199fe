//! A remastered installer ISO boots: the installer-like ISO of tests/iso.rs, carrying ezimg's
//! own debian12 base kernel and initrd as its installer, is remastered with
//! `installer_iso::remaster` and booted by QEMU from its CD-ROM drive (BIOS, El Torito,
//! isolinux; no network). The kernel mounts the base's root (an overlay over the cached base)
//! and a `systemd.run` unit reports `/proc/cmdline` on the virtio-serial port: the line
//! isolinux booted holds `inst.ks=hd:LABEL=<escaped volume id>:/ks.cfg`, once, and the
//! `ks.cfg` is on the medium the guest sees.
//!
//! Only with `EZIMG_VM_TESTS=1` (root, QEMU). The base comes from the VM cache (`vm_base`
//! builds it; this test builds one only if the cache has none).

#[path = "support/installer_iso.rs"]
mod fixture;
#[path = "../vm-tests/harness.rs"]
mod harness;
mod support;

use std::time::Duration;

use ezimg::output::installer_iso;
use ezimg::vm::{Disk, Vm, VmSpec};

const VOLID: &str = "EZ Install 7";

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, minutes)"
)]
fn a_remastered_iso_boots_with_inst_ks_on_the_kernel_command_line() {
    harness::gate("vm_iso", "boot a remastered installer ISO");
    assert!(
        fixture::tools_present(),
        "vm_iso: the ISO tools are missing (scripts/test-deps.sh)"
    );
    let (image, kernel, initrd, uuid) = harness::debian12_base(&harness::cache_dir());
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();

    // The vendor ISO stand-in boots its default entry at once, on the serial console, into the
    // base's root (an overlay) with one unit: `systemd.run` (no cloud-init, no multi-user) reads
    // the medium by device and reports. Written without `$` or `"`, which systemd's ExecStart
    // and the kernel's quoting would take.
    let head = "serial 0 115200\ndefault check\nprompt 0\ntimeout 1\n";
    let report = "udevadm settle; mount -o ro /dev/sr0 /mnt; echo CMDLINE ks=`cat /mnt/ks.cfg` \
                  `cat /proc/cmdline` >/dev/virtio-ports/ezimg.0; systemctl poweroff";
    let extra =
        format!(" root=UUID={uuid} ro console=ttyS0,115200 systemd.run=\"bash -c '{report}'\"");
    let vendor = fixture::build(
        w,
        "vendor.iso",
        VOLID,
        Some((&kernel, &initrd)),
        head,
        &extra,
    );
    let src = installer_iso::inspect(&vendor).expect("inspect");
    let iso = w.join("node.iso");
    installer_iso::remaster(&src, b"on-the-medium\n", &[], &iso).expect("remaster");

    let disk = w.join("root.qcow2");
    ezimg::vm::overlay(&image, &disk, None).expect("overlay over the cached base");
    let mut spec = VmSpec::new("vmtest-iso", w);
    spec.cdrom = Some(iso.clone());
    spec.disks = vec![Disk::qcow2(&disk)];
    let mut vm = Vm::start(&spec).expect("qemu starts");
    let line = vm
        .wait_for(Duration::from_secs(240), |l| l.starts_with("CMDLINE"))
        .unwrap_or_else(|e| panic!("{e:#}\nserial:\n{}", vm.serial_tail(40)));
    eprintln!(
        "vm_iso: {line} ({:.0}s, {})",
        vm.elapsed().as_secs_f64(),
        vm.accel
    );
    vm.wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let want = "inst.ks=hd:LABEL=EZ\\x20Install\\x207:/ks.cfg";
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words.iter().filter(|w| w.starts_with("inst.ks=")).count(),
        1,
        "{line}"
    );
    assert_eq!(words.last(), Some(&want), "{line}");
    // isolinux booted the default (media check) entry, and the guest found ks.cfg by label.
    assert!(words.contains(&"rd.live.check"), "{line}");
    assert!(line.starts_with("CMDLINE ks=on-the-medium "), "{line}");
}
