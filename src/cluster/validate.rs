//! Semantic checks of a parsed cluster file: each finding names the field (nodes by hostname),
//! quotes the value and gives its file:line:column from the document's spans (see `locate`).

use std::collections::BTreeMap;
use std::fmt;

use ipnet::Ipv4Net;

use super::locate::{Seg, Spans, path};
use super::{Cluster, Loaded};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `file:line:column` of the offending value (of its table when the file leaves the field
    /// to its default), from the parsed document's spans; the file alone for the embedded one.
    pub place: String,
    /// The field, nodes named by hostname: `vrrp.vip`, `node "worker-02".ip`.
    pub field: String,
    /// The value as the file writes it (`"192.168.2.2"`); never for a secret.
    pub value: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{kind}: {}: {}", self.place, self.field)?;
        if let Some(v) = &self.value {
            write!(f, " = {v}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Each role's parameters with their defaults (from `roles/<role>.toml`): the roles a node may
/// have and the keys `[roles.<role>]` may set.
pub type RoleParams = BTreeMap<String, toml::Table>;

struct Ctx<'a> {
    cluster: &'a Cluster,
    origin: String,
    spans: Spans<'a>,
    out: Vec<Diagnostic>,
}

/// Whether a message may show the value (a secret's may not).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Value,
    Secret,
}

impl Ctx<'_> {
    fn push(&mut self, severity: Severity, at: &[Seg], quote: Quote, message: String) {
        let value = match quote {
            Quote::Value => self.spans.raw(at).map(str::to_string),
            Quote::Secret => None,
        };
        self.out.push(Diagnostic {
            severity,
            place: self.spans.place(&self.origin, at),
            field: label(self.cluster, at),
            value,
            message,
        });
    }
    fn error(&mut self, at: &[Seg], message: impl Into<String>) {
        self.push(Severity::Error, at, Quote::Value, message.into());
    }
    fn warn(&mut self, at: &[Seg], message: impl Into<String>) {
        self.push(Severity::Warning, at, Quote::Value, message.into());
    }
    /// `, line N` of `at`, to point from one finding to the other place involved.
    fn line_of(&self, at: &[Seg]) -> String {
        self.spans
            .line_col(at)
            .map(|(l, _)| format!(", line {l}"))
            .unwrap_or_default()
    }
    /// `line N` of `at`, for "is also …'s address (line N)".
    fn line_no(&self, at: &[Seg]) -> String {
        self.spans
            .line_col(at)
            .map(|(l, _)| format!("line {l}"))
            .unwrap_or_else(|| "earlier".into())
    }
}

/// How a message names a node: by hostname, or by position when it has none.
fn node_name(c: &Cluster, i: usize) -> String {
    match c.nodes.get(i) {
        Some(n) if !n.hostname.is_empty() => format!("node {:?}", n.hostname),
        _ => format!("node #{}", i + 1),
    }
}

/// The field a path names, for messages: `node "worker-02".disk[0].device`.
fn label(c: &Cluster, at: &[Seg]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < at.len() {
        match (at[i], at.get(i + 1)) {
            (Seg::Key("node"), Some(Seg::Index(n))) if i == 0 => {
                s.push_str(&node_name(c, *n));
                i += 2;
                continue;
            }
            (Seg::Key(k), _) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            (Seg::Index(n), _) => s.push_str(&format!("[{n}]")),
        }
        i += 1;
    }
    s
}

