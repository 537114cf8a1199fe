//! The ops node as the site's one install source, in VMs (issue 10): the ops guest, baked from
//! the ops role with the registry and the install server on, runs the real docker-registry,
//! `ezimg serve` (ezimg-serve.service) and dnsmasq (ezimg-dnsmasq.service, full DHCP) on a
//! private wire with no way out; a worker guest's containerd pulls through `hosts.toml` from
//! its registry, and a diskless guest PXE-boots from its dnsmasq and serve.
//!
//! - The worker and ops roles are baked with vm_scenarios' very inputs (`harness::scenario_inputs`,
//!   the test data dir), so both bakes are cache hits for vm_scenarios later in the suite; a
//!   second worker `build` from a fresh work dir (new SSH key, new secret store) is checked to be
//!   a cache hit with the same key.
//! - The wire: a private network namespace holding a bridge (the operator's laptop at
//!   192.168.2.250, where `ezimg images push` runs) and one tap per guest; no other link, no
//!   default route.
//! - ops boots with a read-only medium: what an operator copies to the install server, i.e. a
//!   build output (`build --all` of an el7 site: kickstarts and PXE entries exist for EL
//!   nodes only; the "installer" in its PXE tree is the cached debian12 base's kernel and
//!   initrd), that site's cluster file and the operator's `/etc/ezimg/serve/serve.env`
//!   (`EZIMG_SERVE_APPEND`: the stand-in installer's root, console and report). The test copies
//!   them as the install-server layer's notes say, then `systemctl start ezimg-serve`, which
//!   brings ezimg-dnsmasq up once serve is ready (`Type=notify`).
//! - A small OCI image the test makes is pulled by `ezimg images pull` from a scratch registry on
//!   127.0.0.1 and pushed with `ezimg images push` from the laptop to the cluster's
//!   `registry_mirror` (the ops guest), under the name kubeadm's images have.
//! - worker-01 pulls it: not with no CA file, not with another authority's CA (the ops
//!   registry's journal shows the refused handshake), and with the cluster CA by digest, unpacked.
//! - A diskless guest with the el7 site's worker-02 MAC boots through its NIC's iPXE ROM: the
//!   ops guest's dnsmasq hands it worker-02's address and `boot.ipxe`, serve its per-MAC script,
//!   kernel and initrd; it reports its MAC and `/proc/cmdline`, gets its own kickstart (200) and
//!   not master-01's (403). The ops guest's journal shows the chain and the DHCPACK.
//!
//! Only with `EZIMG_VM_TESTS=1` (root, QEMU, `ip netns`); tools from scripts/vm-deps.sh and
//! scripts/test-deps.sh (docker-registry for the scratch upstream, xorriso, ipxe-qemu).

#[path = "../vm-tests/harness.rs"]
mod harness;
#[path = "../vm-tests/netns.rs"]
mod netns;
#[path = "../vm-tests/pxe_guest.rs"]
mod pxe_guest;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ezimg::vm::{Disk, TapNic, Vm, VmSpec};
use harness::{BootOpts, Guest, NetnsTap};
use netns::{Netns, Proc, ip};
use sha2::{Digest as _, Sha256};

const NODE: &str = "worker-01";
const NODE_LAST: u8 = 231;
const NODE_IP: &str = "192.168.2.231";
/// The test cluster's ops node (its `registry_mirror`, the install server).
const OPS_IP: &str = "192.168.2.201";
/// The operator's laptop on the wire (pushes the images).
const LAPTOP: &str = "192.168.2.250/24";
/// ezimg-serve's port (the ops role's default `install_server_port`).
const SERVE_PORT: u16 = 8080;
/// The el7 site's node the diskless guest plays, and another whose kickstart it must not get.
const PXE_NODE: &str = "worker-02";
const PXE_IP: &str = "192.168.2.232";
const PXE_MAC: &str = "52:54:00:ab:10:32";
const OTHER: &str = "master-01";
/// The el7 site's installer folder in its PXE tree.
const INSTALLER: &str = "installer/centos-7.9.2009";
/// QEMU's ROM for virtio-net (from ipxe-qemu), which the diskless guest's NIC runs.
const ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";
/// The image's repository and tag in the cluster's kubeadm image repository.
const REPO: &str = "ezimg-test";
const TAG: &str = "1.0";

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// A tool the test needs: missing is a failure under CI, else a skip (None).
fn need(what: &str, path: &str) -> Option<()> {
    if Path::new(path).exists() {
        return Some(());
    }
    let msg = format!(
        "vm_ops: {path} ({what}) is missing: run scripts/vm-deps.sh and scripts/test-deps.sh"
    );
    assert!(!support::under_ci(), "{msg}");
    eprintln!("{msg}; skipped");
    None
}

