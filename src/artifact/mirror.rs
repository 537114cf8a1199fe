//! Where an artifact is fetched from: its lock URLs, or mirrors given with `--mirror`.
//!
//! `--mirror URL` replaces the origins: ezimg tries `URL/<mirror_path>` (when the pin has one)
//! then `URL/<file>`. `--mirror DIR` is a flat directory of files (`DIR/<file>`, or
//! `DIR/<mirror_path>`). Several mirrors are tried in the order given; the lock's own URLs are
//! not used while a mirror is set, so a mirror run never reaches the origins.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use reqwest::Url;

use super::lock::Artifact;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirror {
    /// Base URL (always ends with `/`).
    Url(Url),
    Dir(PathBuf),
}

impl FromStr for Mirror {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() {
            bail!("--mirror: empty value");
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            let with_slash = if s.ends_with('/') {
                s.to_string()
            } else {
                format!("{s}/")
            };
            let u = Url::parse(&with_slash).with_context(|| format!("--mirror {s:?}"))?;
            return Ok(Mirror::Url(u));
        }
        if let Some(p) = s.strip_prefix("file://") {
            return Ok(Mirror::Dir(PathBuf::from(p)));
        }
        if s.contains("://") {
            bail!("--mirror {s:?}: only http(s) URLs and directories are supported");
        }
        Ok(Mirror::Dir(PathBuf::from(s)))
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mirror::Url(u) => write!(f, "{u}"),
            Mirror::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

/// One place to get an artifact from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(Url),
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Url(u) => write!(f, "{u}"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The sources of `a`, in the order to try them.
pub fn sources(a: &Artifact, mirrors: &[Mirror]) -> Result<Vec<Source>> {
    if mirrors.is_empty() {
        return Ok(a.urls.iter().cloned().map(Source::Url).collect());
    }
    let mut out = Vec::new();
    for m in mirrors {
        for rel in a.mirror_names() {
            out.push(match m {
                Mirror::Url(base) => Source::Url(
                    base.join(rel)
                        .with_context(|| format!("joining {rel:?} to --mirror {base}"))?,
                ),
                Mirror::Dir(d) => Source::File(d.join(rel)),
            });
        }
    }
    Ok(out)
}
