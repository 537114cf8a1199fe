//! `ezimg build --fetch`: artifacts come from a mirror directory, the keepalived build stage
//! compiles the real keepalived 2.2.7 (byte-identical to the pinned release, from ../shared),
//! and the bundle pins the stage output's digest so `apply` can verify it on the node.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn cluster(dir: &Path, os: &str) -> PathBuf {
    let text = support::with_role_params(
        &support::with_os(&support::default_cluster(), os),
        "slb",
        "nginx_source = \"distro\"",
    );
    let p = dir.join(format!("cluster-{os}.toml"));
    std::fs::write(&p, text).expect("write cluster");
    p
}

fn ezimg(cache: &Path) -> Command {
    let mut c = Command::cargo_bin("ezimg").expect("binary");
    c.env("EZIMG_CACHE_DIR", cache).env_remove("EZIMG_MIRROR");
    c
}

#[test]
fn fetch_builds_the_keepalived_stage_and_pins_it() {
    let Some(up) = support::fixtures("build_fetch") else {
        return;
    };
    // Shared with tests/stage.rs, so one of the two compiles keepalived and the other hits.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stage-cache");
    let work = tempfile::tempdir().expect("tempdir");
    let mirror = work.path().join("mirror");
    std::fs::create_dir_all(&mirror).expect("mkdir");
    std::fs::copy(
        up.join("keepalived_2.2.7.orig.tar.gz"),
        mirror.join("keepalived-2.2.7.tar.gz"),
    )
    .expect("copy fixture");

    // el7 nodes cannot run binaries built on this Debian 12 host: refused, nothing written.
    let out = work.path().join("out");
    let o = ezimg(&cache)
        .arg("-c")
        .arg(cluster(work.path(), "el7"))
        .args([
            "build", "--role", "slb", "--format", "bundle", "--fetch", "--mirror",
        ])
        .arg(&mirror)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("ezimg");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "el7 stage build was accepted");
    assert!(err.contains("needs a builder of that OS"), "{err}");
    assert!(!out.join("slb").exists());

    let o = ezimg(&cache)
        .arg("-c")
        .arg(cluster(work.path(), "debian12"))
        .args([
            "build", "--role", "slb", "--format", "bundle", "--fetch", "--mirror",
        ])
        .arg(&mirror)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("ezimg");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");

    let arts: Vec<_> = std::fs::read_dir(out.join("slb/artifacts"))
        .expect("artifacts folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(arts.len(), 1, "{arts:?}");
    let stage_file = &arts[0];
    let name = stage_file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("keepalived-stage-") && name.ends_with(".tar.gz"),
        "{name}"
    );
    let sha = ezimg::digest::sha256_hex(&std::fs::read(stage_file).expect("read stage output"));

    let x = work.path().join("x");
    std::fs::create_dir_all(&x).expect("mkdir");
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(out.join("slb/ezimg-slb-bundle.tar.gz"))
        .arg("-C")
        .arg(&x)
        .status()
        .expect("tar");
    assert!(st.success());
    let list = std::fs::read_to_string(x.join("artifacts.list")).expect("artifacts.list");
    let pins = ezimg::bundle::format::parse_artifacts_list(&list, "artifacts.list").expect("parse");
    assert!(
        pins.iter().any(|a| a.name == "keepalived-stage"
            && a.sha256.as_deref() == Some(sha.as_str())
            && a.file == name),
        "bundle does not pin the stage output:\n{list}"
    );
    // The stage output holds the seed's install prefix and a working keepalived.
    let t = Command::new("tar")
        .arg("-tzf")
        .arg(stage_file)
        .output()
        .expect("tar");
    let members = String::from_utf8_lossy(&t.stdout);
    assert!(
        members
            .lines()
            .any(|l| l.trim_start_matches("./") == "ezops/service/keepalived/sbin/keepalived"),
        "{members}"
    );
}
