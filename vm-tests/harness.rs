//! vm-tests harness: boot guests from baked role images with their own ezimg seeds, on a private
//! virtual wire, and talk to each through a small agent on its virtio-serial port.
//!
//! - The wire: QEMU socket netdevs on one multicast group bound to 127.0.0.1 (a per-test port),
//!   so guests see each other and nothing else; the cluster's 192.168.2.x addresses exist only
//!   inside the guests. No slirp, bridge or tap.
//! - The seed: the node's own `user-data`, `meta-data` and `network-config` from
//!   `ezimg build --node N --format cloud-init`, plus a NoCloud `vendor-data` that starts the
//!   agent from `bootcmd` (user-data keeps `runcmd` and `write_files`; vendor-data adds what
//!   user-data does not set).
//! - The agent waits for `cloud-init status --wait` (the node's bootstrap has run), reports
//!   `READY <status>`, then answers `RUN <id> <base64 command>` with
//!   `RES <id> <exit code> <base64 output>`.
//!
//! Included by `tests/vm_*.rs` with `#[path]`, next to `mod support;` (tests/support).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use ezimg::vm::{Disk, McastNic, TapNic, Vm, VmSpec};

/// The agent, started by vendor-data's bootcmd on every boot. `--no-block` matters: bootcmd
/// runs inside cloud-init.service, which sysinit.target waits for, and a transient unit is
/// ordered after sysinit.target, so waiting for it to start would deadlock the boot.
pub const AGENT_BOOTCMD: &str = r#"  - |
    cat >/run/ezimg-agent.sh <<'AGENT'
    #!/bin/bash
    exec 3<>/dev/virtio-ports/ezimg.0
    cloud-init status --wait >/dev/null 2>&1
    echo "READY $(cloud-init status 2>/dev/null | tr -d ' ')" >&3
    while read -r kind id b64 <&3; do
        [ "$kind" = RUN ] || continue
        out=$(printf '%s' "$b64" | base64 -d | bash 2>&1)
        rc=$?
        printf 'RES %s %s %s\n' "$id" "$rc" "$(printf '%s' "$out" | base64 -w0)" >&3
    done
    AGENT
    systemd-run --no-block --unit=ezimg-agent --collect bash /run/ezimg-agent.sh
"#;

/// A stand-in for kube-apiserver on a master: a TCP listener on 6443 that answers every
/// connection with `<hostname> <peer address>` (the peer is the slb that proxied it) and closes.
pub const API_STANDIN_BOOTCMD: &str = r#"  - |
    cat >/run/api-standin.py <<'PY'
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 6443))
    s.listen(64)
    while True:
        c, peer = s.accept()
        c.sendall(("%s %s\n" % (socket.gethostname(), peer[0])).encode())
        c.close()
    PY
    systemd-run --no-block --unit=api-standin --collect python3 /run/api-standin.py
"#;

/// `EZIMG_REAL_K8S=1` only (a connected machine): bring up the user-mode uplink NIC (QEMU's
/// fixed 10.0.2.0/24, gateway .2, DNS .3) and route the internet through it, so containerd can
/// pull the real images. The node's own NIC keeps the cluster network; its default route (a
/// gateway that exists only on a real site) is replaced. bootcmd runs on every boot.
pub const UPLINK_BOOTCMD: &str = r#"  - |
    for d in /sys/class/net/*; do
        [ "$(cat "$d/address")" = "@UPLINK_MAC@" ] || continue
        n=${d##*/}
        ip link set "$n" up
        ip addr replace 10.0.2.15/24 dev "$n"
        ip route replace default via 10.0.2.2 dev "$n"
        echo 'nameserver 10.0.2.3' >/etc/resolv.conf
    done
"#;

/// The NoCloud vendor-data of a test guest: the agent, plus `extra` bootcmd entries.
pub fn vendor_data(extra: &[&str]) -> String {
    let mut v = String::from("#cloud-config\nbootcmd:\n");
    v.push_str(AGENT_BOOTCMD);
    for e in extra {
        v.push_str(e);
    }
    v
}

