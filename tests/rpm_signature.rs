//! RPMs pinned by OpenPGP signature (`signed_by` in artifacts.lock). The tests make their own
//! keys with gpg (batch mode, a throw-away GNUPGHOME), build a tiny RPM with rpmbuild and sign it
//! with rpmsign, as a vendor does. Each variant is served over HTTP on 127.0.0.1 and fetched
//! through the `ezimg` binary, then checked by the node-side bash function (`ez_artifact` →
//! `ez_rpm_checksig`, real rpmkeys with a private keyring):
//!
//! - signed by the pinned key (header signature + payload digest, as rpm ≥ 4.14 signs), and
//!   signed with a DSA key and `--rpmv3` (header+payload signatures, as ELRepo's el7 packages
//!   are): accepted on both sides;
//! - signed by another key, unsigned, payload changed, header changed: refused on both sides.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use assert_cmd::cargo::CommandCargoExt;
use support::static_http::StaticServer;

/// Every host tool the tests run, or None (skip with a reason; under CI a failure).
fn tools() -> Option<BTreeMap<&'static str, PathBuf>> {
    let mut out = BTreeMap::new();
    for t in ["gpg", "gpgconf", "rpmbuild", "rpmsign", "rpmkeys", "rpmdb"] {
        out.insert(t, support::host_tool(t)?);
    }
    Some(out)
}

fn run(cmd: &mut Command) -> Vec<u8> {
    support::run(cmd).stdout
}

/// Keys and signed packages, made once per test process.
struct Fx {
    _dir: tempfile::TempDir,
    /// ASCII-armored public keys by name: `a` (RSA, the pinned one), `b` (RSA, another), `d`
    /// (DSA, like ELRepo's).
    keys: BTreeMap<&'static str, (String, String)>,
    /// Package variants by name.
    rpms: BTreeMap<&'static str, Vec<u8>>,
}

impl Fx {
    fn fpr(&self, key: &str) -> &str {
        &self.keys[key].0
    }
    fn armored(&self, key: &str) -> &str {
        &self.keys[key].1
    }
}

const SPEC: &str = "Name: ezimg-test
Version: 1.0
Release: 1
Summary: ezimg test package MARKER-HEADER
License: MIT
BuildArch: noarch

%description
A package the ezimg tests sign and verify.

%install
mkdir -p %{buildroot}/usr/share/ezimg-test
echo 'payload MARKER-PAYLOAD' > %{buildroot}/usr/share/ezimg-test/data

%files
/usr/share/ezimg-test/data
";

