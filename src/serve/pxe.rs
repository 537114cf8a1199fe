//! The PXE tree `ezimg serve` writes into `<out>/pxe/`: per node with a `mac`, an iPXE script,
//! a GRUB config and a PXELINUX config, each booting the installer's pxeboot kernel and initrd
//! with `inst.ks=` pointing at the node's kickstart on this server and `inst.ks.sendmac` (so
//! Anaconda sends the MAC the server checks before handing out the node's secrets).
//!
//! The installer kernel and initrd are pinned vendor files (CentOS 7.9.2009's and Rocky 9's
//! `images/pxeboot/vmlinuz` and `initrd.img`) that cannot be fetched here: the operator copies
//! them to `<out>/pxe/installer/<os>/`, which ezimg never writes or removes. Only the files named
//! in [`GENERATED_DIRS`] and [`generated_top`] are ezimg's; they are replaced as a whole so a
//! node that left the cluster (or lost its `mac`) loses its boot entry.
//!
//! Everything here is a pure function of the cluster and the options: byte-identical output for
//! the same inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cluster::{Cluster, Node, Os};

use super::dnsmasq::{self, DhcpMode};

/// Folders under `pxe/` that ezimg owns entirely.
pub const GENERATED_DIRS: [&str; 2] = ["ipxe", "pxelinux.cfg"];

/// Files at the top of `pxe/` that ezimg owns: `boot.ipxe`, `dnsmasq.conf`, `grub.cfg-01-*`.
pub fn generated_top(name: &str) -> bool {
    name == "boot.ipxe" || name == "dnsmasq.conf" || name.starts_with("grub.cfg-01-")
}

/// What the boot configs point at.
#[derive(Debug, Clone)]
pub struct PxeOptions {
    /// This server as nodes reach it: `http://192.168.2.201:8080` (no trailing slash).
    pub base_url: String,
    /// Installer kernel, relative to `pxe/` (TFTP root and `/pxe/` over HTTP); default
    /// `installer/<os>/vmlinuz`.
    pub kernel: Option<String>,
    /// Installer initrd, likewise; default `installer/<os>/initrd.img`.
    pub initrd: Option<String>,
    /// `inst.repo=` for the installer (the kickstart's `url` line names one too).
    pub repo: Option<String>,
    /// Operator's extra kernel arguments (`console=ttyS0`, `inst.text`, ...), last on every
    /// boot line, so they win over what ezimg puts there.
    pub append: Option<String>,
    /// dnsmasq: proxy-DHCP beside the site's DHCP server, or the only DHCP server.
    pub dhcp: DhcpMode,
}

/// The folder under `pxe/installer/` where an OS's pxeboot files go.
pub fn installer_dir(os: Os) -> &'static str {
    match os {
        Os::El7 => "centos-7.9.2009",
        Os::El9 => "rocky-9",
        Os::Debian12 => "debian12",
    }
}

/// `52:54:00:AB:cd:01` -> `52-54-00-ab-cd-01`, as PXELINUX and GRUB look files up.
pub fn mac_dashes(mac: &str) -> String {
    mac.to_ascii_lowercase().replace(':', "-")
}

/// The URL path of a node's kickstart on this server.
pub fn ks_path(node: &str) -> String {
    format!("/ks/{node}")
}

/// The rendered tree: path under `pxe/` -> content, and one line per node left out.
pub struct Tree {
    pub files: BTreeMap<String, String>,
    pub notes: Vec<String>,
}

