//! `ezimg images` against a real registry (Debian's `docker-registry`, CNCF distribution 2.8)
//! on 127.0.0.1: the tests make small OCI images themselves (a two-platform index), seed an
//! "upstream" registry through the distribution API, and check pull by digest, push to a second
//! ("ops") registry, a tampered blob refused with nothing cached, a pull cut mid-blob resumed
//! with Range, export/import, `list` and `ezimg lock` filling an image digest.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

// ---- the registry --------------------------------------------------------------------------

struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A CA and a server certificate for 127.0.0.1, PEM files in `dir`: (ca, cert, key).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let (a, b, c) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&a, ca_cert.pem()).expect("write");
    std::fs::write(&b, cert.pem()).expect("write");
    std::fs::write(&c, key.serialize_pem()).expect("write");
    (a, b, c)
}

/// Start `docker-registry` on 127.0.0.1 with its own storage; TLS with `tls = (cert, key)`.
fn start_registry(bin: &Path, tls: Option<(&Path, &Path)>) -> Registry {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    let port = free_port();
    let tls_yaml = match tls {
        Some((c, k)) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            c.display(),
            k.display()
        ),
        None => String::new(),
    };
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: 127.0.0.1:{port}\n{tls_yaml}",
        storage.display()
    );
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).expect("write config");
    let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start docker-registry");
    let reg = Registry {
        child,
        port,
        storage,
        _dir: dir,
    };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "docker-registry did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    reg
}

fn registry_bin() -> Option<PathBuf> {
    let found = support::have_tool("docker-registry");
    if found.is_none() {
        support::skip_or_fail(
            &support::current_test(),
            "docker-registry is not installed (scripts/test-deps.sh installs the Debian package)",
        );
    }
    found
}

fn client(ca: Option<&Path>) -> reqwest::Client {
    let mut b = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("ca");
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"));
    }
    b.build().expect("client")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ---- test images ---------------------------------------------------------------------------

/// One platform's image: blobs (config, layer) and its manifest.
struct PlatformImage {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

/// A gzip'd tar with `hello.txt` and `size` bytes of noise (which gzip cannot shrink).
fn layer(arch: &str, size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut noise = vec![0u8; size];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size as u64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut tb = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("hello.txt", format!("hello from {arch}\n").into_bytes()),
        ("noise.bin", noise),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tb.append_data(&mut h, name, data.as_slice()).expect("tar");
    }
    let tar = tb.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    (gz.finish().expect("gzip"), tar)
}

fn platform_image(arch: &str, size: usize) -> PlatformImage {
    let (layer, tar) = layer(arch, size);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux", "config": {},
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
    PlatformImage {
        layer,
        config,
        manifest,
    }
}

/// linux/amd64 (a 3 MiB layer) and linux/arm64 (small), and their OCI index.
struct TestImage {
    amd64: PlatformImage,
    arm64: PlatformImage,
    index: Vec<u8>,
}

fn test_image() -> TestImage {
    let amd64 = platform_image("amd64", 3 << 20);
    let arm64 = platform_image("arm64", 4096);
    let desc = |p: &PlatformImage, arch: &str| {
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&p.manifest), "size": p.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"}})
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [desc(&arm64, "arm64"), desc(&amd64, "amd64")]
    }))
    .expect("json");
    TestImage {
        amd64,
        arm64,
        index,
    }
}

