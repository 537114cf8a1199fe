//! Outputs rendered from a node's plan.

pub mod cloudinit;
pub mod installer_iso;
pub mod kickstart;
pub mod seed_fat;
pub mod seed_iso;

use std::collections::BTreeMap;

use crate::cluster::{Cluster, Node};
use crate::plan::NodePlan;

/// The role's bundle as delivery paths need it.
#[derive(Debug, Clone)]
pub struct BundleRef {
    /// `ezimg-<role>-bundle.tar.gz`
    pub file_name: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
    /// Where the node fetches it from; `None` embeds `bytes` in the output.
    pub url: Option<String>,
    /// The node boots the role image this build bakes, which holds the bundle where the
    /// bootstrap looks (`/var/lib/ezimg/<file_name>`): the seed need not carry it (for the ops
    /// node with the install server, tens of MB that cloud-init would parse as YAML).
    pub in_image: bool,
}

/// Everything a per-node output needs.
pub struct NodeInput<'a> {
    pub cluster: &'a Cluster,
    pub node: &'a Node,
    pub plan: &'a NodePlan,
    pub bundle: &'a BundleRef,
    /// Secret name -> value, only the ones this node's files use.
    pub secrets: BTreeMap<String, String>,
    /// Where `apply` finds artifacts on the node (dir or URL), if set.
    pub artifacts_from: Option<String>,
}
