//! `ezimg base build`: build (or find in the cache) a base OS image.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::{BaseArgs, BaseCommand};
use crate::image::base::{cache_root, ensure};

/// `ezimg base …`.
pub fn run(a: &BaseArgs) -> Result<()> {
    match &a.command {
        BaseCommand::Build(b) => {
            let root = cache_root(b.cache_dir.as_deref())?;
            let base = ensure(b.os, &b.with, &root, b.rebuild)?;
            let m = &base.manifest;
            if base.cached {
                println!("cache hit: base {} ({:.2}s)", m.os, base.seconds);
            } else {
                println!("built: base {} ({:.0}s)", m.os, base.seconds);
            }
            println!(
                "  image    {} (sha256 {}, {} MiB, virtual {} GiB, kernel {}, {} packages)",
                base.image.display(),
                m.sha256,
                m.size >> 20,
                m.virtual_size >> 30,
                m.kernel,
                m.packages.len()
            );
            println!("  manifest {}", base.manifest_path.display());
            if let Some(out) = &b.out {
                if let Some(p) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(p)
                        .with_context(|| format!("creating {}", p.display()))?;
                }
                std::fs::copy(&base.image, out)
                    .with_context(|| format!("copying the image to {}", out.display()))?;
                let mut mj = out.as_os_str().to_owned();
                mj.push(".json");
                std::fs::copy(&base.manifest_path, &mj).with_context(|| {
                    format!("copying the manifest to {}", Path::new(&mj).display())
                })?;
                println!("  copied to {}", out.display());
            }
            Ok(())
        }
    }
}