/// How to boot one guest.
#[derive(Debug, Clone)]
pub struct BootOpts {
    pub mem_mib: u32,
    pub cpus: u32,
    /// Extra vendor-data bootcmd entries (e.g. [`API_STANDIN_BOOTCMD`]).
    pub bootcmd: Vec<&'static str>,
    /// A user-mode uplink to the host's network ([`UPLINK_BOOTCMD`]): only with
    /// `EZIMG_REAL_K8S=1` on a connected machine.
    pub uplink: bool,
    /// A blank 1 GiB disk with this serial (`/dev/disk/by-id/virtio-<serial>` in the guest),
    /// kept across reboots of the guest.
    pub data_disk: Option<&'static str>,
    /// The node's NIC on a tap in a private network namespace (QEMU runs there) instead of the
    /// wire: for host-side servers on the node's network (`vm_ops`' ops node, worker and PXE guest).
    pub tap: Option<NetnsTap>,
    /// A read-only raw disk (e.g. an ISO of files the operator copies in) and its serial.
    pub media: Option<(PathBuf, &'static str)>,
}

/// A tap device the test made in its network namespace, and the MAC the node's seed expects.
#[derive(Debug, Clone)]
pub struct NetnsTap {
    pub netns: String,
    pub ifname: String,
    pub mac: String,
}

impl Default for BootOpts {
    fn default() -> BootOpts {
        BootOpts {
            mem_mib: 1536,
            cpus: 2,
            bootcmd: Vec::new(),
            uplink: false,
            data_disk: None,
            tap: None,
            media: None,
        }
    }
}

/// A private wire: a multicast group on loopback, port chosen per test run.
#[derive(Debug, Clone)]
pub struct Wire {
    pub group: String,
    pub port: u16,
}

impl Wire {
    /// A wire with a free-looking port derived from the process id (tests in parallel differ).
    pub fn new() -> Wire {
        Wire {
            group: "230.0.0.1".into(),
            port: 20000 + (std::process::id() % 20000) as u16,
        }
    }
}

/// One booted node.
pub struct Guest {
    pub name: String,
    pub vm: Vm,
    next_id: u64,
}

/// VM tests are `#[cfg_attr(not(ezimg_vm_tests), ignore = "...")]`: without `EZIMG_VM_TESTS=1`
/// when they are built (build.rs makes it the cfg) `cargo test` lists them as ignored. Past that,
/// a VM test runs or fails, never passes without running: it fails when forced (`--ignored`)
/// without `EZIMG_VM_TESTS=1`, and when not root.
pub fn gate(test: &str, what: &str) {
    assert!(
        std::env::var("EZIMG_VM_TESTS").as_deref() == Ok("1"),
        "{test}: set EZIMG_VM_TESTS=1 to {what} (root, minutes); without it this test is ignored"
    );
    assert!(
        crate::support::is_root(),
        "{test}: EZIMG_VM_TESTS=1 asks to {what}, which needs root (mmdebstrap, loop devices, \
         QEMU): run as root, or set EZIMG_VM_TESTS=0 to leave the VM tests out"
    );
}

/// The ezimg cache the VM tests share (bases and bakes are big: reuse them across runs).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("EZIMG_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ezimg-vm-cache"))
}

/// `ezimg [--data D] -c CLUSTER build ARGS --out OUT` on the shared cache: (ok, output, seconds).
pub fn ezimg_build(
    data: Option<&Path>,
    cluster: &Path,
    out: &Path,
    args: &[&str],
) -> (bool, String, f64) {
    use assert_cmd::cargo::CommandCargoExt;
    let t = std::time::Instant::now();
    let mut cmd = std::process::Command::cargo_bin("ezimg").expect("binary");
    if let Some(d) = data {
        cmd.arg("--data").arg(d);
    }
    let o = cmd
        .arg("-c")
        .arg(cluster)
        .arg("build")
        .args(args)
        .arg("--out")
        .arg(out)
        .env("EZIMG_CACHE_DIR", cache_dir())
        .output()
        .expect("ezimg build");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        t.elapsed().as_secs_f64(),
    )
}

pub fn seed_dir(out: &Path, role: &str, node: &str) -> PathBuf {
    out.join(role).join(node).join("seed")
}

impl Guest {
    /// Boot `image` (through an overlay in `work`) as `node` with its seed from `seed`, on
    /// `wire` with `mac` (or no network).
    pub fn boot(
        work: &Path,
        node: &str,
        image: &Path,
        seed: &Path,
        wire: Option<(&Wire, &str)>,
    ) -> Result<Guest> {
        Guest::boot_with(work, node, image, seed, wire, &BootOpts::default())
    }

