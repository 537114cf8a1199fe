//! Command-line types only; the logic lives in the modules `main` dispatches to.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ezimg",
    version,
    about = "Build preconfigured HA Kubernetes nodes: bundles, kickstart files, cloud-init seeds",
    long_about = "ezimg turns a cluster file and role layers into, for every node, something that \
boots already tuned: a bundle that `apply` installs, a kickstart file for PXE installs and a \
cloud-init NoCloud seed. With no cluster file the embedded default (the seed guide's cluster) is used."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Cluster file (default: the embedded default cluster)
    #[arg(short, long, global = true, env = "EZIMG_CLUSTER", value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Directory holding layers/, roles/ and kickstart/ to use instead of the embedded ones
    #[arg(long, global = true, env = "EZIMG_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The cluster's secret store (default: beside the cluster file, `cluster.toml` ->
    /// `cluster.secrets/`; for the embedded default cluster `./ezk8s.secrets/`)
    #[arg(long, global = true, env = "EZIMG_SECRETS", value_name = "DIR")]
    pub secrets: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the default cluster file, commented, to start from
    Init(InitArgs),
    /// Validate the cluster file and the layers, and explain what was found
    Check,
    /// Print the resolved plan of each node (layers, files and their sha256, what is skipped)
    Plan(PlanArgs),
    /// Render outputs (bundle, kickstart, cloud-init seed) for a role, a node or all nodes
    Build(BuildArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Download artifacts from artifacts.lock into the verified cache
    Fetch(FetchArgs),
    /// Record the sha256 of pins that have none (trust on first use for unverified pins)
    Lock(LockArgs),
    /// Write a tar of verified cache entries and the lock, for machines without network
    Export(ExportArgs),
    /// Add the entries of an `ezimg export` tar to the cache, verifying each
    Import(ImportArgs),
    /// Build stages (nginx, keepalived) from pinned sources into cached tarballs
    Stage(StageArgs),
    /// Build base OS images (debian12) from the host's apt sources, cached
    Base(crate::base::BaseArgs),
    /// The cluster's secret store: CAs, service-account key, bootstrap token, VRRP password
    Secrets(SecretsArgs),
}

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create the store (fails if one exists: a new CA would split a running cluster)
    Init,
    /// Say where the store is and what it holds (fingerprints and hashes, never a secret)
    Show,
    /// Replace the bootstrap token or the VRRP password
    Rotate(RotateArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RotateWhat {
    /// The kubeadm bootstrap token nodes join with
    Token,
    /// keepalived's VRRP PASS authentication
    VrrpPassword,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[arg(value_enum)]
    pub what: RotateWhat,
    /// Use this value instead of a random one (read it from a file with `--value "$(cat F)"`)
    #[arg(long, value_name = "VALUE")]
    pub value: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the cluster file ("-" for standard output)
    #[arg(long, short, default_value = "cluster.toml", value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Only nodes of this role
    #[arg(long)]
    pub role: Option<String>,
    /// Only this node (hostname)
    #[arg(long)]
    pub node: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Format {
    /// The role's deterministic tar.gz with `apply`
    Bundle,
    /// A ks.cfg per node (el7, el9)
    Kickstart,
    /// A NoCloud seed per node: the three files, a FAT image (CIDATA) and an ISO (cidata)
    CloudInit,
    /// A qcow2 per role, baked: the base booted once with the bundle applied (debian12)
    Qcow2,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Role to build (all its nodes unless --node)
    #[arg(long, required_unless_present_any = ["all", "node"], conflicts_with = "all")]
    pub role: Option<String>,
    /// Only this node
    #[arg(long, conflicts_with = "all")]
    pub node: Option<String>,
    /// Every role and node of the cluster
    #[arg(long)]
    pub all: bool,
    /// Outputs to write (comma-separated)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bundle,kickstart,cloud-init"
    )]
    pub format: Vec<Format>,
    /// Output directory; each role's folder in it is replaced as a whole at the end
    #[arg(long, short, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// URL the kickstart %post fetches the bundle from (checked against its sha256);
    /// without it the bundle is embedded in the kickstart file
    #[arg(long, value_name = "URL")]
    pub bundle_url: Option<String>,
    /// Where `apply` on the node finds artifacts: a directory or an http(s) URL
    #[arg(long, value_name = "DIR|URL")]
    pub artifacts_from: Option<String>,
    /// Fetch the role's artifacts, compile its build stages, and put them in <out>/<role>/artifacts
    #[arg(long)]
    pub fetch: bool,
    /// With --fetch: a base URL or a flat directory to fetch from instead of the lock's URLs
    #[arg(long, value_name = "URL|DIR", requires = "fetch")]
    pub mirror: Vec<String>,
    /// With --fetch: accept pins marked `verified = false` in artifacts.lock
    #[arg(long, requires = "fetch")]
    pub allow_unverified: bool,
    /// Write the outputs even when some artifact is missing or has no digest (each node then
    /// stops before changing anything, naming what is missing); without it such a build fails
    #[arg(long, env = "EZIMG_ALLOW_INCOMPLETE", value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_incomplete: bool,
    /// With --format qcow2: role bakes run side by side [default: 2 on 2 cores or more]
    #[arg(long, env = "EZIMG_BAKE_JOBS", value_name = "N", value_parser = crate::image::BakeOptions::parse_jobs)]
    pub bake_jobs: Option<usize>,
    /// With --format qcow2: seconds one bake VM may run before the bake fails
    #[arg(long, env = "EZIMG_BAKE_TIMEOUT", value_name = "SECONDS", default_value = "3600", value_parser = crate::image::BakeOptions::parse_timeout)]
    pub bake_timeout: u64,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for
    pub shell: clap_complete::Shell,
}