/// Seed `repo:tag` into a registry through the distribution API (what any pusher does).
fn seed(base: &str, ca: Option<&Path>, repo: &str, tag: &str, img: &TestImage) {
    let c = client(ca);
    rt().block_on(async {
        for p in [&img.amd64, &img.arm64] {
            for blob in [&p.config, &p.layer] {
                let r = c
                    .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                    .send()
                    .await
                    .expect("POST");
                assert_eq!(r.status(), 202);
                let loc = r.headers()["location"].to_str().expect("loc").to_string();
                let mut url = reqwest::Url::parse(base)
                    .and_then(|b| b.join(&loc))
                    .expect("url");
                url.query_pairs_mut().append_pair("digest", &sha(blob));
                let r = c.put(url).body(blob.clone()).send().await.expect("PUT");
                assert_eq!(r.status(), 201);
            }
            let r = c
                .put(format!("{base}/v2/{repo}/manifests/{}", sha(&p.manifest)))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(p.manifest.clone())
                .send()
                .await
                .expect("PUT manifest");
            assert_eq!(r.status(), 201, "{:?}", r.text().await);
        }
        let r = c
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", "application/vnd.oci.image.index.v1+json")
            .body(img.index.clone())
            .send()
            .await
            .expect("PUT index");
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    });
}

