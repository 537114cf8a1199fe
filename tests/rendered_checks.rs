//! Checks on what the layers render: every role plans on every OS, the rendered configs pass
//! their own tools (`keepalived -t`, `bash -n`, `shellcheck`, `systemd-analyze verify`), and the
//! values the seed guide fixes (sysctl keys, apiserver upstream, VRRP roles) come out right.
//! A check whose tool is missing prints why and returns.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ezimg::cluster::{self, Loaded, Os, VrrpMode};
use ezimg::data::DataTree;
use ezimg::plan::{self, Catalog, NodePlan};
use ezimg::render::secret_placeholder;

const KEEPALIVED: &str = "/usr/sbin/keepalived";
const KEEPALIVED_CONF: &str = "/ezops/service/keepalived/etc/keepalived/keepalived.conf";
const CHECK_DIR: &str = "/ezops/service/keepalived/etc/keepalived/";
const APISERVER_CONF: &str = "/ezops/service/nginx/conf/tcp/apiserver.conf";
const STATUS_CONF: &str = "/ezops/service/nginx/conf/vhost/status.conf";
const HAPROXY_CFG: &str = "/etc/haproxy/haproxy.cfg";
const SYSCTL_CONF: &str = "/etc/sysctl.d/user.conf";

/// The seed's 内核调优 block (seed 000), verbatim; `seed_sysctl_block_matches_the_seed` keeps it
/// equal to the seed file when that is at hand.
const SEED_SYSCTL: &str = "\
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
fs.may_detach_mounts = 1
vm.overcommit_memory=1
vm.panic_on_oom=0
fs.inotify.max_user_watches=89100
fs.file-max=52706963
fs.nr_open=52706963
net.netfilter.nf_conntrack_max=2310720
net.ipv4.tcp_keepalive_time = 600
net.ipv4.tcp_keepalive_probes = 3
net.ipv4.tcp_keepalive_intvl =15
net.ipv4.tcp_max_tw_buckets = 36000
net.ipv4.tcp_tw_reuse = 1
net.ipv4.tcp_max_orphans = 327680
net.ipv4.tcp_orphan_retries = 3
net.ipv4.tcp_syncookies = 1
net.ipv4.tcp_max_syn_backlog = 16384
net.ipv4.ip_conntrack_max = 65536
net.ipv4.tcp_timestamps = 0
net.core.somaxconn = 16384
";

/// Role parameter variants every check runs over (`[roles.slb]` overrides).
const SLB_VARIANTS: [&[(&str, &str)]; 4] = [
    &[],
    &[("nginx_source", "distro"), ("keepalived_source", "distro")],
    &[("lb", "haproxy")],
    &[("lb", "haproxy"), ("keepalived_source", "distro")],
];

fn variant_name(variant: &[(&str, &str)]) -> String {
    if variant.is_empty() {
        return "default".into();
    }
    variant
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn cluster_for(os: Os, slb: &[(&str, &str)]) -> Loaded {
    let mut loaded = cluster::load(None).expect("embedded default cluster");
    loaded.cluster.os = os;
    if !slb.is_empty() {
        let table: toml::Table = slb
            .iter()
            .map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string())))
            .collect();
        loaded.cluster.roles.insert("slb".into(), table);
    }
    loaded
}

/// `loaded` with the ops role's opt-in layers on (registry, install server), so their files are
/// checked too. The install server's binary, cluster file and lock are supplied by the build
/// (`supplied::fill`), not by the plan these checks read.
fn with_ops_registry(mut loaded: Loaded) -> Loaded {
    let mut t = toml::Table::new();
    t.insert(
        "registry".into(),
        toml::Value::String("distribution".into()),
    );
    t.insert("install_server".into(), toml::Value::Boolean(true));
    loaded.cluster.roles.insert("ops".into(), t);
    loaded
}

fn plan_all(tree: &DataTree, loaded: &Loaded) -> Vec<NodePlan> {
    let catalog = Catalog::load(tree).expect("catalog loads");
    loaded
        .cluster
        .nodes
        .iter()
        .map(|n| {
            plan::plan_node(&catalog, loaded, n).unwrap_or_else(|e| {
                panic!("planning {} on {}: {e:#}", n.hostname, loaded.cluster.os)
            })
        })
        .collect()
}

fn node<'a>(plans: &'a [NodePlan], hostname: &str) -> &'a NodePlan {
    plans
        .iter()
        .find(|p| p.hostname == hostname)
        .unwrap_or_else(|| panic!("no plan for {hostname}"))
}

/// The content of the file installed at `dest` by an applied layer, if any.
fn file<'a>(p: &'a NodePlan, dest: &str) -> Option<&'a str> {
    p.applied()
        .flat_map(|l| l.files.iter())
        .find(|f| f.dest == dest)
        .map(|f| std::str::from_utf8(&f.content).expect("rendered file is UTF-8"))
}

fn must_file<'a>(p: &'a NodePlan, dest: &str) -> &'a str {
    file(p, dest).unwrap_or_else(|| panic!("{}: no file {dest} planned", p.hostname))
}

