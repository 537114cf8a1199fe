//! The qcow2 bake end to end: `ezimg build --role slb --format qcow2` on a debian12 cluster
//! (nginx and keepalived from the distribution) boots the base once under QEMU with no
//! network, applies the bundle, and the guest's `OK` comes back over virtio-serial; the second
//! `apply` in the guest changed nothing; a rebuild with unchanged inputs is a cache hit (no VM).
//! Then the baked image boots with slb-01's own seed and reports the tuning it carries.
//!
//! By default the slb role is cut to its tuning layers (`harness::test_data_dir`: a 2-minute
//! bake); `EZIMG_VM_FULL_ROLES=1` bakes the real role (20+ minutes under TCG).
//! Slow and needs root: runs only with `EZIMG_VM_TESTS=1`.

#[path = "../vm-tests/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use ezimg::vm::{Disk, Vm, VmSpec, tool};

fn debian_cluster(dir: &Path) -> PathBuf {
    let cluster = ezimg::cluster::DEFAULT_TOML
        .replace("os = \"el7\"", "os = \"debian12\"")
        .replace(
            "# [roles.slb]",
            "[roles.slb]\nnginx_source = \"distro\"\nkeepalived_source = \"distro\"\n#",
        );
    let f = dir.join("cluster.toml");
    std::fs::write(&f, cluster).expect("write cluster");
    f
}

#[test]
fn slb_bakes_offline_is_cached_and_boots_tuned() {
    if !harness::gate("vm_bake", "bake and boot a debian12 slb image") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let cluster = debian_cluster(work.path());
    let out = work.path().join("out");
    let data = harness::test_data_dir(work.path());
    let data = data.as_deref();

    let (ok, log, cold) = harness::ezimg_build(
        data,
        &cluster,
        &out,
        &["--role", "slb", "--format", "qcow2"],
    );
    assert!(ok, "bake failed:\n{log}");
    let img = out.join("slb/ezimg-slb.qcow2");
    assert!(img.exists(), "{log}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("slb/ezimg-slb.qcow2.json")).expect("manifest"),
    )
    .expect("manifest json");
    let apply = manifest["apply"].as_str().unwrap_or_default();
    assert!(
        apply.contains("second=\"ezimg apply: 0 changes\""),
        "the second apply in the bake changed things: {apply}"
    );
    assert_eq!(
        manifest["sha256"].as_str().unwrap_or_default(),
        tool::sha256_file(&img).expect("hash"),
        "manifest digest"
    );

    let (ok, log2, warm) = harness::ezimg_build(
        data,
        &cluster,
        &out,
        &["--role", "slb", "--format", "qcow2"],
    );
    assert!(ok && log2.contains("cache hit"), "{log2}");
    eprintln!("vm_bake: cold bake {cold:.0}s, warm (cache hit) {warm:.1}s");
    assert!(warm < 30.0, "warm build took {warm}s");

    // Boot the image as slb-01 would, without network, and read what it carries.
    let (ok, log3, _) = harness::ezimg_build(
        data,
        &cluster,
        &out,
        &["--node", "slb-01", "--format", "cloud-init"],
    );
    assert!(ok, "{log3}");
    let disk = work.path().join("slb-01.qcow2");
    ezimg::vm::overlay(&img, &disk, None).expect("overlay");
    let probe = work.path().join("probe.img");
    let user_data = r#"#cloud-config
runcmd:
  - [bash, -c, 'p=/dev/virtio-ports/ezimg.0; echo "TUNED forward=$(sysctl -n net.ipv4.ip_forward) swappiness=$(sysctl -n vm.swappiness) swap=$(swapon --noheadings | wc -l) ezops=$(ls -d /ezops/service /ezops/package /ezops/backup /ezops/shell | wc -l) nginx=$(dpkg-query -W -f="\${Version}" nginx) keepalived=$(dpkg-query -W -f="\${Version}" keepalived) machine_id=$(wc -c </etc/machine-id)" >$p; poweroff']
"#;
    ezimg::output::seed_fat::write(
        &[
            ("user-data", user_data.as_bytes()),
            (
                "meta-data",
                b"instance-id: ezimg-vmtest-probe\nlocal-hostname: slb-01\n",
            ),
        ],
        &probe,
    )
    .expect("probe seed");
    let mut spec = VmSpec::new("vmtest-slb", work.path());
    spec.disks = vec![Disk::qcow2(&disk), Disk::raw_ro(&probe, "cidata")];
    let mut vm = Vm::start(&spec).expect("qemu");
    let line = vm
        .wait_for(Duration::from_secs(900), |l| l.starts_with("TUNED"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("vm_bake: {line} ({:.0}s)", vm.elapsed().as_secs_f64());
    let _ = vm.wait_exit(Duration::from_secs(120));
    for want in ["forward=1", "swap=0", "ezops=4"] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    if data.is_none() {
        assert!(!line.contains("nginx= "), "nginx not installed: {line}");
    }
}

/// Not gated (no VM): an el7 bake without the vendor image in the cache fails at once, naming
/// the image and how to get it, and leaves no output behind.
#[test]
fn el7_bake_without_the_vendor_image_fails_clearly() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let o = Command::cargo_bin("ezimg")
        .expect("binary")
        .args(["build", "--role", "slb", "--format", "qcow2", "--out"])
        .arg(&out)
        .env("EZIMG_CACHE_DIR", work.path().join("cache"))
        .output()
        .expect("ezimg build");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("centos7-genericcloud") && err.contains("ezimg import"),
        "{err}"
    );
    assert!(!out.join("slb").exists(), "a failed build left output");
}
