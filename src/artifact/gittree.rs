//! The git tree id of a commit archive (`git archive`, GitHub's `/archive/<commit>.tar.gz`).
//!
//! Such archives have no published digest, and their bytes are not stable (the compressor or
//! tar writer upstream may change), but their content is exactly the commit's tree. So a pin
//! names the tree id and this module recomputes it from the unpacked archive, object by object,
//! as git does:
//!
//! - blob: `sha1("blob <len>\0" + content)`; a symlink is a blob of its target;
//! - tree: `sha1("tree <len>\0" + entries)`, each entry `"<mode> <name>\0" + 20-byte id`, modes
//!   `100644`, `100755` (any execute bit), `120000` (symlink), `40000` (tree), sorted by name
//!   with a tree's name compared as if it ended in `/` (so `a.b` < `a/…` < `a0`);
//! - empty directories do not exist in git (an archive of a commit has none, except for
//!   submodules, whose commit id the archive does not carry: such a tree cannot be recomputed).
//!
//! The archive must hold one top-level directory (`<name>-<commit>/`) holding everything else;
//! the pax global header git writes (it carries the commit id as a comment) is ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use sha1::{Digest as _, Sha1};

/// A git object id (SHA-1), as in `git rev-parse HEAD^{tree}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GitTreeId(pub [u8; 20]);

impl GitTreeId {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for GitTreeId {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.len() != 40 {
            bail!(
                "a git tree id is 40 hex characters, got {} in {s:?}",
                s.len()
            );
        }
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out)
            .with_context(|| format!("git tree id {s:?} is not hexadecimal"))?;
        Ok(GitTreeId(out))
    }
}

impl fmt::Display for GitTreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}
impl fmt::Debug for GitTreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "git tree {}", self.hex())
    }
}

#[derive(Debug)]
enum Node {
    /// (git mode, blob id)
    Blob(&'static str, [u8; 20]),
    Tree(BTreeMap<Vec<u8>, Node>),
}

fn object_id(kind: &str, body: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(format!("{kind} {}\0", body.len()).as_bytes());
    h.update(body);
    h.finalize().into()
}

/// Hash `len` bytes from `r` as a blob, streaming (large files never sit in memory).
fn blob_id(r: &mut impl Read, len: u64) -> std::io::Result<[u8; 20]> {
    let mut h = Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        seen += n as u64;
        h.update(&buf[..n]);
    }
    if seen != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("member holds {seen} bytes, its header says {len}"),
        ));
    }
    Ok(h.finalize().into())
}

/// git's order: byte-wise, a tree's name compared as if it ended in `/`.
fn git_order(a: (&Vec<u8>, &Node), b: (&Vec<u8>, &Node)) -> std::cmp::Ordering {
    let key = |(name, node): (&Vec<u8>, &Node)| {
        let mut k = name.clone();
        if matches!(node, Node::Tree(_)) {
            k.push(b'/');
        }
        k
    };
    key(a).cmp(&key(b))
}

/// The id of a tree (None for a tree with nothing in it: git has no empty trees in a commit's
/// subdirectories).
fn tree_id(entries: &BTreeMap<Vec<u8>, Node>) -> Option<[u8; 20]> {
    let mut items: Vec<(&Vec<u8>, &Node, [u8; 20], &str)> = Vec::new();
    for (name, node) in entries {
        match node {
            Node::Blob(mode, id) => items.push((name, node, *id, mode)),
            Node::Tree(sub) => {
                if let Some(id) = tree_id(sub) {
                    items.push((name, node, id, "40000"));
                }
            }
        }
    }
    if items.is_empty() {
        return None;
    }
    items.sort_by(|a, b| git_order((a.0, a.1), (b.0, b.1)));
    let mut body = Vec::new();
    for (name, _, id, mode) in items {
        body.extend_from_slice(mode.as_bytes());
        body.push(b' ');
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(&id);
    }
    Some(object_id("tree", &body))
}

