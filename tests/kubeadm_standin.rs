//! The kubeadm/kubectl STAND-INS of `vm-tests/standin` on the host, before any VM uses them.
//!
//! The VM tests install these in place of the real Kubernetes binaries (which cannot be
//! downloaded here), so they must reproduce what kubeadm really checks. This test runs them as
//! `make-artifacts.sh` ships them (kubeadm with its API server embedded) against a secret store
//! made by `ezimg secrets init`, in fake node roots (`EZIMG_STANDIN_ROOT`), with the API servers
//! as background processes on free 127.0.0.1 ports (`EZIMG_STANDIN_NO_SYSTEMD=1`):
//!
//! - init on master-01; master-02 joins the control plane through master-01; worker-01 joins
//!   through master-02's server, which forwards the stateful calls to master-01; the joins are
//!   recorded on master-01 in order. The pin `ezimg secrets show` prints is the one kubeadm's
//!   discovery computes (else every join would fail).
//! - refused like kubeadm refuses: a wrong caCertHash (both values named), a wrong token (JWS),
//!   a worker with a pre-placed ca.crt (preflight), a second init on an initialised node;
//!   Calico's resources before the operator's CRDs.
//! - reset stops the server and empties the PKI.
//!
//! Needs python3 with PyYAML (else `.venv/bin/python3`); without one it is skipped with the
//! reason, or fails when `CI` is set.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

const PKI_FILES: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
];

fn standin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-tests/standin")
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Run with a deadline: killed and reported when it runs longer than `secs`.
fn run(cmd: &mut Command, secs: u64) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let (tx, rx) = mpsc::channel();
    for (i, mut pipe) in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            let _ = tx.send((i, s));
        });
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {secs}s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A background server holding our pipes would block these: bounded as well.
    let mut outs = [String::new(), String::new()];
    for _ in 0..2 {
        let (i, s) = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{cmd:?}: output still open after exit (a child kept it)"));
        outs[i] = s;
    }
    let [stdout, stderr] = outs;
    Out {
        ok: status.success(),
        stdout,
        stderr,
    }
}

