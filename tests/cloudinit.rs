//! cloud-init NoCloud seeds: every node's user-data passes `cloud-init schema` (Debian 12's
//! cloud-init, unpacked by scripts/test-deps.sh, never installed), network-config goes through
//! cloud-init's own network_state parser and renderers, PyYAML reads every file back as the
//! values ezimg meant, and the FAT and ISO seed images read back with blkid, mtools and isoinfo.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ezimg::cluster::Os;
use ezimg::output::{NodeInput, cloudinit, seed_fat, seed_iso};
use support::seed_inputs::Fixture;
use support::{host_tool, root, run, tool};

/// Debian's cloud-init as the venv's Python sees it, or None (skipped, or failed under CI).
fn cloud_init() -> Option<(PathBuf, PathBuf)> {
    let python = tool(&root().join(".venv/bin/python"), "the test venv")?;
    let pkg = tool(
        &root().join(".venv/cloud-init/usr/lib/python3/dist-packages/cloudinit"),
        "cloud-init unpacked from Debian",
    )?;
    Some((python, pkg.parent().expect("dist-packages").to_path_buf()))
}

/// Reads every node folder of `dir` back with PyYAML and compares to the `*.json` ezimg meant;
/// runs network-config through cloud-init's parser and ENI/networkd renderers.
const CHECK_PY: &str = r#"
import json, os, sys, yaml
from cloudinit.net import network_state, eni, networkd
out = {}
for node in sorted(os.listdir(sys.argv[1])):
    d = os.path.join(sys.argv[1], node)
    for name in ("user-data", "meta-data", "network-config"):
        text = open(os.path.join(d, name)).read()
        got = yaml.safe_load(text)
        want = json.load(open(os.path.join(d, name + ".json")))
        assert got == want, (node, name, got, want)
    cfg = yaml.safe_load(open(os.path.join(d, "network-config")))["network"]
    ns = network_state.parse_net_config_data(cfg, skip_broken=False)
    ifaces = [dict(i) for i in ns.iter_interfaces() if i["type"] == "physical"]
    enitext = eni.Renderer({})._render_interfaces(ns)
    nd = networkd.Renderer({})._render_content(ns)
    out[node] = {"ifaces": [{"name": i["name"], "mac": i.get("mac_address"),
                             "subnets": i["subnets"]} for i in ifaces],
                 "eni": enitext, "networkd": nd}
print(json.dumps(out))
"#;

fn write_node_dir(dir: &Path, input: &NodeInput) -> cloudinit::SeedFiles {
    let seed = cloudinit::render(input).expect("render");
    let d = dir.join(&input.node.hostname);
    std::fs::create_dir_all(&d).expect("mkdir");
    for (name, content) in seed.files() {
        std::fs::write(d.join(name), content).expect("write");
    }
    let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("json");
    std::fs::write(
        d.join("user-data.json"),
        json(cloudinit::user_data(input).expect("ud")),
    )
    .expect("write");
    std::fs::write(d.join("meta-data.json"), json(cloudinit::meta_data(input))).expect("write");
    std::fs::write(
        d.join("network-config.json"),
        json(cloudinit::network_config(input).expect("nc")),
    )
    .expect("write");
    seed
}

#[test]
fn seeds_validate_with_cloud_init() {
    let Some((python, pythonpath)) = cloud_init() else {
        return;
    };
    for os in [Os::El7, Os::Debian12] {
        let mut fx = Fixture::new(os, None);
        // One node with a MAC, to cover match-by-MAC + set-name.
        fx.loaded.cluster.nodes[1].mac = Some("52:54:00:AA:BB:01".into());
        // Operators' access: root's key and a console password hash (`[access]`).
        fx.loaded.cluster.access.ssh_authorized_keys = vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDsYb5da/VWG4JHE4zn8ilpal+KhvFBIvwX83O3R/i5f ops@ezimg-test".into(),
        ];
        fx.loaded.cluster.access.root_password_hash = Some(
            "$6$ezimgsalt$Gl9WRPkncRpK.Q/PW.zeq5K/orKFgjdkd4FtOVjPctPM0C9jsHPFnxvRm9VCtZ6p/pdXvVjs6oGSE/7MXypkW0".into(),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let inputs = fx.inputs();
        for input in &inputs {
            let seed = write_node_dir(dir.path(), input);
            dump(&dir.path().join(&input.node.hostname).join("user-data"));
            assert_eq!(
                seed,
                cloudinit::render(input).expect("render"),
                "byte-stable"
            );
            assert!(seed.user_data.starts_with("#cloud-config\n"));
            assert!(seed.user_data.is_ascii(), "ASCII only");
            let ud = dir.path().join(&input.node.hostname).join("user-data");
            let out = run(Command::new(&python)
                .arg(root().join(".venv/cloud-init/usr/bin/cloud-init"))
                .args(["schema", "--config-file"])
                .arg(&ud)
                .env("PYTHONPATH", &pythonpath));
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("Valid cloud-config"), "{said}");
            assert!(
                seed.user_data.contains("ops@ezimg-test") && seed.user_data.contains("chpasswd")
            );
            assert!(
                seed.user_data.contains("ssh_pwauth: false"),
                "SSH stays key-only"
            );
        }
        let out = run(Command::new(&python)
            .args(["-c", CHECK_PY])
            .arg(dir.path())
            .env("PYTHONPATH", &pythonpath));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("checker output");
        for input in &inputs {
            let n = &got[&input.node.hostname];
            let iface = &n["ifaces"][0];
            assert_eq!(iface["name"], "ens33", "{n}");
            let sub = &iface["subnets"][0];
            assert_eq!(sub["address"], input.node.ip.to_string(), "{n}");
            assert_eq!(sub["prefix"], 24);
            assert_eq!(sub["gateway"], "192.168.2.2");
            assert_eq!(sub["dns_nameservers"][0], "192.168.2.2");
            let eni = n["eni"].as_str().expect("eni");
            assert!(
                eni.contains(&format!("address {}/24", input.node.ip)),
                "{eni}"
            );
            assert!(eni.contains("gateway 192.168.2.2"), "{eni}");
            if let Some(mac) = &input.node.mac {
                assert_eq!(iface["mac"], mac.to_lowercase());
            }
        }
    }
}