/// Write every planned file of `p` under `root` (dest paths made relative), with its mode.
fn write_files(p: &NodePlan, root: &Path) {
    for f in p.applied().flat_map(|l| l.files.iter()) {
        let path = root.join(f.dest.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().expect("dest has a parent")).expect("mkdir");
        std::fs::write(&path, &f.content).expect("write planned file");
        let mode = u32::from_str_radix(&f.mode, 8).expect("octal mode");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// `key = value` pairs of a sysctl file, spaces around `=` ignored, comments skipped.
fn sysctl_pairs(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn every_role_plans_on_every_os() {
    let tree = DataTree::embedded();
    let catalog = Catalog::load(&tree).expect("catalog loads");
    for role in ["ops", "slb", "master", "worker"] {
        assert!(
            catalog.role(role).is_ok(),
            "role {role} of seed 000 is missing"
        );
    }
    for os in Os::ALL {
        for variant in SLB_VARIANTS {
            let loaded = cluster_for(os, variant);
            let plans = plan_all(&tree, &loaded);
            // EZIMG_RENDER_DIR keeps the rendered trees for a look (<dir>/<os>-<n>/<node>/…).
            let tmp = tempfile::tempdir().expect("tempdir");
            let out = match std::env::var_os("EZIMG_RENDER_DIR") {
                Some(d) => PathBuf::from(d).join(format!("{os}-{}", variant_name(variant))),
                None => tmp.path().to_path_buf(),
            };
            for p in &plans {
                let role = catalog.role(&p.role).expect("role");
                let names: Vec<&str> = p.layers.iter().map(|l| l.name.as_str()).collect();
                assert_eq!(
                    names, role.layers,
                    "{} on {os}: layers in role order",
                    p.hostname
                );
                for l in &p.layers {
                    if let Some(why) = &l.skipped {
                        assert!(!why.trim().is_empty(), "{}: skip without reason", l.name);
                        assert!(
                            l.files.is_empty() && l.scripts.is_empty() && l.artifacts.is_empty(),
                            "{}: a skipped layer plans nothing",
                            l.name
                        );
                    }
                }
                assert!(
                    p.applied().count() > 5,
                    "{} on {os}: layers apply",
                    p.hostname
                );
                write_files(p, &out.join(&p.hostname));
                for l in p.applied() {
                    for sc in &l.scripts {
                        let path = out.join(&p.hostname).join("_scripts").join(&l.name);
                        std::fs::create_dir_all(&path).expect("mkdir");
                        std::fs::write(path.join(&sc.src), &sc.content).expect("write script");
                    }
                }
            }
        }
    }
}

#[test]
fn os_specific_layers_and_artifacts() {
    let tree = DataTree::embedded();
    let applied = |p: &NodePlan, name: &str| p.applied().any(|l| l.name == name);
    for os in Os::ALL {
        let plans = plan_all(&tree, &cluster_for(os, &[]));
        let master = node(&plans, "master-01");
        let slb = node(&plans, "slb-01");
        let el7 = os == Os::El7;
        assert_eq!(
            applied(master, "kernel-ml"),
            el7,
            "kernel-ml only on el7 ({os})"
        );
        assert_eq!(
            applied(slb, "kernel-ml"),
            el7,
            "kernel-ml on every el7 node ({os})"
        );
        assert_eq!(
            applied(master, "libseccomp-el7"),
            el7,
            "libseccomp only on el7 ({os})"
        );
        let deb = os == Os::Debian12;
        assert_eq!(applied(master, "selinux-off"), !deb, "no SELinux on Debian");
        assert_eq!(
            applied(master, "firewalld-off"),
            !deb,
            "no firewalld on Debian"
        );
        // Repositories by URL on every el node (the default: the public trees), none on Debian.
        assert_eq!(
            applied(master, "yum-mirror"),
            !deb,
            "yum repositories ({os})"
        );
        // The disks layer is on every node, disks or not (its packages must be in the role
        // image for whichever node has disks).
        assert!(applied(master, "disks") && applied(slb, "disks"));
        // The container runtime is for every node but the slbs.
        assert!(applied(master, "nerdctl") && applied(node(&plans, "ops"), "containerd"));
        assert!(slb.layers.iter().all(|l| l.name != "nerdctl"));

        // Kubernetes on every master and worker; Calico's operator only on the first master,
        // which applies it.
        let k8s = ["crictl", "kubeadm", "kubectl", "kubelet"].map(String::from);
        let mut want = vec!["nerdctl-full".to_string()];
        want.extend(k8s.clone());
        if el7 {
            want.extend(["kernel-ml", "kernel-ml-devel", "libseccomp-el8"].map(String::from));
        }
        let mut want_m1 = want.clone();
        want_m1.push("calico-tigera-operator".into());
        want_m1.sort();
        want.sort();
        assert_eq!(master.artifacts(), want_m1, "master-01 artifacts on {os}");
        assert_eq!(
            node(&plans, "master-02").artifacts(),
            want,
            "master-02 artifacts on {os}"
        );
        assert_eq!(
            node(&plans, "worker-01").artifacts(),
            want,
            "worker-01 artifacts on {os}"
        );
        assert!(
            !node(&plans, "ops")
                .artifacts()
                .iter()
                .any(|a| a.starts_with("kube")),
            "ops runs no kubelet"
        );
        if os == Os::Debian12 {
            // The distribution's containerd brings no CNI plugins: the pinned ones come along.
            let mut loaded = cluster_for(os, &[]);
            loaded.cluster.roles.insert(
                "worker".into(),
                toml::toml! { containerd_source = "distro" },
            );
            let distro = plan_all(&tree, &loaded);
            let w = node(&distro, "worker-01").artifacts();
            assert!(w.contains(&"cni-plugins".to_string()), "{w:?}");
            assert!(!w.contains(&"nerdctl-full".to_string()), "{w:?}");
        }
        let mut want_slb = vec!["keepalived-stage".to_string(), "nginx-stage".to_string()];
        if el7 {
            want_slb.extend(["kernel-ml", "kernel-ml-devel"].map(String::from));
        }
        want_slb.sort();
        assert_eq!(slb.artifacts(), want_slb, "slb artifacts on {os}");

        let distro = plan_all(&tree, &cluster_for(os, SLB_VARIANTS[1]));
        let slb = node(&distro, "slb-02");
        assert!(
            !slb.artifacts().iter().any(|a| a.ends_with("-stage")),
            "distro packages need no stage artifact on {os}: {:?}",
            slb.artifacts()
        );
    }
}

/// The `.repo` file's `[id]` → baseurl pairs, and whether any repo uses a mirrorlist.
fn repo_baseurls(repo: &str) -> (Vec<(String, String)>, bool) {
    let mut out = Vec::new();
    let mut id = String::new();
    for l in repo.lines() {
        if let Some(i) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            id = i.to_string();
        } else if let Some(u) = l.strip_prefix("baseurl=") {
            out.push((id.clone(), u.to_string()));
        }
    }
    (
        out,
        repo.contains("mirrorlist") && repo.lines().any(|l| l.starts_with("mirrorlist")),
    )
}

/// Seed 000's repositories, by URL: the default is the CentOS vault 7.9.2009 (os, updates,
/// extras) and the EPEL 7 archive on el7, Rocky 9 and EPEL 9 on el9; a custom root follows the
/// layout it is given (vault, or the seeds' Aliyun); no mirrorlist anywhere; base-packages
/// installs no epel-release (EPEL is one of ezimg's repos).
#[test]
fn yum_mirror_layer_follows_the_cluster_file() {
    use ezimg::cluster::MirrorLayout;
    let tree = DataTree::embedded();
    let b = "$basearch";
    // (yum_mirror, layout, os, [(repo id, baseurl)])
    type Case<'a> = (&'a str, MirrorLayout, Os, Vec<(&'a str, String)>);
    let cases: [Case; 6] = [
        (
            "",
            MirrorLayout::Vault,
            Os::El7,
            vec![
                ("base", format!("https://vault.centos.org/7.9.2009/os/{b}/")),
                (
                    "updates",
                    format!("https://vault.centos.org/7.9.2009/updates/{b}/"),
                ),
                (
                    "extras",
                    format!("https://vault.centos.org/7.9.2009/extras/{b}/"),
                ),
                (
                    "epel",
                    format!("https://archives.fedoraproject.org/pub/archive/epel/7/{b}/"),
                ),
            ],
        ),
        (
            "",
            MirrorLayout::Vault,
            Os::El9,
            vec![
                (
                    "baseos",
                    format!("https://dl.rockylinux.org/pub/rocky/9/BaseOS/{b}/os/"),
                ),
                (
                    "appstream",
                    format!("https://dl.rockylinux.org/pub/rocky/9/AppStream/{b}/os/"),
                ),
                (
                    "crb",
                    format!("https://dl.rockylinux.org/pub/rocky/9/CRB/{b}/os/"),
                ),
                (
                    "extras",
                    format!("https://dl.rockylinux.org/pub/rocky/9/extras/{b}/os/"),
                ),
                (
                    "epel",
                    format!("https://dl.fedoraproject.org/pub/epel/9/Everything/{b}/"),
                ),
            ],
        ),
        (
            "http://mirror.example.org/pub/",
            MirrorLayout::Vault,
            Os::El7,
            vec![
                (
                    "base",
                    format!("http://mirror.example.org/pub/centos/7.9.2009/os/{b}/"),
                ),
                (
                    "updates",
                    format!("http://mirror.example.org/pub/centos/7.9.2009/updates/{b}/"),
                ),
                (
                    "extras",
                    format!("http://mirror.example.org/pub/centos/7.9.2009/extras/{b}/"),
                ),
                ("epel", format!("http://mirror.example.org/pub/epel/7/{b}/")),
            ],
        ),
        (
            "http://mirror.example.org",
            MirrorLayout::Vault,
            Os::El9,
            vec![
                (
                    "baseos",
                    format!("http://mirror.example.org/rocky/9/BaseOS/{b}/os/"),
                ),
                (
                    "appstream",
                    format!("http://mirror.example.org/rocky/9/AppStream/{b}/os/"),
                ),
                (
                    "crb",
                    format!("http://mirror.example.org/rocky/9/CRB/{b}/os/"),
                ),
                (
                    "extras",
                    format!("http://mirror.example.org/rocky/9/extras/{b}/os/"),
                ),
                (
                    "epel",
                    format!("http://mirror.example.org/epel/9/Everything/{b}/"),
                ),
            ],
        ),
        (
            "",
            MirrorLayout::Aliyun,
            Os::El7,
            vec![
                (
                    "base",
                    format!("https://mirrors.aliyun.com/centos-vault/7.9.2009/os/{b}/"),
                ),
                (
                    "updates",
                    format!("https://mirrors.aliyun.com/centos-vault/7.9.2009/updates/{b}/"),
                ),
                (
                    "extras",
                    format!("https://mirrors.aliyun.com/centos-vault/7.9.2009/extras/{b}/"),
                ),
                (
                    "epel",
                    format!("https://mirrors.aliyun.com/epel-archive/7/{b}/"),
                ),
            ],
        ),
        (
            "http://10.0.0.5/mirror",
            MirrorLayout::Aliyun,
            Os::El9,
            vec![
                (
                    "baseos",
                    format!("http://10.0.0.5/mirror/rockylinux/9/BaseOS/{b}/os/"),
                ),
                (
                    "appstream",
                    format!("http://10.0.0.5/mirror/rockylinux/9/AppStream/{b}/os/"),
                ),
                (
                    "crb",
                    format!("http://10.0.0.5/mirror/rockylinux/9/CRB/{b}/os/"),
                ),
                (
                    "extras",
                    format!("http://10.0.0.5/mirror/rockylinux/9/extras/{b}/os/"),
                ),
                (
                    "epel",
                    format!("http://10.0.0.5/mirror/epel/9/Everything/{b}/"),
                ),
            ],
        ),
    ];
    for (mirror, layout, os, want) in cases {
        let mut loaded = cluster_for(os, &[]);
        loaded.cluster.yum_mirror = mirror.into();
        loaded.cluster.yum_mirror_layout = layout;
        let plans = plan_all(&tree, &loaded);
        let p = node(&plans, "worker-01");
        let repo = file(p, "/etc/yum.repos.d/ezimg-mirror.repo").expect("repo file on el");
        let (got, mirrorlist) = repo_baseurls(repo);
        let want: Vec<(String, String)> =
            want.into_iter().map(|(i, u)| (i.to_string(), u)).collect();
        assert_eq!(got, want, "{mirror:?} {layout:?} {os}:\n{repo}");
        assert!(!mirrorlist, "{repo}");
        // Every repo enabled, the distribution's keys for the distribution's trees.
        let key = if os == Os::El7 {
            "RPM-GPG-KEY-CentOS-7"
        } else {
            "RPM-GPG-KEY-Rocky-9"
        };
        assert_eq!(
            repo.matches(&format!("gpgkey=file:///etc/pki/rpm-gpg/{key}"))
                .count(),
            got.len() - 1,
            "{repo}"
        );
        assert_eq!(repo.matches("enabled=1").count(), got.len(), "{repo}");
        let base = p
            .applied()
            .find(|l| l.name == "base-packages")
            .expect("base-packages");
        let script = String::from_utf8_lossy(&base.scripts[0].content);
        assert!(
            !script.contains("epel-release"),
            "EPEL is ezimg's: {script}"
        );
    }
    let plans = plan_all(&tree, &cluster_for(Os::Debian12, &[]));
    assert!(
        file(
            node(&plans, "worker-01"),
            "/etc/yum.repos.d/ezimg-mirror.repo"
        )
        .is_none()
    );
}

#[test]
fn sysctl_file_has_every_seed_key_and_value() {
    let seed = sysctl_pairs(SEED_SYSCTL);
    assert_eq!(seed.len(), 22, "the seed sets 22 keys");
    let tree = DataTree::embedded();
    for os in Os::ALL {
        let plans = plan_all(&tree, &cluster_for(os, &[]));
        for p in &plans {
            let got = sysctl_pairs(must_file(p, SYSCTL_CONF));
            for (k, v) in &seed {
                assert_eq!(
                    got.get(k),
                    Some(v),
                    "{} on {os}: {k} in {SYSCTL_CONF}",
                    p.hostname
                );
            }
            // Seed 002's one key beyond seed 000's.
            assert_eq!(
                got.get("net.ipv4.conf.all.route_localnet")
                    .map(String::as_str),
                Some("1"),
                "{} on {os}: route_localnet (seed 002)",
                p.hostname
            );
            // swap-off persists the seed's `sysctl -w vm.swappiness=0`.
            let swap = sysctl_pairs(must_file(p, "/etc/sysctl.d/swap.conf"));
            assert_eq!(swap.get("vm.swappiness").map(String::as_str), Some("0"));
        }
    }
}

#[test]
fn seed_sysctl_block_matches_the_seed() {
    let Some(dir) = support::seeds("rendered_checks") else {
        return;
    };
    let Some(seed) = std::fs::read_dir(&dir).ok().and_then(|mut it| {
        it.find_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.to_string();
            name.starts_with("000_").then_some(p)
        })
    }) else {
        support::skip(
            "rendered_checks",
            &format!("no seed 000 under {} to compare with", dir.display()),
        );
        return;
    };
    let text = std::fs::read_to_string(&seed).expect("read seed");
    let start = text
        .find("cat >> /etc/sysctl.d/user.conf << EOF\n")
        .expect("seed's sysctl block");
    let body = &text[start..];
    let body = &body[body.find('\n').expect("newline") + 1..];
    let block = &body[..body.find("\nEOF").expect("end of block") + 1];
    assert_eq!(sysctl_pairs(block), sysctl_pairs(SEED_SYSCTL));
}

#[test]
fn apiserver_upstream_is_the_three_masters() {
    let tree = DataTree::embedded();
    for os in Os::ALL {
        for (variant, stage) in [(SLB_VARIANTS[0], true), (SLB_VARIANTS[1], false)] {
            let loaded = cluster_for(os, variant);
            let masters: BTreeSet<String> = loaded
                .cluster
                .nodes_of("master")
                .map(|n| format!("{}:6443", n.ip))
                .collect();
            assert_eq!(
                masters,
                [
                    "192.168.2.221:6443",
                    "192.168.2.222:6443",
                    "192.168.2.223:6443"
                ]
                .map(String::from)
                .into(),
            );
            let plans = plan_all(&tree, &loaded);
            for slb in ["slb-01", "slb-02"] {
                let conf = must_file(node(&plans, slb), APISERVER_CONF);
                let upstream = conf
                    .split_once("upstream KUBERNETES-APISERVER {")
                    .and_then(|(_, rest)| rest.split_once('}'))
                    .map(|(block, _)| block)
                    .unwrap_or_else(|| panic!("no upstream block in {conf}"));
                let servers: Vec<String> = upstream
                    .lines()
                    .map(str::trim)
                    .filter_map(|l| l.strip_prefix("server "))
                    .map(|s| s.trim_end_matches(';').trim().to_string())
                    .collect();
                assert_eq!(servers.len(), 3, "{slb} on {os}: {conf}");
                assert_eq!(servers.into_iter().collect::<BTreeSet<_>>(), masters);
                assert!(conf.contains("hash $remote_addr consistent;"), "{conf}");
                assert!(conf.contains("listen 6443;"), "{conf}");
                let check =
                    "check interval=5000 rise=2 fall=3 timeout=5000 default_down=true type=tcp;";
                assert_eq!(conf.contains(check), stage, "{slb} on {os}: {conf}");
                let status = must_file(node(&plans, slb), STATUS_CONF);
                assert!(status.contains("listen       10000;") && status.contains("return 403;"));
                assert_eq!(status.contains("show_status_code_count on;"), stage);
                assert_eq!(status.contains("healthcheck_status;"), stage);
            }
        }
    }
}

#[test]
fn haproxy_variant_replaces_nginx() {
    let tree = DataTree::embedded();
    for os in Os::ALL {
        let plans = plan_all(&tree, &cluster_for(os, SLB_VARIANTS[2]));
        let p = node(&plans, "slb-01");
        for name in ["nginx", "nginx-distro", "nginx-config"] {
            let l = p
                .layers
                .iter()
                .find(|l| l.name == name)
                .expect("layer listed");
            let why = l
                .skipped
                .as_deref()
                .unwrap_or_else(|| panic!("{name} applied"));
            assert!(why.contains("params.lb"), "{name} skipped for lb: {why}");
        }
        assert!(
            !p.applied()
                .flat_map(|l| l.files.iter())
                .any(|f| f.dest.contains("nginx")),
            "no nginx file with lb = haproxy on {os}"
        );
        let cfg = must_file(p, HAPROXY_CFG);
        let servers: Vec<&str> = cfg
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("server "))
            .collect();
        assert_eq!(
            servers,
            [
                "server master-01 192.168.2.221:6443 check",
                "server master-02 192.168.2.222:6443 check",
                "server master-03 192.168.2.223:6443 check",
            ]
        );
        for line in [
            "bind *:33305",
            "monitor-uri /monitor",
            "bind 0.0.0.0:6443",
            "mode tcp",
            "option tcp-check",
        ] {
            assert!(cfg.lines().any(|l| l.trim() == line), "{line} in {cfg}");
        }
        let conf = must_file(p, KEEPALIVED_CONF);
        assert!(conf.contains("haproxy_process_check.sh") && !conf.contains("nginx"));
        assert!(file(p, &format!("{CHECK_DIR}haproxy_process_check.sh")).is_some());
        let unit = must_file(p, "/etc/systemd/system/keepalived.service");
        assert!(unit.contains("haproxy.service"), "{unit}");
    }
}

