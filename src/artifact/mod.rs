//! External artifacts: the lock (`artifacts.lock`), a content-addressed cache, and a fetcher
//! that only ever hands out files whose digest matched the lock.
//!
//! Library entry points for other modules:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ezimg::artifact::{self, Cache, FetchOptions, Lock};
//! let lock = Lock::discover(None, None)?;
//! let opts = FetchOptions::new(Cache::resolve(None)?);
//! for (name, path) in artifact::ensure(&lock, &["nginx", "pcre"], &opts)? {
//!     println!("{name} -> {}", path.display());
//! }
//! # Ok(()) }
//! ```

pub mod archive;
pub mod cache;
pub mod fetch;
pub mod gittree;
pub mod lock;
pub mod mirror;
mod progress;
pub mod record;
pub mod rpmsig;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub use crate::digest::{Digest, Sha256Digest, Sha512Digest};
pub use cache::Cache;
pub use lock::{Artifact, Check, KeyPin, Kind, Lock};
pub use mirror::Mirror;
pub use progress::Progress;

use fetch::Fetched;
use progress::Reporter;

/// How [`ensure`] gets artifacts.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub cache: Cache,
    /// Replace the lock's URLs with these (tried in order).
    pub mirrors: Vec<Mirror>,
    /// Use the cache only.
    pub offline: bool,
    /// Download pins that have no digest at all, unchecked (trust on first use). Only
    /// `ezimg lock` does, and records what it got; `fetch` and `build --fetch` send such pins
    /// to `ezimg lock` instead, so every cached file is one the lock can name.
    pub allow_unverified: bool,
    /// Downloads at once.
    pub jobs: usize,
    /// Retries per source after the first attempt (5xx, timeouts, resets, short bodies).
    pub retries: u32,
    pub connect_timeout: Duration,
    /// Longest wait for a response or for the next bytes of a body.
    pub timeout: Duration,
    /// First retry delay; doubles each retry (capped at 30 s).
    pub backoff: Duration,
    pub progress: Progress,
    /// Rehash cache hits before returning them.
    pub verify_cached: bool,
}

impl FetchOptions {
    pub fn new(cache: Cache) -> FetchOptions {
        FetchOptions {
            cache,
            mirrors: Vec::new(),
            offline: false,
            allow_unverified: false,
            jobs: 4,
            retries: 5,
            connect_timeout: Duration::from_secs(15),
            timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(500),
            progress: Progress::Auto,
            verify_cached: false,
        }
    }
}

/// The lock entries for `names`; an unknown name is an error naming the lock.
pub fn resolve<'a>(lock: &'a Lock, names: &[impl AsRef<str>]) -> Result<Vec<&'a Artifact>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for n in names {
        let n = n.as_ref();
        match lock.find(n) {
            Some(a) => {
                if seen.insert(n) {
                    out.push(a);
                }
            }
            None => unknown.push(n),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{}: no artifact named {} (known: {})",
            lock.origin,
            unknown.join(", "),
            lock.names().join(", ")
        );
    }
    Ok(out)
}

fn describe(a: &Artifact, cache: &Cache) -> String {
    let digest = match (cache.known_sha256(a), &a.sha512) {
        (Some(d), _) => d.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "no digest recorded".into(),
    };
    format!("{} ({}, {digest})", a.name, a.file)
}

/// Make every named artifact present and verified in the cache; returns `(name, path)` in the
/// order asked (duplicates once). Downloads run in parallel (`jobs`); a failure of one does not
/// stop the others, and the error lists every artifact that failed.
///
/// Builds its own tokio runtime: from async code call [`ensure_async`].
pub fn ensure(
    lock: &Lock,
    names: &[impl AsRef<str>],
    opts: &FetchOptions,
) -> Result<Vec<(String, PathBuf)>> {
    if tokio::runtime::Handle::try_current().is_ok() {
        bail!("artifact::ensure called inside a tokio runtime; use ensure_async");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.jobs.clamp(2, 8))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(ensure_async(lock, names, opts))
}

