//! A worker guest's containerd pulls through `hosts.toml` from the ops registry, with no other
//! route (issue 10, item 3).
//!
//! - The worker role is baked with vm_scenarios' very inputs (`harness::scenario_inputs`, the
//!   test data dir), so the bake is a cache hit for vm_scenarios later in the suite; a second
//!   `build` from a fresh work dir (new SSH key, new secret store) is checked to be a cache hit
//!   with the same key.
//! - In a private network namespace (a bridge holding the ops node's address, the guest's tap;
//!   no other link, no default route) the real `docker-registry` runs with the ops node's
//!   rendered registry config (`registry = "distribution"`) and the certificate the cluster's
//!   secret store issued. A small OCI image the test makes is pulled by `ezimg images pull` from
//!   a scratch registry on 127.0.0.1 and pushed with `ezimg images push` as an operator would:
//!   to the cluster's `registry_mirror`, under the name kubeadm's images have
//!   (`kubernetes.image_repository`).
//! - worker-01 boots from the baked image with its own seed, its NIC on the tap (the seed
//!   matches it by MAC). The cluster CA goes where `kubeadm join` writes it; `ctr images pull
//!   --hosts-dir /etc/containerd/certs.d` gets the image with the pushed digest, and the
//!   registry's log shows the guest asking. Before that: with no CA file, and with another
//!   authority's CA, the pull fails (the latter on certificate verification).
//!
//! Only with `EZIMG_VM_TESTS=1` (root, QEMU, `ip netns`); tools from scripts/vm-deps.sh and
//! scripts/test-deps.sh (docker-registry).

#[path = "../vm-tests/harness.rs"]
mod harness;
#[path = "../vm-tests/netns.rs"]
mod netns;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use harness::{BootOpts, Guest, NetnsTap};
use netns::{Netns, Proc, ip};
use sha2::{Digest as _, Sha256};

const NODE: &str = "worker-01";
const NODE_LAST: u8 = 231;
const NODE_IP: &str = "192.168.2.231";
/// The default cluster's `registry_mirror` (its ops node's address).
const OPS_IP: &str = "192.168.2.201";
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
        "vm_registry: {path} ({what}) is missing: run scripts/vm-deps.sh and scripts/test-deps.sh"
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

/// `ezimg build --role worker --format FORMATS` with vm_scenarios' inputs in `work`:
/// (output dir, log, seconds, the bake's cache key).
fn bake_worker(work: &Path, formats: &str) -> (PathBuf, String, f64, String) {
    let data = harness::test_data_dir(work);
    let (cluster, mut args) = harness::scenario_inputs(work);
    args.splice(
        0..0,
        ["--role", "worker", "--format", formats].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = work.join("out");
    let (ok, log, secs) = harness::ezimg_build(Some(&data), &cluster, &out, &args);
    assert!(ok, "ezimg build:\n{log}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("worker/ezimg-worker.qcow2.json")).expect("bake manifest"),
    )
    .expect("manifest json");
    let key = manifest["key"].as_str().expect("bake key").to_string();
    (out, log, secs, key)
}

/// The ops node's registry files (`/etc/ezimg/registry/*`) as the registry layer renders them
/// for `cluster` with `registry = "distribution"`, secrets filled from the cluster's store, the
/// paths moved under `root` (storage in `storage`). The cluster file itself stays as
/// vm_scenarios has it (no ops node: the bake key stays the same); the ops node and its role
/// parameter are added in memory only, which leaves the certificate's names as the store has them.
fn ops_registry_config(data: &Path, cluster: &Path, root: &Path, storage: &Path) -> PathBuf {
    use ezimg::render::secret_placeholder;
    let mut loaded = ezimg::cluster::load(Some(cluster)).expect("cluster");
    let store_dir = cluster.with_file_name("cluster.secrets");
    let (store, _) = ezimg::secrets::open(&store_dir, &loaded, ezimg::secrets::IfMissing::Fail)
        .expect("the cluster's secret store");
    assert!(
        !store.registry_cert_unsaved(),
        "the store holds no registry certificate for this cluster"
    );
    loaded
        .cluster
        .roles
        .entry("ops".to_string())
        .or_default()
        .insert(
            "registry".into(),
            toml::Value::String("distribution".into()),
        );
    let mut ops = loaded
        .cluster
        .nodes
        .iter()
        .find(|n| n.hostname == NODE)
        .expect("worker node")
        .clone();
    ops.hostname = "ops".into();
    ops.role = "ops".into();
    ops.ip = OPS_IP.parse().expect("ip");
    ops.mac = None;
    let tree = ezimg::data::DataTree::load(Some(data)).expect("data tree");
    let catalog = ezimg::plan::Catalog::load(&tree).expect("catalog");
    let plan = ezimg::plan::plan_node(&catalog, &loaded, &ops).expect("ops plan");
    let secrets = ezimg::secrets::node_secrets(&store, &plan).expect("ops secrets");
    std::fs::create_dir_all(root).expect("mkdir");
    let mut n = 0;
    for f in plan.applied().flat_map(|l| l.files.iter()) {
        let Some(rel) = f.dest.strip_prefix("/etc/ezimg/registry/") else {
            continue;
        };
        let mut t = String::from_utf8(f.content.clone()).expect("utf-8");
        for (name, v) in &secrets {
            t = t.replace(&secret_placeholder(name), v);
        }
        let t = t
            .replace("/etc/ezimg/registry/", &format!("{}/", root.display()))
            .replace(
                "/run/credentials/docker-registry.service/",
                &format!("{}/", root.display()),
            )
            .replace("/var/lib/docker-registry", s(storage));
        std::fs::write(root.join(rel), t).expect("write");
        n += 1;
    }
    assert_eq!(n, 3, "the registry layer's config, certificate and key");
    // The certificate is the store's (the template adds a line end).
    assert_eq!(
        std::fs::read_to_string(root.join("registry.crt"))
            .expect("crt")
            .trim_end(),
        std::fs::read_to_string(store_dir.join("pki/registry.crt"))
            .expect("store crt")
            .trim_end(),
    );
    root.join("config.yml")
}

/// Lines of the registry's log that show `who` asking for `what`.
fn log_lines<'a>(log: &'a str, who: &str, what: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(who) && l.contains(what))
        .collect()
}

