//! A small QEMU runner shared by the image bake, `tests/vm_*.rs` and `vm-tests/`.
//!
//! - Accelerator: one setting, `EZIMG_VM_ACCEL=tcg|kvm|auto` (default tcg); `auto` takes KVM when
//!   `/dev/kvm` works *and* a probe guest reaches its first instruction within a few seconds.
//! - Disks are virtio; the serial console goes to a file (`serial.log`) for diagnosis only.
//! - The guest reports through a virtio-serial port named `ezimg.0` (in the guest:
//!   `/dev/virtio-ports/ezimg.0`), backed by a host Unix socket the runner connects to: results
//!   are read from there, never guessed from a console or a timeout (as cloud-hypervisor's
//!   tests report "booted" to a host listener).
//! - Networking is either none (`-nic none`) or QEMU socket netdevs on a multicast group bound
//!   to 127.0.0.1: guests only see each other, never the host's network. No bridge or tap on the host's network.
//!   The one exception is [`VmSpec::uplink`], a user-mode (slirp) NIC that only the
//!   connected-machine run of the VM tests sets (`EZIMG_REAL_K8S=1`: guests pull the real
//!   Kubernetes images); the bake and the default tests never do. Tests that need a host-side
//!   server on the guests' wire (PXE, the site registry) put QEMU in a private network namespace
//!   with a tap there ([`VmSpec::pxe_tap`], [`VmSpec::taps`]): still no route out.
//! - The QEMU process is killed when the [`Vm`] is dropped.

pub mod tool;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::process;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// Name of the guest's marker port (`/dev/virtio-ports/ezimg.0`).
pub const MARKER_PORT: &str = "ezimg.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn args(self, cpus: u32) -> Vec<String> {
        match self {
            // The host CPU minus the MSR this machine's KVM refuses.
            Accel::Kvm => vec![
                "-accel".into(),
                "kvm".into(),
                "-cpu".into(),
                "host,-arch-capabilities".into(),
            ],
            Accel::Tcg => {
                let mut v = vec!["-accel".into()];
                v.push(if cpus > 1 {
                    "tcg,thread=multi".into()
                } else {
                    "tcg".into()
                });
                v.extend(["-cpu".into(), "max".into()]);
                v
            }
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// A 512-byte boot sector: print "EZ" on COM1, then halt. Proves that a KVM guest executes.
fn probe_boot_sector() -> Vec<u8> {
    let mut s = vec![
        0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xb0, b'E', 0xee, // mov al, 'E'; out dx, al
        0xb0, b'Z', 0xee, // mov al, 'Z'; out dx, al
        0xb0, b'\n', 0xee, // mov al, '\n'; out dx, al
        0xfa, 0xf4, // cli; hlt
        0xeb, 0xfd, // jmp $-3
    ];
    s.resize(510, 0);
    s.extend([0x55, 0xaa]);
    s
}

/// Does a KVM guest run here? Boots the probe sector with a short timeout.
fn probe_kvm() -> Result<()> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .context("opening /dev/kvm")?;
    let dir = tempfile::tempdir().context("creating a probe directory")?;
    let disk = dir.path().join("probe.img");
    std::fs::write(&disk, probe_boot_sector()).context("writing the probe disk")?;
    let log = dir.path().join("serial.log");
    let mut child = Command::new(QEMU)
        .args(Accel::Kvm.args(1))
        .args([
            "-machine",
            "pc",
            "-m",
            "32",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-nic", "none", "-no-reboot"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", disk.display()))
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the KVM probe")?;
    let deadline = Instant::now() + Duration::from_secs(8);
    let ok = loop {
        if std::fs::read(&log).is_ok_and(|b| b.windows(2).any(|w| w == b"EZ")) {
            break true;
        }
        if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let out = child.wait_with_output();
    if ok {
        return Ok(());
    }
    let err = out
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    anyhow::bail!(
        "the KVM probe guest did not run within 8 s: {}",
        process::tail_lines(&err, 5)
    )
}

/// The one accelerator setting, `EZIMG_VM_ACCEL`: `tcg` (the default), `kvm` (forced) or
/// `auto` (KVM if a probe guest runs, else TCG).
///
/// TCG is the default because on this project's build machine KVM guests hang while booting
/// Linux (an MSR error with `-cpu host`, a silent hang without), which the probe cannot see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelSetting {
    Tcg,
    Kvm,
    Auto,
}