/// Async form of [`ensure`].
pub async fn ensure_async(
    lock: &Lock,
    names: &[impl AsRef<str>],
    opts: &FetchOptions,
) -> Result<Vec<(String, PathBuf)>> {
    let arts = resolve(lock, names)?;
    let reporter = Arc::new(Reporter::new(opts.progress));
    if !opts.allow_unverified {
        // A pin with no digest and no content check (git tree, signature): nothing to check a
        // download against. `ezimg lock` is the one trust-on-first-use step: it records the
        // sha256, and from then on the pin is checked.
        let refused: Vec<&Artifact> = arts
            .iter()
            .copied()
            .filter(|a| {
                !a.has_digest() && a.check.is_none() && opts.cache.known_sha256(a).is_none()
            })
            .collect();
        if !refused.is_empty() {
            bail!(
                "no digest recorded in {} for (upstream publishes none):\n    {}\n\
                 `ezimg lock {}` fetches each once (add --mirror URL|DIR to take it from a \
                 mirror), records its sha256 (trust on first use, said loudly) and caches it; \
                 review the recorded digests, then fetch and build check against them",
                lock.origin,
                refused
                    .iter()
                    .map(|a| describe(a, &opts.cache))
                    .collect::<Vec<_>>()
                    .join("\n    "),
                refused
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    for a in arts.iter().filter(|a| !a.verified && a.has_digest()) {
        reporter.warn(&format!(
            "{}: checked against the sha256 recorded on first use in {} (upstream publishes \
             none)",
            a.name, lock.origin
        ));
    }
    let mut found: Vec<Option<PathBuf>> = Vec::with_capacity(arts.len());
    for a in &arts {
        let mut hit = opts.cache.lookup(a);
        if let (Some(p), true) = (&hit, opts.verify_cached)
            && let Err(e) = opts.cache.verify_entry(p, a.sha512.is_some())
        {
            reporter.warn(&format!("{}: {e:#}", a.name));
            hit = None;
        }
        found.push(hit);
    }
    let missing: Vec<usize> = (0..arts.len()).filter(|&i| found[i].is_none()).collect();
    if opts.offline && !missing.is_empty() {
        bail!(
            "offline: {} artifact(s) not in the cache {}:\n    {}",
            missing.len(),
            opts.cache.root().display(),
            missing
                .iter()
                .map(|&i| describe(arts[i], &opts.cache))
                .collect::<Vec<_>>()
                .join("\n    ")
        );
    }
    let todo: Vec<Artifact> = missing.iter().map(|&i| arts[i].clone()).collect();
    let results = fetch_many(todo, opts, reporter.clone()).await?;
    let mut errors = Vec::new();
    for (&i, (a, res)) in missing.iter().zip(results) {
        match res {
            Ok(f) => {
                if !a.has_digest() && a.check.is_none() && opts.cache.known_sha256(&a).is_none() {
                    reporter.warn(&format!(
                        "{}: TRUST ON FIRST USE: no digest in {}; accepted {} from {} \
                         unchecked. Run `ezimg lock` to pin it.",
                        a.name, lock.origin, f.hashes.sha256, f.source
                    ));
                }
                found[i] = Some(f.path);
            }
            Err(e) => errors.push(format!("{} ({}): {e:#}", a.name, a.file)),
        }
    }
    if !errors.is_empty() {
        bail!(
            "could not fetch {} of {} artifact(s):\n  {}",
            errors.len(),
            arts.len(),
            errors.join("\n  ")
        );
    }
    Ok(arts
        .iter()
        .zip(found)
        .filter_map(|(a, p)| p.map(|p| (a.name.clone(), p)))
        .collect())
}

/// Fetch `arts` in parallel; one result per artifact, in order.
async fn fetch_many(
    arts: Vec<Artifact>,
    opts: &FetchOptions,
    reporter: Arc<Reporter>,
) -> Result<Vec<(Artifact, Result<Fetched>)>> {
    if arts.is_empty() {
        return Ok(Vec::new());
    }
    opts.cache.init()?;
    let client = fetch::client(opts)?;
    let opts = Arc::new(opts.clone());
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, a) in arts.iter().cloned().enumerate() {
        let (client, opts, reporter, sem) =
            (client.clone(), opts.clone(), reporter.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, fetch::fetch_one(client, opts, a, reporter).await)
        });
    }
    let mut out: Vec<Option<Result<Fetched>>> = (0..arts.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.context("a download task panicked")?;
        out[i] = Some(r);
    }
    Ok(arts
        .into_iter()
        .zip(out)
        .map(|(a, r)| (a, r.unwrap_or_else(|| Err(anyhow::anyhow!("not run")))))
        .collect())
}

/// What `ezimg lock` learnt about a pin.
#[derive(Debug, Clone)]
pub struct Learnt {
    pub record: lock::Record,
    pub source: String,
    /// The pin has no public digest: this sha256 is trust on first use.
    pub tofu: bool,
    /// What verified the file (`sha512`, a git tree, a signature), when not trust on first use.
    pub how: String,
}

fn how(a: &Artifact) -> String {
    a.check
        .as_ref()
        .map_or_else(|| "sha512".to_string(), lock::Check::describe)
}

/// For every named pin without a sha256 (unverified pins, sha512-only pins), get the file
/// (verifying the sha512 when there is one) and return its sha256 and size.
pub async fn learn_digests(
    lock: &Lock,
    names: &[impl AsRef<str>],
    opts: &FetchOptions,
) -> Result<Vec<Learnt>> {
    let arts = resolve(lock, names)?;
    let reporter = Arc::new(Reporter::new(opts.progress));
    let mut out = Vec::new();
    let mut todo = Vec::new();
    for a in arts.into_iter().filter(|a| a.sha256.is_none()) {
        match opts.cache.lookup(a) {
            Some(p) => {
                // Known through a verified sha512 alias: rehash to be sure.
                let h = opts.cache.verify_entry(&p, true)?;
                out.push(Learnt {
                    record: lock::Record {
                        name: a.name.clone(),
                        sha256: h.sha256,
                        size: h.size,
                    },
                    source: "cache".into(),
                    tofu: !a.verified,
                    how: how(a),
                });
            }
            None if opts.offline => bail!(
                "offline: {} is not in the cache {}",
                describe(a, &opts.cache),
                opts.cache.root().display()
            ),
            None => todo.push(a.clone()),
        }
    }
    let mut errors = Vec::new();
    for (a, res) in fetch_many(todo, opts, reporter).await? {
        match res {
            Ok(f) => out.push(Learnt {
                record: lock::Record {
                    name: a.name.clone(),
                    sha256: f.hashes.sha256,
                    size: f.hashes.size,
                },
                source: f.source,
                tofu: !a.verified,
                how: how(&a),
            }),
            Err(e) => errors.push(format!("{}: {e:#}", a.name)),
        }
    }
    if !errors.is_empty() {
        bail!("could not fetch:\n  {}", errors.join("\n  "));
    }
    let order: Vec<String> = lock.names();
    out.sort_by_key(|l| order.iter().position(|n| *n == l.record.name));
    Ok(out)
}
