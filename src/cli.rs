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
    pub early: Early,
    #[command(subcommand)]
    pub command: Command,
}

/// `-c`, `--data` and `--secrets` given before the subcommand (`ezimg -c FILE build …`), as
/// well as after it; refused for a subcommand that does not read them.
#[derive(Debug, Args)]
pub struct Early {
    /// Cluster file, for check, plan, build, fetch, lock, export, secrets (default: the
    /// embedded default cluster; env EZIMG_CLUSTER)
    #[arg(short = 'c', long = "cluster", value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Data directory, for check, plan, build, fetch, export, stage (env EZIMG_DATA)
    #[arg(long = "data", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Secret store, for check, build, secrets (env EZIMG_SECRETS)
    #[arg(long = "secrets", value_name = "DIR")]
    pub secrets: Option<PathBuf>,
}

/// What a command reads besides its own flags, whichever side of the subcommand they were given.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub cluster: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub secrets: Option<PathBuf>,
}

/// The cluster file.
#[derive(Debug, Args)]
pub struct ClusterArg {
    /// Cluster file (default: the embedded default cluster)
    #[arg(short, long, env = "EZIMG_CLUSTER", value_name = "FILE")]
    pub cluster: Option<PathBuf>,
}

/// The data tree.
#[derive(Debug, Args)]
pub struct DataArg {
    /// Directory holding layers/, roles/, kickstart/ (and stages/, artifacts.lock) to use
    /// instead of the embedded ones; a folder it lacks comes from the embedded tree (said)
    #[arg(long, env = "EZIMG_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// The secret store.
#[derive(Debug, Args)]
pub struct SecretsDirArg {
    /// The cluster's secret store (default: beside the cluster file, `cluster.toml` ->
    /// `cluster.secrets/`; for the embedded default cluster `./ezk8s.secrets/`)
    #[arg(long, env = "EZIMG_SECRETS", value_name = "DIR")]
    pub secrets: Option<PathBuf>,
}

impl Cli {
    /// The inputs of the chosen command: its own flags, else those given before it (which
    /// win over the environment). A flag before a command that does not read it is an error.
    pub fn inputs(&self) -> Result<Global, String> {
        let none = (None, None, None);
        let (cluster, data, secrets) = match &self.command {
            Command::Check(a) => (
                Some(&a.cluster.cluster),
                Some(&a.data.data),
                Some(&a.secrets.secrets),
            ),
            Command::Plan(a) => (Some(&a.cluster.cluster), Some(&a.data.data), None),
            Command::Build(a) => (
                Some(&a.cluster.cluster),
                Some(&a.data.data),
                Some(&a.secrets.secrets),
            ),
            Command::Fetch(a) => (Some(&a.cluster.cluster), Some(&a.data.data), None),
            Command::Lock(a) => (Some(&a.cluster.cluster), Some(&a.data.data), None),
            Command::Export(a) => (Some(&a.cluster.cluster), Some(&a.data.data), None),
            Command::Stage(a) => (None, Some(&a.data), None),
            Command::Secrets(a) => (Some(&a.cluster), None, Some(&a.secrets)),
            Command::Serve(a) => (Some(&a.cluster.cluster), Some(&a.data.data), None),
            Command::Images(a) => {
                let (c, d) = a.inputs();
                (Some(c), Some(d), None)
            }
            Command::Init(_) | Command::Completions(_) | Command::Import(_) | Command::Base(_) => {
                none
            }
        };
        let name = self.command_name();
        let pick = |early: &Option<PathBuf>,
                    own: Option<&Option<PathBuf>>,
                    flag: &str|
         -> Result<Option<PathBuf>, String> {
            match (early, own) {
                (Some(_), None) => {
                    Err(format!("`ezimg {name}` does not read {flag}: leave it out"))
                }
                (Some(e), Some(_)) => Ok(Some(e.clone())),
                (None, own) => Ok(own.and_then(Clone::clone)),
            }
        };
        Ok(Global {
            cluster: pick(&self.early.cluster, cluster, "a cluster file (-c)")?,
            data: pick(&self.early.data, data, "a data directory (--data)")?,
            secrets: pick(&self.early.secrets, secrets, "a secret store (--secrets)")?,
        })
    }

