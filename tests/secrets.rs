//! The cluster secret store as an operator meets it: created once, checked with openssl, never
//! regenerated, delivered only to the nodes that need each secret, absent from shared outputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn ezimg(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("ezimg").expect("binary built");
    c.env_remove("EZIMG_CLUSTER")
        .env_remove("EZIMG_DATA")
        .env_remove("EZIMG_SECRETS")
        .env_remove("SOURCE_DATE_EPOCH")
        // About secrets, not artifacts (which cannot be fetched here).
        .env("EZIMG_ALLOW_INCOMPLETE", "1")
        .current_dir(dir);
    c
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().expect("command runs");
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn openssl(args: &[&str], dir: &Path) -> Out {
    run(Command::new("openssl").args(args).current_dir(dir))
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// A temp folder with `cluster.toml` (the default cluster) and its store `cluster.secrets/`.
fn cluster_with_store() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let f = d.path().join("cluster.toml");
    std::fs::write(&f, ezimg::cluster::DEFAULT_TOML).expect("write cluster");
    let o = run(ezimg(d.path()).args(["-c", "cluster.toml", "secrets", "init"]));
    assert!(o.ok, "secrets init: {}", o.stderr);
    let store = d.path().join("cluster.secrets");
    (d, store)
}

#[test]
fn store_is_private_and_its_cas_verify_with_openssl() {
    let (d, store) = cluster_with_store();
    assert_eq!(mode(&store), 0o700);
    let files = [
        "store.toml",
        "bootstrap-token",
        "vrrp-auth-pass",
        "pki/ca.crt",
        "pki/ca.key",
        "pki/sa.key",
        "pki/sa.pub",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-ca.key",
        "pki/etcd/ca.crt",
        "pki/etcd/ca.key",
    ];
    for f in files {
        assert_eq!(mode(&store.join(f)), 0o600, "{f}");
    }
    for (crt, key, cn) in [
        ("pki/ca.crt", "pki/ca.key", "kubernetes"),
        (
            "pki/front-proxy-ca.crt",
            "pki/front-proxy-ca.key",
            "front-proxy-ca",
        ),
        ("pki/etcd/ca.crt", "pki/etcd/ca.key", "etcd-ca"),
    ] {
        let o = openssl(&["verify", "-CAfile", crt, crt], &store);
        assert!(
            o.ok && o.stdout.contains(": OK"),
            "{crt}: {}{}",
            o.stdout,
            o.stderr
        );
        let o = openssl(&["x509", "-in", crt, "-noout", "-text"], &store);
        assert!(o.ok, "{}", o.stderr);
        assert!(
            o.stdout.contains("CA:TRUE"),
            "{crt} is not a CA:\n{}",
            o.stdout
        );
        assert!(
            o.stdout
                .contains("Digital Signature, Key Encipherment, Certificate Sign"),
            "{crt} key usages:\n{}",
            o.stdout
        );
        assert!(
            o.stdout.contains(&format!("Subject: CN = {cn}")),
            "{}",
            o.stdout
        );
        // The key belongs to the certificate.
        let a = openssl(&["x509", "-in", crt, "-noout", "-pubkey"], &store);
        let b = openssl(&["pkey", "-in", key, "-pubout"], &store);
        assert!(a.ok && b.ok);
        assert_eq!(a.stdout, b.stdout, "{key} does not match {crt}");
        // Ten years, like kubeadm's own CAs.
        let o = openssl(
            &["x509", "-in", crt, "-noout", "-checkend", "311040000"],
            &store,
        );
        assert!(o.ok, "{crt} expires within 9.9 years");
    }
    // The service-account pair is a pair.
    let a = openssl(&["pkey", "-in", "pki/sa.key", "-pubout"], &store);
    let b = std::fs::read_to_string(store.join("pki/sa.pub")).expect("sa.pub");
    assert_eq!(a.stdout, b);
    let token = std::fs::read_to_string(store.join("bootstrap-token")).expect("token");
    assert!(ezimg::secrets::is_token(&token), "{token:?}");
    // The CA hash ezimg reports is kubeadm's: sha256 of the SubjectPublicKeyInfo DER.
    let o = run(ezimg(d.path()).args(["-c", "cluster.toml", "secrets", "show"]));
    assert!(o.ok, "{}", o.stderr);
    let pipeline = run(Command::new("sh").current_dir(&store).arg("-c").arg(
        "openssl x509 -in pki/ca.crt -pubkey -noout | openssl pkey -pubin -outform der | sha256sum",
    ));
    let want = pipeline
        .stdout
        .split_whitespace()
        .next()
        .expect("hash")
        .to_string();
    assert!(
        o.stdout.contains(&format!("sha256:{want}")),
        "show: {}\nopenssl: {want}",
        o.stdout
    );
    assert!(!o.stdout.contains(token.trim()), "show prints the token");
    // A second init refuses: a new CA would split a running cluster.
    let before = std::fs::read(store.join("pki/ca.key")).expect("key");
    let o = run(ezimg(d.path()).args(["-c", "cluster.toml", "secrets", "init"]));
    assert!(!o.ok && o.stderr.contains("already exists"), "{}", o.stderr);
    assert_eq!(
        before,
        std::fs::read(store.join("pki/ca.key")).expect("key")
    );
}