/// A tool from `$env` (a path, for a binary unpacked outside PATH) or from PATH; else skip
/// (failed under CI).
fn tool(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    support::host_tool(name)
}

#[test]
fn haproxy_accepts_the_rendered_config() {
    let Some(haproxy) = tool("HAPROXY", "haproxy") else {
        return;
    };
    let tree = DataTree::embedded();
    let dir = tempfile::tempdir().expect("tempdir");
    for os in Os::ALL {
        let plans = plan_all(&tree, &cluster_for(os, SLB_VARIANTS[2]));
        let cfg = must_file(node(&plans, "slb-01"), HAPROXY_CFG);
        let path = dir.path().join(format!("{os}.cfg"));
        std::fs::write(&path, cfg).expect("write cfg");
        let out = Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run haproxy");
        let msg = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "haproxy -c ({os}):\n{msg}\n{cfg}");
        assert!(
            !msg.contains("[WARNING]"),
            "haproxy -c warns ({os}):\n{msg}"
        );
        // The same check must reject a broken config.
        std::fs::write(
            &path,
            cfg.replace("balance roundrobin", "balance nosuchalgo"),
        )
        .expect("write cfg");
        let bad = Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output();
        assert!(
            !bad.expect("run haproxy").status.success(),
            "haproxy -c accepted a bad config"
        );
    }
}