    fn command_name(&self) -> &'static str {
        match &self.command {
            Command::Init(_) => "init",
            Command::Check(_) => "check",
            Command::Plan(_) => "plan",
            Command::Build(_) => "build",
            Command::Completions(_) => "completions",
            Command::Fetch(_) => "fetch",
            Command::Lock(_) => "lock",
            Command::Export(_) => "export",
            Command::Import(_) => "import",
            Command::Stage(_) => "stage",
            Command::Base(_) => "base",
            Command::Secrets(_) => "secrets",
            Command::Serve(_) => "serve",
            Command::Images(_) => "images",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the default cluster file, commented, to start from
    Init(InitArgs),
    /// Validate the cluster file and the layers, render every output `build` renders (all
    /// nodes, all formats) and check it; whatever passes, `build` builds
    Check(CheckArgs),
    /// Print the resolved plan of each node (layers, files and their sha256, what is skipped)
    Plan(PlanArgs),
    /// Render outputs (bundle, kickstart, cloud-init seed) for a role, a node or all nodes
    Build(BuildArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Download artifacts from artifacts.lock into the verified cache
    Fetch(FetchArgs),
    /// Record the sha256 of pins that have none (the one trust-on-first-use step; fetch and
    /// build then check against it)
    Lock(LockArgs),
    /// Write a tar of verified cache entries and the lock, for machines without network
    Export(ExportArgs),
    /// Add the entries of an `ezimg export` tar to the cache, verifying each
    Import(ImportArgs),
    /// Build stages (nginx, keepalived) from pinned sources into cached tarballs
    Stage(StageArgs),
    /// Build base OS images (debian12) from the host's apt sources, cached
    Base(BaseArgs),
    /// The cluster's secret store: CAs, service-account key, bootstrap token, VRRP password
    Secrets(SecretsArgs),
    /// Serve a build's output and the verified cache to installing nodes over HTTP: PXE boot
    /// configs, each node's kickstart and seed (to that node only), bundles and artifacts
    Serve(ServeArgs),
    /// Container images the cluster runs (the lock's `[[image]]` pins): list them, pull them
    /// by digest into the verified cache, push them to the site's registry
    Images(ImagesArgs),
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Each image of the lock: its pinned digest and whether it is in the cache
    List(ImagesListArgs),
    /// Pull images by their pinned digests into the cache's OCI layout (verified, resumable)
    Pull(ImagesPullArgs),
    /// Push pulled images (from the cache, or an OCI layout `build --format images` wrote) to a
    /// registry (default: the cluster file's registry_mirror)
    Push(ImagesPushArgs),
}

#[derive(Debug, Args)]
pub struct ImagesListArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub store: ArtifactStore,
}

/// TLS and network options of the registry commands.
#[derive(Debug, Args)]
pub struct RegistryNet {
    /// Trust this CA (PEM) for the registry's certificate, besides the system's
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Speak plain HTTP to the registry (a loopback or otherwise trusted address only)
    #[arg(long)]
    pub plain_http: bool,
    /// Retries of a blob after a cut, a timeout or a 5xx (each resumes where it stopped)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
    /// Seconds to wait for a response or for more bytes
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ImagesPullArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
    /// Images: full references or `name:tag` (default: every image of the lock)
    #[arg(value_name = "IMAGE")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub store: ArtifactStore,
    /// Pull from this registry (host[:port] or URL) instead of each image's own, same
    /// repository paths: a mirror, or another site's registry
    #[arg(long, value_name = "REGISTRY")]
    pub from: Option<String>,
    /// Platform to take from multi-platform images
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH")]
    pub platform: String,
    #[command(flatten)]
    pub net: RegistryNet,
}

#[derive(Debug, Args)]
pub struct ImagesPushArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
    /// Images: full references or `name:tag` (default: every image of the lock)
    #[arg(value_name = "IMAGE")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub store: ArtifactStore,
    /// Registry to push to, host[:port] or URL (default: the cluster file's registry_mirror,
    /// the ops node's registry)
    #[arg(long, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// Push from this OCI image layout (the <out>/images/ of `build --format images`, e.g. on
    /// an offline copy) instead of the cache
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub net: RegistryNet,
}

impl ImagesArgs {
    /// The cluster file and data directory flags of the chosen images command.
    pub fn inputs(&self) -> (&Option<PathBuf>, &Option<PathBuf>) {
        match &self.command {
            ImagesCommand::List(a) => (&a.cluster.cluster, &a.data.data),
            ImagesCommand::Pull(a) => (&a.cluster.cluster, &a.data.data),
            ImagesCommand::Push(a) => (&a.cluster.cluster, &a.data.data),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub lock: LockArg,
    /// The --out of `ezimg build` to serve; the PXE tree is written into <DIR>/pxe/
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Verified cache whose artifacts are served (default: $EZIMG_CACHE_DIR, else the user's
    /// cache directory)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Address and port to listen on (port 0: any free port, printed on stdout)
    #[arg(long, value_name = "ADDR:PORT", default_value = crate::serve::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// This server's URL as nodes reach it, written into the boot configs (default: the
    /// listen address, or with a wildcard listen address the ops node's ip and the port)
    #[arg(long, env = "EZIMG_SERVE_URL", value_name = "URL", value_parser = http_url)]
    pub url: Option<reqwest::Url>,
    /// Requests answered at once (until their body is sent); more wait their turn
    #[arg(long, value_name = "N", default_value_t = crate::serve::DEFAULT_MAX_REQUESTS, value_parser = clap::value_parser!(usize))]
    pub max_requests: usize,
    /// Seconds a connection has to send a complete request head before it is closed
    #[arg(long, value_name = "SECONDS", default_value_t = crate::serve::DEFAULT_HEADER_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Installer kernel, relative to the PXE tree [default: installer/<os dir>/vmlinuz]
    #[arg(long, env = "EZIMG_SERVE_KERNEL", value_name = "PATH")]
    pub kernel: Option<String>,
    /// Installer initrd, relative to the PXE tree [default: installer/<os dir>/initrd.img]
    #[arg(long, env = "EZIMG_SERVE_INITRD", value_name = "PATH")]
    pub initrd: Option<String>,
    /// `inst.repo=` on the installer's command line (the kickstart's `url` names one too)
    #[arg(long, env = "EZIMG_SERVE_INST_REPO", value_name = "URL")]
    pub inst_repo: Option<String>,
    /// Extra kernel arguments, last on every boot line (iPXE, GRUB, PXELINUX): console=ttyS0,
    /// inst.text, ip=...
    #[arg(long, env = "EZIMG_SERVE_APPEND", value_name = "ARGS", allow_hyphen_values = true, value_parser = boot_args)]
    pub append: Option<String>,
    /// dnsmasq.conf: proxy-DHCP beside the site's DHCP server, or full DHCP with a fixed
    /// address per node `mac`
    #[arg(long, value_enum, default_value = "proxy")]
    pub dhcp: crate::serve::dnsmasq::DhcpMode,
}

#[derive(Debug, Args)]
pub struct SecretsArgs {
    /// Cluster file (default: the embedded default cluster)
    #[arg(short, long, global = true, env = "EZIMG_CLUSTER", value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// The cluster's secret store (default: beside the cluster file, `cluster.toml` ->
    /// `cluster.secrets/`; for the embedded default cluster `./ezk8s.secrets/`)
    #[arg(long, global = true, env = "EZIMG_SECRETS", value_name = "DIR")]
    pub secrets: Option<PathBuf>,
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

/// Which artifacts.lock a command reads.
#[derive(Debug, Args)]
pub struct LockArg {
    /// Lock file (default: <--data DIR>/artifacts.lock, else artifacts.lock beside the cluster
    /// file, else the lock embedded in ezimg; never the current directory's)
    #[arg(long, env = "EZIMG_LOCK", value_name = "FILE")]
    pub lock: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub secrets: SecretsDirArg,
    #[command(flatten)]
    pub lock: LockArg,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub lock: LockArg,
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
    /// A bootable installer ISO per node (el7, el9): the pinned vendor ISO with the node's
    /// kickstart, bundle and artifacts, installing with no install server
    Iso,
    /// The PXE tree in <out>/pxe/ for every node with a `mac` (iPXE, GRUB, PXELINUX configs,
    /// dnsmasq.conf), pointing at --serve-url; the same tree `ezimg serve` writes
    Pxe,
    /// The lock's container images, from the verified cache, as one OCI image layout in
    /// <out>/images/ (`ezimg images push --from <out>/images` pushes it)
    Images,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("target").required(true).multiple(true).args(["role", "node", "all"])
))]
pub struct BuildArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub secrets: SecretsDirArg,
    #[command(flatten)]
    pub lock: LockArg,
    /// Role to build (all its nodes unless --node)
    #[arg(long, conflicts_with = "all")]
    pub role: Option<String>,
    /// Only this node
    #[arg(long, conflicts_with = "all")]
    pub node: Option<String>,
    /// Every role and node of the cluster
    #[arg(long)]
    pub all: bool,
    /// Outputs to write (comma-separated); pxe and images are the cluster's (all its nodes,
    /// all the lock's images) whichever role or node is built
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bundle,kickstart,cloud-init"
    )]
    pub format: Vec<Format>,
    /// Output directory; each role's folder in it is replaced as a whole at the end
    #[arg(long, short, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Where --out is served over http(s): nodes fetch <URL>/<role>/ezimg-<role>-bundle.tar.gz
    /// (checked against its sha256); without it the bundle is embedded in each kickstart and seed
    #[arg(long, value_name = "URL", value_parser = http_url)]
    pub bundle_url: Option<reqwest::Url>,
    /// Where `apply` on the node finds artifacts: an absolute directory on the node or an
    /// http(s) URL
    #[arg(long, value_name = "DIR|URL", value_parser = node_location)]
    pub artifacts_from: Option<String>,
    /// With --format pxe: the install server's URL as nodes reach it, written into the boot
    /// configs [default: what `ezimg serve` uses on 0.0.0.0: http://<ops node ip>:8080]
    #[arg(long, value_name = "URL", value_parser = http_url)]
    pub serve_url: Option<reqwest::Url>,
    /// Fetch the role's artifacts, compile its build stages, and put them in <out>/<role>/artifacts
    #[arg(long)]
    pub fetch: bool,
    /// With --fetch: a base URL or a flat directory to fetch from instead of the lock's URLs
    #[arg(long, value_name = "URL|DIR", requires = "fetch")]
    pub mirror: Vec<String>,
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

/// An http or https URL with a host.
fn http_url(s: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("not an http(s) URL with a host".into());
    }
    Ok(u)
}

