//! One pattern for every cache entry that takes minutes to make (a base image, a bake, a stage
//! output), so each of them is crash-safe and race-free the same way instead of each getting it
//! a little differently:
//!
//! 1. **key**: the caller hashes every input into a key and names the entry after it;
//! 2. **hit**: `lookup` says whether a complete entry is there (no lock needed: see 5);
//! 3. **lock**: on a miss, an exclusive lock per entry, so two processes making the same entry
//!    wait for each other instead of doing the same minutes of work twice; then `lookup` again
//!    (the other process may have made it meanwhile). The holder removes the lock file;
//!    waiters notice and lock the new one, so no lock files pile up;
//! 4. **work dir**: `build` runs in a folder of its own: a fresh `.work-*` folder inside the
//!    cache folder (same filesystem, so publishing is a rename), or a fixed path that is a
//!    function of the key (paths compiled into the outputs are the same on every build);
//!    removed afterwards whatever happens;
//! 5. **manifest last**: `build` returns the files it made and the manifest; the old manifest
//!    is removed first (a `--rebuild` never shows a new file beside an old manifest), the files
//!    are moved into place (a rename; from another filesystem, a copy to a temporary file
//!    beside them, then a rename), and the manifest is written last, atomically. Its presence
//!    marks a complete entry, so `lookup` checks it and the files it names; an entry that is
//!    incomplete or damaged is a miss (and rebuilt: entries heal themselves).
//!
//! ```text
//! get_or_build(&Slot { dir, name, what, rebuild, quiet, work }, lookup, build)
//!   lookup() -> Some(v)                    hit, no lock taken
//!   lock <dir>/.<name>.lock (or <work>.lock); lookup() -> Some(v): hit
//!   build(work dir) -> Built { files, manifest, value }: publish, manifest last
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where an entry's `build` runs.
#[derive(Debug, Clone)]
pub enum Work {
    /// A fresh `.work-*` folder inside the cache folder (same filesystem as the entry, so
    /// publishing is a rename); the lock is `<dir>/.<name>.lock`.
    Fresh,
    /// This folder, a fixed function of the key (so paths a build compiles in are the same on
    /// every build of the same inputs): a leftover of a killed build is removed first, the
    /// folder is removed afterwards unless `keep`. The lock is `<path>.lock`.
    Fixed { path: PathBuf, keep: bool },
}

/// One cache entry: where it lives and how it is made.
#[derive(Debug, Clone)]
pub struct Slot<'a> {
    /// The cache folder the entry's files are published into.
    pub dir: &'a Path,
    /// Unique per key (e.g. `debian12-<key[..16]>`): names the lock of a [`Work::Fresh`]
    /// entry (a [`Work::Fixed`] one is locked at `<path>.lock`).
    pub name: &'a str,
    /// What is being made, for the waiting message: "ezimg: waiting for another ezimg {what}".
    pub what: &'a str,
    /// Build even when `lookup` finds an entry (`--rebuild`).
    pub rebuild: bool,
    /// No waiting message.
    pub quiet: bool,
    pub work: Work,
}

/// What `build` made, for [`get_or_build`] to publish.
#[derive(Debug)]
pub struct Built<T> {
    /// Files to move into place (`from` → `to`): a rename, or where `from` is on another
    /// filesystem (a [`Work::Fixed`] under /tmp) a copy to a temporary file beside `to`, then
    /// a rename. Either way `to` appears whole.
    pub files: Vec<(PathBuf, PathBuf)>,
    /// The manifest's path, and its bytes: written last (mode 0644: it holds no secret).
    pub manifest: PathBuf,
    pub manifest_bytes: Vec<u8>,
    /// What the caller returns for the entry.
    pub value: T,
}

/// An entry from [`get_or_build`].
#[derive(Debug)]
pub struct Got<T> {
    pub value: T,
    /// Found in the cache (nothing was built).
    pub cached: bool,
}

/// The entry of `slot`: found by `lookup` (`Ok(None)`: missing, incomplete or damaged) or made
/// by `build` in a work dir and published, manifest last. See the module docs.
pub fn get_or_build<T>(
    slot: &Slot,
    mut lookup: impl FnMut() -> Result<Option<T>>,
    build: impl FnOnce(&Path) -> Result<Built<T>>,
) -> Result<Got<T>> {
    let hit = |value| Got {
        value,
        cached: true,
    };
    if !slot.rebuild
        && let Some(v) = lookup()?
    {
        return Ok(hit(v));
    }
    let lock_path = match &slot.work {
        Work::Fresh => slot.dir.join(format!(".{}.lock", slot.name)),
        Work::Fixed { path, .. } => with_suffix(path, ".lock"),
    };
    let _lock = EntryLock::take(&lock_path, slot.what, slot.quiet)?;
    // Another process may have made the entry while we waited.
    if !slot.rebuild
        && let Some(v) = lookup()?
    {
        return Ok(hit(v));
    }
    // The work dir lives until its files are published, and goes whatever happened.
    let value = match &slot.work {
        Work::Fresh => {
            let work = crate::fsutil::work_dir(slot.dir)?;
            let built = build(work.path())?;
            publish(slot.dir, &built)?;
            built.value
        }
        Work::Fixed { path, keep } => {
            remove_dir(path)?;
            std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let r = build(path).and_then(|built| {
                publish(slot.dir, &built)?;
                Ok(built.value)
            });
            if *keep {
                eprintln!("ezimg: work directory kept: {}", path.display());
            } else if let Err(e) = remove_dir(path) {
                eprintln!("warning: {e:#}");
            }
            r?
        }
    };
    Ok(Got {
        value,
        cached: false,
    })
}

