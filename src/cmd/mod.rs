//! One file per subcommand, each: arguments -> library call -> print. What is here is argument
//! handling (clap types from `crate::cli` turned into library options) and printing only; the
//! work itself belongs in the library modules, so tests and other callers reach it without a
//! command line.

mod base;
mod build;
mod check;
mod completions;
mod export;
mod fetch;
mod images;
mod import;
mod init;
mod lock;
mod plan;
mod secrets;
mod serve;
mod stage;

use std::time::Duration;

use anyhow::{Result, bail};

use crate::artifact::mirror::Mirror;
use crate::artifact::{Cache, FetchOptions, Lock, Progress};
use crate::cli::{
    ArtifactSelection, ArtifactStore, Command, Global, LockArg, NetArgs, ProgressMode,
};
use crate::cluster::{self, Loaded, Severity};
use crate::data::DataTree;
use crate::plan::Catalog;

/// Run one subcommand.
pub fn run(g: &Global, command: &Command) -> Result<()> {
    match command {
        Command::Init(a) => init::run(a),
        Command::Check(a) => check::run(g, a),
        Command::Plan(a) => plan::run(g, a),
        Command::Build(a) => build::run(g, a),
        Command::Completions(a) => completions::run(a),
        Command::Fetch(a) => fetch::run(g, a),
        Command::Lock(a) => lock::run(g, a),
        Command::Export(a) => export::run(g, a),
        Command::Import(a) => import::run(a),
        Command::Stage(a) => stage::run(g, a),
        Command::Base(a) => base::run(a),
        Command::Secrets(a) => secrets::run(g, a),
        Command::Serve(a) => serve::run(g, a),
        Command::Images(a) => images::run(g, a),
    }
}

/// Everything a command works from, loaded and validated once.
struct Inputs {
    tree: DataTree,
    loaded: Loaded,
}

impl Inputs {
    fn load(g: &Global) -> Result<Self> {
        let tree = DataTree::load(g.data.as_deref())?;
        if g.data.is_some() && !tree.embedded_tops.is_empty() {
            eprintln!(
                "note: {} has no {}: the embedded one(s) are used",
                tree.origin,
                tree.embedded_tops
                    .iter()
                    .map(|t| format!("{t}/"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Inputs {
            tree,
            loaded: cluster::load(g.cluster.as_deref())?,
        })
    }
}

/// Validate; print warnings to stderr; fail on errors.
fn validated<'a>(inputs: &'a Inputs, quiet_warnings: bool) -> Result<Catalog<'a>> {
    let catalog = Catalog::load(&inputs.tree)?;
    let diags = cluster::validate(&inputs.loaded, &catalog.role_params());
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    for d in &diags {
        if d.severity == Severity::Error || !quiet_warnings {
            eprintln!("{d}");
        }
    }
    if errors > 0 {
        anyhow::bail!(
            "{}: {errors} error(s) in the cluster file",
            inputs.loaded.origin()
        );
    }
    Ok(catalog)
}

/// The lock by the one rule (`Lock::resolve`), said on stderr.
fn resolve_lock(g: &Global, a: &LockArg) -> Result<Lock> {
    let (lock, why) = Lock::resolve(a.lock.as_deref(), g.data.as_deref(), g.cluster.as_deref())?;
    eprintln!("lock: {} ({why})", lock.describe());
    Ok(lock)
}

/// The lock of the artifact subcommands (`fetch`, `lock`, `export`), said on stderr.
fn load_lock(g: &Global, s: &ArtifactStore) -> Result<Lock> {
    let (lock, why) = Lock::resolve(s.lock.as_deref(), g.data.as_deref(), g.cluster.as_deref())?;
    eprintln!("lock: {} ({why})", lock.origin);
    Ok(lock)
}

/// `--mirror`, `--jobs`, `--retries`, `--timeout`, `--progress` as fetch options.
fn fetch_options(cache: Cache, net: &NetArgs) -> Result<FetchOptions> {
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

/// The artifacts named by `NAME…`, `--role` or `--all` (all of the lock when none is given and
/// `default_all`).
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
