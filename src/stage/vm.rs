//! The VM builder (`ezimg stage build --builder vm`): configure, build and install run inside a
//! VM of the target, booted from the target's base image with only the stage's
//! `[build_deps] <target>` installed and no network.
//!
//! Why: the host builder links whatever the build machine has (Debian 12's glibc and sonames,
//! any -dev package that happens to be installed: libmagic leaked into keepalived that way). A
//! VM of the target builds what the target can run, from declared dependencies only.
//!
//! How (the bake's mechanism): the host unpacks, patches and edits as for the host builder, then
//! writes a read-only build disk (ISO 9660: the prepared `src/` as a tar, `bake.sh` = the build
//! script, its settings and the steps). The base's bake entry point runs the script; it unpacks
//! the sources at `/build/<work dir name>` (a function of the key, so compiled-in paths repeat),
//! runs each step with the host builder's clean environment and writes `staging/` and `logs/` as
//! a tar archive straight onto a raw output disk, then reports `OK` / `FAIL` on the marker port.
//! The host reads the archive back and packs and checks the output exactly as for the host
//! builder.
//!
//! Targets: debian12 boots ezimg's own base (`ezimg base build --with <build deps>`: the
//! dependencies are installed by mmdebstrap, so dpkg never runs under TCG) straight into the
//! build with `systemd.run=`. el7/el9 boot the pinned vendor cloud image (`centos7-genericcloud`,
//! `rocky9-genericcloud` from the verified cache) through its bootloader and cloud-init, with the
//! bake's NoCloud seed, and install the build dependencies from an offline copy
//! (`--deps-from DIR`: the RPMs, e.g. `yumdownloader --resolve` on a machine of the target)
//! with the target's own package manager, every repository disabled. The vendor half cannot run
//! on this project's build machine (no EL image or repository is reachable): it shares
//! everything but the boot and the dependency install with the debian12 path the tests prove.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Stage;
use super::run::Step;
use crate::bundle::shell_quote;
use crate::digest::sha256_hex;
use crate::image::base::{Base, BaseOs};
use crate::process;
use crate::stage::BuildOptions;
use crate::vm::{self, Disk, Vm, VmSpec};

/// The script the VM runs (as the base's `bake.sh`).
const BUILD_SH: &str = include_str!("vm-build.sh");
/// Bumped when the VM builder changes what a key produces in a way its inputs do not show.
const RECIPE: &str = "stage-vm-v1";
/// Where the work directory is in the guest.
const GUEST_DIR: &str = "/build";
/// The build disk goes where the base's bake entry point (and a vendor image's bake seed)
/// looks for `bake.sh`.
const BUILD_DISK_SERIAL: &str = crate::image::bake::BAKE_DISK_SERIAL;
/// Serial of the raw output disk: `/dev/disk/by-id/virtio-ezout` in the guest.
const OUT_SERIAL: &str = "ezout";
/// Room for `staging/` and `logs/` (a sparse file: only what is written takes space).
const OUT_SIZE: u64 = 4 << 30;
/// The overlay of a vendor image: the cloud image's root grows to it at first boot.
const VENDOR_DISK: u64 = 16 << 30;

/// The work directory's path in the guest: `/build/<name of the host's work directory>`.
pub fn guest_root(dir: &Path) -> PathBuf {
    Path::new(GUEST_DIR).join(dir.file_name().unwrap_or_default())
}

/// The image a VM build boots.
#[derive(Debug, Clone)]
pub enum BuilderBase {
    /// ezimg's own base with the build dependencies installed (debian12).
    Own(Box<Base>),
    /// A vendor cloud image (el7/el9) and the offline copy of the build dependencies.
    Vendor {
        os: String,
        image: PathBuf,
        sha256: String,
        deps: PathBuf,
        /// sha256 over the RPMs' names and digests.
        deps_sha256: String,
    },
}

impl BuilderBase {
    fn os(&self) -> &str {
        match self {
            BuilderBase::Own(b) => &b.manifest.os,
            BuilderBase::Vendor { os, .. } => os,
        }
    }
}