/// python3 that imports yaml: PATH's, else the project venv's. `None`: skip (fails under CI).
fn python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    let mut tried = Vec::new();
    for py in [PathBuf::from("python3"), venv] {
        if py.is_absolute() && !py.exists() {
            continue;
        }
        let ok = Command::new(&py)
            .args(["-c", "import yaml, ssl, http.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Some(py);
        }
        tried.push(py.display().to_string());
    }
    let why = format!(
        "no python3 with PyYAML ({} tried; Debian: apt-get install python3-yaml)",
        tried.join(", ")
    );
    support::skip_or_fail("kubeadm_standin", &why);
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Kills the stand-in API servers of its roots when dropped, also when the test panics.
struct Servers(Vec<PathBuf>);

impl Drop for Servers {
    fn drop(&mut self) {
        for root in &self.0 {
            let pidfile = root.join("run/ezimg-standin/kube-apiserver-standin.pid");
            let Ok(pid) = std::fs::read_to_string(&pidfile) else {
                continue;
            };
            let pid = pid.trim();
            // Only our server: its command line names this root.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*root.to_string_lossy()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    py: PathBuf,
    art: PathBuf,
    store: PathBuf,
    token: String,
    ca_hash: String,
}

impl Cluster {
    /// A temp dir with the default cluster's secret store and the stand-in artifacts.
    fn new(py: PathBuf) -> Cluster {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().to_path_buf();
        std::fs::write(dir.join("cluster.toml"), ezimg::cluster::DEFAULT_TOML).expect("write");
        let ezimg = |args: &[&str]| {
            let mut c = Command::cargo_bin("ezimg").expect("binary built");
            c.env_remove("EZIMG_CLUSTER")
                .env_remove("EZIMG_DATA")
                .env_remove("EZIMG_SECRETS")
                .current_dir(&dir)
                .args(["-c", "cluster.toml"])
                .args(args);
            let o = run(&mut c, 60);
            assert!(o.ok, "ezimg {args:?}: {}", o.stderr);
            o.stdout
        };
        ezimg(&["secrets", "init"]);
        let show = ezimg(&["secrets", "show"]);
        let ca_hash = show
            .lines()
            .find_map(|l| l.trim().strip_prefix("cluster CA public key: "))
            .expect("secrets show prints the CA public key")
            .to_string();
        let store = dir.join("cluster.secrets");
        let token = std::fs::read_to_string(store.join("bootstrap-token"))
            .expect("token")
            .trim()
            .to_string();
        let art = dir.join("artifacts");
        let o = run(
            Command::new("bash")
                .arg(standin_dir().join("make-artifacts.sh"))
                .arg(&art),
            60,
        );
        assert!(o.ok, "make-artifacts.sh: {}", o.stderr);
        Cluster {
            _dir: d,
            dir,
            py,
            art,
            store,
            token,
            ca_hash,
        }
    }

    /// A node root; masters get the eight PKI files from the store, as ezimg places them.
    fn root(&self, name: &str, pki: bool) -> PathBuf {
        let root = self.dir.join(name);
        std::fs::create_dir_all(root.join("etc/kubernetes")).expect("mkdir");
        if pki {
            for f in PKI_FILES {
                let dst = root.join("etc/kubernetes/pki").join(f);
                std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
                std::fs::copy(self.store.join("pki").join(f), &dst).expect("copy pki");
            }
        }
        root
    }

    /// A stand-in artifact run in `root`.
    fn cmd(&self, artifact: &str, root: &Path) -> Command {
        let mut c = Command::new(&self.py);
        c.arg(self.art.join(artifact))
            .env("EZIMG_STANDIN_ROOT", root)
            .env("EZIMG_STANDIN_NO_SYSTEMD", "1")
            .env("EZIMG_STANDIN_READY_TIMEOUT", "30")
            .env_remove("EZIMG_STANDIN_PORT")
            .env_remove("EZIMG_STANDIN_BIND");
        c
    }

    fn kubeadm(&self, root: &Path, args: &[&str]) -> Out {
        run(self.cmd("kubeadm-STANDIN", root).args(args), 90)
    }

    fn kubectl(&self, root: &Path, args: &[&str]) -> Out {
        let kc = root.join("etc/kubernetes/admin.conf");
        let kc = kc.to_str().expect("utf-8 path");
        run(
            self.cmd("kubectl-STANDIN", root)
                .args(["--kubeconfig", kc])
                .args(args),
            60,
        )
    }

    fn join_config(&self, root: &Path, c: &JoinCfg) -> PathBuf {
        let mut y = format!(
            "# worker/control-plane join, as layers/kubeadm/kubeadm-join.yaml renders it\n\
             apiVersion: kubeadm.k8s.io/v1beta3\n\
             kind: JoinConfiguration\n\
             discovery:\n  bootstrapToken:\n    apiServerEndpoint: \"127.0.0.1:{}\"\n    \
             token: \"{}\"\n    caCertHashes:\n    - \"{}\"\n  timeout: 20s\n\
             nodeRegistration:\n  name: {}\n  criSocket: unix:///run/containerd/containerd.sock\n  \
             imagePullPolicy: IfNotPresent\n  kubeletExtraArgs:\n    node-ip: 127.0.0.1\n\
             patches:\n  directory: /etc/kubernetes/ezimg/patches\n",
            c.via, c.token, c.hash, c.node
        );
        if let Some(port) = c.cp_port {
            y.push_str(&format!(
                "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: 127.0.0.1\n    \
                 bindPort: {port}\n"
            ));
        }
        let patches = root.join("etc/kubernetes/ezimg/patches");
        std::fs::create_dir_all(&patches).expect("mkdir patches");
        std::fs::write(
            patches.join("kubeletconfiguration+merge.yaml"),
            "nodeStatusUpdateFrequency: 4s\n",
        )
        .expect("write patch");
        let p = root.join("etc/kubernetes/ezimg/kubeadm.yaml");
        std::fs::write(&p, y).expect("write join config");
        p
    }
}

struct JoinCfg<'a> {
    node: &'a str,
    via: u16,
    token: &'a str,
    hash: &'a str,
    cp_port: Option<u16>,
}

fn init_config(token: &str, port: u16) -> String {
    format!(
        r#"# as layers/kubeadm/kubeadm-init.yaml renders it, on 127.0.0.1 instead of the cluster network
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
- token: "{token}"
  ttl: "0s"
  usages: [signing, authentication]
  groups: [system:bootstrappers:kubeadm:default-node-token]
nodeRegistration:
  name: master-01
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: IfNotPresent
  kubeletExtraArgs:
    node-ip: 127.0.0.1
localAPIEndpoint:
  advertiseAddress: 127.0.0.1
  bindPort: {port}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
clusterName: ezk8s
kubernetesVersion: v1.29.3
controlPlaneEndpoint: "127.0.0.1:{port}"
imageRepository: registry.cn-hangzhou.aliyuncs.com/google_containers
certificatesDir: /etc/kubernetes/pki
networking:
  dnsDomain: cluster.local
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/16
apiServer:
  certSANs:
  - "192.168.2.100"
  - "master-01"
  extraArgs:
    max-requests-inflight: "1000"
controllerManager: {{}}
scheduler: {{}}
etcd:
  local:
    dataDir: /var/lib/etcd
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
nodeStatusUpdateFrequency: "10s"
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
"#
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn openssl(args: &[&str]) -> String {
    let o = run(Command::new("openssl").args(args), 30);
    assert!(o.ok, "openssl {args:?}: {}", o.stderr);
    o.stdout
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .is_ok()
}

#[test]
fn init_join_forward_refuse_reset() {
    let Some(py) = python() else { return };
    let c = Cluster::new(py);
    let (p1, p2) = (free_port(), free_port());
    let m1 = c.root("master-01", true);
    let m2 = c.root("master-02", true);
    let w1 = c.root("worker-01", false);
    let servers = Servers(vec![m1.clone(), m2.clone()]);

    // --- init on master-01 ---------------------------------------------------------------
    let init = m1.join("etc/kubernetes/ezimg/kubeadm.yaml");
    std::fs::create_dir_all(init.parent().expect("parent")).expect("mkdir");
    std::fs::write(&init, init_config(&c.token, p1)).expect("write init config");
    let init_s = init.to_str().expect("utf-8");
    let o = c.kubeadm(&m1, &["init", "--config", init_s, "--upload-certs"]);
    assert!(o.ok, "kubeadm init: {}{}", o.stdout, o.stderr);
    let line = format!("STAND-IN kubeadm init node=master-01 endpoint=127.0.0.1:{p1} at ");
    assert!(o.stderr.contains(&line), "{}", o.stderr);
    assert!(read(&m1.join("var/log/ezimg-kubeadm-standin.log")).contains(&line));

    // The serving certificate: from the cluster CA, with kubeadm's names and the certSANs.
    let pki = m1.join("etc/kubernetes/pki");
    let (ca, crt) = (pki.join("ca.crt"), pki.join("apiserver.crt"));
    let verify = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().expect("utf-8"),
        crt.to_str().expect("utf-8"),
    ]);
    assert!(verify.contains(": OK"), "{verify}");
    let sans = openssl(&[
        "x509",
        "-in",
        crt.to_str().expect("utf-8"),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    for want in [
        "IP Address:192.168.2.100",
        "IP Address:127.0.0.1",
        "IP Address:10.96.0.1",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:master-01",
    ] {
        assert!(sans.contains(want), "{want} not in {sans}");
    }
    let key_text = openssl(&[
        "pkey",
        "-in",
        pki.join("apiserver.key").to_str().expect("utf-8"),
        "-noout",
        "-text",
    ]);
    assert!(key_text.contains("P-256"), "{key_text}");
    let admin = read(&m1.join("etc/kubernetes/admin.conf"));
    assert!(
        admin.contains(&format!("server: https://127.0.0.1:{p1}")),
        "{admin}"
    );
    for f in [
        "kubelet.conf",
        "super-admin.conf",
        "manifests/kube-apiserver.yaml",
    ] {
        assert!(m1.join("etc/kubernetes").join(f).is_file(), "{f} missing");
    }
    let manifest = read(&m1.join("etc/kubernetes/manifests/kube-apiserver.yaml"));
    assert!(
        manifest.contains("--max-requests-inflight=1000") && manifest.contains("STAND-IN"),
        "{manifest}"
    );

    // --- master-02 joins the control plane through master-01 -------------------------------
    let cfg = c.join_config(
        &m2,
        &JoinCfg {
            node: "master-02",
            via: p1,
            token: &c.token,
            hash: &c.ca_hash,
            cp_port: Some(p2),
        },
    );
    let o = c.kubeadm(&m2, &["join", "--config", cfg.to_str().expect("utf-8")]);
    assert!(o.ok, "control-plane join: {}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "STAND-IN kubeadm join node=master-02 control-plane=true via=127.0.0.1:{p1} at "
        )),
        "{}",
        o.stderr
    );
    assert!(port_open(p2), "master-02's API server is not listening");

    // --- worker-01 joins through master-02 (which forwards to master-01) --------------------
    let cfg = c.join_config(
        &w1,
        &JoinCfg {
            node: "worker-01",
            via: p2,
            token: &c.token,
            hash: &c.ca_hash,
            cp_port: None,
        },
    );
    let o = c.kubeadm(&w1, &["join", "--config", cfg.to_str().expect("utf-8")]);
    assert!(o.ok, "worker join: {}", o.stderr);
    assert!(
        o.stderr.contains("control-plane=false") && o.stderr.contains("JWS ok"),
        "{}",
        o.stderr
    );
    assert_eq!(
        read(&w1.join("etc/kubernetes/pki/ca.crt")),
        read(&c.store.join("pki/ca.crt")),
        "the worker's CA comes from discovery"
    );
    assert!(w1.join("etc/kubernetes/kubelet.conf").is_file());
    assert!(!w1.join("etc/kubernetes/pki/ca.key").exists());
    let kubelet_cfg = read(&w1.join("var/lib/kubelet/config.yaml"));
    assert!(
        kubelet_cfg.contains("cgroupDriver: systemd")
            && kubelet_cfg.contains("nodeStatusUpdateFrequency: 4s"),
        "the cluster's kubelet-config with the node's patch: {kubelet_cfg}"
    );
    let client = openssl(&[
        "x509",
        "-in",
        w1.join("var/lib/kubelet/pki/kubelet-client-current.pem")
            .to_str()
            .expect("utf-8"),
        "-noout",
        "-subject",
    ]);
    assert!(client.contains("system:node:worker-01"), "{client}");

    // The join record on master-01, in order, read through kubectl.
    let o = c.kubectl(&m1, &["get", "--raw", "/ezimg-standin/joins"]);
    assert!(o.ok, "{}", o.stderr);
    let joins: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(joins.len(), 2, "{}", o.stdout);
    assert_eq!(joins[0]["node"], "master-02");
    assert_eq!(joins[0]["control_plane"], true);
    assert_eq!(joins[1]["node"], "worker-01");
    assert_eq!(joins[1]["control_plane"], false);
    assert_eq!(
        joins[1]["via"], "master-02",
        "forwarded by master-02's server"
    );
    assert_eq!(joins[1]["recorded_by"], "master-01");

    // --- refusals -------------------------------------------------------------------------
    let wrong_hash = format!("sha256:{}", "0".repeat(64));
    let r = c.root("bad-hash", false);
    let cfg = c.join_config(
        &r,
        &JoinCfg {
            node: "worker-02",
            via: p1,
            token: &c.token,
            hash: &wrong_hash,
            cp_port: None,
        },
    );
    let o = c.kubeadm(&r, &["join", "--config", cfg.to_str().expect("utf-8")]);
    assert!(!o.ok, "a wrong caCertHash must fail");
    assert!(
        o.stderr.contains("none of the public keys")
            && o.stderr.contains(&c.ca_hash)
            && o.stderr.contains(&wrong_hash),
        "{}",
        o.stderr
    );

    let (id, secret) = c.token.split_once('.').expect("token id.secret");
    let wrong_token = format!(
        "{id}.{}",
        secret
            .chars()
            .rev()
            .map(|ch| if ch == 'a' { 'b' } else { 'a' })
            .collect::<String>()
    );
    let r = c.root("bad-token", false);
    let cfg = c.join_config(
        &r,
        &JoinCfg {
            node: "worker-03",
            via: p1,
            token: &wrong_token,
            hash: &c.ca_hash,
            cp_port: None,
        },
    );
    let o = c.kubeadm(&r, &["join", "--config", cfg.to_str().expect("utf-8")]);
    assert!(!o.ok, "a wrong token must fail");
    assert!(
        o.stderr.contains("failed to verify JWS signature"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains(secret), "the token must not be logged");

    let r = c.root("ca-preplaced", false);
    std::fs::create_dir_all(r.join("etc/kubernetes/pki")).expect("mkdir");
    std::fs::copy(
        c.store.join("pki/ca.crt"),
        r.join("etc/kubernetes/pki/ca.crt"),
    )
    .expect("cp");
    let cfg = c.join_config(
        &r,
        &JoinCfg {
            node: "worker-04",
            via: p1,
            token: &c.token,
            hash: &c.ca_hash,
            cp_port: None,
        },
    );
    let o = c.kubeadm(&r, &["join", "--config", cfg.to_str().expect("utf-8")]);
    assert!(
        !o.ok,
        "a worker with a pre-placed ca.crt must fail preflight"
    );
    assert!(
        o.stderr
            .contains("[ERROR FileAvailable--etc-kubernetes-pki-ca.crt]"),
        "{}",
        o.stderr
    );

    let o = c.kubeadm(&m1, &["init", "--config", init_s]);
    assert!(!o.ok, "a second init must be refused");
    assert!(
        o.stderr.contains("admin.conf already exists"),
        "{}",
        o.stderr
    );

    // --- Calico as ezimg-join applies it ------------------------------------------------------
    let cr = c.dir.join("custom-resources.yaml");
    std::fs::write(
        &cr,
        "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata:\n  name: default\n\
         spec:\n  calicoNetwork:\n    ipPools:\n    - cidr: 10.244.0.0/16\n",
    )
    .expect("write");
    let cr = cr.to_str().expect("utf-8");
    let apply = ["apply", "--server-side", "--force-conflicts", "-f"];
    let o = c.kubectl(&m1, &[&apply[..], &[cr]].concat());
    assert!(
        !o.ok && o.stderr.contains("no matches for kind"),
        "{}",
        o.stderr
    );
    let op = c.art.join("calico-tigera-operator-STANDIN.yaml");
    let o = c.kubectl(&m2, &[&apply[..], &[op.to_str().expect("utf-8")]].concat());
    assert!(o.ok, "{}", o.stderr);
    let o = c.kubectl(
        &m1,
        &[
            "wait",
            "--for",
            "condition=established",
            "--timeout",
            "30s",
            "crd/installations.operator.tigera.io",
            "crd/apiservers.operator.tigera.io",
        ],
    );
    assert!(o.ok && o.stdout.contains("condition met"), "{}", o.stderr);
    let o = c.kubectl(&m1, &[&apply[..], &[cr]].concat());
    assert!(
        o.ok && o.stdout.contains("installation/default"),
        "{}",
        o.stderr
    );
    let applied = read(&m1.join("var/log/ezimg-apiserver-standin.applied"));
    assert_eq!(applied.lines().count(), 2, "{applied}");

    // Every line the stand-ins logged says so; no token in them.
    for log in [
        m1.join("var/log/ezimg-kubeadm-standin.log"),
        m1.join("var/log/ezimg-apiserver-standin.log"),
        m2.join("var/log/ezimg-apiserver-standin.log"),
        w1.join("var/log/ezimg-kubeadm-standin.log"),
    ] {
        let text = read(&log);
        assert!(
            !text.contains(&c.token),
            "{} holds the token",
            log.display()
        );
        for l in text.lines().filter(|l| !l.is_empty()) {
            assert!(l.starts_with("STAND-IN"), "{}: {l}", log.display());
        }
    }

    // --- reset ----------------------------------------------------------------------------
    for (root, port) in [(&m2, p2), (&m1, p1)] {
        let o = c.kubeadm(root, &["reset", "-f", "--cri-socket", "unix:///x.sock"]);
        assert!(o.ok, "reset: {}", o.stderr);
        assert!(
            !port_open(port),
            "the API server still listens on {port} after reset"
        );
        let left: Vec<_> = std::fs::read_dir(root.join("etc/kubernetes/pki"))
            .expect("pki dir")
            .collect();
        assert!(left.is_empty(), "pki not emptied: {left:?}");
        assert!(!root.join("etc/kubernetes/admin.conf").exists());
        assert!(!root.join("etc/kubernetes/manifests/etcd.yaml").exists());
    }
    drop(servers);
}

#[test]
fn every_standin_says_so() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path();
    let o = run(
        Command::new("bash")
            .arg(standin_dir().join("make-artifacts.sh"))
            .arg(art),
        60,
    );
    assert!(o.ok, "{}", o.stderr);
    let py_run = |file: &str, args: &[&str]| {
        let o = run(
            Command::new(&py)
                .arg(art.join(file))
                .args(args)
                .env("EZIMG_STANDIN_ROOT", art),
            30,
        );
        assert!(o.ok, "{file} {args:?}: {}", o.stderr);
        o.stdout
    };
    assert_eq!(
        py_run("kubeadm-STANDIN", &["version", "-o", "short"]).trim(),
        "v1.29.3-ezimg-standin"
    );
    assert!(py_run("kubeadm-STANDIN", &["version"]).contains("STAND-IN"));
    assert!(py_run("kubeadm-STANDIN", &["--help"]).contains("STAND-IN"));
    assert!(py_run("kubectl-STANDIN", &["version", "--client"]).contains("STAND-IN"));
    assert!(py_run("kubectl-STANDIN", &["--help"]).contains("STAND-IN"));
    assert_eq!(
        py_run("kubelet-STANDIN", &["--version"]).trim(),
        "Kubernetes v1.29.3-ezimg-standin"
    );
    // The kubelet exits like the real one while kubeadm has not configured it.
    let o = run(
        Command::new(&py)
            .arg(art.join("kubelet-STANDIN"))
            .arg("--config=/var/lib/kubelet/config.yaml")
            .env("EZIMG_STANDIN_ROOT", art),
        30,
    );
    assert!(
        !o.ok && o.stderr.contains("STAND-IN kubelet"),
        "{}",
        o.stderr
    );
    let o = run(
        Command::new(&py)
            .arg(art.join("kubeadm-STANDIN"))
            .args(["config", "images", "pull"])
            .env("EZIMG_STANDIN_ROOT", art),
        30,
    );
    assert!(
        !o.ok && o.stderr.contains("not reproduced by the STAND-IN"),
        "unknown subcommands fail loudly: {}",
        o.stderr
    );
}

#[test]
fn make_artifacts_is_deterministic_and_names_the_lock_entries() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let make = |d: &Path| {
        let o = run(
            Command::new("bash")
                .arg(standin_dir().join("make-artifacts.sh"))
                .arg(d),
            60,
        );
        assert!(o.ok, "{}", o.stderr);
        o.stdout
    };
    let (la, lb) = (make(a.path()), make(b.path()));
    assert_eq!(la, lb, "two runs, two different outputs");
    let names: Vec<&str> = la
        .lines()
        .map(|l| l.split_whitespace().next().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "kubeadm",
            "kubelet",
            "kubectl",
            "crictl",
            "cni-plugins",
            "calico-tigera-operator"
        ]
    );
    let lock = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts.lock"));
    for l in la.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w.len(), 3, "{l}");
        assert!(
            lock.contains(&format!("name = \"{}\"", w[0])),
            "{} not in the lock",
            w[0]
        );
        assert!(w[1].contains("STANDIN"), "{l}");
        assert_eq!(w[2].len(), 64, "{l}");
        let bytes = std::fs::read(a.path().join(w[1])).expect("artifact");
        assert_eq!(ezimg::digest::sha256_hex(&bytes), w[2], "{l}");
    }
    let list = |f: &str| {
        let o = run(Command::new("tar").arg("-tzf").arg(a.path().join(f)), 30);
        assert!(o.ok, "{}", o.stderr);
        o.stdout
    };
    assert_eq!(list("crictl-STANDIN.tar.gz"), "crictl\n");
    assert_eq!(
        list("cni-plugins-STANDIN.tgz"),
        "./bridge\n./host-local\n./loopback\n./portmap\n"
    );
}
