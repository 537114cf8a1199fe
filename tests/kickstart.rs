//! Kickstart files: every node of the default cluster on el7 and el9 passes `ksvalidator`
//! (pykickstart, from scripts/test-deps.sh), secrets reach only the nodes that use them, and
//! the `%post` body does what the bundle contract says.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use ezimg::cluster::Os;
use ezimg::data::DataTree;
use ezimg::output::kickstart;
use support::seed_inputs::Fixture;
use support::{root, run, tool};

/// The `%post` section of a ks.cfg (from its header line to `%end`).
fn post_section(ks: &str) -> &str {
    let start = ks.find("\n%post").expect("a %post section");
    let end = ks[start..].find("\n%end").expect("%post ends") + start;
    &ks[start..end]
}

fn validate(ks: &str, version: &str, name: &str) {
    let Some(ksvalidator) = tool(&root().join(".venv/bin/ksvalidator"), "pykickstart") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.ks.cfg"));
    std::fs::write(&path, ks).expect("write ks");
    let out = run(Command::new(ksvalidator).args(["-v", version]).arg(&path));
    // ksvalidator reports deprecated commands on stdout and still exits 0: none is allowed.
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.to_lowercase().contains("deprecat"),
        "{name} ({version}): {text}"
    );
}

#[test]
fn every_node_validates_on_el7_and_el9() {
    let tree = DataTree::embedded();
    for (os, version) in [(Os::El7, "RHEL7"), (Os::El9, "RHEL9")] {
        let fx = Fixture::new(os, None);
        let mut with_secret = Vec::new();
        for input in fx.inputs() {
            let ks = kickstart::render(&tree, &input).expect("render");
            assert_eq!(
                ks,
                kickstart::render(&tree, &input).expect("render"),
                "byte-stable"
            );
            validate(&ks, version, &input.node.hostname);
            // EZIMG_DUMP=dir keeps the rendered files for a look.
            if let Some(d) = std::env::var_os("EZIMG_DUMP") {
                let p =
                    std::path::Path::new(&d).join(format!("{os}-{}.ks.cfg", input.node.hostname));
                std::fs::write(p, &ks).expect("dump");
            }
            let post = post_section(&ks);
            assert!(post.contains("set -euo pipefail") && !post.contains("set -x"));
            assert!(post.contains(&format!(
                "base64 -d >'/var/lib/ezimg/{}'",
                input.bundle.file_name
            )));
            assert!(post.contains("bash /var/lib/ezimg/bootstrap.sh"));
            for l in ks.lines() {
                let word = l.split(' ').next().unwrap_or("");
                if ["part", "logvol", "autopart"].contains(&word) {
                    assert!(!l.contains("swap"), "no swap: {l}");
                }
            }
            if os == Os::El7 {
                assert!(ks.contains("--ntpservers=ntp1.aliyun.com,time1.aliyun.com"));
            } else {
                assert!(ks.contains("timesource --ntp-server=ntp1.aliyun.com\n"));
            }
            let pass = fx
                .store
                .get("vrrp_auth_pass")
                .expect("store password")
                .to_string();
            if ks.contains(pass.as_str()) {
                with_secret.push(input.node.role.clone());
                assert!(
                    post.contains("umask 077"),
                    "secrets written under umask 077"
                );
            }
        }
        // Exactly the slb nodes carry the VRRP password.
        let slbs = fx.loaded.cluster.nodes_of("slb").count();
        assert_eq!(with_secret, vec!["slb".to_string(); slbs], "{os}");
    }
}

#[test]
fn bundle_url_puts_the_digest_in_post_and_embeds_nothing() {
    let tree = DataTree::embedded();
    for (os, version) in [(Os::El7, "RHEL7"), (Os::El9, "RHEL9")] {
        let fx = Fixture::new(os, Some("http://192.0.2.10/ezimg"));
        for input in fx.inputs() {
            let ks = kickstart::render(&tree, &input).expect("render");
            let post = post_section(&ks);
            let url = input.bundle.url.as_deref().expect("url");
            assert!(post.contains(&input.bundle.sha256), "sha256 in %post");
            assert!(post.contains(url));
            assert!(!post.contains("base64 -d"), "nothing embedded");
            validate(&ks, version, &input.node.hostname);
        }
    }
}

#[test]
fn debian_has_no_kickstart() {
    let tree = DataTree::embedded();
    let fx = Fixture::new(Os::Debian12, None);
    let inputs = fx.inputs();
    let err = kickstart::render(&tree, &inputs[0]).expect_err("debian12");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("el targets") && msg.contains("cloud-init"),
        "{msg}"
    );
}