// ---- ezimg ---------------------------------------------------------------------------------

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ezimg(args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_ezimg"))
        .args(args)
        .env_remove("EZIMG_LOCK")
        .env_remove("EZIMG_CACHE_DIR")
        .env_remove("EZIMG_CLUSTER")
        .output()
        .expect("run ezimg");
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn write_lock(dir: &Path, name: &str, reference: &str, digest: Option<&str>) -> PathBuf {
    let p = dir.join(name);
    let d = digest.map_or(String::new(), |d| format!("digest = \"{d}\"\n"));
    std::fs::write(
        &p,
        format!(
            "lock_version = 1\n\n# test image\n[[image]]\nreference = \"{reference}\"\n{d}used_by = \"test\"\n"
        ),
    )
    .expect("write lock");
    p
}

fn cache_entries(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join("sha256"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn lock_pull_push_list_export_import() {
    let Some(bin) = registry_bin() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let (ca, cert, key) = tls_files(w);
    let up = start_registry(&bin, Some((&cert, &key)));
    let ops = start_registry(&bin, Some((&cert, &key)));
    let img = test_image();
    seed(
        &format!("https://127.0.0.1:{}", up.port),
        Some(&ca),
        "ezimg-test/small",
        "1.0",
        &img,
    );
    let reference = format!("127.0.0.1:{}/ezimg-test/small:1.0", up.port);

    // Unpinned: pull refuses and names `ezimg lock`; lock records the index digest (TOFU).
    let lock = write_lock(w, "site.lock", &reference, None);
    let cache_a = w.join("cache-a");
    let o = ezimg(&[
        "images",
        "pull",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_a),
        "--ca-file",
        s(&ca),
    ]);
    assert!(!o.ok && o.stderr.contains("ezimg lock"), "{}", o.stderr);
    let o = ezimg(&[
        "images",
        "list",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_a),
    ]);
    assert!(
        o.ok && o.stdout.contains("unpinned"),
        "{}{}",
        o.stdout,
        o.stderr
    );
    // Without the CA the registry's certificate is refused.
    let o = ezimg(&["lock", "--lock", s(&lock), "--cache-dir", s(&cache_a)]);
    assert!(!o.ok, "lock trusted an unknown CA: {}", o.stderr);
    let o = ezimg(&[
        "lock",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_a),
        "--registry-ca-file",
        s(&ca),
    ]);
    assert!(
        o.ok && o.stderr.contains("TRUST ON FIRST USE"),
        "{}",
        o.stderr
    );
    let text = std::fs::read_to_string(&lock).expect("lock");
    assert!(
        text.contains(&format!("digest = \"{}\"", sha(&img.index))),
        "{text}"
    );
    assert!(text.contains("# test image"), "comments kept: {text}");

    // Pull by digest: the amd64 image only, verified into the cache's OCI layout.
    let o = ezimg(&[
        "images",
        "pull",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_a),
        "--ca-file",
        s(&ca),
    ]);
    assert!(o.ok, "{}", o.stderr);
    let mut want = vec![
        sha(&img.index),
        sha(&img.amd64.manifest),
        sha(&img.amd64.config),
        sha(&img.amd64.layer),
    ];
    want.sort();
    assert_eq!(
        cache_entries(&cache_a),
        want,
        "the arm64 blobs are not pulled"
    );
    for e in &want {
        let p = cache_a.join("images/blobs/sha256").join(&e[7..]);
        assert_eq!(sha(&std::fs::read(&p).expect("layout blob")), *e);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache_a.join("images/index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], sha(&img.amd64.manifest));
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        reference.as_str()
    );
    assert!(cache_a.join("images/oci-layout").is_file());
    let o = ezimg(&[
        "images",
        "list",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_a),
    ]);
    assert!(o.ok, "{}", o.stderr);
    let line = o.stdout.lines().next().unwrap_or_default().to_string();
    assert!(
        line.starts_with(&reference)
            && line.contains(&sha(&img.index))
            && line.contains(&format!("cached {}", sha(&img.amd64.manifest))),
        "{line}"
    );
    // Again: from the cache, nothing downloaded.
    let o = ezimg(&[
        "images",
        "pull",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_a),
        "--ca-file",
        s(&ca),
    ]);
    assert!(
        o.ok && o.stderr.contains("already in the cache"),
        "{}",
        o.stderr
    );

    // Export, import into an empty cache, push from there to the ops registry.
    let tar = w.join("site.tar");
    let o = ezimg(&[
        "export",
        s(&tar),
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_a),
    ]);
    assert!(o.ok, "{}", o.stderr);
    let cache_b = w.join("cache-b");
    let o = ezimg(&["import", s(&tar), "--cache-dir", s(&cache_b)]);
    assert!(
        o.ok && o.stderr.contains("imported 1 image(s)"),
        "{}",
        o.stderr
    );
    assert_eq!(cache_entries(&cache_b), want);
    let o = ezimg(&[
        "images",
        "list",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_b),
    ]);
    assert!(o.stdout.contains("cached sha256:"), "{}", o.stdout);
    let ops_addr = format!("127.0.0.1:{}", ops.port);
    let o = ezimg(&[
        "images",
        "push",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_b),
        "--registry",
        &ops_addr,
    ]);
    assert!(
        !o.ok,
        "pushed without trusting the registry's CA: {}",
        o.stderr
    );
    let o = ezimg(&[
        "images",
        "push",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_b),
        "--registry",
        &ops_addr,
        "--ca-file",
        s(&ca),
    ]);
    assert!(
        o.ok && o.stderr.contains("2 blob(s) uploaded"),
        "{}",
        o.stderr
    );
    // The ops registry has it where containerd's mirror request looks (path without the
    // upstream registry), the tag naming the amd64 manifest, every blob intact.
    let c = client(Some(&ca));
    rt().block_on(async {
        let base = format!("https://{ops_addr}/v2/ezimg-test/small");
        let r = c
            .get(format!("{base}/manifests/1.0"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-content-digest"],
            sha(&img.amd64.manifest).as_str()
        );
        assert_eq!(
            r.bytes().await.expect("body").as_ref(),
            img.amd64.manifest.as_slice()
        );
        for b in [&img.amd64.config, &img.amd64.layer] {
            let got = c
                .get(format!("{base}/blobs/{}", sha(b)))
                .send()
                .await
                .expect("GET");
            assert_eq!(got.bytes().await.expect("body").as_ref(), b.as_slice());
        }
    });
    // A second push finds the blobs there.
    let o = ezimg(&[
        "images",
        "push",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache_b),
        "--registry",
        &ops_addr,
        "--ca-file",
        s(&ca),
    ]);
    assert!(
        o.ok && o.stderr.contains("0 blob(s) uploaded, 2 already there"),
        "{}",
        o.stderr
    );

    // Pull back from the ops registry (--from), pinned by the single manifest's digest.
    let lock2 = write_lock(w, "ops.lock", &reference, Some(&sha(&img.amd64.manifest)));
    let cache_c = w.join("cache-c");
    let o = ezimg(&[
        "images",
        "pull",
        "--lock",
        s(&lock2),
        "--cache-dir",
        s(&cache_c),
        "--from",
        &ops_addr,
        "--ca-file",
        s(&ca),
    ]);
    assert!(o.ok, "{}", o.stderr);
    let mut want_c = vec![
        sha(&img.amd64.manifest),
        sha(&img.amd64.config),
        sha(&img.amd64.layer),
    ];
    want_c.sort();
    assert_eq!(cache_entries(&cache_c), want_c);
    // A pin the registry's content does not match is refused.
    let bad = write_lock(w, "bad.lock", &reference, Some(&sha(b"something else")));
    let cache_d = w.join("cache-d");
    let o = ezimg(&[
        "images",
        "pull",
        "--lock",
        s(&bad),
        "--cache-dir",
        s(&cache_d),
        "--from",
        &ops_addr,
        "--ca-file",
        s(&ca),
    ]);
    assert!(!o.ok, "pulled a manifest that is not the pinned one");
    assert!(cache_entries(&cache_d).is_empty());
}