/// Render the PXE tree for `c`. `tftp_root` is where `pxe/` is on this machine (dnsmasq's
/// `tftp-root`).
pub fn render(c: &Cluster, o: &PxeOptions, tftp_root: &Path) -> Tree {
    let mut files = BTreeMap::new();
    let mut notes = Vec::new();
    let base = o.base_url.trim_end_matches('/');
    let with_mac: Vec<(&Node, String)> = if c.os == Os::Debian12 {
        notes.push(
            "os debian12 installs from a qcow2 image, not kickstart: no PXE entries".to_string(),
        );
        Vec::new()
    } else {
        c.nodes
            .iter()
            .filter_map(|n| match &n.mac {
                Some(m) => Some((n, m.to_ascii_lowercase())),
                None => {
                    notes.push(format!(
                        "node {} has no mac in the cluster file: no PXE entry (add `mac = ...` \
                         to boot it over the network)",
                        n.hostname
                    ));
                    None
                }
            })
            .collect()
    };
    let dir = installer_dir(c.os);
    let kernel = o
        .kernel
        .clone()
        .unwrap_or_else(|| format!("installer/{dir}/vmlinuz"));
    let initrd = o
        .initrd
        .clone()
        .unwrap_or_else(|| format!("installer/{dir}/initrd.img"));
    // EL7's GRUB needs the EFI variants to boot under Secure Boot; EL9's GRUB has only these.
    let (linux, initrd_cmd) = match c.os {
        Os::El7 => ("linuxefi", "initrdefi"),
        _ => ("linux", "initrd"),
    };
    // iPXE reports the MAC in hyphenated lower case (`hexhyp`), as the scripts are named.
    let ipxe_menu = format!(
        "#!ipxe\n# Written by ezimg: chain to the script of this machine's MAC.\n\
         chain --autofree {base}/pxe/ipxe/${{net0/mac:hexhyp}}.ipxe || goto unknown\nexit\n\
         :unknown\necho ezimg: no install planned for ${{net0/mac}} (not in the cluster file, \
         or no mac)\nsleep 10\nexit 1\n"
    );
    for (n, mac) in &with_mac {
        let args = cmdline(c, n, base, o);
        let dashes = mac_dashes(mac);
        files.insert(
            format!("ipxe/{dashes}.ipxe"),
            format!(
                "#!ipxe\n# {host} ({role}), {mac}: install {os} with its kickstart\n\
                 kernel {base}/pxe/{kernel} initrd=initrd.img {args}\n\
                 initrd --name initrd.img {base}/pxe/{initrd}\nboot\n",
                host = n.hostname,
                role = n.role,
                os = c.os,
            ),
        );
        files.insert(
            format!("grub.cfg-01-{dashes}"),
            format!(
                "# {host} ({role}), {mac}: written by ezimg\nset timeout=3\n\
                 menuentry 'Install {host} ({os})' {{\n  {linux} /{kernel} {args}\n  \
                 {initrd_cmd} /{initrd}\n}}\n",
                host = n.hostname,
                role = n.role,
                os = c.os,
            ),
        );
        files.insert(
            format!("pxelinux.cfg/01-{dashes}"),
            format!(
                "# {host} ({role}), {mac}: written by ezimg\nDEFAULT install\nPROMPT 0\n\
                 TIMEOUT 30\nLABEL install\n  IPAPPEND 2\n  KERNEL {kernel}\n  APPEND initrd={initrd} {args}\n",
                host = n.hostname,
                role = n.role,
            ),
        );
    }
    files.insert("boot.ipxe".to_string(), ipxe_menu);
    files.insert(
        "dnsmasq.conf".to_string(),
        dnsmasq::render(c, o.dhcp, base, tftp_root),
    );
    Tree { files, notes }
}

/// The installer's command line for node `n`.
fn cmdline(c: &Cluster, n: &Node, base: &str, o: &PxeOptions) -> String {
    let mut a = format!("inst.ks={base}{} inst.ks.sendmac", ks_path(&n.hostname));
    if let Some(r) = &o.repo {
        a.push_str(&format!(" inst.repo={r}"));
    }
    // The installer takes the node's planned address on the interface with its MAC.
    let net = &c.network;
    a.push_str(&format!(
        " ip={}::{}:{}:{}:{}:none",
        n.ip,
        net.gateway,
        net.cidr.netmask(),
        n.hostname,
        net.interface
    ));
    if let Some(d) = net.dns.first() {
        a.push_str(&format!(" nameserver={d}"));
    }
    if let Some(x) = o.append.as_deref().map(str::trim).filter(|x| !x.is_empty()) {
        a.push(' ');
        a.push_str(x);
    }
    a
}

/// Check `serve --append`: it goes verbatim into iPXE, GRUB and PXELINUX configs, where a line
/// break would end the boot line (and start a command of the operator's text).
pub fn check_append(s: &str) -> Result<(), String> {
    if s.contains(['\n', '\r']) {
        return Err("kernel arguments on one line: no line break".into());
    }
    if s.contains('\0') {
        return Err("a NUL byte in kernel arguments".into());
    }
    Ok(())
}

/// Render and write the tree into `<out>/pxe/`: each generated folder and file replaced with a
/// rename, stale generated files removed, the operator's files (installer/, boot loaders) kept.
/// Returns the notes (nodes left out).
pub fn write(out: &Path, c: &Cluster, o: &PxeOptions) -> Result<Vec<String>> {
    let pxe = out.join("pxe");
    std::fs::create_dir_all(&pxe).with_context(|| format!("creating {}", pxe.display()))?;
    let abs =
        std::fs::canonicalize(&pxe).with_context(|| format!("resolving {}", pxe.display()))?;
    write_at(&pxe, &abs, c, o)
}