fn boot_args(s: &str) -> Result<String, String> {
    crate::serve::pxe::check_append(s).map(|()| s.to_string())
}

/// A place on the node: an http(s) URL, or an absolute path (a relative one would depend on
/// the directory `apply` happens to run in).
fn node_location(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        return http_url(s).map(|_| s.to_string());
    }
    if !s.starts_with('/') {
        return Err("must be an absolute directory on the node or an http(s) URL".into());
    }
    Ok(s.to_string())
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for
    pub shell: clap_complete::Shell,
}

/// Which lock and cache the artifact commands use.
#[derive(Debug, Args)]
pub struct ArtifactStore {
    /// Lock file (default: <--data DIR>/artifacts.lock, else artifacts.lock beside the cluster
    /// file, else the lock embedded in ezimg; never the current directory's)
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
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub select: ArtifactSelection,
    #[command(flatten)]
    pub store: ArtifactStore,
    #[command(flatten)]
    pub net: NetArgs,
    /// Use the cache only; fail naming every artifact that is not there
    #[arg(long)]
    pub offline: bool,
    /// Rehash cached files before trusting them
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
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
    /// Ask this registry (host[:port] or URL) for the images' digests instead of each
    /// image's own registry, same repository paths
    #[arg(long, value_name = "REGISTRY")]
    pub images_from: Option<String>,
    /// Trust this CA (PEM) for the registries' certificates, besides the system's
    #[arg(long, value_name = "FILE")]
    pub registry_ca_file: Option<PathBuf>,
    /// Speak plain HTTP to the registries (loopback or trusted addresses only)
    #[arg(long)]
    pub registry_plain_http: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub data: DataArg,
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
    /// Directory whose stages/ holds stage files to use besides the embedded ones
    #[arg(long, global = true, env = "EZIMG_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    #[command(subcommand)]
    pub command: StageCommand,
}

