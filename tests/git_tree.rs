//! Commit archives pinned by git tree id (`git_tree` in artifacts.lock): a repository made here
//! with git, archived with `git archive` like GitHub's `/archive/<commit>.tar.gz`, served over
//! HTTP on 127.0.0.1 and fetched through the `ezimg` binary. The id ezimg computes must be git's
//! own (`git rev-parse HEAD^{tree}`); an archive with one byte changed is refused; the same tree
//! in other bytes (a different compressor) is accepted.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use ezimg::artifact::gittree;
use support::static_http::StaticServer;

/// git, or None (skip with a reason; under CI a missing git is a failure).
fn git() -> Option<PathBuf> {
    support::host_tool("git")
}

fn run(cmd: &mut Command) -> Vec<u8> {
    support::run(cmd).stdout
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

struct Repo {
    _dir: tempfile::TempDir,
    path: PathBuf,
    git: PathBuf,
}

impl Repo {
    fn git(&self) -> Command {
        let mut c = Command::new(&self.git);
        c.current_dir(&self.path)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.path)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .env("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z");
        c
    }
    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run(self.git().args(args)))
            .trim()
            .to_string()
    }
}

/// A repository whose tree has a subdirectory, an executable, a symlink, an empty file, a path
/// longer than ustar's 100 bytes, and names that exercise git's order (`a-`, `a.b`, `a/`, `a0`).
fn make_repo(git: PathBuf) -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mod");
    std::fs::create_dir_all(&path).expect("mkdir");
    let repo = Repo {
        _dir: dir,
        path,
        git,
    };
    run(repo.git().args(["init", "-q", "-b", "main"]));
    let p = &repo.path;
    write(&p.join("a-"), b"dash\n");
    write(&p.join("a.b"), b"dot\n");
    write(&p.join("a/inner.c"), b"int x;\n");
    write(&p.join("a0"), b"zero\n");
    write(&p.join("empty"), b"");
    write(&p.join("config"), b"ngx_addon_name=MARKER-CONTENT-1234\n");
    write(&p.join("sub/dir/run.sh"), b"#!/bin/sh\necho hi\n");
    let long = format!("long/{}/{}.txt", "d".repeat(60), "n".repeat(70));
    write(&p.join(&long), b"a path longer than 100 bytes\n");
    let mut perm = std::fs::metadata(p.join("sub/dir/run.sh"))
        .expect("stat")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(p.join("sub/dir/run.sh"), perm).expect("chmod");
    std::os::unix::fs::symlink("sub/dir/run.sh", p.join("link")).expect("symlink");
    run(repo.git().args(["add", "-A"]));
    run(repo
        .git()
        .args(["-c", "commit.gpgsign=false", "commit", "-q", "-m", "x"]));
    repo
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn gzip(b: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(b).expect("gzip");
    e.finish().expect("gzip")
}

fn ezimg(cache: &Path) -> Command {
    let mut c = Command::cargo_bin("ezimg").expect("binary");
    c.env_remove("EZIMG_MIRROR")
        .env_remove("EZIMG_LOCK")
        .env("EZIMG_CACHE_DIR", cache);
    c
}

fn lock_text(url: &str, file: &str, tree: &str) -> String {
    format!(
        "lock_version = 1\n\n[[artifact]]\nname = \"mod\"\nversion = \"c0ffee\"\nkind = \"source\"\n\
         file = {file:?}\nurls = [{url:?}]\ngit_tree = {tree:?}\n"
    )
}

/// `ezimg fetch mod` with `lock` and a fresh cache: (success, stdout, stderr, cache dir).
fn fetch(lock: &Path, work: &Path, tag: &str) -> (bool, String, String, PathBuf) {
    let cache = work.join(format!("cache-{tag}"));
    let o = ezimg(&cache)
        .arg("fetch")
        .arg("mod")
        .arg("--lock")
        .arg(lock)
        .args(["--progress", "plain", "--retries", "0"])
        .output()
        .expect("ezimg fetch");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        cache,
    )
}

fn cache_entries(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("sha256")).map_or(0, |rd| rd.count())
}

