//! The site's dnsmasq configuration (`pxe/dnsmasq.conf`), written as a file for the operator to
//! run (`dnsmasq --conf-file=...`): ezimg does not become a DHCP server.
//!
//! Proxy-DHCP (the default) leaves addresses to the site's DHCP server and only answers PXE
//! clients with where to boot from, so it can run on a network that already has DHCP. Full DHCP
//! hands each node with a `mac` its planned address (`dhcp-host`) and nothing to anyone else (a
//! `static` range), for an isolated install network. Either way: TFTP from the PXE tree for
//! BIOS (PXELINUX) and UEFI (GRUB) firmware, and iPXE clients chained to `boot.ipxe` over HTTP.

use std::path::Path;

use crate::cluster::{Cluster, Os};

/// How dnsmasq takes part in DHCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DhcpMode {
    /// Answer PXE clients only; the site's DHCP server hands out addresses
    Proxy,
    /// Be the DHCP server: each node with a `mac` gets its planned address
    Full,
}

/// The configuration text. `base` is this server's URL, `tftp_root` the absolute `pxe/` path.
pub fn render(c: &Cluster, mode: DhcpMode, base: &str, tftp_root: &Path) -> String {
    let net = &c.network;
    let mut s = format!(
        "# dnsmasq configuration for cluster {name}, written by ezimg ({mode} DHCP).\n\
         # Run: dnsmasq --keep-in-foreground --conf-file=<this file>\n\
         # BIOS firmware loads pxelinux.0 and UEFI firmware grubx64.efi from the TFTP root: copy\n\
         # them (syslinux's and the installer's shim/GRUB) there, beside installer/{inst}/.\n\
         # No DNS service: port=0.\nport=0\nlog-dhcp\n",
        name = c.name,
        mode = match mode {
            DhcpMode::Proxy => "proxy",
            DhcpMode::Full => "full",
        },
        inst = super::pxe::installer_dir(c.os),
    );
    s.push_str(&format!("enable-tftp\ntftp-root={}\n", tftp_root.display()));
    s.push_str(
        "dhcp-userclass=set:ipxe,iPXE\ndhcp-match=set:ipxe,175\n\
         dhcp-vendorclass=set:bios,PXEClient:Arch:00000\n\
         dhcp-vendorclass=set:efi64,PXEClient:Arch:00007\n\
         dhcp-vendorclass=set:efi64,PXEClient:Arch:00009\n",
    );
    let ipxe = format!("{base}/boot.ipxe");
    match mode {
        DhcpMode::Proxy => {
            s.push_str(&format!(
                "dhcp-range={},proxy,{}\n\
                 pxe-service=tag:ipxe,x86PC,\"ezimg iPXE\",{ipxe}\n\
                 pxe-service=tag:ipxe,X86-64_EFI,\"ezimg iPXE\",{ipxe}\n\
                 pxe-service=tag:!ipxe,x86PC,\"ezimg PXELINUX\",pxelinux\n\
                 pxe-service=tag:!ipxe,X86-64_EFI,\"ezimg GRUB\",grubx64.efi\n",
                net.cidr.network(),
                net.cidr.netmask()
            ));
        }
        DhcpMode::Full => {
            s.push_str(&format!(
                "dhcp-range={},static,{},12h\n\
                 dhcp-option=option:router,{}\n",
                net.cidr.network(),
                net.cidr.netmask(),
                net.gateway
            ));
            if !net.dns.is_empty() {
                let dns: Vec<String> = net.dns.iter().map(ToString::to_string).collect();
                s.push_str(&format!(
                    "dhcp-option=option:dns-server,{}\n",
                    dns.join(",")
                ));
            }
            s.push_str(&format!(
                "dhcp-boot=tag:ipxe,{ipxe}\n\
                 dhcp-boot=tag:!ipxe,tag:bios,pxelinux.0\n\
                 dhcp-boot=tag:!ipxe,tag:efi64,grubx64.efi\n"
            ));
            if c.os != Os::Debian12 {
                for n in &c.nodes {
                    if let Some(m) = &n.mac {
                        s.push_str(&format!(
                            "dhcp-host={},{},{}\n",
                            m.to_ascii_lowercase(),
                            n.ip,
                            n.hostname
                        ));
                    }
                }
            }
        }
    }
    s
}