/// `keyword value` of the first line in `conf` that starts with `keyword `.
fn conf_value<'a>(conf: &'a str, keyword: &str) -> &'a str {
    conf.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(keyword).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {keyword} in {conf}"))
        .trim()
}

/// The addresses of the `unicast_peer { … }` block, or None without one.
fn unicast_peers(conf: &str) -> Option<Vec<String>> {
    let start = conf.find("unicast_peer {")?;
    let rest = &conf[start + "unicast_peer {".len()..];
    let block = &rest[..rest.find('}').expect("closing brace")];
    Some(block.split_whitespace().map(String::from).collect())
}

#[test]
fn vrrp_master_backup_and_unicast_peers() {
    let tree = DataTree::embedded();
    for mode in [VrrpMode::Multicast, VrrpMode::Unicast] {
        let mut loaded = cluster_for(Os::El7, &[]);
        loaded.cluster.vrrp.mode = mode;
        let plans = plan_all(&tree, &loaded);
        let one = must_file(node(&plans, "slb-01"), KEEPALIVED_CONF);
        let two = must_file(node(&plans, "slb-02"), KEEPALIVED_CONF);
        assert_eq!(conf_value(one, "state"), "MASTER");
        assert_eq!(conf_value(two, "state"), "BACKUP");
        let p1: u32 = conf_value(one, "priority").parse().expect("number");
        let p2: u32 = conf_value(two, "priority").parse().expect("number");
        assert!(p1 > p2, "MASTER priority {p1} must beat BACKUP {p2}");
        assert_eq!(conf_value(one, "router_id"), "slb-01");
        assert_eq!(conf_value(two, "router_id"), "slb-02");
        for c in [one, two] {
            assert_eq!(conf_value(c, "virtual_router_id"), "100");
            assert_eq!(conf_value(c, "interface"), "ens33");
            assert_eq!(conf_value(c, "advert_int"), "1");
            assert!(
                c.contains("virtual_ipaddress {\n        192.168.2.100/24\n"),
                "{c}"
            );
            assert!(c.contains("script_user root") && c.contains("enable_script_security"));
            assert!(c.contains("interval 5") && c.contains("fall 2") && c.contains("rise 1"));
            // A failing check alone must hand the VIP to the next slb: its weight drops the
            // MASTER below the BACKUP (the script's own stop of keepalived may time out).
            let w: i64 = conf_value(c, "weight").parse().expect("weight");
            assert!(
                (p1 as i64) + w < p2 as i64,
                "a failing check (weight {w}) must drop MASTER {p1} below BACKUP {p2}"
            );
            assert!(c.contains(&format!("script \"{CHECK_DIR}nginx_process_check.sh\"")));
        }
        match mode {
            VrrpMode::Multicast => {
                assert_eq!(unicast_peers(one), None, "{one}");
                assert!(!one.contains("unicast_src_ip"));
            }
            VrrpMode::Unicast => {
                assert_eq!(conf_value(one, "unicast_src_ip"), "192.168.2.211");
                assert_eq!(conf_value(two, "unicast_src_ip"), "192.168.2.212");
                assert_eq!(unicast_peers(one), Some(vec!["192.168.2.212".to_string()]));
                assert_eq!(unicast_peers(two), Some(vec!["192.168.2.211".to_string()]));
            }
        }
    }
}