/// The vendor cloud image each EL target boots (an artifacts.lock name).
pub fn vendor_image_name(target: &str) -> Option<&'static str> {
    match target {
        "el7" => Some("centos7-genericcloud"),
        "el9" => Some("rocky9-genericcloud"),
        _ => None,
    }
}

/// The target's builder image: for debian12 ezimg's base with the stage's build dependencies
/// (built on first use, cached); for el7/el9 the vendor image the caller found in the cache
/// (`opts.vendor_image`) and the offline dependencies (`opts.deps_from`).
pub fn base(stage: &Stage, opts: &BuildOptions) -> Result<BuilderBase> {
    let name = &stage.spec.name;
    let target = opts.target.as_str();
    let deps = stage.spec.build_deps.get(target).with_context(|| {
        format!(
            "stage {name}: [build_deps] has no list for target {target} ({}): the VM builder \
             installs only what the stage declares",
            stage.origin
        )
    })?;
    if target == "debian12" {
        let b = crate::image::base::ensure(BaseOs::Debian12, deps, &opts.cache_root, false)
            .with_context(|| format!("stage {name}: the debian12 builder base"))?;
        return Ok(BuilderBase::Own(Box::new(b)));
    }
    let Some(vendor) = vendor_image_name(target) else {
        bail!("stage {name}: the VM builder knows no image for target {target}");
    };
    let image = opts.vendor_image.clone().with_context(|| {
        format!(
            "stage {name}: the VM builder for {target} boots the vendor cloud image `{vendor}`, \
             which is not in the cache: `ezimg fetch {vendor}` where it can be downloaded, then \
             `ezimg export` / `ezimg import`"
        )
    })?;
    let deps_dir = opts.deps_from.clone().with_context(|| {
        format!(
            "stage {name}: the {target} builder VM has no network: give its build dependencies \
             ({}) as RPMs with --deps-from DIR (made on a {target} machine with \
             `yumdownloader --resolve --destdir DIR {}`)",
            deps.join(", "),
            deps.join(" ")
        )
    })?;
    let mut rpms: Vec<PathBuf> = std::fs::read_dir(&deps_dir)
        .with_context(|| format!("reading --deps-from {}", deps_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rpm"))
        .collect();
    rpms.sort();
    if rpms.is_empty() {
        bail!("--deps-from {}: no .rpm file in it", deps_dir.display());
    }
    let mut list = String::new();
    for r in &rpms {
        list.push_str(&format!(
            "{} {}\n",
            crate::digest::sha256_file(r)?,
            r.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    Ok(BuilderBase::Vendor {
        os: target.to_string(),
        sha256: crate::digest::sha256_file(&image)?,
        image,
        deps: deps_dir,
        deps_sha256: sha256_hex(list.as_bytes()),
    })
}

/// The builder's part of the cache key: the target, its image's digest (for debian12 it covers
/// the build dependencies and their versions; for el the offline RPMs' digests are added), the
/// recipe and the script.
pub fn identity(base: &BuilderBase) -> String {
    let script = &sha256_hex(BUILD_SH.as_bytes())[..16];
    match base {
        BuilderBase::Own(b) => format!(
            "vm: {} base sha256 {} ({RECIPE}, script {script})",
            b.manifest.os, b.manifest.sha256
        ),
        BuilderBase::Vendor {
            os,
            sha256,
            deps_sha256,
            ..
        } => format!(
            "vm: {os} image sha256 {sha256}, deps sha256 {deps_sha256} ({RECIPE}, script {script})"
        ),
    }
}

/// What one VM build needs.
pub struct Job<'a> {
    pub stage: &'a str,
    pub base: &'a BuilderBase,
    /// The host's work directory: `src/` prepared; `staging/` and `logs/` are filled from the VM.
    pub dir: &'a Path,
    pub steps: &'a [Step],
    pub jobs: usize,
    pub timeout: Duration,
    pub quiet: bool,
}

/// `steps.sh`: one `step SLUG NAME CWD ARGV...` line per command.
fn steps_script(steps: &[Step]) -> String {
    let mut s = String::from("# ezimg stage build: the steps, in order\n");
    for st in steps {
        let mut words = vec![
            shell_quote(&Step::slug(&st.name)),
            shell_quote(&st.name),
            shell_quote(&st.cwd.display().to_string()),
        ];
        words.extend(st.argv.iter().map(|a| shell_quote(a)));
        s.push_str("step ");
        s.push_str(&words.join(" "));
        s.push('\n');
    }
    s
}

/// Run the steps in a VM; on return `dir/staging` holds what the install wrote. A failing step
/// is reported like the host builder's: its name, command and the tail of its log.
pub fn compile(job: &Job, tail_lines: usize) -> Result<()> {
    process::require(&["xorriso", "tar", "qemu-img"], "building a stage in a VM")?;
    let name = job.stage;
    let vmdir = job.dir.join("vm");
    let data = vmdir.join("disk");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    process::run(
        Command::new("tar")
            .args(["-c", "--sort=name", "-f"])
            .arg(data.join("src.tar"))
            .arg("-C")
            .arg(job.dir)
            .arg("src"),
        "packing the prepared sources for the build VM (tar)",
    )?;
    if let BuilderBase::Vendor { deps, .. } = job.base {
        let to = data.join("deps");
        std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
        for e in std::fs::read_dir(deps).with_context(|| format!("reading {}", deps.display()))? {
            let p = e
                .with_context(|| format!("reading {}", deps.display()))?
                .path();
            if p.extension().is_some_and(|x| x == "rpm") {
                std::fs::copy(&p, to.join(p.file_name().unwrap_or_default()))
                    .with_context(|| format!("copying {} to the build disk", p.display()))?;
            }
        }
    }
    let guest = guest_root(job.dir);
    for (file, text) in [
        ("bake.sh", BUILD_SH.to_string()),
        (
            "stage.env",
            format!(
                "W={}\nsource_date_epoch={}\n",
                shell_quote(&guest.display().to_string()),
                super::cache::FIXED_MTIME
            ),
        ),
        ("steps.sh", steps_script(job.steps)),
    ] {
        let p = data.join(file);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    let iso = vmdir.join("build.iso");
    process::run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-V", "EZBUILD", "-o"])
            .arg(&iso)
            .arg(&data),
        "writing the build disk (xorriso)",
    )?;
    std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    let out = vmdir.join("out.raw");
    std::fs::File::create(&out)
        .and_then(|f| f.set_len(OUT_SIZE))
        .with_context(|| format!("creating the output disk {}", out.display()))?;
    let disk = vmdir.join("root.qcow2");
    let mut spec = VmSpec::new(&format!("ezimg-stage-{name}"), &vmdir);
    spec.mem_mib = 2048;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    spec.cpus = job.jobs.clamp(1, cpus) as u32;
    match job.base {
        // ezimg's base: its kernel straight into the base's bake entry point.
        BuilderBase::Own(b) => {
            vm::overlay(&b.image, &disk, None)?;
            spec.direct_kernel = Some(crate::image::base::bake_boot(
                &b.kernel,
                &b.initrd,
                &b.manifest.root_uuid,
            ));
            spec.disks = vec![Disk::qcow2(&disk)];
        }
        // A vendor image: its bootloader and cloud-init, with the bake's seed (room for the
        // build: the image's root grows to the overlay at first boot).
        BuilderBase::Vendor { image, sha256, .. } => {
            vm::overlay(image, &disk, Some(VENDOR_DISK))?;
            let seed = vmdir.join("seed.img");
            crate::image::bake::write_vendor_seed(&seed, &sha256[..16])?;
            spec.disks = vec![Disk::qcow2(&disk), Disk::raw_ro(&seed, "cidata")];
        }
    }
    spec.disks.extend([
        Disk::raw_ro(&iso, BUILD_DISK_SERIAL),
        Disk::raw_rw(&out, OUT_SERIAL),
    ]);
    let t = Instant::now();
    let mut guest = Vm::start(&spec)?;
    if !job.quiet {
        eprintln!(
            "stage {name}: building in a VM ({}, no network; console {})…",
            guest.accel,
            guest.serial_log().display()
        );
    }
    let verdict = guest
        .wait_for(job.timeout, |l| {
            if !job.quiet && (l.starts_with("STEP") || l.starts_with("BUILD")) {
                eprintln!(
                    "stage {name}: guest {:>5.0}s: {l}",
                    t.elapsed().as_secs_f64()
                );
            }
            l.starts_with("OK") || l.starts_with("FAIL")
        })
        .with_context(|| format!("stage {name}: building in the VM"))?;
    guest
        .wait_exit(Duration::from_secs(300))
        .with_context(|| format!("stage {name}: waiting for the build VM to power off"))?;
    drop(guest);
    let why = verdict.strip_prefix("FAIL ").map(str::to_string);
    let unpacked = process::run(
        Command::new("tar")
            .args(["-x", "--no-same-owner", "-f"])
            .arg(&out)
            .arg("-C")
            .arg(job.dir),
        "reading the build VM's output disk (tar)",
    );
    match (why, unpacked) {
        (None, Ok(_)) => {}
        (None, Err(e)) => return Err(e),
        (Some(why), _) => {
            if let Some(step) = why.strip_prefix("STEP ")
                && let Some(st) = job.steps.iter().find(|s| s.name == step)
            {
                let log = job
                    .dir
                    .join("logs")
                    .join(format!("{}.log", Step::slug(step)));
                bail!(
                    "stage {name}: step `{step}` failed in the {} VM: {}\n--- last {tail_lines} lines of {step} log ---\n{}",
                    job.base.os(),
                    st.argv.join(" "),
                    process::tail_file(&log, tail_lines)
                );
            }
            let deps_log = job.dir.join("logs/deps.log");
            if deps_log.exists() {
                bail!(
                    "stage {name}: the build VM failed: {why}\n--- last {tail_lines} lines of the dependency install ---\n{}",
                    process::tail_file(&deps_log, tail_lines)
                );
            }
            bail!("stage {name}: the build VM failed: {why}");
        }
    }
    if !job.quiet {
        eprintln!(
            "stage {name}: VM build done in {:.0}s",
            t.elapsed().as_secs_f64()
        );
    }
    // The overlay and the output disk are large and of no use once read.
    std::fs::remove_dir_all(&vmdir).with_context(|| format!("removing {}", vmdir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_quoted_one_line_each() {
        let steps = vec![
            Step {
                name: "configure".into(),
                argv: vec!["./configure".into(), "--with-cc-opt=-O2 -g".into()],
                cwd: "src/nginx-1.23.0".into(),
            },
            Step {
                name: "install #2".into(),
                argv: vec!["make".into(), "it's".into()],
                cwd: "src/x".into(),
            },
        ];
        let s = steps_script(&steps);
        let lines: Vec<&str> = s.lines().skip(1).collect();
        assert_eq!(lines.len(), 2, "{s}");
        assert!(
            lines[0].starts_with("step 'configure' 'configure' 'src/nginx-1.23.0' './configure' "),
            "{s}"
        );
        assert!(lines[0].contains("'--with-cc-opt=-O2 -g'"), "{s}");
        assert!(
            lines[1].starts_with("step 'install__2' 'install #2' "),
            "{s}"
        );
        // bash reads the quoting back to the same words.
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!("step() {{ printf '<%s>' \"$@\"; echo; }}\n{s}"))
            .output()
            .expect("bash");
        let got = String::from_utf8_lossy(&o.stdout);
        assert!(got.contains("<--with-cc-opt=-O2 -g>"), "{got}");
        assert!(got.contains("<install #2><src/x><make><it's>"), "{got}");
    }

    #[test]
    fn guest_root_keeps_the_work_directory_name() {
        assert_eq!(
            guest_root(Path::new("/tmp/x/ezimg-stage-nginx-0123456789abcdef")),
            Path::new("/build/ezimg-stage-nginx-0123456789abcdef")
        );
    }
}
