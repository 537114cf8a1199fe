//! The bundle's `apply` for real: a Debian 12 root made with mmdebstrap from the host's own apt
//! sources, the slb bundle applied in a chroot twice. The second run must change nothing.
//! Needs root and mmdebstrap; elsewhere it says why it skips (under CI a skip is a failure).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn sh(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().expect("command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// A Debian 12 root tarball, made once and kept under target/ for later runs.
fn rootfs_tar() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ezimg-rootfs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let tar = dir.join("debian12-apply.tar");
    if tar.exists() {
        return tar;
    }
    let sources = [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("the host has apt sources");
    let part = dir.join("debian12-apply.tar.part");
    let (ok, log) = sh(Command::new("mmdebstrap")
        .args([
            "--variant=apt",
            "--mode=root",
            "--format=tar",
            "--include=systemd,systemd-sysv,openssh-server,procps,kmod,iproute2,curl,ca-certificates",
            "bookworm",
        ])
        .arg(&part)
        .arg(sources));
    assert!(ok, "mmdebstrap failed:\n{log}");
    std::fs::rename(&part, &tar).expect("rename rootfs");
    tar
}

fn apply(root: &Path, node: &str) -> (bool, String) {
    // A private mount namespace: the binds vanish with the process, nothing leaks to the host.
    let script = r#"set -e
r=$1; node=$2
for d in proc sys dev; do mount --bind /$d "$r/$d"; done
cp -L /etc/resolv.conf "$r/etc/resolv.conf"
EZIMG_LIVE=0 chroot "$r" /opt/ezimg/bundle/apply --node "$node" --artifacts /opt/ezimg/artifacts
"#;
    sh(Command::new("unshare")
        .args(["--mount", "--fork", "bash", "-c", script, "apply"])
        .arg(root)
        .arg(node))
}

#[test]
fn slb_bundle_applies_in_a_debian12_chroot_and_is_idempotent() {
    if !support::is_root() {
        support::skip_or_fail("apply_chroot", "needs root (chroot, mount namespaces)");
        return;
    }
    if support::host_tool("mmdebstrap").is_none() {
        return;
    }
    let tar = rootfs_tar();
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).expect("mkdir root");
    let (ok, log) = sh(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&root));
    assert!(ok, "{log}");

    // keepalived from the real build stage when the upstream sources are here (its 2.2.7
    // tarball is byte-identical to the pinned release), else Debian's package.
    let mirror = work.path().join("mirror");
    let stage = match support::upstream_fixtures() {
        Some(up) => {
            std::fs::create_dir_all(&mirror).expect("mkdir mirror");
            std::fs::copy(
                up.join("keepalived_2.2.7.orig.tar.gz"),
                mirror.join("keepalived-2.2.7.tar.gz"),
            )
            .expect("copy fixture");
            eprintln!("apply_chroot: keepalived from the build stage");
            true
        }
        None => {
            eprintln!("apply_chroot: keepalived from Debian's package (no upstream fixtures)");
            false
        }
    };
    let cluster = support::with_role_params(
        &support::with_os(&support::default_cluster(), "debian12"),
        "slb",
        &format!(
            "nginx_source = \"distro\"\nkeepalived_source = \"{}\"",
            if stage { "stage" } else { "distro" }
        ),
    );
    let cfile = work.path().join("cluster.toml");
    std::fs::write(&cfile, cluster).expect("write cluster");
    let out = work.path().join("out");
    let mut build = Command::cargo_bin("ezimg").expect("binary");
    build
        .env(
            "EZIMG_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("stage-cache"),
        )
        .arg("-c")
        .arg(&cfile)
        .args(["build", "--role", "slb", "--format", "bundle", "--out"])
        .arg(&out);
    if stage {
        build.arg("--fetch").arg("--mirror").arg(&mirror);
    }
    let o = build.output().expect("ezimg build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bdir = root.join("opt/ezimg/bundle");
    std::fs::create_dir_all(&bdir).expect("mkdir");
    let (ok, log) = sh(Command::new("tar")
        .arg("-xzf")
        .arg(out.join("slb/ezimg-slb-bundle.tar.gz"))
        .arg("-C")
        .arg(&bdir));
    assert!(ok, "{log}");
    let arts = root.join("opt/ezimg/artifacts");
    std::fs::create_dir_all(&arts).expect("mkdir");
    if stage {
        for e in std::fs::read_dir(out.join("slb/artifacts")).expect("artifacts folder") {
            let p = e.expect("entry").path();
            std::fs::copy(&p, arts.join(p.file_name().expect("name"))).expect("copy artifact");
        }
    }
    let secrets = root.join("etc/ezimg/secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(secrets.join("vrrp_auth_pass"), "t3st&pw\n").expect("write secret");

    // An unknown node is refused before anything changes.
    let (ok, log) = apply(&root, "nope");
    assert!(!ok && log.contains("not in this bundle"), "{log}");

    let (ok, first) = apply(&root, "slb-01");
    assert!(ok, "first apply failed:\n{first}");
    let changes = |log: &str| -> usize {
        log.lines()
            .find_map(|l| l.strip_prefix("ezimg apply: "))
            .and_then(|l| l.strip_suffix(" changes"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no change count in:\n{log}"))
    };
    assert!(changes(&first) > 0, "{first}");
    let (ok, second) = apply(&root, "slb-01");
    assert!(ok, "second apply failed:\n{second}");
    assert_eq!(
        changes(&second),
        0,
        "second apply changed things:\n{second}"
    );

    // What the seed asks for is there.
    let sysctl = std::fs::read_to_string(root.join("etc/sysctl.d/user.conf")).expect("sysctl file");
    assert!(sysctl.contains("net.ipv4.ip_forward = 1"), "{sysctl}");
    for d in ["service", "package", "backup", "shell"] {
        assert!(root.join("ezops").join(d).is_dir(), "/ezops/{d} missing");
    }
    let kconf = find_file(&root, "keepalived.conf").expect("keepalived.conf installed");
    let text = std::fs::read_to_string(&kconf).expect("read keepalived.conf");
    assert!(text.contains("t3st&pw"), "secret not filled in:\n{text}");
    assert!(!text.contains("@@EZIMG_SECRET"), "{text}");
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    assert!(
        // The link is absolute inside the root: check the link itself, not its host target.
        std::fs::symlink_metadata(wants.join("keepalived.service")).is_ok(),
        "keepalived not enabled:\n{first}"
    );

    if stage {
        // The stage-built keepalived runs on the node with the libraries the layer installed.
        let (ok, v) = sh(Command::new("chroot")
            .arg(&root)
            .args(["/ezops/service/keepalived/sbin/keepalived", "--version"]));
        assert!(ok && v.contains("Keepalived v2.2.7"), "{v}");
    }

    // A damaged bundle is refused.
    std::fs::write(bdir.join("lib/ezimg.sh"), "# tampered\n").expect("tamper");
    let (ok, log) = apply(&root, "slb-01");
    assert!(!ok && log.contains("MANIFEST"), "{log}");
}

fn find_file(root: &Path, name: &str) -> Option<PathBuf> {
    for base in ["ezops/service/keepalived/etc/keepalived", "etc/keepalived"] {
        let p = root.join(base).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    None
}
