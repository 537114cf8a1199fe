//! cloud-init NoCloud seed: user-data, meta-data, network-config.
//!
//! The three files are plain YAML built from `serde_json` values (maps are sorted, so output is
//! byte-stable) by a small emitter here: block style, strings quoted unless trivially plain,
//! multi-line text as literal blocks. It emits only what PyYAML (cloud-init's parser) reads back
//! identically; `tests/cloudinit.rs` checks that with PyYAML itself.
//!
//! Network: v2 with a static address on one interface, for Debian 12's cloud-init 22.4 and up:
//! - with `node.mac`, the NIC is matched by MAC and renamed (`set-name`) to
//!   `cluster.network.interface`, so the name keepalived binds to is true on any hypervisor;
//! - without it, the NIC is matched by the name `cluster.network.interface`. A glob match
//!   (`name: "e*"`) is not an option: cloud-init's own renderers (ENI on Debian 12, sysconfig,
//!   networkd) take the name literally, and with two NICs it would put one address on both. So a
//!   VM whose NIC is named otherwise (`ens3`, `enp1s0`) needs `mac` or the right `interface`.
//! - the default route is `gateway4`, not `routes: [{to: default}]`: cloud-init 22.4 rejects
//!   `default` ("not a valid ip address"), and its ENI renderer turns a `0.0.0.0/0` route into a
//!   `post-up route add` that needs net-tools, absent from Debian 12; `gateway4` becomes the
//!   native `gateway` line of every renderer.

use anyhow::Result;
use serde_json::{Map, Value, json};

use super::NodeInput;
use crate::bundle::{NODE_BOOTSTRAP, NODE_SECRETS_DIR, NODE_STATE_DIR, bootstrap_script};
use crate::digest::sha256_hex;

/// File names of a NoCloud seed, as cloud-init looks them up.
pub const USER_DATA: &str = "user-data";
pub const META_DATA: &str = "meta-data";
pub const NETWORK_CONFIG: &str = "network-config";

/// One node's NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFiles {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
}

impl SeedFiles {
    /// (name, content) pairs as `seed_fat::write` and `seed_iso::write` take them.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        [
            (USER_DATA, self.user_data.as_bytes()),
            (META_DATA, self.meta_data.as_bytes()),
            (NETWORK_CONFIG, self.network_config.as_bytes()),
        ]
    }
}

/// `ezimg-<16 hex>` from cluster, hostname and bundle digest: stable across rebuilds, and new
/// when the bundle changes, so cloud-init treats the node as a new instance and runs the
/// bootstrap (idempotent) again. Secrets stay out of it: a hash of a short password can be
/// brute-forced.
pub fn instance_id(cluster: &str, hostname: &str, bundle_sha256: &str) -> String {
    let h = sha256_hex(format!("{cluster}\0{hostname}\0{bundle_sha256}").as_bytes());
    format!("ezimg-{}", &h[..16])
}

/// Render the node's seed.
pub fn render(input: &NodeInput) -> Result<SeedFiles> {
    Ok(SeedFiles {
        user_data: format!("#cloud-config\n{}", to_yaml(&user_data(input)?)),
        meta_data: to_yaml(&meta_data(input)),
        network_config: to_yaml(&network_config(input)?),
    })
}