#[test]
fn a_damaged_store_is_an_error_and_never_regenerated() {
    let (d, store) = cluster_with_store();
    let build = |d: &Path| {
        run(ezimg(d).args([
            "-c",
            "cluster.toml",
            "build",
            "--role",
            "worker",
            "--format",
            "bundle,cloud-init",
            "--out",
            "out",
        ]))
    };
    // Missing key: the message names the file; nothing is written; nothing regenerated.
    let key = std::fs::read(store.join("pki/ca.key")).expect("key");
    std::fs::remove_file(store.join("pki/ca.key")).expect("rm");
    let o = build(d.path());
    assert!(!o.ok, "build accepted an incomplete store");
    assert!(
        o.stderr.contains("pki/ca.key") && o.stderr.contains("incomplete"),
        "{}",
        o.stderr
    );
    assert!(
        !d.path().join("out").exists(),
        "a failed build wrote outputs"
    );
    assert!(
        !store.join("pki/ca.key").exists(),
        "the store was regenerated"
    );
    std::fs::write(store.join("pki/ca.key"), &key).expect("restore");
    // A key from another store does not match the certificate.
    let (_d2, other) = cluster_with_store();
    std::fs::copy(other.join("pki/ca.key"), store.join("pki/ca.key")).expect("swap key");
    let o = build(d.path());
    assert!(
        !o.ok && o.stderr.contains("does not belong to"),
        "{}",
        o.stderr
    );
    std::fs::write(store.join("pki/ca.key"), &key).expect("restore");
    // A malformed token.
    let token = std::fs::read(store.join("bootstrap-token")).expect("token");
    std::fs::write(store.join("bootstrap-token"), "abc.def").expect("bad token");
    let o = build(d.path());
    assert!(
        !o.ok && o.stderr.contains("bootstrap-token") && o.stderr.contains("[a-z0-9]{6}"),
        "{}",
        o.stderr
    );
    std::fs::write(store.join("bootstrap-token"), &token).expect("restore");
    // Readable by others.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let o = build(d.path());
        assert!(
            !o.ok && o.stderr.contains("accessible to other users"),
            "{}",
            o.stderr
        );
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    // Another cluster's store.
    let text = ezimg::cluster::DEFAULT_TOML.replace("name = \"ezk8s\"", "name = \"other\"");
    std::fs::write(d.path().join("cluster.toml"), text).expect("write");
    let o = build(d.path());
    assert!(
        !o.ok && o.stderr.contains("belongs to cluster \"ezk8s\""),
        "{}",
        o.stderr
    );
    std::fs::write(d.path().join("cluster.toml"), ezimg::cluster::DEFAULT_TOML).expect("write");
    // Intact again: the build works, with the same store.
    let o = build(d.path());
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(key, std::fs::read(store.join("pki/ca.key")).expect("key"));
}

