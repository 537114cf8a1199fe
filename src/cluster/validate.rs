//! Semantic checks of a parsed cluster file: each finding names the field and says why.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::Ipv4Net;

use super::{Cluster, Loaded};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `file:line` when the offending text could be located, else the file alone.
    pub place: String,
    /// Dotted field path, e.g. `node[2].ip`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{kind}: {}: {}: {}",
            self.place, self.field, self.message
        )
    }
}

struct Ctx<'a> {
    loaded: &'a Loaded,
    out: Vec<Diagnostic>,
}

impl Ctx<'_> {
    /// Record a finding; `needle` is text from the file used to find its line.
    fn push(&mut self, severity: Severity, field: String, needle: &str, message: String) {
        let origin = self.loaded.origin();
        let place = self
            .loaded
            .text
            .lines()
            .position(|l| {
                !needle.is_empty() && l.contains(needle) && !l.trim_start().starts_with('#')
            })
            .map(|i| format!("{origin}:{}", i + 1))
            .unwrap_or(origin);
        self.out.push(Diagnostic {
            severity,
            place,
            field,
            message,
        });
    }
    /// An error about one node's field: its line is the first one holding `needle` at or after
    /// the node's `hostname` line (a device name such as /dev/sdb recurs in every node).
    fn node_error(
        &mut self,
        hostname: &str,
        field: String,
        needle: &str,
        message: impl Into<String>,
    ) {
        let origin = self.loaded.origin();
        let anchor = format!("\"{hostname}\"");
        let lines: Vec<&str> = self.loaded.text.lines().collect();
        let live = |l: &str| !l.trim_start().starts_with('#');
        let start = lines
            .iter()
            .position(|l| live(l) && l.contains("hostname") && l.contains(&anchor))
            .unwrap_or(0);
        let place = lines
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, l)| live(l) && !needle.is_empty() && l.contains(needle))
            .map(|(i, _)| format!("{origin}:{}", i + 1))
            .unwrap_or(origin);
        self.out.push(Diagnostic {
            severity: Severity::Error,
            place,
            field,
            message: message.into(),
        });
    }
    fn error(&mut self, field: impl Into<String>, needle: &str, message: impl Into<String>) {
        self.push(Severity::Error, field.into(), needle, message.into());
    }
    fn warn(&mut self, field: impl Into<String>, needle: &str, message: impl Into<String>) {
        self.push(Severity::Warning, field.into(), needle, message.into());
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-')
}

