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
//! dependencies are installed by mmdebstrap, so dpkg never runs under TCG). el7/el9 would boot
//! the pinned vendor cloud image with the build dependencies from an offline repository; that
//! half is not built yet and says so.

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
use crate::vm::{self, Disk, Vm, VmSpec};

/// The script the VM runs (as the base's `bake.sh`).
const BUILD_SH: &str = include_str!("vm-build.sh");
/// Bumped when the VM builder changes what a key produces in a way its inputs do not show.
const RECIPE: &str = "stage-vm-v1";
/// Where the work directory is in the guest.
const GUEST_DIR: &str = "/build";
/// Serial of the build disk: the base's bake entry point mounts `virtio-ezbake` and runs its
/// `bake.sh`.
const BUILD_DISK_SERIAL: &str = "ezbake";
/// Serial of the raw output disk: `/dev/disk/by-id/virtio-ezout` in the guest.
const OUT_SERIAL: &str = "ezout";
/// Room for `staging/` and `logs/` (a sparse file: only what is written takes space).
const OUT_SIZE: u64 = 4 << 30;

/// The work directory's path in the guest: `/build/<name of the host's work directory>`.
pub fn guest_root(dir: &Path) -> PathBuf {
    Path::new(GUEST_DIR).join(dir.file_name().unwrap_or_default())
}

/// The target's base image with the stage's build dependencies (built on first use, cached).
pub fn base(stage: &Stage, target: &str, cache_root: &Path) -> Result<Base> {
    let name = &stage.spec.name;
    let deps = stage.spec.build_deps.get(target).with_context(|| {
        format!(
            "stage {name}: [build_deps] has no list for target {target} ({}): the VM builder \
             installs only what the stage declares",
            stage.origin
        )
    })?;
    match target {
        "debian12" => crate::image::base::ensure(BaseOs::Debian12, deps, cache_root, false)
            .with_context(|| format!("stage {name}: the debian12 builder base")),
        other => bail!(
            "stage {name}: the VM builder for {other} needs the {other} cloud image and the \
             build dependencies ({}) as an offline repository; only debian12 (ezimg's own base) \
             is built yet. Build the stage on an {other} machine, or use the distro package \
             (role param *_source = \"distro\")",
            deps.join(", ")
        ),
    }
}

/// The builder's part of the cache key: the target, its base image's digest (which covers the
/// build dependencies and their versions), the recipe and the script.
pub fn identity(target: &str, base: &Base) -> String {
    format!(
        "vm: {target} base sha256 {} ({RECIPE}, script {})",
        base.manifest.sha256,
        &sha256_hex(BUILD_SH.as_bytes())[..16]
    )
}

/// What one VM build needs.
pub struct Job<'a> {
    pub stage: &'a str,
    pub base: &'a Base,
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
    vm::overlay(&job.base.image, &disk, None)?;

    let mut spec = VmSpec::new(&format!("ezimg-stage-{name}"), &vmdir);
    spec.mem_mib = 2048;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    spec.cpus = job.jobs.clamp(1, cpus) as u32;
    spec.direct_kernel = Some(vm::DirectKernel {
        kernel: job.base.kernel.clone(),
        initrd: job.base.initrd.clone(),
        cmdline: format!(
            "root=UUID={} rw console=ttyS0,115200n8 systemd.run=/{} \
             systemd.run_failure_action=poweroff-force",
            job.base.manifest.root_uuid,
            crate::image::base::BAKE_BOOT
        ),
    });
    spec.disks = vec![
        Disk::qcow2(&disk),
        Disk::raw_ro(&iso, BUILD_DISK_SERIAL),
        Disk::raw_rw(&out, OUT_SERIAL),
    ];
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
                    job.base.manifest.os,
                    st.argv.join(" "),
                    process::tail_file(&log, tail_lines)
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