#[test]
fn contract_files_and_secrets() {
    let fx = Fixture::new(Os::El7, None);
    let pass = fx
        .store
        .get("vrrp_auth_pass")
        .expect("store password")
        .to_string();
    let mut with_secret = Vec::new();
    for input in fx.inputs() {
        let ud = cloudinit::user_data(&input).expect("user-data");
        let files = ud["write_files"].as_array().expect("write_files");
        let by_path = |p: &str| files.iter().find(|f| f["path"] == p);
        let bundle =
            by_path(&format!("/var/lib/ezimg/{}", input.bundle.file_name)).expect("bundle");
        assert_eq!(bundle["encoding"], "b64");
        let boot = by_path("/var/lib/ezimg/bootstrap.sh").expect("bootstrap");
        assert_eq!(boot["permissions"], "0700");
        assert_eq!(
            ud["runcmd"],
            serde_json::json!([["bash", "/var/lib/ezimg/bootstrap.sh"]])
        );
        assert_eq!(ud["ssh_pwauth"], false);
        let seed = cloudinit::render(&input).expect("render");
        if let Some(s) = by_path("/etc/ezimg/secrets/vrrp_auth_pass") {
            assert_eq!(s["permissions"], "0600");
            assert_eq!(s["content"], pass.as_str());
            with_secret.push(input.node.role.clone());
        }
        assert_eq!(
            seed.user_data.contains(pass.as_str()),
            input.node.role == "slb",
            "{}",
            input.node.hostname
        );
        assert!(!seed.meta_data.contains(pass.as_str()));
        assert!(!seed.network_config.contains(pass.as_str()));
    }
    assert_eq!(with_secret, vec!["slb".to_string(); 2]);

    // With a bundle URL nothing is embedded, and the bootstrap checks the digest.
    let fx = Fixture::new(Os::El7, Some("http://192.0.2.10/ezimg"));
    for input in fx.inputs() {
        let seed = cloudinit::render(&input).expect("render");
        assert!(!seed.user_data.contains("encoding: b64"));
        assert!(seed.user_data.contains(&input.bundle.sha256));
    }
}

