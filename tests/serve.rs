//! `ezimg serve` over real HTTP on 127.0.0.1, serving what the real `ezimg build` wrote: every
//! route, the rule that a node's kickstart and seed go only to that node (by MAC header or by
//! source address: all of 127.0.0.0/8 is local, so a client can connect from a node's planned
//! 127.0.0.x address), byte ranges and resuming a cut download, concurrent and stalled clients,
//! traversal attempts, the PXE tree and dnsmasq.conf (checked by dnsmasq itself), and graceful
//! shutdown.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

/// Planned node addresses and MACs of the test cluster (the default one moved to 127.0.0.0/24).
const SLB: (&str, &str, &str) = ("slb-01", "127.0.0.211", "52:54:00:00:02:11");
const WORKER: (&str, &str, &str) = ("worker-01", "127.0.0.231", "52:54:00:AB:02:31");
const CRICTL: &str = "crictl-v1.29.0-linux-amd64.tar.gz";

/// A built `--out` with a cache holding one verified artifact.
struct Site {
    dir: tempfile::TempDir,
    cluster: PathBuf,
    out: PathBuf,
    cache: PathBuf,
    /// The cached artifact's bytes (big enough that a download can be cut mid-body).
    artifact: Vec<u8>,
}

fn ezimg() -> Command {
    let mut c = Command::cargo_bin("ezimg").expect("binary built");
    c.env_remove("EZIMG_CLUSTER")
        .env_remove("EZIMG_DATA")
        .env_remove("EZIMG_LOCK")
        .env_remove("SOURCE_DATE_EPOCH")
        // The real artifacts cannot be fetched here; the one the tests serve is a stand-in.
        .env("EZIMG_ALLOW_INCOMPLETE", "1");
    c
}

fn cluster_text() -> String {
    let mut t = support::default_cluster().replace("192.168.2.", "127.0.0.");
    for (host, ip, mac) in [SLB, WORKER] {
        let from = format!("hostname = \"{host}\"\nrole = ");
        let at = t.find(&from).expect("node in the default cluster");
        let ip_line = format!("ip = \"{ip}\"\n");
        let rel = t[at..].find(&ip_line).expect("ip line") + at + ip_line.len();
        t.insert_str(rel, &format!("mac = \"{mac}\"\n"));
    }
    t
}

impl Site {
    fn new() -> Site {
        Site::with_artifact_size(3_000_000)
    }