fn make_fixture(t: &BTreeMap<&'static str, PathBuf>) -> Fx {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let gnupg = d.join("gnupg");
    std::fs::create_dir_all(&gnupg).expect("mkdir");
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let gpg = |args: &[&str]| -> Vec<u8> {
        run(Command::new(&t["gpg"])
            .env("GNUPGHOME", &gnupg)
            .arg("--batch")
            .args(args))
    };
    let mut keys = BTreeMap::new();
    for (name, algo) in [("a", "rsa2048"), ("b", "rsa2048"), ("d", "dsa2048")] {
        let uid = format!("ezimg test {name} <{name}@example.invalid>");
        gpg(&[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            &uid,
            algo,
            "sign",
            "never",
        ]);
        let listing =
            String::from_utf8_lossy(&gpg(&["--with-colons", "--list-keys", &uid])).into_owned();
        let fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| f.len() == 40))
            .unwrap_or_else(|| panic!("no fingerprint in {listing}"))
            .to_string();
        let armored = String::from_utf8_lossy(&gpg(&["--armor", "--export", &fpr])).into_owned();
        keys.insert(name, (fpr, armored));
    }

    // Build the package (HOME and the rpm database of this test, not the host's).
    let top = d.join("top");
    std::fs::create_dir_all(top.join("SPECS")).expect("mkdir");
    std::fs::create_dir_all(d.join("rpmdb")).expect("mkdir");
    std::fs::write(top.join("SPECS/t.spec"), SPEC).expect("spec");
    run(Command::new(&t["rpmbuild"])
        .env("HOME", d)
        .arg("--dbpath")
        .arg(d.join("rpmdb"))
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("-bb")
        .arg(top.join("SPECS/t.spec")));
    let unsigned = std::fs::read(top.join("RPMS/noarch/ezimg-test-1.0-1.noarch.rpm"))
        .expect("the built package");

    // rpmsign hands the header to gpg on stdin: no --passphrase-fd 0 here.
    let sign = |key: &str, v3: bool| -> Vec<u8> {
        let p = d.join(format!("sign-{key}-{v3}.rpm"));
        std::fs::write(&p, &unsigned).expect("copy");
        let mut c = Command::new(&t["rpmsign"]);
        c.env("HOME", d)
            .env("GNUPGHOME", &gnupg)
            .stdin(std::process::Stdio::null())
            .arg("--define")
            .arg(format!("__gpg {}", t["gpg"].display()))
            .arg("--define")
            .arg("_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback")
            .arg("--define")
            .arg(format!("_gpg_name {}", keys[key].0));
        if v3 {
            c.arg("--rpmv3");
        }
        run(c.arg("--addsign").arg(&p));
        std::fs::read(&p).expect("signed package")
    };
    let good = sign("a", false);
    let v3 = sign("d", true);
    let other = sign("b", false);
    // The agent gpg started for this GNUPGHOME.
    run(Command::new(&t["gpgconf"])
        .env("GNUPGHOME", &gnupg)
        .args(["--kill", "all"]));
    assert_ne!(good, unsigned, "rpmsign did not sign");

    let flip_last = |b: &[u8]| {
        let mut b = b.to_vec();
        let n = b.len() - 1;
        b[n] ^= 0x01;
        b
    };
    let mut header = good.clone();
    let at = header
        .windows(b"MARKER-HEADER".len())
        .position(|w| w == b"MARKER-HEADER")
        .expect("summary in the header");
    header[at] ^= 0x20;
    let mut rpms = BTreeMap::new();
    rpms.insert("payload", flip_last(&good));
    rpms.insert("v3-payload", flip_last(&v3));
    rpms.insert("header", header);
    rpms.insert("good", good);
    rpms.insert("v3", v3);
    rpms.insert("other", other);
    rpms.insert("unsigned", unsigned);
    Fx {
        _dir: dir,
        keys,
        rpms,
    }
}

fn fixture() -> Option<&'static Fx> {
    static FX: OnceLock<Option<Fx>> = OnceLock::new();
    FX.get_or_init(|| tools().map(|t| make_fixture(&t)))
        .as_ref()
}

/// Which key each variant is pinned to in the tests' lock.
fn pinned_key(variant: &str) -> &'static str {
    if variant.starts_with("v3") { "d" } else { "a" }
}

/// A lock next to copies of the keys `a` and `d` (or none with `without_keys`), pinning every
/// variant to its URL on `server`.
fn write_lock(fx: &Fx, dir: &Path, server: &StaticServer, without_keys: bool) -> PathBuf {
    let mut text = String::from("lock_version = 1\n");
    for k in ["a", "d"] {
        text.push_str(&format!(
            "\n[[key]]\nname = \"{k}\"\nfile = \"keys/{k}.asc\"\nfingerprint = \"{}\"\n",
            fx.fpr(k)
        ));
        if !without_keys {
            let p = dir.join(format!("keys/{k}.asc"));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, fx.armored(k)).expect("key file");
        }
    }
    for (name, bytes) in &fx.rpms {
        let file = format!("{name}.rpm");
        server.put(&file, bytes.clone());
        text.push_str(&format!(
            "\n[[artifact]]\nname = \"{name}\"\nversion = \"1.0-1\"\nkind = \"rpm\"\nfile = \"{file}\"\n\
             urls = [\"{}\"]\nsigned_by = \"{}\"\n",
            server.url(&file),
            pinned_key(name)
        ));
    }
    let lock = dir.join("artifacts.lock");
    std::fs::write(&lock, text).expect("lock");
    lock
}

