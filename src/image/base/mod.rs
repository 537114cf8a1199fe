//! `ezimg base build --os debian12`: a bootable Debian 12 cloud base image made here, from the
//! host's own apt sources (the one OS whose packages this workplace reaches).
//!
//! Steps: mmdebstrap a root (kernel, systemd, cloud-init, openssh-server, GRUB for BIOS,
//! ifupdown for cloud-init's ENI renderer, cloud-guest-utils so the root grows to the disk on
//! first boot); fixed config files (fstab by UUID, GRUB on the serial console, cloud-init
//! datasources, no machine identity); GRUB installed from the root onto a first disk (a loop
//! device in a private mount namespace, detached by a guard on every path), its files copied
//! back into the tree; then the shipped disk written afresh from the tree by
//! [`crate::image::rootdisk`] (clamped times, fixed UUID and hash seed, GRUB's boot area put
//! back), so two builds from the same archive state are the same bytes; `qemu-img convert -O
//! qcow2 -c`; sha256 and a JSON manifest of the packages.
//!
//! Cached under `<cache>/base/` ([`crate::keyed_cache`]) by a key over every input: the recipe
//! (`RECIPE`, the `root/` files), the package list, the host's apt sources and the archive state
//! the host last saw (its `InRelease` files), so an `apt-get update` that brings new packages
//! makes a new base instead of a stale hit.
//!
//! A role's bake asks for a base with the role's packages too (`extra`, `--with`): mmdebstrap
//! installs them here at native speed, so the bake VM (TCG, where dpkg takes most of an hour)
//! finds them installed and runs only the layers. Same packages, same dpkg, same maintainer
//! scripts (daemons kept from starting, as in the bake); only where dpkg runs changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{recipe, rootdisk};
use crate::digest::{sha256_file, sha256_hex};
use crate::vm::tool;
use crate::{keyed_cache, process};

/// Bump when the recipe changes in a way the inputs below do not show.
const RECIPE: &str = "debian12-base-v3";

/// Virtual size of the base disk; the root partition fills it and grows with the disk.
pub const DISK_SIZE: u64 = 4 << 30;

const PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "dbus",
    "grub-pc",
    "cloud-init",
    "cloud-guest-utils",
    "openssh-server",
    "ifupdown",
    "isc-dhcp-client",
    "e2fsprogs",
    "iproute2",
    "procps",
    "kmod",
    "netbase",
    "sudo",
    "locales",
    "curl",
    "ca-certificates",
    // initramfs-tools compresses with zstd when it is there (INITRAMFS_FILES).
    "zstd",
];

/// The OSes a base can be built for here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BaseOs {
    Debian12,
}

impl BaseOs {
    pub fn name(self) -> &'static str {
        match self {
            BaseOs::Debian12 => "debian12",
        }
    }
}

/// What `base build` records next to the image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseManifest {
    pub os: String,
    pub key: String,
    pub recipe: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub virtual_size: u64,
    pub kernel: String,
    pub root_uuid: String,
    pub sources: String,
    /// Packages asked for beyond the base's own list (a role's), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_packages: Vec<String>,
    pub packages: BTreeMap<String, String>,
}

/// A base image in the cache.
#[derive(Debug, Clone)]
pub struct Base {
    pub image: PathBuf,
    pub manifest_path: PathBuf,
    /// Its kernel and initrd (the bake boots them directly, with `systemd.run=`).
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub manifest: BaseManifest,
    pub cached: bool,
    pub seconds: f64,
}

/// `<cache root>/base`.
pub fn base_dir(cache_root: &Path) -> PathBuf {
    crate::cachedir::base(cache_root)
}

pub fn cache_root(explicit: Option<&Path>) -> Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => crate::stage::default_cache_root(),
    }
}

/// The host's apt sources file mmdebstrap is given.
pub fn host_sources() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut v: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sources"))
            .collect();
        v.sort();
        found.extend(v);
    }
    let list = Path::new("/etc/apt/sources.list");
    if list.exists()
        && std::fs::read_to_string(list)
            .is_ok_and(|t| t.lines().any(|l| l.trim_start().starts_with("deb ")))
    {
        found.push(list.to_path_buf());
    }
    found.into_iter().next().context(
        "no apt sources on this host (/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list)",
    )
}