#[test]
fn a_tampered_blob_is_refused_and_nothing_cached() {
    let Some(bin) = registry_bin() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let up = start_registry(&bin, None);
    let img = test_image();
    seed(
        &format!("http://127.0.0.1:{}", up.port),
        None,
        "ezimg-test/small",
        "1.0",
        &img,
    );
    // Flip one byte of the layer in the registry's storage (same size: only the hash tells).
    let hexd = &sha(&img.amd64.layer)[7..];
    let data = up
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hexd[..2])
        .join(hexd)
        .join("data");
    let mut bytes = std::fs::read(&data).expect("stored blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).expect("tamper");
    let reference = format!("127.0.0.1:{}/ezimg-test/small:1.0", up.port);
    let lock = write_lock(w, "site.lock", &reference, Some(&sha(&img.index)));
    let cache = w.join("cache");
    let o = ezimg(&[
        "images",
        "pull",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache),
        "--plain-http",
    ]);
    assert!(!o.ok, "pulled a tampered blob: {}", o.stderr);
    assert!(
        o.stderr.contains("refused") && o.stderr.contains(hexd),
        "{}",
        o.stderr
    );
    assert!(
        cache_entries(&cache).is_empty(),
        "{:?}",
        cache_entries(&cache)
    );
    assert!(!cache.join("images/index.json").exists());
    assert!(!cache.join("tmp").join(format!("blob-{hexd}.part")).exists());
    let o = ezimg(&[
        "images",
        "list",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache),
    ]);
    assert!(o.stdout.contains("not pulled"), "{}", o.stdout);
}

/// A TCP proxy that cuts the first response to a request for `cut_path` after `cut_after`
/// bytes, and records every request head it forwards.
struct CuttingProxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

fn cutting_proxy(upstream: u16, cut_path: String, cut_after: usize) -> CuttingProxy {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let cut_done = Arc::new(AtomicBool::new(false));
    let reqs = requests.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let cut_now = Arc::new(AtomicBool::new(false));
            let (mut c_r, mut s_w) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let (reqs, cut_path, cut_done, cut_now2) = (
                reqs.clone(),
                cut_path.clone(),
                cut_done.clone(),
                cut_now.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = c_r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.contains(&cut_path) && !cut_done.swap(true, Ordering::SeqCst) {
                        cut_now2.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut r) = reqs.lock() {
                        r.push(text);
                    }
                    if s_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_w.shutdown(Shutdown::Write);
            });
            let (mut s_r, mut c_w) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent_since_cut = 0usize;
                while let Ok(n) = s_r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut n = n;
                    if cut_now.load(Ordering::SeqCst) {
                        n = n.min(cut_after - sent_since_cut);
                        sent_since_cut += n;
                    }
                    if c_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if cut_now.load(Ordering::SeqCst) && sent_since_cut >= cut_after {
                        let _ = c_w.shutdown(Shutdown::Both);
                        let _ = s_r.shutdown(Shutdown::Both);
                        break;
                    }
                }
                let _ = c_w.shutdown(Shutdown::Write);
            });
        }
    });
    CuttingProxy { port, requests }
}

