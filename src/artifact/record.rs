//! Recording learnt digests (`ezimg lock`): which lock file receives them, which pins lack one,
//! and writing them. Kept out of the command so the rule "the lock in use, else a new file the
//! lock lookup reads next" lives with the lock lookup it mirrors.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::lock::{self, Lock};

/// The lock file digests are recorded in.
#[derive(Debug)]
pub struct Destination {
    /// The lock whose pins are completed (for a new file: the one it starts as a copy of).
    pub lock: Lock,
    /// The file written.
    pub path: PathBuf,
    /// `path` does not exist yet: it starts as a copy of `lock`.
    pub new: bool,
    /// Which lock this is and why, for the user.
    pub note: String,
}

/// Where digests go: `explicit` (`--lock`), written afresh from the lock the rule would pick
/// otherwise if it does not exist yet; else the lock in use (`Lock::resolve`), when it is a file;
/// else a new `artifacts.lock` beside the cluster file (where the lock rule finds it). The lock
/// embedded in ezimg with no cluster file is an error: there is no file to write.
pub fn destination(
    explicit: Option<&Path>,
    data_dir: Option<&Path>,
    cluster_file: Option<&Path>,
) -> Result<Destination> {
    if let Some(p) = explicit
        && !p.exists()
    {
        let (base, why) = Lock::resolve(None, data_dir, cluster_file)?;
        return Ok(Destination {
            note: format!(
                "lock: {} does not exist yet: it will be {} ({why}) with the digests learnt",
                p.display(),
                base.origin
            ),
            lock: base,
            path: p.to_path_buf(),
            new: true,
        });
    }
    let (lk, why) = Lock::resolve(explicit, data_dir, cluster_file)?;
    let note = format!("lock: {} ({why})", lk.origin);
    let (path, new) = match (&lk.path, cluster_file) {
        (Some(p), _) => (p.clone(), false),
        (None, Some(c)) => (c.with_file_name("artifacts.lock"), true),
        (None, None) => bail!(
            "the lock in use is the one embedded in ezimg, which cannot record digests: \
             `ezimg lock --lock FILE` writes a copy with them to FILE (then give \
             `--lock FILE` or EZIMG_LOCK to check, build and fetch), or with \
             `-c CLUSTER` it goes beside the cluster file, where they find it"
        ),
    };
    Ok(Destination {
        lock: lk,
        path,
        new,
        note,
    })
}

impl Destination {
    /// The pins to learn: `names`, or when none are given every pin without a sha256.
    pub fn wanted(&self, names: &[String]) -> Vec<String> {
        if !names.is_empty() {
            // Names that are no artifact are images (`ezimg lock` splits them off).
            return names
                .iter()
                .filter(|n| self.lock.find(n).is_some())
                .cloned()
                .collect();
        }
        self.lock
            .artifacts
            .iter()
            .filter(|x| x.sha256.is_none())
            .map(|x| x.name.clone())
            .collect()
    }

    /// The image references `ezimg lock` should learn a digest for: with no names every
    /// `[[image]]` without one, else those of `names` that are no artifact.
    pub fn wanted_images(&self, names: &[String]) -> Result<Vec<String>> {
        let unpinned = |v: Vec<&crate::artifact::lock::ImagePin>| -> Vec<String> {
            v.into_iter()
                .filter(|i| i.digest.is_none())
                .map(|i| i.reference.clone())
                .collect()
        };
        if names.is_empty() {
            return Ok(unpinned(self.lock.images.iter().collect()));
        }
        let image_names: Vec<String> = names
            .iter()
            .filter(|n| self.lock.find(n).is_none())
            .cloned()
            .collect();
        if image_names.is_empty() {
            return Ok(Vec::new());
        }
        Ok(unpinned(
            crate::images::select(&self.lock, &image_names)?
                .into_iter()
                .collect(),
        ))
    }

    /// Which of `names` have no sha256 recorded (`ezimg lock --check`).
    pub fn lacking<'a>(&'a self, names: &[String]) -> Vec<&'a str> {
        names
            .iter()
            .filter_map(|n| self.lock.find(n))
            .filter(|x| x.sha256.is_none())
            .map(|x| x.name.as_str())
            .collect()
    }

    /// Write `records` into [`Destination::path`] (a new file starts as a copy of the lock's
    /// text, written whole or not at all).
    pub fn record(&self, records: &[lock::Record]) -> Result<()> {
        if self.new {
            crate::fsutil::write_atomic(&self.path, self.lock.text.as_bytes())?;
        }
        if records.is_empty() {
            // Only images learnt (a lock with no [[artifact]] at all is fine then).
            return Ok(());
        }
        lock::write_records(&self.path, records)
    }
}