/// The manifest at `path`, or `None` (a miss: the entry is built again) with a warning when it
/// cannot be read or parsed.
pub fn read_manifest<M: serde::de::DeserializeOwned>(path: &Path) -> Option<M> {
    match crate::fsutil::read_json(path) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!(
                "warning: cache entry {} is damaged ({e:#}); rebuilding",
                path.display()
            );
            None
        }
    }
}

/// Move the files into place and write the manifest last; the old manifest goes first.
fn publish<T>(dir: &Path, b: &Built<T>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    match std::fs::remove_file(&b.manifest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", b.manifest.display())),
    }
    for (from, to) in &b.files {
        move_file(from, to)?;
    }
    crate::fsutil::write_public(&b.manifest, &b.manifest_bytes)
}

/// Rename `from` to `to`; across filesystems (a fixed work dir under /tmp), copy it to a
/// temporary file beside `to` first, so `to` still appears whole or not at all.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    let ctx = || format!("moving {} to {}", from.display(), to.display());
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            use std::os::unix::fs::PermissionsExt;
            let mut src = std::fs::File::open(from).with_context(ctx)?;
            let mode = src.metadata().with_context(ctx)?.permissions().mode();
            crate::fsutil::write_atomic_with(to, |f| {
                std::io::copy(&mut src, f)?;
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                Ok(())
            })
            .with_context(ctx)
        }
        Err(e) => Err(e).with_context(ctx),
    }
}