    fn with_artifact_size(size: u32) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = dir.path().join("cluster.toml");
        std::fs::write(&cluster, cluster_text()).expect("write cluster");
        let out = dir.path().join("out");
        let cache = dir.path().join("cache");
        // A stand-in crictl, pinned in a lock beside the cluster file and fetched into the
        // cache from a local mirror: a real verified cache entry.
        let artifact: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let digest = ezimg::digest::sha256_hex(&artifact);
        let lock = ezimg::artifact::Lock::embedded().expect("lock").text;
        let real = "sha256 = \"d16a1ffb3938f5a19d5c8f45d363bd091ef89c0bc4d44ad16b933eede32fdcbb\"";
        assert!(lock.contains(real), "crictl's pin changed");
        let lock = lock.replace(real, &format!("sha256 = \"{digest}\""));
        std::fs::write(dir.path().join("artifacts.lock"), lock).expect("write lock");
        let mirror = dir.path().join("mirror");
        std::fs::create_dir_all(&mirror).expect("mkdir");
        std::fs::write(mirror.join(CRICTL), &artifact).expect("write");
        let s = Site {
            dir,
            cluster,
            out,
            cache,
            artifact,
        };
        let o = s
            .ezimg("fetch")
            .args(["crictl", "--progress", "quiet", "--mirror"])
            .arg(&mirror)
            .output()
            .expect("fetch runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = s
            .ezimg("build")
            .arg("--all")
            .arg("--out")
            .arg(&s.out)
            .output()
            .expect("build runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        s
    }

    fn ezimg(&self, sub: &str) -> Command {
        let mut c = ezimg();
        c.env("EZIMG_CACHE_DIR", &self.cache)
            .arg(sub)
            .arg("-c")
            .arg(&self.cluster);
        c
    }

    fn serve(&self, extra: &[&str]) -> Server {
        let log = self.dir.path().join(format!("serve-{}.log", rand_suffix()));
        let mut child = self
            .ezimg("serve")
            .arg("--from")
            .arg(&self.out)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "serve did not start: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .parse()
            .expect("bound address");
        Server { child, addr, log }
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn get(&self, path: &str) -> Reply {
        request(self.addr, None, path, &[])
    }
    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr, None, path, headers)
    }
    fn get_from(&self, from: &str, path: &str) -> Reply {
        request(self.addr, Some(from.parse().expect("ip")), path, &[])
    }
    fn terminate(&self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(ok.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Connect (from `from` when given), send a GET with `Connection: close`.
fn connect(addr: SocketAddr, from: Option<IpAddr>) -> TcpStream {
    let s = match from {
        None => TcpStream::connect(addr).expect("connect"),
        Some(ip) => {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            sock.bind(&SocketAddr::new(ip, 0).into()).expect("bind");
            sock.connect(&addr.into()).expect("connect");
            sock.into()
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

fn send(s: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)]) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
}

fn read_head(r: &mut impl BufRead) -> (u16, BTreeMap<String, String>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').expect("header line");
        headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
    }
    (status, headers)
}

fn request(addr: SocketAddr, from: Option<IpAddr>, path: &str, h: &[(&str, &str)]) -> Reply {
    let mut s = connect(addr, from);
    send(&mut s, "GET", path, h);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut body = Vec::new();
    r.read_to_end(&mut body).expect("body");
    if let Some(n) = headers.get("content-length") {
        assert_eq!(
            n.parse::<usize>().ok(),
            Some(body.len()),
            "{path}: short body"
        );
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// A built site and a server on it. Each test has its own (a static one would outlive the test
/// binary: statics are never dropped, so its server would never be stopped).
fn fixture() -> (Site, Server) {
    let site = Site::new();
    let server = site.serve(&[]);
    (site, server)
}

fn sha256(b: &[u8]) -> String {
    ezimg::digest::sha256_hex(b)
}

#[test]
fn every_route_serves_what_build_wrote() {
    let (site, srv) = fixture();
    let idx = srv.get("/");
    assert_eq!(idx.status, 200);
    assert!(String::from_utf8_lossy(&idx.body).contains("/ks/<node>"));
    // Bundles and their sha256 lines: to anyone.
    for role in ["ops", "slb", "master", "worker"] {
        let rel = format!("{role}/ezimg-{role}-bundle.tar.gz");
        let r = srv.get(&format!("/out/{rel}"));
        assert_eq!(r.status, 200, "{rel}");
        assert_eq!(r.body, site.read(&rel));
        let r = srv.get(&format!("/out/{rel}.sha256"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, site.read(&format!("{rel}.sha256")));
    }
    // The artifact `build` exported beside the worker bundle, and the cache entry by name and
    // by sha256 (what `apply --artifacts http://...` fetches).
    let r = srv.get(&format!("/out/worker/artifacts/{CRICTL}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, site.artifact);
    for path in [
        format!("/artifacts/{CRICTL}"),
        "/artifacts/crictl".to_string(),
        format!("/sha256/{}", sha256(&site.artifact)),
    ] {
        let r = srv.get(&path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(sha256(&r.body), sha256(&site.artifact), "{path}");
    }
    assert_eq!(srv.get(&format!("/sha256/{}", "0".repeat(64))).status, 404);
    assert_eq!(srv.get("/sha256/abc").status, 400);
    assert_eq!(srv.get("/artifacts/not-pinned.tar.gz").status, 404);
    // The kickstart and each seed file, to their node (here by its MAC).
    let (host, _, mac) = SLB;
    let hdr = format!("eth0 {mac}");
    let h = [("X-RHN-Provisioning-MAC-0", hdr.as_str())];
    let r = srv.get_with(&format!("/ks/{host}"), &h);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, site.read(&format!("slb/{host}/ks.cfg")));
    for f in ["user-data", "meta-data", "network-config"] {
        let r = srv.get_with(&format!("/seed/{host}/{f}"), &h);
        assert_eq!(r.status, 200, "{f}");
        assert_eq!(r.body, site.read(&format!("slb/{host}/seed/{f}")));
    }
    let r = srv.get_with(&format!("/out/slb/{host}/seed.iso"), &h);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, site.read(&format!("slb/{host}/seed.iso")));
    // HEAD: the length, no body.
    let mut s = connect(srv.addr, None);
    send(&mut s, "HEAD", "/out/slb/ezimg-slb-bundle.tar.gz", &[]);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("read");
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-length").map(String::as_str),
        Some(
            site.read("slb/ezimg-slb-bundle.tar.gz")
                .len()
                .to_string()
                .as_str()
        )
    );
    assert!(rest.is_empty());
    // A small file is read whole, a conditional request goes through ServeFile: the same
    // Last-Modified, so a cache revalidates with 304.
    let r = srv.get("/out/slb/ezimg-slb-bundle.tar.gz");
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let lm = r
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let r = srv.get_with(
        "/out/slb/ezimg-slb-bundle.tar.gz",
        &[("If-Modified-Since", &lm)],
    );
    assert_eq!(r.status, 304);
    // PXE: the entry point and the per-MAC script, served.
    let boot = srv.get("/boot.ipxe");
    assert_eq!(boot.status, 200);
    assert_eq!(boot.body, site.read("pxe/boot.ipxe"));
    let r = srv.get("/pxe/ipxe/52-54-00-ab-02-31.ipxe");
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains(&format!(
            "inst.ks=http://{}/ks/worker-01 inst.ks.sendmac",
            srv.addr
        )),
        "{text}"
    );
    // Unknown paths, methods and files the build did not record.
    assert_eq!(srv.get("/nothing").status, 404);
    assert_eq!(srv.get("/out/cluster.toml").status, 404);
    assert_eq!(srv.get("/ks/no-such-node").status, 404);
    let mut s = connect(srv.addr, None);
    send(&mut s, "POST", "/out/slb/ezimg-slb-bundle.tar.gz", &[]);
    let (status, headers) = read_head(&mut BufReader::new(s));
    assert_eq!(status, 405);
    assert_eq!(headers.get("allow").map(String::as_str), Some("GET, HEAD"));
    // One access log line per request: client, method and path, status, bytes, time.
    let log = srv.log();
    assert!(
        log.lines().any(|l| l
            .starts_with("127.0.0.1 \"GET /out/slb/ezimg-slb-bundle.tar.gz\" 200 ")
            && l.ends_with("ms")),
        "{log}"
    );
}

#[test]
fn a_nodes_kickstart_and_seed_go_only_to_that_node() {
    let (site, srv) = fixture();
    let (slb, slb_ip, slb_mac) = SLB;
    let (worker, worker_ip, worker_mac) = WORKER;
    let ks = format!("/ks/{slb}");
    let own = format!("eth0 {slb_mac}");
    let other = format!("eth0 {worker_mac}");
    // Another node's MAC, no MAC, another node's address: 403, and a log line naming both.
    let r = srv.get_with(&ks, &[("X-RHN-Provisioning-MAC-0", &other)]);
    assert_eq!(r.status, 403);
    assert!(!r.body.windows(8).any(|w| w == b"password"));
    assert_eq!(srv.get(&ks).status, 403);
    assert_eq!(srv.get_from(worker_ip, &ks).status, 403);
    assert_eq!(
        srv.get_from(worker_ip, &format!("/seed/{slb}/user-data"))
            .status,
        403
    );
    assert_eq!(
        srv.get_from(worker_ip, &format!("/out/slb/{slb}/seed.img"))
            .status,
        403
    );
    let log = srv.log();
    assert!(
        log.contains(&format!(
            "denied: /ks/{slb} holds the secrets of node {slb}; asked by 127.0.0.1 (MAC {})",
            worker_mac.to_ascii_lowercase()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("asked by {worker_ip} (no MAC header)")),
        "{log}"
    );
    // Its own MAC (any case, any header index), its own address: 200.
    let r = srv.get_with(&ks, &[("X-RHN-Provisioning-MAC-0", &own)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, site.read(&format!("slb/{slb}/ks.cfg")));
    let upper = format!("ens3 {}", worker_mac.to_ascii_uppercase());
    let r = srv.get_with(
        &format!("/ks/{worker}"),
        &[
            ("X-RHN-Provisioning-MAC-0", "eth0 02:00:00:00:00:01"),
            ("X-RHN-Provisioning-MAC-1", &upper),
        ],
    );
    assert_eq!(r.status, 200);
    let r = srv.get_from(slb_ip, &format!("/seed/{slb}/user-data"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, site.read(&format!("slb/{slb}/seed/user-data")));
    // A node without a mac is recognised by its address only.
    let master_ip = "127.0.0.221";
    assert_eq!(srv.get("/ks/master-01").status, 403);
    assert_eq!(srv.get_from(master_ip, "/ks/master-01").status, 200);
    // Bundles hold no secrets: anyone.
    assert_eq!(
        srv.get_from(worker_ip, "/out/slb/ezimg-slb-bundle.tar.gz")
            .status,
        200
    );
}

#[test]
fn ranges_and_resuming_a_cut_download() {
    let (site, srv) = fixture();
    let path = format!("/artifacts/{CRICTL}");
    let all = &site.artifact;
    let n = all.len();
    let r = srv.get_with(&path, &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &all[100..200]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{n}").as_str())
    );
    let r = srv.get_with(&path, &[("Range", "bytes=-10")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &all[n - 10..]);
    let r = srv.get_with(&path, &[("Range", &format!("bytes={n}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{n}").as_str())
    );
    assert_eq!(srv.get_with(&path, &[("Range", "bytes=50-10")]).status, 416);
    // Cut a download mid-body, then resume from what arrived, as curl -C - does.
    let mut s = connect(srv.addr, None);
    send(&mut s, "GET", &path, &[]);
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200);
    let mut got = vec![0u8; 1_000_000];
    r.read_exact(&mut got).expect("first part");
    drop(r);
    let rest = srv.get_with(&path, &[("Range", &format!("bytes={}-", got.len()))]);
    assert_eq!(rest.status, 206);
    got.extend_from_slice(&rest.body);
    assert_eq!(sha256(&got), sha256(all));
    // The server is fine after the cut.
    assert_eq!(srv.get(&path).status, 200);
}

#[test]
fn concurrent_and_stalled_clients() {
    let (site, srv) = fixture();
    // Clients that connect and send nothing, or half a request, or never read their answer.
    let mut stalled: Vec<TcpStream> = (0..8).map(|_| connect(srv.addr, None)).collect();
    let mut half = connect(srv.addr, None);
    half.write_all(b"GET /out/slb/ezimg-slb-bun")
        .expect("write");
    stalled.push(half);
    for _ in 0..4 {
        let mut s = connect(srv.addr, None);
        send(&mut s, "GET", &format!("/artifacts/{CRICTL}"), &[]);
        stalled.push(s);
    }
    let want = sha256(&site.read("worker/ezimg-worker-bundle.tar.gz"));
    let addr = srv.addr;
    let started = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let want = want.clone();
            std::thread::spawn(move || {
                for _ in 0..8 {
                    let r = request(addr, None, "/out/worker/ezimg-worker-bundle.tar.gz", &[]);
                    assert_eq!(r.status, 200);
                    assert_eq!(sha256(&r.body), want);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "128 small downloads took {:?} beside stalled clients",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn traversal_attempts_are_refused() {
    let (site, srv) = fixture();
    // Something outside the tree that must never come back, and a symlink out of the tree.
    let secret = site.dir.path().join("outside.txt");
    std::fs::write(&secret, "outside the served tree\n").expect("write");
    std::os::unix::fs::symlink(&secret, site.out.join("pxe/link.txt")).expect("symlink");
    for (path, want) in [
        ("/out/../cluster.toml", 400),
        ("/out/slb/../../cluster.toml", 400),
        ("/out/%2e%2e/cluster.toml", 400),
        ("/out/%2E%2E%2Fcluster.toml", 400),
        ("/pxe/..%2f..%2fcluster.toml", 400),
        ("/pxe/%2e%2e/%2e%2e/etc/passwd", 400),
        ("//etc/passwd", 400),
        ("/pxe//etc/passwd", 400),
        ("/pxe/%2fetc%2fpasswd", 400),
        ("/pxe/..\\..\\cluster.toml", 400),
        ("/pxe/link.txt", 404),
        ("/out/ezimg-outputs.json", 404),
        ("/pxe/../../outside.txt", 400),
        ("/sha256/..%2f..%2fcluster.toml", 400),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, want, "{path}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("outside the served tree")
                && !String::from_utf8_lossy(&r.body).contains("[network]"),
            "{path} leaked"
        );
    }
    // An absolute URI in the request line is a full URL, not a file path.
    let r = srv.get("http://test/etc/passwd");
    assert!(r.status == 404 || r.status == 400, "{}", r.status);
}

#[test]
fn pxe_tree_names_every_node_with_a_mac_and_dnsmasq_accepts_its_config() {
    let (site, srv) = fixture();
    let pxe = site.out.join("pxe");
    for (host, _, mac) in [SLB, WORKER] {
        let dashes = mac.to_ascii_lowercase().replace(':', "-");
        for rel in [
            format!("ipxe/{dashes}.ipxe"),
            format!("grub.cfg-01-{dashes}"),
            format!("pxelinux.cfg/01-{dashes}"),
        ] {
            let text = std::fs::read_to_string(pxe.join(&rel)).expect(&rel);
            assert!(
                text.contains(&format!(
                    "inst.ks=http://{}/ks/{host} inst.ks.sendmac",
                    srv.addr
                )),
                "{rel}: {text}"
            );
            assert!(text.contains("installer/centos-7.9.2009/vmlinuz"), "{rel}");
            assert!(
                text.contains("installer/centos-7.9.2009/initrd.img"),
                "{rel}"
            );
            let r = srv.get(&format!("/pxe/{rel}"));
            assert_eq!(r.status, 200, "{rel}");
        }
    }
    let entries = std::fs::read_dir(pxe.join("ipxe")).expect("ipxe/").count();
    assert_eq!(entries, 2, "one script per node with a mac");
    assert!(
        srv.log()
            .contains("pxe: node master-01 has no mac in the cluster file: no PXE entry"),
        "{}",
        srv.log()
    );
    let conf = std::fs::read_to_string(pxe.join("dnsmasq.conf")).expect("dnsmasq.conf");
    assert!(
        conf.contains("dhcp-range=127.0.0.0,proxy,255.255.255.0"),
        "{conf}"
    );
    assert!(!conf.contains("dhcp-host="), "{conf}");
    dnsmasq_test(&pxe.join("dnsmasq.conf"));

    // Full DHCP, written by the library function into another --out: a fixed address per mac.
    let loaded = ezimg::cluster::load(Some(&site.cluster)).expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = ezimg::serve::pxe::PxeOptions {
        base_url: "http://127.0.0.201:8080".into(),
        kernel: None,
        initrd: None,
        repo: Some("http://127.0.0.201:8080/repo".into()),
        append: None,
        dhcp: ezimg::serve::dnsmasq::DhcpMode::Full,
    };
    let notes = ezimg::serve::pxe::write(dir.path(), &loaded.cluster, &o).expect("write");
    assert_eq!(notes.len(), 7, "{notes:?}");
    let full = std::fs::read_to_string(dir.path().join("pxe/dnsmasq.conf")).expect("conf");
    assert!(
        full.contains("dhcp-host=52:54:00:00:02:11,127.0.0.211,slb-01\n"),
        "{full}"
    );
    assert!(
        full.contains("dhcp-host=52:54:00:ab:02:31,127.0.0.231,worker-01\n"),
        "{full}"
    );
    assert!(
        full.contains("dhcp-range=127.0.0.0,static,255.255.255.0"),
        "{full}"
    );
    let grub = std::fs::read_to_string(dir.path().join("pxe/grub.cfg-01-52-54-00-00-02-11"))
        .expect("grub");
    assert!(
        grub.contains("inst.repo=http://127.0.0.201:8080/repo"),
        "{grub}"
    );
    dnsmasq_test(&dir.path().join("pxe/dnsmasq.conf"));
    // Rewriting is byte-identical, and a node that lost its mac loses its entries.
    let before = std::fs::read(dir.path().join("pxe/dnsmasq.conf")).expect("read");
    ezimg::serve::pxe::write(dir.path(), &loaded.cluster, &o).expect("write");
    assert_eq!(
        before,
        std::fs::read(dir.path().join("pxe/dnsmasq.conf")).expect("read")
    );
    let mut c = loaded.cluster.clone();
    for n in &mut c.nodes {
        if n.hostname == "slb-01" {
            n.mac = None;
        }
    }
    std::fs::create_dir_all(dir.path().join("pxe/installer/centos-7.9.2009")).expect("mkdir");
    std::fs::write(
        dir.path().join("pxe/installer/centos-7.9.2009/vmlinuz"),
        "k",
    )
    .expect("w");
    ezimg::serve::pxe::write(dir.path(), &c, &o).expect("write");
    for rel in [
        "pxe/grub.cfg-01-52-54-00-00-02-11",
        "pxe/ipxe/52-54-00-00-02-11.ipxe",
        "pxe/pxelinux.cfg/01-52-54-00-00-02-11",
    ] {
        assert!(!dir.path().join(rel).exists(), "{rel} left behind");
    }
    assert!(
        dir.path()
            .join("pxe/installer/centos-7.9.2009/vmlinuz")
            .is_file()
    );
    assert!(dir.path().join("pxe/ipxe/52-54-00-ab-02-31.ipxe").is_file());
}

/// `dnsmasq --test` parses the whole configuration and exits non-zero on any error.
fn dnsmasq_test(conf: &Path) {
    let bin = ["/usr/sbin/dnsmasq", "/sbin/dnsmasq"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let Some(bin) = bin else {
        support::skip_or_fail(
            &support::current_test(),
            "dnsmasq is not installed (scripts/test-deps.sh installs dnsmasq-base)",
        );
        return;
    };
    let o = Command::new(bin)
        .arg("--test")
        .arg(format!("--conf-file={}", conf.display()))
        .output()
        .expect("dnsmasq runs");
    assert!(
        o.status.success(),
        "dnsmasq --test {}: {}{}",
        conf.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn graceful_shutdown_finishes_the_download_in_flight() {
    let site = Site::new();
    let mut srv = site.serve(&["--max-requests", "4"]);
    let mut s = connect(srv.addr, None);
    send(&mut s, "GET", &format!("/artifacts/{CRICTL}"), &[]);
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200);
    let mut first = vec![0u8; 1000];
    r.read_exact(&mut first).expect("first bytes");
    srv.terminate();
    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(srv.addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("rest of the body");
    first.extend_from_slice(&rest);
    assert_eq!(sha256(&first), sha256(&site.artifact));
    let status = srv.child.wait().expect("wait");
    assert!(status.success(), "{status:?}\n{}", srv.log());
    assert!(srv.log().contains("stopped: requests in flight finished"));
}

#[test]
fn bad_inputs_are_refused_clearly() {
    let site = Site::new();
    // Not a build output.
    let empty = tempfile::tempdir().expect("tempdir");
    let o = site
        .ezimg("serve")
        .arg("--from")
        .arg(empty.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("runs");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ezimg-outputs.json"), "{err}");
    // Another cluster's output.
    let other = site.dir.path().join("other.toml");
    std::fs::write(
        &other,
        cluster_text().replace("name = \"ezk8s\"", "name = \"other\""),
    )
    .expect("write");
    let o = ezimg()
        .arg("serve")
        .arg("-c")
        .arg(&other)
        .arg("--from")
        .arg(&site.out)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("runs");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds the outputs of cluster"), "{err}");
}

#[test]
fn requests_beyond_the_bound_wait_for_a_slot() {
    // Bigger than what the kernel's socket buffers can take (tcp_wmem's 4 MiB at most).
    let site = Site::with_artifact_size(12_000_000);
    let srv = site.serve(&["--max-requests", "1"]);
    // A client that asks for the big artifact and reads nothing: its body cannot be sent (a
    // small receive window), so it keeps the one slot.
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    sock.connect(&srv.addr.into()).expect("connect");
    let mut hog: TcpStream = sock.into();
    send(&mut hog, "GET", &format!("/artifacts/{CRICTL}"), &[]);
    std::thread::sleep(Duration::from_millis(500));
    let addr = srv.addr;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = request(addr, None, "/out/slb/ezimg-slb-bundle.tar.gz.sha256", &[]);
        let _ = tx.send(r.status);
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "a second request was answered while the only slot was taken"
    );
    // The hog goes away: its slot is freed and the waiting request is answered.
    drop(hog);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).expect("answered"),
        200
    );
}

#[test]
fn a_connection_that_sends_no_request_head_is_closed_after_the_header_timeout() {
    let site = Site::new();
    let srv = site.serve(&["--header-timeout", "1"]);
    let mut silent = connect(srv.addr, None);
    let mut half = connect(srv.addr, None);
    half.write_all(b"GET /boot.ipxe HTTP/1.1\r\nHost: te")
        .expect("write");
    let started = Instant::now();
    for s in [&mut silent, &mut half] {
        let mut buf = Vec::new();
        // The server closes the connection (perhaps after a 408 answer): EOF, not our timeout.
        s.read_to_end(&mut buf).expect("closed by the server");
        let text = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    // Others are served meanwhile and after.
    assert_eq!(srv.get("/boot.ipxe").status, 200);
}

/// Every file under `dir` (path relative to it) with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under").display().to_string();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

#[test]
fn build_format_pxe_writes_the_tree_that_serve_then_serves() {
    let site = Site::new();
    let pxe = site.out.join("pxe");
    let ks_before = site.read("worker/worker-01/ks.cfg");
    // What `serve` leaves behind for a node that has since left, and the operator's files.
    std::fs::create_dir_all(pxe.join("ipxe")).expect("mkdir");
    std::fs::write(pxe.join("ipxe/52-54-00-ee-ee-ee.ipxe"), "#!ipxe\n").expect("write");
    std::fs::write(pxe.join("grub.cfg-01-52-54-00-ee-ee-ee"), "old").expect("write");
    std::fs::create_dir_all(pxe.join("installer/centos-7.9.2009")).expect("mkdir");
    std::fs::write(pxe.join("installer/centos-7.9.2009/vmlinuz"), "kernel").expect("write");
    let url = "http://10.9.8.7:8081";
    let build = |extra: &[&str]| {
        let o = site
            .ezimg("build")
            .args(["--all", "--format", "pxe", "--out"])
            .arg(&site.out)
            .args(extra)
            .output()
            .expect("build runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = build(&["--serve-url", &format!("{url}/")]);
    assert!(
        err.contains("pxe: node master-01 has no mac in the cluster file"),
        "{err}"
    );
    for (host, _, mac) in [SLB, WORKER] {
        let dashes = mac.to_ascii_lowercase().replace(':', "-");
        for rel in [
            format!("ipxe/{dashes}.ipxe"),
            format!("grub.cfg-01-{dashes}"),
            format!("pxelinux.cfg/01-{dashes}"),
        ] {
            let text = std::fs::read_to_string(pxe.join(&rel)).expect(&rel);
            assert!(
                text.contains(&format!("inst.ks={url}/ks/{host} inst.ks.sendmac")),
                "{rel}: {text}"
            );
        }
    }
    let conf = std::fs::read_to_string(pxe.join("dnsmasq.conf")).expect("dnsmasq.conf");
    assert!(conf.contains(&format!(",{url}/boot.ipxe\n")), "{conf}");
    let root = std::fs::canonicalize(&pxe).expect("canonical pxe/");
    assert!(
        conf.contains(&format!("tftp-root={}\n", root.display())),
        "the TFTP root is the final tree, not the staging folder: {conf}"
    );
    dnsmasq_test(&pxe.join("dnsmasq.conf"));
    assert!(
        std::fs::read_to_string(pxe.join("boot.ipxe"))
            .expect("boot.ipxe")
            .contains(&format!("chain --autofree {url}/pxe/ipxe/"))
    );
    // The stale generated files went, the operator's stayed, the roles' outputs are untouched.
    assert!(!pxe.join("ipxe/52-54-00-ee-ee-ee.ipxe").exists());
    assert!(!pxe.join("grub.cfg-01-52-54-00-ee-ee-ee").exists());
    assert_eq!(
        std::fs::read(pxe.join("installer/centos-7.9.2009/vmlinuz")).expect("kept"),
        b"kernel"
    );
    assert_eq!(site.read("worker/worker-01/ks.cfg"), ks_before);
    assert_eq!(
        std::fs::read_dir(pxe.join("ipxe")).expect("ipxe/").count(),
        2
    );
    // Recorded as the cluster's PXE output; the operator's file is not.
    let manifest: serde_json::Value =
        serde_json::from_slice(&site.read("ezimg-outputs.json")).expect("manifest");
    assert_eq!(manifest["files"]["pxe/dnsmasq.conf"]["kind"], "pxe");
    assert!(manifest["files"]["pxe/dnsmasq.conf"].get("role").is_none());
    assert!(manifest["files"]["pxe/installer/centos-7.9.2009/vmlinuz"].is_null());
    assert_eq!(
        manifest["files"]["worker/worker-01/ks.cfg"]["kind"],
        "kickstart"
    );
    // Twice: byte-identical.
    let first = tree(&pxe);
    build(&["--serve-url", url]);
    assert_eq!(tree(&pxe), first, "a second build changed the PXE tree");
    // A build of the roles' formats keeps the cluster's PXE output and its record.
    let o = site
        .ezimg("build")
        .args(["--role", "worker", "--out"])
        .arg(&site.out)
        .output()
        .expect("build runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(tree(&pxe), first, "a role build changed the PXE tree");
    let manifest: serde_json::Value =
        serde_json::from_slice(&site.read("ezimg-outputs.json")).expect("manifest");
    assert_eq!(manifest["files"]["pxe/boot.ipxe"]["kind"], "pxe");

    // No --serve-url: what serve on 0.0.0.0:8080 would use, the ops node's address.
    build(&[]);
    let conf = std::fs::read_to_string(pxe.join("dnsmasq.conf")).expect("dnsmasq.conf");
    assert!(
        conf.contains(",http://127.0.0.201:8080/boot.ipxe\n"),
        "{conf}"
    );

    // serve --from that out: serves it, with its own URL.
    let srv = site.serve(&[]);
    let r = srv.get("/boot.ipxe");
    assert_eq!(r.status, 200, "{}", srv.log());
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains(&format!("chain --autofree http://{}/pxe/ipxe/", srv.addr)),
        "{text}"
    );
    assert_eq!(srv.get("/out/pxe/dnsmasq.conf").status, 200);
    assert_eq!(
        srv.get("/pxe/installer/centos-7.9.2009/vmlinuz").body,
        b"kernel"
    );
}

#[test]
fn build_refuses_a_serve_url_that_is_not_http() {
    let site = Site::new();
    let before = tree(&site.out);
    for (args, want) in [
        (
            &["--format", "pxe", "--serve-url", "ftp://10.0.0.1/"][..],
            "not an http(s) URL",
        ),
        (
            &["--format", "pxe", "--serve-url", "10.0.0.1:8080"][..],
            "not a URL",
        ),
        (
            &["--format", "bundle", "--serve-url", "http://10.0.0.1/"][..],
            "--serve-url is for --format pxe",
        ),
    ] {
        let o = site
            .ezimg("build")
            .arg("--all")
            .args(args)
            .arg("--out")
            .arg(&site.out)
            .output()
            .expect("build runs");
        assert!(!o.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--serve-url") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    assert_eq!(tree(&site.out), before, "a refused build changed --out");
    // A cluster without an ops node and no --serve-url: told what to pass.
    let text = cluster_text();
    let at = text.find("hostname = \"ops\"").expect("the ops node");
    let start = text[..at].rfind("[[node]]").expect("its table");
    let end = text[at..].find("[[node]]").map_or(text.len(), |e| at + e);
    let no_ops = format!("{}{}", &text[..start], &text[end..]);
    let c = site.dir.path().join("no-ops.toml");
    std::fs::write(&c, no_ops).expect("write");
    let o = ezimg()
        .env("EZIMG_CACHE_DIR", &site.cache)
        .args(["build", "-c"])
        .arg(&c)
        .args(["--all", "--format", "pxe", "--out"])
        .arg(site.dir.path().join("out-no-ops"))
        .output()
        .expect("build runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no ops node") && err.contains("--serve-url"),
        "{err}"
    );
    assert!(!site.dir.path().join("out-no-ops").exists());
}

/// `--append` goes verbatim into the boot configs: a line break (which would end the boot line
/// and start a command of its own) is refused before anything is written.
#[test]
fn append_with_a_line_break_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = ezimg()
        .arg("serve")
        .arg("--from")
        .arg(dir.path())
        .args(["--append", "console=ttyS0\nshell"])
        .output()
        .expect("ezimg runs");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--append") && err.contains("no line break"),
        "{err}"
    );
    assert!(!dir.path().join("pxe").exists());
}

/// Under systemd (ezimg-serve.service, `Type=notify`): `READY=1` on `$NOTIFY_SOCKET` only once
/// the PXE tree and dnsmasq.conf are written and the socket is bound, and the operator's
/// settings from the unit's environment file (`EZIMG_SERVE_APPEND`, `EZIMG_SERVE_URL`) are on
/// the boot lines, as the flags would put them.
#[test]
fn under_systemd_it_says_ready_after_writing_the_pxe_tree_and_takes_settings_from_the_env() {
    use std::os::unix::net::UnixDatagram;
    let (s, first) = fixture();
    drop(first);
    let sock_path = s.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    let log = s.dir.path().join("serve-notify.log");
    let child = s
        .ezimg("serve")
        .arg("--from")
        .arg(&s.out)
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--listen", "127.0.0.1:0", "--dhcp", "full"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("EZIMG_SERVE_APPEND", "console=ttyS0,115200 inst.text")
        .env("EZIMG_SERVE_URL", "http://192.168.2.201:8080")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("serve starts");
    let _server = Server {
        child,
        addr: "127.0.0.1:1".parse().expect("addr"),
        log: log.clone(),
    };
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no notification: {e}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means written: the conf dnsmasq reads, and the boot lines with the env's settings.
    let conf = String::from_utf8(s.read("pxe/dnsmasq.conf")).expect("utf-8");
    assert!(
        conf.contains("dhcp-boot=tag:ipxe,http://192.168.2.201:8080/boot.ipxe\n"),
        "{conf}"
    );
    let scripts: Vec<String> = std::fs::read_dir(s.out.join("pxe/ipxe"))
        .expect("ipxe dir")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("script"))
        .collect();
    assert!(!scripts.is_empty());
    for sc in &scripts {
        assert!(
            sc.lines()
                .any(|l| l.starts_with("kernel http://192.168.2.201:8080/pxe/")
                    && l.ends_with(" console=ttyS0,115200 inst.text")),
            "{sc}"
        );
    }
}