fn valid_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Check everything the type system cannot; `known_roles` are the roles that have a role file.
pub fn validate(loaded: &Loaded, known_roles: &[String]) -> Vec<Diagnostic> {
    let c: &Cluster = &loaded.cluster;
    let mut cx = Ctx {
        loaded,
        out: Vec::new(),
    };
    let net = &c.network;

    if c.name.trim().is_empty() {
        cx.error("name", "name", "must not be empty");
    }
    for (field, a, b) in [
        ("network.service_cidr", &net.service_cidr, &net.cidr),
        ("network.pod_cidr", &net.pod_cidr, &net.cidr),
        ("network.pod_cidr", &net.pod_cidr, &net.service_cidr),
    ] {
        if overlaps(a, b) {
            cx.error(
                field,
                &a.to_string(),
                format!("{a} overlaps {b}: node, service and pod networks must be disjoint"),
            );
        }
    }
    if !net.cidr.contains(&net.gateway) {
        cx.error(
            "network.gateway",
            &net.gateway.to_string(),
            format!("{} is outside the node network {}", net.gateway, net.cidr),
        );
    }
    if net.interface.is_empty() || net.interface.len() > 15 || net.interface.contains('/') {
        cx.error(
            "network.interface",
            "interface",
            "must be a Linux interface name (1-15 characters, no '/')",
        );
    }

    let m = &c.yum_mirror;
    if !m.is_empty()
        && (!["http://", "https://", "ftp://", "file:///"]
            .iter()
            .any(|p| m.starts_with(p) && m.len() > p.len())
            || !m
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-:/+@%~".contains(ch)))
    {
        cx.error(
            "yum_mirror",
            "yum_mirror",
            format!(
                "{m:?} is not a mirror root URL (http://, https://, ftp:// or file:///, no spaces \
                 or quotes): it goes into .repo files and kickstart's url line"
            ),
        );
    }

    let v = &c.vrrp;
    if !net.cidr.contains(&v.vip) {
        cx.error(
            "vrrp.vip",
            &v.vip.to_string(),
            format!("{} is outside the node network {}", v.vip, net.cidr),
        );
    }
    if v.vip == net.gateway {
        cx.error("vrrp.vip", &v.vip.to_string(), "is the gateway's address");
    }
    if !(1..=255).contains(&v.router_id) {
        cx.error(
            "vrrp.router_id",
            "router_id",
            "must be 1-255 (VRRP virtual_router_id)",
        );
    }
    if let Some(pass) = &v.auth_pass
        && pass.is_empty()
    {
        cx.error("vrrp.auth_pass", "auth_pass", "must not be empty");
    } else if let Some(pass) = &v.auth_pass
        && pass.chars().count() > 8
    {
        cx.error(
            "vrrp.auth_pass",
            "auth_pass",
            "has more than 8 characters: keepalived silently truncates PASS authentication to 8",
        );
    }
    if v.advert_int == 0 || v.advert_int > 255 {
        cx.error("vrrp.advert_int", "advert_int", "must be 1-255 seconds");
    }

    let mut hostnames: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ips: BTreeMap<std::net::Ipv4Addr, usize> = BTreeMap::new();
    let mut macs: BTreeMap<String, usize> = BTreeMap::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let f = |k: &str| format!("node[{i}].{k}");
        if !valid_hostname(&n.hostname) {
            cx.error(
                f("hostname"),
                &format!("\"{}\"", n.hostname),
                format!(
                    "{:?} is not a valid hostname (lowercase letters, digits and '-', 1-63 characters)",
                    n.hostname
                ),
            );
        }
        if let Some(j) = hostnames.insert(&n.hostname, i) {
            cx.error(
                f("hostname"),
                &format!("\"{}\"", n.hostname),
                format!("{:?} is also node[{j}]'s hostname", n.hostname),
            );
        }
        if let Some(j) = ips.insert(n.ip, i) {
            cx.error(
                f("ip"),
                &n.ip.to_string(),
                format!(
                    "{} is also node[{j}] ({})'s address",
                    n.ip, c.nodes[j].hostname
                ),
            );
        }
        if !net.cidr.contains(&n.ip) {
            cx.error(
                f("ip"),
                &n.ip.to_string(),
                format!("{} is outside the node network {}", n.ip, net.cidr),
            );
        }
        if n.ip == v.vip {
            cx.error(
                f("ip"),
                &n.ip.to_string(),
                format!("{} is the VIP: the VIP must be no node's address", n.ip),
            );
        }
        if n.ip == net.gateway {
            cx.error(f("ip"), &n.ip.to_string(), "is the gateway's address");
        }
        if n.ip == net.cidr.network() || n.ip == net.cidr.broadcast() {
            cx.error(
                f("ip"),
                &n.ip.to_string(),
                "is the network or broadcast address of the node network",
            );
        }
        if let Some(mac) = &n.mac {
            if !valid_mac(mac) {
                cx.error(
                    f("mac"),
                    mac,
                    format!("{mac:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"),
                );
            }
            if let Some(j) = macs.insert(mac.to_ascii_lowercase(), i) {
                cx.error(f("mac"), mac, format!("{mac} is also node[{j}]'s MAC"));
            }
        }
        if !known_roles.iter().any(|r| r == &n.role) {
            cx.error(
                f("role"),
                &format!("\"{}\"", n.role),
                format!(
                    "unknown role {:?} (known: {})",
                    n.role,
                    known_roles.join(", ")
                ),
            );
        }
        check_disks(&mut cx, i, n);
    }
    for role in c.roles.keys() {
        if !known_roles.iter().any(|r| r == role) {
            cx.error(
                format!("roles.{role}"),
                &format!("[roles.{role}]"),
                format!("parameters for unknown role {role:?}"),
            );
        }
    }

    let masters = c.nodes_of("master").count();
    if masters == 0 {
        cx.error(
            "node",
            "[[node]]",
            "at least one node must have role \"master\"",
        );
    } else if masters.is_multiple_of(2) {
        cx.warn(
            "node",
            "\"master\"",
            format!("{masters} masters: etcd quorum tolerates no more failures than with {}; use an odd count", masters - 1),
        );
    }
    let slbs = c.nodes_of("slb").count();
    if slbs == 1 {
        cx.warn(
            "node",
            "\"slb\"",
            "only one slb node: the VIP has no failover",
        );
    }
    if slbs == 0 && masters > 0 {
        // kubeadm's controlPlaneEndpoint is VIP:6443; with no slb nothing holds the VIP, and
        // every join would wait for an endpoint that never answers.
        cx.error(
            "vrrp.vip",
            "vip",
            "no slb node holds the VIP, which is the control-plane endpoint (vip:6443) every \
             master and worker joins through: add slb nodes",
        );
    }
    let k = &c.kubernetes;
    let v = k.version.strip_prefix('v').unwrap_or("");
    if v.split('.').count() != 3
        || !v
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        cx.error("kubernetes.version", &k.version, "must look like v1.29.3");
    } else if k.version != super::K8S_VERSION {
        cx.warn(
            "kubernetes.version",
            &k.version,
            format!(
                "artifacts.lock pins the {} binaries; give a lock (--data DIR) with matching \
                 kubeadm, kubelet and kubectl pins",
                super::K8S_VERSION
            ),
        );
    }
    if k.image_repository.is_empty() || k.image_repository.contains(char::is_whitespace) {
        cx.error(
            "kubernetes.image_repository",
            "image_repository",
            "must be a registry path such as registry.k8s.io",
        );
    }
    if !valid_dns_domain(&k.dns_domain) {
        cx.error(
            "kubernetes.dns_domain",
            "dns_domain",
            "must be a DNS domain such as cluster.local",
        );
    }
    for (i, key) in c.access.ssh_authorized_keys.iter().enumerate() {
        if let Err(why) = check_ssh_key(key) {
            cx.error(
                format!("access.ssh_authorized_keys[{i}]"),
                key.get(..key.len().min(24)).unwrap_or(key),
                why,
            );
        }
    }
    if let Some(h) = &c.access.root_password_hash
        && !is_crypt_hash(h)
    {
        // Not quoted: it may be a plain password typed in by mistake.
        cx.error(
            "access.root_password_hash",
            "root_password_hash",
            "must be a crypt(3) hash such as `openssl passwd -6` or `mkpasswd -m yescrypt` print \
             ($6$…, $5$…, $y$…), never a plain password",
        );
    }
    if slbs > 10 {
        // Priorities step down by 10 from 100: more would reach the floor and tie.
        cx.error(
            "node",
            "\"slb\"",
            format!("{slbs} slb nodes: at most 10 share one VIP"),
        );
    }
    cx.out.sort_by_key(|d| d.severity);
    cx.out
}

