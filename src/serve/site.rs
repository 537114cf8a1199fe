//! What a URL path names on disk, decided before any file is opened: the path is decoded and
//! checked segment by segment (no `..`, `.`, empty, `\` or NUL segment, however encoded), then
//! looked up in what `ezimg build` recorded, the PXE tree, or the verified cache, and the file's
//! real path must stay inside its root (a symlink out of the tree is not followed). Each file is
//! marked with the node it belongs to, if any, so the caller can apply the secrets rule.
//!
//! Routes:
//!
//! ```text
//! /boot.ipxe                 pxe/boot.ipxe (iPXE entry point: chains to /pxe/ipxe/<mac>.ipxe)
//! /pxe/<path>                the PXE tree (generated configs, the operator's installer files)
//! /ks/<node>                 <role>/<node>/ks.cfg                   (that node only)
//! /seed/<node>/<file>        <role>/<node>/seed/<file> (NoCloud)    (that node only)
//! /out/<path>                any file `ezimg build` recorded in --out (a node's: that node only)
//! /artifacts/<file>          a verified cache entry by its pinned file name (or pin name)
//! /sha256/<hex>              a verified cache entry by sha256
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::artifact::{Cache, Lock};
use crate::outdir::{self, Owner};

use super::access::NodeId;

/// What a request path resolves to.
#[derive(Debug)]
pub enum Target {
    /// A file to send; `node` is set when it holds that node's secrets.
    File {
        path: PathBuf,
        node: Option<String>,
    },
    /// Malformed or a traversal attempt (400).
    Bad(&'static str),
    NotFound,
    /// The route index (`/`).
    Index,
}

/// The manifest of `--out`, reread when `ezimg build` replaces it.
struct Index {
    stamp: Option<SystemTime>,
    files: Arc<BTreeMap<String, Owner>>,
}

/// The served tree: `--out`, the cache, and the cluster's nodes.
pub struct Site {
    out: PathBuf,
    cache: Cache,
    /// Pinned file name (and pin name) -> the artifact's index in `lock.artifacts`.
    by_name: BTreeMap<String, usize>,
    lock: Lock,
    pub nodes: BTreeMap<String, NodeId>,
    index: RwLock<Index>,
}

impl Site {
    pub fn new(
        out: &Path,
        cluster: &str,
        cache: Cache,
        lock: Lock,
        nodes: BTreeMap<String, NodeId>,
    ) -> Result<Site> {
        let out = std::fs::canonicalize(out)
            .with_context(|| format!("--from {}: no such directory", out.display()))?;
        let (name, files) = outdir::recorded(&out)?;
        if name != cluster {
            anyhow::bail!(
                "{} holds the outputs of cluster {name:?}, not {cluster:?}: serve it with its \
                 own cluster file (-c)",
                out.display()
            );
        }
        let mut by_name = BTreeMap::new();
        for (i, a) in lock.artifacts.iter().enumerate() {
            by_name.entry(a.file.clone()).or_insert(i);
            by_name.entry(a.name.clone()).or_insert(i);
        }
        let stamp = manifest_stamp(&out);
        Ok(Site {
            out,
            cache,
            by_name,
            lock,
            nodes,
            index: RwLock::new(Index {
                stamp,
                files: Arc::new(files),
            }),
        })
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The recorded files, reloaded when the manifest changed (a rebuild while serving). A
    /// manifest that cannot be read keeps the last good index.
    fn files(&self) -> Arc<BTreeMap<String, Owner>> {
        let stamp = manifest_stamp(&self.out);
        if let Ok(ix) = self.index.read()
            && ix.stamp == stamp
        {
            return ix.files.clone();
        }
        let mut ix = match self.index.write() {
            Ok(ix) => ix,
            Err(p) => p.into_inner(),
        };
        if ix.stamp != stamp
            && let Ok((_, files)) = outdir::recorded(&self.out)
        {
            ix.files = Arc::new(files);
            ix.stamp = stamp;
        }
        ix.files.clone()
    }

    /// Resolve the raw (still percent-encoded) request path.
    pub fn resolve(&self, raw: &str) -> Target {
        let segs = match segments(raw) {
            Ok(s) => s,
            Err(why) => return Target::Bad(why),
        };
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        match segs.as_slice() {
            [] => Target::Index,
            ["boot.ipxe"] => self.under(&self.out.join("pxe"), &["boot.ipxe"], None),
            ["pxe", rest @ ..] if !rest.is_empty() => {
                // The staging folder of a PXE rewrite is not served.
                if rest[0].starts_with('.') {
                    return Target::NotFound;
                }
                self.under(&self.out.join("pxe"), rest, None)
            }
            ["ks", node] => self.node_file(node, "ks.cfg"),
            ["seed", node, file] => self.node_file(node, &format!("seed/{file}")),
            ["out", rest @ ..] if !rest.is_empty() => {
                let rel = rest.join("/");
                match self.files().get(&rel) {
                    Some(owner) => self.under(&self.out, rest, owner.node.clone()),
                    None => Target::NotFound,
                }
            }
            ["artifacts", name] => match self.by_name.get(*name) {
                Some(&i) => match self.cache.lookup(&self.lock.artifacts[i]) {
                    Some(p) => self.in_cache(&p),
                    None => Target::NotFound,
                },
                None => Target::NotFound,
            },
            ["sha256", hex] => {
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Target::Bad("not a sha256 (64 hex digits)");
                }
                let p = crate::cachedir::sha256(self.cache.root()).join(hex.to_ascii_lowercase());
                self.in_cache(&p)
            }
            _ => Target::NotFound,
        }
    }