/// The user-data document (without its `#cloud-config` line): hostname, timezone, the bundle
/// contract's files, and the bootstrap as the one `runcmd`.
pub fn user_data(input: &NodeInput) -> Result<Value> {
    let node = input.node;
    let b = input.bundle;
    let mut write_files = Vec::new();
    if b.url.is_none() && !b.in_image {
        use base64::Engine as _;
        write_files.push(json!({
            "path": format!("{NODE_STATE_DIR}/{}", b.file_name),
            "encoding": "b64",
            "content": base64::engine::general_purpose::STANDARD.encode(&b.bytes),
            "owner": "root:root",
            "permissions": "0644",
        }));
    }
    for (name, value) in &input.secrets {
        super::kickstart::check_secret_name(name)?;
        write_files.push(json!({
            "path": format!("{NODE_SECRETS_DIR}/{name}"),
            "content": value,
            "owner": "root:root",
            "permissions": "0600",
        }));
    }
    write_files.push(json!({
        "path": NODE_BOOTSTRAP,
        "content": bootstrap_script(input),
        "owner": "root:root",
        "permissions": "0700",
    }));

    let mut user = Map::new();
    user.insert("hostname".into(), json!(node.hostname));
    user.insert("fqdn".into(), json!(node.hostname));
    user.insert("preserve_hostname".into(), json!(false));
    // The etc-hosts layer owns /etc/hosts (every cluster node); cloud-init must not rewrite it.
    user.insert("manage_etc_hosts".into(), json!(false));
    user.insert("timezone".into(), json!(input.cluster.timezone));
    // Keys only; no password login, whatever the image's default.
    user.insert("ssh_pwauth".into(), json!(false));
    let keys = super::kickstart::ssh_keys(input)?;
    if !keys.is_empty() {
        user.insert("ssh_authorized_keys".into(), json!(keys));
        // Root is who the seeds' operators log in as (cloud-init's default would refuse it).
        user.insert("disable_root".into(), json!(false));
    }
    // A console password for root when the cluster file gives its hash; SSH stays key-only.
    if let Some(h) = &input.cluster.access.root_password_hash {
        user.insert(
            "chpasswd".into(),
            json!({"expire": false, "users": [{"name": "root", "password": h, "type": "hash"}]}),
        );
    }
    user.insert("write_files".into(), Value::Array(write_files));
    user.insert("runcmd".into(), json!([["bash", NODE_BOOTSTRAP]]));
    Ok(Value::Object(user))
}

/// The meta-data document: `instance-id` and `local-hostname`.
pub fn meta_data(input: &NodeInput) -> Value {
    json!({
        "instance-id": instance_id(&input.cluster.name, &input.node.hostname, &input.bundle.sha256),
        "local-hostname": input.node.hostname,
    })
}

/// The v2 network config of the node (see the module doc for the choices).
pub fn network_config(input: &NodeInput) -> Result<Value> {
    let net = &input.cluster.network;
    let node = input.node;
    let iface = net.interface.as_str();
    if iface.is_empty() {
        anyhow::bail!("cluster network.interface is empty: cloud-init needs an interface name");
    }
    let mut eth = Map::new();
    match &node.mac {
        Some(mac) => {
            let mac = mac.to_ascii_lowercase();
            if !is_mac(&mac) {
                anyhow::bail!(
                    "node {}: mac {mac:?} is not aa:bb:cc:dd:ee:ff",
                    node.hostname
                );
            }
            eth.insert("match".into(), json!({ "macaddress": mac }));
            eth.insert("set-name".into(), json!(iface));
        }
        None => {
            eth.insert("match".into(), json!({ "name": iface }));
        }
    }
    eth.insert(
        "addresses".into(),
        json!([format!("{}/{}", node.ip, net.cidr.prefix_len())]),
    );
    eth.insert("gateway4".into(), json!(net.gateway.to_string()));
    if !net.dns.is_empty() {
        eth.insert(
            "nameservers".into(),
            json!({ "addresses": net.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>() }),
        );
    }
    let mut ethernets = Map::new();
    ethernets.insert(iface.to_string(), Value::Object(eth));
    Ok(json!({ "network": { "version": 2, "ethernets": ethernets } }))
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// YAML text of `v` (block style, keys in map order, ASCII only, trailing newline).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => block(&mut out, v, 0),
        Value::Array(a) if !a.is_empty() => block(&mut out, v, 0),
        _ => {
            // A document that is a scalar: `value` writes " x\n".
            value(&mut out, v, 0);
            out.remove(0);
        }
    }
    out
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// A non-empty map or sequence, every line starting at `indent`.
fn block(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                pad(out, indent);
                out.push_str(&scalar_str(k));
                out.push(':');
                value(out, val, indent);
            }
        }
        Value::Array(a) => {
            for item in a {
                if is_block(item) {
                    // Render at the item's indent, then put "- " in place of the first line's
                    // leading spaces: a compact nested map or sequence.
                    let mut s = String::new();
                    block(&mut s, item, indent + 2);
                    pad(out, indent);
                    out.push_str("- ");
                    out.push_str(&s[indent + 2..]);
                } else {
                    pad(out, indent);
                    out.push('-');
                    value(out, item, indent);
                }
            }
        }
        _ => value(out, v, indent),
    }
}