#[test]
fn instance_id_follows_the_bundle() {
    let fx = Fixture::new(Os::El7, None);
    let inputs = fx.inputs();
    let md = cloudinit::meta_data(&inputs[0]);
    assert_eq!(md["local-hostname"], "ops");
    let id = md["instance-id"].as_str().expect("id").to_string();
    assert!(id.starts_with("ezimg-") && id.len() == 22, "{id}");
    let ids: std::collections::BTreeSet<String> = inputs
        .iter()
        .map(|i| {
            cloudinit::meta_data(i)["instance-id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), inputs.len(), "one instance-id per node");
    let mut other = inputs[0].bundle.clone();
    other.sha256 = "0".repeat(64);
    let input = NodeInput {
        cluster: inputs[0].cluster,
        node: inputs[0].node,
        plan: inputs[0].plan,
        bundle: &other,
        secrets: inputs[0].secrets.clone(),
        artifacts_from: None,
    };
    assert_ne!(
        cloudinit::meta_data(&input)["instance-id"],
        md["instance-id"]
    );
}

fn blkid(img: &Path, tag: &str) -> String {
    let Some(blkid) = host_tool("blkid") else {
        return String::new();
    };
    // -p probes the file itself, not the (absent) blkid cache.
    let out = run(Command::new(blkid)
        .args(["-p", "-o", "value", "-s", tag])
        .arg(img));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// EZIMG_DUMP=dir keeps a copy of `p` for a look.
fn dump(p: &Path) {
    if let Some(d) = std::env::var_os("EZIMG_DUMP") {
        let name = p.file_name().expect("file name");
        std::fs::copy(p, Path::new(&d).join(name)).expect("dump");
    }
}

fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    let fx = Fixture::new(Os::El7, None);
    let inputs = fx.inputs();
    let seed = cloudinit::render(&inputs[1]).expect("render");
    seed.files().iter().map(|(n, c)| (*n, c.to_vec())).collect()
}

#[test]
fn fat_seed_reads_back() {
    let owned = sample_files();
    let files: Vec<(&str, &[u8])> = owned.iter().map(|(n, c)| (*n, c.as_slice())).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    seed_fat::write(&files, &a).expect("write a");
    seed_fat::write(&files, &b).expect("write b");
    dump(&a);
    assert_eq!(
        std::fs::read(&a).expect("a"),
        std::fs::read(&b).expect("b"),
        "reproducible"
    );
    if host_tool("blkid").is_some() {
        assert_eq!(blkid(&a, "LABEL"), "CIDATA");
        assert_eq!(blkid(&a, "TYPE"), "vfat");
    }
    if let Some(fsck) = host_tool("fsck.vfat") {
        run(Command::new(fsck).arg("-n").arg(&a));
    }
    if let (Some(mdir), Some(mtype)) = (host_tool("mdir"), host_tool("mtype")) {
        let out = run(Command::new(mdir).args(["-b", "-i"]).arg(&a).arg("::"));
        let listing = String::from_utf8_lossy(&out.stdout);
        for (name, content) in &files {
            assert!(listing.contains(&format!("::/{name}")), "{listing}");
            let out = run(Command::new(&mtype)
                .args(["-i"])
                .arg(&a)
                .arg(format!("::{name}")));
            assert_eq!(&out.stdout, content, "{name}");
        }
    }
    // A large embedded bundle makes the image grow, not fail.
    let big: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let with_big = [
        ("user-data", big.as_slice()),
        ("meta-data", b"x".as_slice()),
    ];
    let img = seed_fat::image(&with_big).expect("big image");
    assert!(img.len() > big.len());
}

#[test]
fn iso_seed_reads_back() {
    let owned = sample_files();
    let files: Vec<(&str, &[u8])> = owned.iter().map(|(n, c)| (*n, c.as_slice())).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.iso");
    let b = dir.path().join("b.iso");
    seed_iso::write(&files, &a).expect("write a");
    seed_iso::write(&files, &b).expect("write b");
    dump(&a);
    assert_eq!(
        std::fs::read(&a).expect("a"),
        std::fs::read(&b).expect("b"),
        "reproducible"
    );
    if host_tool("blkid").is_some() {
        assert_eq!(blkid(&a, "LABEL"), "cidata");
        assert_eq!(blkid(&a, "TYPE"), "iso9660");
    }
    let Some(isoinfo) = host_tool("isoinfo") else {
        return;
    };
    let out = run(Command::new(&isoinfo).args(["-d", "-i"]).arg(&a));
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("Volume id: cidata"), "{info}");
    assert!(info.contains("Rock Ridge signatures version"), "{info}");
    assert!(info.contains("Joliet"), "{info}");
    for tree in ["-R", "-J"] {
        for (name, content) in &files {
            let out = run(Command::new(&isoinfo)
                .args([tree, "-i"])
                .arg(&a)
                .args(["-x", &format!("/{name}")]));
            assert_eq!(&out.stdout, content, "{tree} {name}");
        }
    }
}

/// A seed for the role image its build baked leaves the bundle out (the image holds it where
/// the bootstrap looks); without the image, the bootstrap says which image it goes with.
#[test]
fn a_seed_for_the_baked_image_does_not_carry_the_bundle() {
    let fx = Fixture::new(Os::Debian12, None);
    let inputs = fx.inputs();
    let bundle_path = format!("/var/lib/ezimg/{}", inputs[0].bundle.file_name);
    let paths = |ud: &serde_json::Value| -> Vec<String> {
        ud["write_files"]
            .as_array()
            .expect("write_files")
            .iter()
            .map(|f| f["path"].as_str().expect("path").to_string())
            .collect()
    };
    let embedded = cloudinit::user_data(&inputs[0]).expect("user-data");
    assert!(paths(&embedded).contains(&bundle_path));
    let mut baked = inputs[0].bundle.clone();
    baked.in_image = true;
    let input = NodeInput {
        cluster: inputs[0].cluster,
        node: inputs[0].node,
        plan: inputs[0].plan,
        bundle: &baked,
        secrets: inputs[0].secrets.clone(),
        artifacts_from: None,
    };
    let ud = cloudinit::user_data(&input).expect("user-data");
    assert!(!paths(&ud).contains(&bundle_path), "{ud}");
    let seed = cloudinit::render(&input).expect("seed");
    let full = cloudinit::render(&inputs[0]).expect("seed");
    assert!(seed.user_data.len() < full.user_data.len() / 2);
    let boot = ezimg::bundle::bootstrap_script(&input);
    assert!(
        boot.contains(&format!(
            "ezimg-{}.qcow2, which holds the bundle",
            inputs[0].node.role
        )),
        "{boot}"
    );
}
