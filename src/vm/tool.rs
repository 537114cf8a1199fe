//! qemu-img helpers. Running programs lives in [`crate::process`], file hashing in
//! [`crate::digest`]; the two re-exports below keep the VM test harness's paths working.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

pub use crate::digest::sha256_file;
pub use crate::process::is_root;
use crate::process::{run, run_stdout};

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
