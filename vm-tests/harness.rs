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
//! Included by `tests/vm_scenarios.rs` with `#[path]`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use ezimg::vm::{Disk, McastNic, Vm, VmSpec};

/// The agent, started by vendor-data's bootcmd on every boot. `--no-block` matters: bootcmd
/// runs inside cloud-init.service, which sysinit.target waits for, and a transient unit is
/// ordered after sysinit.target, so waiting for it to start would deadlock the boot.
pub const VENDOR_DATA: &str = r#"#cloud-config
bootcmd:
  - |
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

/// Where a node's seed files are in an `ezimg build` output: `<out>/<role>/<node>/seed/`.
/// VM tests run only with EZIMG_VM_TESTS=1 and as root; otherwise say why and skip.
pub fn gate(test: &str, what: &str) -> bool {
    if std::env::var("EZIMG_VM_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIP {test}: set EZIMG_VM_TESTS=1 to {what} (root, minutes)");
        return false;
    }
    if !ezimg::vm::tool::is_root() {
        eprintln!("SKIP {test}: needs root (mmdebstrap, loop devices, QEMU)");
        return false;
    }
    true
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
        files.push(("vendor-data", VENDOR_DATA.as_bytes().to_vec()));
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
        let seed_img = dir.join("seed.img");
        ezimg::output::seed_fat::write(&refs, &seed_img)?;
        let mut spec = VmSpec::new(node, &dir);
        spec.mem_mib = 1536;
        spec.disks = vec![Disk::qcow2(&disk), Disk::raw_ro(&seed_img, "cidata")];
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

/// The data tree the VM tests use.
///
/// By default: a copy of the repository's layers, roles and kickstart templates in which the
/// slb role keeps only its tuning layers (swap, /ezops, sshd, limits, sysctl). A bake of it
/// takes about 2 minutes under TCG instead of 20+ (no package installs), and it avoids layers
/// that cannot work in an offline guest. `EZIMG_VM_FULL_ROLES=1` uses the embedded roles as
/// they are (`None`).
pub fn test_data_dir(work: &Path) -> Option<PathBuf> {
    if std::env::var("EZIMG_VM_FULL_ROLES").as_deref() == Ok("1") {
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dst = work.join("data");
    for d in ["layers", "roles", "kickstart", "stages"] {
        if src.join(d).is_dir() {
            copy_dir(&src.join(d), &dst.join(d));
        }
    }
    let slb = dst.join("roles/slb.toml");
    let text = std::fs::read_to_string(&slb).expect("roles/slb.toml");
    let start = text
        .find("layers = [")
        .expect("a layers list in roles/slb.toml");
    let end = start + text[start..].find(']').expect("end of the layers list") + 1;
    let tuned = "layers = [\"firewalld-off\", \"selinux-off\", \"swap-off\", \"ezops-dirs\", \
                 \"sshd-usedns\", \"limits\", \"kernel-ml\", \"sysctl\"]";
    std::fs::write(&slb, format!("{}{tuned}{}", &text[..start], &text[end..]))
        .expect("write roles/slb.toml");
    Some(dst)
}

fn copy_dir(src: &Path, dst: &Path) {
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