/// The cache key: recipe, OS, packages, sources text, config files and archive state.
fn cache_key(os: BaseOs, extra: &[String], sources: &Path) -> Result<(String, String)> {
    let src_text = std::fs::read_to_string(sources)
        .with_context(|| format!("reading {}", sources.display()))?;
    let mut k = String::new();
    k.push_str(RECIPE);
    k.push('\0');
    k.push_str(os.name());
    k.push('\0');
    k.push_str(&PACKAGES.join(","));
    k.push('\0');
    // The plain base keeps the key it always had.
    if !extra.is_empty() {
        k.push_str(&extra.join(","));
        k.push('\0');
    }
    k.push_str(&src_text);
    k.push('\0');
    for (p, c) in config_files("UUID", "KERNEL")? {
        k.push_str(&format!("{p}\0{}\0", sha256_hex(c.as_bytes())));
    }
    for (p, c) in INITRAMFS_FILES {
        k.push_str(&format!("{p}\0{}\0", sha256_hex(c.as_bytes())));
    }
    let mut releases: Vec<PathBuf> = std::fs::read_dir("/var/lib/apt/lists")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with("InRelease"))
                .collect()
        })
        .unwrap_or_default();
    releases.sort();
    for r in releases {
        if let Ok(b) = std::fs::read(&r) {
            k.push_str(&format!("{}\0{}\0", r.display(), sha256_hex(&b)));
        }
    }
    Ok((sha256_hex(k.as_bytes()), src_text))
}

/// The bake entry point in the base (relative to the root), run by `systemd.run=`.
pub const BAKE_BOOT: &str = "usr/lib/ezimg/bake-boot";

/// Boot the base's kernel straight into its bake entry point (`systemd.run=`): no bootloader,
/// no cloud-init; the script on the `ezbake` disk runs and powers off. Used by the bake and the
/// VM stage builder.
pub fn bake_boot(kernel: &Path, initrd: &Path, root_uuid: &str) -> crate::vm::DirectKernel {
    crate::vm::DirectKernel {
        kernel: kernel.to_path_buf(),
        initrd: initrd.to_path_buf(),
        cmdline: format!(
            "root=UUID={root_uuid} rw console=ttyS0,115200n8 systemd.run=/{BAKE_BOOT} \
             systemd.run_failure_action=poweroff-force"
        ),
    }
}

/// A filesystem UUID derived from the key: the same inputs give the same image layout.
fn uuid_from(key: &str) -> String {
    format!(
        "{}-{}-4{}-a{}-{}",
        &key[0..8],
        &key[8..12],
        &key[13..16],
        &key[17..20],
        &key[20..32]
    )
}

/// The kernel command line of the base (GRUB's, and so every boot's).
const CMDLINE: &str = "console=tty0 console=ttyS0,115200n8";

/// Files written into the root after mmdebstrap (templates in `root/`, beside this file).
const CONFIG_FILES: &[(&str, &str)] = &[
    ("etc/fstab", include_str!("root/etc/fstab")),
    ("etc/hostname", include_str!("root/etc/hostname")),
    ("etc/hosts", include_str!("root/etc/hosts")),
    (
        "etc/network/interfaces",
        include_str!("root/etc/network/interfaces"),
    ),
    (
        "etc/cloud/cloud.cfg.d/01-ezimg.cfg",
        include_str!("root/etc/cloud/cloud.cfg.d/01-ezimg.cfg"),
    ),
    (BAKE_BOOT, include_str!("root/usr/lib/ezimg/bake-boot")),
    ("etc/default/grub", include_str!("root/etc/default/grub")),
    (
        "boot/grub/grub.cfg",
        include_str!("root/boot/grub/grub.cfg"),
    ),
];

/// Files put into the root before any package is installed (mmdebstrap setup hooks), so the
/// initrd the kernel package makes is already the small one: no second mkinitramfs run. Not
/// conffiles of any package (initramfs-tools reads `conf.d/*` and `modules.d/*`).
const INITRAMFS_FILES: &[(&str, &str)] = &[
    (
        "etc/initramfs-tools/conf.d/ezimg",
        include_str!("root/etc/initramfs-tools/conf.d/ezimg"),
    ),
    (
        "usr/share/initramfs-tools/modules.d/ezimg",
        include_str!("root/usr/share/initramfs-tools/modules.d/ezimg"),
    ),
];

