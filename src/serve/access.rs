//! Who may fetch a node's kickstart and seed: they carry the node's secrets (bootstrap token,
//! VRRP password, CA keys on masters), so only that node gets them.
//!
//! A request counts as coming from node N when it carries N's MAC in an Anaconda
//! `X-RHN-Provisioning-MAC-<i>: <ifname> <mac>` header (`inst.ks.sendmac`), or when it comes
//! from N's planned `ip`. Neither is authentication against a hostile LAN (both can be forged by
//! anyone on the install network); the rule keeps a node's secrets off every other node and out
//! of a curious browser, which is what an install server can enforce without keys on the node.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::cluster::Cluster;

/// The addresses by which a node is recognised.
#[derive(Debug, Clone)]
pub struct NodeId {
    pub role: String,
    pub ip: IpAddr,
    /// Lower case, colon separated.
    pub mac: Option<String>,
}

/// Every node of the cluster by hostname.
pub fn nodes(c: &Cluster) -> BTreeMap<String, NodeId> {
    c.nodes
        .iter()
        .map(|n| {
            (
                n.hostname.clone(),
                NodeId {
                    role: n.role.clone(),
                    ip: IpAddr::V4(n.ip),
                    mac: n.mac.as_ref().map(|m| m.to_ascii_lowercase()),
                },
            )
        })
        .collect()
}

/// The MACs a request names in `X-RHN-Provisioning-MAC-<i>` headers, lower case. The value is
/// `<ifname> <mac>`; a bare MAC is accepted too.
pub fn sent_macs(h: &HeaderMap) -> Vec<String> {
    h.iter()
        .filter(|(k, _)| k.as_str().starts_with("x-rhn-provisioning-mac-"))
        .filter_map(|(_, v)| v.to_str().ok())
        .filter_map(|v| v.split_whitespace().last())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The IPv4 address of an IPv4-mapped IPv6 peer (a dual-stack listener), else the address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// May the request from `peer` with `macs` have `node`'s secrets?
pub fn allowed(node: &NodeId, peer: IpAddr, macs: &[String]) -> bool {
    canonical(peer) == node.ip || node.mac.as_ref().is_some_and(|m| macs.contains(m))
}

/// How the denial log line names the asker.
pub fn asker(peer: IpAddr, macs: &[String]) -> String {
    if macs.is_empty() {
        format!("{} (no MAC header)", canonical(peer))
    } else {
        format!("{} (MAC {})", canonical(peer), macs.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn anaconda_headers_name_the_macs() {
        let mut h = HeaderMap::new();
        h.insert(
            "X-RHN-Provisioning-MAC-0",
            HeaderValue::from_static("eth0 52:54:00:AB:cd:01"),
        );
        h.insert(
            "x-rhn-provisioning-mac-1",
            HeaderValue::from_static("52:54:00:00:00:02"),
        );
        h.insert(
            "x-other",
            HeaderValue::from_static("eth0 52:54:00:00:00:03"),
        );
        let mut m = sent_macs(&h);
        m.sort();
        assert_eq!(m, ["52:54:00:00:00:02", "52:54:00:ab:cd:01"]);
        let n = NodeId {
            role: "worker".into(),
            ip: "10.0.0.5".parse().expect("ip"),
            mac: Some("52:54:00:ab:cd:01".into()),
        };
        assert!(allowed(&n, "10.0.0.9".parse().expect("ip"), &m));
        assert!(!allowed(&n, "10.0.0.9".parse().expect("ip"), &m[..1]));
        assert!(allowed(&n, "::ffff:10.0.0.5".parse().expect("ip"), &[]));
    }
}