/// Which lock and cache the artifact commands use.
#[derive(Debug, Args)]
pub struct ArtifactStore {
    /// Lock file (default: <data>/artifacts.lock, ./artifacts.lock, else the embedded lock)
    #[arg(long, env = "EZIMG_LOCK", value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Cache directory (default: $EZIMG_CACHE_DIR, else $XDG_CACHE_HOME/ezimg)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Which artifacts: those of roles, all, or by name.
#[derive(Debug, Args)]
pub struct ArtifactSelection {
    /// Artifacts the layers of this role name (repeatable)
    #[arg(long)]
    pub role: Vec<String>,
    /// Every artifact in the lock
    #[arg(long)]
    pub all: bool,
    /// Artifact names from the lock
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, log lines otherwise
    Auto,
    Bars,
    Plain,
    Quiet,
}

/// Network options shared by `fetch` and `lock`.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Fetch from this mirror instead of the lock's URLs: a base URL (URL/<file>) or a flat
    /// directory of files (repeatable; tried in order)
    #[arg(long, env = "EZIMG_MIRROR", value_name = "URL|DIR")]
    pub mirror: Vec<String>,
    /// Downloads at once
    #[arg(long, short, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
    /// Retries per source on 5xx, timeouts and resets
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
    /// Seconds to wait for a response or for more bytes before retrying
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,
    /// Progress display
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub select: ArtifactSelection,
    #[command(flatten)]
    pub store: ArtifactStore,
    #[command(flatten)]
    pub net: NetArgs,
    /// Use the cache only; fail naming every artifact that is not there
    #[arg(long)]
    pub offline: bool,
    /// Accept pins marked `verified = false` (their digest was recorded on first use)
    #[arg(long)]
    pub allow_unverified: bool,
    /// Rehash cached files before trusting them
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Only these pins (default: every pin without a sha256)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub store: ArtifactStore,
    #[command(flatten)]
    pub net: NetArgs,
    /// Do not write: fail if some pin has no sha256 yet (for CI)
    #[arg(long)]
    pub check: bool,
    /// Use the cache only (learn digests of files already imported)
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Tar file to write
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub select: ArtifactSelection,
    #[command(flatten)]
    pub store: ArtifactStore,
    /// Leave out selected artifacts that are not cached instead of failing
    #[arg(long)]
    pub allow_missing: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Tar file written by `ezimg export`
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Cache directory (default: $EZIMG_CACHE_DIR, else $XDG_CACHE_HOME/ezimg)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Also write the archive's copy of the lock here
    #[arg(long, value_name = "FILE")]
    pub lock_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StageArgs {
    #[command(subcommand)]
    pub command: StageCommand,
}

#[derive(Debug, Subcommand)]
pub enum StageCommand {
    /// Build a stage, or print its cached output (a rebuild with nothing changed compiles nothing)
    Build(StageBuildArgs),
    /// List the stages: embedded, and those in <data>/stages/
    List,
}

#[derive(Debug, Args)]
pub struct StageBuildArgs {
    /// Stage name (`nginx`, `keepalived`) or path to a stage file (`x.toml`)
    pub name: String,
    /// Local archive or directory for a source: NAME=PATH (repeatable)
    #[arg(long = "source", value_name = "NAME=PATH")]
    pub sources: Vec<String>,
    /// Override a variable of the stage: NAME=VALUE (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Also copy the stage tarball here (the manifest goes next to it as FILE.json)
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Cache directory (default: $EZIMG_CACHE_DIR, else $XDG_CACHE_HOME/ezimg); outputs go to <dir>/stages/
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Parallel make jobs (default: the number of CPUs)
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,
    /// Build even if the cache has this exact input set
    #[arg(long)]
    pub rebuild: bool,
    /// Keep the work directory (its path is printed) for debugging
    #[arg(long)]
    pub keep_work: bool,
}
