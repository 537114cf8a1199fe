//! The debian12 base boots: `ezimg base build --os debian12`, then QEMU (no network) boots it
//! on a bigger overlay with a NoCloud seed whose runcmd reports on the virtio-serial port:
//! cloud-init ran, the root grew to the disk, no machine identity was baked in.
//!
//! Slow (a Debian root, then a TCG boot: minutes) and needs root, so it only runs with
//! `EZIMG_VM_TESTS=1`; otherwise `cargo test` lists it as ignored. `EZIMG_CACHE_DIR` is
//! honoured (a built base is reused); else the cache lives under target/.

use std::path::PathBuf;
#[path = "../vm-tests/harness.rs"]
mod harness;
mod support;

use std::process::Command;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use ezimg::vm::{Disk, Vm, VmSpec};

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, minutes)"
)]
fn debian12_base_boots_with_a_nocloud_seed_and_grows_its_root() {
    harness::gate("vm_base", "build and boot the debian12 base");
    let cache = harness::cache_dir();
    let o = Command::cargo_bin("ezimg")
        .expect("binary")
        .args(["base", "build", "--os", "debian12"])
        .env("EZIMG_CACHE_DIR", &cache)
        .output()
        .expect("ezimg base build");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let image = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("image    "))
        .and_then(|l| l.split(" (").next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no image path in:\n{text}"));
    assert!(image.exists(), "{}", image.display());

    // A second build is a cache hit.
    let o = Command::cargo_bin("ezimg")
        .expect("binary")
        .args(["base", "build", "--os", "debian12"])
        .env("EZIMG_CACHE_DIR", &cache)
        .output()
        .expect("ezimg base build");
    let again = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && again.contains("cache hit"), "{again}");

    // Byte-reproducible: building it again from scratch gives the same image.
    let sha = |p: &std::path::Path| ezimg::digest::sha256_file(p).expect("hash");
    let first = sha(&image);
    let o = Command::cargo_bin("ezimg")
        .expect("binary")
        .args(["base", "build", "--os", "debian12", "--rebuild"])
        .env("EZIMG_CACHE_DIR", &cache)
        .output()
        .expect("ezimg base build --rebuild");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = sha(&image);
    eprintln!("vm_base: two builds of the base: sha256 {first} and {second}");
    assert_eq!(first, second, "two builds of the debian12 base differ");

    let work = tempfile::tempdir().expect("tempdir");
    let disk = work.path().join("disk.qcow2");
    ezimg::vm::overlay(&image, &disk, Some(6 << 30)).expect("overlay");
    let user_data = r#"#cloud-config
runcmd:
  - [bash, -c, 'p=/dev/virtio-ports/ezimg.0; echo "BOOTED kernel=$(uname -r) root_kib=$(df -k --output=size / | tail -n1 | tr -d " ") machine_id=$(cat /etc/machine-id) hostkeys=$(ls /etc/ssh/ssh_host_*_key | wc -l) ci=$(cloud-init status | tr -d " ")" >$p; poweroff']
"#;
    let meta = "instance-id: ezimg-vmtest-base\nlocal-hostname: vmtest\n";
    let seed = work.path().join("seed.img");
    ezimg::output::seed_fat::write(
        &[
            ("user-data", user_data.as_bytes()),
            ("meta-data", meta.as_bytes()),
        ],
        &seed,
    )
    .expect("seed");
    let mut spec = VmSpec::new("vmtest-base", work.path());
    spec.disks = vec![Disk::qcow2(&disk), Disk::raw_ro(&seed, "cidata")];
    let mut vm = Vm::start(&spec).expect("qemu starts");
    let line = vm
        .wait_for(Duration::from_secs(900), |l| l.starts_with("BOOTED"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "vm_base: {line} ({:.0}s, {})",
        vm.elapsed().as_secs_f64(),
        vm.accel
    );
    vm.wait_exit(Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e:#}"));

    let field = |k: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    let root_kib: u64 = field("root_kib").parse().expect("root size");
    assert!(
        root_kib > 5 * 1024 * 1024,
        "root did not grow to the 6 GiB disk: {line}"
    );
    // A fresh machine-id was made at boot (the image has an empty one), host keys too.
    assert_eq!(field("machine_id").len(), 32, "{line}");
    assert_ne!(field("hostkeys"), "0", "{line}");
}
