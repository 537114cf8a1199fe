//! The qcow2 bake: `ezimg build --role R --format qcow2`.
//!
//! The role's base image (debian12: `ezimg base build --with <the role's packages>`: the
//! packages the layers install are put in by mmdebstrap at native speed, so dpkg never runs
//! under TCG) is booted once under QEMU with no network, on a qcow2 overlay (the base stays
//! untouched), with a read-only bake disk ezimg writes (ISO 9660: the bundle, the role's
//! artifacts and `bake.sh`). ezimg's own base boots its kernel directly with
//! `systemd.run=` into its bake entry point (no bootloader, no cloud-init, no
//! multi-user.target); a vendor base boots normally with a NoCloud bake seed whose runcmd mounts
//! the bake disk. `bake.sh` runs `apply --node <first node of the role>` as an image root
//! (twice: the second must change nothing), resets machine identity and writes `OK` or
//! `FAIL <why>` + tails to the virtio-serial marker, then powers off. Only after `OK` is the
//! disk turned into the image: on ezimg's base, the guest's tree is written afresh by
//! [`super::rootdisk`] (times clamped to 2000-01-01 for whatever the bake wrote, the base's
//! UUID and hash seed, GRUB's boot area kept), so two bakes of the same inputs are the same bytes;
//! then `qemu-img convert -O qcow2 -c` (in-order writes: deterministic), hashed and recorded in
//! a manifest (`not_reproducible` says why when an image cannot be: vendor bases).
//!
//! The image stays generic: node-specific files are re-applied at first boot by the node's own
//! seed (its bootstrap runs the same idempotent `apply` for that node).
//!
//! Cached under `<cache>/bake/` ([`crate::keyed_cache`]) by a key over the base, the bundle, the
//! node, the artifacts and the packages: unchanged inputs are a cache hit and boot no VM. The
//! vendor bases' NoCloud bake seed is a template beside this file (`bake-seed/`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{base, recipe, rootdisk};
use crate::cluster::Os;
use crate::digest::{sha256_file, sha256_hex};
use crate::plan::NodePlan;
use crate::vm::{self, Disk, Vm, VmSpec, tool};
use crate::{keyed_cache, process};

const BAKE_SH: &str = include_str!("bake.sh");
/// The NoCloud seed of a vendor base's bake.
const SEED_USER_DATA: &str = include_str!("bake-seed/user-data");
const SEED_META_DATA: &str = include_str!("bake-seed/meta-data");
/// Bump when the bake procedure changes in a way the inputs do not show.
const RECIPE: &str = "bake-v5";
/// Serial of the bake disk: `/dev/disk/by-id/virtio-ezbake` in the guest.
pub(crate) const BAKE_DISK_SERIAL: &str = "ezbake";

/// What the bake records next to the image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BakeManifest {
    pub role: String,
    pub os: String,
    pub key: String,
    pub recipe: String,
    pub sha256: String,
    pub size: u64,
    pub base: BaseRef,
    pub bundle: Digested,
    pub node_applied: String,
    pub layers: Vec<String>,
    pub artifacts: Vec<Digested>,
    pub packages: BTreeMap<String, String>,
    pub apply: String,
    /// Why the image's bytes would differ in a second bake of the same inputs (`None`: they do
    /// not, given the same apt archive state, which the base's key records).
    #[serde(default)]
    pub not_reproducible: Option<String>,
    pub accel: String,
    pub bake_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseRef {
    pub os: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Digested {
    pub name: String,
    pub sha256: String,
}

/// Result of [`bake`].
#[derive(Debug)]
pub struct Baked {
    pub image: PathBuf,
    pub manifest: BakeManifest,
    pub cached: bool,
    pub seconds: f64,
}

/// How bakes run. Parsed once by the CLI (`--bake-jobs`, `--bake-timeout` or their
/// `EZIMG_BAKE_*` variables, where a bad value is an error naming the variable) and passed down:
/// the library reads no environment for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BakeOptions {
    /// Bakes run side by side. A TCG guest keeps about one core busy.
    pub jobs: usize,
    /// How long one bake VM may run before the bake fails.
    pub timeout: Duration,
}