fn remove_dir(d: &Path) -> Result<()> {
    match std::fs::remove_dir_all(d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", d.display())),
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// An exclusive lock on a file its holder removes when done (no lock files pile up). A waiter
/// that wakes on a removed file tries again on the one now at the path, so two holders never
/// overlap.
pub(crate) struct EntryLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl EntryLock {
    pub(crate) fn take(path: &Path, what: &str, quiet: bool) -> Result<EntryLock> {
        use std::os::unix::fs::MetadataExt;
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        let mut said = quiet;
        loop {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .with_context(|| format!("opening the lock file {}", path.display()))?;
            match f.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !said {
                        eprintln!(
                            "ezimg: waiting for another ezimg {what} ({})",
                            path.display()
                        );
                        said = true;
                    }
                    f.lock()
                        .with_context(|| format!("locking {}", path.display()))?;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
            let same = match (std::fs::metadata(path), f.metadata()) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same {
                return Ok(EntryLock {
                    path: path.to_path_buf(),
                    _file: f,
                });
            }
        }
    }
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        // Removed while still held (the file closes after this): a process that opens the
        // path now gets a new file, one that waited on this one sees it is gone and retries.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn slot<'a>(dir: &'a Path, work: Work) -> Slot<'a> {
        Slot {
            dir,
            name: "thing-0123",
            what: "making the same thing",
            rebuild: false,
            quiet: true,
            work,
        }
    }

    /// The entry: `<dir>/thing.txt`, complete when `thing.json` names its content.
    fn lookup(dir: &Path) -> Result<Option<String>> {
        let (m, f) = (dir.join("thing.json"), dir.join("thing.txt"));
        if !m.exists() || !f.exists() {
            return Ok(None);
        }
        let want = std::fs::read_to_string(&m)?;
        let have = std::fs::read_to_string(&f)?;
        Ok((want == have).then_some(have))
    }

    fn build(dir: &Path, w: &Path, text: &str) -> Result<Built<String>> {
        std::fs::write(w.join("thing.txt"), text)?;
        Ok(Built {
            files: vec![(w.join("thing.txt"), dir.join("thing.txt"))],
            manifest: dir.join("thing.json"),
            manifest_bytes: text.as_bytes().to_vec(),
            value: text.to_string(),
        })
    }

    #[test]
    fn builds_once_then_hits_and_heals_and_rebuilds() -> Result<()> {
        let d = tempfile::tempdir()?;
        let dir = d.path().join("cache");
        let s = slot(&dir, Work::Fresh);
        let g = get_or_build(&s, || lookup(&dir), |w| build(&dir, w, "one"))?;
        assert!(!g.cached);
        assert_eq!(g.value, "one");
        // Only the entry is left: no work dir, no lock file.
        let mut names: Vec<_> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        assert_eq!(names, ["thing.json", "thing.txt"]);
        let g = get_or_build(
            &s,
            || lookup(&dir),
            |_| -> Result<Built<String>> { panic!("a hit builds nothing") },
        )?;
        assert!(g.cached);
        // A damaged entry is a miss, and is built again.
        std::fs::write(dir.join("thing.txt"), "torn")?;
        let g = get_or_build(&s, || lookup(&dir), |w| build(&dir, w, "one"))?;
        assert!(!g.cached);
        assert_eq!(lookup(&dir)?.as_deref(), Some("one"));
        // --rebuild builds over a complete entry.
        let s = Slot { rebuild: true, ..s };
        let g = get_or_build(&s, || lookup(&dir), |w| build(&dir, w, "two"))?;
        assert!(!g.cached);
        assert_eq!(lookup(&dir)?.as_deref(), Some("two"));
        Ok(())
    }

    #[test]
    fn a_failed_build_publishes_nothing_and_leaves_no_work_dir() -> Result<()> {
        let d = tempfile::tempdir()?;
        let dir = d.path().join("cache");
        let fixed = d.path().join("work-thing");
        for work in [
            Work::Fresh,
            Work::Fixed {
                path: fixed.clone(),
                keep: false,
            },
        ] {
            let s = slot(&dir, work);
            let r = get_or_build(
                &s,
                || lookup(&dir),
                |w| -> Result<Built<String>> {
                    std::fs::write(w.join("thing.txt"), "half")?;
                    anyhow::bail!("the build failed")
                },
            );
            assert!(format!("{:#}", r.expect_err("failed")).contains("the build failed"));
            assert!(!dir.join("thing.json").exists());
            assert!(!fixed.exists());
            let left: Vec<_> = std::fs::read_dir(&dir)?.collect();
            assert!(left.is_empty(), "{left:?}");
        }
        Ok(())
    }

    #[test]
    fn a_fixed_work_dir_is_the_same_path_cleared_of_leftovers() -> Result<()> {
        let d = tempfile::tempdir()?;
        let dir = d.path().join("cache");
        let fixed = d.path().join("work-thing");
        std::fs::create_dir_all(&fixed)?;
        std::fs::write(fixed.join("leftover"), "from a killed build")?;
        let s = slot(
            &dir,
            Work::Fixed {
                path: fixed.clone(),
                keep: true,
            },
        );
        let g = get_or_build(
            &s,
            || lookup(&dir),
            |w| {
                assert_eq!(w, fixed);
                assert!(!w.join("leftover").exists());
                // A file on the cache's filesystem, as a stage's tarball is.
                let tmp = dir.join(".thing.tmp");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(&tmp, "fixed")?;
                Ok(Built {
                    files: vec![(tmp, dir.join("thing.txt"))],
                    manifest: dir.join("thing.json"),
                    manifest_bytes: b"fixed".to_vec(),
                    value: "fixed".to_string(),
                })
            },
        )?;
        assert_eq!(g.value, "fixed");
        assert!(fixed.is_dir(), "keep: the work dir stays");
        assert!(!d.path().join("work-thing.lock").exists());
        Ok(())
    }

    #[test]
    fn a_file_from_another_filesystem_is_copied_whole() -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir()?;
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("skipped: no /dev/shm to stand for another filesystem");
            return Ok(());
        };
        if std::fs::metadata(shm.path())?.dev() == std::fs::metadata(d.path())?.dev() {
            eprintln!("skipped: /dev/shm is on the same filesystem as the temp dir");
            return Ok(());
        }
        let from = shm.path().join("out.tar.gz");
        std::fs::write(&from, b"stage output")?;
        std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o644))?;
        let to = d.path().join("out.tar.gz");
        move_file(&from, &to)?;
        assert_eq!(std::fs::read(&to)?, b"stage output");
        assert_eq!(std::fs::metadata(&to)?.permissions().mode() & 0o777, 0o644);
        Ok(())
    }

    #[test]
    fn two_processes_of_one_key_build_once() -> Result<()> {
        let d = tempfile::tempdir()?;
        let dir = d.path().join("cache");
        let builds = AtomicUsize::new(0);
        let results: Vec<Result<Got<String>>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    sc.spawn(|| {
                        get_or_build(
                            &slot(&dir, Work::Fresh),
                            || lookup(&dir),
                            |w| {
                                builds.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(200));
                                build(&dir, w, "once")
                            },
                        )
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        for r in results {
            assert_eq!(r?.value, "once");
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        Ok(())
    }
}
