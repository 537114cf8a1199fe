//! sha256 of a 1 GiB file, side by side: ezimg's hashing (sha2 0.11, SHA-NI when the CPU has it)
//! vs `sha256sum` vs `openssl dgst -sha256`. Best of 3 runs each on a warm page cache.
//!
//!     cargo bench --bench hash            # EZIMG_BENCH_MIB=256 for a smaller file
//!
//! The file is made in the system temp dir and removed at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ezimg::digest::{hash_file, sha_ni_available};

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn make_file(path: &Path, mib: usize) -> Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&(x ^ i as u64).to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&block)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    f.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn external(cmd: &str, args: &[&str], path: &Path) -> Result<(Duration, String)> {
    let t = Instant::now();
    let out = Command::new(cmd)
        .args(args)
        .arg(path)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!("{cmd} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // sha256sum: "<hex>  path"; openssl: "SHA2-256(path)= <hex>"
    let hex = text
        .split(|c: char| c.is_whitespace() || c == '=')
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .with_context(|| format!("{cmd}: no digest in {text:?}"))?
        .to_string();
    Ok((took, hex))
}

fn best<T>(n: usize, mut f: impl FnMut() -> Result<(Duration, T)>) -> Result<(Duration, T)> {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..n {
        let r = f()?;
        if best.as_ref().is_none_or(|b| r.0 < b.0) {
            best = Some(r);
        }
    }
    best.context("no run")
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let mib: usize = std::env::var("EZIMG_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let file =
        TempFile(std::env::temp_dir().join(format!("ezimg-hash-bench-{}", std::process::id())));
    make_file(&file.0, mib)?;
    let gib = mib as f64 / 1024.0;
    // Warm the page cache so every tool reads from memory.
    hash_file(&file.0, false)?;
    println!(
        "sha256 of {mib} MiB ({}), best of 3; SHA-NI: {}",
        file.0.display(),
        if sha_ni_available() {
            "yes (sha2 uses it via cpufeatures)"
        } else {
            "no (software/AVX2 path)"
        }
    );
    let (t_ez, d_ez) = best(3, || {
        let t = Instant::now();
        let h = hash_file(&file.0, false)?;
        Ok((t.elapsed(), h.sha256.hex()))
    })?;
    let (t_sum, d_sum) = best(3, || external("sha256sum", &[], &file.0))?;
    let (t_ssl, d_ssl) = best(3, || external("openssl", &["dgst", "-sha256"], &file.0))?;
    if d_ez != d_sum || d_ez != d_ssl {
        bail!("digests differ: ezimg {d_ez}, sha256sum {d_sum}, openssl {d_ssl}");
    }
    let rate = |t: Duration| gib / t.as_secs_f64();
    println!(
        "{:<22} {:>9} {:>10} {:>16}",
        "tool", "seconds", "GiB/s", "speed vs openssl"
    );
    for (name, t) in [
        ("ezimg (sha2 0.11)", t_ez),
        ("sha256sum", t_sum),
        ("openssl dgst -sha256", t_ssl),
    ] {
        println!(
            "{name:<22} {:>9.3} {:>10.2} {:>15.2}x",
            t.as_secs_f64(),
            rate(t),
            t_ssl.as_secs_f64() / t.as_secs_f64()
        );
    }
    let ratio = t_ssl.as_secs_f64() / t_ez.as_secs_f64();
    println!(
        "ezimg / openssl throughput: {ratio:.2}x (goal >= 0.95x): {}",
        if ratio >= 0.95 { "met" } else { "NOT met" }
    );
    Ok(())
}
