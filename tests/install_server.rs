//! The ops role's install server (layer install-server): the ezimg binary the ops node gets runs
//! there (checked against the node's OS like a stage output), and what `ezimg serve` reads on the
//! node (cluster file without secrets, the lock) ships in the ops bundle.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use support::{default_cluster, with_os};

fn ezimg() -> Command {
    let mut c = Command::cargo_bin("ezimg").expect("binary built");
    c.env_remove("EZIMG_CLUSTER").env_remove("EZIMG_DATA");
    c.env_remove("SOURCE_DATE_EPOCH")
        .env_remove("EZIMG_SECRETS");
    // Rendering only: the artifacts (kernel RPMs, nerdctl-full) cannot be fetched here.
    c.env("EZIMG_ALLOW_INCOMPLETE", "1");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The default cluster on `os` with `[roles.ops]` `params`, written to `dir/cluster.toml`.
fn cluster(dir: &Path, os: &str, params: &str) -> PathBuf {
    let text = with_os(&default_cluster(), os) + "\n[roles.ops]\n" + params + "\n";
    let p = dir.join("cluster.toml");
    std::fs::write(&p, text).expect("write cluster file");
    p
}

/// The bundle's members, by path.
fn members(bundle: &Path) -> BTreeMap<String, Vec<u8>> {
    let f = std::fs::File::open(bundle).expect("bundle written");
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeMap::new();
    for e in ar.entries().expect("tar") {
        let mut e = e.expect("tar entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read member");
        out.insert(path, data);
    }
    out
}

/// The blob the ops node's steps install at `dest`.
fn installed<'a>(m: &'a BTreeMap<String, Vec<u8>>, dest: &str) -> &'a [u8] {
    let steps = String::from_utf8_lossy(&m["nodes/ops/steps"]).into_owned();
    let line = steps
        .lines()
        .find(|l| l.ends_with(&format!(" {dest}")))
        .unwrap_or_else(|| panic!("no step installs {dest}:\n{steps}"));
    let sha = line
        .split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no sha256 in {line:?}"));
    &m[&format!("blobs/{sha}")]
}

#[test]
fn debian12_ops_bundle_carries_a_running_ezimg_and_what_serve_reads() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = cluster(d.path(), "debian12", "install_server = true");
    let out = d.path().join("out");
    let o = ezimg()
        .args(["build", "--role", "ops", "--format", "bundle", "-c"])
        .arg(&c)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("ezimg runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let m = members(&out.join("ops/ezimg-ops-bundle.tar.gz"));

    // The binary: this ezimg, byte for byte, and it runs.
    let bin = installed(&m, "/usr/local/bin/ezimg");
    let me = std::fs::read(assert_cmd::cargo::cargo_bin("ezimg")).expect("read ezimg");
    assert!(
        bin == me.as_slice(),
        "the bundle's ezimg is not the one that built it"
    );
    let steps = String::from_utf8_lossy(&m["nodes/ops/steps"]).into_owned();
    assert!(
        steps
            .lines()
            .any(|l| l.contains("0755") && l.ends_with(" /usr/local/bin/ezimg")),
        "{steps}"
    );
    let exe = d.path().join("node-ezimg");
    std::fs::write(&exe, bin).expect("write");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let v = Command::new(&exe).arg("--version").output().expect("runs");
    assert!(v.status.success(), "{}", stderr(&v));
    assert!(
        String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );

    // The cluster file serve reads parses, and has no secret of the store or [access].
    let ct =
        String::from_utf8(installed(&m, "/etc/ezimg/serve/cluster.toml").to_vec()).expect("UTF-8");
    let back = ezimg::cluster::parse(&ct, "bundled cluster.toml").expect("parses");
    assert_eq!(back.os, ezimg::cluster::Os::Debian12);
    assert!(back.vrrp.auth_pass.is_none() && back.access.ssh_authorized_keys.is_empty());
    assert!(
        !ct.contains("auth_pass =") && !ct.contains("k8spass"),
        "{ct}"
    );
    // The lock is the one the build used (the embedded one here).
    let lock = installed(&m, "/etc/ezimg/serve/artifacts.lock");
    assert_eq!(
        lock,
        ezimg::artifact::Lock::embedded()
            .expect("embedded lock")
            .text
            .as_bytes()
    );
    // The unit that runs it.
    let unit = String::from_utf8_lossy(installed(&m, "/etc/systemd/system/ezimg-serve.service"))
        .into_owned();
    assert!(unit.contains("--listen 0.0.0.0:8080"), "{unit}");
}

