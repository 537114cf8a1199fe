//! The disks layer's script (`layers/disks/ezimg-disks`, the file `apply` installs and runs) on
//! real block devices: loop devices over sparse files, a temporary root for fstab and the mount
//! points, and every mount in a private mount namespace (`unshare -m`), so nothing outlives a run
//! and the host's mounts are never touched. Needs root and loop devices; skips with the reason
//! otherwise. Loop devices are detached whatever happens (Drop).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{host_tool, root};

fn script() -> PathBuf {
    root().join("layers/disks/ezimg-disks")
}

/// Whether this machine can run the test; if not, it has said why (a missing tool fails under CI).
fn can_run() -> bool {
    const TEST: &str = "disks";
    if !support::is_root() {
        return !support::skip(TEST, "not root: losetup, mkfs and mount need it");
    }
    if !Path::new("/dev/loop-control").exists() {
        return !support::skip(
            TEST,
            "no /dev/loop-control: this machine has no loop devices",
        );
    }
    [
        "losetup",
        "blkid",
        "lsblk",
        "mkfs.xfs",
        "mkfs.ext4",
        "unshare",
        "mount",
        "findmnt",
    ]
    .iter()
    .all(|tool| host_tool(tool).is_some())
}

/// A loop device over a sparse file, detached on drop.
struct Loop {
    dev: String,
    _file: tempfile::NamedTempFile,
}