/// What follows `key:` or `-`: " scalar\n", a literal block, or a nested block at indent + 2.
fn value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Null => out.push_str(" null\n"),
        Value::Bool(b) => out.push_str(if *b { " true\n" } else { " false\n" }),
        Value::Number(n) => {
            out.push(' ');
            out.push_str(&n.to_string());
            out.push('\n');
        }
        Value::String(s) => {
            if s.contains('\n') && literal_ok(s) {
                literal(out, s, indent + 2);
            } else {
                out.push(' ');
                out.push_str(&scalar_str(s));
                out.push('\n');
            }
        }
        Value::Object(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Array(a) if a.is_empty() => out.push_str(" []\n"),
        _ => {
            out.push('\n');
            block(out, v, indent + 2);
        }
    }
}

/// A string is plain when YAML 1.1 (PyYAML) cannot read it as anything but that string.
fn plain_ok(s: &str) -> bool {
    const SPECIAL: [&str; 12] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "~",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '/' || first == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-@".contains(c))
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
}

fn scalar_str(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// A double-quoted scalar, ASCII only: YAML escapes for everything else, including the line
/// separators (NEL, U+2028, U+2029) that PyYAML would otherwise fold inside quotes.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            ' '..='~' => q.push(c),
            c if (c as u32) <= 0xff => q.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    q.push('"');
    q
}

/// Literal blocks only for text that reads back verbatim: printable ASCII, tabs and newlines,
/// not starting with a space or newline (that would need an indentation indicator).
fn literal_ok(s: &str) -> bool {
    !s.starts_with([' ', '\n'])
        && s.chars()
            .all(|c| c == '\n' || c == '\t' || (' '..='~').contains(&c))
}

fn literal(out: &mut String, s: &str, indent: usize) {
    // Chomping keeps the trailing newlines exactly: "-" none, "" one, "+" all.
    let chomp = if !s.ends_with('\n') {
        "-"
    } else if s.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    out.push_str(" |");
    out.push_str(chomp);
    out.push('\n');
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_shapes() {
        let v = json!({
            "a": "plain", "b": "0600", "c": "x\ny\n", "d": [["bash", "/x"]],
            "e": [{"k": 1, "l": "yes"}], "f": {}, "g": "two\n\n", "h": "no-nl\nend",
        });
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "a: plain\nb: \"0600\"\nc: |\n  x\n  y\nd:\n  - - bash\n    - /x\n\
             e:\n  - k: 1\n    l: \"yes\"\nf: {}\ng: |+\n  two\n\nh: |-\n  no-nl\n  end\n"
        );
    }

    #[test]
    fn quoting_escapes_non_ascii() {
        assert_eq!(quoted("a\u{2028}é\"\\"), "\"a\\u2028\\xe9\\\"\\\\\"");
        assert!(!plain_ok("On"));
        assert!(!plain_ok("1.5"));
        assert!(plain_ok("Asia/Shanghai"));
    }

    #[test]
    fn instance_id_changes_with_bundle() {
        assert_ne!(instance_id("c", "h", "aa"), instance_id("c", "h", "ab"));
        assert_eq!(instance_id("c", "h", "aa"), instance_id("c", "h", "aa"));
    }
}