#[test]
fn el7_ops_node_refuses_this_binary_and_writes_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = cluster(d.path(), "el7", "install_server = true");
    let out = d.path().join("out");
    let o = ezimg()
        .args(["build", "--role", "ops", "--format", "bundle", "-c"])
        .arg(&c)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("ezimg runs");
    let e = stderr(&o);
    assert!(!o.status.success(), "el7 accepted the host's ezimg:\n{e}");
    for needle in [
        "does not run on the ops node's OS el7",
        "GLIBC_",
        "el7 has glibc 2.17",
        "x86_64-unknown-linux-musl",
        "install_server_binary",
    ] {
        assert!(e.contains(needle), "stderr lacks {needle:?}:\n{e}");
    }
    let written: Vec<_> = std::fs::read_dir(&out)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "build wrote {written:?}");
    // The store is made only by a build that goes ahead.
    assert!(!d.path().join("cluster.secrets").exists());
}

#[test]
fn binary_path_errors_name_the_field() {
    let d = tempfile::tempdir().expect("tempdir");
    // Missing file: named with the field and the path it resolved to (beside the cluster file).
    let c = cluster(
        d.path(),
        "debian12",
        "install_server = true\ninstall_server_binary = \"bin/nope\"",
    );
    let o = ezimg()
        .arg("plan")
        .arg("-c")
        .arg(&c)
        .output()
        .expect("runs");
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("roles.ops.install_server_binary = \"bin/nope\"")
            && e.contains(&d.path().join("bin/nope").display().to_string()),
        "{e}"
    );
    // Not an executable for the node: refused, naming the field.
    std::fs::create_dir_all(d.path().join("bin")).expect("mkdir");
    std::fs::write(d.path().join("bin/nope"), "#!/bin/sh\necho ezimg\n").expect("write");
    let o = ezimg()
        .arg("plan")
        .arg("-c")
        .arg(&c)
        .output()
        .expect("runs");
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("roles.ops.install_server_binary") && e.contains("not an ELF executable"),
        "{e}"
    );
    // A port el7's unit could not bind, and one that is no port: refused by check.
    let c = cluster(
        d.path(),
        "el7",
        "install_server = true\ninstall_server_port = 443",
    );
    let o = ezimg()
        .arg("check")
        .arg("-c")
        .arg(&c)
        .output()
        .expect("runs");
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("install_server_port") && e.contains("1024"),
        "{e}"
    );
    // A DHCP mode dnsmasq has no use for: refused, naming the field and the choices.
    let c = cluster(
        d.path(),
        "debian12",
        "install_server = true\ninstall_server_dhcp = \"yes\"",
    );
    let o = ezimg()
        .arg("check")
        .arg("-c")
        .arg(&c)
        .output()
        .expect("runs");
    let e = stderr(&o);
    assert!(
        !o.status.success()
            && e.contains("roles.ops.install_server_dhcp")
            && e.contains("\"proxy\"")
            && e.contains("\"none\""),
        "{e}"
    );
}

#[test]
fn default_ops_plan_has_no_install_server() {
    let o = ezimg()
        .args(["plan", "--node", "ops"])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("- install-server: SKIPPED") && !text.contains("/usr/local/bin/ezimg"),
        "{text}"
    );
}