/// A one-platform (linux/amd64) OCI image: (config, layer, manifest). The layer is a gzip'd
/// tar with one file, so containerd's unpack has something real to apply.
fn test_image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use std::io::Write as _;
    let mut tb = tar::Builder::new(Vec::new());
    let data = b"pulled through the ops registry\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tb.append_data(&mut h, "ezimg-test.txt", &data[..])
        .expect("tar");
    let tar = tb.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha(&tar)]}
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(&layer), "size": layer.len()}]
    }))
    .expect("json");
    (config, layer, manifest)
}

/// Put the image into the scratch registry at `base` through the distribution API (what any
/// pusher does): the "upstream" an operator pulls from on a connected machine.
fn seed_upstream(base: &str, blobs: &[&[u8]], manifest: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let c = reqwest::Client::new();
    rt.block_on(async {
        for blob in blobs {
            let r = c
                .post(format!("{base}/v2/{REPO}/blobs/uploads/"))
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), 202);
            let loc = r.headers()["location"].to_str().expect("loc").to_string();
            let mut url = reqwest::Url::parse(base)
                .and_then(|b| b.join(&loc))
                .expect("url");
            url.query_pairs_mut().append_pair("digest", &sha(blob));
            let r = c.put(url).body(blob.to_vec()).send().await.expect("PUT");
            assert_eq!(r.status(), 201);
        }
        let r = c
            .put(format!("{base}/v2/{REPO}/manifests/{TAG}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_vec())
            .send()
            .await
            .expect("PUT manifest");
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    });
}

