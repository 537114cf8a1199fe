//! The cluster file: inventory and network plan, and its validation.

pub mod locate;
mod repos;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use repos::{MirrorLayout, YumRepo, yum_repos};
pub use validate::{
    Diagnostic, RoleParams, Severity, check_ssh_key, is_crypt_hash, valid_interface, validate,
};

/// The embedded default: seed 000's cluster exactly.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Target operating system of the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    El7,
    El9,
    Debian12,
}

impl Os {
    pub const ALL: [Os; 3] = [Os::El7, Os::El9, Os::Debian12];

    pub fn as_str(self) -> &'static str {
        match self {
            Os::El7 => "el7",
            Os::El9 => "el9",
            Os::Debian12 => "debian12",
        }
    }

    /// The package manager the OS ships, as layers' scripts call it.
    pub fn package_manager(self) -> &'static str {
        match self {
            Os::El7 => "yum",
            Os::El9 => "dnf",
            Os::Debian12 => "apt",
        }
    }

    pub fn family(self) -> &'static str {
        match self {
            Os::El7 | Os::El9 => "el",
            Os::Debian12 => "debian",
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Os {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "el7" => Ok(Os::El7),
            "el9" => Ok(Os::El9),
            "debian12" => Ok(Os::Debian12),
            other => anyhow::bail!("unknown OS target {other:?} (expected el7, el9 or debian12)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpMode {
    Multicast,
    Unicast,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub interface: String,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    pub service_cidr: Ipv4Net,
    pub pod_cidr: Ipv4Net,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    pub vip: Ipv4Addr,
    pub router_id: u32,
    /// Optional: seeds the secret store's VRRP password when the store is created (a secret
    /// belongs in the store; see `secrets`). Never rendered into shared outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_pass: Option<String>,
    #[serde(default = "default_advert_int")]
    pub advert_int: u32,
    #[serde(default = "default_vrrp_mode")]
    pub mode: VrrpMode,
}

fn default_advert_int() -> u32 {
    1
}
fn default_vrrp_mode() -> VrrpMode {
    VrrpMode::Multicast
}

/// What a node's disk is for (seed 002 磁盘划分). The installer touches only the system disk;
/// the `disks` layer formats an etcd or data disk only while it is blank; a keep disk is never
/// touched by anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskPurpose {
    /// The installer's target: `/`, `/boot`; the only disk kickstart may wipe.
    System,
    /// Masters: etcd's data directory, `/var/lib/etcd`.
    Etcd,
    /// `/data`, with `/var/lib/kubelet` and `/var/lib/containerd` bound from it.
    Data,
    /// Never touched (not partitioned, formatted or mounted).
    Keep,
}

impl DiskPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskPurpose::System => "system",
            DiskPurpose::Etcd => "etcd",
            DiskPurpose::Data => "data",
            DiskPurpose::Keep => "keep",
        }
    }

    /// Where the `disks` layer mounts it, for the purposes it manages.
    pub fn mount(self) -> Option<&'static str> {
        match self {
            DiskPurpose::Etcd => Some("/var/lib/etcd"),
            DiskPurpose::Data => Some("/data"),
            DiskPurpose::System | DiskPurpose::Keep => None,
        }
    }

    /// The filesystem label the `disks` layer gives it and fstab mounts it by.
    pub fn label(self) -> Option<&'static str> {
        match self {
            DiskPurpose::Etcd => Some("EZ-ETCD"),
            DiskPurpose::Data => Some("EZ-DATA"),
            DiskPurpose::System | DiskPurpose::Keep => None,
        }
    }
}

/// The system disk of a node that declares none: the first SCSI/SATA disk, as on the seeds'
/// VMware machines. Kickstart names it, so an installer that has no such disk stops instead of
/// choosing another.
pub const DEFAULT_SYSTEM_DISK: &str = "/dev/sda";

/// Filesystem of an etcd or data disk when the cluster file names none (the seed's `mkfs.xfs`).
pub const DEFAULT_DISK_FS: &str = "xfs";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Block device as the node sees it, e.g. `/dev/sdb`, `/dev/vdb` or a stable
    /// `/dev/disk/by-id/...` path.
    pub device: String,
    pub purpose: DiskPurpose,
    /// `xfs` or `ext4`, for etcd and data disks only (default xfs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<String>,
}

