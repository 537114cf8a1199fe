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
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for
    pub shell: clap_complete::Shell,
}