impl std::str::FromStr for AccelSetting {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcg" => Ok(AccelSetting::Tcg),
            "kvm" => Ok(AccelSetting::Kvm),
            "auto" => Ok(AccelSetting::Auto),
            _ => anyhow::bail!("EZIMG_VM_ACCEL={s:?}: expected tcg, kvm or auto"),
        }
    }
}

impl AccelSetting {
    /// Read `EZIMG_VM_ACCEL` (unset or empty: `tcg`). Every guest, the bake's and the VM
    /// tests', goes through [`Vm::start`], so this is the one place it is read.
    pub fn from_env() -> Result<AccelSetting> {
        if std::env::var_os("EZIMG_VM_KVM").is_some() {
            anyhow::bail!(
                "EZIMG_VM_KVM is no longer read: set EZIMG_VM_ACCEL=auto (KVM if a probe guest \
                 runs, else TCG) or EZIMG_VM_ACCEL=kvm"
            );
        }
        match std::env::var("EZIMG_VM_ACCEL") {
            Err(std::env::VarError::NotPresent) => Ok(AccelSetting::Tcg),
            Err(std::env::VarError::NotUnicode(v)) => {
                anyhow::bail!("EZIMG_VM_ACCEL={v:?}: expected tcg, kvm or auto")
            }
            Ok(v) if v.is_empty() => Ok(AccelSetting::Tcg),
            Ok(v) => v.parse(),
        }
    }
}