    /// [`Guest::boot`] with memory, CPUs and extra bootcmd entries; the guest may reboot.
    pub fn boot_with(
        work: &Path,
        node: &str,
        image: &Path,
        seed: &Path,
        wire: Option<(&Wire, &str)>,
        opts: &BootOpts,
    ) -> Result<Guest> {
        let dir = work.join(node);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let disk = dir.join("disk.qcow2");
        ezimg::vm::overlay(image, &disk, None)?;
        let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
        for name in ["user-data", "meta-data", "network-config"] {
            let p = seed.join(name);
            if p.exists() {
                files.push((
                    name,
                    std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                ));
            }
        }
        let mut bootcmd: Vec<&str> = opts.bootcmd.clone();
        // The uplink's MAC: the wire's with 03 for 02 in the fifth byte.
        let uplink = match wire {
            Some((_, mac)) if opts.uplink => Some(mac.replacen(":02:", ":03:", 1)),
            _ => None,
        };
        let uplink_cmd = uplink
            .as_ref()
            .map(|m| UPLINK_BOOTCMD.replace("@UPLINK_MAC@", m));
        if let Some(c) = &uplink_cmd {
            bootcmd.push(c.as_str());
        }
        files.push(("vendor-data", vendor_data(&bootcmd).into_bytes()));
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
        let seed_img = dir.join("seed.img");
        ezimg::output::seed_fat::write(&refs, &seed_img)?;
        let mut spec = VmSpec::new(node, &dir);
        spec.mem_mib = opts.mem_mib;
        spec.cpus = opts.cpus;
        spec.allow_reboot = true;
        spec.disks = vec![Disk::qcow2(&disk), Disk::raw_ro(&seed_img, "cidata")];
        spec.uplink = uplink;
        if let Some(serial) = opts.data_disk {
            let p = dir.join(format!("{serial}.qcow2"));
            let o = std::process::Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&p)
                .arg("1G")
                .output()
                .context("running qemu-img create")?;
            anyhow::ensure!(
                o.status.success(),
                "qemu-img create {}: {}",
                p.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            spec.disks.push(Disk {
                serial: Some(serial.into()),
                ..Disk::qcow2(&p)
            });
        }
        if let Some((p, serial)) = &opts.media {
            spec.disks.push(Disk::raw_ro(p, serial));
        }
        if let Some(t) = &opts.tap {
            spec.netns = Some(t.netns.clone());
            spec.taps.push(TapNic {
                ifname: t.ifname.clone(),
                mac: t.mac.clone(),
            });
        }
        if let Some((w, mac)) = wire {
            spec.nics.push(McastNic {
                group: w.group.clone(),
                port: w.port,
                mac: mac.into(),
            });
        }
        Ok(Guest {
            name: node.into(),
            vm: Vm::start(&spec)?,
            next_id: 1,
        })
    }

    /// Wait until cloud-init is done (the node's bootstrap ran); returns its status.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<String> {
        let l = self
            .vm
            .wait_for(timeout, |l| l.starts_with("READY"))
            .with_context(|| format!("{}: waiting for the agent", self.name))?;
        Ok(l.trim_start_matches("READY").trim().to_string())
    }

    /// Run `cmd` with bash in the guest: (exit code, output).
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String)> {
        let id = self.next_id;
        self.next_id += 1;
        let b64 = base64::engine::general_purpose::STANDARD.encode(cmd);
        self.vm.send(&format!("RUN {id} {b64}"))?;
        let prefix = format!("RES {id} ");
        let l = self
            .vm
            .wait_for(timeout, |l| l.starts_with(&prefix))
            .with_context(|| format!("{}: running {cmd:?}", self.name))?;
        let rest = &l[prefix.len()..];
        let (rc, out) = rest.split_once(' ').unwrap_or((rest, ""));
        let rc: i32 = rc
            .parse()
            .with_context(|| format!("{}: bad agent reply {l:?}", self.name))?;
        let out = base64::engine::general_purpose::STANDARD
            .decode(out.trim())
            .with_context(|| format!("{}: bad agent output {l:?}", self.name))?;
        Ok((rc, String::from_utf8_lossy(&out).into_owned()))
    }

    /// Run `cmd` and return its output, failing on a non-zero exit.
    pub fn check(&mut self, cmd: &str) -> Result<String> {
        let (rc, out) = self.run(cmd, Duration::from_secs(300))?;
        if rc != 0 {
            anyhow::bail!("{}: `{cmd}` exited {rc}:\n{out}", self.name);
        }
        Ok(out)
    }
}