impl Disk {
    /// The filesystem the `disks` layer makes: for etcd and data disks only.
    pub fn filesystem(&self) -> Option<&str> {
        self.purpose
            .mount()
            .map(|_| self.fs.as_deref().unwrap_or(DEFAULT_DISK_FS))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub hostname: String,
    pub role: String,
    pub ip: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, rename = "disk", skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
}

impl Node {
    /// The device the installer may use and wipe: the disk declared `system`, else
    /// [`DEFAULT_SYSTEM_DISK`].
    pub fn system_disk(&self) -> &str {
        self.disks
            .iter()
            .find(|d| d.purpose == DiskPurpose::System)
            .map_or(DEFAULT_SYSTEM_DISK, |d| d.device.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default = "default_os")]
    pub os: Os,
    pub timezone: String,
    #[serde(default)]
    pub ntp_servers: Vec<String>,
    pub sandbox_image: String,
    #[serde(default)]
    pub registry_mirror: String,
    /// A yum/dnf mirror's root URL; "" for the public trees (see `repos`).
    #[serde(default)]
    pub yum_mirror: String,
    /// How `yum_mirror` is laid out: `vault` (default) or `aliyun` (the seeds' mirror).
    #[serde(default)]
    pub yum_mirror_layout: MirrorLayout,
    pub network: Network,
    pub vrrp: Vrrp,
    #[serde(rename = "node")]
    pub nodes: Vec<Node>,
    /// Kubernetes versions and endpoints (defaults: seed 001).
    #[serde(default)]
    pub kubernetes: Kubernetes,
    /// How operators log in to the nodes.
    #[serde(default)]
    pub access: Access,
    /// Per-role parameter overrides (`[roles.slb] lb = "haproxy"`).
    #[serde(default)]
    pub roles: BTreeMap<String, toml::Table>,
}

/// The `[kubernetes]` table: what kubeadm installs (seed 001: v1.29.3, Calico v3.27.0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// kubeadm's `kubernetesVersion`; the binaries in artifacts.lock must match it.
    #[serde(default = "default_k8s_version")]
    pub version: String,
    /// Where control-plane images come from (seed 001: the Aliyun copy of registry.k8s.io).
    #[serde(default = "default_image_repository")]
    pub image_repository: String,
    #[serde(default = "default_dns_domain")]
    pub dns_domain: String,
    /// Calico release the first master applies (tigera-operator + custom-resources).
    #[serde(default = "default_calico_version")]
    pub calico_version: String,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            version: default_k8s_version(),
            image_repository: default_image_repository(),
            dns_domain: default_dns_domain(),
            calico_version: default_calico_version(),
        }
    }
}

/// The `[access]` table: root's SSH keys on every node and, optionally, a console password.
/// Delivered only through each node's seed or kickstart, never baked into a role image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// OpenSSH public keys (`ssh-ed25519 AAAA… comment`) for root.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// A crypt(3) hash (`$6$…`, `$y$…`) for root's console login; SSH stays key-only. None: the
    /// root password is locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_password_hash: Option<String>,
}

/// The release whose binaries artifacts.lock pins.
pub const K8S_VERSION: &str = "v1.29.3";
/// kube-apiserver's port behind the VIP and on every master.
pub const API_PORT: u16 = 6443;

fn default_k8s_version() -> String {
    K8S_VERSION.into()
}
fn default_image_repository() -> String {
    "registry.cn-hangzhou.aliyuncs.com/google_containers".into()
}
fn default_dns_domain() -> String {
    "cluster.local".into()
}
fn default_calico_version() -> String {
    "v3.27.0".into()
}

fn default_os() -> Os {
    Os::El7
}

/// A cluster file as loaded: the model, where it came from, and its text (for line numbers).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub cluster: Cluster,
    /// `None` for the embedded default.
    pub path: Option<PathBuf>,
    pub text: String,
}

impl Loaded {
    /// How messages name the file.
    pub fn origin(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "<embedded default cluster>".into(),
        }
    }
}

/// Parse a cluster file's text; `origin` names it in errors (file:line:column and the field).
pub fn parse(text: &str, origin: &str) -> Result<Cluster> {
    toml::from_str(text).map_err(|e| locate::parse_error(text, origin, &e))
}

/// Load `path`, or the embedded default when `None`.
pub fn load(path: Option<&Path>) -> Result<Loaded> {
    match path {
        None => Ok(Loaded {
            cluster: parse(DEFAULT_TOML, "<embedded default cluster>")?,
            path: None,
            text: DEFAULT_TOML.to_string(),
        }),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading cluster file {}", p.display()))?;
            let cluster = parse(&text, &p.display().to_string())?;
            Ok(Loaded {
                cluster,
                path: Some(p.to_path_buf()),
                text,
            })
        }
    }
}

pub use crate::tomlfile::line_col;

impl Cluster {
    pub fn node(&self, hostname: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.hostname == hostname)
    }

    pub fn nodes_of<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// Roles that have at least one node, in first-appearance order.
    pub fn roles_in_use(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for n in &self.nodes {
            if !seen.contains(&n.role) {
                seen.push(n.role.clone());
            }
        }
        seen
    }
}

/// The cluster file `ezimg init` writes: the default without its one secret (the seed's VRRP
/// password), since a cluster file is meant to be committed; the secret store makes a random one.
pub fn init_text() -> String {
    let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
    let Some(at) = lines.iter().position(|l| l.starts_with("auth_pass = ")) else {
        return DEFAULT_TOML.to_string();
    };
    // The comment above the line goes with it.
    let mut from = at;
    while from > 0 && lines[from - 1].starts_with('#') {
        from -= 1;
    }
    let mut out: Vec<&str> = lines[..from].to_vec();
    out.extend([
        "# VRRP PASS authentication is a secret, so it is not in this file: the secret store",
        "# (`ezimg secrets`) makes a random one when the first build creates it, and",
        "# `ezimg secrets rotate vrrp-password --value V` sets your own (at most 8 characters).",
    ]);
    out.extend(&lines[at + 1..]);
    let mut text = out.join("\n");
    text.push('\n');
    text
}