/// Seed 000 reboots after installing kernel-ml. On el7 a live apply asks for that reboot once
/// (a marker) through a flag in /run, `apply` reboots at its very end, and the join neither
/// starts from the live apply nor at boot while the flag stands (the reboot clears /run).
/// Kickstart's %post is not live: the install's own reboot starts the new kernel. Checked on
/// the rendered files (there is no el7 guest here to reboot).
#[test]
fn kernel_ml_reboot_comes_before_the_join() {
    let tree = DataTree::embedded();
    let flag = "/run/ezimg/reboot-required";
    for os in Os::ALL {
        let plans = plan_all(&tree, &cluster_for(os, &[]));
        for host in ["slb-01", "master-02", "worker-01"] {
            let p = node(&plans, host);
            let kernel = p.applied().find(|l| l.name == "kernel-ml");
            assert_eq!(kernel.is_some(), os == Os::El7, "{host} on {os}");
            if let Some(k) = kernel {
                let script = String::from_utf8_lossy(&k.scripts[0].content).to_string();
                let ask = script
                    .find(&format!(">{flag}"))
                    .expect("the flag is written");
                let guard = script[..ask]
                    .rfind("if ez_live && [ \"$(uname -r)\" != \"$want\" ]")
                    .expect("only live, only on another kernel");
                assert!(
                    script[guard..ask].contains("if ! ez_marker kernel-ml-reboot"),
                    "once per node: {script}"
                );
                assert!(
                    script.contains("want=5.11.16-1.el7.elrepo.x86_64"),
                    "{script}"
                );
            }
            if host == "slb-01" {
                continue;
            }
            let unit = must_file(p, "/etc/systemd/system/ezimg-join.service");
            assert!(
                unit.lines()
                    .any(|l| l == format!("ConditionPathExists=!{flag}")),
                "{unit}"
            );
            let join = p.applied().find(|l| l.name == "ezimg-join").expect("join");
            let script = String::from_utf8_lossy(&join.scripts[0].content).to_string();
            let wait = script
                .find(&format!("[ -e {flag} ]"))
                .unwrap_or_else(|| panic!("the join does not wait: {script}"));
            let start = script.find("systemctl start --no-block").expect("start");
            assert!(wait < start, "{script}");
        }
    }
    let apply =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bundle/apply.sh"))
            .expect("apply.sh");
    let reboot = apply.find("shutdown -r +1").expect("apply reboots");
    let last = apply
        .find("printf 'ezimg apply: %s changes")
        .expect("summary");
    assert!(last < reboot, "the reboot comes after every layer");
    assert!(apply[..reboot].contains(&format!("if ez_live && [ -e {flag} ]")));
}

/// The vrrp_script block of a keepalived.conf, its lines trimmed.
fn vrrp_script_block(conf: &str) -> Vec<String> {
    let start = conf.find("vrrp_script ").expect("a vrrp_script block");
    conf[start..]
        .lines()
        .take_while(|l| l.trim() != "}")
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The check's parameters, the same for both variants: `interval 5` (seeds 000/004), `fall 2`,
/// `rise 1` (seed 004) and `weight -15` (not the seeds' `+2`/`-5`: with 100/90 priorities a
/// failing check alone must move the VIP). `keepalived -t` checks both
/// (keepalived_accepts_the_rendered_configs).
#[test]
fn vrrp_check_is_the_same_for_both_variants() {
    let tree = DataTree::embedded();
    for (variant, lb) in [(SLB_VARIANTS[0], "nginx"), (SLB_VARIANTS[2], "haproxy")] {
        let want = vec![
            format!("vrrp_script check_{lb} {{"),
            format!("script \"/ezops/service/keepalived/etc/keepalived/{lb}_process_check.sh\""),
            "interval 5".to_string(),
            "weight -15".to_string(),
            "fall 2".to_string(),
            "rise 1".to_string(),
        ];
        let plans = plan_all(&tree, &cluster_for(Os::El7, variant));
        for slb in ["slb-01", "slb-02"] {
            let conf = must_file(node(&plans, slb), KEEPALIVED_CONF);
            assert_eq!(vrrp_script_block(conf), want, "{variant:?} {slb}");
        }
    }
}

/// A non-loopback network interface of this host: keepalived -t rejects unknown interfaces.
fn host_interface() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Run `keepalived -t` on `conf` (the check script path moved under `root`).
fn keepalived_check(conf: &str, root: &Path, name: &str) -> (bool, String) {
    let conf = conf
        .replace(&secret_placeholder("vrrp_auth_pass"), "t3stpass")
        .replace(CHECK_DIR, &format!("{}{CHECK_DIR}", root.display()));
    let path = root.join(name);
    std::fs::write(&path, conf).expect("write conf");
    let out = Command::new(KEEPALIVED)
        .arg("-t")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run keepalived");
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), msg)
}