impl Loop {
    fn new(size_mib: u64) -> Option<Loop> {
        let file = tempfile::NamedTempFile::new().expect("backing file");
        file.as_file()
            .set_len(size_mib << 20)
            .expect("sparse backing file");
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file.path())
            .output()
            .expect("run losetup");
        if !out.status.success() {
            support::skip(
                "disks",
                &format!(
                    "losetup cannot attach a loop device here: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
            return None;
        }
        Some(Loop {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            _file: file,
        })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// Run `body` (bash) in a private mount namespace; `ez` runs the script, `$R` is the root.
fn in_ns(root: &Path, body: &str) -> Output {
    Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "bash",
            "-euo",
            "pipefail",
            "-c",
        ])
        .arg(format!("ez() {{ bash \"$S\" \"$@\"; }}\n{body}"))
        .env("S", script())
        .env("R", root)
        .output()
        .expect("run unshare")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `blkid -p` of a device: (exit code, KEY=value output).
fn probe(dev: &str) -> (i32, String) {
    let o = Command::new("blkid")
        .args(["-p", "-o", "export", dev])
        .output()
        .expect("run blkid");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn has(probe: &(i32, String), line: &str) -> bool {
    probe.1.lines().any(|l| l == line)
}

fn fstab(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/fstab")).unwrap_or_default()
}

#[test]
fn script_is_shellcheck_clean_and_bash_n() {
    let o = Command::new("bash")
        .arg("-n")
        .arg(script())
        .output()
        .expect("bash");
    assert!(o.status.success(), "{}", text(&o).1);
    let Some(sc) = host_tool("shellcheck") else {
        return;
    };
    let o = Command::new(sc).arg(script()).output().expect("shellcheck");
    assert!(o.status.success(), "{}", text(&o).0);
}

/// One test, in order: the labels must be unique on the machine, so scenarios that label disks
/// must not overlap in time.
#[test]
fn blank_disks_are_formatted_once_and_never_again_foreign_ones_never() {
    if !can_run() {
        return;
    }

    // --- live: blank data (xfs), blank etcd (ext4), blank keep disk --------------------------
    {
        let (Some(data), Some(etcd), Some(keep)) = (Loop::new(512), Loop::new(512), Loop::new(64))
        else {
            return;
        };
        let r = tempfile::tempdir().expect("root");
        std::fs::create_dir_all(r.path().join("etc")).expect("etc");
        std::fs::write(r.path().join("etc/fstab"), "UUID=1234 / xfs defaults 0 0\n")
            .expect("fstab");
        // What an image's first boot leaves before the live apply: containerd ran once.
        let early = r
            .path()
            .join("var/lib/containerd/io.containerd.metadata.v1.bolt");
        std::fs::create_dir_all(&early).expect("containerd state");
        std::fs::write(early.join("meta.db"), "state").expect("meta.db");
        let specs = format!("data:{} etcd:{}:ext4 keep:{}", data.dev, etcd.dev, keep.dev);
        let o = in_ns(
            r.path(),
            &format!(
                "ez --root \"$R\" --live {specs}\n\
                 echo kept >\"$R/data/file\"\n\
                 echo k >\"$R/var/lib/kubelet/written-through-the-bind\"\n\
                 echo c >\"$R/var/lib/containerd/c\"\n\
                 # A second run in the same namespace changes nothing.\n\
                 ez --root \"$R\" --live {specs} >\"$R/second.out\"\n\
                 stat -c %a \"$R/var/lib/etcd\" >\"$R/etcd.mode\"\n\
                 ls -A \"$R/var/lib/etcd\" >\"$R/etcd.ls\""
            ),
        );
        let (out, err) = text(&o);
        assert!(o.status.success(), "first live run:\n{out}\n{err}");
        assert!(
            out.contains(&format!(
                "CHANGED formatted {} (xfs, label EZ-DATA)",
                data.dev
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "CHANGED formatted {} (ext4, label EZ-ETCD)",
                etcd.dev
            )),
            "{out}"
        );
        let second = std::fs::read_to_string(r.path().join("second.out")).expect("second.out");
        assert!(
            !second.contains("CHANGED"),
            "a second run in place changed something:\n{second}"
        );
        // etcd: 0700 and empty (kubeadm's preflight; ext4's lost+found removed).
        assert_eq!(
            std::fs::read_to_string(r.path().join("etcd.mode"))
                .expect("etcd.mode")
                .trim(),
            "700"
        );
        assert_eq!(
            std::fs::read_to_string(r.path().join("etcd.ls"))
                .expect("etcd.ls")
                .trim(),
            ""
        );

        let d = probe(&data.dev);
        assert!(has(&d, "LABEL=EZ-DATA") && has(&d, "TYPE=xfs"), "{d:?}");
        let e = probe(&etcd.dev);
        assert!(has(&e, "LABEL=EZ-ETCD") && has(&e, "TYPE=ext4"), "{e:?}");
        assert_eq!(probe(&keep.dev).0, 2, "the keep disk was touched");

        let tab = fstab(r.path());
        assert!(tab.starts_with("UUID=1234 / xfs defaults 0 0\n"), "{tab}");
        for line in [
            "LABEL=EZ-DATA /data xfs defaults 0 0",
            "/data/kubelet /var/lib/kubelet none bind 0 0",
            "/data/containerd /var/lib/containerd none bind 0 0",
            "LABEL=EZ-ETCD /var/lib/etcd ext4 defaults 0 0",
        ] {
            assert!(
                tab.lines().any(|l| l == line),
                "fstab lacks {line:?}:\n{tab}"
            );
        }
        // /data before its bind mounts: `mount -a` mounts in file order.
        assert!(
            tab.find("LABEL=EZ-DATA") < tab.find("/data/kubelet"),
            "{tab}"
        );
        // Nothing was mounted outside the namespace.
        assert!(
            !std::fs::read_to_string("/proc/self/mountinfo")
                .expect("mountinfo")
                .contains(&r.path().display().to_string()),
            "a mount leaked out of the namespace"
        );
        assert!(
            !r.path().join("data/file").exists(),
            "the file went to the root filesystem, not the disk"
        );
        assert!(
            out.contains("CHANGED moved the contents of") && !early.exists(),
            "containerd's early state left on the root filesystem:\n{out}"
        );

        // --- run again (a re-apply, a reinstall): the data is still there --------------------
        let o = in_ns(
            r.path(),
            &format!(
                "ez --root \"$R\" --live {specs}\n\
                 cat \"$R/data/file\" \"$R/var/lib/kubelet/written-through-the-bind\" \"$R/data/containerd/c\" \\
\
                   \"$R/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db\"; echo"
            ),
        );
        let (out, err) = text(&o);
        assert!(o.status.success(), "second live run:\n{out}\n{err}");
        assert!(!out.contains("formatted"), "formatted again:\n{out}");
        assert!(
            out.ends_with("kept\nk\nc\nstate\n"),
            "data lost:\n{out}\n{err}"
        );
        assert_eq!(fstab(r.path()), tab, "fstab rewritten");
        assert_eq!(probe(&keep.dev).0, 2, "the keep disk was touched");
    }

    // --- foreign filesystems: never touched, the run stops naming the device -----------------
    {
        let (Some(foreign), Some(blank), Some(ours)) =
            (Loop::new(64), Loop::new(512), Loop::new(512))
        else {
            return;
        };
        let mk = Command::new("mkfs.ext4")
            .args(["-q", "-L", "PHOTOS", &foreign.dev])
            .status()
            .expect("mkfs.ext4");
        assert!(mk.success());
        let r = tempfile::tempdir().expect("root");
        let o = in_ns(
            r.path(),
            &format!(
                "m=$(mktemp -d); mount {dev} \"$m\"; echo precious >\"$m/photo\"; umount \"$m\"\n\
                 ez --root \"$R\" --live etcd:{blank} data:{dev}",
                dev = foreign.dev,
                blank = blank.dev
            ),
        );
        let (out, err) = text(&o);
        assert!(
            !o.status.success(),
            "a foreign disk was accepted:\n{out}\n{err}"
        );
        assert!(
            err.contains(&format!("{} (data disk) is not blank", foreign.dev))
                && err.contains("ext4")
                && err.contains("wipefs"),
            "{err}"
        );
        assert!(!out.contains("CHANGED"), "{out}");
        let f = probe(&foreign.dev);
        assert!(has(&f, "LABEL=PHOTOS") && has(&f, "TYPE=ext4"), "{f:?}");
        assert_eq!(
            probe(&blank.dev).0,
            2,
            "the blank disk was formatted before the foreign one stopped the run"
        );
        assert!(!r.path().join("etc/fstab").exists(), "fstab written");
        let o = in_ns(
            r.path(),
            &format!(
                "m=$(mktemp -d); mount -o ro {} \"$m\"; cat \"$m/photo\"",
                foreign.dev
            ),
        );
        assert_eq!(text(&o).0, "precious\n", "{}", text(&o).1);

        // A disk carrying the other purpose's ezimg label (device names swapped) is refused.
        let mk = Command::new("mkfs.xfs")
            .args(["-q", "-L", "EZ-ETCD", &ours.dev])
            .status()
            .expect("mkfs.xfs");
        assert!(mk.success());
        let o = in_ns(
            r.path(),
            &format!("ez --root \"$R\" --live data:{}", ours.dev),
        );
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{out}\n{err}");
        assert!(
            err.contains(&format!(
                "{} is configured as the data disk but carries EZ-ETCD",
                ours.dev
            )),
            "{err}"
        );
        let p = probe(&ours.dev);
        assert!(has(&p, "LABEL=EZ-ETCD"), "{p:?}");

        // The same disk twice (as data and as keep) is refused before anything happens.
        let o = in_ns(
            r.path(),
            &format!("ez --root \"$R\" data:{b} keep:{b}", b = blank.dev),
        );
        assert!(!o.status.success());
        assert!(text(&o).1.contains("is the same disk as"), "{}", text(&o).1);
        assert_eq!(probe(&blank.dev).0, 2);
    }

    // --- not live (kickstart %post): formatted, laid out, fstab written, nothing left mounted --
    {
        let Some(data) = Loop::new(512) else {
            return;
        };
        let r = tempfile::tempdir().expect("root");
        let o = in_ns(
            r.path(),
            &format!(
                "ez --root \"$R\" data:{d}\n\
                 ! findmnt -S {d} >&2\n\
                 m=$(mktemp -d); mount {d} \"$m\"; ls \"$m\" >\"$R/on-disk\"; umount \"$m\"\n\
                 ez --root \"$R\" data:{d} >\"$R/second.out\"",
                d = data.dev
            ),
        );
        let (out, err) = text(&o);
        assert!(o.status.success(), "not-live run:\n{out}\n{err}");
        assert!(out.contains("CHANGED formatted"), "{out}");
        let read = |f: &str| std::fs::read_to_string(r.path().join(f)).expect(f);
        assert_eq!(
            read("on-disk"),
            "containerd\nkubelet\n",
            "data disk laid out"
        );
        assert!(
            !read("second.out").contains("CHANGED"),
            "a second not-live run changed something: {}",
            read("second.out")
        );
        for mp in ["data", "var/lib/kubelet", "var/lib/containerd"] {
            assert!(r.path().join(mp).is_dir(), "mount point {mp} missing");
        }
        assert!(fstab(r.path()).contains("LABEL=EZ-DATA /data xfs defaults 0 0"));
    }
}
