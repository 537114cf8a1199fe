//! The VM stage builder: `ezimg stage build keepalived --builder vm` compiles the upstream
//! keepalived 2.2.7 tarball inside a debian12 VM (ezimg's base with only the stage's
//! `[build_deps]`, no network), the host packs it, and the output runs: the ELF check passes for
//! debian12 and refuses el7, nothing outside the declared dependencies is linked, and the binary
//! starts. A step that fails in the VM is reported like a host build's (step, command, log tail)
//! and caches nothing.
//!
//! Slow (a builder base, then a compile under TCG) and needs root: only with
//! `EZIMG_VM_TESTS=1`; otherwise `cargo test` lists it as ignored.

#[path = "../vm-tests/harness.rs"]
mod harness;
mod support;

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

/// `ezimg stage ARGS`, with `--cache-dir CACHE` for `build`.
fn ezimg_stage(cache: &Path, args: &[&str]) -> (bool, String) {
    let mut c = Command::cargo_bin("ezimg").expect("binary");
    c.arg("stage").args(args);
    if args.first() == Some(&"build") {
        c.arg("--cache-dir").arg(cache);
    }
    let o = c.output().expect("ezimg stage");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, minutes)"
)]
fn keepalived_builds_in_a_debian12_vm_and_runs_on_its_target_only() {
    harness::gate("vm_stage", "build the keepalived stage in a VM");
    let Some(fx) = support::fixtures("vm_stage") else {
        return;
    };
    let cache = harness::cache_dir();
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("keepalived.tar.gz");
    let src = format!(
        "keepalived={}",
        fx.join("keepalived_2.2.7.orig.tar.gz").display()
    );
    let t = std::time::Instant::now();
    let (ok, text) = ezimg_stage(
        &cache,
        &[
            "build",
            "keepalived",
            "--builder",
            "vm",
            "--source",
            &src,
            "-o",
            out.to_str().expect("utf-8 path"),
        ],
    );
    eprintln!(
        "vm_stage: keepalived in a VM: {:.0}s\n{text}",
        t.elapsed().as_secs_f64()
    );
    assert!(ok, "{text}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.path().join("keepalived.tar.gz.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let builder = manifest["builder"].as_str().unwrap_or_default();
    assert!(
        builder.starts_with("vm: debian12 base sha256 "),
        "{builder}"
    );

    // `build` finds the VM-built output by its inputs and target (it does not know the
    // builder's image): for debian12 yes, for el7 no.
    let st = ezimg::stage::load("keepalived", None).expect("stage");
    let sources = std::collections::BTreeMap::from([(
        "keepalived".to_string(),
        fx.join("keepalived_2.2.7.orig.tar.gz"),
    )]);
    let mut opts = ezimg::stage::BuildOptions::new(&cache);
    let found = ezimg::stage::find_for_target(&st, &sources, &opts).expect("lookup");
    assert_eq!(
        found.map(|(_, m)| m.key),
        manifest["key"].as_str().map(str::to_string),
        "the VM-built output is not found for debian12"
    );
    opts.target = "el7".into();
    assert!(
        ezimg::stage::find_for_target(&st, &sources, &opts)
            .expect("lookup")
            .is_none(),
        "a debian12 output was offered for el7"
    );

    // The ELF check: runs on debian12, refused for el7 (glibc and sonames).
    let (ok, text) = ezimg_stage(
        &cache,
        &[
            "check",
            out.to_str().expect("utf-8"),
            "--target",
            "debian12",
        ],
    );
    assert!(ok && text.contains("runs on debian12"), "{text}");
    let (ok, text) = ezimg_stage(
        &cache,
        &["check", out.to_str().expect("utf-8"), "--target", "el7"],
    );
    assert!(
        !ok && text.contains("GLIBC"),
        "el7 accepted a debian12 build:\n{text}"
    );

    // Hermetic: linked only against what [build_deps] brought (no libmagic, which a build
    // machine with libmagic-dev would link), and it starts.
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    let o = support::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&out)
            .arg("-C")
            .arg(&tree),
    );
    assert!(o.status.success(), "tar: {o:?}");
    let bin = tree.join("ezops/service/keepalived/sbin/keepalived");
    let o = support::run(Command::new("readelf").arg("-d").arg(&bin));
    let dynamic = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && dynamic.contains("libnl-genl-3"),
        "{dynamic}"
    );
    assert!(!dynamic.contains("libmagic"), "links libmagic:\n{dynamic}");
    let o = support::run(Command::new(&bin).arg("--version"));
    let v = String::from_utf8_lossy(&o.stderr) + String::from_utf8_lossy(&o.stdout);
    assert!(v.contains("Keepalived v2.2.7"), "{v}");

    // Built again: a cache hit, no VM.
    let (ok, text) = ezimg_stage(
        &cache,
        &["build", "keepalived", "--builder", "vm", "--source", &src],
    );
    assert!(ok && text.contains("cache hit"), "{text}");

    // A failing step in the VM: named, its command and log tail quoted, nothing cached. The
    // stage declares keepalived's build_deps, so the same builder base is reused.
    let data = work.path().join("data");
    std::fs::create_dir_all(data.join("stages")).expect("mkdir");
    std::fs::create_dir_all(work.path().join("hello-1.0")).expect("mkdir");
    std::fs::write(work.path().join("hello-1.0/README"), "hello\n").expect("write");
    let ka = std::fs::read_to_string(support::root().join("stages/keepalived.toml"))
        .expect("keepalived.toml");
    let deps = ka
        .lines()
        .find(|l| l.starts_with("debian12 = [\"gcc\""))
        .expect("keepalived's debian12 build_deps line");
    std::fs::write(
        data.join("stages/hello.toml"),
        format!(
            "name = \"hello\"\nprefix = \"/opt/hello\"\nwork = \"hello\"\n\
             build = [[\"true\"]]\ninstall = [[\"mkdir\", \"-p\", \"{{{{ destdir }}}}\"]]\n\
             [configure]\ncommand = [\"sh\", \"-c\", \"echo checking the answer; echo no answer >&2; exit 3\"]\n\
             [output]\npaths = [\"{{{{ prefix }}}}\"]\n\
             [build_deps]\n{deps}\n\
             [[source]]\nname = \"hello\"\n"
        ),
    )
    .expect("write hello.toml");
    let o = Command::cargo_bin("ezimg")
        .expect("binary")
        .arg("stage")
        .arg("--data")
        .arg(&data)
        .args(["build", "hello", "--builder", "vm", "--source"])
        .arg(format!("hello={}", work.path().join("hello-1.0").display()))
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .expect("ezimg stage build hello");
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a failing configure passed:\n{text}");
    for needle in [
        "step `configure` failed in the debian12 VM",
        "echo checking the answer",
        "no answer",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
    for e in std::fs::read_dir(cache.join("stages")).expect("stages dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "json") {
            let m = std::fs::read_to_string(&p).expect("manifest");
            assert!(
                !m.contains("\"stage\": \"hello\""),
                "a failed build was cached: {}",
                p.display()
            );
        }
    }
}