#[test]
fn keepalived_accepts_the_rendered_configs() {
    if !Path::new(KEEPALIVED).exists() {
        support::skip_or_fail(
            "rendered_checks",
            &format!("{KEEPALIVED} is not installed (apt-get install keepalived)"),
        );
        return;
    }
    let Some(iface) = host_interface() else {
        support::skip(
            "rendered_checks",
            "this host has no non-loopback interface for keepalived -t",
        );
        return;
    };
    let tree = DataTree::embedded();
    for variant in SLB_VARIANTS {
        for mode in [VrrpMode::Multicast, VrrpMode::Unicast] {
            let mut loaded = cluster_for(Os::Debian12, variant);
            loaded.cluster.vrrp.mode = mode;
            loaded.cluster.network.interface = iface.clone();
            let plans = plan_all(&tree, &loaded);
            for slb in ["slb-01", "slb-02"] {
                let p = node(&plans, slb);
                // A fresh root-owned 0700 dir: keepalived's script security accepts it.
                let root = tempfile::tempdir().expect("tempdir");
                if std::fs::metadata(root.path()).expect("stat").uid() != 0 {
                    support::skip(
                        "rendered_checks",
                        "keepalived's script security needs root-owned files (not root)",
                    );
                    return;
                }
                write_files(p, root.path());
                let conf = must_file(p, KEEPALIVED_CONF);
                assert!(conf.contains(&secret_placeholder("vrrp_auth_pass")));
                let (ok, msg) = keepalived_check(conf, root.path(), "keepalived.conf");
                assert!(
                    ok,
                    "keepalived -t on {slb} {variant:?} {mode:?}:\n{msg}\n{conf}"
                );
                // The same check must fail on a broken config, or it proves nothing.
                let broken = conf.replace("virtual_router_id 100", "virtual_router_id 300");
                let (ok, _) = keepalived_check(&broken, root.path(), "broken.conf");
                assert!(!ok, "keepalived -t accepted virtual_router_id 300");
            }
        }
    }
}

/// Every rendered script of every role, OS and variant, deduplicated: (label, text).
fn all_scripts() -> BTreeMap<String, (String, String)> {
    let tree = DataTree::embedded();
    let mut by_content: BTreeMap<String, (String, String)> = BTreeMap::new();
    for os in Os::ALL {
        for variant in SLB_VARIANTS {
            let loaded = with_ops_registry(cluster_for(os, variant));
            for p in plan_all(&tree, &loaded) {
                for l in p.applied() {
                    let label = |what: &str| format!("{os} {} {}/{what}", p.hostname, l.name);
                    for s in &l.scripts {
                        let text = String::from_utf8(s.content.clone()).expect("UTF-8");
                        by_content
                            .entry(s.sha256.clone())
                            .or_insert_with(|| (label(&s.src), text));
                    }
                    // Installed scripts: by name, or by a bash shebang (ezimg-join).
                    let is_script = |f: &&ezimg::plan::PlanFile| {
                        f.dest.ends_with(".sh")
                            || f.content.starts_with(b"#!/bin/bash")
                            || f.content.starts_with(b"#!/usr/bin/env bash")
                    };
                    for f in l.files.iter().filter(is_script) {
                        let text = String::from_utf8(f.content.clone()).expect("UTF-8");
                        by_content
                            .entry(f.sha256.clone())
                            .or_insert_with(|| (label(&f.dest), text));
                    }
                }
            }
        }
    }
    by_content
}