#[test]
fn the_computed_tree_id_is_gits() {
    let Some(git) = git() else { return };
    let repo = make_repo(git);
    let commit = repo.stdout(&["rev-parse", "HEAD"]);
    let tree = repo.stdout(&["rev-parse", "HEAD^{tree}"]);
    let archive = repo.path.join("../x.tar.gz");
    run(repo.git().args([
        "archive",
        "--format=tar.gz",
        &format!("--prefix=x-{commit}/"),
        "-o",
        archive.to_str().expect("utf-8 path"),
        "HEAD",
    ]));
    let got = gittree::tree_of_archive(&archive).expect("tree of the archive");
    assert_eq!(got.hex(), tree);

    // git's pax global header (the commit id) is there and ignored; without it, same id.
    let tar = gunzip(&std::fs::read(&archive).expect("read"));
    assert!(tar.windows(commit.len()).any(|w| w == commit.as_bytes()));
    let plain = run(repo
        .git()
        .args(["archive", "--format=tar", "--prefix=y/", "HEAD"]));
    let got2 = gittree::tree_of_tar_gz(gzip(&plain, 9).as_slice()).expect("tree");
    assert_eq!(got2.hex(), tree);

    // Two top-level folders are not a commit archive.
    let mut two = tar::Builder::new(Vec::new());
    for p in ["a/x", "b/y"] {
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        two.append_data(&mut h, p, &b"1"[..]).expect("append");
    }
    let two = two.into_inner().expect("tar");
    let e = gittree::tree_of_tar_gz(gzip(&two, 6).as_slice())
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        e.contains("outside the archive's top-level directory"),
        "{e}"
    );
}

