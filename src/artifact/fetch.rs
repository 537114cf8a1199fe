//! Downloading one artifact: retries with backoff, resume with HTTP Range, hashing while
//! streaming, and a rename into the cache only after the digest matched (and, for pins verified
//! by content, after the git tree or the OpenPGP signature checked out).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};

use super::FetchOptions;
use super::cache::Cache;
use super::lock::{Artifact, Check};
use super::mirror::{Source, sources};
use super::progress::{Reporter, Task};
use super::{gittree, rpmsig};
use crate::digest::{Hasher, Hashes, Sha256Digest, Sha512Digest};

/// What one artifact's fetch produced.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: PathBuf,
    pub hashes: Hashes,
    /// Where the bytes came from.
    pub source: String,
}

/// The digests a download must match, and the content check it must pass (none at all: trust
/// on first use).
#[derive(Debug, Clone)]
pub(crate) struct Want {
    pub name: String,
    pub sha256: Option<Sha256Digest>,
    pub sha512: Option<Sha512Digest>,
    pub size: Option<u64>,
    pub check: Option<Check>,
}

impl Want {
    pub fn of(a: &Artifact, cache: &Cache) -> Want {
        if !a.bytes_pinned() {
            // A commit archive: any bytes that unpack to the pinned tree will do.
            return Want {
                name: a.name.clone(),
                sha256: None,
                sha512: None,
                size: None,
                check: a.check.clone(),
            };
        }
        Want {
            name: a.name.clone(),
            sha256: cache.known_sha256(a),
            sha512: a.sha512,
            size: a.size,
            check: a.check.clone(),
        }
    }
    fn key(&self) -> String {
        match (&self.sha256, &self.sha512, &self.check) {
            (Some(d), _, _) => d.hex(),
            (None, Some(d), _) => format!("sha512-{}", d.hex()),
            (None, None, Some(Check::GitTree(id))) => format!("gittree-{}", id.hex()),
            (None, None, Some(Check::Signature(_))) => format!("signed-{}", self.name),
            (None, None, None) => format!("tofu-{}", self.name),
        }
    }
    /// None when `h` is what was pinned, else why not.
    fn mismatch(&self, h: &Hashes) -> Option<String> {
        if let Some(s) = self.size
            && s != h.size
        {
            return Some(format!("size is {} bytes, the lock says {s}", h.size));
        }
        if let Some(d) = &self.sha256
            && *d != h.sha256
        {
            return Some(format!("expected {d}, got {} ({} bytes)", h.sha256, h.size));
        }
        if let (Some(d), Some(got)) = (&self.sha512, &h.sha512)
            && d != got
        {
            return Some(format!("expected {d}, got {got} ({} bytes)", h.size));
        }
        None
    }
}

pub(crate) fn client(opts: &FetchOptions) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .user_agent(concat!("ezimg/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("creating the HTTP client")
}

/// A partial download in `tmp/`, and the hash of what it holds so far.
pub(crate) struct Partial {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Hasher,
    with512: bool,
    /// The file held bytes from an earlier attempt or run.
    resumed: bool,
}

impl Partial {
    pub(crate) async fn open(path: PathBuf, with512: bool) -> Result<Partial> {
        let p = path.clone();
        let (file, hasher) = tokio::task::spawn_blocking(move || -> Result<(File, Hasher)> {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .with_context(|| format!("opening {}", p.display()))?;
            let mut h = Hasher::new(with512);
            h.read_all(&mut f)
                .with_context(|| format!("reading {}", p.display()))?;
            f.seek(SeekFrom::End(0))
                .with_context(|| format!("seeking {}", p.display()))?;
            Ok((f, h))
        })
        .await
        .context("hashing a partial download")??;
        let resumed = !hasher.is_empty();
        Ok(Partial {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher,
            with512,
            resumed,
        })
    }
    /// The digests of the complete file (call after [`Partial::flush`]).
    pub(crate) fn finish(self) -> Hashes {
        self.hasher.finish()
    }
    pub(crate) fn len(&self) -> u64 {
        self.hasher.len()
    }
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write_all(data)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.hasher.update(data);
        Ok(())
    }
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.flush()?;
        let f = self.out.get_mut();
        f.set_len(0)
            .with_context(|| format!("truncating {}", self.path.display()))?;
        f.seek(SeekFrom::Start(0))
            .with_context(|| format!("seeking {}", self.path.display()))?;
        self.hasher = Hasher::new(self.with512);
        self.resumed = false;
        Ok(())
    }
}