impl BakeOptions {
    /// Default `jobs`: 2 when the machine has 2 cores or more, else 1.
    pub fn default_jobs() -> usize {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 2)
    }
    /// Parse `--bake-jobs` / `EZIMG_BAKE_JOBS`: a whole number of bakes, at least 1.
    pub fn parse_jobs(v: &str) -> Result<usize, String> {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                "expected a positive whole number of bakes (--bake-jobs or EZIMG_BAKE_JOBS)".into()
            })
    }
    /// Parse `--bake-timeout` / `EZIMG_BAKE_TIMEOUT`: whole seconds, at least 1.
    pub fn parse_timeout(v: &str) -> Result<u64, String> {
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                "expected a positive whole number of seconds (--bake-timeout or EZIMG_BAKE_TIMEOUT)"
                    .into()
            })
    }
    /// Default `timeout`: an hour, several times a TCG bake of the largest role.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
}

impl Default for BakeOptions {
    fn default() -> Self {
        BakeOptions {
            jobs: Self::default_jobs(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// `ezimg build --format qcow2` for one role: bake (or take from the cache) and write the image
/// to `out`, its manifest to `out.json` and a `sha256sum -c` line to `out.sha256`.
pub fn bake_role(
    role: &str,
    bundle: &[u8],
    plans: &[NodePlan],
    out: &Path,
    lock: &crate::artifact::Lock,
    opts: &BakeOptions,
) -> Result<()> {
    let cache_root = crate::stage::default_cache_root()?;
    let b = bake(role, bundle, plans, &cache_root, lock, opts)?;
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    std::fs::copy(&b.image, out)
        .with_context(|| format!("copying the image to {}", out.display()))?;
    let name = out
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::bundle::write_file(
        &with_suffix(out, ".json"),
        &serde_json::to_vec_pretty(&b.manifest).context("serializing the manifest")?,
    )?;
    crate::bundle::write_file(
        &with_suffix(out, ".sha256"),
        crate::bundle::sha256_line(&b.manifest.sha256, &name).as_bytes(),
    )?;
    if b.cached {
        eprintln!(
            "qcow2 {role}: cache hit ({:.2}s), no VM booted: {}",
            b.seconds,
            b.image.display()
        );
    } else {
        eprintln!(
            "qcow2 {role}: baked in {:.0}s ({}): {} (sha256 {})",
            b.seconds, b.manifest.accel, name, b.manifest.sha256
        );
    }
    Ok(())
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Read one member of the bundle tar.gz.
fn bundle_member(bundle: &[u8], name: &str) -> Result<Vec<u8>> {
    let gz = flate2::read::GzDecoder::new(bundle);
    let mut ar = tar::Archive::new(gz);
    for e in ar.entries().context("reading the bundle")? {
        let mut e = e.context("reading the bundle")?;
        if e.path().context("reading the bundle")?.to_string_lossy() == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v)
                .with_context(|| format!("reading {name} from the bundle"))?;
            return Ok(v);
        }
    }
    anyhow::bail!("the bundle has no {name}")
}

/// The baked disk written afresh (rootdisk): the guest's tree, read from its disk in a
/// private mount namespace, gets clamped times and goes through `mkfs.ext4 -d` with the base's
/// UUID; the boot area (MBR, GRUB's core image) is the guest's. Returns the raw disk.
fn rewrite(
    disk: &Path,
    base: &Path,
    uuid: &str,
    started: std::time::SystemTime,
    w: &Path,
) -> Result<PathBuf> {
    let baked = w.join("baked.raw");
    process::run(
        Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(disk)
            .arg(&baked),
        "reading the baked disk (qemu-img convert)",
    )?;
    std::fs::remove_file(disk).context("removing the bake overlay")?;
    let layout = rootdisk::Layout {
        size: tool::virtual_size(base)?,
        uuid: uuid.to_string(),
        label_id: uuid.get(..8).unwrap_or("00000000").to_string(),
    };
    let raw = w.join("image.raw");
    rootdisk::partition(&raw, &layout)?;
    let since = started
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    {
        let lo = rootdisk::Loop::attach(&baked)?;
        let part = lo.part1()?;
        let mnt = w.join("mnt");
        std::fs::create_dir_all(&mnt).context("creating the mount point")?;
        // noatime: reading the tree must not change it. Mounted read-write only to clamp
        // times; this disk is thrown away.
        let script = r#"set -eu
part=$1; mnt=$2; since=$3; epoch=$4; shift 4
mount -o noatime "$part" "$mnt"
# What the bake boot's shutdown wrote after bake.sh had finished, as fast as the guest's clock
# allowed (a race, so not the same twice): systemd's saved random seed and clock, the journal's
# folder for the boot's throw-away machine id, wtmp's shutdown record. A node makes its own.
rm -f "$mnt/var/lib/systemd/random-seed" "$mnt/var/lib/systemd/timesync/clock"
if [ -d "$mnt/var/log/journal" ]; then
    find "$mnt/var/log/journal" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
fi
find "$mnt/var/log" -xdev -type f -exec truncate -s 0 {} +
find "$mnt" -xdev -newermt "@$since" -exec touch -h -d "@$epoch" {} +
find "$mnt" -xdev -exec touch -h -a -d "@$epoch" {} +
E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 "$@"
"#;
        process::run(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--fork"])
                .args(["bash", "-c", script, "rewrite"])
                .arg(&part)
                .arg(&mnt)
                .arg(since.saturating_sub(1).to_string())
                .arg(rootdisk::EPOCH.to_string())
                .args(layout.mkfs_args(&mnt, &raw)),
            "writing the image's root afresh (mount, clamp times, mkfs.ext4 -d)",
        )?;
    }
    rootdisk::fix_ctimes(&raw, &layout)?;
    rootdisk::put_boot_area(&raw, &rootdisk::boot_area(&baked)?)?;
    std::fs::remove_file(&baked).context("removing the baked raw disk")?;
    Ok(raw)
}

/// Packages the node's layers declare (`[packages]` of layer.toml for its OS; `plan` checks them
/// against what the rendered scripts pass to `ez_pkg_install`).
pub fn packages_of(plan: &NodePlan) -> Vec<String> {
    plan.packages()
}

/// An empty flat apt repository (signed by nothing: the guest trusts it as `[trusted=yes]`):
/// the packages are in the base; this keeps `apt-get update` working with no network.
fn write_empty_repo(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("Packages"), b"").context("writing the bake disk's Packages")?;
    let release = format!(
        "Origin: ezimg\nLabel: ezimg bake\nDate: Thu, 01 Jan 1970 00:00:00 UTC\nSHA256:\n {} 0 Packages\n",
        sha256_hex(b"")
    );
    std::fs::write(dir.join("Release"), release).context("writing the bake disk's Release")
}

/// The image a bake starts from.
struct BaseImage {
    image: PathBuf,
    file: String,
    sha256: String,
    /// debian12: the versions of the role's packages, installed in the base.
    packages: BTreeMap<String, String>,
    /// debian12: the base's kernel, initrd and root UUID: the bake boots straight into its
    /// entry point (`systemd.run=`), skipping the bootloader, cloud-init and multi-user.target.
    direct: Option<(PathBuf, PathBuf, String)>,
}

/// debian12: the base `ezimg base build --with PACKAGES` makes (built if missing). el7/el9:
/// the vendor cloud image pinned in artifacts.lock, only if it is already in the verified cache
/// (it cannot be fetched from here). Their bake has no network and no package repository:
/// layers that install packages fail in the guest and say so.
fn base_for(
    os: Os,
    role: &str,
    packages: &[String],
    cache_root: &Path,
    lock: &crate::artifact::Lock,
    acache: &crate::artifact::Cache,
) -> Result<BaseImage> {
    let vendor = match os {
        Os::Debian12 => {
            eprintln!(
                "qcow2 {role}: the debian12 base with the role's {} packages…",
                packages.len()
            );
            let b = base::ensure(base::BaseOs::Debian12, packages, cache_root, false)
                .with_context(|| format!("the debian12 base image with role {role}'s packages"))?;
            let versions = packages
                .iter()
                .filter_map(|p| Some((p.clone(), b.manifest.packages.get(p)?.clone())))
                .collect();
            return Ok(BaseImage {
                file: b.manifest.file.clone(),
                sha256: b.manifest.sha256.clone(),
                image: b.image,
                packages: versions,
                direct: Some((b.kernel, b.initrd, b.manifest.root_uuid.clone())),
            });
        }
        Os::El7 => "centos7-genericcloud",
        Os::El9 => "rocky9-genericcloud",
    };
    // The lock the build was given (--lock, --data, beside the cluster file), never another.
    let art = lock.find(vendor).with_context(|| {
        format!(
            "role {role} ({}): the lock {} has no `{vendor}` base image",
            os.as_str(),
            lock.origin
        )
    })?;
    match acache.lookup(art) {
        Some(p) => Ok(BaseImage {
            file: art.file.clone(),
            sha256: sha256_file(&p)?,
            image: p,
            packages: BTreeMap::new(),
            direct: None,
        }),
        None => anyhow::bail!(
            "role {role}: baking a qcow2 for {} starts from the vendor cloud image `{vendor}` \
             ({}), which is not in the cache {} and cannot be downloaded from here: fetch it \
             where it can be (`ezimg fetch {vendor}`) and carry it over with `ezimg export` / \
             `ezimg import`, or build debian12 images (`os = \"debian12\"` in the cluster file)",
            os.as_str(),
            art.file,
            acache.root().display()
        ),
    }
}

/// The NoCloud seed of a vendor base's bake: user-data whose runcmd mounts the bake disk and
/// runs bake.sh (or reports that it could not), and meta-data.
fn bake_seed(key16: &str) -> Result<(String, String)> {
    let vars = [
        ("SERIAL", BAKE_DISK_SERIAL),
        ("PORT", vm::MARKER_PORT),
        ("KEY16", key16),
    ];
    Ok((
        recipe::fill("bake-seed/user-data", SEED_USER_DATA, &vars)?,
        recipe::fill("bake-seed/meta-data", SEED_META_DATA, &vars)?,
    ))
}

/// Write the NoCloud seed (FAT) that boots a vendor image into `bake.sh` of the disk with serial
/// `ezbake`: the bake's, and the VM stage builder's for el7/el9.
pub(crate) fn write_vendor_seed(path: &Path, key16: &str) -> Result<()> {
    let (user_data, meta_data) = bake_seed(key16)?;
    crate::output::seed_fat::write(
        &[
            ("user-data", user_data.as_bytes()),
            ("meta-data", meta_data.as_bytes()),
        ],
        path,
    )
}

/// Bake (or find) the image of `role`.
pub fn bake(
    role: &str,
    bundle: &[u8],
    plans: &[NodePlan],
    cache_root: &Path,
    lock: &crate::artifact::Lock,
    opts: &BakeOptions,
) -> Result<Baked> {
    let t0 = Instant::now();
    let plan = plans
        .first()
        .with_context(|| format!("role {role} has no node to bake"))?;
    let bundle_sha = sha256_hex(bundle);
    let bundle_file = format!("ezimg-{role}-bundle.tar.gz");
    let artifacts_list = String::from_utf8(bundle_member(bundle, "artifacts.list")?)
        .context("artifacts.list is not UTF-8")?;
    let packages = packages_of(plan);

    // Artifacts the node needs, from the verified cache.
    let wanted = plan.artifacts();
    let acache = crate::artifact::Cache::new(cache_root.to_path_buf());
    // A vendor base that is missing is the first thing to say; a debian12 base is built, so
    // missing artifacts are reported before that (slow) step.
    let early_base = match plan.os {
        Os::Debian12 => None,
        os => Some(base_for(os, role, &packages, cache_root, lock, &acache)?),
    };
    let mut artifacts: Vec<(Digested, String, PathBuf)> = Vec::new();
    let mut missing = Vec::new();
    for a in
        crate::bundle::format::parse_artifacts_list(&artifacts_list, "the bundle's artifacts.list")?
    {
        let (name, file) = (a.name.as_str(), a.file.as_str());
        // `-` when the lock pins no digest, as the line has it.
        let sha = a.sha256.as_deref().unwrap_or("-");
        if !wanted.iter().any(|w| w == name) {
            continue;
        }
        let mut path = sha
            .parse::<crate::artifact::Sha256Digest>()
            .ok()
            .map(|d| acache.sha256_path(&d))
            .filter(|p| p.exists());
        // Stage outputs (`<stage>-stage-<key16>.tar.gz`) live in the stage cache.
        if path.is_none()
            && let Some(key16) = file
                .strip_prefix(&format!("{name}-"))
                .and_then(|f| f.strip_suffix(".tar.gz"))
            && name.ends_with(crate::pins::STAGE_SUFFIX)
        {
            path = crate::stage::cache::find_output(cache_root, key16, sha)?;
        }
        match path {
            Some(p) => artifacts.push((
                Digested {
                    name: name.into(),
                    sha256: sha.into(),
                },
                file.into(),
                p,
            )),
            None => missing.push(format!("{name} ({file}, sha256 {sha})")),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "role {role}: artifacts missing from the cache {}: {} (run `ezimg fetch --role {role}` \
             or `ezimg import`; the bake VM has no network)",
            cache_root.display(),
            missing.join(", ")
        );
    }

    let base = match early_base {
        Some(b) => b,
        None => base_for(plan.os, role, &packages, cache_root, lock, &acache)?,
    };
    let mut k = String::new();
    for part in [
        RECIPE,
        BAKE_SH,
        &base.sha256,
        &bundle_sha,
        &plan.hostname,
        &artifacts_list,
        &packages.join(","),
    ] {
        k.push_str(&sha256_hex(part.as_bytes()));
        k.push('\n');
    }
    let key = sha256_hex(k.as_bytes());
    let dir = crate::cachedir::bake(cache_root);
    let image = dir.join(format!("{role}-{}.qcow2", &key[..16]));
    let manifest_path = with_suffix(&image, ".json");
    let slot = keyed_cache::Slot {
        dir: &dir,
        name: &format!("{role}-{}", &key[..16]),
        what: &format!("baking the same {role} image"),
        rebuild: false,
        quiet: false,
        work: keyed_cache::Work::Fresh,
    };
    let lookup = || -> Result<Option<BakeManifest>> {
        if !image.exists() || !manifest_path.exists() {
            return Ok(None);
        }
        Ok(keyed_cache::read_manifest(&manifest_path))
    };
    let got = keyed_cache::get_or_build(&slot, lookup, |w| {
        let manifest = bake_in(
            role,
            bundle,
            plan,
            &BakeInputs {
                key: &key,
                bundle_sha: &bundle_sha,
                bundle_file: &bundle_file,
                artifacts: &artifacts,
                base: &base,
            },
            opts,
            w,
        )?;
        Ok(keyed_cache::Built {
            files: vec![(w.join("image.qcow2"), image.clone())],
            manifest: manifest_path.clone(),
            manifest_bytes: serde_json::to_vec_pretty(&manifest)
                .context("serializing the manifest")?,
            value: manifest,
        })
    })?;
    Ok(Baked {
        image,
        manifest: got.value,
        cached: got.cached,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// What [`bake`] worked out before the VM.
struct BakeInputs<'a> {
    key: &'a str,
    bundle_sha: &'a str,
    bundle_file: &'a str,
    artifacts: &'a [(Digested, String, PathBuf)],
    base: &'a BaseImage,
}

/// Boot the bake VM in the work dir `w`; leaves `w/image.qcow2` and returns its manifest.
fn bake_in(
    role: &str,
    bundle: &[u8],
    plan: &NodePlan,
    inp: &BakeInputs,
    opts: &BakeOptions,
    w: &Path,
) -> Result<BakeManifest> {
    let BakeInputs {
        key,
        bundle_sha,
        bundle_file,
        artifacts,
        base,
    } = *inp;
    process::require(&["qemu-img", "xorriso"], "baking a qcow2")?;

    // The bake disk.
    let data = w.join("data");
    std::fs::create_dir_all(data.join("artifacts")).context("creating the bake disk tree")?;
    std::fs::write(data.join(bundle_file), bundle).context("writing the bundle")?;
    for (_, file, src) in artifacts {
        std::fs::copy(src, data.join("artifacts").join(file))
            .with_context(|| format!("copying {} to the bake disk", src.display()))?;
    }
    let pkg_versions = base.packages.clone();
    write_empty_repo(&data.join("debs"))?;
    std::fs::write(data.join("bake.sh"), BAKE_SH).context("writing bake.sh")?;
    std::fs::write(
        data.join("bake.env"),
        format!(
            "node={}\nbundle_file={}\nbundle_sha={bundle_sha}\nsource_date_epoch={}\n",
            crate::bundle::shell_quote(&plan.hostname),
            crate::bundle::shell_quote(bundle_file),
            rootdisk::EPOCH
        ),
    )
    .context("writing bake.env")?;
    let iso = w.join("bake.iso");
    process::run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-V", "EZBAKE", "-o"])
            .arg(&iso)
            .arg(&data),
        "writing the bake disk (xorriso)",
    )?;
    std::fs::remove_dir_all(&data).context("removing the bake disk tree")?;

    let disk = w.join("disk.qcow2");
    vm::overlay(&base.image, &disk, None)?;
    let mut spec = VmSpec::new(&format!("ezimg-bake-{role}"), w);
    spec.mem_mib = 2048;
    match &base.direct {
        // ezimg's own base: its kernel straight into the bake entry point.
        Some((kernel, initrd, uuid)) => {
            spec.direct_kernel = Some(base::bake_boot(kernel, initrd, uuid));
            spec.disks = vec![Disk::qcow2(&disk), Disk::raw_ro(&iso, BAKE_DISK_SERIAL)];
        }
        // A vendor image: through its bootloader and cloud-init, with a bake seed.
        None => {
            let seed = w.join("seed.img");
            write_vendor_seed(&seed, &key[..16])?;
            spec.disks = vec![
                Disk::qcow2(&disk),
                Disk::raw_ro(&seed, "cidata"),
                Disk::raw_ro(&iso, BAKE_DISK_SERIAL),
            ];
        }
    }
    let timeout = opts.timeout;
    // Files the guest writes are newer than this; the rewrite gives them the fixed time.
    let started = std::time::SystemTime::now();
    let t_vm = Instant::now();
    let mut guest = Vm::start(&spec)?;
    eprintln!(
        "qcow2 {role}: baking in a VM ({}, no network; console {})…",
        guest.accel,
        guest.serial_log().display()
    );
    let verdict = guest
        .wait_for(timeout, |l| {
            if l.starts_with("STEP") || l.starts_with("BAKE") || l.starts_with("CHANGED") {
                eprintln!(
                    "qcow2 {role}: guest {:>4.0}s: {l}",
                    t_vm.elapsed().as_secs_f64()
                );
            }
            l.starts_with("OK") || l.starts_with("FAIL")
        })
        .with_context(|| format!("baking role {role}"))?;
    if let Some(why) = verdict.strip_prefix("FAIL") {
        let mut detail = Vec::new();
        for l in guest.drain(Duration::from_secs(3)) {
            if l == "END" {
                break;
            }
            detail.push(l);
        }
        anyhow::bail!(
            "role {role}: the bake failed in the guest:{why}\n{}",
            detail.join("\n")
        );
    }
    let accel = guest.accel.to_string();
    guest
        .wait_exit(Duration::from_secs(300))
        .with_context(|| format!("baking role {role}: waiting for power-off"))?;
    drop(guest);
    let bake_seconds = t_vm.elapsed().as_secs_f64();
    eprintln!("qcow2 {role}: guest says {verdict}; compressing…");

    let tmp_img = w.join("image.qcow2");
    let reproducible = match &base.direct {
        // ezimg's own base: the guest's tree is written afresh (rootdisk).
        Some((_, _, uuid)) => {
            let raw = rewrite(&disk, &base.image, uuid, started, w)?;
            tool::qcow2_compress(&raw, "raw", &tmp_img)?;
            std::fs::remove_file(&raw).context("removing the raw disk")?;
            None
        }
        None => {
            tool::qcow2_compress(&disk, "qcow2", &tmp_img)?;
            Some(
                "a vendor base's filesystem is kept as the guest left it (block allocation and \
                 inode times vary): not byte-reproducible"
                    .to_string(),
            )
        }
    };
    let sha256 = sha256_file(&tmp_img)?;
    let size = std::fs::metadata(&tmp_img)
        .with_context(|| format!("reading {}", tmp_img.display()))?
        .len();
    Ok(BakeManifest {
        role: role.into(),
        os: plan.os.as_str().into(),
        key: key.into(),
        recipe: RECIPE.into(),
        sha256,
        size,
        base: BaseRef {
            os: plan.os.as_str().into(),
            file: base.file.clone(),
            sha256: base.sha256.clone(),
        },
        bundle: Digested {
            name: bundle_file.into(),
            sha256: bundle_sha.into(),
        },
        node_applied: plan.hostname.clone(),
        layers: plan.applied().map(|l| l.name.clone()).collect(),
        artifacts: artifacts.iter().map(|(d, _, _)| d.clone()).collect(),
        packages: pkg_versions,
        apply: verdict.trim_start_matches("OK").trim().into(),
        not_reproducible: reproducible,
        accel,
        bake_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bake_seed_fills() {
        let (user, meta) = bake_seed("0123456789abcdef").expect("filled");
        assert!(user.starts_with("#cloud-config\n"));
        assert!(user.contains("/dev/disk/by-id/virtio-ezbake "), "{user}");
        assert!(user.contains(&format!("/dev/virtio-ports/{}", vm::MARKER_PORT)));
        assert_eq!(
            meta,
            "instance-id: ezimg-bake-0123456789abcdef\nlocal-hostname: ezimg-bake\n"
        );
    }

    #[test]
    fn bake_settings_reject_bad_values_naming_the_variable() {
        assert_eq!(BakeOptions::parse_jobs("3"), Ok(3));
        assert_eq!(BakeOptions::parse_timeout("90"), Ok(90));
        for bad in ["0", "-1", "two", ""] {
            let e = BakeOptions::parse_jobs(bad).expect_err(bad);
            assert!(e.contains("EZIMG_BAKE_JOBS"), "{e}");
            let e = BakeOptions::parse_timeout(bad).expect_err(bad);
            assert!(e.contains("EZIMG_BAKE_TIMEOUT"), "{e}");
        }
    }

    #[test]
    fn packages_come_from_the_debian_declarations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("cluster.toml");
        let text = crate::cluster::DEFAULT_TOML
            .replace("os = \"el7\"", "os = \"debian12\"")
            .replace(
                "# [roles.slb]",
                "[roles.slb]\nnginx_source = \"distro\"\nkeepalived_source = \"distro\"\n#",
            );
        std::fs::write(&f, text).expect("write");
        let loaded = crate::cluster::load(Some(&f)).expect("cluster");
        let tree = crate::data::DataTree::load(None).expect("data");
        let catalog = crate::plan::Catalog::load(&tree).expect("catalog");
        let node = loaded.cluster.nodes_of("slb").next().expect("an slb node");
        let plan = crate::plan::plan_node(&catalog, &loaded, node).expect("plan");
        let pkgs = packages_of(&plan);
        for want in [
            "nginx",
            "libnginx-mod-stream",
            "keepalived",
            "chrony",
            "gcc",
            "ipvsadm",
        ] {
            assert!(pkgs.iter().any(|p| p == want), "{want} missing: {pkgs:?}");
        }
        // el names never leak into a debian12 plan (templates render per OS).
        for not in ["epel-release", "nginx-mod-stream", "conntrack-tools"] {
            assert!(!pkgs.iter().any(|p| p == not), "{not} present: {pkgs:?}");
        }
    }

    #[test]
    fn user_data_and_script_are_sane() {
        assert!(BAKE_SH.contains("virtio-ports/ezimg.0"));
        assert!(BAKE_SH.contains("cloud-init clean --logs --seed"));
        assert!(BAKE_SH.contains("export EZIMG_LIVE=0"));
    }
}