fn node_field<'k>(i: usize, key: &'k str) -> [Seg<'k>; 3] {
    [Seg::Key("node"), Seg::Index(i), Seg::Key(key)]
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

/// A network interface name the kernel accepts (`dev_valid_name`: 1-15 bytes, not `.`/`..`,
/// no `/`, `:` or whitespace), narrowed to the characters udev and distributions use so that it
/// is also one word on a kickstart line, in YAML and in shell.
pub fn valid_interface(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The cluster name names files and folders (`<name>.secrets`, images): one safe path
/// component.
fn valid_cluster_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The install server's port (layer install-server): a TCP port, and on el7 (systemd 219, no
/// ambient capabilities for its unprivileged user) not a privileged one.
fn check_install_server(cx: &mut Ctx, role: &str, over: &toml::Table) {
    if let Some(v) = over.get("install_server_dhcp")
        && !matches!(v.as_str(), Some("none" | "proxy" | "full"))
    {
        cx.error(
            &[
                Seg::Key("roles"),
                Seg::Key(role),
                Seg::Key("install_server_dhcp"),
            ],
            "must be \"proxy\" (beside the site's DHCP server), \"full\" (the only DHCP \
             server) or \"none\" (no dnsmasq on the node)",
        );
    }
    let Some(port) = over
        .get("install_server_port")
        .and_then(toml::Value::as_integer)
    else {
        return;
    };
    let at = [
        Seg::Key("roles"),
        Seg::Key(role),
        Seg::Key("install_server_port"),
    ];
    if !(1..=65535).contains(&port) {
        cx.error(&at, "must be a TCP port, 1 to 65535");
    } else if port < 1024 && cx.cluster.os == super::Os::El7 {
        cx.error(
            &at,
            "ezimg serve runs as its own user: on el7 it cannot bind a port below 1024 (use \
             1024 or above, e.g. the default 8080)",
        );
    }
}

/// Check everything the type system cannot. `roles` are the roles that have a role file, with
/// their parameters' defaults.
pub fn validate(loaded: &Loaded, roles: &RoleParams) -> Vec<Diagnostic> {
    let c: &Cluster = &loaded.cluster;
    let mut cx = Ctx {
        cluster: c,
        origin: loaded.origin(),
        spans: Spans::new(&loaded.text),
        out: Vec::new(),
    };
    let net = &c.network;
    let known_roles: Vec<&str> = roles.keys().map(String::as_str).collect();

    if !valid_cluster_name(&c.name) {
        cx.error(
            &path("name"),
            "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit: \
             it names files and folders (the secret store <name>.secrets, images)",
        );
    }
    if let Err(why) = crate::timezone::check(&c.timezone) {
        cx.error(&path("timezone"), why);
    }
    for (field, other, a, b) in [
        (
            "network.service_cidr",
            "network.cidr",
            &net.service_cidr,
            &net.cidr,
        ),
        ("network.pod_cidr", "network.cidr", &net.pod_cidr, &net.cidr),
        (
            "network.pod_cidr",
            "network.service_cidr",
            &net.pod_cidr,
            &net.service_cidr,
        ),
    ] {
        if overlaps(a, b) {
            cx.error(
                &path(field),
                format!("overlaps {other} {b}: node, service and pod networks must be disjoint"),
            );
        }
    }
    if !net.cidr.contains(&net.gateway) {
        cx.error(
            &path("network.gateway"),
            format!("is outside the node network {} (network.cidr)", net.cidr),
        );
    }
    if !valid_interface(&net.interface) {
        cx.error(
            &path("network.interface"),
            "must be a Linux interface name: 1-15 letters, digits, '-', '_' or '.' (the kernel \
             refuses '/', ':' and whitespace), as the machines name their NIC (`ip link`)",
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
            &path("yum_mirror"),
            "is not a mirror root URL (http://, https://, ftp:// or file:///, no spaces \
                 or quotes): it goes into .repo files and kickstart's url line",
        );
    }

    let v = &c.vrrp;
    if !net.cidr.contains(&v.vip) {
        cx.error(
            &path("vrrp.vip"),
            format!("is outside the node network {} (network.cidr)", net.cidr),
        );
    }
    if v.vip == net.gateway {
        let at = cx.line_of(&path("network.gateway"));
        cx.error(
            &path("vrrp.vip"),
            format!("is the gateway's address (network.gateway{at})"),
        );
    }
    if !(1..=255).contains(&v.router_id) {
        cx.error(
            &path("vrrp.router_id"),
            "must be 1-255 (VRRP virtual_router_id)",
        );
    }
    let pass = path("vrrp.auth_pass");
    if let Some(p) = &v.auth_pass {
        if p.is_empty() {
            cx.push(
                Severity::Error,
                &pass,
                Quote::Secret,
                "must not be empty".into(),
            );
        } else if p.chars().count() > 8 {
            cx.push(
                Severity::Error,
                &pass,
                Quote::Secret,
                "has more than 8 characters: keepalived silently truncates PASS authentication \
                 to 8"
                    .into(),
            );
        } else if loaded.path.is_some() {
            cx.push(
                Severity::Warning,
                &pass,
                Quote::Secret,
                "a secret in the cluster file: it only seeds the secret store once; keep it in \
                 the store (`ezimg secrets rotate vrrp-password --value …`) and remove this line"
                    .into(),
            );
        }
    }
    if v.advert_int == 0 || v.advert_int > 255 {
        cx.error(&path("vrrp.advert_int"), "must be 1-255 seconds");
    }

    let mut hostnames: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ips: BTreeMap<std::net::Ipv4Addr, usize> = BTreeMap::new();
    let mut macs: BTreeMap<String, usize> = BTreeMap::new();
    for (i, n) in c.nodes.iter().enumerate() {
        if !valid_hostname(&n.hostname) {
            cx.error(
                &node_field(i, "hostname"),
                "is not a valid hostname (lowercase letters, digits and '-', 1-63 characters)",
            );
        } else if let Some(j) = hostnames.insert(&n.hostname, i) {
            let at = cx.line_no(&node_field(j, "hostname"));
            cx.error(
                &node_field(i, "hostname"),
                format!("is also the hostname of node #{} ({})", j + 1, at),
            );
        }
        let ip = node_field(i, "ip");
        if let Some(j) = ips.insert(n.ip, i) {
            let at = cx.line_no(&node_field(j, "ip"));
            cx.error(
                &ip,
                format!("is also the address of {} ({})", node_name(c, j), at),
            );
        }
        if !net.cidr.contains(&n.ip) {
            cx.error(
                &ip,
                format!("is outside the node network {} (network.cidr)", net.cidr),
            );
        } else if n.ip == net.cidr.network() {
            cx.error(
                &ip,
                format!("is the network address of {} (network.cidr)", net.cidr),
            );
        } else if n.ip == net.cidr.broadcast() {
            cx.error(
                &ip,
                format!("is the broadcast address of {} (network.cidr)", net.cidr),
            );
        }
        if n.ip == v.vip {
            let at = cx.line_of(&path("vrrp.vip"));
            cx.error(
                &ip,
                format!("is the VIP (vrrp.vip{at}): the VIP must be no node's address"),
            );
        }
        if n.ip == net.gateway {
            let at = cx.line_of(&path("network.gateway"));
            cx.error(
                &ip,
                format!("is the gateway's address (network.gateway{at})"),
            );
        }
        if let Some(mac) = &n.mac {
            if !valid_mac(mac) {
                cx.error(
                    &node_field(i, "mac"),
                    "is not a MAC address (aa:bb:cc:dd:ee:ff)",
                );
            } else if let Some(j) = macs.insert(mac.to_ascii_lowercase(), i) {
                let at = cx.line_no(&node_field(j, "mac"));
                cx.error(
                    &node_field(i, "mac"),
                    format!("is also the MAC of {} ({})", node_name(c, j), at),
                );
            }
        }
        if !known_roles.contains(&n.role.as_str()) {
            cx.error(
                &node_field(i, "role"),
                format!("is not a role (known: {})", known_roles.join(", ")),
            );
        }
        check_disks(&mut cx, i, n);
    }
    for (role, over) in &c.roles {
        let Some(defaults) = roles.get(role) else {
            cx.error(
                &[Seg::Key("roles"), Seg::Key(role)],
                format!(
                    "parameters for unknown role {role:?} (known: {})",
                    known_roles.join(", ")
                ),
            );
            continue;
        };
        for (k, v) in over {
            let at = [Seg::Key("roles"), Seg::Key(role), Seg::Key(k)];
            match defaults.get(k) {
                None => cx.error(
                    &at,
                    format!(
                        "unknown parameter of role {role} (known: {})",
                        defaults.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Some(old) if old.type_str() != v.type_str() => cx.error(
                    &at,
                    format!("must be a {}, not a {}", old.type_str(), v.type_str()),
                ),
                Some(_) => {}
            }
        }
        check_install_server(&mut cx, role, over);
    }

    let first_of = |role: &str| {
        c.nodes
            .iter()
            .position(|n| n.role == role)
            .map(|i| node_field(i, "role"))
    };
    let masters = c.nodes_of("master").count();
    if masters == 0 {
        // Point at the first node, or at nothing if there is none.
        let at = if c.nodes.is_empty() {
            vec![Seg::Key("node")]
        } else {
            node_field(0, "role").to_vec()
        };
        cx.error(&at, "at least one node must have role \"master\"");
    } else if masters.is_multiple_of(2) {
        let at = first_of("master").map(|a| a.to_vec()).unwrap_or_default();
        cx.warn(
            &at,
            format!(
                "{masters} masters: etcd quorum tolerates no more failures than with {}; use \
                 an odd count",
                masters - 1
            ),
        );
    }
    let slbs = c.nodes_of("slb").count();
    if slbs == 1 {
        let at = first_of("slb").map(|a| a.to_vec()).unwrap_or_default();
        cx.warn(&at, "the only slb node: the VIP has no failover");
    }
    if slbs == 0 && masters > 0 {
        // kubeadm's controlPlaneEndpoint is VIP:6443; with no slb nothing holds the VIP, and
        // every join would wait for an endpoint that never answers.
        cx.error(
            &path("vrrp.vip"),
            "no slb node holds the VIP, which is the control-plane endpoint (vip:6443) every \
             master and worker joins through: add slb nodes",
        );
    }
    if slbs > 10 {
        // Priorities step down by 10 from 100: more would reach the floor and tie.
        let at = first_of("slb").map(|a| a.to_vec()).unwrap_or_default();
        cx.error(&at, format!("{slbs} slb nodes: at most 10 share one VIP"));
    }
    let k = &c.kubernetes;
    let kv = k.version.strip_prefix('v').unwrap_or("");
    if kv.split('.').count() != 3
        || !kv
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        cx.error(&path("kubernetes.version"), "must look like v1.29.3");
    } else if k.version != super::K8S_VERSION {
        cx.warn(
            &path("kubernetes.version"),
            format!(
                "artifacts.lock pins the {} binaries; give a lock (--lock FILE) with matching \
                 kubeadm, kubelet and kubectl pins",
                super::K8S_VERSION
            ),
        );
    }
    if k.image_repository.is_empty() || k.image_repository.contains(char::is_whitespace) {
        cx.error(
            &path("kubernetes.image_repository"),
            "must be a registry path such as registry.k8s.io",
        );
    }
    if !valid_dns_domain(&k.dns_domain) {
        cx.error(
            &path("kubernetes.dns_domain"),
            "must be a DNS domain such as cluster.local",
        );
    }
    for (i, key) in c.access.ssh_authorized_keys.iter().enumerate() {
        if let Err(why) = check_ssh_key(key) {
            cx.error(
                &[
                    Seg::Key("access"),
                    Seg::Key("ssh_authorized_keys"),
                    Seg::Index(i),
                ],
                why,
            );
        }
    }
    if let Some(h) = &c.access.root_password_hash
        && !is_crypt_hash(h)
    {
        // Not quoted: it may be a plain password typed in by mistake.
        cx.push(
            Severity::Error,
            &path("access.root_password_hash"),
            Quote::Secret,
            "must be a crypt(3) hash such as `openssl passwd -6` or `mkpasswd -m yescrypt` print \
             ($6$…, $5$…, $y$…), never a plain password"
                .into(),
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
        let f = |k: &'static str| {
            [
                Seg::Key("node"),
                Seg::Index(i),
                Seg::Key("disk"),
                Seg::Index(d),
                Seg::Key(k),
            ]
        };
        let dev = disk.device.as_str();
        let purpose = disk.purpose.as_str();
        // Plain characters only: the path goes on kickstart and shell command lines unquoted.
        if !dev.starts_with("/dev/")
            || dev.len() <= 5
            || dev.ends_with('/')
            || dev.contains("..")
            || !dev
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "/._-:+@".contains(ch))
        {
            cx.error(
                &f("device"),
                "must be a /dev path such as /dev/sdb or /dev/disk/by-id/… (letters, \
                     digits and /._-:+@)",
            );
        }
        if let Some(j) = seen.insert(dev, d) {
            cx.error(&f("device"), format!("is also disk[{j}] of this node"));
        }
        if let Some(j) = first.insert(purpose, d)
            && disk.purpose != DiskPurpose::Keep
        {
            first.insert(purpose, j);
            let why = match disk.purpose {
                DiskPurpose::System => "the installer uses exactly one system disk",
                _ => "its mount point takes one disk",
            };
            cx.error(
                &f("purpose"),
                format!("disk[{j}] is already the {purpose} disk: {why}"),
            );
        }
        if disk.purpose == DiskPurpose::Etcd && n.role != "master" {
            cx.error(
                &f("purpose"),
                format!(
                    "an etcd disk belongs on a master (etcd runs only there), not on {} node {:?}",
                    n.role, n.hostname
                ),
            );
        }
        match (&disk.fs, disk.purpose.mount()) {
            (Some(fs), Some(_)) if !matches!(fs.as_str(), "xfs" | "ext4") => {
                cx.error(&f("fs"), "must be xfs or ext4".to_string());
            }
            (Some(_), None) => cx.error(
                &f("fs"),
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
            cx.error(
                &f("device"),
                "is the system disk the installer uses when none is declared: declare \
                     the node's system disk ([[node.disk]] purpose = \"system\")",
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