/// The nodes booted: (hostname, role, last octet of its address).
/// Not ops: its layers are the worker's without Kubernetes, and a seventh TCG guest on two
/// cores costs minutes of CI for nothing the others do not show.
pub const NODES: [(&str, &str, u8); 6] = [
    ("slb-01", "slb", 211),
    ("slb-02", "slb", 212),
    ("master-01", "master", 221),
    ("master-02", "master", 222),
    ("master-03", "master", 223),
    ("worker-01", "worker", 231),
];
/// The operator's SSH key of a test cluster: (private key file, public key line), made once in
/// `dir` with ssh-keygen (ed25519, no passphrase).
pub fn ssh_key(dir: &Path) -> (PathBuf, String) {
    let private = dir.join("ssh").join("id_ed25519");
    if !private.exists() {
        std::fs::create_dir_all(private.parent().expect("parent")).expect("mkdir ssh");
        let o = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ezimg-vm-test", "-f"])
            .arg(&private)
            .output()
            .expect("ssh-keygen (openssh-client)");
        assert!(
            o.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let public = std::fs::read_to_string(private.with_extension("pub")).expect("public key");
    (private, public.trim().to_string())
}

/// The node booted with a blank etcd disk (seed 002's layout), and the disk's serial.
pub const ETCD_DISK: (&str, &str) = ("master-02", "etcd1");

/// MAC of a node on the test wire: its seed matches the NIC by it and names it `ens33`.
pub fn mac_of(ip_last: u8) -> String {
    format!("52:54:00:00:02:{ip_last:02x}")
}

/// The ops node of the test cluster (booted by `vm_ops` only): the site's registry and install
/// server (ezimg serve with dnsmasq as the only DHCP server of the test's wire).
pub const OPS: (&str, &str, u8) = ("ops", "ops", 201);

/// The ezimg the ops node runs, beside the cluster file: this build's binary without its debug
/// sections (230 MB -> ~40 MB in the image; `strip` gives the same bytes for the same input,
/// so the ops bake key is stable across test binaries and runs).
pub const OPS_BINARY: &str = "ezimg-ops";

fn strip_ezimg(to: &Path) {
    let bin = assert_cmd::cargo::cargo_bin("ezimg");
    let o = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(&bin)
        .output()
        .expect("strip (binutils)");
    assert!(
        o.status.success(),
        "strip {}: {}",
        bin.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The seed's cluster on debian12 with the booted nodes and the ops node (each with a MAC),
/// nginx from the distribution, keepalived from its stage when `keepalived_stage`, containerd
/// from the distribution (nerdctl-full cannot be fetched here); the ops node runs the registry
/// and the install server ([`OPS`]).
pub fn cluster(dir: &Path, keepalived_stage: bool) -> PathBuf {
    let d = ezimg::cluster::DEFAULT_TOML;
    let head = &d[..d
        .find("# Nodes:")
        .expect("a nodes section in the default cluster")];
    let mut text = head.replace("os = \"el7\"", "os = \"debian12\"");
    let key = ssh_key(dir);
    let keys = "ssh_authorized_keys = []";
    assert!(
        text.contains(keys),
        "the default cluster's [access] keys line"
    );
    text = text.replace(keys, &format!("ssh_authorized_keys = [\"{}\"]", key.1));
    for (host, role, last) in std::iter::once(OPS).chain(NODES) {
        text.push_str(&format!(
            "[[node]]\nhostname = \"{host}\"\nrole = \"{role}\"\nip = \"192.168.2.{last}\"\nmac = \"{}\"\n\n",
            mac_of(last)
        ));
        if host == ETCD_DISK.0 {
            text.push_str(&format!(
                "[[node.disk]]\ndevice = \"/dev/disk/by-id/virtio-{}\"\npurpose = \"etcd\"\n\n",
                ETCD_DISK.1
            ));
        }
    }
    text.push_str(&format!(
        "[roles.slb]\nnginx_source = \"distro\"\nkeepalived_source = \"{}\"\n\n",
        if keepalived_stage { "stage" } else { "distro" }
    ));
    for role in ["ops", "master", "worker"] {
        text.push_str(&format!("[roles.{role}]\ncontainerd_source = \"distro\"\n"));
        if role == "ops" {
            text.push_str(&format!(
                "registry = \"distribution\"\ninstall_server = true\n\
                 install_server_binary = \"{OPS_BINARY}\"\ninstall_server_dhcp = \"full\"\n"
            ));
        }
        text.push('\n');
    }
    strip_ezimg(&dir.join(OPS_BINARY));
    let f = dir.join("cluster.toml");
    std::fs::write(&f, text).expect("write cluster");
    f
}

/// The cluster file and the extra `ezimg build` arguments the VM tests share (so that
/// `vm_bake`'s slb image is a cache hit for `vm_scenarios`): keepalived from the real build
/// stage when its upstream source is here (`--fetch --mirror`), else Debian's package.
pub fn scenario_inputs(work: &Path) -> (PathBuf, Vec<String>) {
    let fixtures = crate::support::upstream_fixtures();
    let mirror = work.join("mirror");
    std::fs::create_dir_all(&mirror).expect("mkdir mirror");
    if let Some(up) = &fixtures {
        std::fs::copy(
            up.join("keepalived_2.2.7.orig.tar.gz"),
            mirror.join("keepalived-2.2.7.tar.gz"),
        )
        .expect("copy fixture");
    }
    let mut args: Vec<String> = vec![
        "--fetch".into(),
        "--mirror".into(),
        mirror.to_string_lossy().into_owned(),
    ];
    if let Some(m) = std::env::var_os("EZIMG_K8S_MIRROR") {
        args.extend(["--mirror".into(), m.to_string_lossy().into_owned()]);
    }
    eprintln!(
        "vm tests: keepalived from {}; nginx from Debian's package (the nginx 1.23.0 stage's \
         sources and modules cannot be fetched here); Kubernetes binaries: {}",
        if fixtures.is_some() {
            "the keepalived 2.2.7 build stage"
        } else {
            "Debian's package (no upstream fixtures: set EZIMG_FIXTURES)"
        },
        if real_k8s() {
            "the real pinned ones (EZIMG_REAL_K8S=1)"
        } else {
            "STAND-INS from vm-tests/standin (the real ones cannot be downloaded here; \
             EZIMG_REAL_K8S=1 uses them)"
        }
    );
    (cluster(work, fixtures.is_some()), args)
}

/// The data tree the VM tests use: a copy of the repository's layers, roles, kickstart
/// templates and stages, with one change:
/// - its `artifacts.lock` pins the Kubernetes binaries, crictl, the CNI plugins and Calico's
///   operator manifest as the STAND-INS of `vm-tests/standin` (they cannot be downloaded
///   here), whose files [`scenario_inputs`] puts in the mirror. `EZIMG_REAL_K8S=1` keeps the
///   real pins: the real files must then be in the cache or in `$EZIMG_K8S_MIRROR`.
pub fn test_data_dir(work: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dst = work.join("data");
    for d in ["layers", "roles", "kickstart", "stages"] {
        if src.join(d).is_dir() {
            copy_dir(&src.join(d), &dst.join(d));
        }
    }
    // The roles are the repository's, `base-packages` (the seed's ~150-package toolbox)
    // included: the bake installs packages at native speed now. For quick iterations only,
    // `EZIMG_VM_CUT_ROLES=1` leaves that layer out (and the images differ from the product's).
    if std::env::var("EZIMG_VM_CUT_ROLES").as_deref() == Ok("1") {
        eprintln!("vm tests: EZIMG_VM_CUT_ROLES=1: the roles leave out base-packages");
        for e in std::fs::read_dir(dst.join("roles")).expect("roles") {
            let p = e.expect("entry").path();
            let text = std::fs::read_to_string(&p).expect("role file");
            let cut = text.replace("    \"base-packages\",\n", "");
            assert_ne!(
                cut,
                text,
                "{}: no base-packages line to leave out",
                p.display()
            );
            std::fs::write(&p, cut).expect("write role file");
        }
    }
    let lock = std::fs::read_to_string(src.join("artifacts.lock")).expect("artifacts.lock");
    let lock = if real_k8s() {
        lock
    } else {
        standin_lock(&lock, &standin_artifacts(&work.join("mirror")))
    };
    std::fs::write(dst.join("artifacts.lock"), lock).expect("write lock");
    dst
}

/// `EZIMG_REAL_K8S=1`: the real kubeadm, kubelet, kubectl and images instead of the stand-ins.
pub fn real_k8s() -> bool {
    std::env::var("EZIMG_REAL_K8S").as_deref() == Ok("1")
}

/// The stand-in artifacts, written to `mirror` by `vm-tests/standin/make-artifacts.sh`:
/// (name, file, sha256) for each lock name it stands in for.
pub fn standin_artifacts(mirror: &Path) -> Vec<(String, String, String)> {
    std::fs::create_dir_all(mirror).expect("mkdir mirror");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-tests/standin/make-artifacts.sh");
    let o = std::process::Command::new("bash")
        .arg(&script)
        .arg(mirror)
        .output()
        .expect("make-artifacts.sh");
    assert!(
        o.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.into(), w.next()?.into(), w.next()?.into()))
        })
        .collect()
}

/// `lock` with the pins of `standins` replaced: same names (the layers are unchanged), the
/// stand-in's file and sha256, found only through `--mirror`, version marked STANDIN.
pub fn standin_lock(lock: &str, standins: &[(String, String, String)]) -> String {
    let mut doc: toml_edit::DocumentMut = lock.parse().expect("artifacts.lock parses");
    let arts = doc["artifact"]
        .as_array_of_tables_mut()
        .expect("[[artifact]] tables");
    for (name, file, sha) in standins {
        let t = arts
            .iter_mut()
            .find(|t| t.get("name").and_then(|v| v.as_str()) == Some(name.as_str()))
            .unwrap_or_else(|| panic!("artifacts.lock has no {name} to stand in for"));
        let version = format!(
            "{}-STANDIN",
            t.get("version").and_then(|v| v.as_str()).unwrap_or("")
        );
        t.insert("version", toml_edit::value(version));
        t.insert("file", toml_edit::value(file.as_str()));
        t.insert("sha256", toml_edit::value(sha.as_str()));
        t.insert("mirror_path", toml_edit::value(file.as_str()));
        t.remove("urls");
        t.remove("verified");
        t.remove("size");
    }
    format!("# VM tests: Kubernetes pins replaced by the STAND-INS of vm-tests/standin.\n{doc}")
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

/// The newest complete debian12 base in the cache: (image, kernel, initrd, root uuid).
pub fn cached_base(cache: &Path) -> Option<(PathBuf, PathBuf, PathBuf, String)> {
    let dir = cache.join("base");
    let mut found = Vec::new();
    for e in std::fs::read_dir(&dir).ok()? {
        let p = e.ok()?.path();
        let name = p.file_name()?.to_str()?.to_string();
        let Some(stem) = name
            .strip_suffix(".json")
            .filter(|s| s.starts_with("debian12-"))
        else {
            continue;
        };
        let files = ["qcow2", "vmlinuz", "initrd"].map(|x| dir.join(format!("{stem}.{x}")));
        if !files.iter().all(|f| f.is_file()) {
            continue;
        }
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
        let uuid = m.get("root_uuid")?.as_str()?.to_string();
        let when = std::fs::metadata(&p).ok()?.modified().ok()?;
        let [image, kernel, initrd] = files;
        found.push((when, (image, kernel, initrd, uuid)));
    }
    found.sort_by_key(|(w, _)| *w);
    found.pop().map(|(_, b)| b)
}

/// The cached debian12 base (built into `cache` first if it holds none): (image, kernel,
/// initrd, root uuid). Tests boot its kernel and initrd into an overlay of its root.
pub fn debian12_base(cache: &Path) -> (PathBuf, PathBuf, PathBuf, String) {
    use assert_cmd::cargo::CommandCargoExt;
    if cached_base(cache).is_none() {
        let o = std::process::Command::cargo_bin("ezimg")
            .expect("binary")
            .args(["base", "build", "--os", "debian12"])
            .env("EZIMG_CACHE_DIR", cache)
            .output()
            .expect("ezimg base build");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    cached_base(cache).expect("a debian12 base in the cache")
}
