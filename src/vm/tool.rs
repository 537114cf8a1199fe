//! Running external tools (mmdebstrap, mkfs, qemu-img, …): the error names the command and
//! carries the tail of its standard error, as bootc's `CommandRunExt`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};

/// Lines of a failing tool's stderr kept in the error.
pub const TAIL_LINES: usize = 30;

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 300 {
        s.truncate(300);
        s.push('…');
    }
    s
}

/// Run `cmd` to completion with its output captured; fail with `what`, the command line and
/// the tail of stderr (or stdout when stderr is empty) unless it exits 0.
pub fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| {
            format!("{what}: cannot run `{line}` (is it installed? see scripts/vm-deps.sh)")
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let text = if err.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            err.into_owned()
        };
        anyhow::bail!(
            "{what} failed ({}): `{line}`\n--- last lines of its output ---\n{}",
            out.status,
            tail_lines(&text, TAIL_LINES)
        );
    }
    Ok(out)
}

/// Like [`run`], returning stdout as text.
pub fn run_stdout(cmd: &mut Command, what: &str) -> Result<String> {
    let out = run(cmd, what)?;
    String::from_utf8(out.stdout).with_context(|| format!("{what}: output is not UTF-8"))
}

/// True if `prog` can be found (absolute path, or on PATH plus the sbin directories).
pub fn have(prog: &str) -> bool {
    if prog.contains('/') {
        return Path::new(prog).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .any(|d| d.join(prog).is_file())
}

/// Fail with the setup script's name unless every tool in `progs` is there.
pub fn require(progs: &[&str], what: &str) -> Result<()> {
    let missing: Vec<&str> = progs.iter().copied().filter(|p| !have(p)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{what} needs {} (run scripts/vm-deps.sh as root to install them)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// True when running as root (uid 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// `qemu-img convert -O qcow2 -c SRC DST` (compressed; only allocated clusters are stored).
pub fn qcow2_compress(src: &Path, src_format: &str, dst: &Path) -> Result<()> {
    run(
        Command::new("qemu-img")
            .args(["convert", "-f", src_format, "-O", "qcow2", "-c"])
            .arg(src)
            .arg(dst),
        "compressing the image (qemu-img convert)",
    )?;
    Ok(())
}

/// Virtual size in bytes of a disk image (`qemu-img info`).
pub fn virtual_size(path: &Path) -> Result<u64> {
    let text = run_stdout(
        Command::new("qemu-img")
            .args(["info", "--output=json", "-U"])
            .arg(path),
        "reading the image size (qemu-img info)",
    )?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("qemu-img info {}: not JSON", path.display()))?;
    v.get("virtual-size")
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("qemu-img info {}: no virtual-size", path.display()))
}

/// Read and parse a JSON file (cache manifests).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Hold an exclusive lock on `path` (created if missing) until the returned file is dropped:
/// two ezimg processes building the same base or bake wait for each other instead of doing
/// the same minutes of work twice. Says so when it has to wait.
pub fn lock_exclusive(path: &Path, what: &str) -> Result<std::fs::File> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "ezimg: waiting for another ezimg {what} ({})",
                path.display()
            );
            f.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    Ok(f)
}

/// A fresh `.work-*` folder inside the cache folder `dir` (created if missing): same
/// filesystem as the entries it becomes, so publishing them is a rename. Removed on drop.
pub fn work_dir(dir: &Path) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a work directory in {}", dir.display()))
}
