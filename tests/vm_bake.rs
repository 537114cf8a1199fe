//! The qcow2 bake end to end, on the cluster and data of `vm_scenarios` (so the slb image
//! baked here is a cache hit there): `ezimg build --role slb --format qcow2` boots the debian12
//! base once under QEMU with no network, applies the bundle (nginx from Debian, keepalived from
//! its build stage when the upstream fixtures are here), and the guest's `OK` comes back over
//! virtio-serial; the second `apply` in the guest changed nothing; the image passes
//! `qemu-img check` and holds no secret; a rebuild with unchanged inputs is a cache hit (no VM).
//! A bake whose layer fails exits non-zero with the guest's log and journal, and leaves neither
//! output nor cache entry.
//!
//! The roles are the repository's, `base-packages` included (`harness::test_data_dir`).
//! Slow and needs root: runs only with `EZIMG_VM_TESTS=1`.

#[path = "../vm-tests/harness.rs"]
mod harness;
mod support;

use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use ezimg::vm::tool;

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, minutes)"
)]
fn slb_bakes_offline_holds_no_secret_and_a_rebuild_is_a_cache_hit() {
    harness::gate("vm_bake", "bake a debian12 slb image");
    let work = tempfile::tempdir().expect("tempdir");
    let data = harness::test_data_dir(work.path());
    let data = Some(data.as_path());
    // The same inputs as vm_scenarios: its slb image is then a cache hit.
    let (cluster, mut args) = harness::scenario_inputs(work.path());
    args.splice(
        0..0,
        ["--role", "slb", "--format", "qcow2"].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = work.path().join("out");

    let (ok, log, cold) = harness::ezimg_build(data, &cluster, &out, &args);
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
    let staged = manifest["artifacts"]
        .to_string()
        .contains("keepalived-stage");
    for p in ["nginx", "keepalived", "chrony", "ipvsadm"] {
        let in_image = manifest["packages"].get(p).is_some() || (p == "keepalived" && staged);
        assert!(in_image, "{p} not in the image's manifest: {manifest:#}");
    }
    let check = Command::new("qemu-img")
        .args(["check", "-q"])
        .arg(&img)
        .output()
        .expect("qemu-img check");
    assert!(check.status.success(), "qemu-img check: {check:?}");

    // A role image carries no secret: the cluster's VRRP password is nowhere in its blocks
    // (the bake used a placeholder and removed the files that held it).
    let raw = work.path().join("slb.raw");
    let conv = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&img)
        .arg(&raw)
        .output()
        .expect("qemu-img convert");
    assert!(conv.status.success(), "{conv:?}");
    let hits = Command::new("grep")
        .args(["-a", "-c", "-F", "k8spass"])
        .arg(&raw)
        .output()
        .expect("grep");
    assert_eq!(
        String::from_utf8_lossy(&hits.stdout).trim(),
        "0",
        "the VRRP password is in the slb image"
    );
    let _ = std::fs::remove_file(&raw);

    let (ok, log2, warm) = harness::ezimg_build(data, &cluster, &out, &args);
    assert!(ok && log2.contains("cache hit"), "{log2}");
    eprintln!("vm_bake: cold bake {cold:.0}s, warm (cache hit) {warm:.2}s");
    assert!(warm < 30.0, "warm build took {warm}s");

    // Byte-reproducible: a second cold bake of the same inputs (its cache entry dropped, the
    // role base kept) gives the same image, sha256 for sha256.
    let first = manifest["sha256"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        manifest["not_reproducible"],
        serde_json::Value::Null,
        "{manifest:#}"
    );
    let key = manifest["key"].as_str().unwrap_or_default();
    let entry = harness::cache_dir()
        .join("bake")
        .join(format!("slb-{}.qcow2", &key[..16]));
    let kept =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm_bake-first-slb.qcow2");
    std::fs::rename(&entry, &kept).expect("moving the first image aside");
    std::fs::remove_file(entry.with_extension("qcow2.json")).expect("dropping the manifest");
    let out2 = work.path().join("out2");
    let (ok, log3, again) = harness::ezimg_build(data, &cluster, &out2, &args);
    assert!(ok && !log3.contains("qcow2 slb: cache hit"), "{log3}");
    let second = tool::sha256_file(&out2.join("slb/ezimg-slb.qcow2")).expect("hash");
    eprintln!("vm_bake: two cold bakes ({cold:.0}s, {again:.0}s): sha256 {first} and {second}");
    assert_eq!(
        first,
        second,
        "two cold bakes of the same inputs differ; the first is kept at {}",
        kept.display()
    );
    let _ = std::fs::remove_file(&kept);
}

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, minutes)"
)]
fn a_failing_layer_fails_the_bake_with_the_guest_log_and_leaves_no_image() {
    harness::gate("vm_bake", "bake a debian12 image that must fail");
    let work = tempfile::tempdir().expect("tempdir");
    let data = harness::test_data_dir(work.path());
    // The first layer to run ends in an error (fails fast: before any package install).
    let script = data.join("layers/swap-off/apply.sh");
    let mut text = std::fs::read_to_string(&script).expect("swap-off script");
    text.push_str("\necho 'vm_bake: a layer that fails on purpose' >&2\nexit 3\n");
    std::fs::write(&script, text).expect("write script");
    let (cluster, mut args) = harness::scenario_inputs(work.path());
    args.splice(
        0..0,
        ["--role", "worker", "--format", "qcow2"].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = work.path().join("out");
    let bakes_before = baked_images();
    let (ok, log, secs) = harness::ezimg_build(Some(&data), &cluster, &out, &args);
    eprintln!("vm_bake: the failing bake ended after {secs:.0}s");
    assert!(!ok, "the bake succeeded:\n{log}");
    assert!(
        log.contains("the bake failed in the guest"),
        "not reported as a failure in the guest:\n{log}"
    );
    assert!(
        log.contains("a layer that fails on purpose"),
        "the guest's log tail is not in the error:\n{log}"
    );
    assert!(log.contains("journal"), "no journal tail:\n{log}");
    assert!(
        !out.exists(),
        "a failed bake left output in {}",
        out.display()
    );
    assert_eq!(
        baked_images(),
        bakes_before,
        "a failed bake left a cache entry"
    );
}

/// The images in the bake cache.
fn baked_images() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(harness::cache_dir().join("bake"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".qcow2"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `ezimg build --role slb --format qcow2 EXTRA…` on the default (el7) cluster with an empty
/// cache: (success, stderr, whether the slb output folder exists).
fn el7_slb_bake(work: &std::path::Path, extra: &[&std::ffi::OsStr]) -> (bool, String, bool) {
    let out = work.join("out");
    let o = Command::cargo_bin("ezimg")
        .expect("binary")
        .args(["build", "--role", "slb", "--format", "qcow2", "--out"])
        .arg(&out)
        .args(extra)
        .env("EZIMG_CACHE_DIR", work.join("cache"))
        // The el7 artifacts cannot be fetched here: get past that check to the bake's own.
        .env("EZIMG_ALLOW_INCOMPLETE", "1")
        .output()
        .expect("ezimg build");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        out.join("slb").exists(),
    )
}

/// Not gated (no VM): an el7 bake without the vendor image in the cache fails at once, naming
/// the image and how to get it, and leaves no output behind.
#[test]
fn el7_bake_without_the_vendor_image_fails_clearly() {
    let work = tempfile::tempdir().expect("tempdir");
    let (ok, err, left) = el7_slb_bake(work.path(), &[]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("centos7-genericcloud") && err.contains("ezimg import"),
        "{err}"
    );
    assert!(!left, "a failed build left output");
}

/// The vendor base comes from the lock the build was given (`--lock`), not the embedded one.
#[test]
fn el7_bake_looks_up_the_vendor_image_in_the_given_lock() {
    let work = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts.lock"))
        .expect("artifacts.lock");
    let start = text
        .find("[[artifact]]\nname = \"centos7-genericcloud\"")
        .expect("the lock pins centos7-genericcloud");
    let end = text[start + 1..]
        .find("[[artifact]]")
        .map_or(text.len(), |i| start + 1 + i);
    let site = work.path().join("site.lock");
    std::fs::write(&site, format!("{}{}", &text[..start], &text[end..])).expect("write lock");
    let (ok, err, left) = el7_slb_bake(work.path(), &["--lock".as_ref(), site.as_os_str()]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("site.lock") && err.contains("has no `centos7-genericcloud` base image"),
        "{err}"
    );
    assert!(!left, "a failed build left output");
}
