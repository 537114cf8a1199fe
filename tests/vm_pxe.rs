//! A diskless guest PXE-boots from `ezimg serve`: in a private network namespace (a bridge
//! holding the ops node's address and a tap for the guest; no host interface, no default route,
//! so nothing leaves it) the real `ezimg serve --dhcp full` and the real dnsmasq with the
//! `dnsmasq.conf` serve wrote run, and QEMU (in the namespace too) boots the guest through its
//! NIC's iPXE ROM: DHCP hands the node's MAC its planned address and iPXE `boot.ipxe` over
//! HTTP, which chains to the node's per-MAC script, which loads the "installer" (the cached
//! debian12 base's kernel and initrd, in `pxe/installer/<os dir>/`) with the node's
//! `inst.ks=` line and `serve --append`'s arguments (the base's root on an overlay disk, the
//! serial console, a `systemd.run` report). The guest reports its MAC and `/proc/cmdline` on
//! virtio-serial, after asking for its own kickstart (200) and another node's (403) with
//! Anaconda's MAC header from its planned address. serve's access log and dnsmasq's DHCP log
//! are checked for this guest's requests.
//!
//! Only with `EZIMG_VM_TESTS=1` (root, QEMU, `ip netns`); tools from scripts/vm-deps.sh.

#[path = "../vm-tests/harness.rs"]
mod harness;
#[path = "../vm-tests/netns.rs"]
mod netns;
#[path = "../vm-tests/pxe_guest.rs"]
mod pxe_guest;
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ezimg::vm::{Disk, TapNic, Vm, VmSpec};
use netns::{Netns, Proc, ip};

const OPS_IP: &str = "192.168.2.201";
const PORT: u16 = 8080;
const NODE: &str = "worker-01";
const NODE_IP: &str = "192.168.2.231";
const MAC: &str = "52:54:00:ab:10:31";
/// Another node, whose kickstart the guest must not get.
const OTHER: &str = "master-01";
/// The default cluster is el7: its installer folder.
const INSTALLER: &str = "installer/centos-7.9.2009";
/// QEMU's ROM for virtio-net (from ipxe-qemu), which the guest's NIC runs.
const ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";