#[derive(Debug, Subcommand)]
pub enum StageCommand {
    /// Build a stage, or print its cached output (a rebuild with nothing changed compiles nothing)
    Build(StageBuildArgs),
    /// List the stages: embedded, and those in <data>/stages/
    List,
    /// Check a stage tarball's ELF files against a target: highest GLIBC version, every NEEDED soname
    Check(StageCheckArgs),
}

#[derive(Debug, Args)]
pub struct StageCheckArgs {
    /// The stage tarball (`ezimg stage build --out`, or `<cache>/stages/<key>.tar.gz`)
    pub tarball: PathBuf,
    /// Target list: `el7`, `el9`, `debian12` (stages/targets/<target>.toml; <data>/stages/targets/ overrides)
    #[arg(long, short, value_name = "TARGET")]
    pub target: String,
    /// The stage the tarball is from, for its declared runtime packages (default: the `stage`
    /// of the manifest next to the tarball: FILE.json or <key>.json)
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
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
    /// The OS the output is for (`debian12`, `el7`, `el9`): its ELF files are checked against
    /// stages/targets/<target>.toml before the output is cached
    #[arg(long, short, value_name = "TARGET", default_value = crate::stage::HOST_TARGET)]
    pub target: String,
    /// Where configure/make run: `host` (this Debian 12 machine) or `vm` (a VM of the target
    /// with only the stage's [build_deps], no network). Default: host for debian12, else vm
    #[arg(long, value_enum, value_name = "BUILDER")]
    pub builder: Option<crate::stage::Builder>,
    /// Time limit for the VM builder's build, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 4 * 3600)]
    pub vm_timeout: u64,
    /// el7/el9 VM builder: a directory with the stage's build dependencies as RPMs (the VM has
    /// no network; make it on a machine of the target with `yumdownloader --resolve`)
    #[arg(long, value_name = "DIR")]
    pub deps_from: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BaseArgs {
    #[command(subcommand)]
    pub command: BaseCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BaseCommand {
    /// Build (or find in the cache) the base qcow2 of an OS, from the host's apt sources
    Build(BaseBuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct BaseBuildArgs {
    /// Operating system of the base
    #[arg(long, value_enum, default_value = "debian12")]
    pub os: crate::image::base::BaseOs,
    /// Also copy the image here (its manifest goes next to it as FILE.json)
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Cache directory (default: $EZIMG_CACHE_DIR, else $XDG_CACHE_HOME/ezimg); bases go to <dir>/base/
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Build even if the cache holds this exact input set
    #[arg(long)]
    pub rebuild: bool,
    /// Install these packages too (what a role's bake asks for; repeat or comma-separate)
    #[arg(long, value_name = "PKG", value_delimiter = ',')]
    pub with: Vec<String>,
}