/// mmdebstrap `--setup-hook`s writing [`INITRAMFS_FILES`] into the new root (`$1`).
fn initramfs_hooks() -> Vec<String> {
    INITRAMFS_FILES
        .iter()
        .map(|(p, c)| {
            // The contents go inside single quotes: the files have none (unit test).
            let dir = Path::new(p).parent().map(|d| d.display().to_string());
            format!(
                "--setup-hook=mkdir -p \"$1/{}\" && printf '%s' '{c}' > \"$1/{p}\"",
                dir.unwrap_or_default()
            )
        })
        .collect()
}

/// [`CONFIG_FILES`] with `UUID` and `KERNEL` filled in.
fn config_files(uuid: &str, kernel: &str) -> Result<Vec<(&'static str, String)>> {
    let vars = [
        ("UUID", uuid),
        ("KERNEL", kernel),
        ("CMDLINE", CMDLINE),
        ("BAKE_BOOT", BAKE_BOOT),
    ];
    CONFIG_FILES
        .iter()
        .map(|(p, t)| Ok((*p, recipe::fill(p, t, &vars)?)))
        .collect()
}

fn paths(dir: &Path, os: BaseOs, key: &str) -> (PathBuf, PathBuf, PathBuf) {
    let stem = format!("{}-{}", os.name(), &key[..16]);
    (
        dir.join(format!("{stem}.qcow2")),
        dir.join(format!("{stem}.json")),
        dir.join(format!("{stem}.dpkg-status")),
    )
}

/// The base's kernel and initrd, kept beside it so the bake can boot them directly.
fn boot_paths(image: &Path) -> (PathBuf, PathBuf) {
    (
        image.with_extension("vmlinuz"),
        image.with_extension("initrd"),
    )
}