#[test]
fn rendered_scripts_pass_bash_n_and_shellcheck() {
    let scripts = all_scripts();
    assert!(
        scripts.len() > 20,
        "expected many scripts, got {}",
        scripts.len()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut paths: Vec<(PathBuf, String)> = Vec::new();
    for (i, (label, text)) in scripts.values().enumerate() {
        let path = dir.path().join(format!("{i:03}.sh"));
        std::fs::write(&path, text).expect("write script");
        paths.push((path, label.clone()));
        // Template leftovers would be shell syntax errors or silent literal text.
        assert!(
            !text.contains("{{") && !text.contains("{%"),
            "{label}: unrendered template:\n{text}"
        );
    }
    let mut failures = Vec::new();
    for (path, label) in &paths {
        let out = Command::new("bash")
            .arg("-n")
            .arg(path)
            .output()
            .expect("bash");
        if !out.status.success() {
            failures.push(format!(
                "bash -n {label}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    if support::host_tool("shellcheck").is_none() {
        return;
    }
    for (path, label) in &paths {
        let out = Command::new("shellcheck")
            .args(["-S", "warning", "-s", "bash", "-f", "gcc"])
            .arg(path)
            .output()
            .expect("shellcheck");
        if !out.status.success() {
            failures.push(format!(
                "shellcheck {label}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                std::fs::read_to_string(path).unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// First token of an Exec*= value, without systemd's `-@:+!` prefixes.
fn exec_binary(value: &str) -> Option<&str> {
    let cmd = value.trim_start_matches(['-', '@', ':', '+', '!']);
    cmd.split_whitespace().next().filter(|c| c.starts_with('/'))
}

#[test]
fn systemd_units_verify() {
    if support::host_tool("systemd-analyze").is_none() {
        return;
    }
    let host_units = Path::new("/usr/lib/systemd/system");
    if !host_units.join("multi-user.target").exists() {
        support::skip(
            "rendered_checks",
            "no systemd unit directory on this host to resolve targets against",
        );
        return;
    }
    let tree = DataTree::embedded();
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut verified = 0;
    for os in Os::ALL {
        for variant in SLB_VARIANTS {
            for p in plan_all(&tree, &with_ops_registry(cluster_for(os, variant))) {
                for l in p.applied() {
                    for u in &l.units {
                        let dest = format!("/etc/systemd/system/{}", u.name);
                        let text = must_file(&p, &dest);
                        if !seen.insert(text.to_string()) {
                            continue;
                        }
                        // A root holding the unit, the host's stock units (targets), and the
                        // unit's programs as executables (verify checks that they exist).
                        let root = tempfile::tempdir().expect("tempdir");
                        let r = root.path();
                        let unit_path = r.join(dest.trim_start_matches('/'));
                        std::fs::create_dir_all(unit_path.parent().expect("parent"))
                            .expect("mkdir");
                        std::fs::write(&unit_path, text).expect("write unit");
                        std::fs::create_dir_all(r.join("usr/lib/systemd")).expect("mkdir");
                        std::os::unix::fs::symlink(host_units, r.join("usr/lib/systemd/system"))
                            .expect("symlink");
                        for line in text.lines() {
                            let Some((key, value)) = line.split_once('=') else {
                                continue;
                            };
                            if !key.starts_with("Exec") {
                                continue;
                            }
                            if let Some(bin) = exec_binary(value) {
                                let b = r.join(bin.trim_start_matches('/'));
                                std::fs::create_dir_all(b.parent().expect("parent"))
                                    .expect("mkdir");
                                std::fs::write(&b, "#!/bin/sh\n").expect("write stub");
                                std::fs::set_permissions(
                                    &b,
                                    std::fs::Permissions::from_mode(0o755),
                                )
                                .expect("chmod");
                            }
                        }
                        let out = Command::new("systemd-analyze")
                            .arg("verify")
                            .arg(format!("--root={}", r.display()))
                            .arg(&u.name)
                            .output()
                            .expect("systemd-analyze");
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        // Parse warnings name the unit file and a line; they do not fail verify.
                        let warnings: Vec<&str> = stderr
                            .lines()
                            .filter(|l| l.contains(&format!("{}:", u.name)))
                            .filter(|l| !l.contains("Failed to resolve symlink"))
                            .collect();
                        assert!(
                            out.status.success() && warnings.is_empty(),
                            "systemd-analyze verify {} ({os} {}):\n{}\n{text}",
                            u.name,
                            p.hostname,
                            warnings.join("\n")
                        );
                        verified += 1;
                        names.insert(u.name.clone());
                    }
                }
            }
        }
    }
    assert!(
        verified >= 4,
        "nginx and keepalived units in their variants, got {verified}"
    );
    assert!(
        names.contains("ezimg-serve.service"),
        "the install server's unit was verified: {names:?}"
    );
}

#[test]
fn no_rendered_file_holds_the_vrrp_password() {
    let tree = DataTree::embedded();
    for os in Os::ALL {
        for variant in SLB_VARIANTS {
            let loaded = cluster_for(os, variant);
            let pass = loaded
                .cluster
                .vrrp
                .auth_pass
                .clone()
                .expect("default password");
            assert_eq!(
                pass, "k8spass",
                "the default cluster's password is the seed's"
            );
            for p in plan_all(&tree, &loaded) {
                for l in &p.layers {
                    let texts = l
                        .files
                        .iter()
                        .map(|f| (&f.dest, &f.content))
                        .chain(l.scripts.iter().map(|s| (&s.src, &s.content)));
                    for (what, content) in texts {
                        let text = String::from_utf8_lossy(content);
                        assert!(
                            !text.contains(&pass),
                            "{} on {os}: {what} holds the VRRP password",
                            p.hostname
                        );
                    }
                }
                if p.role == "slb" {
                    let conf = p
                        .applied()
                        .flat_map(|l| l.files.iter())
                        .find(|f| f.dest == KEEPALIVED_CONF)
                        .expect("keepalived.conf");
                    assert_eq!(conf.secrets, ["vrrp_auth_pass"]);
                    assert_eq!(conf.mode, "0640");
                }
            }
        }
    }
}

/// No unit the layers install may be ordered after a unit that is itself ordered after
/// multi-user.target (cloud-final.service, on cloud images) while multi-user.target wants it:
/// every target is ordered after what it wants, so systemd meets a cycle at boot and drops a
/// start job at random (once it was cloud-final itself, and the node's seed never applied).
#[test]
fn no_unit_is_ordered_after_units_that_follow_multi_user() {
    let tree = DataTree::embedded();
    let late = [
        "cloud-final.service",
        "multi-user.target",
        "graphical.target",
    ];
    for os in Os::ALL {
        for p in plan_all(&tree, &cluster_for(os, &[])) {
            for l in p.applied() {
                for f in l
                    .files
                    .iter()
                    .filter(|f| f.dest.starts_with("/etc/systemd/system/"))
                {
                    let text = String::from_utf8_lossy(&f.content);
                    let wanted = text
                        .lines()
                        .any(|l| l.trim_start().starts_with("WantedBy=multi-user.target"));
                    for line in text
                        .lines()
                        .filter(|l| l.trim_start().starts_with("After="))
                    {
                        for u in late {
                            assert!(
                                !(wanted && line.split_whitespace().any(|w| w.ends_with(u))),
                                "{os} {} {}: `{line}` with WantedBy=multi-user.target is an \
                                 ordering cycle",
                                p.hostname,
                                f.dest
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The scripts ezimg runs inside its VMs (the bake, the stage build) are embedded from `src/`:
/// `bash -n` and shellcheck them as files.
#[test]
fn embedded_vm_scripts_pass_bash_n_and_shellcheck() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "sh") {
                out.push(p);
            }
        }
    }
    let mut scripts = Vec::new();
    walk(&support::root().join("src"), &mut scripts);
    scripts.sort();
    assert!(
        scripts.iter().any(|p| p.ends_with("bake.sh"))
            && scripts.iter().any(|p| p.ends_with("vm-build.sh")),
        "{scripts:?}"
    );
    let shellcheck = support::host_tool("shellcheck");
    for p in &scripts {
        let o = Command::new("bash")
            .arg("-n")
            .arg(p)
            .output()
            .expect("bash");
        assert!(
            o.status.success(),
            "bash -n {}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        if shellcheck.is_some() {
            let o = Command::new("shellcheck")
                .args(["-S", "warning", "-s", "bash", "-f", "gcc"])
                .arg(p)
                .output()
                .expect("shellcheck");
            assert!(
                o.status.success(),
                "shellcheck {}:\n{}",
                p.display(),
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

/// containerd-mirror: every registry the cluster's images come from (the lock's images as the
/// nodes name them) gets a hosts.toml that sends pulls to the ops registry, with the cluster CA;
/// containerd reads them through config_path.
#[test]
fn containerd_hosts_toml_covers_every_image_registry() {
    let tree = DataTree::load(None).expect("embedded tree");
    let lock = ezimg::artifact::Lock::embedded().expect("lock");
    for os in Os::ALL {
        for repo in [None, Some("images.example:5000/k8s")] {
            let mut loaded = cluster_for(os, &[]);
            if let Some(r) = repo {
                loaded.cluster.kubernetes.image_repository = r.to_string();
            }
            let c = &loaded.cluster;
            let names = ezimg::images::NodeNames::of(c);
            let registries: BTreeSet<String> = lock
                .images
                .iter()
                .flat_map(|i| names.references(i))
                .map(|r| ezimg::images::registry_of(&r))
                .collect();
            assert!(registries.len() >= 3, "{registries:?}");
            let mirror = format!("https://{}", c.registry_mirror);
            let plans = plan_all(&tree, &loaded);
            for p in &plans {
                let role = c
                    .nodes
                    .iter()
                    .find(|n| n.hostname == p.hostname)
                    .map(|n| n.role.clone())
                    .unwrap_or_default();
                let certs: BTreeSet<String> = p
                    .applied()
                    .flat_map(|l| l.files.iter())
                    .filter_map(|f| f.dest.strip_prefix("/etc/containerd/certs.d/"))
                    .filter_map(|d| d.strip_suffix("/hosts.toml"))
                    .map(str::to_string)
                    .collect();
                if role == "slb" {
                    assert!(certs.is_empty(), "{}: {certs:?}", p.hostname);
                    continue;
                }
                assert_eq!(certs, registries, "{} on {os}", p.hostname);
                let config = must_file(p, "/etc/containerd/config.toml");
                assert!(config.contains("config_path = \"/etc/containerd/certs.d\""));
                let ca = if role == "ops" {
                    let f = must_file(p, "/etc/containerd/certs.d/ezimg-cluster-ca.crt");
                    assert_eq!(f.trim(), secret_placeholder("kube_ca_crt"));
                    "/etc/containerd/certs.d/ezimg-cluster-ca.crt"
                } else {
                    assert!(file(p, "/etc/containerd/certs.d/ezimg-cluster-ca.crt").is_none());
                    "/etc/kubernetes/pki/ca.crt"
                };
                for r in &registries {
                    let text = must_file(p, &format!("/etc/containerd/certs.d/{r}/hosts.toml"));
                    let doc: toml::Table = toml::from_str(text)
                        .unwrap_or_else(|e| panic!("{}: {r}/hosts.toml: {e}", p.hostname));
                    let host = doc["host"][&mirror].as_table().expect("mirror host table");
                    assert_eq!(
                        host["capabilities"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>()),
                        Some(vec!["pull", "resolve"])
                    );
                    assert_eq!(host["ca"].as_str(), Some(ca), "{}: {r}", p.hostname);
                    assert!(
                        !doc.contains_key("server"),
                        "containerd's default server: {text}"
                    );
                }
            }
            // No mirror: no hosts.toml at all.
            let mut none = loaded.clone();
            none.cluster.registry_mirror.clear();
            for p in plan_all(&tree, &none) {
                assert!(
                    !p.applied()
                        .flat_map(|l| l.files.iter())
                        .any(|f| f.dest.starts_with("/etc/containerd/certs.d/")),
                    "{}",
                    p.hostname
                );
            }
        }
    }
}

const SERVE_UNIT: &str = "/etc/systemd/system/ezimg-serve.service";

#[test]
fn install_server_plans_only_when_opted_in() {
    let tree = DataTree::embedded();
    for os in Os::ALL {
        let plans = plan_all(&tree, &cluster_for(os, &[]));
        let ops = node(&plans, "ops");
        let layer = ops
            .layers
            .iter()
            .find(|l| l.name == "install-server")
            .expect("the ops role lists install-server");
        assert!(
            layer
                .skipped
                .as_deref()
                .is_some_and(|w| w.contains("params.install_server")),
            "{os}: off by default, said: {:?}",
            layer.skipped
        );
        assert!(file(ops, "/usr/local/bin/ezimg").is_none() && file(ops, SERVE_UNIT).is_none());

        let plans = plan_all(&tree, &with_ops_registry(cluster_for(os, &[])));
        let ops = node(&plans, "ops");
        let l = ops
            .applied()
            .find(|l| l.name == "install-server")
            .unwrap_or_else(|| panic!("{os}: install-server applies when opted in"));
        let supplied: Vec<(&str, &str)> = l
            .files
            .iter()
            .filter(|f| f.supplied.is_some())
            .map(|f| (f.dest.as_str(), f.mode.as_str()))
            .collect();
        assert_eq!(
            supplied,
            [
                ("/usr/local/bin/ezimg", "0755"),
                ("/etc/ezimg/serve/cluster.toml", "0644"),
                ("/etc/ezimg/serve/artifacts.lock", "0644"),
            ],
            "{os}"
        );
        let unit = must_file(ops, SERVE_UNIT);
        assert!(
            unit.contains(
                "ExecStart=/usr/local/bin/ezimg serve -c /etc/ezimg/serve/cluster.toml --lock \
                 /etc/ezimg/serve/artifacts.lock --from /srv/ezimg/out --cache-dir \
                 /srv/ezimg/cache --listen 0.0.0.0:8080 --dhcp proxy\n"
            ) && unit.contains("User=ezimg-serve\n")
                && unit.contains("Type=notify\n")
                && unit.contains("EnvironmentFile=-/etc/ezimg/serve/serve.env\n")
                && unit.contains("Restart=on-failure\n")
                && unit.contains("WantedBy=multi-user.target"),
            "{os}:\n{unit}"
        );
        // el7's systemd 219 would ignore the newer sandboxing options: rendered per OS.
        assert_eq!(
            unit.contains("ProtectSystem=strict\n"),
            os != Os::El7,
            "{os}:\n{unit}"
        );
        assert_eq!(unit.contains("ProtectSystem=full\n"), os == Os::El7);
        // dnsmasq beside it (proxy by default), started with serve, from the file serve writes;
        // the distribution's package for the binary only on debian12.
        let dns = ops
            .applied()
            .find(|l| l.name == "install-server-dhcp")
            .unwrap_or_else(|| panic!("{os}: install-server-dhcp applies with install_server"));
        assert_eq!(
            dns.packages,
            [if os == Os::Debian12 {
                "dnsmasq-base"
            } else {
                "dnsmasq"
            }],
            "{os}"
        );
        let dunit = must_file(ops, "/etc/systemd/system/ezimg-dnsmasq.service");
        assert!(
            dunit.contains("--conf-file=/srv/ezimg/out/pxe/dnsmasq.conf")
                && dunit.contains("PartOf=ezimg-serve.service\n")
                && dunit.contains("WantedBy=ezimg-serve.service\n")
                && dunit.contains("(proxy DHCP, TFTP)"),
            "{os}:\n{dunit}"
        );
        // "full": serve writes a full-DHCP file; "none": no dnsmasq on the node.
        for (mode, runs) in [("full", true), ("none", false)] {
            let mut l = with_ops_registry(cluster_for(os, &[]));
            if let Some(t) = l.cluster.roles.get_mut("ops") {
                t.insert(
                    "install_server_dhcp".into(),
                    toml::Value::String(mode.into()),
                );
            }
            let plans = plan_all(&tree, &l);
            let o = node(&plans, "ops");
            let u = must_file(o, SERVE_UNIT);
            let want = if runs { mode } else { "proxy" };
            assert!(
                u.contains(&format!(" --dhcp {want}\n")),
                "{os} {mode}:\n{u}"
            );
            assert_eq!(
                file(o, "/etc/systemd/system/ezimg-dnsmasq.service").is_some(),
                runs,
                "{os} {mode}"
            );
        }
        // Only the ops node: no other node gets the binary.
        for p in plans.iter().filter(|p| p.role != "ops") {
            assert!(file(p, "/usr/local/bin/ezimg").is_none(), "{}", p.hostname);
        }
    }
    // A privileged port gets the capability (el9/debian12 only: el7 refuses it in validation).
    let mut loaded = with_ops_registry(cluster_for(Os::Debian12, &[]));
    if let Some(t) = loaded.cluster.roles.get_mut("ops") {
        t.insert("install_server_port".into(), toml::Value::Integer(80));
    }
    let unit = must_file(node(&plan_all(&tree, &loaded), "ops"), SERVE_UNIT).to_string();
    assert!(
        unit.contains("--listen 0.0.0.0:80 --dhcp proxy\n")
            && unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE\n"),
        "{unit}"
    );
}