fn ezimg(cache: &Path) -> Command {
    let mut c = Command::cargo_bin("ezimg").expect("binary");
    c.env_remove("EZIMG_MIRROR")
        .env_remove("EZIMG_LOCK")
        .env("EZIMG_CACHE_DIR", cache);
    c
}

fn fetch(lock: &Path, cache: &Path, name: &str) -> (bool, String, String) {
    let o = ezimg(cache)
        .args([
            "fetch",
            name,
            "--progress",
            "plain",
            "--retries",
            "0",
            "--lock",
        ])
        .arg(lock)
        .output()
        .expect("ezimg fetch");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn fetch_accepts_the_pinned_signer_and_refuses_the_rest() {
    let Some(fx) = fixture() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let server = StaticServer::start();
    let lock = write_lock(fx, work.path(), &server, false);
    let cache = work.path().join("cache");

    for name in ["good", "v3"] {
        let (ok, out, err) = fetch(&lock, &cache, name);
        assert!(ok, "{name}: {err}");
        assert!(!err.contains("TRUST ON FIRST USE"), "{err}");
        let path = out
            .trim()
            .strip_prefix(&format!("{name}\t"))
            .unwrap_or_else(|| panic!("{out}"));
        assert_eq!(&std::fs::read(path).expect("fetched"), &fx.rpms[name]);
    }
    let refused = [
        ("other", "not by the pinned key"),
        ("unsigned", "not signed"),
        ("payload", "payload digest mismatch"),
        ("header", "BAD header signature"),
        ("v3-payload", "BAD header+payload signature"),
    ];
    for (name, why) in refused {
        let (ok, _, err) = fetch(&lock, &cache, name);
        assert!(!ok, "{name} was accepted");
        assert!(
            err.contains(why) && err.contains("refused"),
            "{name}: {err}"
        );
    }
    // Only the two verified packages entered the cache.
    let entries: Vec<String> = std::fs::read_dir(cache.join("sha256"))
        .expect("cache")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut want = vec![
        ezimg::digest::sha256_hex(&fx.rpms["good"]),
        ezimg::digest::sha256_hex(&fx.rpms["v3"]),
    ];
    let mut got = entries.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    // Offline, the signature-verified files are found again (their sha256 was recorded).
    let o = ezimg(&cache)
        .args(["fetch", "good", "v3", "--offline", "--lock"])
        .arg(&lock)
        .output()
        .expect("ezimg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Carried to another machine with export/import: found offline there too (the signatures
    // were checked again on import, with the keys the archive carries).
    let tarfile = work.path().join("site.tar");
    let o = ezimg(&cache)
        .arg("export")
        .arg(&tarfile)
        .args(["good", "v3", "--lock"])
        .arg(&lock)
        .output()
        .expect("ezimg export");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let other_machine = work.path().join("cache-imported");
    let o = ezimg(&other_machine)
        .arg("import")
        .arg(&tarfile)
        .output()
        .expect("ezimg import");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ezimg(&other_machine)
        .args(["fetch", "good", "v3", "--offline", "--lock"])
        .arg(&lock)
        .output()
        .expect("ezimg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // `ezimg lock` records the sha256 of the verified files; fetching from a fresh cache then
    // checks both the digest and the signature.
    let o = ezimg(&cache)
        .args(["lock", "good", "v3", "--progress", "plain", "--lock"])
        .arg(&lock)
        .output()
        .expect("ezimg lock");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("OpenPGP signature by key \"a\""), "{err}");
    let text = std::fs::read_to_string(&lock).expect("lock");
    for name in ["good", "v3"] {
        let sha = ezimg::digest::sha256_hex(&fx.rpms[name]);
        assert!(text.contains(&format!("sha256 = \"{sha}\"")), "{text}");
    }
    let (ok, _, err) = fetch(&lock, &work.path().join("cache2"), "good");
    assert!(ok, "{err}");
}

#[test]
fn a_missing_key_file_refuses_the_rpm_naming_the_file() {
    let Some(fx) = fixture() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let server = StaticServer::start();
    let lock = write_lock(fx, work.path(), &server, true);
    let (ok, _, err) = fetch(&lock, &work.path().join("cache"), "good");
    assert!(!ok, "accepted without the key file");
    assert!(
        err.contains("keys/a.asc") && err.contains(fx.fpr("a")) && err.contains("no key file"),
        "{err}"
    );
    // A key file that is another key than the fingerprint pins: the lock does not load.
    let p = work.path().join("keys/a.asc");
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, fx.armored("b")).expect("key");
    let (ok, _, err) = fetch(&lock, &work.path().join("cache"), "good");
    assert!(!ok);
    assert!(
        err.contains("artifacts.lock:3") && err.contains(fx.fpr("b")),
        "{err}"
    );
}

/// Run the node's `ez_artifact NAME` (src/bundle/lib.sh) against a bundle folder that pins
/// `bytes` by sha256 and by signature with key `key_file_of`'s fingerprint, the key file itself
/// holding `key_text`. Returns (success, stdout, stderr).
fn node_check(fx: &Fx, name: &str, fpr: &str, key_text: &str) -> (bool, String, String) {
    use ezimg::bundle::format;
    let bytes = &fx.rpms[name];
    let d = tempfile::tempdir().expect("tempdir");
    let bundle = d.path().join("bundle");
    let arts = d.path().join("artifacts");
    std::fs::create_dir_all(bundle.join("keys")).expect("mkdir");
    std::fs::create_dir_all(&arts).expect("mkdir");
    let file = format!("{name}.rpm");
    std::fs::write(arts.join(&file), bytes).expect("rpm");
    let list = format::write_artifacts_list(&[format::ArtifactLine {
        name: name.to_string(),
        sha256: Some(ezimg::digest::sha256_hex(bytes)),
        file: file.clone(),
    }])
    .expect("list");
    std::fs::write(bundle.join("artifacts.list"), list).expect("list");
    let sigs = format::signature_line(name, fpr).expect("sigs");
    std::fs::write(bundle.join("signatures.list"), sigs).expect("sigs");
    std::fs::write(bundle.join(format!("keys/{fpr}.asc")), key_text).expect("key");
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bundle/lib.sh");
    let o = Command::new("bash")
        .args([
            "-euo",
            "pipefail",
            "-c",
            ". \"$1\"; ez_artifact \"$2\"",
            "ez",
        ])
        .arg(&lib)
        .arg(name)
        .env("EZ_BUNDLE", &bundle)
        .env("EZ_ARTIFACTS", &arts)
        .env("EZ_OS", "el7")
        .output()
        .expect("bash");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_node_checks_the_signature_with_rpmkeys_before_installing() {
    let Some(fx) = fixture() else { return };
    for name in ["good", "v3"] {
        let k = pinned_key(name);
        let (ok, out, err) = node_check(fx, name, fx.fpr(k), fx.armored(k));
        assert!(ok, "{name}: {err}");
        assert!(out.trim().ends_with(&format!("{name}.rpm")), "{out}");
    }
    for name in ["other", "unsigned", "payload", "header", "v3-payload"] {
        let k = pinned_key(name);
        let (ok, _, err) = node_check(fx, name, fx.fpr(k), fx.armored(k));
        assert!(!ok, "{name} was accepted on the node");
        assert!(
            err.contains("OpenPGP signature check failed") && err.contains(fx.fpr(k)),
            "{name}: {err}"
        );
    }
    // Only the shipped key counts: the right package with another key in the keyring is refused.
    let (ok, _, err) = node_check(fx, "good", fx.fpr("a"), fx.armored("b"));
    assert!(!ok, "accepted with another key");
    assert!(err.contains("OpenPGP signature check failed"), "{err}");
}

#[test]
fn el7_bundles_ship_the_vendor_keys_the_lock_pins() {
    let fx = support::seed_inputs::Fixture::new(ezimg::cluster::Os::El7, None);
    let want = [
        (
            "kernel-ml",
            "96C0104F631547311E0BB1AE309BC305BAADAE52",
            "RPM-GPG-KEY-elrepo.org",
        ),
        (
            "kernel-ml-devel",
            "96C0104F631547311E0BB1AE309BC305BAADAE52",
            "RPM-GPG-KEY-elrepo.org",
        ),
        (
            "libseccomp-el8",
            "99DB70FAE1D7CE227FB6488205B555B38483C65D",
            "RPM-GPG-KEY-centosofficial",
        ),
    ];
    for role in ["master", "worker"] {
        let b = &fx.bundles[role];
        let mut members = BTreeMap::new();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(b.bytes.as_slice()));
        for e in ar.entries().expect("tar") {
            let mut e = e.expect("entry");
            let p = e.path().expect("path").to_string_lossy().into_owned();
            let mut content = Vec::new();
            e.read_to_end(&mut content).expect("read");
            members.insert(p, content);
        }
        let sigs = String::from_utf8_lossy(
            members
                .get("signatures.list")
                .unwrap_or_else(|| panic!("{role}: no signatures.list")),
        )
        .into_owned();
        for (name, fpr, key_file) in want {
            assert!(
                sigs.lines().any(|l| l == format!("{name} {fpr}")),
                "{role}: {sigs}"
            );
            let shipped = &members[&format!("keys/{fpr}.asc")];
            let repo = std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("keys")
                    .join(key_file),
            )
            .expect("key file");
            assert_eq!(shipped, &repo, "{role}: keys/{fpr}.asc");
        }
        // The MANIFEST covers them, so a swapped key fails the bundle's own check.
        let manifest = String::from_utf8_lossy(&members["MANIFEST"]).into_owned();
        assert!(manifest.contains("  signatures.list"), "{manifest}");
    }
}

