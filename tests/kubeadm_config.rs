//! Every node's rendered kubeadm configuration, as the node will hold it (placeholders filled
//! from a real secret store), against kubeadm itself: the typed model always, and the real pinned
//! `kubeadm config validate` when that binary is in the verified cache (it cannot be downloaded
//! on this project's machines: the test then says it skipped that part).

mod support;

use std::process::Command;

use ezimg::cluster::{self, Os};
use ezimg::data::DataTree;
use ezimg::plan::{self, Catalog};
use ezimg::render::{SECRET_PREFIX, SECRET_SUFFIX};

/// (node, file, content with the node's secrets filled in) for every kubeadm file.
fn rendered(os: Os) -> (tempfile::TempDir, Vec<(String, String, String)>) {
    let tree = DataTree::embedded();
    let mut loaded = cluster::load(None).expect("default cluster");
    loaded.cluster.os = os;
    let catalog = Catalog::load(&tree).expect("catalog");
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = ezimg::secrets::open(
        &dir.path().join("cluster.secrets"),
        &loaded,
        ezimg::secrets::IfMissing::Create,
    )
    .expect("store");
    let mut out = Vec::new();
    for n in &loaded.cluster.nodes {
        let p = plan::plan_node(&catalog, &loaded, n).expect("plan");
        for f in p.applied().flat_map(|l| l.files.iter()) {
            // kubeadm.yaml, kubeadm-join-cp.yaml (not the kubelet patch or Calico's files).
            let name = f.dest.rsplit('/').next().unwrap_or("");
            if !f.dest.starts_with("/etc/kubernetes/ezimg/") || !name.starts_with("kubeadm") {
                continue;
            }
            let mut text = String::from_utf8(f.content.clone()).expect("UTF-8");
            for s in &f.secrets {
                let ph = format!("{SECRET_PREFIX}{s}{SECRET_SUFFIX}");
                text = text.replace(&ph, store.get(s).expect("secret in store").trim_end());
            }
            assert!(
                !text.contains(SECRET_PREFIX),
                "{}: unfilled placeholder",
                f.dest
            );
            out.push((n.hostname.clone(), f.dest.clone(), text));
        }
    }
    (dir, out)
}

#[test]
fn rendered_kubeadm_configs_hold_the_cluster_plan_and_pass_the_model() {
    let (_d, files) = rendered(Os::El7);
    let kubeadm_yaml = |node: &str| {
        files
            .iter()
            .find(|(n, f, _)| n == node && f == "/etc/kubernetes/ezimg/kubeadm.yaml")
            .map(|(_, _, t)| t.clone())
            .unwrap_or_else(|| panic!("{node} has no kubeadm.yaml"))
    };
    for (node, dest, text) in &files {
        let docs = ezimg::kubeadm::parse(text, dest).unwrap_or_else(|e| panic!("{node}: {e:#}"));
        ezimg::kubeadm::check(&docs, dest).unwrap_or_else(|e| panic!("{node}: {e:#}"));
    }
    let init = kubeadm_yaml("master-01");
    for want in [
        "kind: InitConfiguration",
        "kind: ClusterConfiguration",
        "kind: KubeletConfiguration",
        "kind: KubeProxyConfiguration",
        "controlPlaneEndpoint: \"192.168.2.100:6443\"",
        "podSubnet: 10.244.0.0/16",
        "serviceSubnet: 10.96.0.0/16",
        "kubernetesVersion: v1.29.3",
        "mode: ipvs",
        "cgroupDriver: systemd",
        "registry.cn-hangzhou.aliyuncs.com/google_containers",
    ] {
        assert!(init.contains(want), "master-01 lacks {want:?}:\n{init}");
    }
    for san in [
        "192.168.2.100",
        "192.168.2.221",
        "192.168.2.222",
        "192.168.2.223",
        "master-03",
    ] {
        assert!(init.contains(san), "certSANs lack {san}:\n{init}");
    }
    // The joins, read through the typed model.
    let join = |node: &str| {
        let text = kubeadm_yaml(node);
        let docs = ezimg::kubeadm::parse(&text, node).expect("parse");
        docs.into_iter()
            .find_map(|d| match d {
                ezimg::kubeadm::Document::Join(j) => Some(j),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{node}: no JoinConfiguration:\n{text}"))
    };
    let store_hash = {
        // The hash the node's file carries is the store's CA hash (filled in above).
        let text = kubeadm_yaml("worker-01");
        let i = text.find("sha256:").expect("a CA hash");
        text[i..i + 71].to_string()
    };
    for node in ["master-02", "master-03", "worker-01"] {
        let j = join(node);
        let bt = j
            .discovery
            .bootstrap_token
            .as_ref()
            .expect("bootstrap-token discovery");
        assert_eq!(
            bt.api_server_endpoint.as_deref(),
            Some("192.168.2.100:6443"),
            "{node}"
        );
        assert_eq!(
            bt.ca_cert_hashes.as_deref(),
            Some(&[store_hash.clone()][..]),
            "{node}"
        );
        assert!(
            ezimg::secrets::is_token(&bt.token),
            "{node}: token filled in"
        );
        let cp = j.control_plane.as_ref();
        assert_eq!(
            cp.is_some(),
            node.starts_with("master"),
            "{node}: controlPlane"
        );
        if let Some(cp) = cp {
            let ep = cp.local_api_endpoint.as_ref().expect("localAPIEndpoint");
            let want = if node == "master-02" {
                "192.168.2.222"
            } else {
                "192.168.2.223"
            };
            assert_eq!(ep.advertise_address.as_deref(), Some(want), "{node}");
            assert!(
                cp.certificate_key.is_none(),
                "{node}: PKI is pre-placed, no certificate key"
            );
        }
    }
}

#[test]
fn the_real_kubeadm_validates_every_rendered_config() {
    let lock = ezimg::artifact::Lock::embedded().expect("lock");
    let cache = ezimg::artifact::Cache::resolve(None).expect("cache");
    let pin = lock.find("kubeadm").expect("kubeadm pin");
    let Some(bin) = cache.lookup(pin) else {
        support::skip(
            "kubeadm_config::the_real_kubeadm_validates_every_rendered_config",
            &format!(
                "kubeadm {} ({}) is not in the cache {} (it cannot be downloaded here; on a \
                 connected machine: `ezimg fetch kubeadm`, then this test runs `kubeadm config \
                 validate` on every rendered file)",
                pin.version,
                pin.file,
                cache.root().display()
            ),
        );
        return;
    };
    let (d, files) = rendered(Os::El7);
    let exe = d.path().join("kubeadm");
    std::fs::copy(&bin, &exe).expect("copy kubeadm");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for (node, dest, text) in files {
        let f = d.path().join(format!("{node}.yaml"));
        std::fs::write(&f, &text).expect("write");
        let o = Command::new(&exe)
            .args(["config", "validate", "--config"])
            .arg(&f)
            .output()
            .expect("kubeadm");
        assert!(
            o.status.success(),
            "kubeadm config validate {node} {dest}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