/// The accelerator to use, from [`AccelSetting::from_env`], decided (and probed) once.
pub fn accel() -> Result<Accel> {
    static ACCEL: OnceLock<Result<Accel, String>> = OnceLock::new();
    ACCEL
        .get_or_init(|| {
            Ok(
                match AccelSetting::from_env().map_err(|e| format!("{e:#}"))? {
                    AccelSetting::Tcg => Accel::Tcg,
                    AccelSetting::Kvm => Accel::Kvm,
                    AccelSetting::Auto => match probe_kvm() {
                        Ok(()) => Accel::Kvm,
                        Err(e) => {
                            eprintln!("ezimg: KVM unusable ({e:#}); using TCG (slow)");
                            Accel::Tcg
                        }
                    },
                },
            )
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// One virtio disk.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    /// `qcow2` or `raw`.
    pub format: String,
    pub readonly: bool,
    /// Shows in the guest as `/dev/disk/by-id/virtio-<serial>`.
    pub serial: Option<String>,
}

impl Disk {
    pub fn qcow2(path: impl Into<PathBuf>) -> Disk {
        Disk {
            path: path.into(),
            format: "qcow2".into(),
            readonly: false,
            serial: None,
        }
    }
    /// A writable raw disk (the guest writes an archive onto it, no filesystem).
    pub fn raw_rw(path: impl Into<PathBuf>, serial: &str) -> Disk {
        Disk {
            path: path.into(),
            format: "raw".into(),
            readonly: false,
            serial: Some(serial.into()),
        }
    }
    pub fn raw_ro(path: impl Into<PathBuf>, serial: &str) -> Disk {
        Disk {
            path: path.into(),
            format: "raw".into(),
            readonly: true,
            serial: Some(serial.into()),
        }
    }
}

/// A NIC on a loopback multicast "wire": every guest with the same group and port sees the
/// others, nothing else.
#[derive(Debug, Clone)]
pub struct McastNic {
    /// e.g. `230.0.0.1`
    pub group: String,
    pub port: u16,
    pub mac: String,
}

#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: String,
    pub mem_mib: u32,
    pub cpus: u32,
    pub disks: Vec<Disk>,
    /// Empty: no network at all (`-nic none`).
    pub nics: Vec<McastNic>,
    /// Where `serial.log` and the marker socket go.
    pub dir: PathBuf,
    /// Let a guest reboot (QEMU resets it); by default a reboot ends QEMU like a power-off.
    pub allow_reboot: bool,
    /// Boot this kernel and initrd with this command line instead of the disk's bootloader.
    pub direct_kernel: Option<DirectKernel>,
    /// An ISO in an IDE CD-ROM drive, booted first (BIOS El Torito): an installer ISO.
    pub cdrom: Option<PathBuf>,
    /// A user-mode NIC with this MAC: NAT to the host's own network. Only for test runs on a
    /// connected machine that need the internet (see the module docs).
    pub uplink: Option<String>,
    /// A NIC on a tap device the caller made, booted first through its iPXE ROM (PXE).
    pub pxe_tap: Option<TapNic>,
    /// NICs on tap devices the caller made (in [`VmSpec::netns`]), not boot devices: a guest
    /// that boots its disk and talks to servers in that namespace.
    pub taps: Vec<TapNic>,
    /// Run QEMU inside this network namespace (`ip netns exec`), where its tap is.
    pub netns: Option<String>,
}

/// A virtio NIC on an existing tap device. As [`VmSpec::pxe_tap`], the guest's first boot device: its option ROM
/// (QEMU's own, ipxe-qemu's iPXE) asks DHCP where to boot from. QEMU's default ROM on purpose:
/// the same file named by `romfile=<absolute path>` was never run by SeaBIOS (QEMU 7.2).
#[derive(Debug, Clone)]
pub struct TapNic {
    pub ifname: String,
    pub mac: String,
}

/// `-kernel`, `-initrd`, `-append`.
#[derive(Debug, Clone)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

impl VmSpec {
    pub fn new(name: &str, dir: &Path) -> VmSpec {
        VmSpec {
            name: name.into(),
            mem_mib: 1536,
            cpus: 2,
            disks: Vec::new(),
            nics: Vec::new(),
            dir: dir.to_path_buf(),
            allow_reboot: false,
            direct_kernel: None,
            cdrom: None,
            uplink: None,
            pxe_tap: None,
            taps: Vec::new(),
            netns: None,
        }
    }
}

/// A running guest. Dropping it kills QEMU.
pub struct Vm {
    pub name: String,
    pub accel: Accel,
    child: Child,
    serial_log: PathBuf,
    qemu_err: PathBuf,
    lines: Receiver<String>,
    writer: UnixStream,
    _sock_dir: tempfile::TempDir,
    started: Instant,
}

impl Vm {
    /// Start QEMU for `spec` and connect to the guest's marker port.
    pub fn start(spec: &VmSpec) -> Result<Vm> {
        process::require(&[QEMU], "running a VM")?;
        std::fs::create_dir_all(&spec.dir)
            .with_context(|| format!("creating {}", spec.dir.display()))?;
        // Unix socket paths are limited to 108 bytes: keep the socket in a short temp dir.
        let sock_dir = tempfile::Builder::new()
            .prefix("ezvm")
            .tempdir()
            .context("creating the marker socket directory")?;
        let sock = sock_dir.path().join("m.sock");
        let serial_log = spec.dir.join("serial.log");
        let accel = accel()?;
        let mut cmd = match &spec.netns {
            // `ip netns exec` execs QEMU in place: the child is QEMU itself.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, QEMU]);
                c
            }
            None => Command::new(QEMU),
        };
        cmd.args(["-name", &spec.name])
            .args(["-machine", "pc"])
            .args(accel.args(spec.cpus))
            .args(["-m", &spec.mem_mib.to_string()])
            .args(["-smp", &spec.cpus.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-device", "virtio-rng-pci"])
            .arg("-chardev")
            .arg(format!("file,id=con0,path={}", serial_log.display()))
            .args(["-serial", "chardev:con0"])
            .args(["-device", "virtio-serial-pci,id=vser0"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=ez0,path={},server=on,wait=off",
                sock.display()
            ))
            .arg("-device")
            .arg(format!(
                "virtserialport,bus=vser0.0,chardev=ez0,name={MARKER_PORT}"
            ));
        if !spec.allow_reboot {
            cmd.arg("-no-reboot");
        }
        if let Some(k) = &spec.direct_kernel {
            cmd.arg("-kernel")
                .arg(&k.kernel)
                .arg("-initrd")
                .arg(&k.initrd)
                .args(["-append", &k.cmdline]);
        }
        if let Some(iso) = &spec.cdrom {
            cmd.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=cd0,media=cdrom,readonly=on",
                    iso.display()
                ))
                .args(["-device", "ide-cd,drive=cd0,bootindex=0"]);
        }
        for (i, d) in spec.disks.iter().enumerate() {
            let mut v = format!(
                "file={},format={},if=none,id=d{i},cache=unsafe",
                d.path.display(),
                d.format
            );
            if d.readonly {
                v.push_str(",readonly=on");
            } else {
                v.push_str(",discard=unmap");
            }
            cmd.arg("-drive").arg(v);
            let mut dev = format!("virtio-blk-pci,drive=d{i}");
            // With -kernel, QEMU's linuxboot ROM holds boot index 0.
            if i == 0
                && spec.direct_kernel.is_none()
                && spec.cdrom.is_none()
                && spec.pxe_tap.is_none()
            {
                dev.push_str(",bootindex=0");
            }
            if let Some(s) = &d.serial {
                dev.push_str(&format!(",serial={s}"));
            }
            cmd.arg("-device").arg(dev);
        }
        if let Some(t) = &spec.pxe_tap {
            cmd.arg("-netdev").arg(format!(
                "tap,id=pxe0,ifname={},script=no,downscript=no",
                t.ifname
            ));
            cmd.arg("-device").arg(format!(
                "virtio-net-pci,netdev=pxe0,mac={},bootindex=0",
                t.mac
            ));
            // SeaBIOS mirrors the BIOS text console (its own and iPXE's messages) to the
            // serial port (0x3f8, a little-endian integer), so a failed network boot shows why
            // in serial.log.
            let port = spec.dir.join("sercon-port");
            std::fs::write(&port, 0x3f8u16.to_le_bytes())
                .with_context(|| format!("writing {}", port.display()))?;
            cmd.arg("-fw_cfg")
                .arg(format!("name=etc/sercon-port,file={}", port.display()));
            // SeaBIOS's debug log (which option ROMs ran, the boot order) beside serial.log.
            cmd.arg("-chardev")
                .arg(format!(
                    "file,id=biosdbg,path={}",
                    spec.dir.join("bios.log").display()
                ))
                .args(["-device", "isa-debugcon,iobase=0x402,chardev=biosdbg"]);
        }
        for (i, t) in spec.taps.iter().enumerate() {
            cmd.arg("-netdev").arg(format!(
                "tap,id=tap{i},ifname={},script=no,downscript=no",
                t.ifname
            ));
            cmd.arg("-device")
                .arg(format!("virtio-net-pci,netdev=tap{i},mac={}", t.mac));
        }
        if spec.nics.is_empty()
            && spec.uplink.is_none()
            && spec.pxe_tap.is_none()
            && spec.taps.is_empty()
        {
            cmd.args(["-nic", "none"]);
        }
        if let Some(mac) = &spec.uplink {
            cmd.args(["-netdev", "user,id=uplink"]);
            cmd.arg("-device")
                .arg(format!("virtio-net-pci,netdev=uplink,mac={mac}"));
        }
        for (i, n) in spec.nics.iter().enumerate() {
            if !n.group.starts_with("230.") && !n.group.starts_with("239.") {
                anyhow::bail!("multicast group {} is not a local-scope group", n.group);
            }
            cmd.arg("-netdev").arg(format!(
                "socket,id=n{i},mcast={}:{},localaddr=127.0.0.1",
                n.group, n.port
            ));
            cmd.arg("-device")
                .arg(format!("virtio-net-pci,netdev=n{i},mac={}", n.mac));
        }
        let qemu_err = spec.dir.join("qemu.stderr");
        let err_file = std::fs::File::create(&qemu_err)
            .with_context(|| format!("creating {}", qemu_err.display()))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .spawn()
            .with_context(|| format!("starting {QEMU} for {}", spec.name))?;
        // QEMU creates the socket while starting up.
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(e) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        anyhow::bail!(
                            "{QEMU} for {} exited at once ({st}):\n{}",
                            spec.name,
                            process::tail_lines(
                                &std::fs::read_to_string(&qemu_err).unwrap_or_default(),
                                20
                            )
                        );
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(e).with_context(|| {
                            format!("connecting to the marker socket {}", sock.display())
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let writer = stream.try_clone().context("cloning the marker socket")?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Vm {
            name: spec.name.clone(),
            accel,
            child,
            serial_log,
            qemu_err,
            lines: rx,
            writer,
            _sock_dir: sock_dir,
            started: Instant::now(),
        })
    }

    /// Send one line to the guest's port (an agent reading `/dev/virtio-ports/ezimg.0`).
    pub fn send(&mut self, line: &str) -> Result<()> {
        use std::io::Write;
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.writer.flush())
            .with_context(|| format!("{}: writing to the guest's port", self.name))
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The last `n` lines of the serial console.
    pub fn serial_tail(&self, n: usize) -> String {
        let text = std::fs::read(&self.serial_log).unwrap_or_default();
        process::tail_lines(&String::from_utf8_lossy(&text), n)
    }

    pub fn serial_log(&self) -> &Path {
        &self.serial_log
    }

    /// The next line the guest writes to its marker port, within `timeout`. Fails (with the
    /// console's tail) if QEMU exits or the time runs out first.
    pub fn next_line(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                anyhow::bail!(
                    "{}: no word from the guest within {}s ({}); console tail:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.accel,
                    self.serial_tail(25)
                );
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(l) => return Ok(l),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // Lines written just before exiting may still be queued.
                if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
                    return Ok(l);
                }
                anyhow::bail!(
                    "{}: QEMU exited ({st}) before the guest reported; QEMU said:\n{}\nconsole tail:\n{}",
                    self.name,
                    process::tail_lines(
                        &std::fs::read_to_string(&self.qemu_err).unwrap_or_default(),
                        10
                    ),
                    self.serial_tail(25)
                );
            }
        }
    }

    /// Wait for the first marker line for which `pick` returns true (other lines are skipped).
    pub fn wait_for(&mut self, timeout: Duration, pick: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.next_line(left.max(Duration::from_millis(1)))?;
            if pick(&l) {
                return Ok(l);
            }
        }
    }

    /// Lines already queued or arriving within `quiet` of each other.
    pub fn drain(&mut self, quiet: Duration) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(quiet) {
            v.push(l);
        }
        v
    }

    /// Wait for QEMU to exit (the guest powered off); kill it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().context("waiting for QEMU")? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                anyhow::bail!(
                    "{}: the guest did not power off within {}s; console tail:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.serial_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A qcow2 overlay on `base` (left untouched), at least `min_size` bytes.