/// The default cluster (el7) from the tests' own artifacts: the project's lock with the tests'
/// key in place of the vendors' and every URL on a loopback server serving the tests' files
/// (the signed test RPM for the kernel and libseccomp RPMs, stand-in bytes pinned by sha256 for
/// the rest). Offline, `build` refuses and lists what is missing; with `--fetch` every artifact
/// is verified (signature or digest) and only slb's build stages are refused, because a stage
/// for el7 needs an el7 builder; with slb on the distro packages every node's outputs are
/// written and no bundle's artifacts.list has an entry without a sha256.
#[test]
fn the_default_el7_cluster_builds_from_verified_artifacts_only() {
    let Some(fx) = fixture() else {
        support::skip_or_fail(
            "the_default_el7_cluster_builds_from_verified_artifacts_only",
            "gpg/rpmbuild/rpmsign/rpmkeys/rpmdb missing (apt-get install gnupg rpm)",
        );
        return;
    };
    let d = tempfile::tempdir().expect("tempdir");
    let server = StaticServer::start();
    let text = std::fs::read_to_string(support::root().join("artifacts.lock")).expect("lock");
    let mut lock: toml::Table = toml::from_str(&text).expect("the project's lock parses");
    let key_dir = d.path().join("keys");
    std::fs::create_dir_all(&key_dir).expect("mkdir");
    std::fs::write(key_dir.join("a.asc"), fx.armored("a")).expect("key file");
    for k in lock["key"].as_array_mut().expect("[[key]]") {
        let k = k.as_table_mut().expect("key table");
        k.insert("file".into(), "keys/a.asc".into());
        k.insert("fingerprint".into(), fx.fpr("a").into());
    }
    for a in lock["artifact"].as_array_mut().expect("[[artifact]]") {
        let a = a.as_table_mut().expect("artifact table");
        let name = a["name"].as_str().expect("name").to_string();
        let file = a["file"].as_str().expect("file").to_string();
        a.insert("urls".into(), vec![server.url(&file)].into());
        a.remove("mirror_path");
        if a.contains_key("signed_by") {
            server.put(&file, fx.rpms["good"].clone());
        } else if !a.contains_key("git_tree") {
            let bytes = format!("ezimg test stand-in for {name}\n").into_bytes();
            a.insert("sha256".into(), ezimg::digest::sha256_hex(&bytes).into());
            for f in ["sha512", "size", "verified"] {
                a.remove(f);
            }
            server.put(&file, bytes);
        }
    }
    let lock_path = d.path().join("artifacts.lock");
    std::fs::write(&lock_path, toml::to_string(&lock).expect("lock TOML")).expect("write lock");
    let cache = d.path().join("cache");
    let secrets = d.path().join("secrets");
    let build = |cluster: Option<&Path>, out: &Path, fetch: bool| {
        let mut c = ezimg(&cache);
        if let Some(p) = cluster {
            c.arg("-c").arg(p);
        }
        c.env_remove("EZIMG_ALLOW_INCOMPLETE")
            .env("EZIMG_SECRETS", &secrets)
            .args(["build", "--all", "--lock"])
            .arg(&lock_path)
            .arg("--out")
            .arg(out);
        if fetch {
            c.arg("--fetch");
        }
        let o = c.output().expect("ezimg build");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    // Offline: refused, listing what is missing, nothing written.
    let out = d.path().join("out");
    let (ok, err) = build(None, &out, false);
    assert!(
        !ok,
        "an offline build of the default cluster passed:\n{err}"
    );
    for needle in [
        "kernel-ml (roles ops, slb, master, worker): not in the verified cache",
        "libseccomp-el8",
        "nerdctl-full",
        "nginx-stage (roles slb): the build stage's output is not built, and a build for el7 \
         needs an el7 builder",
        "nothing was written",
    ] {
        assert!(err.contains(needle), "lacks {needle:?}:\n{err}");
    }
    assert!(!out.exists());

    // Fetched: slb's stages for el7 need an el7 builder; refused before anything is written.
    let (ok, err) = build(None, &out, true);
    assert!(!ok, "el7 stage outputs were accepted:\n{err}");
    assert!(
        err.contains("its build stage for el7 needs a builder of that OS")
            && err.contains("_source = \"distro\""),
        "{err}"
    );
    assert!(!out.exists());

    // slb on the distro packages (keepalived and nginx from el7's repositories): every output
    // is written, from verified artifacts only.
    let cluster = d.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        support::with_role_params(
            &support::default_cluster(),
            "slb",
            "nginx_source = \"distro\"\nkeepalived_source = \"distro\"",
        ),
    )
    .expect("cluster");
    let (ok, err) = build(Some(&cluster), &out, true);
    assert!(ok, "{err}");
    assert!(!err.contains("INCOMPLETE"), "{err}");
    for role in ["ops", "slb", "master", "worker"] {
        let bundle = out.join(format!("{role}/ezimg-{role}-bundle.tar.gz"));
        let o = support::run(
            Command::new("tar")
                .arg("-xzOf")
                .arg(&bundle)
                .arg("artifacts.list"),
        );
        let list = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}: {o:?}", bundle.display());
        let entries: Vec<&str> = list
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert!(
            !entries.is_empty(),
            "{}: empty artifacts.list",
            bundle.display()
        );
        for line in entries {
            // `name sha256 file`
            let sha = line.split_whitespace().nth(1).unwrap_or("-");
            assert!(
                sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: unverified entry {line:?}",
                bundle.display()
            );
        }
    }
}