#[test]
fn an_interrupted_pull_resumes_with_range() {
    let Some(bin) = registry_bin() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let up = start_registry(&bin, None);
    let img = test_image();
    seed(
        &format!("http://127.0.0.1:{}", up.port),
        None,
        "ezimg-test/small",
        "1.0",
        &img,
    );
    let layer = sha(&img.amd64.layer);
    let proxy = cutting_proxy(up.port, format!("/blobs/{layer}"), 1 << 20);
    let reference = format!("127.0.0.1:{}/ezimg-test/small:1.0", up.port);
    let lock = write_lock(w, "site.lock", &reference, Some(&sha(&img.index)));
    let cache = w.join("cache");
    let from = format!("127.0.0.1:{}", proxy.port);
    let pull = |retries: &str| {
        ezimg(&[
            "images",
            "pull",
            "--lock",
            s(&lock),
            "--cache-dir",
            s(&cache),
            "--plain-http",
            "--from",
            &from,
            "--retries",
            retries,
            "--timeout",
            "10",
        ])
    };
    // Cut mid-blob, no retries: the pull fails, the cache has no entry, the part is kept.
    let o = pull("0");
    assert!(!o.ok, "a cut pull succeeded: {}", o.stderr);
    assert!(o.stderr.contains("next pull resumes"), "{}", o.stderr);
    assert!(
        cache_entries(&cache).is_empty(),
        "{:?}",
        cache_entries(&cache)
    );
    assert!(!cache.join("images/index.json").exists());
    let part = cache.join("tmp").join(format!("blob-{}.part", &layer[7..]));
    let have = std::fs::metadata(&part)
        .expect("partial download kept")
        .len();
    assert!(
        have > 0 && have < img.amd64.layer.len() as u64,
        "part holds {have} of {} bytes",
        img.amd64.layer.len()
    );
    // The next pull asks for the rest only and completes, verified.
    let o = pull("0");
    assert!(o.ok, "{}", o.stderr);
    let reqs = proxy.requests.lock().expect("requests").clone();
    let ranged: Vec<&String> = reqs
        .iter()
        .filter(|r| {
            r.contains(&format!("/blobs/{layer}"))
                && r.to_ascii_lowercase()
                    .contains(&format!("range: bytes={have}-"))
        })
        .collect();
    assert_eq!(
        ranged.len(),
        1,
        "no Range request from byte {have}: {reqs:#?}"
    );
    assert!(!part.exists());
    let entry = cache.join("sha256").join(&layer[7..]);
    assert_eq!(sha(&std::fs::read(&entry).expect("entry")), layer);
    let o = ezimg(&[
        "images",
        "list",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache),
    ]);
    assert!(
        o.stdout
            .contains(&format!("cached {}", sha(&img.amd64.manifest))),
        "{}",
        o.stdout
    );
}