/// [`write`] into the folder `pxe` for a tree that will be served from `tftp_root` (`build`
/// writes it in its staging folder, then renames it to `<out>/pxe`).
pub fn write_at(pxe: &Path, tftp_root: &Path, c: &Cluster, o: &PxeOptions) -> Result<Vec<String>> {
    let pxe = pxe.to_path_buf();
    std::fs::create_dir_all(&pxe).with_context(|| format!("creating {}", pxe.display()))?;
    let tree = render(c, o, tftp_root);
    let staging = tempfile::Builder::new()
        .prefix(".ezimg-pxe-")
        .tempdir_in(&pxe)
        .with_context(|| format!("{} is not writable", pxe.display()))?;
    for (rel, text) in &tree.files {
        let p = staging.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    for d in GENERATED_DIRS {
        let new = staging.path().join(d);
        std::fs::create_dir_all(&new).with_context(|| format!("creating {}", new.display()))?;
        swap_dir(
            &new,
            &pxe.join(d),
            &staging.path().join(format!(".old-{d}")),
        )?;
    }
    let mut keep: Vec<String> = Vec::new();
    for rel in tree.files.keys().filter(|r| !r.contains('/')) {
        let dst = pxe.join(rel);
        std::fs::rename(staging.path().join(rel), &dst)
            .with_context(|| format!("moving {} into place", dst.display()))?;
        keep.push(rel.clone());
    }
    for e in std::fs::read_dir(&pxe).with_context(|| format!("reading {}", pxe.display()))? {
        let e = e.with_context(|| format!("reading {}", pxe.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if generated_top(&name) && !keep.contains(&name) {
            let p: PathBuf = e.path();
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(tree.notes)
}

/// The generated files now in the PXE folder `pxe` (paths relative to it), whoever wrote them:
/// a new tree replaces all of them.
pub fn generated_files(pxe: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(pxe) else {
        return Ok(out);
    };
    for e in rd {
        let e = e.with_context(|| format!("reading {}", pxe.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e
            .file_type()
            .with_context(|| format!("inspecting {}", e.path().display()))?;
        if ft.is_file() && generated_top(&name) {
            out.push(name);
        } else if ft.is_dir() && GENERATED_DIRS.contains(&name.as_str()) {
            let d = e.path();
            for f in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
                let f = f.with_context(|| format!("reading {}", d.display()))?;
                out.push(format!("{name}/{}", f.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Put `new` where `dst` is: the old one goes aside (into the staging folder, removed with it).
fn swap_dir(new: &Path, dst: &Path, aside: &Path) -> Result<()> {
    if dst.exists() {
        std::fs::rename(dst, aside).with_context(|| format!("moving aside {}", dst.display()))?;
    }
    std::fs::rename(new, dst).with_context(|| format!("moving {} into place", dst.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(append: Option<&str>) -> PxeOptions {
        PxeOptions {
            base_url: "http://192.168.2.201:8080".into(),
            kernel: None,
            initrd: None,
            repo: None,
            append: append.map(str::to_string),
            dhcp: DhcpMode::Full,
        }
    }

    #[test]
    fn append_ends_every_boot_line() {
        let mut c = crate::cluster::parse(crate::cluster::DEFAULT_TOML, "default").expect("parse");
        for n in &mut c.nodes {
            if n.hostname == "worker-01" {
                n.mac = Some("52:54:00:AB:00:31".into());
            }
        }
        let extra = "console=ttyS0,115200 inst.text systemd.run=\"bash -c 'echo a b'\"";
        let t = render(
            &c,
            &opts(Some(&format!("  {extra} "))),
            Path::new("/srv/pxe"),
        );
        let ks = "inst.ks=http://192.168.2.201:8080/ks/worker-01 inst.ks.sendmac";
        for (rel, prefix) in [
            ("ipxe/52-54-00-ab-00-31.ipxe", "kernel "),
            ("grub.cfg-01-52-54-00-ab-00-31", "  linuxefi "),
            ("pxelinux.cfg/01-52-54-00-ab-00-31", "  APPEND "),
        ] {
            let text = &t.files[rel];
            let line = text
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{rel}: no boot line\n{text}"));
            assert!(line.ends_with(&format!(" {extra}")), "{rel}: {line}");
            assert!(line.contains(ks), "{rel}: {line}");
        }
        // Without --append the line ends with ezimg's own arguments.
        let t = render(&c, &opts(None), Path::new("/srv/pxe"));
        let text = &t.files["ipxe/52-54-00-ab-00-31.ipxe"];
        assert!(text.contains("nameserver=192.168.2.2\n"), "{text}");
        assert!(check_append(extra).is_ok());
        assert!(check_append("console=ttyS0\nshell").is_err());
        assert!(check_append("a\rb").is_err());
    }
}