    /// `<role>/<node>/<rel>` of a known node, if `ezimg build` recorded it.
    fn node_file(&self, node: &str, rel: &str) -> Target {
        let Some(id) = self.nodes.get(node) else {
            return Target::NotFound;
        };
        let full = format!("{}/{node}/{rel}", id.role);
        match self.files().get(&full) {
            Some(o) if o.node.as_deref() == Some(node) => {
                let segs: Vec<&str> = full.split('/').collect();
                self.under(&self.out, &segs, Some(node.to_string()))
            }
            _ => Target::NotFound,
        }
    }

    fn in_cache(&self, p: &Path) -> Target {
        let root = crate::cachedir::sha256(self.cache.root());
        match (std::fs::canonicalize(&root), std::fs::canonicalize(p)) {
            (Ok(r), Ok(f)) if f.starts_with(&r) && f.is_file() => Target::File {
                path: f,
                node: None,
            },
            _ => Target::NotFound,
        }
    }

    /// `root/segs...`, only if it is a regular file whose real path is inside `root`.
    fn under(&self, root: &Path, segs: &[&str], node: Option<String>) -> Target {
        let mut p = root.to_path_buf();
        for s in segs {
            p.push(s);
        }
        let (Ok(r), Ok(f)) = (std::fs::canonicalize(root), std::fs::canonicalize(&p)) else {
            return Target::NotFound;
        };
        if !f.starts_with(&r) || !f.is_file() {
            return Target::NotFound;
        }
        Target::File { path: f, node }
    }
}

fn manifest_stamp(out: &Path) -> Option<SystemTime> {
    std::fs::metadata(out.join(outdir::MANIFEST))
        .and_then(|m| m.modified())
        .ok()
}

/// Decode `raw` into its segments, refusing anything that could step out of a tree.
pub fn segments(raw: &str) -> Result<Vec<String>, &'static str> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err("the path must start with /");
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for seg in rest.split('/') {
        let d = decode(seg).ok_or("bad percent-encoding in the path")?;
        if d.is_empty() {
            return Err("empty path segment (// or a trailing /)");
        }
        if d == "." || d == ".." {
            return Err("`.` or `..` in the path");
        }
        if d.contains(['/', '\\', '\0']) {
            return Err("an encoded /, \\ or NUL in the path");
        }
        out.push(d);
    }
    Ok(out)
}

/// Percent-decode one segment; None on a bad escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn traversal_is_refused_however_encoded() {
        for bad in [
            "/out/../etc/passwd",
            "/out/%2e%2e/x",
            "/out/%2E%2E/x",
            "/out/.%2e/x",
            "//etc/passwd",
            "/out/a%2fb",
            "/out/a%5cb",
            "/out/%00",
            "/out/%zz",
            "/out/./x",
            "etc/passwd",
        ] {
            assert!(segments(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            segments("/out/worker/a%20b.tar.gz").expect("ok"),
            ["out", "worker", "a b.tar.gz"]
        );
        assert!(segments("/").expect("ok").is_empty());
    }
}