/// The ops role's registry layer (opt-in `registry = "distribution"`): its rendered config runs
/// Debian's docker-registry with the certificate the secret store issues from the cluster CA;
/// TLS verifies against the cluster CA alone; `images push` (default target: registry_mirror)
/// fills it; the key is in the ops node's seed only, never in the bundle.
#[test]
fn the_ops_registry_serves_with_a_certificate_from_the_cluster_ca() {
    use ezimg::render::secret_placeholder;
    let Some(bin) = registry_bin() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let port = free_port();
    let text = support::edit(
        &support::with_os(&support::default_cluster(), "el9"),
        "registry_mirror = \"192.168.2.201\"",
        &format!("registry_mirror = \"127.0.0.1:{port}\""),
    ) + &format!("\n[roles.ops]\nregistry = \"distribution\"\nregistry_port = {port}\n");
    let cluster_file = w.join("cluster.toml");
    std::fs::write(&cluster_file, text).expect("write cluster");
    let out = w.join("out");
    let o = ezimg(&[
        "build",
        "-c",
        s(&cluster_file),
        "--node",
        "ops",
        "--format",
        "bundle,cloud-init",
        "--out",
        s(&out),
        "--allow-incomplete",
    ]);
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("issued the registry's certificate for 127.0.0.1"),
        "{}",
        o.stderr
    );
    let store = w.join("cluster.secrets");
    let key = std::fs::read_to_string(store.join("pki/registry.key")).expect("registry key");
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    // The key: in the node's seed (0600), not in the bundle.
    let user_data = std::fs::read_to_string(out.join("ops/ops/seed/user-data")).expect("seed");
    assert!(
        user_data.contains(key.lines().nth(1).unwrap_or("?")),
        "the seed lacks the key"
    );
    let bundle = std::fs::read(out.join("ops/ezimg-ops-bundle.tar.gz")).expect("bundle");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(bundle.as_slice())
        .read_to_end(&mut tar)
        .expect("gunzip");
    let tar_text = String::from_utf8_lossy(&tar);
    assert!(!tar_text.contains(&key_body[..40]) && tar_text.contains("registry_tls_key"));

    // The rendered config, with the node's secrets, run here: paths moved under the test dir.
    let loaded = ezimg::cluster::load(Some(&cluster_file)).expect("cluster");
    let tree = ezimg::data::DataTree::load(None).expect("tree");
    let catalog = ezimg::plan::Catalog::load(&tree).expect("catalog");
    let node = loaded
        .cluster
        .nodes
        .iter()
        .find(|n| n.hostname == "ops")
        .expect("ops node");
    let plan = ezimg::plan::plan_node(&catalog, &loaded, node).expect("plan");
    let (st, _) =
        ezimg::secrets::open(&store, &loaded, ezimg::secrets::IfMissing::Fail).expect("store");
    let secrets = ezimg::secrets::node_secrets(&st, &plan).expect("node secrets");
    let root = w.join("root");
    let storage = w.join("storage");
    for f in plan.applied().flat_map(|l| l.files.iter()) {
        let Some(rel) = f.dest.strip_prefix("/etc/ezimg/registry/") else {
            continue;
        };
        let mut t = String::from_utf8(f.content.clone()).expect("utf-8");
        for (n, v) in &secrets {
            t = t.replace(&secret_placeholder(n), v);
        }
        let t = t
            .replace("/etc/ezimg/registry/", &format!("{}/", root.display()))
            .replace("/var/lib/ezimg-registry", s(&storage))
            .replace(
                &format!("addr: \":{port}\""),
                &format!("addr: \"127.0.0.1:{port}\""),
            );
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(root.join(rel), t).expect("write");
    }
    let config = std::fs::read_to_string(root.join("config.yml")).expect("config.yml");
    assert!(config.contains(&format!("127.0.0.1:{port}")), "{config}");
    let log = std::fs::File::create(w.join("registry.log")).expect("log");
    let child = Command::new(&bin)
        .arg("serve")
        .arg(root.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start docker-registry");
    let _ops = Registry {
        child,
        port,
        storage,
        _dir: tempfile::tempdir().expect("tempdir"),
    };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the ops registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ca = store.join("pki/ca.crt");
    rt().block_on(async {
        let r = client(Some(&ca))
            .get(format!("https://127.0.0.1:{port}/v2/"))
            .send()
            .await
            .expect("TLS to the ops registry verified against the cluster CA");
        assert_eq!(r.status(), 200);
    });

    // Push an image there: the default target is the cluster file's registry_mirror.
    let up = start_registry(&bin, None);
    let img = test_image();
    seed(
        &format!("http://127.0.0.1:{}", up.port),
        None,
        "ezimg-test/small",
        "1.0",
        &img,
    );
    let reference = format!("127.0.0.1:{}/ezimg-test/small:1.0", up.port);
    let lock = write_lock(w, "site.lock", &reference, Some(&sha(&img.index)));
    let cache = w.join("cache");
    let o = ezimg(&[
        "images",
        "pull",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache),
        "--plain-http",
    ]);
    assert!(o.ok, "{}", o.stderr);
    let o = ezimg(&[
        "images",
        "push",
        "-c",
        s(&cluster_file),
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache),
        "--ca-file",
        s(&ca),
    ]);
    assert!(
        o.ok && o
            .stderr
            .contains(&format!("127.0.0.1:{port}/ezimg-test/small:1.0")),
        "{}",
        o.stderr
    );

    // `check` reads the store and never writes it: a missing certificate is issued in memory
    // for the check, and left for the next build to write.
    for f in ["registry.crt", "registry.key", "registry.names"] {
        std::fs::remove_file(store.join("pki").join(f)).expect("remove registry cert file");
    }
    let o = ezimg(&["check", "-c", s(&cluster_file)]);
    assert!(
        o.ok && o.stderr.contains("the next `ezimg build` issues it"),
        "{}",
        o.stderr
    );
    assert!(!store.join("pki/registry.crt").exists() && !store.join("pki/registry.names").exists());
}