enum AttemptErr {
    /// Worth trying again (5xx, timeouts, resets, short bodies).
    Retry(anyhow::Error),
    /// Not (4xx, too many bytes, a local write error).
    Fatal(anyhow::Error),
}

fn retry(e: impl Into<anyhow::Error>) -> AttemptErr {
    AttemptErr::Retry(e.into())
}
fn fatal(e: impl Into<anyhow::Error>) -> AttemptErr {
    AttemptErr::Fatal(e.into())
}

/// `bytes START-END/TOTAL` or `bytes */TOTAL` → (start, total).
pub(crate) fn parse_content_range(v: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    let start = if range.trim() == "*" {
        None
    } else {
        Some(range.split_once('-')?.0.trim().parse().ok()?)
    };
    Some((start, total))
}

/// One HTTP request, streaming into `part` from its current length.
async fn attempt(
    client: &reqwest::Client,
    url: &Url,
    part: &mut Partial,
    want: &Want,
    opts: &FetchOptions,
    task: &Task,
) -> Result<(), AttemptErr> {
    let have = part.len();
    if want.size.is_some_and(|s| have > s) {
        part.reset().map_err(fatal)?;
    }
    let have = part.len();
    let mut req = client.get(url.clone());
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
    }
    let resp = match tokio::time::timeout(opts.timeout, req.send()).await {
        Err(_) => {
            return Err(retry(anyhow!("no response within {:?}", opts.timeout)));
        }
        Ok(Err(e)) => return Err(retry(anyhow!(e).context("sending the request"))),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let content_range = resp
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range);
    let total = match status {
        StatusCode::PARTIAL_CONTENT if have > 0 => match content_range {
            Some((Some(start), total)) if start == have => total,
            _ => {
                part.reset().map_err(fatal)?;
                return Err(retry(anyhow!(
                    "server answered a range request with an unexpected Content-Range"
                )));
            }
        },
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
            let total = content_range.and_then(|(_, t)| t).or(want.size);
            if total == Some(have) {
                return Ok(()); // the partial file is already complete
            }
            part.reset().map_err(fatal)?;
            return Err(retry(anyhow!("range not satisfiable; starting over")));
        }
        s if s.is_success() => {
            if have > 0 {
                // The server ignored the range: start over.
                part.reset().map_err(fatal)?;
            }
            resp.content_length()
        }
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::TOO_MANY_REQUESTS =>
        {
            return Err(retry(anyhow!("HTTP {s}")));
        }
        s => return Err(fatal(anyhow!("HTTP {s}"))),
    };
    if let (Some(t), Some(s)) = (total, want.size)
        && t != s
    {
        return Err(fatal(anyhow!(
            "server says the file is {t} bytes, the lock says {s}"
        )));
    }
    task.set_length(total.or(want.size));
    task.set_position(part.len());
    let mut stream = resp.bytes_stream();
    loop {
        match tokio::time::timeout(opts.timeout, stream.next()).await {
            Err(_) => {
                part.flush().map_err(fatal)?;
                return Err(retry(anyhow!(
                    "stalled: no data for {:?} after {} bytes",
                    opts.timeout,
                    part.len()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                part.flush().map_err(fatal)?;
                return Err(retry(
                    anyhow!(e).context(format!("reading the body after {} bytes", part.len())),
                ));
            }
            Ok(Some(Ok(chunk))) => {
                let limit = total.or(want.size);
                if let Some(l) = limit
                    && part.len() + chunk.len() as u64 > l
                {
                    part.reset().map_err(fatal)?;
                    return Err(fatal(anyhow!("server sent more than {l} bytes")));
                }
                part.write(&chunk).map_err(fatal)?;
                task.inc(chunk.len() as u64);
            }
        }
    }
    part.flush().map_err(fatal)?;
    if let Some(t) = total.or(want.size)
        && part.len() < t
    {
        return Err(retry(anyhow!(
            "body ended early: {} of {t} bytes",
            part.len()
        )));
    }
    Ok(())
}

fn backoff(opts: &FetchOptions, attempt: u32) -> Duration {
    let base = opts.backoff.saturating_mul(1 << attempt.min(10));
    let base = base.min(Duration::from_secs(30));
    // A little jitter, so parallel retries do not hit the server in lockstep.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// Download `url` into `part` with retries; Ok when the bytes match `want`.
async fn from_url(
    client: &reqwest::Client,
    url: &Url,
    part: &mut Partial,
    want: &Want,
    opts: &FetchOptions,
    task: &Task,
) -> Result<Hashes> {
    let mut tries = 0u32;
    loop {
        let res = attempt(client, url, part, want, opts, task).await;
        let err = match res {
            Ok(()) => {
                let h = part.hasher.clone().finish();
                match want.mismatch(&h) {
                    None => return Ok(h),
                    Some(why) => {
                        let resumed = part.resumed;
                        part.reset()?;
                        if resumed && tries < opts.retries {
                            // Earlier bytes may have been bad: one more try from zero.
                            AttemptErr::Retry(anyhow!("digest mismatch after resuming: {why}"))
                        } else {
                            bail!("digest mismatch: {why}");
                        }
                    }
                }
            }
            Err(e) => e,
        };
        match err {
            AttemptErr::Fatal(e) => return Err(e),
            AttemptErr::Retry(e) if tries >= opts.retries => {
                return Err(e.context(format!("giving up after {} attempts", tries + 1)));
            }
            AttemptErr::Retry(e) => {
                tries += 1;
                let wait = backoff(opts, tries - 1);
                task.note(&format!(
                    "{}: {e:#}; retry {tries}/{} in {:.1}s{}",
                    want.name,
                    opts.retries,
                    wait.as_secs_f64(),
                    if part.len() > 0 {
                        format!(" (resuming at {} bytes)", part.len())
                    } else {
                        String::new()
                    }
                ));
                tokio::time::sleep(wait).await;
                part.resumed = part.len() > 0;
            }
        }
    }
}

/// Copy a file from a mirror directory into `part`, hashing it.
async fn from_file(src: &Path, part: &mut Partial, want: &Want) -> Result<Hashes> {
    part.reset()?;
    let src_owned = src.to_path_buf();
    let dest = part.path.clone();
    let with512 = part.with512;
    let h = tokio::task::spawn_blocking(move || -> Result<Hashes> {
        let mut input =
            File::open(&src_owned).with_context(|| format!("opening {}", src_owned.display()))?;
        let mut out = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&dest)
            .with_context(|| format!("opening {}", dest.display()))?;
        let mut h = Hasher::new(with512);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input
                .read(&mut buf)
                .with_context(|| format!("reading {}", src_owned.display()))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}", dest.display()))?;
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    })
    .await
    .context("copying from a mirror directory")??;
    if let Some(why) = want.mismatch(&h) {
        part.reset()?;
        bail!("digest mismatch: {why}");
    }
    Ok(h)
}

/// Check what `path` holds against `check`; Ok names what was verified.
pub fn verify_content(check: &Check, path: &Path) -> Result<String> {
    match check {
        Check::GitTree(want) => {
            let got = gittree::tree_of_archive(path)?;
            if got != *want {
                bail!(
                    "git tree mismatch: the archive unpacks to tree {got}, the lock pins {want} \
                     (a different commit, or changed content)"
                );
            }
            Ok(format!("git tree {want}"))
        }
        Check::Signature(k) => {
            let armored = k.armored.as_deref().with_context(|| missing_key(k))?;
            let key = rpmsig::load_key(armored, &k.fingerprint)
                .with_context(|| format!("key {:?} ({})", k.name, k.file))?;
            let v = rpmsig::verify_rpm(path, &key, &k.name)?;
            Ok(format!(
                "{} signature(s) by key {:?} ({})",
                v.signatures.join(" and "),
                k.name,
                k.fingerprint
            ))
        }
    }
}

fn missing_key(k: &super::lock::KeyPin) -> String {
    format!(
        "signed_by key {:?} has no key file: add the vendor's published key file as {} (next to \
         the lock; fingerprint {}); without it the signature cannot be checked",
        k.name, k.file, k.fingerprint
    )
}

/// Fetch one artifact into the cache from the first source that delivers the pinned bytes.
pub(crate) async fn fetch_one(
    client: reqwest::Client,
    opts: Arc<FetchOptions>,
    a: Artifact,
    reporter: Arc<Reporter>,
) -> Result<Fetched> {
    let cache = &opts.cache;
    let want = Want::of(&a, cache);
    if let Some(k) = a.signer()
        && k.armored.is_none()
    {
        bail!("{}", missing_key(k));
    }
    let srcs = sources(&a, &opts.mirrors)?;
    if srcs.is_empty() {
        bail!(
            "{} has no URL in the lock; give --mirror URL|DIR (it has mirror_path {:?})",
            a.name,
            a.mirror_path.as_deref().unwrap_or(&a.file)
        );
    }
    let key = want.key();
    let _guard = cache.lock_key(&key).await?;
    // Another process may have finished it while we waited.
    if want.sha256.is_some()
        && let Some(p) = cache.lookup(&a)
    {
        let h = cache.verify_entry(&p, want.sha512.is_some())?;
        return Ok(Fetched {
            path: p,
            hashes: h,
            source: "cache".into(),
        });
    }
    let part_path = cache.tmp_dir().join(format!("{key}.part"));
    let mut part = Partial::open(part_path.clone(), want.sha512.is_some()).await?;
    if want.sha256.is_none() && want.sha512.is_none() {
        // No digest to check a leftover against: start from zero.
        part.reset()?;
    }
    let task = reporter.task(&a.name, want.size);
    let started = Instant::now();
    let mut errors = Vec::new();
    for src in &srcs {
        task.source(&src.to_string(), part.len());
        let res = match src {
            Source::Url(u) => from_url(&client, u, &mut part, &want, &opts, &task).await,
            Source::File(p) => from_file(p, &mut part, &want).await,
        };
        let res = match (res, &want.check) {
            (Ok(h), Some(check)) => {
                let (check, p) = (check.clone(), part_path.clone());
                match tokio::task::spawn_blocking(move || verify_content(&check, &p))
                    .await
                    .context("checking the download")?
                {
                    Ok(_) => Ok(h),
                    Err(e) => {
                        part.reset()?;
                        Err(e.context("refused"))
                    }
                }
            }
            (res, _) => res,
        };
        match res {
            Ok(h) => {
                drop(part);
                let path = cache.insert_verified(&part_path, &h)?;
                cache.record_verified(&a, &h.sha256)?;
                // Verified: by a pinned digest, or by its content (git tree id, signature).
                task.done(
                    h.size,
                    started.elapsed(),
                    want.sha256.is_some() || want.sha512.is_some() || want.check.is_some(),
                );
                return Ok(Fetched {
                    path,
                    hashes: h,
                    source: src.to_string(),
                });
            }
            Err(e) => errors.push(format!("{src}: {e:#}")),
        }
    }
    task.failed();
    // A partial that cannot be resumed into anything useful is not kept.
    if part.len() == 0 {
        drop(part);
        let _ = fs::remove_file(&part_path);
    }
    if errors.len() == 1 {
        bail!("{}", errors.remove(0));
    }
    bail!("every source failed:\n    {}", errors.join("\n    "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((Some(100), Some(200)))
        );
        assert_eq!(parse_content_range("bytes */200"), Some((None, Some(200))));
        assert_eq!(parse_content_range("bytes 1-2/*"), Some((Some(1), None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