/// A node's `[[node.disk]]` entries: one system disk (the installer's, and only its), etcd on
/// masters, at most one etcd and one data disk, a filesystem only where ezimg makes one.
fn check_disks(cx: &mut Ctx<'_>, i: usize, n: &super::Node) {
    use super::{DEFAULT_SYSTEM_DISK, DiskPurpose};
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut first: BTreeMap<&'static str, usize> = BTreeMap::new();
    let declares_system = n.disks.iter().any(|d| d.purpose == DiskPurpose::System);
    for (d, disk) in n.disks.iter().enumerate() {
        let f = |k: &str| format!("node[{i}].disk[{d}].{k}");
        let dev = disk.device.as_str();
        let purpose = disk.purpose.as_str();
        let purpose_needle = format!("\"{purpose}\"");
        // Plain characters only: the path goes on kickstart and shell command lines unquoted.
        if !dev.starts_with("/dev/")
            || dev.len() <= 5
            || dev.ends_with('/')
            || dev.contains("..")
            || !dev
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "/._-:+@".contains(ch))
        {
            cx.node_error(
                &n.hostname,
                f("device"),
                dev,
                format!(
                    "{dev:?} must be a /dev path such as /dev/sdb or /dev/disk/by-id/… (letters, \
                     digits and /._-:+@)"
                ),
            );
        }
        if let Some(j) = seen.insert(dev, d) {
            cx.node_error(
                &n.hostname,
                f("device"),
                dev,
                format!("{dev} is also node[{i}].disk[{j}]"),
            );
        }
        if let Some(j) = first.insert(purpose, d)
            && disk.purpose != DiskPurpose::Keep
        {
            first.insert(purpose, j);
            let why = match disk.purpose {
                DiskPurpose::System => "the installer uses exactly one system disk",
                _ => "its mount point takes one disk",
            };
            cx.node_error(
                &n.hostname,
                f("purpose"),
                &purpose_needle,
                format!("node[{i}].disk[{j}] is already the {purpose} disk: {why}"),
            );
        }
        if disk.purpose == DiskPurpose::Etcd && n.role != "master" {
            cx.node_error(
                &n.hostname,
                f("purpose"),
                &purpose_needle,
                format!(
                    "an etcd disk belongs on a master (etcd runs only there), not on {} node {:?}",
                    n.role, n.hostname
                ),
            );
        }
        match (&disk.fs, disk.purpose.mount()) {
            (Some(fs), Some(_)) if !matches!(fs.as_str(), "xfs" | "ext4") => {
                cx.node_error(
                    &n.hostname,
                    f("fs"),
                    fs,
                    format!("{fs:?}: must be xfs or ext4"),
                );
            }
            (Some(fs), None) => cx.node_error(
                &n.hostname,
                f("fs"),
                fs,
                format!(
                    "a {purpose} disk gets no filesystem from ezimg ({}): remove fs",
                    if disk.purpose == DiskPurpose::System {
                        "the installer lays it out"
                    } else {
                        "it is never touched"
                    }
                ),
            ),
            _ => {}
        }
        if !declares_system && dev == DEFAULT_SYSTEM_DISK {
            cx.node_error(
                &n.hostname,
                f("device"),
                dev,
                format!(
                    "{dev} is the system disk the installer uses when none is declared: declare \
                     the node's system disk ([[node.disk]] purpose = \"system\")"
                ),
            );
        }
    }
}