/// Insert `node` at `path` (components) under `root`; a path that is already a blob, or passes
/// through one, is an error.
fn insert(root: &mut BTreeMap<Vec<u8>, Node>, path: &[&[u8]], node: Node) -> Result<()> {
    let (last, dirs) = path.split_last().context("empty path")?;
    let mut cur = root;
    for d in dirs {
        let n = cur
            .entry(d.to_vec())
            .or_insert_with(|| Node::Tree(BTreeMap::new()));
        cur = match n {
            Node::Tree(t) => t,
            Node::Blob(..) => bail!("{} is a file and a directory", String::from_utf8_lossy(d)),
        };
    }
    match (cur.get_mut(*last), node) {
        (Some(Node::Tree(_)), Node::Tree(_)) => {}
        (Some(_), _) => bail!("{} appears twice", String::from_utf8_lossy(last)),
        (None, n) => {
            cur.insert(last.to_vec(), n);
        }
    }
    Ok(())
}

/// The git tree id of the commit archive (tar.gz) at `path`.
pub fn tree_of_archive(path: &Path) -> Result<GitTreeId> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    tree_of_tar_gz(std::io::BufReader::new(f))
        .with_context(|| format!("reading {} as a commit archive", path.display()))
}

/// The git tree id of a commit archive read from `r` (tar.gz).
pub fn tree_of_tar_gz(r: impl Read) -> Result<GitTreeId> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(r));
    let mut top: Option<Vec<u8>> = None;
    let mut root: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
    for entry in ar.entries().context("reading the tar stream")? {
        let mut e = entry.context("reading the tar stream")?;
        let kind = e.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let trimmed = raw.strip_prefix(b"./").unwrap_or(&raw);
        let parts: Vec<&[u8]> = trimmed
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        if parts.iter().any(|p| *p == b"." || *p == b"..") {
            bail!("member {shown:?}: `.` or `..` in its path");
        }
        let Some((first, rest)) = parts.split_first() else {
            bail!("member with an empty path");
        };
        match &top {
            None => top = Some(first.to_vec()),
            Some(t) if t.as_slice() == *first => {}
            Some(t) => bail!(
                "member {shown:?} is outside the archive's top-level directory {:?}",
                String::from_utf8_lossy(t)
            ),
        }
        if rest.is_empty() {
            if !kind.is_dir() {
                bail!("member {shown:?}: the top level holds something other than one directory");
            }
            continue;
        }
        let node = if kind.is_dir() {
            Node::Tree(BTreeMap::new())
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mode = e
                .header()
                .mode()
                .with_context(|| format!("member {shown:?}: mode"))?;
            let len = e.size();
            let id = blob_id(&mut e, len).with_context(|| format!("member {shown:?}"))?;
            Node::Blob(
                if mode & 0o111 != 0 {
                    "100755"
                } else {
                    "100644"
                },
                id,
            )
        } else if kind.is_symlink() {
            let target = e
                .link_name_bytes()
                .with_context(|| format!("member {shown:?}: symlink without a target"))?;
            Node::Blob("120000", object_id("blob", &target))
        } else {
            bail!(
                "member {shown:?}: entry type {kind:?} has no git equivalent (commit archives \
                 hold files, symlinks and directories)"
            );
        };
        insert(&mut root, rest, node).with_context(|| format!("member {shown:?}"))?;
    }
    if top.is_none() {
        bail!("the archive is empty");
    }
    tree_id(&root)
        .map(GitTreeId)
        .context("the archive holds no file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_and_tree_ids_are_gits() {
        // `git hash-object -t blob /dev/null`
        assert_eq!(
            hex::encode(object_id("blob", b"")),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        // `git mktree </dev/null`
        assert_eq!(
            hex::encode(object_id("tree", b"")),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }

    #[test]
    fn trees_sort_as_if_they_ended_in_a_slash() {
        let blob = || Node::Blob("100644", [0; 20]);
        let mut m = BTreeMap::new();
        m.insert(b"a".to_vec(), Node::Tree(BTreeMap::new()));
        m.insert(b"a.b".to_vec(), blob());
        m.insert(b"a0".to_vec(), blob());
        let mut v: Vec<(&Vec<u8>, &Node)> = m.iter().collect();
        v.sort_by(|a, b| git_order(*a, *b));
        let names: Vec<&[u8]> = v.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b"a.b"[..], b"a", b"a0"]);
    }

    #[test]
    fn ids_parse() {
        assert!(
            "f420c64db1c03437c0c2679ed68e7049f355330d"
                .parse::<GitTreeId>()
                .is_ok()
        );
        assert!("f420c64d".parse::<GitTreeId>().is_err());
        assert!(
            "z420c64db1c03437c0c2679ed68e7049f355330d"
                .parse::<GitTreeId>()
                .is_err()
        );
    }
}