/// `ezimg build -c <cluster> --all --format images --lock <lock> --out <out>` on `cache`.
fn build_images(cluster: &Path, lock: &Path, cache: &Path, out: &Path) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_ezimg"))
        .args(["build", "-c", s(cluster), "--all", "--format", "images"])
        .args(["--lock", s(lock), "--out", s(out)])
        .env_remove("EZIMG_LOCK")
        .env_remove("EZIMG_CLUSTER")
        .env_remove("SOURCE_DATE_EPOCH")
        .env("EZIMG_CACHE_DIR", cache)
        .output()
        .expect("run ezimg build");
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Every file under `dir`: relative path -> (bytes, mtime in seconds).
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let mtime = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .expect("mtime")
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs();
            let rel = p.strip_prefix(dir).expect("under").display().to_string();
            out.insert(rel, (std::fs::read(&p).expect("read"), mtime));
        }
    }
    out
}

#[test]
fn build_format_images_writes_an_oci_layout_that_push_takes() {
    let Some(bin) = registry_bin() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let up = start_registry(&bin, None);
    let ops = start_registry(&bin, None);
    let img = test_image();
    seed(
        &format!("http://127.0.0.1:{}", up.port),
        None,
        "ezimg-test/small",
        "1.0",
        &img,
    );
    let reference = format!("127.0.0.1:{}/ezimg-test/small:1.0", up.port);
    let lock = write_lock(w, "site.lock", &reference, Some(&sha(&img.index)));
    let cluster = w.join("cluster.toml");
    std::fs::write(&cluster, support::default_cluster()).expect("write cluster");
    let cache = w.join("cache");
    let o = ezimg(&[
        "images",
        "pull",
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&cache),
        "--plain-http",
    ]);
    assert!(o.ok, "{}", o.stderr);

    let out = w.join("out");
    let o = build_images(&cluster, &lock, &cache, &out);
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stderr.contains("built images/"), "{}", o.stderr);
    assert!(
        !w.join("cluster.secrets").exists(),
        "the images alone need no secret store"
    );
    let layout = out.join("images");
    let files = files_under(&layout);
    // The amd64 image: manifest, config, layer, and the pinned index (so the pin can be checked).
    let mut want: Vec<String> = [
        &img.index,
        &img.amd64.manifest,
        &img.amd64.config,
        &img.amd64.layer,
    ]
    .iter()
    .map(|b| format!("blobs/sha256/{}", &sha(b)[7..]))
    .collect();
    want.extend(["index.json".to_string(), "oci-layout".to_string()]);
    want.sort();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), want);
    for (rel, (bytes, mtime)) in &files {
        if let Some(hex) = rel.strip_prefix("blobs/sha256/") {
            assert_eq!(sha(bytes), format!("sha256:{hex}"), "{rel} does not verify");
        }
        assert_eq!(*mtime, 946_684_800, "{rel}: not the fixed mtime");
    }
    let ol: serde_json::Value = serde_json::from_slice(&files["oci-layout"].0).expect("oci-layout");
    assert_eq!(ol["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&files["index.json"].0).expect("index.json");
    assert_eq!(index["schemaVersion"], 2);
    let m = &index["manifests"][0];
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(m["digest"], sha(&img.amd64.manifest));
    assert_eq!(m["size"], img.amd64.manifest.len());
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        reference.as_str()
    );
    // Recorded as the cluster's output, so `serve` serves it.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ezimg-outputs.json")).expect("read"))
            .expect("json");
    assert_eq!(manifest["files"]["images/index.json"]["kind"], "images");
    // Reproducible: again into the same and into another out, byte for byte.
    let o = build_images(&cluster, &lock, &cache, &out);
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(files_under(&layout), files);
    let out2 = w.join("out2");
    let o = build_images(&cluster, &lock, &cache, &out2);
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(files_under(&out2.join("images")), files);

    // Push from the out copy (no cache at all) into the ops registry.
    let ops_addr = format!("127.0.0.1:{}", ops.port);
    let o = ezimg(&[
        "images",
        "push",
        "-c",
        s(&cluster),
        "--lock",
        s(&lock),
        "--cache-dir",
        s(&w.join("empty-cache")),
        "--from",
        s(&layout),
        "--registry",
        &ops_addr,
        "--plain-http",
    ]);
    assert!(
        o.ok && o.stderr.contains("2 blob(s) uploaded"),
        "{}",
        o.stderr
    );
    rt().block_on(async {
        let c = client(None);
        let base = format!("http://{ops_addr}/v2/ezimg-test/small");
        let r = c
            .get(format!("{base}/manifests/{}", sha(&img.amd64.manifest)))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.bytes().await.expect("body").as_ref(),
            img.amd64.manifest.as_slice()
        );
        let r = c
            .get(format!("{base}/blobs/{}", sha(&img.amd64.layer)))
            .send()
            .await
            .expect("GET");
        assert_eq!(
            r.bytes().await.expect("body").as_ref(),
            img.amd64.layer.as_slice()
        );
    });
    // A folder that is no layout: said so.
    let o = ezimg(&[
        "images",
        "push",
        "-c",
        s(&cluster),
        "--lock",
        s(&lock),
        "--from",
        s(w),
        "--registry",
        &ops_addr,
        "--plain-http",
    ]);
    assert!(
        !o.ok && o.stderr.contains("not an OCI image layout"),
        "{}",
        o.stderr
    );

    // An image of the lock not in the cache: named, with `ezimg images pull`; --out unchanged.
    let absent = format!("127.0.0.1:{}/ezimg-test/absent:2.0", up.port);
    let text = std::fs::read_to_string(&lock).expect("lock");
    let lock_b = w.join("more.lock");
    std::fs::write(
        &lock_b,
        format!(
            "{text}\n[[image]]\nreference = \"{absent}\"\ndigest = \"{}\"\nused_by = \"test\"\n",
            sha(b"absent")
        ),
    )
    .expect("write lock");
    let before = files_under(&out);
    let o = build_images(&cluster, &lock_b, &cache, &out);
    assert!(!o.ok, "built with an image missing");
    assert!(
        o.stderr.contains(&absent)
            && o.stderr.contains("ezimg images pull")
            && !o.stderr.contains(&format!("{reference} (")),
        "{}",
        o.stderr
    );
    assert_eq!(files_under(&out), before, "a refused build changed --out");
    let fresh = w.join("out-fresh");
    let o = build_images(&cluster, &lock_b, &cache, &fresh);
    assert!(!o.ok);
    assert!(!fresh.exists(), "a refused build left a new --out behind");
}
