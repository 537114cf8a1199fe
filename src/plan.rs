//! The plan: everything resolved for one node. Every output is a pure function of it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::cluster::{Cluster, Loaded, Node, Os};
use crate::data::DataTree;
use crate::digest::sha256_hex;
use crate::layer::{self, Layer, for_os};
use crate::render;
use crate::role::{self, Role};

#[derive(Debug, Clone, Serialize)]
pub struct PlanFile {
    pub dest: String,
    pub mode: String,
    pub sha256: String,
    pub size: usize,
    /// Secrets whose placeholders `apply` fills in on the node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Content the build supplies (`crate::supplied::fill`); empty until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplied: Option<layer::Supplied>,
    #[serde(skip)]
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanScript {
    pub src: String,
    pub sha256: String,
    #[serde(skip)]
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanUnit {
    pub name: String,
    pub enable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerPlan {
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub seed: String,
    /// Why nothing of this layer applies to this node, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PlanFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<PlanScript>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<PlanUnit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// Distribution packages the layer's scripts install (its `[packages]` for this OS).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    pub cluster: String,
    pub hostname: String,
    pub role: String,
    pub os: Os,
    pub ip: String,
    pub params: serde_json::Value,
    pub layers: Vec<LayerPlan>,
    /// The artifacts.lock the outputs pin from (`ezimg plan`: where it is and its sha256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
}

impl NodePlan {
    pub fn applied(&self) -> impl Iterator<Item = &LayerPlan> {
        self.layers.iter().filter(|l| l.skipped.is_none())
    }
    /// Artifact names the node needs, sorted and unique.
    pub fn artifacts(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .applied()
            .flat_map(|l| l.artifacts.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
    /// Distribution packages the node's layers install, sorted and unique.
    pub fn packages(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .applied()
            .flat_map(|l| l.packages.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Loaded layers and roles, shared by all nodes of a build.
pub struct Catalog<'a> {
    pub tree: &'a DataTree,
    pub roles: BTreeMap<String, Role>,
    pub layers: BTreeMap<String, Layer>,
}

impl<'a> Catalog<'a> {
    /// Load every role and every layer the roles name (a missing layer is an error).
    pub fn load(tree: &'a DataTree) -> Result<Self> {
        let mut roles = BTreeMap::new();
        let mut layers = BTreeMap::new();
        for name in role::names(tree) {
            let r = role::load(tree, &name)?;
            for l in &r.layers {
                if !layers.contains_key(l) {
                    let layer = layer::load(tree, l)
                        .with_context(|| format!("{}/roles/{name}.toml: layers", tree.origin))?;
                    layers.insert(l.clone(), layer);
                }
            }
            roles.insert(name, r);
        }
        Ok(Catalog {
            tree,
            roles,
            layers,
        })
    }

    /// Each role with its parameters' defaults, as cluster validation needs them.
    pub fn role_params(&self) -> crate::cluster::RoleParams {
        self.roles
            .iter()
            .map(|(n, r)| (n.clone(), r.params.clone()))
            .collect()
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    pub fn role(&self, name: &str) -> Result<&Role> {
        self.roles.get(name).with_context(|| {
            format!(
                "unknown role {name:?} (known: {})",
                self.role_names().join(", ")
            )
        })
    }
}

/// Role defaults overlaid with the cluster file's `[roles.<role>]`; unknown keys are errors.
pub fn role_params(role: &Role, cluster: &Cluster, origin: &str) -> Result<toml::Table> {
    let mut params = role.params.clone();
    if let Some(over) = cluster.roles.get(&role.name) {
        for (k, v) in over {
            match params.get(k) {
                None => anyhow::bail!(
                    "{origin}: roles.{}.{k}: unknown parameter (known: {})",
                    role.name,
                    role.params.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                Some(old) if old.type_str() != v.type_str() => anyhow::bail!(
                    "{origin}: roles.{}.{k}: expected a {}, found a {}",
                    role.name,
                    old.type_str(),
                    v.type_str()
                ),
                _ => {
                    params.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok(params)
}

fn node_json(n: &Node) -> serde_json::Value {
    // Each disk with what its purpose implies (mount point, label, filesystem), so templates do
    // not repeat those rules; `fs`, `mount` and `label` are null for system and keep disks.
    let disks: Vec<serde_json::Value> = n
        .disks
        .iter()
        .map(|d| {
            json!({"device": d.device, "purpose": d.purpose, "fs": d.filesystem(),
                   "mount": d.purpose.mount(), "label": d.purpose.label()})
        })
        .collect();
    json!({"hostname": n.hostname, "role": n.role, "ip": n.ip.to_string(), "mac": n.mac,
           "disks": disks})
}

/// `kubernetes.*` of the template context. The CA hash is a secret placeholder: it is public,
/// but delivered with the node's seed so bundles and role images do not depend on the store.
fn kubernetes_json(cluster: &Cluster) -> serde_json::Value {
    let k = &cluster.kubernetes;
    let vip = cluster.vrrp.vip.to_string();
    let masters: Vec<&Node> = cluster.nodes_of("master").collect();
    let mut sans = vec![vip.clone()];
    sans.extend(masters.iter().map(|m| m.ip.to_string()));
    sans.extend(masters.iter().map(|m| m.hostname.clone()));
    sans.extend(["127.0.0.1".to_string(), "localhost".to_string()]);
    json!({
        "version": k.version,
        "image_repository": k.image_repository,
        // The registry kubeadm pulls from (its containerd hosts.toml names it).
        "image_registry": crate::images::registry_of(&format!("{}/x:0", k.image_repository)),
        "dns_domain": k.dns_domain,
        "calico_version": k.calico_version,
        "api_port": crate::cluster::API_PORT,
        "control_plane_endpoint": format!("{vip}:{}", crate::cluster::API_PORT),
        "cri_socket": "unix:///run/containerd/containerd.sock",
        "cert_sans": sans,
        "init_node": masters.first().map(|m| m.hostname.clone()),
        "ca_cert_hash": render::secret_placeholder(crate::secrets::CA_CERT_HASH),
    })
}

/// The template context for `node`: cluster (no secrets), node, role params, peers.
pub fn context(cluster: &Cluster, node: &Node, params: &toml::Table) -> Result<minijinja::Value> {
    let net = &cluster.network;
    let slbs: Vec<&Node> = cluster.nodes_of("slb").collect();
    let vrrp_node = slbs
        .iter()
        .position(|n| n.hostname == node.hostname)
        .map(|i| {
            json!({
                "state": if i == 0 { "MASTER" } else { "BACKUP" },
                "priority": 100u32.saturating_sub(10 * i as u32).max(1),
                "src_ip": node.ip.to_string(),
                "peers": slbs.iter().filter(|p| p.hostname != node.hostname)
                    .map(|p| p.ip.to_string()).collect::<Vec<_>>(),
            })
        });
    let ctx = json!({
        "cluster": {
            "name": cluster.name,
            "os": cluster.os,
            "timezone": cluster.timezone,
            "ntp_servers": cluster.ntp_servers,
            "sandbox_image": cluster.sandbox_image,
            "sandbox_registry": crate::images::registry_of(&cluster.sandbox_image),
            "registry_mirror": cluster.registry_mirror,
            "yum_mirror": cluster.yum_mirror,
            "yum_mirror_layout": cluster.yum_mirror_layout,
            "yum_repos": crate::cluster::yum_repos(cluster),
            "network": {
                "cidr": net.cidr.to_string(),
                "prefix": net.cidr.prefix_len(),
                "netmask": net.cidr.netmask().to_string(),
                "gateway": net.gateway.to_string(),
                "interface": net.interface,
                "dns": net.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "service_cidr": net.service_cidr.to_string(),
                "pod_cidr": net.pod_cidr.to_string(),
            },
            "vrrp": {
                "vip": cluster.vrrp.vip.to_string(),
                "router_id": cluster.vrrp.router_id,
                "advert_int": cluster.vrrp.advert_int,
                "mode": cluster.vrrp.mode,
            },
        },
        "os": cluster.os,
        "node": node_json(node),
        "params": params,
        "nodes": cluster.nodes.iter().map(node_json).collect::<Vec<_>>(),
        "masters": cluster.nodes_of("master").map(node_json).collect::<Vec<_>>(),
        "slbs": slbs.iter().map(|n| node_json(n)).collect::<Vec<_>>(),
        "vrrp_node": vrrp_node,
        "kubernetes": kubernetes_json(cluster),
    });
    Ok(minijinja::Value::from(minijinja::value::Serde(ctx)))
}

fn plan_file(dest: String, mode: &str, content: Vec<u8>) -> PlanFile {
    PlanFile {
        dest,
        mode: mode.to_string(),
        sha256: sha256_hex(&content),
        size: content.len(),
        secrets: render::secrets_used(&content),
        supplied: None,
        content,
    }
}

fn plan_layer(tree: &DataTree, layer: &Layer, os: Os, ctx: &minijinja::Value) -> Result<LayerPlan> {
    let m = &layer.manifest;
    let mut lp = LayerPlan {
        name: layer.name.clone(),
        description: m.description.clone(),
        seed: m.seed.clone(),
        skipped: None,
        files: vec![],
        scripts: vec![],
        units: vec![],
        artifacts: vec![],
        packages: vec![],
    };
    let at = format!("{}/{}/layer.toml", tree.origin, layer.dir());
    let chosen = match &m.when {
        Some(expr) => Some(render::eval_bool(&at, expr, ctx)?),
        None => None,
    };
    if let Some(reason) = m.skip.get(&os) {
        // A role parameter that picks this layer asked for something this OS cannot do (e.g.
        // containerd_source = "distro" on el7): refuse rather than build a node without it.
        // Cluster-wide settings for other OSes (yum_mirror on Debian) are just skipped.
        if chosen == Some(true) && m.when.as_deref().is_some_and(|w| w.contains("params.")) {
            anyhow::bail!(
                "{at}: `{}` selects layer {}, which does nothing on {os}: {reason}",
                m.when.as_deref().unwrap_or_default(),
                layer.name
            );
        }
        lp.skipped = Some(format!("not on {os}: {reason}"));
        return Ok(lp);
    }
    if chosen == Some(false) {
        lp.skipped = Some(format!(
            "condition `{}` is false",
            m.when.as_deref().unwrap_or_default()
        ));
        return Ok(lp);
    }
    let dir = layer.dir();
    let load = |src: &str, template: bool| -> Result<Vec<u8>> {
        let path = format!("{dir}/{src}");
        if template {
            Ok(render::render_file(tree, &path, ctx)?.into_bytes())
        } else {
            tree.get(&path)
                .map(<[u8]>::to_vec)
                .with_context(|| format!("{}: no file {path}", tree.origin))
        }
    };
    for f in m.files.iter().filter(|f| for_os(&f.os, os)) {
        if let Some(w) = &f.when
            && !render::eval_bool(&format!("{at} file {}", f.dest), w, ctx)?
        {
            continue;
        }
        if let Some(kind) = f.supplied {
            // Filled in by the build, which has the lock and the binary (`supplied::fill`).
            lp.files.push(PlanFile {
                supplied: Some(kind),
                sha256: String::new(),
                ..plan_file(f.dest.clone(), &f.mode, Vec::new())
            });
            continue;
        }
        let content = load(&f.src, f.template)?;
        if let Some(check) = f.check {
            check_file(check, &format!("{dir}/{}", f.src), &content)?;
        }
        // A dest may name a value of the context (containerd-mirror: one hosts.toml per
        // registry the cluster pulls from).
        let dest = if f.dest.contains("{{") {
            let d = render::render_str(&format!("{at} file {} dest", f.src), &f.dest, ctx)?;
            if !d.starts_with('/')
                || d.split('/').any(|c| c == ".." || c == ".")
                || d.contains("//")
                || d.chars().any(char::is_whitespace)
            {
                anyhow::bail!(
                    "{at}: file {}: dest {d:?} is not a clean absolute path",
                    f.src
                );
            }
            d
        } else {
            f.dest.clone()
        };
        lp.files.push(plan_file(dest, &f.mode, content));
    }
    for u in m.units.iter().filter(|u| for_os(&u.os, os)) {
        let name = u.unit_name();
        lp.files.push(plan_file(
            format!("/etc/systemd/system/{name}"),
            "0644",
            load(&u.src, true)?,
        ));
        lp.units.push(PlanUnit {
            name,
            enable: u.enable,
        });
    }
    for s in m.scripts.iter().filter(|s| for_os(&s.os, os)) {
        let content = load(&s.src, true)?;
        lp.scripts.push(PlanScript {
            src: s.src.clone(),
            sha256: sha256_hex(&content),
            content,
        });
    }
    lp.packages = m.packages.for_os(os);
    check_packages(&at, os, &lp)?;
    lp.artifacts.clear();
    for a in m.artifacts.iter().filter(|a| for_os(&a.os, os)) {
        let wanted = match &a.when {
            Some(expr) => render::eval_bool(&format!("{at} artifact {}", a.name), expr, ctx)?,
            None => true,
        };
        if wanted {
            lp.artifacts.push(a.name.clone());
        }
    }
    Ok(lp)
}

/// The declared `[packages]` and what the rendered scripts pass to `ez_pkg_install` must be the
/// same set, so the declaration (what the image bake installs in the base) cannot drift.
fn check_packages(at: &str, os: Os, lp: &LayerPlan) -> Result<()> {
    use std::collections::BTreeSet;
    let declared: BTreeSet<&str> = lp.packages.iter().map(String::as_str).collect();
    let mut used = BTreeSet::new();
    for s in &lp.scripts {
        used.extend(layer::pkg_install_args(&String::from_utf8_lossy(
            &s.content,
        )));
    }
    let used: BTreeSet<&str> = used.iter().map(String::as_str).collect();
    let undeclared: Vec<&str> = used.difference(&declared).copied().collect();
    let unused: Vec<&str> = declared.difference(&used).copied().collect();
    if !undeclared.is_empty() {
        anyhow::bail!(
            "{at}: on {os} the layer's scripts run `ez_pkg_install {}`, which [packages] does not \
             declare for {os}: add them to `[packages] {os}` (or `all`)",
            undeclared.join(" ")
        );
    }
    if !unused.is_empty() {
        anyhow::bail!(
            "{at}: [packages] declares {} for {os}, which no script of the layer passes to \
             `ez_pkg_install` on {os}: remove them or install them",
            unused.join(" ")
        );
    }
    Ok(())
}

/// Check a rendered file against the schema its layer names (`[[file]] check`).
fn check_file(check: layer::FileCheck, origin: &str, content: &[u8]) -> Result<()> {
    match check {
        layer::FileCheck::Kubeadm => {
            let text = std::str::from_utf8(content)
                .with_context(|| format!("{origin}: rendered kubeadm config is not UTF-8"))?;
            let docs = crate::kubeadm::parse(text, origin)
                .with_context(|| format!("{origin}: rendered kubeadm config"))?;
            crate::kubeadm::check(&docs, origin)
                .with_context(|| format!("{origin}: rendered kubeadm config"))
        }
    }
}

/// Resolve the plan of one node.
pub fn plan_node(catalog: &Catalog, loaded: &Loaded, node: &Node) -> Result<NodePlan> {
    let cluster = &loaded.cluster;
    let role = catalog.role(&node.role)?;
    let params = role_params(role, cluster, &loaded.origin())?;
    let ctx = context(cluster, node, &params)?;
    let mut layers = Vec::new();
    for name in &role.layers {
        let layer = catalog
            .layers
            .get(name)
            .with_context(|| format!("role {}: missing layer {name:?}", role.name))?;
        layers.push(
            plan_layer(catalog.tree, layer, cluster.os, &ctx)
                .with_context(|| format!("planning layer {name} for {}", node.hostname))?,
        );
    }
    // Two layers writing one path would make the result depend on order silently.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for l in &layers {
        for f in &l.files {
            if let Some(prev) = seen.insert(&f.dest, &l.name) {
                anyhow::bail!(
                    "role {}: layers {prev} and {} both install {}",
                    role.name,
                    l.name,
                    f.dest
                );
            }
        }
    }
    Ok(NodePlan {
        cluster: cluster.name.clone(),
        hostname: node.hostname.clone(),
        role: node.role.clone(),
        os: cluster.os,
        ip: node.ip.to_string(),
        params: serde_json::to_value(&params).context("serializing role params")?,
        layers,
        lock: None,
    })
}

/// Which nodes a command acts on: `--node`, else every node of `--role`, else all.
pub fn select_nodes<'c>(
    cluster: &'c Cluster,
    role: Option<&'c str>,
    node: Option<&'c str>,
) -> Result<Vec<&'c Node>> {
    if let Some(n) = node {
        let found = cluster.node(n).with_context(|| {
            format!(
                "no node named {n:?} in the cluster (nodes: {})",
                cluster
                    .nodes
                    .iter()
                    .map(|n| n.hostname.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if let Some(r) = role
            && found.role != r
        {
            anyhow::bail!("node {n} has role {}, not {r}", found.role);
        }
        return Ok(vec![found]);
    }
    let nodes: Vec<&Node> = match role {
        Some(r) => cluster.nodes_of(r).collect(),
        None => cluster.nodes.iter().collect(),
    };
    if nodes.is_empty() {
        anyhow::bail!("the cluster has no node with role {:?}", role.unwrap_or(""));
    }
    Ok(nodes)
}