#[test]
fn fetch_accepts_the_pinned_tree_and_refuses_a_changed_byte() {
    let Some(git) = git() else { return };
    let repo = make_repo(git);
    let commit = repo.stdout(&["rev-parse", "HEAD"]);
    let tree = repo.stdout(&["rev-parse", "HEAD^{tree}"]);
    let good = run(repo.git().args([
        "archive",
        "--format=tar.gz",
        &format!("--prefix=mod-{commit}/"),
        "HEAD",
    ]));
    let work = tempfile::tempdir().expect("tempdir");
    let server = StaticServer::start();
    let file = format!("mod-{commit}.tar.gz");
    let lock = work.path().join("artifacts.lock");
    std::fs::write(&lock, lock_text(&server.url(&file), &file, &tree)).expect("write lock");

    // The real archive: accepted with no --allow-unverified and no trust-on-first-use warning.
    server.put(&file, good.clone());
    let (ok, out, err, cache) = fetch(&lock, work.path(), "good");
    assert!(ok, "{err}");
    assert!(!err.contains("TRUST ON FIRST USE"), "{err}");
    let path = out
        .trim()
        .strip_prefix("mod\t")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(std::fs::read(path).expect("fetched file"), good);
    // Offline, the cache finds it again (its sha256 was recorded when the tree checked out).
    let o = ezimg(&cache)
        .args(["fetch", "mod", "--offline", "--lock"])
        .arg(&lock)
        .output()
        .expect("ezimg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    export_import_round_trip(&lock, &cache, work.path());

    // One byte of one file's content changed (archive re-compressed): another tree, refused.
    let mut tar = gunzip(&good);
    let at = tar
        .windows(b"MARKER-CONTENT-1234".len())
        .position(|w| w == b"MARKER-CONTENT-1234")
        .expect("marker in the archive");
    tar[at] ^= 0x20;
    server.put(&file, gzip(&tar, 6));
    let (ok, _, err, cache) = fetch(&lock, work.path(), "content");
    assert!(!ok, "a changed file was accepted");
    assert!(
        err.contains("git tree mismatch") && err.contains(&tree) && err.contains("refused"),
        "{err}"
    );
    assert_eq!(
        cache_entries(&cache),
        0,
        "a refused archive entered the cache"
    );

    // One byte of the compressed stream changed: refused too (the archive no longer reads, or
    // reads to another tree).
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    server.put(&file, bad);
    let (ok, _, err, cache) = fetch(&lock, work.path(), "stream");
    assert!(!ok, "a corrupted archive was accepted");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(cache_entries(&cache), 0);

    // The same tree in other bytes (another compression level, as when a forge regenerates its
    // archives): accepted, since the pin is the tree, not the bytes.
    let regz = gzip(&gunzip(&good), 1);
    assert_ne!(regz, good);
    server.put(&file, regz.clone());
    let (ok, out, err, _) = fetch(&lock, work.path(), "regz");
    assert!(ok, "{err}");
    let path = out.trim().strip_prefix("mod\t").expect("name\\tpath");
    assert_eq!(std::fs::read(path).expect("fetched"), regz);
}

/// `ezimg export` from `cache`, `ezimg import` into a fresh cache: the archive is found offline
/// there (its alias was re-verified on import). With the alias's tree id changed in the export,
/// import refuses it.
fn export_import_round_trip(lock: &Path, cache: &Path, work: &Path) {
    let tarfile = work.join("site.tar");
    let o = ezimg(cache)
        .args(["export"])
        .arg(&tarfile)
        .args(["mod", "--lock"])
        .arg(lock)
        .output()
        .expect("ezimg export");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fresh = work.join("cache-imported");
    let o = ezimg(&fresh)
        .arg("import")
        .arg(&tarfile)
        .output()
        .expect("ezimg import");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ezimg(&fresh)
        .args(["fetch", "mod", "--offline", "--lock"])
        .arg(lock)
        .output()
        .expect("ezimg fetch");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The same archive claiming another tree: the alias is refused on import.
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&tarfile).expect("open"));
    for e in ar.entries().expect("tar") {
        let mut e = e.expect("entry");
        let p = e.path().expect("path").to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).expect("read");
        if p == "verified.list" {
            let text = String::from_utf8(b).expect("utf-8");
            let (alias, rest) = text.split_once(' ').expect("alias line");
            b = format!("gittree-{} {rest}", "0".repeat(40)).into_bytes();
            assert!(alias.starts_with("gittree-"), "{alias}");
        }
        members.push((p, b));
    }
    let mut tb = tar::Builder::new(Vec::new());
    for (p, b) in &members {
        let mut h = tar::Header::new_gnu();
        h.set_size(b.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tb.append_data(&mut h, p, b.as_slice()).expect("append");
    }
    let forged = work.join("forged.tar");
    std::fs::write(&forged, tb.into_inner().expect("tar")).expect("write");
    let o = ezimg(&work.join("cache-forged"))
        .arg("import")
        .arg(&forged)
        .output()
        .expect("ezimg import");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not 0000000000"),
        "{err}"
    );
}

#[test]
fn lock_records_the_sha256_of_the_verified_archive() {
    let Some(git) = git() else { return };
    let repo = make_repo(git);
    let commit = repo.stdout(&["rev-parse", "HEAD"]);
    let tree = repo.stdout(&["rev-parse", "HEAD^{tree}"]);
    let good = run(repo.git().args([
        "archive",
        "--format=tar.gz",
        &format!("--prefix=mod-{commit}/"),
        "HEAD",
    ]));
    let work = tempfile::tempdir().expect("tempdir");
    let server = StaticServer::start();
    let file = format!("mod-{commit}.tar.gz");
    server.put(&file, good.clone());
    let lock = work.path().join("artifacts.lock");
    std::fs::write(&lock, lock_text(&server.url(&file), &file, &tree)).expect("write lock");
    let o = ezimg(&work.path().join("cache"))
        .args(["lock", "--progress", "plain", "--lock"])
        .arg(&lock)
        .output()
        .expect("ezimg lock");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("git tree {tree} verified")) && !err.contains("TRUST ON FIRST USE"),
        "{err}"
    );
    let text = std::fs::read_to_string(&lock).expect("lock");
    let sha = ezimg::digest::sha256_hex(&good);
    assert!(
        text.contains(&format!("sha256 = \"{sha}\"")) && text.contains(&tree),
        "{text}"
    );
}