pub fn overlay(base: &Path, dst: &Path, min_size: Option<u64>) -> Result<()> {
    let base_abs =
        std::fs::canonicalize(base).with_context(|| format!("resolving {}", base.display()))?;
    let mut cmd = Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&base_abs)
        .arg(dst);
    if let Some(sz) = min_size {
        let vs = tool::virtual_size(&base_abs)?;
        cmd.arg(vs.max(sz).to_string());
    }
    process::run(&mut cmd, "creating a disk overlay (qemu-img create)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_setting_parses_one_variable() {
        assert_eq!(
            "auto".parse::<AccelSetting>().ok(),
            Some(AccelSetting::Auto)
        );
        assert_eq!("kvm".parse::<AccelSetting>().ok(), Some(AccelSetting::Kvm));
        assert_eq!("tcg".parse::<AccelSetting>().ok(), Some(AccelSetting::Tcg));
        let e = "KVM".parse::<AccelSetting>().expect_err("case matters");
        assert!(format!("{e}").contains("EZIMG_VM_ACCEL"), "{e}");
    }

    #[test]
    fn probe_sector_is_a_boot_sector() {
        let s = probe_boot_sector();
        assert_eq!(s.len(), 512);
        assert_eq!(&s[510..], &[0x55, 0xaa]);
    }
}
