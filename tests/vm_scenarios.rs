//! Cluster scenarios on baked images (harness: `vm-tests/harness.rs`).
//!
//! (a) "role boots tuned": slb-01 boots from the baked slb image with its own seed on a private
//!     loopback wire; its bootstrap re-applies the bundle for slb-01 (idempotent), and the
//!     agent checks sysctl values, the /ezops tree, swap off, its address and keepalived.
//!     (The seed's scenario is a worker; the worker bake needs the nerdctl-full artifact, which
//!     cannot be fetched here, so the worker variant runs only when it is in the cache.)
//!
//! Runs only with `EZIMG_VM_TESTS=1` (root, minutes under TCG).

#[path = "../vm-tests/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{Guest, Wire, seed_dir};

/// MAC of a node on the test wire: its seed matches the NIC by it and names it `ens33`.
fn mac_of(ip_last: u8) -> String {
    format!("52:54:00:00:02:{ip_last:02x}")
}

/// The default cluster on debian12, distro nginx/keepalived, a MAC per slb node.
fn cluster(dir: &Path) -> PathBuf {
    let text = ezimg::cluster::DEFAULT_TOML
        .replace("os = \"el7\"", "os = \"debian12\"")
        .replace(
            "# [roles.slb]",
            "[roles.slb]\nnginx_source = \"distro\"\nkeepalived_source = \"distro\"\n#",
        )
        .replace(
            "hostname = \"slb-01\"\nrole = \"slb\"\n",
            &format!(
                "hostname = \"slb-01\"\nrole = \"slb\"\nmac = \"{}\"\n",
                mac_of(211)
            ),
        )
        .replace(
            "hostname = \"slb-02\"\nrole = \"slb\"\n",
            &format!(
                "hostname = \"slb-02\"\nrole = \"slb\"\nmac = \"{}\"\n",
                mac_of(212)
            ),
        );
    let f = dir.join("cluster.toml");
    std::fs::write(&f, text).expect("write cluster");
    f
}

#[test]
fn a_slb_boots_tuned_from_its_baked_image_and_seed() {
    if !harness::gate("vm_scenarios::a", "boot baked images") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let c = cluster(work.path());
    let out = work.path().join("out");
    let data = harness::test_data_dir(work.path());
    let (ok, log, _) = harness::ezimg_build(
        data.as_deref(),
        &c,
        &out,
        &["--role", "slb", "--format", "qcow2,cloud-init"],
    );
    assert!(ok, "ezimg build:\n{log}");
    let image = out.join("slb/ezimg-slb.qcow2");
    let wire = Wire::new();
    let mac = mac_of(211);
    let mut g = Guest::boot(
        work.path(),
        "slb-01",
        &image,
        &seed_dir(&out, "slb", "slb-01"),
        Some((&wire, &mac)),
    )
    .expect("boot slb-01");
    let status = g
        .wait_ready(Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "slb-01 ready after {:.0}s ({}): {status}",
        g.vm.elapsed().as_secs_f64(),
        g.vm.accel
    );
    let report = g
        .check(
            "echo hostname=$(hostname); \
             echo forward=$(sysctl -n net.ipv4.ip_forward); \
             echo swappiness=$(sysctl -n vm.swappiness); \
             echo swaps=$(swapon --noheadings | wc -l); \
             echo ezops=$(ls -d /ezops/service /ezops/package /ezops/backup /ezops/shell | wc -l); \
             echo addr=$(ip -4 -o addr show dev ens33 | awk '{print $4}' | head -n1); \
             echo keepalived=$(systemctl is-active keepalived); \
             echo applied=$(grep -h 'ezimg apply:' /var/log/cloud-init-output.log | tail -n1 | tr ' ' _)",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{report}");
    assert!(status.contains("done"), "cloud-init: {status}");
    for want in [
        "hostname=slb-01",
        "forward=1",
        "swaps=0",
        "ezops=4",
        "addr=192.168.2.211/24",
    ] {
        assert!(report.contains(want), "{want} missing:\n{report}");
    }
}
