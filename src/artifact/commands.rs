//! The artifact subcommands (`fetch`, `lock`, `export`, `import`); `crate::commands` calls these.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Cache, FetchOptions, Lock, Mirror, Progress, archive, lock};
use crate::cli::{
    ArtifactSelection, ArtifactStore, ExportArgs, FetchArgs, Global, ImportArgs, LockArgs, NetArgs,
    ProgressMode,
};

fn load_lock(g: &Global, s: &ArtifactStore) -> Result<Lock> {
    let (lock, why) = Lock::resolve(s.lock.as_deref(), g.data.as_deref(), g.cluster.as_deref())?;
    eprintln!("lock: {} ({why})", lock.origin);
    Ok(lock)
}

fn options(cache: Cache, net: &NetArgs) -> Result<FetchOptions> {
    let mut o = FetchOptions::new(cache);
    o.mirrors = net
        .mirror
        .iter()
        .map(|m| m.parse::<Mirror>())
        .collect::<Result<_>>()?;
    if net.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    o.jobs = net.jobs;
    o.retries = net.retries;
    o.timeout = Duration::from_secs(net.timeout.max(1));
    o.progress = match net.progress {
        ProgressMode::Auto => Progress::Auto,
        ProgressMode::Bars => Progress::Bars,
        ProgressMode::Plain => Progress::Plain,
        ProgressMode::Quiet => Progress::Quiet,
    };
    Ok(o)
}

fn selection(
    g: &Global,
    lock: &Lock,
    s: &ArtifactSelection,
    default_all: bool,
) -> Result<Vec<String>> {
    if s.role.is_empty() && !s.all && s.names.is_empty() {
        if default_all {
            return Ok(lock.names());
        }
        bail!("say which artifacts: NAME…, --role ROLE or --all");
    }
    crate::pins::select(lock, g.data.as_deref(), &s.role, s.all, &s.names)
}

/// `ezimg fetch`: print `name<TAB>path` of each verified file on stdout.
pub fn fetch(g: &Global, a: &FetchArgs) -> Result<()> {
    let lock = load_lock(g, &a.store)?;
    let names = selection(g, &lock, &a.select, false)?;
    let mut opts = options(Cache::resolve(a.store.cache_dir.as_deref())?, &a.net)?;
    opts.offline = a.offline;
    opts.verify_cached = a.verify;
    let got = super::ensure(&lock, &names, &opts)?;
    let mut out = std::io::stdout().lock();
    for (name, path) in got {
        writeln!(out, "{name}\t{}", path.display()).context("writing to standard output")?;
    }
    Ok(())
}

/// `ezimg lock`: learn the sha256 of pins that have none and write it into the lock file.
pub fn lock(g: &Global, a: &LockArgs) -> Result<()> {
    // Where the digests go: the lock in use, or a new file that the lock rule will read next.
    let (lk, path, new) = match &a.store.lock {
        Some(p) if !p.exists() => {
            let (base, why) = Lock::resolve(None, g.data.as_deref(), g.cluster.as_deref())?;
            eprintln!(
                "lock: {} does not exist yet: it will be {} ({why}) with the digests learnt",
                p.display(),
                base.origin
            );
            (base, p.clone(), true)
        }
        _ => {
            let lk = load_lock(g, &a.store)?;
            match (&lk.path, &g.cluster) {
                (Some(p), _) => {
                    let p = p.clone();
                    (lk, p, false)
                }
                (None, Some(c)) => {
                    let p = c.with_file_name("artifacts.lock");
                    (lk, p, true)
                }
                (None, None) => bail!(
                    "the lock in use is the one embedded in ezimg, which cannot record digests: \
                     `ezimg lock --lock FILE` writes a copy with them to FILE (then give \
                     `--lock FILE` or EZIMG_LOCK to check, build and fetch), or with \
                     `-c CLUSTER` it goes beside the cluster file, where they find it"
                ),
            }
        }
    };
    let names: Vec<String> = if a.names.is_empty() {
        lk.artifacts
            .iter()
            .filter(|x| x.sha256.is_none())
            .map(|x| x.name.clone())
            .collect()
    } else {
        a.names.clone()
    };
    if a.check {
        let lacking: Vec<&str> = names
            .iter()
            .filter_map(|n| lk.find(n))
            .filter(|x| x.sha256.is_none())
            .map(|x| x.name.as_str())
            .collect();
        if !lacking.is_empty() {
            bail!(
                "{}: no sha256 recorded for {}",
                lk.origin,
                lacking.join(", ")
            );
        }
        eprintln!("ezimg: {}: every pin has a sha256", lk.origin);
        return Ok(());
    }
    if names.is_empty() {
        eprintln!(
            "ezimg: {}: every pin has a sha256; nothing to do",
            lk.origin
        );
        return Ok(());
    }
    let mut opts = options(Cache::resolve(a.store.cache_dir.as_deref())?, &a.net)?;
    opts.offline = a.offline;
    opts.allow_unverified = true;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let learnt = rt.block_on(super::learn_digests(&lk, &names, &opts))?;
    for l in &learnt {
        if l.tofu {
            eprintln!(
                "ezimg: WARNING: TRUST ON FIRST USE: {} has no published digest; recording {} \
                 ({} bytes) as downloaded from {}. Check it against another source before \
                 committing {}.",
                l.record.name,
                l.record.sha256,
                l.record.size,
                l.source,
                path.display()
            );
        } else {
            eprintln!(
                "ezimg: {}: {} verified; recording {} ({} bytes)",
                l.record.name, l.how, l.record.sha256, l.record.size
            );
        }
    }
    let records: Vec<lock::Record> = learnt.into_iter().map(|l| l.record).collect();
    if new {
        std::fs::write(&path, &lk.text)
            .with_context(|| format!("writing the new lock {}", path.display()))?;
        eprintln!("ezimg: wrote {} (a copy of {})", path.display(), lk.origin);
    }
    lock::write_records(&path, &records)?;
    eprintln!(
        "ezimg: recorded {} digest(s) in {}",
        records.len(),
        path.display()
    );
    Ok(())
}

/// `ezimg export FILE`.
pub fn export(g: &Global, a: &ExportArgs) -> Result<()> {
    let lk = load_lock(g, &a.store)?;
    let names = selection(g, &lk, &a.select, true)?;
    let cache = Cache::resolve(a.store.cache_dir.as_deref())?;
    let sum = archive::export(&lk, &cache, &names, &a.file, a.allow_missing)?;
    if !sum.missing.is_empty() {
        eprintln!(
            "ezimg: WARNING: not cached, left out: {}",
            sum.missing.join(", ")
        );
    }
    eprintln!(
        "ezimg: wrote {} ({} artifact(s), {} bytes, and the lock)",
        a.file.display(),
        sum.exported.len(),
        sum.bytes
    );
    Ok(())
}

/// `ezimg import FILE`.
pub fn import(a: &ImportArgs) -> Result<()> {
    let cache = Cache::resolve(a.cache_dir.as_deref())?;
    let sum = archive::import(&cache, &a.file)?;
    if let (Some(out), Some(text)) = (&a.lock_out, &sum.lock_text) {
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    eprintln!(
        "ezimg: imported {} entr{} into {} ({} already there)",
        sum.added.len(),
        if sum.added.len() == 1 { "y" } else { "ies" },
        cache.root().display(),
        sum.already.len()
    );
    Ok(())
}