#[test]
fn post_body_is_valid_bash_and_writes_secrets_verbatim() {
    let fx = Fixture::new(Os::El9, None);
    let inputs = fx.inputs();
    let mut input = inputs
        .into_iter()
        .find(|i| i.node.role == "slb")
        .expect("an slb node");
    let tricky = "it's $HOME `x` \\n \"q\"\nline2";
    input.secrets = BTreeMap::from([("vrrp_auth_pass".to_string(), tricky.to_string())]);
    let body = kickstart::post_body(&input).expect("post body");
    run(Command::new("bash").arg("-n").arg("-c").arg(&body));

    // Run only the secret part, redirected to a scratch directory.
    let dir = tempfile::tempdir().expect("tempdir");
    let start = body.find("umask 077\n").expect("umask");
    let end = body.find("umask 022\n").expect("umask back");
    let part = body[start..end]
        .replace("/etc/ezimg/secrets", &dir.path().display().to_string())
        .replace("chown root:root", "true");
    run(Command::new("bash").arg("-euc").arg(&part));
    let file = dir.path().join("vrrp_auth_pass");
    assert_eq!(std::fs::read_to_string(&file).expect("secret"), tricky);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A secret that would end the %post section early is refused without echoing it.
    input.secrets = BTreeMap::from([("vrrp_auth_pass".to_string(), "a\n%end".to_string())]);
    let err = format!("{:#}", kickstart::post_body(&input).expect_err("refused"));
    assert!(
        !err.contains("%end\n") && err.contains("starts with '%'"),
        "{err}"
    );
}

/// Disks by purpose: the installer sees, partitions and wipes the system disk only
/// (`ignoredisk --only-use`, `clearpart --drives`), on el7 and el9; the other disks are the
/// bundle's disks layer's, which the node's plan carries with their purposes.
#[test]
fn only_the_system_disk_is_the_installers() {
    use ezimg::cluster::{Disk, DiskPurpose};
    let tree = DataTree::embedded();
    let disk = |device: &str, purpose, fs: Option<&str>| Disk {
        device: device.into(),
        purpose,
        fs: fs.map(String::from),
    };
    for (os, version) in [(Os::El7, "RHEL7"), (Os::El9, "RHEL9")] {
        let mut fx = Fixture::new(os, None);
        // master-01: a declared system disk (virtio), etcd, data by id, keep.
        fx.loaded.cluster.nodes[3].disks = vec![
            disk("/dev/vda", DiskPurpose::System, None),
            disk("/dev/vdb", DiskPurpose::Etcd, None),
            disk(
                "/dev/disk/by-id/virtio-data1",
                DiskPurpose::Data,
                Some("ext4"),
            ),
            disk("/dev/vdd", DiskPurpose::Keep, None),
        ];
        fx.loaded.cluster.nodes[3].mac = Some("52:54:00:AB:CD:EF".into());
        // worker-01: no system disk declared, a data disk: the default system disk.
        fx.loaded.cluster.nodes[6].disks = vec![disk("/dev/sdb", DiskPurpose::Data, None)];
        // Plans as `build` makes them, from the cluster with these disks.
        let catalog = ezimg::plan::Catalog::load(&tree).expect("catalog");
        for i in [3, 6] {
            fx.plans[i] = ezimg::plan::plan_node(&catalog, &fx.loaded, &fx.loaded.cluster.nodes[i])
                .expect("plan");
        }
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEzimgTestKeyOnly0000000000000000000 ops@ezimg";
        fx.plans[3].params["ssh_authorized_keys"] = serde_json::json!([key]);
        let inputs = fx.inputs();

        let ks = kickstart::render(&tree, &inputs[3]).expect("render");
        for line in [
            "ignoredisk --only-use=vda\n",
            "clearpart --all --initlabel --drives=vda\n",
            "part pv.01 --size=1 --grow --ondisk=vda\n",
            "bootloader --location=mbr --timeout=3 --boot-drive=vda\n",
        ] {
            assert!(ks.contains(line), "{os}: no {line:?} in\n{ks}");
        }
        // No installer command names another disk, and none clears every disk.
        let commands = &ks[..ks.find("\n%post").expect("%post")];
        for l in commands.lines().filter(|l| !l.starts_with('#')) {
            for other in ["vdb", "vdd", "virtio-data1", "sda"] {
                assert!(!l.contains(other), "{os}: {l}");
            }
        }
        assert!(!ks.contains("clearpart --all --initlabel\n"), "{ks}");
        assert!(ks.contains("--device=52:54:00:ab:cd:ef "));
        if os == Os::El7 {
            assert!(ks.contains(&format!(
                "printf '%s\\n' '{key}' >>/root/.ssh/authorized_keys\n"
            )));
        }
        validate(&ks, version, &format!("with-disks-{os}"));

        let ks = kickstart::render(&tree, &inputs[6]).expect("render");
        assert!(ks.contains("ignoredisk --only-use=sda\n"), "{ks}");
        assert!(ks.contains("clearpart --all --initlabel --drives=sda\n"));
        validate(&ks, version, &format!("default-system-disk-{os}"));

        // The bundle's disks layer gets the node's disks, with their purposes.
        let disks = fx.plans[3]
            .applied()
            .find(|l| l.name == "disks")
            .expect("disks layer on a node with disks");
        let script = String::from_utf8_lossy(&disks.scripts[0].content).to_string();
        assert!(
            script.contains(
                "'system:/dev/vda' 'etcd:/dev/vdb:xfs' 'data:/dev/disk/by-id/virtio-data1:ext4' 'keep:/dev/vdd'"
            ),
            "{script}"
        );
        let seed = ezimg::output::cloudinit::render(&inputs[3]).expect("seed");
        assert!(seed.user_data.contains(key), "{}", seed.user_data);
    }
}

