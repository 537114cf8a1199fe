//! The VM stage builder (`ezimg stage build NAME --builder vm`): the configure/build/install
//! steps run inside a debian12 VM (ezimg's base with only the stage's `[build_deps]`, no
//! network), the host packs and checks the output.
//!
//! - `a_small_c_stage_...` (the VM suite): a C program from a data-dir stage is compiled in the
//!   VM; the manifest names the VM builder; the output runs on the host (debian12), passes the
//!   ELF check for debian12 and is refused for el7; `build` finds it by inputs and target; a
//!   rebuild is a cache hit; a stage whose configure fails in the VM is refused naming the step,
//!   its command and log tail, and nothing is cached.
//! - `keepalived_...` (the slow tier, `EZIMG_VM_SLOW=1` too: ~15 minutes under TCG): the
//!   upstream keepalived 2.2.7 tarball, hermetic (nothing linked outside the declared
//!   dependencies: no libmagic), `keepalived --version` runs.
//!
//! Both share one builder base (the small stage declares keepalived's build dependencies).
//! Slow and needs root: only with `EZIMG_VM_TESTS=1`; otherwise `cargo test` lists them as
//! ignored.

#[path = "../vm-tests/harness.rs"]
mod harness;
mod support;

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

/// `ezimg stage ARGS`, with `--cache-dir CACHE` for `build`.
fn ezimg_stage(cache: &Path, data: Option<&Path>, args: &[&str]) -> (bool, String) {
    let mut c = Command::cargo_bin("ezimg").expect("binary");
    c.arg("stage");
    if let Some(d) = data {
        c.arg("--data").arg(d);
    }
    c.args(args);
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

/// `stage build NAME --builder vm --source SRC -o OUT` (timed), then the manifest beside OUT,
/// which must name the debian12 VM builder.
fn build_in_vm(
    cache: &Path,
    data: Option<&Path>,
    name: &str,
    source: &str,
    out: &Path,
) -> serde_json::Value {
    let t = std::time::Instant::now();
    let (ok, text) = ezimg_stage(
        cache,
        data,
        &[
            "build",
            name,
            "--builder",
            "vm",
            "--source",
            source,
            "-o",
            out.to_str().expect("utf-8 path"),
        ],
    );
    eprintln!(
        "vm_stage: {name} in a VM: {:.0}s\n{text}",
        t.elapsed().as_secs_f64()
    );
    assert!(ok, "{text}");
    let mut json = out.as_os_str().to_owned();
    json.push(".json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("manifest")).expect("manifest JSON");
    let builder = manifest["builder"].as_str().unwrap_or_default();
    assert!(
        builder.starts_with("vm: debian12 base sha256 "),
        "{builder}"
    );
    manifest
}

/// The ELF check accepts `out` for debian12 and refuses it for el7 (GLIBC).
fn runs_on_debian12_not_el7(cache: &Path, data: Option<&Path>, out: &Path) {
    let out = out.to_str().expect("utf-8");
    let (ok, text) = ezimg_stage(cache, data, &["check", out, "--target", "debian12"]);
    assert!(ok && text.contains("runs on debian12"), "{text}");
    let (ok, text) = ezimg_stage(cache, data, &["check", out, "--target", "el7"]);
    assert!(
        !ok && text.contains("GLIBC"),
        "el7 accepted a debian12 build:\n{text}"
    );
}

/// Unpack a stage tarball into a new directory `tree`.
fn unpack(tarball: &Path, tree: &Path) {
    std::fs::create_dir(tree).expect("mkdir");
    let o = support::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(tarball)
            .arg("-C")
            .arg(tree),
    );
    assert!(o.status.success(), "tar: {o:?}");
}

/// keepalived's `[build_deps] debian12` line: a test stage that declares it shares the builder
/// base with the keepalived build.
fn keepalived_deps() -> String {
    let ka = std::fs::read_to_string(support::root().join("stages/keepalived.toml"))
        .expect("keepalived.toml");
    ka.lines()
        .find(|l| l.starts_with("debian12 = [\"gcc\""))
        .expect("keepalived's debian12 build_deps line")
        .to_string()
}

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, minutes)"
)]
fn a_small_c_stage_builds_in_a_debian12_vm_and_a_failing_step_is_reported() {
    harness::gate("vm_stage", "build a stage in a VM");
    let cache = harness::cache_dir();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let data = w.join("data");
    std::fs::create_dir_all(data.join("stages")).expect("mkdir");
    let deps = keepalived_deps();
    // A C program with a configure step, as a source directory.
    let src = w.join("hello-1.0");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(
        src.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello from the build VM\"); return 0; }\n",
    )
    .expect("hello.c");
    std::fs::write(
        data.join("stages/hello.toml"),
        format!(
            "name = \"hello\"\nprefix = \"/opt/hello\"\nwork = \"hello\"\n\
             build = [[\"gcc\", \"-O2\", \"-o\", \"hello\", \"hello.c\"]]\n\
             install = [[\"install\", \"-D\", \"-m\", \"0755\", \"hello\", \"{{{{ destdir }}}}{{{{ prefix }}}}/bin/hello\"]]\n\
             [configure]\ncommand = [\"sh\", \"-c\", \"test -f hello.c && cc --version | head -n1 > config.log\"]\n\
             [output]\npaths = [\"{{{{ prefix }}}}\"]\n\
             [build_deps]\n{deps}\n\
             [[source]]\nname = \"hello\"\n"
        ),
    )
    .expect("hello.toml");
    let out = w.join("hello.tar.gz");
    let source = format!("hello={}", src.display());
    let manifest = build_in_vm(&cache, Some(&data), "hello", &source, &out);

    // Runs here (debian12), passes the ELF check for debian12, refused for el7.
    let tree = w.join("tree");
    unpack(&out, &tree);
    let o = support::run(&mut Command::new(tree.join("opt/hello/bin/hello")));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "hello from the build VM"
    );
    let (ok, text) = ezimg_stage(
        &cache,
        Some(&data),
        &[
            "check",
            out.to_str().expect("utf-8"),
            "--target",
            "debian12",
        ],
    );
    assert!(ok && text.contains("runs on debian12"), "{text}");
    runs_on_debian12_not_el7(&cache, Some(&data), &out);

    // `build` finds the VM-built output by its inputs and target (it does not know the
    // builder's image): for debian12 yes, for el7 no.
    let st = ezimg::stage::load("hello", Some(&data)).expect("stage");
    let sources = std::collections::BTreeMap::from([("hello".to_string(), src.clone())]);
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

    // Built again: a cache hit, no VM.
    let (ok, text) = ezimg_stage(
        &cache,
        Some(&data),
        &["build", "hello", "--builder", "vm", "--source", &source],
    );
    assert!(ok && text.contains("cache hit"), "{text}");

    // A failing step in the VM: named, its command and log tail quoted, nothing cached.
    std::fs::write(
        data.join("stages/broken.toml"),
        format!(
            "name = \"broken\"\nprefix = \"/opt/broken\"\nwork = \"hello\"\n\
             build = [[\"true\"]]\ninstall = [[\"mkdir\", \"-p\", \"{{{{ destdir }}}}\"]]\n\
             [configure]\ncommand = [\"sh\", \"-c\", \"echo checking the answer; echo no answer >&2; exit 3\"]\n\
             [output]\npaths = [\"{{{{ prefix }}}}\"]\n\
             [build_deps]\n{deps}\n\
             [[source]]\nname = \"hello\"\n"
        ),
    )
    .expect("broken.toml");
    let (ok, text) = ezimg_stage(
        &cache,
        Some(&data),
        &["build", "broken", "--builder", "vm", "--source", &source],
    );
    assert!(!ok, "a failing configure passed:\n{text}");
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
                !m.contains("\"stage\": \"broken\""),
                "a failed build was cached: {}",
                p.display()
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(ezimg_vm_slow),
    ignore = "slow VM test: set EZIMG_VM_TESTS=1 and EZIMG_VM_SLOW=1 to run it (keepalived compiled under TCG, ~15 min)"
)]
fn keepalived_builds_hermetically_in_a_debian12_vm() {
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
    build_in_vm(&cache, None, "keepalived", &src, &out);

    // The ELF check: runs on debian12, refused for el7 (glibc and sonames).
    runs_on_debian12_not_el7(&cache, None, &out);

    // Hermetic: linked only against what [build_deps] brought (no libmagic, which a build
    // machine with libmagic-dev would link), and it starts.
    let tree = work.path().join("tree");
    unpack(&out, &tree);
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
}