#[test]
#[cfg_attr(
    not(ezimg_vm_tests),
    ignore = "VM test: set EZIMG_VM_TESTS=1 to run it (root, QEMU, ip netns, minutes)"
)]
fn a_worker_pulls_through_hosts_toml_from_the_ops_registry_with_no_other_route() {
    harness::gate(
        "vm_registry",
        "boot a worker that pulls from the ops registry",
    );
    for (what, path) in [
        ("iproute2", "/usr/sbin/ip"),
        ("docker-registry", "/usr/bin/docker-registry"),
        ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ] {
        if need(what, path).is_none() {
            return;
        }
    }
    let t0 = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();

    // The worker image and worker-01's seed, from vm_scenarios' inputs.
    let (out, log, bake_secs, key) = bake_worker(w, "qcow2,cloud-init");
    eprintln!(
        "vm_registry: worker image and seed built in {bake_secs:.0}s (bake key {key}):\n{}",
        log.lines()
            .filter(|l| l.contains("qcow2 worker"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The key holds no per-run input (SSH key, secret store, work dir): a fresh work dir, as
    // vm_scenarios has, finds the same image.
    let again = tempfile::tempdir().expect("tempdir");
    let (_, log2, secs2, key2) = bake_worker(again.path(), "qcow2");
    assert!(log2.contains("qcow2 worker: cache hit"), "{log2}");
    assert_eq!(key2, key, "the bake key depends on the work dir");
    eprintln!("vm_registry: the same inputs from a fresh work dir: cache hit in {secs2:.1}s");
    drop(again);
    let t_bake = t0.elapsed();

    let cluster = w.join("cluster.toml");
    let data = w.join("data");
    let loaded = ezimg::cluster::load(Some(&cluster)).expect("cluster");
    assert_eq!(loaded.cluster.registry_mirror, OPS_IP);
    let image_repository = loaded.cluster.kubernetes.image_repository.clone();
    let registry_host = ezimg::images::registry_of(&format!("{image_repository}/x:0"));
    let node_ref = format!("{image_repository}/{REPO}:{TAG}");
    let store = w.join("cluster.secrets");
    let ca = store.join("pki/ca.crt");

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

    // The site: a namespace with only the bridge and the guest's tap.
    let ns = Netns::new("ezreg", &format!("{OPS_IP}/24"));
    let links = ip(&["-n", &ns.0, "-o", "link", "show"]);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    assert_eq!(names, ["lo", "br0", "tap0"], "{links}");
    let routes = ip(&["-n", &ns.0, "route", "show", "table", "all"]);
    assert!(!routes.contains("default"), "{routes}");

    // The ops registry: the ops node's rendered config, the store's certificate, the real
    // docker-registry, on the ops node's address.
    let config_yml = ops_registry_config(&data, &cluster, &w.join("ops"), &w.join("storage"));
    let text = std::fs::read_to_string(&config_yml).expect("config.yml");
    assert!(text.contains("addr: \":443\""), "{text}");
    let mut reg_cmd = ns.exec(Path::new("/usr/bin/docker-registry"));
    reg_cmd.arg("serve").arg(&config_yml);
    let mut registry = Proc::spawn(reg_cmd, w.join("ops-registry.log"));
    registry.wait_log("listening on", "the ops registry");

    // Push as an operator would: to the cluster's registry_mirror, trusting the cluster CA.
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
        "vm_registry: pushed {site_ref} ({digest}) at {:.0}s",
        t_site.as_secs_f64()
    );

    // worker-01 from its image and seed, its NIC on the tap with the MAC its seed matches.
    let seed = harness::seed_dir(&out, "worker", NODE);
    let netcfg = std::fs::read_to_string(seed.join("network-config")).expect("network-config");
    let mac = harness::mac_of(NODE_LAST);
    assert!(netcfg.contains(&mac), "{netcfg}");
    let opts = BootOpts {
        mem_mib: 1024,
        cpus: 1,
        tap: Some(NetnsTap {
            netns: ns.0.clone(),
            ifname: "tap0".into(),
            mac,
        }),
        ..BootOpts::default()
    };
    let mut g = Guest::boot_with(
        &w.join("guests"),
        NODE,
        &out.join("worker/ezimg-worker.qcow2"),
        &seed,
        None,
        &opts,
    )
    .expect("boot worker-01");
    let status = g.wait_ready(Duration::from_secs(1500)).unwrap_or_else(|e| {
        panic!(
            "{e:#}\nconsole tail:\n{}",
            tail(
                &std::fs::read_to_string(g.vm.serial_log()).unwrap_or_default(),
                60
            )
        )
    });
    let t_ready = g.vm.elapsed();
    eprintln!(
        "vm_registry: {NODE} ready ({status}) {:.0}s after QEMU started ({})",
        t_ready.as_secs_f64(),
        g.vm.accel
    );
    assert!(status.contains("done"), "cloud-init: {status}");

    // The node as its seed made it: its address on ens33, containerd reading hosts.toml.
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
        "vm_registry: routes before: {}; after: {}; {registry_host} does not resolve",
        before.trim().replace('\n', " | "),
        routes.trim().replace('\n', " | ")
    );

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
        "vm_registry: pull without the CA file: exit {rc} in {:.0}s: {}",
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
        "vm_registry: pull with another CA: exit {rc} in {:.0}s: {}",
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
    let rlog = registry.log();
    assert!(
        rlog.contains(&format!("TLS handshake error from {NODE_IP}:")),
        "the registry saw no refused handshake from {NODE_IP}:\n{rlog}"
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
        tail(&registry.log(), 30)
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
    let rlog = registry.log();
    let (site_repo, _) = ezimg::images::site_repository(&node_ref).expect("site repository");
    for what in [
        format!("/v2/{site_repo}/manifests/{TAG}?ns={registry_host}"),
        format!("/v2/{site_repo}/blobs/{}", sha(&layer)),
    ] {
        assert!(
            !log_lines(&rlog, NODE_IP, &what).is_empty(),
            "the registry's log has no `{what}` from {NODE_IP}:\n{rlog}"
        );
    }
    eprintln!(
        "vm_registry: {NODE} pulled {node_ref} = {digest} through hosts.toml in {pull_secs:.1}s"
    );
    eprintln!(
        "vm_registry: bake {:.0}s, site up {:.0}s, guest ready {:.0}s after boot, total {:.0}s \
         ({:.0}s beyond the bake)",
        t_bake.as_secs_f64(),
        (t_site - t_bake).as_secs_f64(),
        t_ready.as_secs_f64(),
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