/// `ezimg ARGS` (run in `ns` when given) with no inherited cluster, lock or cache: output.
fn ezimg(ns: Option<&Netns>, args: &[&str]) -> (bool, String) {
    let bin = assert_cmd::cargo::cargo_bin("ezimg");
    let mut c = match ns {
        Some(ns) => ns.exec(&bin),
        None => Command::new(&bin),
    };
    let o = c
        .args(args)
        .env_remove("EZIMG_LOCK")
        .env_remove("EZIMG_CACHE_DIR")
        .env_remove("EZIMG_CLUSTER")
        .output()
        .expect("run ezimg");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `ezimg build --role ROLE --format FORMATS` with the inputs `setup` wrote into `work`, into
/// `work/out-<role>`: (output dir, log, seconds, the bake's cache key).
fn bake(work: &Path, (cluster, args): &Inputs, role: &str, formats: &str) -> Baked {
    let mut args = args.clone();
    args.splice(
        0..0,
        ["--role", role, "--format", formats].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = work.join(format!("out-{role}"));
    let (ok, log, secs) = harness::ezimg_build(Some(&work.join("data")), cluster, &out, &args);
    assert!(ok, "ezimg build --role {role}:\n{log}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("{role}/ezimg-{role}.qcow2.json"))).expect("bake manifest"),
    )
    .expect("manifest json");
    let key = manifest["key"].as_str().expect("bake key").to_string();
    (out, log, secs, key)
}

type Inputs = (PathBuf, Vec<String>);
type Baked = (PathBuf, String, f64, String);

/// vm_scenarios' inputs in `work`: the test data dir and (cluster file, build arguments).
fn setup(work: &Path) -> Inputs {
    harness::test_data_dir(work);
    harness::scenario_inputs(work)
}

/// What the operator copies to the install server, as a read-only ISO: `out/` (the el7 site's
/// `build --all`, with the base's kernel and initrd as its installer), `cluster.toml` (that
/// site's cluster file) and `serve.env` (the unit's environment file).
fn install_media(work: &Path, kernel: &Path, initrd: &Path, append: &str) -> PathBuf {
    let root = work.join("media");
    let out = root.join("out");
    let cluster = root.join("cluster.toml");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(&cluster, pxe_guest::site_cluster(PXE_NODE, PXE_IP, PXE_MAC))
        .expect("write cluster");
    let o = Command::new(assert_cmd::cargo::cargo_bin("ezimg"))
        .env_remove("EZIMG_CLUSTER")
        .env_remove("EZIMG_DATA")
        .env_remove("EZIMG_LOCK")
        .env("EZIMG_CACHE_DIR", work.join("site-cache"))
        .env("EZIMG_ALLOW_INCOMPLETE", "1")
        .arg("-c")
        .arg(&cluster)
        .args(["build", "--all", "--out"])
        .arg(&out)
        .output()
        .expect("ezimg build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inst = out.join("pxe").join(INSTALLER);
    std::fs::create_dir_all(&inst).expect("mkdir installer");
    std::fs::copy(kernel, inst.join("vmlinuz")).expect("copy kernel");
    std::fs::copy(initrd, inst.join("initrd.img")).expect("copy initrd");
    // systemd's environment-file syntax: double quotes, `\"` for a quote inside.
    std::fs::write(
        root.join("serve.env"),
        format!(
            "# The operator's settings for ezimg-serve (not in the shared bundle).\n\
             EZIMG_SERVE_APPEND=\"{}\"\n",
            append.replace('\\', "\\\\").replace('"', "\\\"")
        ),
    )
    .expect("write serve.env");
    let iso = work.join("media.iso");
    let o = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "EZSITE", "-o"])
        .arg(&iso)
        .arg(&root)
        .output()
        .expect("xorriso");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    iso
}

/// Lines of the registry's log that show `who` asking for `what`.
fn log_lines<'a>(log: &'a str, who: &str, what: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(who) && l.contains(what))
        .collect()
}