/// Find the base for `os` in the cache, or build it; `extra` packages are installed in it too
/// (with what they depend on, without recommends).
pub fn ensure(os: BaseOs, extra: &[String], cache_root: &Path, rebuild: bool) -> Result<Base> {
    let t0 = Instant::now();
    let sources = host_sources()?;
    let extra = normalize_extra(extra)?;
    let (key, src_text) = cache_key(os, &extra, &sources)?;
    let dir = base_dir(cache_root);
    let (image, manifest_path, status) = paths(&dir, os, &key);
    let (kernel, initrd) = boot_paths(&image);
    let name = format!("{}-{}", os.name(), &key[..16.min(key.len())]);
    let slot = keyed_cache::Slot {
        dir: &dir,
        name: &name,
        what: &format!("building the same {} base", os.name()),
        rebuild,
        quiet: false,
        work: keyed_cache::Work::Fresh,
    };
    let lookup = || -> Result<Option<BaseManifest>> {
        // Every file of the entry, or it is built again.
        if [&image, &manifest_path, &status, &kernel, &initrd]
            .iter()
            .any(|p| !p.exists())
        {
            return Ok(None);
        }
        Ok(keyed_cache::read_manifest(&manifest_path))
    };
    let got = keyed_cache::get_or_build(&slot, lookup, |w| {
        if !process::is_root() {
            anyhow::bail!(
                "building the {} base needs root (mmdebstrap --mode=root, a loop device for GRUB)",
                os.name()
            );
        }
        process::require(
            &[
                "mmdebstrap",
                "mkfs.ext4",
                "dumpe2fs",
                "debugfs",
                "sfdisk",
                "losetup",
                "partx",
                "unshare",
                "qemu-img",
                "dpkg-query",
            ],
            "building a base image",
        )?;
        let mut m = build_in(os, &key, &extra, &src_text, &sources, w)?;
        m.file = image
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(keyed_cache::Built {
            files: vec![
                (w.join("base.qcow2"), image.clone()),
                (w.join("dpkg-status"), status.clone()),
                (w.join("vmlinuz"), kernel.clone()),
                (w.join("initrd"), initrd.clone()),
            ],
            manifest: manifest_path.clone(),
            manifest_bytes: serde_json::to_vec_pretty(&m).context("serializing the manifest")?,
            value: m,
        })
    })?;
    Ok(Base {
        image,
        manifest_path,
        kernel,
        initrd,
        manifest: got.value,
        cached: got.cached,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Sorted, deduplicated, without the base's own packages; a name apt could not take is an
/// error naming it (it would otherwise reach mmdebstrap's command line as an option).
fn normalize_extra(extra: &[String]) -> Result<Vec<String>> {
    let mut v: Vec<String> = Vec::new();
    for p in extra {
        let ok = !p.is_empty()
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !ok {
            anyhow::bail!("{p:?} is not a Debian package name");
        }
        if !PACKAGES.contains(&p.as_str()) {
            v.push(p.clone());
        }
    }
    v.sort();
    v.dedup();
    Ok(v)
}

fn build_in(
    os: BaseOs,
    key: &str,
    extra: &[String],
    src_text: &str,
    sources: &Path,
    w: &Path,
) -> Result<BaseManifest> {
    let t = Instant::now();
    // Everything this build writes is newer than this (package files are older).
    let started = std::time::SystemTime::now();
    let root = w.join("root");
    eprintln!(
        "base {}: mmdebstrap from {} ({} packages, {} more asked for)…",
        os.name(),
        sources.display(),
        PACKAGES.len(),
        extra.len()
    );
    let include: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
    process::run(
        Command::new("mmdebstrap")
            .args(["--mode=root", "--variant=important", "--format=directory"])
            .arg(format!("--include={}", include.join(",")))
            .arg("--aptopt=Acquire::Retries \"3\"")
            .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
            .arg("--dpkgopt=path-include=/usr/share/doc/*/copyright")
            .arg("--dpkgopt=path-exclude=/usr/share/man/*")
            .args(initramfs_hooks())
            .args(["bookworm"])
            .arg(&root)
            .arg(sources)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // mmdebstrap's reproducible mode: no logs, no ldconfig aux-cache, fixed times.
            .env("SOURCE_DATE_EPOCH", rootdisk::EPOCH.to_string()),
        "mmdebstrap (the Debian 12 root)",
    )?;
    eprintln!("  root ready in {:.0}s", t.elapsed().as_secs_f64());

    // The kernel the root got.
    let mut kernels: Vec<String> = std::fs::read_dir(root.join("boot"))
        .context("reading the root's /boot")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .collect();
    kernels.sort();
    let kernel = kernels
        .pop()
        .context("no /boot/vmlinuz-* in the root: linux-image-amd64 did not install")?;
    if !root.join(format!("boot/initrd.img-{kernel}")).exists() {
        anyhow::bail!("no /boot/initrd.img-{kernel} in the root");
    }
    let uuid = uuid_from(key);
    for (rel, content) in config_files(&uuid, &kernel)? {
        crate::bundle::write_file(&root.join(rel), content.as_bytes())?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let p = root.join(BAKE_BOOT);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", p.display()))?;
    }
    std::fs::copy(
        root.join(format!("boot/vmlinuz-{kernel}")),
        w.join("vmlinuz"),
    )
    .context("copying the root's kernel")?;
    std::fs::copy(
        root.join(format!("boot/initrd.img-{kernel}")),
        w.join("initrd"),
    )
    .context("copying the root's initrd")?;
    // No machine identity in a base: each boot makes its own.
    std::fs::write(root.join("etc/machine-id"), b"").context("truncating /etc/machine-id")?;
    let _ = std::fs::remove_file(root.join("var/lib/dbus/machine-id"));
    for e in std::fs::read_dir(root.join("etc/ssh")).context("reading /etc/ssh")? {
        let p = e.context("reading /etc/ssh")?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ssh_host_"))
        {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let _ = std::fs::remove_file(root.join("etc/resolv.conf"));

    let packages = dpkg_versions(&root)?;
    // Kept beside the image: benches/virt-customize-apply.sh resolves packages against it.
    std::fs::copy(root.join("var/lib/dpkg/status"), w.join("dpkg-status"))
        .context("copying the root's dpkg status")?;

    // Two passes, so the shipped filesystem is never one a kernel mounted: the first disk
    // only runs grub-install (GRUB's files go back into the tree, its MBR and core image are
    // kept), the second is written from the tree with clamped times and gets that boot area.
    let layout = rootdisk::Layout {
        size: DISK_SIZE,
        uuid: uuid.clone(),
        label_id: key[..8].to_string(),
    };
    let raw = w.join("disk.raw");
    rootdisk::write(&root, &raw, &layout)?;
    eprintln!("  installing GRUB…");
    {
        let lo = rootdisk::Loop::attach(&raw)?;
        let part = lo.part1()?;
        let mnt = w.join("mnt");
        std::fs::create_dir_all(&mnt).context("creating the mount point")?;
        // A private mount namespace: the mounts vanish with the process, whatever happens.
        let script = r#"set -eu
part=$1; mnt=$2; disk=$3; tree=$4
mount "$part" "$mnt"
for d in dev proc sys; do mount --bind "/$d" "$mnt/$d"; done
chroot "$mnt" grub-install --target=i386-pc --boot-directory=/boot "$disk" 2>&1
rm -f "$mnt/boot/grub/grubenv.lock"
cp -a "$mnt/boot/grub/." "$tree/boot/grub/"
"#;
        process::run(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--fork"])
                .args(["bash", "-c", script, "grub"])
                .arg(&part)
                .arg(&mnt)
                .arg(&lo.dev)
                .arg(&root),
            "installing GRUB (grub-install on the loop device)",
        )?;
    }
    let boot = rootdisk::boot_area(&raw)?;
    std::fs::remove_file(&raw).context("removing the first disk")?;
    rootdisk::clamp_times(&root, started)?;
    rootdisk::write(&root, &raw, &layout)?;
    rootdisk::put_boot_area(&raw, &boot)?;
    // The root tree is in the filesystem now; free the space before the next steps.
    std::fs::remove_dir_all(&root).context("removing the root tree")?;

    eprintln!("  compressing…");
    let qcow = w.join("base.qcow2");
    tool::qcow2_compress(&raw, "raw", &qcow)?;
    std::fs::remove_file(&raw).context("removing the raw disk")?;
    let sha256 = sha256_file(&qcow)?;
    let size = std::fs::metadata(&qcow)
        .with_context(|| format!("reading {}", qcow.display()))?
        .len();
    Ok(BaseManifest {
        os: os.name().into(),
        key: key.into(),
        recipe: RECIPE.into(),
        file: String::new(),
        sha256,
        size,
        virtual_size: DISK_SIZE,
        kernel,
        root_uuid: uuid,
        sources: src_text.into(),
        extra_packages: extra.to_vec(),
        packages,
    })
}

/// Package -> version of the root (`dpkg-query -W`).
fn dpkg_versions(root: &Path) -> Result<BTreeMap<String, String>> {
    let text = process::run_stdout(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"]),
        "listing the root's packages (dpkg-query)",
    )?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            let (p, v, s) = (it.next()?, it.next()?, it.next()?);
            s.starts_with("ii").then(|| (p.to_string(), v.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hooks run as mmdebstrap runs them (`sh -c HOOK exec ROOT`) write each file as it is.
    #[test]
    fn initramfs_hooks_write_the_files_verbatim() {
        let root = tempfile::tempdir().expect("tempdir");
        for h in initramfs_hooks() {
            let body = h.strip_prefix("--setup-hook=").expect("a setup hook");
            let st = Command::new("sh")
                .args(["-c", body, "exec"])
                .arg(root.path())
                .status()
                .expect("sh");
            assert!(st.success(), "{body}");
        }
        for (p, c) in INITRAMFS_FILES {
            assert!(!c.contains('\''), "{p} must hold no single quote");
            let got = std::fs::read_to_string(root.path().join(p)).expect("written");
            assert_eq!(&got, c, "{p}");
        }
        assert!(INITRAMFS_FILES[0].1.contains("\nMODULES=list\n"));
    }

    #[test]
    fn bake_entry_point_is_valid_bash() {
        let files = config_files("UUID", "KERNEL").expect("the recipe fills");
        let (_, script) = files
            .iter()
            .find(|(p, _)| *p == BAKE_BOOT)
            .expect("the bake entry point is a config file");
        assert!(script.starts_with("#!/bin/bash\n"));
        assert!(script.contains("exec /bin/bash /run/ezbake/bake.sh /run/ezbake"));
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("bake-boot");
        std::fs::write(&f, script).expect("write");
        let st = Command::new("bash")
            .arg("-n")
            .arg(&f)
            .status()
            .expect("bash");
        assert!(st.success(), "bash -n failed:\n{script}");
        if process::have("shellcheck") {
            let o = Command::new("shellcheck")
                .arg(&f)
                .output()
                .expect("shellcheck");
            assert!(
                o.status.success(),
                "{}\n{script}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}