/// A valid OpenSSH key and a crypt(3) hash, made for these tests (`ssh-keygen`, `openssl passwd -6`).
const TEST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDsYb5da/VWG4JHE4zn8ilpal+KhvFBIvwX83O3R/i5f ops@ezimg-test";
const TEST_HASH: &str = "$6$ezimgsalt$Gl9WRPkncRpK.Q/PW.zeq5K/orKFgjdkd4FtOVjPctPM0C9jsHPFnxvRm9VCtZ6p/pdXvVjs6oGSE/7MXypkW0";

/// `[access]`: el9 installs root's key with `sshkey`, el7 in %post; a console password hash
/// replaces `rootpw --lock`; both validate.
#[test]
fn access_keys_and_password_hash() {
    let tree = DataTree::embedded();
    assert!(ezimg::cluster::check_ssh_key(TEST_KEY).is_ok());
    for (os, version) in [(Os::El7, "RHEL7"), (Os::El9, "RHEL9")] {
        let mut fx = Fixture::new(os, None);
        fx.loaded.cluster.access.ssh_authorized_keys = vec![TEST_KEY.to_string()];
        fx.loaded.cluster.access.root_password_hash = Some(TEST_HASH.to_string());
        let inputs = fx.inputs();
        let ks = kickstart::render(&tree, &inputs[1]).expect("render");
        assert!(
            ks.contains(&format!("rootpw --iscrypted {TEST_HASH}\n")),
            "{ks}"
        );
        assert!(!ks.contains("rootpw --lock"));
        let in_post = ks.contains(&format!(
            "printf '%s\\n' '{TEST_KEY}' >>/root/.ssh/authorized_keys"
        ));
        let sshkey = ks.contains(&format!("sshkey --username=root \"{TEST_KEY}\"\n"));
        assert_eq!((in_post, sshkey), (os == Os::El7, os == Os::El9), "{ks}");
        validate(&ks, version, &format!("access-{os}"));
    }
}

/// The installer's sources are URLs that exist without a mirrorlist: the CentOS vault
/// (7.9.2009) on el7, Rocky 9 BaseOS + AppStream on el9; a custom mirror follows its layout.
#[test]
fn install_source_is_a_url_without_mirrorlist() {
    use ezimg::cluster::MirrorLayout;
    let tree = DataTree::embedded();
    let cases = [
        (
            Os::El7,
            "RHEL7",
            "",
            MirrorLayout::Vault,
            vec![
                "url --url=https://vault.centos.org/7.9.2009/os/x86_64/",
                "repo --name=updates --baseurl=https://vault.centos.org/7.9.2009/updates/x86_64/",
                "repo --name=extras --baseurl=https://vault.centos.org/7.9.2009/extras/x86_64/",
            ],
        ),
        (
            Os::El9,
            "RHEL9",
            "",
            MirrorLayout::Vault,
            vec![
                "url --url=https://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/",
                "repo --name=AppStream --baseurl=https://dl.rockylinux.org/pub/rocky/9/AppStream/x86_64/os/",
            ],
        ),
        (
            Os::El7,
            "RHEL7",
            "http://192.0.2.10/mirrors/",
            MirrorLayout::Aliyun,
            vec![
                "url --url=http://192.0.2.10/mirrors/centos-vault/7.9.2009/os/x86_64/",
                "repo --name=updates --baseurl=http://192.0.2.10/mirrors/centos-vault/7.9.2009/updates/x86_64/",
                "repo --name=extras --baseurl=http://192.0.2.10/mirrors/centos-vault/7.9.2009/extras/x86_64/",
            ],
        ),
        (
            Os::El9,
            "RHEL9",
            "http://192.0.2.10",
            MirrorLayout::Vault,
            vec![
                "url --url=http://192.0.2.10/rocky/9/BaseOS/x86_64/os/",
                "repo --name=AppStream --baseurl=http://192.0.2.10/rocky/9/AppStream/x86_64/os/",
            ],
        ),
    ];
    for (os, version, mirror, layout, want) in cases {
        let mut fx = Fixture::new(os, None);
        fx.loaded.cluster.yum_mirror = mirror.into();
        fx.loaded.cluster.yum_mirror_layout = layout;
        let inputs = fx.inputs();
        let ks = kickstart::render(&tree, &inputs[0]).expect("render");
        let got: Vec<&str> = ks
            .lines()
            .filter(|l| l.starts_with("url ") || l.starts_with("repo "))
            .collect();
        assert_eq!(got, want, "{os} {mirror:?} {layout:?}");
        assert!(
            !ks.lines()
                .any(|l| !l.starts_with('#') && l.contains("mirrorlist")),
            "{ks}"
        );
        validate(&ks, version, &format!("repos-{os}-{layout:?}"));
    }
}