/// A tool the test needs: missing is a failure under CI, else a skip (None).
fn need(what: &str, path: &str) -> Option<()> {
    if Path::new(path).exists() {
        return Some(());
    }
    let msg = format!("vm_pxe: {path} ({what}) is missing: run scripts/vm-deps.sh");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("{msg}; skipped");
    None
}

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, ip netns, minutes)"
)]
fn a_diskless_guest_pxe_boots_its_own_install_line_from_ezimg_serve() {
    harness::gate("vm_pxe", "PXE-boot a guest from ezimg serve and dnsmasq");
    let t0 = Instant::now();
    for (what, path) in [
        ("iproute2", "/usr/sbin/ip"),
        ("dnsmasq-base", "/usr/sbin/dnsmasq"),
        ("ipxe-qemu", ROM),
        ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ] {
        if need(what, path).is_none() {
            return;
        }
    }
    let (image, kernel, initrd, uuid) = harness::debian12_base(&harness::cache_dir());
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let ezimg = assert_cmd::cargo::cargo_bin("ezimg");

    // The build the install server serves: every node's kickstart (the test's own cache and
    // secret store; no artifact is needed to boot).
    let cluster = w.join("cluster.toml");
    std::fs::write(&cluster, pxe_guest::site_cluster(NODE, NODE_IP, MAC)).expect("write cluster");
    let out = w.join("out");
    let cache = w.join("cache");
    let o = Command::new(&ezimg)
        .env_remove("EZIMG_CLUSTER")
        .env_remove("EZIMG_DATA")
        .env_remove("EZIMG_LOCK")
        .env("EZIMG_CACHE_DIR", &cache)
        .env("EZIMG_ALLOW_INCOMPLETE", "1")
        .arg("-c")
        .arg(&cluster)
        .args(["build", "--all", "--out"])
        .arg(&out)
        .output()
        .expect("ezimg build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The operator's installer files: here the base's kernel and initrd.
    let inst = out.join("pxe").join(INSTALLER);
    std::fs::create_dir_all(&inst).expect("mkdir installer");
    std::fs::copy(&kernel, inst.join("vmlinuz")).expect("copy kernel");
    std::fs::copy(&initrd, inst.join("initrd.img")).expect("copy initrd");
    let disk = w.join("root.qcow2");
    ezimg::vm::overlay(&image, &disk, None).expect("overlay over the cached base");
    let t_build = t0.elapsed();

    let ns = Netns::new("ezpxe", &format!("{OPS_IP}/24"));
    // Nothing in the namespace reaches anywhere else: its own links only, no default route.
    let links = ip(&["-n", &ns.0, "-o", "link", "show"]);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    assert_eq!(names, ["lo", "br0", "tap0"], "{links}");
    let routes = ip(&["-n", &ns.0, "route", "show", "table", "all"]);
    assert!(!routes.contains("default"), "{routes}");

    // The install server, as an operator runs it on the ops node.
    let url = format!("http://{OPS_IP}:{PORT}");
    let append = pxe_guest::append(&uuid, &pxe_guest::report_script(OPS_IP, PORT, NODE, OTHER));
    let serve_log = w.join("serve.log");
    let mut child = ns
        .exec(&ezimg)
        .env_remove("EZIMG_CLUSTER")
        .env_remove("EZIMG_DATA")
        .env_remove("EZIMG_LOCK")
        .env("EZIMG_CACHE_DIR", &cache)
        .arg("-c")
        .arg(&cluster)
        .arg("serve")
        .arg("--from")
        .arg(&out)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--listen", &format!("{OPS_IP}:{PORT}"), "--url", &url])
        .args(["--dhcp", "full", "--append", &append])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&serve_log).expect("log file"))
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let serve = Proc {
        child,
        log: serve_log,
    };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read stdout");
    assert_eq!(
        line.trim(),
        format!("listening on {url}"),
        "serve did not start:\n{}",
        serve.log()
    );
    let t_serve = t0.elapsed();

    // The dnsmasq.conf serve wrote: full DHCP, this node's address by MAC, iPXE chained over
    // HTTP.
    let conf_path = out.join("pxe/dnsmasq.conf");
    let conf = std::fs::read_to_string(&conf_path).expect("dnsmasq.conf");
    assert!(
        conf.contains(&format!("dhcp-host={MAC},{NODE_IP},{NODE}\n")),
        "{conf}"
    );
    assert!(
        conf.contains(&format!("dhcp-boot=tag:ipxe,{url}/boot.ipxe\n")),
        "{conf}"
    );
    let dnsmasq_log = w.join("dnsmasq.log");
    let child = ns
        .exec(Path::new("/usr/sbin/dnsmasq"))
        .arg("--keep-in-foreground")
        .arg(format!("--conf-file={}", conf_path.display()))
        .arg("--log-facility=-")
        .arg(format!("--dhcp-leasefile={}", w.join("leases").display()))
        .arg(format!("--pid-file={}", w.join("dnsmasq.pid").display()))
        // The TFTP root is in the test's private temp dir.
        .arg("--user=root")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&dnsmasq_log).expect("log file"))
        .spawn()
        .expect("dnsmasq starts");
    let mut dnsmasq = Proc {
        child,
        log: dnsmasq_log,
    };
    dnsmasq.wait_log("DHCP, static leases only", "dnsmasq");

    // The diskless guest: no kernel, no CD; the NIC's iPXE ROM boots first. Its only disk is
    // the root the base kernel mounts (the stand-in for an installer's in-memory root).
    let mut spec = VmSpec::new("vmtest-pxe", w);
    spec.pxe_tap = Some(TapNic {
        ifname: "tap0".into(),
        mac: MAC.into(),
    });
    spec.netns = Some(ns.0.clone());
    spec.disks = vec![Disk::qcow2(&disk)];
    let mut vm = Vm::start(&spec).expect("qemu starts");
    // The ROM asks DHCP within seconds of starting (under TCG: a minute at most); a guest that
    // never asks would go on to boot its disk, so give up early with the console.
    let asked = Instant::now();
    while !dnsmasq.log().contains(&format!("DHCPDISCOVER(br0) {MAC}")) {
        let console = std::fs::read_to_string(vm.serial_log()).unwrap_or_default();
        assert!(
            asked.elapsed() < Duration::from_secs(150) && !console.contains("Booting from Hard"),
            "the guest's iPXE sent no DHCPDISCOVER within 150s; console:\n{}\nQEMU:\n{}\n\
             links:\n{}\ndnsmasq:\n{}\nSeaBIOS:\n{}",
            std::fs::read_to_string(vm.serial_log()).unwrap_or_default(),
            std::fs::read_to_string(w.join("qemu.stderr")).unwrap_or_default(),
            ip(&["-n", &ns.0, "-s", "link", "show"]),
            dnsmasq.log(),
            std::fs::read_to_string(w.join("bios.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "vm_pxe: DHCPDISCOVER {:.0}s after QEMU started",
        vm.elapsed().as_secs_f64()
    );
    let report = vm
        .wait_for(Duration::from_secs(420), |l| l.starts_with("PXE "))
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\nconsole head:\n{}\nserve:\n{}\ndnsmasq:\n{}",
                std::fs::read_to_string(vm.serial_log())
                    .unwrap_or_default()
                    .lines()
                    .take(60)
                    .collect::<Vec<_>>()
                    .join("\n"),
                serve.log(),
                dnsmasq.log()
            )
        });
    let t_report = vm.elapsed();
    eprintln!("vm_pxe: {report}");
    vm.wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = serve.log();
    let dlog = dnsmasq.log();
    eprintln!(
        "vm_pxe: build+overlay {:.0}s, serve up at {:.0}s, guest reported {:.0}s after QEMU \
         started ({}), total {:.0}s",
        t_build.as_secs_f64(),
        t_serve.as_secs_f64(),
        t_report.as_secs_f64(),
        vm.accel,
        t0.elapsed().as_secs_f64()
    );

    // The guest is the node: its MAC, its address from DHCP, its own install line.
    let field = |k: &str| {
        report
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {report}"))
    };
    assert_eq!(field("mac"), MAC, "{report}");
    let cmdline = report
        .split_once(" cmdline=")
        .map(|(_, c)| c)
        .expect("cmdline");
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let ks = format!("inst.ks={url}/ks/{NODE}");
    assert_eq!(
        words.iter().filter(|w| w.starts_with("inst.ks=")).count(),
        1,
        "{cmdline}"
    );
    assert!(words.contains(&ks.as_str()), "{cmdline}");
    assert!(words.contains(&"inst.ks.sendmac"), "{cmdline}");
    assert!(
        words
            .iter()
            .any(|w| w.starts_with(&format!("ip={NODE_IP}::"))),
        "{cmdline}"
    );
    assert!(words.contains(&"console=ttyS0,115200"), "{cmdline}");
    assert!(
        dlog.contains(&format!("DHCPACK(br0) {NODE_IP} {MAC}")),
        "dnsmasq did not hand {MAC} its address:\n{dlog}"
    );
    // The chain as serve saw it, from this guest's address: the entry point, its per-MAC
    // script, the installer's kernel and initrd; then its own kickstart, not another node's.
    let dashes = MAC.replace(':', "-");
    for (path, status) in [
        ("/boot.ipxe".to_string(), 200),
        (format!("/pxe/ipxe/{dashes}.ipxe"), 200),
        (format!("/pxe/{INSTALLER}/vmlinuz"), 200),
        (format!("/pxe/{INSTALLER}/initrd.img"), 200),
        (format!("/ks/{NODE}"), 200),
        (format!("/ks/{OTHER}"), 403),
    ] {
        let want = format!("{NODE_IP} \"GET {path}\" {status} ");
        assert!(log.contains(&want), "no `{want}` in serve's log:\n{log}");
    }
    assert_eq!(field("own"), "200", "{report}");
    assert_eq!(field("other"), "403", "{report}");
    assert!(
        log.contains(&format!(
            "denied: /ks/{OTHER} holds the secrets of node {OTHER}; asked by {NODE_IP} (MAC {MAC})"
        )),
        "{log}"
    );
}
