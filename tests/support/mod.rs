//! What the integration tests share, so each rule exists once: where the upstream fixtures are,
//! whether this host can run a check (root, a tool, a C header), the default cluster file with
//! the edits the tests make to it, and the one skip rule: a test that cannot run here prints
//! `SKIP <test>: <why>` and returns; under CI a missing tool is a failure, not a skip (the CI
//! machine runs scripts/test.sh, which installs every tool), while inputs outside the repository
//! (../shared) may be absent anywhere.
//!
//! Included with `mod support;` from each test file (`tests/support/` is not a test target).

#![allow(dead_code)]

pub mod seed_inputs;
pub mod static_http;

use std::path::{Path, PathBuf};

/// The project root (where `.venv`, `layers/` and `tests/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `CI` is set to something other than empty, `0` or `false` (CI systems set `CI=true`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// The test that is running: libtest names each test's thread after the test; the binary's
/// name (this crate's) otherwise.
pub fn current_test() -> String {
    let bin = module_path!().split("::").next().unwrap_or("test");
    match std::thread::current().name() {
        Some(t) if t != "main" => format!("{bin}::{t}"),
        _ => bin.to_string(),
    }
}

/// This host lacks something the test needs that scripts/test.sh installs: print
/// `SKIP <test>: <why>` and return true (the caller returns); under CI, fail instead.
pub fn skip_or_fail(test: &str, why: &str) -> bool {
    if under_ci() {
        panic!("{test}: {why} (under CI this is a failure, not a skip)");
    }
    skip(test, why)
}

/// An input outside this machine's control is absent (../shared, a file that cannot be
/// downloaded here): print `SKIP <test>: <why>` and return true, under CI too.
pub fn skip(test: &str, why: &str) -> bool {
    eprintln!("SKIP {test}: {why}");
    true
}

/// The upstream source tarballs: `$EZIMG_FIXTURES`, else `../shared/fixtures/upstream`. The
/// directory counts when it holds `SOURCES.md`, and then every file SOURCES.md lists must be
/// there (a partial copy is an error, not a skip). None when absent, for tests that then use
/// something else and say so; an `EZIMG_FIXTURES` that names no fixtures is an error.
pub fn upstream_fixtures() -> Option<PathBuf> {
    let set = std::env::var_os("EZIMG_FIXTURES").filter(|v| !v.is_empty());
    let dir = fixtures_dir();
    let sources = dir.join("SOURCES.md");
    let Ok(text) = std::fs::read_to_string(&sources) else {
        assert!(
            set.is_none(),
            "EZIMG_FIXTURES={}: no SOURCES.md there (it must name the upstream fixtures directory)",
            dir.display()
        );
        return None;
    };
    let listed = fixture_files(&text);
    assert!(
        !listed.is_empty(),
        "{}: lists no files (a table row `| <file> | ... |`)",
        sources.display()
    );
    for f in &listed {
        assert!(
            dir.join(f).is_file(),
            "{}: lists {f}, which is not in {}",
            sources.display(),
            dir.display()
        );
    }
    Some(dir)
}

/// [`upstream_fixtures`], or None with `SKIP <test>: ...` printed (under CI too: ../shared is
/// outside the repository).
pub fn fixtures(test: &str) -> Option<PathBuf> {
    let found = upstream_fixtures();
    if found.is_none() {
        skip(
            test,
            &format!(
                "no upstream fixtures at {} (set EZIMG_FIXTURES to the directory with SOURCES.md)",
                fixtures_dir().display()
            ),
        );
    }
    found
}

/// Where the upstream fixtures are looked for.
fn fixtures_dir() -> PathBuf {
    std::env::var_os("EZIMG_FIXTURES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/fixtures/upstream"))
}

/// The file names in the first column of SOURCES.md's table.
fn fixture_files(sources_md: &str) -> Vec<String> {
    sources_md
        .lines()
        .filter_map(|l| l.trim().strip_prefix('|')?.split('|').next())
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.contains('.') && !c.contains(' ') && !c.starts_with('-'))
        .map(String::from)
        .collect()
}

/// The seed texts (`../shared/seeds`), or None (skipped with the reason) when absent.
pub fn seeds(test: &str) -> Option<PathBuf> {
    let dir = root().join("../shared/seeds");
    if dir.is_dir() {
        return Some(dir);
    }
    skip(test, &format!("no seeds at {}", dir.display()));
    None
}

/// The process runs as root (chroot, loop devices, mount namespaces).
pub fn is_root() -> bool {
    ezimg::process::is_root()
}

/// A command on PATH, or in /usr/sbin or /sbin (not on a plain user's PATH on Debian).
pub fn have_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// [`have_tool`], or skip (failed under CI) with the reason.
pub fn host_tool(name: &str) -> Option<PathBuf> {
    let found = have_tool(name);
    if found.is_none() {
        skip_or_fail(
            &current_test(),
            &format!("{name} is not installed (scripts/test.sh installs it)"),
        );
    }
    found
}

/// `path` (a file scripts/test-deps.sh makes, e.g. in `.venv`), or skip (failed under CI).
pub fn tool(path: &Path, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    skip_or_fail(
        &current_test(),
        &format!(
            "{} is missing ({what}); run scripts/test-deps.sh",
            path.display()
        ),
    );
    None
}

/// A C header is installed (the include directories of Debian's gcc on x86_64).
pub fn have_header(h: &str) -> bool {
    [
        "/usr/include",
        "/usr/local/include",
        "/usr/include/x86_64-linux-gnu",
    ]
    .iter()
    .any(|d| Path::new(d).join(h).exists())
}

/// Run a command; panic with its output when it fails.
pub fn run(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The default cluster file (`ezimg init`'s), as text.
pub fn default_cluster() -> String {
    ezimg::cluster::DEFAULT_TOML.to_string()
}

/// `text` (the default cluster) on `os` ("el9", "debian12") instead of el7.
pub fn with_os(text: &str, os: &str) -> String {
    edit(text, "os = \"el7\"", &format!("os = \"{os}\""))
}

/// `text` (the default cluster) with a `[roles.<role>]` table of `params` (TOML lines), made
/// from the commented example of that role.
pub fn with_role_params(text: &str, role: &str, params: &str) -> String {
    let example = format!("# [roles.{role}]");
    edit(
        text,
        &example,
        &format!("[roles.{role}]\n{}\n#", params.trim_end()),
    )
}

/// `text` with `from` replaced by `to`; panics when `from` is not there (the default cluster
/// changed under the test, which would otherwise test the unedited file).
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the cluster text has no {from:?} to replace"
    );
    text.replacen(from, to, 1)
}