fn valid_dns_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// An OpenSSH public key line: a known type, base64 whose embedded type name matches, an
/// optional comment; one line.
pub fn check_ssh_key(key: &str) -> Result<(), String> {
    use base64::Engine as _;
    const TYPES: [&str; 7] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    if key.contains(['\n', '\r']) {
        return Err("a key must be one line".into());
    }
    let mut words = key.split_whitespace();
    let kind = words.next().unwrap_or("");
    if !TYPES.contains(&kind) {
        return Err(format!(
            "{kind:?} is not an OpenSSH public key type ({})",
            TYPES.join(", ")
        ));
    }
    let blob = words.next().unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| "the key data is not base64".to_string())?;
    // The blob starts with the type name as an SSH string (4-byte length, then the name).
    let inner = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| bytes.get(4..4 + n));
    if inner != Some(kind.as_bytes()) {
        return Err(format!("the key data is not a {kind} key"));
    }
    Ok(())
}

/// A crypt(3) hash: `$id$…` with a known id (or `$id$rounds=…$…`), no whitespace.
pub fn is_crypt_hash(h: &str) -> bool {
    let known = ["$1$", "$5$", "$6$", "$y$", "$2b$", "$2y$", "$7$", "$gy$"];
    known.iter().any(|p| h.starts_with(p))
        && h.len() > 12
        && !h.contains(char::is_whitespace)
        && h.matches('$').count() >= 3
}