/// A guest's console tail, for a failure message.
fn console(g: &Guest) -> String {
    tail(
        &std::fs::read_to_string(g.vm.serial_log()).unwrap_or_default(),
        60,
    )
}

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, ip netns, minutes)"
)]
fn the_ops_guest_serves_images_and_pxe_installs_to_a_wire_with_no_way_out() {
    harness::gate(
        "vm_ops",
        "boot the ops node with a worker and a PXE-booted guest",
    );
    for (what, path) in [
        ("iproute2", "/usr/sbin/ip"),
        ("docker-registry", "/usr/bin/docker-registry"),
        ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
        ("xorriso", "/usr/bin/xorriso"),
        ("ipxe-qemu", ROM),
    ] {
        if need(what, path).is_none() {
            return;
        }
    }
    let t0 = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();

    // The worker and ops images and seeds, from vm_scenarios' inputs, baked side by side.
    let inputs = setup(w);
    let (worker, ops) = std::thread::scope(|sc| {
        let wk = sc.spawn(|| bake(w, &inputs, "worker", "qcow2,cloud-init"));
        let op = sc.spawn(|| bake(w, &inputs, "ops", "qcow2,cloud-init"));
        (
            wk.join().expect("worker bake"),
            op.join().expect("ops bake"),
        )
    });
    for (role, (_, log, secs, key)) in [("worker", &worker), ("ops", &ops)] {
        eprintln!(
            "vm_ops: {role} image and seeds built in {secs:.0}s (bake key {key}):\n{}",
            log.lines()
                .filter(|l| l.contains(&format!("qcow2 {role}")))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The key holds no per-run input (SSH key, secret store, work dir): a fresh work dir, as
    // vm_scenarios has, finds the same image.
    let again = tempfile::tempdir().expect("tempdir");
    let inputs2 = setup(again.path());
    let (_, log2, secs2, key2) = bake(again.path(), &inputs2, "worker", "qcow2");
    assert!(log2.contains("qcow2 worker: cache hit"), "{log2}");
    assert_eq!(key2, worker.3, "the bake key depends on the work dir");
    eprintln!("vm_ops: the same inputs from a fresh work dir: cache hit in {secs2:.1}s");
    drop(again);
    let t_bake = t0.elapsed();

    let cluster = inputs.0.clone();
    let loaded = ezimg::cluster::load(Some(&cluster)).expect("cluster");
    assert_eq!(loaded.cluster.registry_mirror, OPS_IP);
    let image_repository = loaded.cluster.kubernetes.image_repository.clone();
    let registry_host = ezimg::images::registry_of(&format!("{image_repository}/x:0"));
    let node_ref = format!("{image_repository}/{REPO}:{TAG}");
    let store = w.join("cluster.secrets");
    let ca = store.join("pki/ca.crt");

    // What the operator copies to the install server.
    let (_, kernel, initrd, uuid) = harness::debian12_base(&harness::cache_dir());
    let append = pxe_guest::append(
        &uuid,
        &pxe_guest::report_script(OPS_IP, SERVE_PORT, PXE_NODE, OTHER),
    );
    let media = install_media(w, &kernel, &initrd, &append);

    // The image, pulled as an operator does on a connected machine (here: a scratch registry
    // on 127.0.0.1), by digest into the cache.
    let (config, layer, manifest) = test_image();
    let digest = sha(&manifest);
    let up_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let up_dir = w.join("upstream");
    std::fs::create_dir_all(&up_dir).expect("mkdir");
    std::fs::write(
        up_dir.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{up_port}\n",
            up_dir.join("storage").display()
        ),
    )
    .expect("write config");
    let mut up_cmd = Command::new("/usr/bin/docker-registry");
    up_cmd.arg("serve").arg(up_dir.join("config.yml"));
    let _upstream = Proc::spawn(up_cmd, up_dir.join("registry.log"));
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", up_port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "scratch registry");
        std::thread::sleep(Duration::from_millis(50));
    }
    seed_upstream(
        &format!("http://127.0.0.1:{up_port}"),
        &[&config, &layer],
        &manifest,
    );
    let lock = w.join("site.lock");
    std::fs::write(
        &lock,
        format!(
            "lock_version = 1\n\n[[image]]\nreference = \"127.0.0.1:{up_port}/{REPO}:{TAG}\"\n\
             digest = \"{digest}\"\nused_by = \"kubeadm\"\n"
        ),
    )
    .expect("write lock");
    let cache = w.join("images-cache");
    let (ok, o) = ezimg(
        None,
        &[
            "images",
            "pull",
            "--lock",
            s(&lock),
            "--cache-dir",
            s(&cache),
            "--plain-http",
        ],
    );
    assert!(ok, "ezimg images pull:\n{o}");

    // The wire: a namespace with only the bridge (the laptop's address) and the guests' taps.
    let ns = Netns::new("ezops", LAPTOP);
    ns.add_tap("tap1");
    ns.add_tap("tap2");
    let links = ip(&["-n", &ns.0, "-o", "link", "show"]);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    assert_eq!(names, ["lo", "br0", "tap0", "tap1", "tap2"], "{links}");
    let routes = ip(&["-n", &ns.0, "route", "show", "table", "all"]);
    assert!(!routes.contains("default"), "{routes}");

    // ops and worker-01 boot side by side, each on its tap with the MAC its seed matches.
    let boot = |role: &str, node: &str, last: u8, out: &Path, tap: &str, media| {
        let seed = harness::seed_dir(out, role, node);
        let mac = harness::mac_of(last);
        let netcfg = std::fs::read_to_string(seed.join("network-config")).expect("network-config");
        assert!(netcfg.contains(&mac), "{netcfg}");
        let opts = BootOpts {
            mem_mib: 1024,
            cpus: 1,
            tap: Some(NetnsTap {
                netns: ns.0.clone(),
                ifname: tap.into(),
                mac,
            }),
            media,
            ..BootOpts::default()
        };
        Guest::boot_with(
            &w.join("guests"),
            node,
            &out.join(format!("{role}/ezimg-{role}.qcow2")),
            &seed,
            None,
            &opts,
        )
        .unwrap_or_else(|e| panic!("boot {node}: {e:#}"))
    };
    let (ops_host, _, ops_last) = harness::OPS;
    let mut og = boot(
        "ops",
        ops_host,
        ops_last,
        &ops.0,
        "tap0",
        Some((media, "ezsite")),
    );
    let mut g = boot("worker", NODE, NODE_LAST, &worker.0, "tap1", None);
    for guest in [&mut og, &mut g] {
        let status = guest
            .wait_ready(Duration::from_secs(1500))
            .unwrap_or_else(|e| panic!("{e:#}\nconsole tail:\n{}", console(guest)));
        eprintln!(
            "vm_ops: {} ready ({status}) {:.0}s after QEMU started ({})",
            guest.name,
            guest.vm.elapsed().as_secs_f64(),
            guest.vm.accel
        );
        assert!(
            status.contains("done"),
            "{}: cloud-init: {status}",
            guest.name
        );
    }
    let t_ready = t0.elapsed();

    // The ops node as its bundle made it: the registry up with the store's certificate; the
    // install server and its dnsmasq installed, enabled, waiting for a build output.
    let st = og
        .check(
            "systemctl is-active docker-registry; systemctl is-enabled ezimg-serve ezimg-dnsmasq; \
             systemctl is-active ezimg-serve ezimg-dnsmasq; id -un ezimg-serve; \
             stat -c '%U %a' /srv/ezimg/out; /usr/local/bin/ezimg --version",
        )
        .expect("ops state");
    let lines: Vec<&str> = st.lines().collect();
    assert_eq!(
        lines[..7],
        [
            "active",
            "enabled",
            "enabled",
            "inactive",
            "inactive",
            "ezimg-serve",
            "ezimg-serve 755"
        ],
        "{st}"
    );
    let crt = og
        .check("cat /etc/ezimg/registry/registry.crt")
        .expect("crt");
    assert_eq!(
        crt.trim_end(),
        std::fs::read_to_string(store.join("pki/registry.crt"))
            .expect("store crt")
            .trim_end()
    );

    // The operator's copy (layers/README.md), then the start: serve is ready (Type=notify) with
    // the PXE tree and dnsmasq.conf written, and brings dnsmasq up.
    let t = Instant::now();
    og.check(
        "set -e; mkdir -p /mnt/site; mount -o ro /dev/disk/by-id/virtio-ezsite /mnt/site; \
         cp -a /mnt/site/out/. /srv/ezimg/out/; \
         install -m 0644 /mnt/site/cluster.toml /etc/ezimg/serve/cluster.toml; \
         install -m 0600 /mnt/site/serve.env /etc/ezimg/serve/serve.env; \
         umount /mnt/site; chown -R ezimg-serve: /srv/ezimg; \
         systemctl start ezimg-serve; \
         for i in $(seq 100); do systemctl is-active -q ezimg-dnsmasq && break; sleep 0.2; done",
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\n{}",
            og.check("journalctl -b --no-pager -u ezimg-serve -u ezimg-dnsmasq | tail -n 40")
                .unwrap_or_default()
        )
    });
    let st = og
        .check(
            "systemctl is-active ezimg-serve ezimg-dnsmasq; \
             grep -c '^dhcp-host=' /srv/ezimg/out/pxe/dnsmasq.conf; \
             systemctl show -p User --value ezimg-serve",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        st.lines().collect::<Vec<_>>(),
        ["active", "active", "1", "ezimg-serve"],
        "{st}\n{}",
        og.check("journalctl -b --no-pager -u ezimg-serve -u ezimg-dnsmasq | tail -n 40")
            .unwrap_or_default()
    );
    eprintln!(
        "vm_ops: install server and dnsmasq up {:.1}s after the copy began",
        t.elapsed().as_secs_f64()
    );

    // Push as an operator would, from the laptop: to the cluster's registry_mirror (the ops
    // guest), trusting the cluster CA.
    let (ok, o) = ezimg(
        Some(&ns),
        &[
            "images",
            "push",
            "-c",
            s(&cluster),
            "--lock",
            s(&lock),
            "--cache-dir",
            s(&cache),
            "--ca-file",
            s(&ca),
        ],
    );
    let site_ref = format!(
        "{OPS_IP}/{}",
        ezimg::images::site_repository(&node_ref)
            .map(|(r, t)| format!("{r}:{t}"))
            .expect("site repository")
    );
    assert!(ok && o.contains(&site_ref), "ezimg images push:\n{o}");
    let t_site = t0.elapsed();
    eprintln!(
        "vm_ops: pushed {site_ref} ({digest}) at {:.0}s",
        t_site.as_secs_f64()
    );

    // worker-01 as its seed made it: its address on ens33, containerd reading hosts.toml.
    let addrs = g.check("ip -o -4 addr show").expect("addresses");
    assert!(
        addrs
            .lines()
            .any(|l| l.contains(" ens33 ") && l.contains(&format!("inet {NODE_IP}/24"))),
        "{addrs}"
    );
    let hosts_toml = format!("/etc/containerd/certs.d/{registry_host}/hosts.toml");
    let ht = g.check(&format!("cat {hosts_toml}")).expect("hosts.toml");
    assert!(
        ht.contains(&format!("[host.\"https://{OPS_IP}\"]"))
            && ht.contains("ca = \"/etc/kubernetes/pki/ca.crt\""),
        "{ht}"
    );
    let cfg = g
        .check("grep -r config_path /etc/containerd/config.toml")
        .expect("config_path");
    assert!(cfg.contains("/etc/containerd/certs.d"), "{cfg}");

    // No other route: the seed's gateway (the site's router) is not on this wire; take its
    // default route away so that nothing but the registry's subnet is routable.
    let before = g
        .check("ip -4 route show; ip -6 route show")
        .expect("routes");
    g.check("ip -4 route del default 2>/dev/null; ip -6 route del default 2>/dev/null; true")
        .expect("route del");
    let routes = g
        .check("ip -4 route show; ip -6 route show")
        .expect("routes");
    assert!(!routes.contains("default"), "{routes}");
    let (rc, o) = g
        .run("ip route get 192.0.2.1", Duration::from_secs(30))
        .expect("ip route get");
    assert!(rc != 0 && o.contains("unreachable"), "{rc} {o}");
    let (rc, o) = g
        .run(
            &format!("timeout 60 getent hosts {registry_host}"),
            Duration::from_secs(90),
        )
        .expect("getent");
    assert!(rc != 0, "{registry_host} resolves in the guest: {o}");
    eprintln!(
        "vm_ops: routes before: {}; after: {}; {registry_host} does not resolve",
        before.trim().replace('\n', " | "),
        routes.trim().replace('\n', " | ")
    );

    let registry_log = |og: &mut Guest| {
        og.check("journalctl -b --no-pager -o cat -u docker-registry")
            .expect("registry journal")
    };
    let pull = format!(
        "timeout 180 ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d {node_ref} \
         2>&1 >/dev/null"
    );
    // (1) No CA file (kubeadm join has not run): no pull.
    let (rc, o) = g
        .run(
            "rm -f /etc/kubernetes/pki/ca.crt; test ! -e /etc/kubernetes/pki/ca.crt",
            Duration::from_secs(30),
        )
        .expect("rm ca");
    assert_eq!(rc, 0, "{o}");
    let t = Instant::now();
    let (rc, no_ca) = g.run(&pull, Duration::from_secs(240)).expect("pull");
    eprintln!(
        "vm_ops: pull without the CA file: exit {rc} in {:.0}s: {}",
        t.elapsed().as_secs_f64(),
        tail(&no_ca, 3)
    );
    assert_ne!(rc, 0, "pulled without the cluster CA:\n{no_ca}");
    assert!(
        no_ca.contains("/etc/kubernetes/pki/ca.crt"),
        "the failure does not name the missing CA file:\n{no_ca}"
    );
    // (2) Another authority's CA: the registry's certificate does not verify.
    let other_ca = {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let k = KeyPair::generate().expect("key");
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.self_signed(&k).expect("ca").pem()
    };
    put_file(&mut g, "/etc/kubernetes/pki/ca.crt", other_ca.as_bytes());
    let t = Instant::now();
    let (rc, wrong_ca) = g.run(&pull, Duration::from_secs(240)).expect("pull");
    eprintln!(
        "vm_ops: pull with another CA: exit {rc} in {:.0}s: {}",
        t.elapsed().as_secs_f64(),
        tail(&wrong_ca, 3)
    );
    assert_ne!(rc, 0, "pulled trusting another CA:\n{wrong_ca}");
    assert!(
        wrong_ca.contains("x509: certificate signed by unknown authority")
            || wrong_ca.contains("failed to verify certificate"),
        "not a certificate verification failure:\n{wrong_ca}"
    );
    // containerd then falls back to the registry itself (hosts.toml names no `server`): that
    // fails too, there being no route and no name for it.
    assert!(
        wrong_ca.contains(&format!("host={registry_host}")),
        "no fallback to {registry_host} tried:\n{wrong_ca}"
    );
    let rlog = registry_log(&mut og);
    assert!(
        rlog.contains(&format!("TLS handshake error from {NODE_IP}:")),
        "the ops registry saw no refused handshake from {NODE_IP}:\n{rlog}"
    );
    let images = g
        .check(&format!("ctr -n k8s.io images ls -q name=={node_ref}"))
        .expect("ctr images ls");
    assert!(images.trim().is_empty(), "{images}");

    // (3) The cluster CA where kubeadm join writes it: the pull goes through.
    put_file(
        &mut g,
        "/etc/kubernetes/pki/ca.crt",
        &std::fs::read(&ca).expect("ca"),
    );
    let t = Instant::now();
    let (rc, pulled) = g.run(&pull, Duration::from_secs(240)).expect("pull");
    let pull_secs = t.elapsed().as_secs_f64();
    assert_eq!(
        rc,
        0,
        "ctr pull failed:\n{pulled}\nregistry log:\n{}",
        tail(&registry_log(&mut og), 30)
    );
    let ls = g
        .check(&format!("ctr -n k8s.io images ls name=={node_ref}"))
        .expect("ctr images ls");
    let got = ls
        .lines()
        .filter(|l| l.starts_with(&node_ref))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect::<Vec<_>>();
    assert_eq!(got, [digest.as_str()], "{ls}");
    // Unpacked by containerd: the layer's file is in a snapshot.
    let file = g
        .check(&format!(
            "d=$(mktemp -d); ctr -n k8s.io images mount {node_ref} $d >/dev/null && \
             cat $d/ezimg-test.txt; ctr -n k8s.io images unmount $d >/dev/null; rmdir $d"
        ))
        .expect("mount");
    // (The agent's `$(…)` drops the line end.)
    assert_eq!(file.trim_end(), "pulled through the ops registry");
    let rlog = registry_log(&mut og);
    let (site_repo, _) = ezimg::images::site_repository(&node_ref).expect("site repository");
    for what in [
        format!("/v2/{site_repo}/manifests/{TAG}?ns={registry_host}"),
        format!("/v2/{site_repo}/blobs/{}", sha(&layer)),
    ] {
        assert!(
            !log_lines(&rlog, NODE_IP, &what).is_empty(),
            "the ops registry's log has no `{what}` from {NODE_IP}:\n{rlog}"
        );
    }
    eprintln!("vm_ops: {NODE} pulled {node_ref} = {digest} through hosts.toml in {pull_secs:.1}s");
    drop(g);

    // The diskless guest: no kernel, no CD; its NIC's iPXE ROM boots first. Its only disk is
    // the root the base kernel mounts (the stand-in for an installer's in-memory root).
    let (image, ..) = harness::debian12_base(&harness::cache_dir());
    let pxe_dir = w.join("guests/pxe");
    std::fs::create_dir_all(&pxe_dir).expect("mkdir");
    let disk = pxe_dir.join("root.qcow2");
    ezimg::vm::overlay(&image, &disk, None).expect("overlay over the cached base");
    let mut spec = VmSpec::new("vmtest-pxe", &pxe_dir);
    spec.pxe_tap = Some(TapNic {
        ifname: "tap2".into(),
        mac: PXE_MAC.into(),
    });
    spec.netns = Some(ns.0.clone());
    spec.disks = vec![Disk::qcow2(&disk)];
    let mut vm = Vm::start(&spec).expect("qemu starts");
    let report = vm
        .wait_for(Duration::from_secs(600), |l| l.starts_with("PXE "))
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\nconsole head:\n{}\nops journal:\n{}",
                std::fs::read_to_string(vm.serial_log())
                    .unwrap_or_default()
                    .lines()
                    .take(60)
                    .collect::<Vec<_>>()
                    .join("\n"),
                og.check(
                    "journalctl -b --no-pager -o cat -u ezimg-serve -u ezimg-dnsmasq | tail -n 60"
                )
                .unwrap_or_default()
            )
        });
    let t_report = vm.elapsed();
    eprintln!("vm_ops: {report}");
    vm.wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));

    // The guest is the node: its MAC, its address from the ops node's DHCP, its own install
    // line with the operator's serve.env settings last.
    let field = |k: &str| {
        report
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {report}"))
    };
    assert_eq!(field("mac"), PXE_MAC, "{report}");
    let cmdline = report
        .split_once(" cmdline=")
        .map(|(_, c)| c)
        .expect("cmdline");
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let url = format!("http://{OPS_IP}:{SERVE_PORT}");
    let ks = format!("inst.ks={url}/ks/{PXE_NODE}");
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
            .any(|w| w.starts_with(&format!("ip={PXE_IP}::"))),
        "{cmdline}"
    );
    assert!(words.contains(&"console=ttyS0,115200"), "{cmdline}");
    assert_eq!(field("own"), "200", "{report}");
    assert_eq!(field("other"), "403", "{report}");
    // The chain as the ops node's journal has it, from this guest's address: the DHCPACK, the
    // entry point, its per-MAC script, the installer's kernel and initrd; then its own
    // kickstart, not another node's.
    let jlog = og
        .check("journalctl -b --no-pager -o cat -u ezimg-serve -u ezimg-dnsmasq")
        .expect("ops journal");
    assert!(
        jlog.lines()
            .any(|l| l.contains("DHCPACK(") && l.contains(&format!(" {PXE_IP} {PXE_MAC}"))),
        "the ops node's dnsmasq did not hand {PXE_MAC} its address:\n{jlog}"
    );
    let dashes = PXE_MAC.replace(':', "-");
    for (path, status) in [
        ("/boot.ipxe".to_string(), 200),
        (format!("/pxe/ipxe/{dashes}.ipxe"), 200),
        (format!("/pxe/{INSTALLER}/vmlinuz"), 200),
        (format!("/pxe/{INSTALLER}/initrd.img"), 200),
        (format!("/ks/{PXE_NODE}"), 200),
        (format!("/ks/{OTHER}"), 403),
    ] {
        let want = format!("{PXE_IP} \"GET {path}\" {status} ");
        assert!(
            jlog.contains(&want),
            "no `{want}` in the ops node's serve log:\n{jlog}"
        );
    }
    eprintln!(
        "vm_ops: bake {:.0}s, ops and worker ready at {:.0}s, image pushed at {:.0}s, the PXE \
         guest reported {:.0}s after QEMU started; total {:.0}s ({:.0}s beyond the bakes)",
        t_bake.as_secs_f64(),
        t_ready.as_secs_f64(),
        t_site.as_secs_f64(),
        t_report.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        (t0.elapsed() - t_bake).as_secs_f64()
    );
}

/// Write `bytes` to `path` in the guest over the command channel.
fn put_file(g: &mut Guest, path: &str, bytes: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    g.check(&format!(
        "mkdir -p \"$(dirname {path})\" && echo {b64} | base64 -d >{path}"
    ))
    .unwrap_or_else(|e| panic!("{e:#}"));
}

fn tail(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}