#[test]
fn rotation_replaces_only_the_token_or_the_password() {
    let (d, store) = cluster_with_store();
    // The default cluster file seeds the password; rotating while it still says so is refused
    // at the next load, so use a cluster file without it.
    let text = ezimg::cluster::DEFAULT_TOML.replace("auth_pass = \"k8spass\"\n", "");
    std::fs::write(d.path().join("cluster.toml"), text).expect("write");
    let ca = std::fs::read(store.join("pki/ca.crt")).expect("ca");
    let token = std::fs::read_to_string(store.join("bootstrap-token")).expect("token");
    let o = run(ezimg(d.path()).args(["-c", "cluster.toml", "secrets", "rotate", "token"]));
    assert!(o.ok, "{}", o.stderr);
    let new = std::fs::read_to_string(store.join("bootstrap-token")).expect("token");
    assert!(ezimg::secrets::is_token(&new) && new != token);
    assert!(!o.stdout.contains(&new), "rotate printed the token");
    assert_eq!(mode(&store.join("bootstrap-token")), 0o600);
    assert_eq!(ca, std::fs::read(store.join("pki/ca.crt")).expect("ca"));
    let o = run(ezimg(d.path()).args([
        "-c",
        "cluster.toml",
        "secrets",
        "rotate",
        "vrrp-password",
        "--value",
        "ninechars",
    ]));
    assert!(
        !o.ok && o.stderr.contains("1 to 8 characters"),
        "{}",
        o.stderr
    );
    let o = run(ezimg(d.path()).args([
        "-c",
        "cluster.toml",
        "secrets",
        "rotate",
        "vrrp-password",
        "--value",
        "n3wpass",
    ]));
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(
        std::fs::read_to_string(store.join("vrrp-auth-pass")).expect("pass"),
        "n3wpass"
    );
    let o = run(ezimg(d.path()).args([
        "-c",
        "cluster.toml",
        "secrets",
        "rotate",
        "token",
        "--value",
        "bad",
    ]));
    assert!(!o.ok && o.stderr.contains("[a-z0-9]{6}"), "{}", o.stderr);
    // A cluster file that still names another password conflicts with the store.
    std::fs::write(d.path().join("cluster.toml"), ezimg::cluster::DEFAULT_TOML).expect("write");
    let o =
        run(ezimg(d.path()).args(["-c", "cluster.toml", "build", "--role", "slb", "--out", "o"]));
    assert!(
        !o.ok && o.stderr.contains("differs from the secret store"),
        "{}",
        o.stderr
    );
}

#[test]
fn first_build_creates_the_store_and_init_ignores_it_in_git() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = run(ezimg(d.path()).args(["init"]));
    assert!(o.ok, "{}", o.stderr);
    let gi = std::fs::read_to_string(d.path().join(".gitignore")).expect(".gitignore");
    assert!(gi.lines().any(|l| l == "/cluster.secrets/"), "{gi}");
    // Again: the line is not added twice.
    let o = run(ezimg(d.path()).args(["init", "--force"]));
    assert!(o.ok, "{}", o.stderr);
    let gi = std::fs::read_to_string(d.path().join(".gitignore")).expect(".gitignore");
    assert_eq!(gi.matches("/cluster.secrets/").count(), 1);
    let o = run(ezimg(d.path()).args([
        "-c",
        "cluster.toml",
        "build",
        "--role",
        "worker",
        "--out",
        "o",
    ]));
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stderr.contains("created secret store"), "{}", o.stderr);
    assert_eq!(mode(&d.path().join("cluster.secrets")), 0o700);
    // Two builds with the same store: byte-identical outputs.
    let o = run(ezimg(d.path()).args([
        "-c",
        "cluster.toml",
        "build",
        "--role",
        "worker",
        "--out",
        "p",
    ]));
    assert!(
        o.ok && !o.stderr.contains("created secret store"),
        "{}",
        o.stderr
    );
    let diff = Command::new("diff")
        .args(["-r", "o", "p"])
        .current_dir(d.path())
        .output()
        .expect("diff");
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

#[test]
fn check_refuses_masters_without_a_vip_holder() {
    let d = tempfile::tempdir().expect("tempdir");
    let text = ezimg::cluster::DEFAULT_TOML.replace("role = \"slb\"", "role = \"worker\"");
    std::fs::write(d.path().join("cluster.toml"), text).expect("write");
    let o = run(ezimg(d.path()).args(["-c", "cluster.toml", "check"]));
    assert!(!o.ok, "check accepted masters without an slb");
    assert!(
        o.stderr.contains("vrrp.vip") && o.stderr.contains("control-plane endpoint"),
        "{}",
        o.stderr
    );
    for (from, to, field) in [
        (
            "version = \"v1.29.3\"",
            "version = \"1.29\"",
            "kubernetes.version",
        ),
        (
            "dns_domain = \"cluster.local\"",
            "dns_domain = \"Cluster_Local\"",
            "kubernetes.dns_domain",
        ),
    ] {
        let text = ezimg::cluster::DEFAULT_TOML.replace(from, to);
        std::fs::write(d.path().join("cluster.toml"), text).expect("write");
        let o = run(ezimg(d.path()).args(["-c", "cluster.toml", "check"]));
        assert!(!o.ok && o.stderr.contains(field), "{field}: {}", o.stderr);
    }
}

/// Every file under `dir`, recursively, with its bytes (tar.gz bundles unpacked too).
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                if p.to_string_lossy().ends_with(".tar.gz") {
                    let x = tempfile::tempdir().expect("tempdir");
                    let st = Command::new("tar")
                        .arg("-xzf")
                        .arg(&p)
                        .arg("-C")
                        .arg(x.path())
                        .status()
                        .expect("tar");
                    assert!(st.success());
                    for (q, b) in all_bytes(x.path()) {
                        out.push((p.join(q.strip_prefix(x.path()).expect("prefix")), b));
                    }
                }
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_reach_only_the_nodes_that_need_them() {
    let (d, store) = cluster_with_store();
    let o = run(ezimg(d.path()).args([
        "-c",
        "cluster.toml",
        "build",
        "--all",
        "--format",
        "bundle,kickstart,cloud-init",
        "--out",
        "out",
    ]));
    assert!(o.ok, "{}", o.stderr);
    let read = |f: &str| std::fs::read_to_string(store.join(f)).expect("store file");
    let token = read("bootstrap-token");
    let ca_key = read("pki/ca.key");
    let key_body = ca_key.lines().nth(1).expect("pem body").to_string();
    let sa_key_body = read("pki/sa.key")
        .lines()
        .nth(1)
        .expect("pem body")
        .to_string();
    let etcd_key_body = read("pki/etcd/ca.key")
        .lines()
        .nth(1)
        .expect("pem body")
        .to_string();
    let ca_crt_body = read("pki/ca.crt")
        .lines()
        .nth(1)
        .expect("pem body")
        .to_string();
    let out = d.path().join("out");
    for (path, bytes) in all_bytes(&out) {
        let p = path.to_string_lossy().into_owned();
        let shared = p.contains(".tar.gz") || p.ends_with(".sha256");
        let node_output = p.contains("/seed") || p.ends_with("ks.cfg");
        let master = p.contains("/master/master-");
        let worker = p.contains("/worker/worker-");
        let secret_bytes = [&token, &key_body, &sa_key_body, &etcd_key_body];
        if shared {
            for s in secret_bytes {
                assert!(!contains(&bytes, s.trim()), "{p} holds a secret");
            }
            continue;
        }
        if !node_output {
            continue;
        }
        if p.ends_with("seed.img") || p.ends_with("seed.iso") {
            continue; // the same files as seed/, in an image
        }
        if p.ends_with("meta-data") || p.ends_with("network-config") {
            for s in secret_bytes {
                assert!(!contains(&bytes, s.trim()), "{p} holds a secret");
            }
            continue;
        }
        // user-data and ks.cfg: masters get the PKI; workers only the token and CA hash.
        if master {
            for s in [&key_body, &sa_key_body, &etcd_key_body, &ca_crt_body] {
                assert!(contains(&bytes, s), "{p} lacks a PKI file");
            }
            assert!(contains(&bytes, token.trim()), "{p} lacks the token");
        } else if worker {
            assert!(contains(&bytes, token.trim()), "{p} lacks the token");
            assert!(!contains(&bytes, "PRIVATE KEY"), "{p} holds a private key");
            assert!(
                !contains(&bytes, &ca_crt_body),
                "{p} holds a pre-placed ca.crt"
            );
            assert!(!contains(&bytes, "kube_ca_crt"), "{p} names ca.crt");
        } else {
            for s in secret_bytes {
                assert!(
                    !contains(&bytes, s.trim()),
                    "{p} (not a kubernetes node) holds a secret"
                );
            }
            assert!(!contains(&bytes, "PRIVATE KEY"), "{p} holds a private key");
        }
        // A node output with a secret is private.
        assert_eq!(mode(&path), 0o600, "{p}");
    }
    // Plans hold none either.
    let o = run(ezimg(d.path())
        .args(["-c", "cluster.toml", "plan", "--json"])
        .args(["--role", "master"]));
    assert!(o.ok, "{}", o.stderr);
    for s in [&token, &key_body] {
        assert!(!o.stdout.contains(s.trim()), "plan holds a secret");
    }
}
