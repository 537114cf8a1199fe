//! The command line as a user meets it: init, check, plan, build, bad input, reproducibility.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn ezimg() -> Command {
    let mut c = Command::cargo_bin("ezimg").expect("binary built");
    c.env_remove("EZIMG_CLUSTER").env_remove("EZIMG_DATA");
    c.env_remove("SOURCE_DATE_EPOCH");
    // These tests are about rendering: the artifacts (kernel RPMs, nerdctl-full, Kubernetes
    // binaries) cannot be fetched here. tests/secrets.rs and the incomplete-build test check
    // the refusal itself.
    c.env("EZIMG_ALLOW_INCOMPLETE", "1");
    c
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().expect("ezimg runs");
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn default_cluster() -> String {
    ezimg::cluster::DEFAULT_TOML.to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

/// Check must fail, and its stderr must contain every needle.
fn check_fails(text: &str, needles: &[&str]) {
    let d = tempfile::tempdir().expect("tempdir");
    let f = write(d.path(), "cluster.toml", text);
    let o = run(ezimg().arg("check").arg("-c").arg(&f));
    assert!(!o.ok, "check accepted a bad cluster file:\n{text}");
    for n in needles {
        assert!(o.stderr.contains(n), "stderr lacks {n:?}:\n{}", o.stderr);
    }
}

#[test]
fn init_writes_the_default_and_check_accepts_it() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = d.path().join("cluster.toml");
    let o = run(ezimg().arg("init").arg("--out").arg(&f));
    assert!(o.ok, "{}", o.stderr);
    let text = std::fs::read_to_string(&f).expect("cluster file written");
    assert!(text.contains("192.168.2.100") && text.contains("# "));
    // Refuses to overwrite without --force.
    let o = run(ezimg().arg("init").arg("--out").arg(&f));
    assert!(!o.ok && o.stderr.contains("already exists"));
    let o = run(ezimg().arg("check").arg("-c").arg(&f));
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("9 nodes") && o.stdout.contains("role slb"));
}

#[test]
fn default_cluster_is_seed_000() {
    let c = ezimg::cluster::parse(&default_cluster(), "default").expect("parses");
    let got: Vec<(String, String, String)> = c
        .nodes
        .iter()
        .map(|n| (n.hostname.clone(), n.role.clone(), n.ip.to_string()))
        .collect();
    let want = [
        ("ops", "ops", "192.168.2.201"),
        ("slb-01", "slb", "192.168.2.211"),
        ("slb-02", "slb", "192.168.2.212"),
        ("master-01", "master", "192.168.2.221"),
        ("master-02", "master", "192.168.2.222"),
        ("master-03", "master", "192.168.2.223"),
        ("worker-01", "worker", "192.168.2.231"),
        ("worker-02", "worker", "192.168.2.232"),
        ("worker-03", "worker", "192.168.2.233"),
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str(), g.2.as_str()), w);
    }
    assert_eq!(c.vrrp.vip.to_string(), "192.168.2.100");
    assert_eq!(c.os, ezimg::cluster::Os::El7);
}

#[test]
fn malformed_toml_names_file_and_line() {
    let text = default_cluster().replace("name = \"ezk8s\"", "name = ");
    check_fails(&text, &["cluster.toml:6:"]);
}

#[test]
fn unknown_key_is_rejected() {
    let text = default_cluster().replace("advert_int = 1", "advert_int = 1\nadvert_intervall = 2");
    check_fails(&text, &["cluster.toml:", "advert_intervall"]);
}

#[test]
fn unknown_role_is_an_error() {
    let text = default_cluster().replacen("role = \"worker\"", "role = \"wrker\"", 1);
    check_fails(
        &text,
        &["node[6].role", "unknown role \"wrker\"", "cluster.toml:"],
    );
}

#[test]
fn overlapping_networks_are_errors() {
    let text = default_cluster().replace(
        "pod_cidr = \"10.244.0.0/16\"",
        "pod_cidr = \"10.96.128.0/17\"",
    );
    check_fails(&text, &["network.pod_cidr", "overlaps 10.96.0.0/16"]);
    let text = default_cluster().replace(
        "service_cidr = \"10.96.0.0/16\"",
        "service_cidr = \"192.168.0.0/16\"",
    );
    check_fails(&text, &["network.service_cidr", "overlaps 192.168.2.0/24"]);
}

#[test]
fn vip_rules() {
    let text = default_cluster().replace("vip = \"192.168.2.100\"", "vip = \"192.168.3.100\"");
    check_fails(&text, &["vrrp.vip", "outside the node network"]);
    let text = default_cluster().replace("vip = \"192.168.2.100\"", "vip = \"192.168.2.211\"");
    check_fails(&text, &["node[1].ip", "is the VIP"]);
}

#[test]
fn duplicates_are_errors() {
    let text = default_cluster().replace("ip = \"192.168.2.212\"", "ip = \"192.168.2.211\"");
    check_fails(&text, &["node[2].ip", "also node[1]"]);
    let text = default_cluster().replace("hostname = \"slb-02\"", "hostname = \"slb-01\"");
    check_fails(&text, &["node[2].hostname", "also node[1]"]);
    let text = default_cluster()
        .replace(
            "ip = \"192.168.2.211\"",
            "ip = \"192.168.2.211\"\nmac = \"52:54:00:00:00:01\"",
        )
        .replace(
            "ip = \"192.168.2.212\"",
            "ip = \"192.168.2.212\"\nmac = \"52:54:00:00:00:01\"",
        );
    check_fails(&text, &["node[2].mac", "also node[1]"]);
}

#[test]
fn long_vrrp_password_is_an_error() {
    let text = default_cluster().replace("auth_pass = \"k8spass\"", "auth_pass = \"k8spassword\"");
    check_fails(&text, &["vrrp.auth_pass", "more than 8 characters"]);
}

#[test]
fn master_count_rules() {
    let text: String = default_cluster().replace("role = \"master\"", "role = \"worker\"");
    check_fails(&text, &["at least one node must have role \"master\""]);
    // Two masters: a warning, not an error.
    let text = default_cluster().replacen("role = \"master\"", "role = \"worker\"", 1);
    let d = tempfile::tempdir().expect("tempdir");
    let f = write(d.path(), "cluster.toml", &text);
    let o = run(ezimg().arg("check").arg("-c").arg(&f));
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr.contains("warning") && o.stderr.contains("2 masters"),
        "{}",
        o.stderr
    );
    // One slb: no failover warning.
    let text = default_cluster().replacen("role = \"slb\"", "role = \"worker\"", 1);
    let f = write(d.path(), "cluster.toml", &text);
    let o = run(ezimg().arg("check").arg("-c").arg(&f));
    assert!(o.ok && o.stderr.contains("no failover"), "{}", o.stderr);
}

#[test]
fn plan_shows_files_skips_and_no_secrets() {
    let o = run(ezimg().args(["plan", "--role", "slb"]));
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("node slb-01") && o.stdout.contains("node slb-02"));
    assert!(o.stdout.contains("sha256:"));
    assert!(
        !o.stdout.contains("k8spass"),
        "plan output leaks the VRRP password"
    );
    let o = run(ezimg().args(["plan", "--node", "master-01", "--json"]));
    assert!(o.ok, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("plan --json is JSON");
    assert_eq!(v[0]["hostname"], "master-01");
    assert!(!o.stdout.contains("k8spass"));
    // Debian: SELinux/firewalld layers are shown as skipped with a reason.
    let d = tempfile::tempdir().expect("tempdir");
    let f = write(
        d.path(),
        "c.toml",
        &default_cluster().replace("os = \"el7\"", "os = \"debian12\""),
    );
    let o = run(ezimg().args(["plan", "--node", "worker-01", "-c"]).arg(&f));
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout.contains("SKIPPED, not on debian12"),
        "{}",
        o.stdout
    );
    let o = run(ezimg().args(["plan", "--node", "nope"]));
    assert!(!o.ok && o.stderr.contains("no node named \"nope\""));
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                v.push(p.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    v.sort();
    v
}

#[test]
fn build_all_is_reproducible() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    for d in [&a, &b] {
        let o = run(ezimg().args(["build", "--all", "--out"]).arg(d.path()));
        assert!(o.ok, "{}", o.stderr);
    }
    let fa = files_under(a.path());
    assert_eq!(fa, files_under(b.path()));
    assert!(
        fa.iter().any(|p| p.ends_with("ezimg-slb-bundle.tar.gz")),
        "{fa:?}"
    );
    for rel in &fa {
        let x = std::fs::read(a.path().join(rel)).expect("read");
        let y = std::fs::read(b.path().join(rel)).expect("read");
        assert!(x == y, "{} differs between two builds", rel.display());
    }
    // No staging leftovers.
    assert!(
        !fa.iter()
            .any(|p| p.to_string_lossy().contains(".ezimg-staging")),
        "{fa:?}"
    );
}

#[test]
fn bundle_is_deterministic_tar_with_manifest_and_no_secret() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = run(ezimg()
        .args(["build", "--role", "slb", "--format", "bundle", "--out"])
        .arg(d.path()));
    assert!(o.ok, "{}", o.stderr);
    let tgz = d.path().join("slb/ezimg-slb-bundle.tar.gz");
    let list = Command::new("tar")
        .arg("-tvzf")
        .arg(&tgz)
        .output()
        .expect("tar runs");
    let list = String::from_utf8_lossy(&list.stdout);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "members are not sorted");
    for l in list.lines() {
        assert!(
            l.contains(" 0/0 ") || l.contains("root/root"),
            "owner not 0/0: {l}"
        );
        assert!(l.contains("2000-01-01"), "mtime not fixed: {l}");
    }
    for want in [
        "apply",
        "MANIFEST",
        "lib/ezimg.sh",
        "nodes/slb-01/steps",
        "nodes/slb-02/steps",
    ] {
        assert!(names.contains(&want), "bundle lacks {want}: {names:?}");
    }
    let x = tempfile::tempdir().expect("tempdir");
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(x.path())
        .status()
        .expect("tar");
    assert!(st.success());
    let st = Command::new("sha256sum")
        .args(["--strict", "--quiet", "-c", "MANIFEST"])
        .current_dir(x.path())
        .status()
        .expect("sha256sum");
    assert!(st.success(), "MANIFEST does not verify");
    let grep = Command::new("grep")
        .args(["-r", "-l", "k8spass"])
        .arg(x.path())
        .output()
        .expect("grep");
    assert!(
        grep.stdout.is_empty(),
        "the bundle holds the VRRP password: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    let sha = std::fs::read_to_string(d.path().join("slb/ezimg-slb-bundle.tar.gz.sha256"))
        .expect("sha file");
    let st = Command::new("sha256sum")
        .args(["-c", "--quiet"])
        .current_dir(d.path().join("slb"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(sha.as_bytes())?;
            c.wait()
        })
        .expect("sha256sum");
    assert!(st.success());
}

#[test]
fn source_date_epoch_sets_member_mtime() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = run(ezimg()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--role", "ops", "--format", "bundle", "--out"])
        .arg(d.path()));
    assert!(o.ok, "{}", o.stderr);
    let list = Command::new("tar")
        .arg("--utc")
        .arg("-tvzf")
        .arg(d.path().join("ops/ezimg-ops-bundle.tar.gz"))
        .output()
        .expect("tar");
    assert!(String::from_utf8_lossy(&list.stdout).contains("2023-11-14"));
}

#[test]
fn unwritable_out_fails_cleanly() {
    let d = tempfile::tempdir().expect("tempdir");
    let file = write(d.path(), "a-file", "x");
    let o = run(ezimg()
        .args(["build", "--role", "slb", "--out"])
        .arg(file.join("out")));
    assert!(!o.ok);
    assert!(o.stderr.contains("output directory"), "{}", o.stderr);
}

/// A copy of the embedded data with one template broken.
fn broken_data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir data");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    for top in ["layers", "roles", "kickstart"] {
        let st = Command::new("cp")
            .arg("-r")
            .arg(src.join(top))
            .arg(data.join(top))
            .status()
            .expect("cp");
        assert!(st.success());
    }
    let target = data.join("layers/sysctl/user.conf");
    let text = std::fs::read_to_string(&target).expect("sysctl layer has user.conf");
    std::fs::write(&target, format!("{text}\n{{{{ no_such_variable }}}}\n")).expect("write");
    data
}

#[test]
fn template_error_names_file_and_line_and_leaves_out_untouched() {
    let d = tempfile::tempdir().expect("tempdir");
    let data = broken_data(d.path());
    let out = d.path().join("out");
    std::fs::create_dir_all(out.join("slb")).expect("mkdir");
    std::fs::write(out.join("slb/sentinel"), "old").expect("write");
    let o = run(ezimg()
        .arg("--data")
        .arg(&data)
        .args(["build", "--role", "slb", "--out"])
        .arg(&out));
    assert!(!o.ok);
    assert!(
        o.stderr.contains("layers/sysctl/user.conf:"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("undefined"), "{}", o.stderr);
    assert_eq!(
        std::fs::read_to_string(out.join("slb/sentinel")).expect("kept"),
        "old"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .expect("read")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(left.len(), 1, "staging left behind: {left:?}");
    // An --out that did not exist is not left behind, empty, either.
    let fresh = d.path().join("fresh-out");
    let o = run(ezimg()
        .arg("--data")
        .arg(&data)
        .args(["build", "--role", "slb", "--out"])
        .arg(&fresh));
    assert!(!o.ok);
    assert!(
        !fresh.exists(),
        "a failed build created {}",
        fresh.display()
    );
}

#[test]
fn completions_and_version() {
    let o = run(ezimg().args(["completions", "bash"]));
    assert!(o.ok && o.stdout.contains("_ezimg"));
    let o = run(ezimg().arg("--version"));
    assert!(o.ok && o.stdout.starts_with("ezimg "));
}

/// shellcheck, or a printed reason to skip (a failure under CI).
fn shellcheck_available() -> bool {
    if Command::new("shellcheck").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "shellcheck is required under CI"
    );
    eprintln!("SKIP: shellcheck is not installed");
    false
}

#[test]
fn bundle_runtime_and_bootstrap_pass_bash_n_and_shellcheck() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = run(ezimg()
        .args(["build", "--role", "ops", "--format", "bundle", "--out"])
        .arg(d.path()));
    assert!(o.ok, "{}", o.stderr);
    let x = d.path().join("x");
    std::fs::create_dir_all(&x).expect("mkdir");
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(d.path().join("ops/ezimg-ops-bundle.tar.gz"))
        .arg("-C")
        .arg(&x)
        .status()
        .expect("tar");
    assert!(st.success());
    let lib = ezimg::cluster::load(None).expect("default cluster");
    let tree = ezimg::data::DataTree::embedded();
    let catalog = ezimg::plan::Catalog::load(&tree).expect("catalog");
    let node = lib.cluster.node("slb-01").expect("slb-01");
    let plan = ezimg::plan::plan_node(&catalog, &lib, node).expect("plan");
    let bref = ezimg::output::BundleRef {
        file_name: "b.tar.gz".into(),
        sha256: "0".repeat(64),
        bytes: vec![],
        url: Some("http://127.0.0.1:1/b.tar.gz".into()),
    };
    let input = ezimg::output::NodeInput {
        cluster: &lib.cluster,
        node,
        plan: &plan,
        bundle: &bref,
        secrets: Default::default(),
        artifacts_from: Some("/srv/it's here".into()),
    };
    let boot = x.join("bootstrap.sh");
    std::fs::write(&boot, ezimg::bundle::bootstrap_script(&input)).expect("write");
    for f in [x.join("apply"), x.join("lib/ezimg.sh"), boot] {
        let st = Command::new("bash")
            .arg("-n")
            .arg(&f)
            .status()
            .expect("bash");
        assert!(st.success(), "bash -n {}", f.display());
        if shellcheck_available() {
            let o = Command::new("shellcheck")
                .args(["-x", "-S", "warning", "-s", "bash"])
                .arg(&f)
                .current_dir(&x)
                .output()
                .expect("shellcheck");
            assert!(
                o.status.success(),
                "shellcheck {}:\n{}",
                f.display(),
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

#[test]
fn containerd_source_distro_swaps_nerdctl_for_the_package_and_is_refused_where_impossible() {
    let d = tempfile::tempdir().expect("tempdir");
    let text = default_cluster().replace(
        "# [roles.worker]\n# containerd_source = \"distro\"",
        "[roles.worker]\ncontainerd_source = \"distro\"",
    );
    assert!(
        text.contains("\n[roles.worker]\n"),
        "default cluster changed"
    );
    let debian = write(
        d.path(),
        "debian.toml",
        &text.replace("os = \"el7\"", "os = \"debian12\""),
    );
    let o = run(ezimg()
        .args(["plan", "--node", "worker-01", "--json", "-c"])
        .arg(&debian));
    assert!(o.ok, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("plan --json");
    let skipped = |name: &str| -> bool {
        v[0]["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no layer {name}"))["skipped"]
            .is_string()
    };
    assert!(!skipped("containerd-distro") && !skipped("containerd"));
    assert!(skipped("nerdctl") && skipped("docker-alias"));
    // el7 has no containerd of its own: a clear error naming the layer and why.
    let el7 = write(d.path(), "el7.toml", &text);
    let o = run(ezimg()
        .args(["plan", "--node", "worker-01", "-c"])
        .arg(&el7));
    assert!(!o.ok, "{}", o.stdout);
    assert!(
        o.stderr.contains("containerd-distro") && o.stderr.contains("does nothing on el7"),
        "{}",
        o.stderr
    );
}

/// The default cluster on a machine that cannot reach the artifact hosts: `build` refuses,
/// naming every missing artifact and its fix, and writes nothing; `--allow-incomplete` writes
/// the outputs and says plainly what the nodes will refuse.
#[test]
fn build_refuses_outputs_that_cannot_install_a_node() {
    let d = tempfile::tempdir().expect("tempdir");
    let out = d.path().join("out");
    let cache = d.path().join("cache");
    let o = run(ezimg()
        .env_remove("EZIMG_ALLOW_INCOMPLETE")
        .env("EZIMG_CACHE_DIR", &cache)
        .env("EZIMG_SECRETS", d.path().join("s"))
        .args(["build", "--all", "--out"])
        .arg(&out));
    assert!(!o.ok, "build wrote outputs that cannot install a node");
    for needle in [
        "nothing was written",
        "kernel-ml (roles ops, slb, master, worker): no digest pinned",
        "`ezimg lock kernel-ml`",
        "nerdctl-full (roles ops, master, worker)",
        "`ezimg fetch nerdctl-full`",
        "nginx-stage (roles slb): the build stage's output is not built",
        "--allow-incomplete",
    ] {
        assert!(
            o.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            o.stderr
        );
    }
    assert!(
        !o.stderr.lines().any(|l| l.starts_with("built ")),
        "claims to have built:\n{}",
        o.stderr
    );
    assert!(!out.exists(), "a refused build wrote {}", out.display());
    let o = run(ezimg()
        .env("EZIMG_CACHE_DIR", &cache)
        .env("EZIMG_SECRETS", d.path().join("s"))
        .args(["build", "--all", "--out"])
        .arg(&out));
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr.contains("INCOMPLETE") && o.stderr.contains("kernel-ml"),
        "{}",
        o.stderr
    );
    assert!(out.join("master/master-01/ks.cfg").exists());
}

#[test]
fn access_keys_and_hash_are_checked() {
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDsYb5da/VWG4JHE4zn8ilpal+KhvFBIvwX83O3R/i5f ops@x";
    let access = |keys: &str, hash: &str| {
        default_cluster()
            .replace(
                "ssh_authorized_keys = []",
                &format!("ssh_authorized_keys = [{keys}]"),
            )
            .replace("# root_password_hash = \"$6$...\"", hash)
    };
    // Accepted: a real key and a crypt hash.
    let d = tempfile::tempdir().expect("tempdir");
    let ok = access(
        &format!("\"{key}\""),
        "root_password_hash = \"$6$salt$abcdefghijklmnop\"",
    );
    assert_ne!(
        ok,
        default_cluster(),
        "the default cluster has an [access] table to edit"
    );
    let f = write(d.path(), "cluster.toml", &ok);
    let o = run(ezimg().arg("check").arg("-c").arg(&f));
    assert!(o.ok, "{}", o.stderr);
    for (keys, hash, needle) in [
        ("\"ssh-foo AAAA\"", "", "is not an OpenSSH public key type"),
        ("\"ssh-ed25519 not-base64!\"", "", "not base64"),
        (
            "\"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDsYb5da/VWG4JHE4zn8ilpal+KhvFBIvwX83O3R/i5f\"",
            "",
            "not a ssh-rsa key",
        ),
        (
            "",
            "root_password_hash = \"hunter2\"",
            "access.root_password_hash",
        ),
    ] {
        let text = access(keys, hash);
        check_fails(&text, &[needle]);
        let d = tempfile::tempdir().expect("tempdir");
        let f = write(d.path(), "cluster.toml", &text);
        let o = run(ezimg().arg("check").arg("-c").arg(&f));
        assert!(
            !o.stderr.contains("hunter2"),
            "the message quotes the password: {}",
            o.stderr
        );
    }
}

/// `ezimg … | head -1`: a reader that goes away ends the command quietly, never a panic.
#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    for args in [
        &["completions", "bash"][..],
        &["check"][..],
        &["plan", "--role", "master"][..],
        &["plan", "--json"][..],
        &["init", "--out", "-"][..],
    ] {
        let out = Command::new("bash")
            .arg("-c")
            .arg("set -o pipefail; \"$0\" \"$@\" | head -c 1 >/dev/null")
            .arg(assert_cmd::cargo::cargo_bin("ezimg"))
            .args(args)
            .env("EZIMG_ALLOW_INCOMPLETE", "1")
            .output()
            .expect("bash");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}

/// `[[node.disk]]` purposes: each mistake is an error naming the node's field and its line.
#[test]
fn disks_are_checked_by_purpose() {
    // Disks under the node whose hostname line is given.
    let with_disks = |host: &str, disks: &str| with_disks_in(&default_cluster(), host, disks);
    let disk = |dev: &str, purpose: &str, fs: Option<&str>| {
        let fs = fs.map(|f| format!("fs = \"{f}\"\n")).unwrap_or_default();
        format!("\n[[node.disk]]\ndevice = \"{dev}\"\npurpose = \"{purpose}\"\n{fs}")
    };
    // Accepted: seed 002's master (system, etcd, data) and a worker with a data and a keep disk.
    let ok = with_disks(
        "master-01",
        &(disk("/dev/sda", "system", None)
            + &disk("/dev/sdb", "etcd", None)
            + &disk(
                "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
                "data",
                Some("ext4"),
            )),
    );
    let d = tempfile::tempdir().expect("tempdir");
    let f = write(d.path(), "cluster.toml", &ok);
    let o = run(ezimg().arg("check").arg("-c").arg(&f));
    assert!(o.ok, "{}", o.stderr);

    let line_of = |text: &str, needle: &str, after: &str| {
        let start = text.find(after).expect("anchor");
        text[..start + text[start..].find(needle).expect("needle")]
            .matches('\n')
            .count()
            + 1
    };
    // etcd on a worker: refused, at the worker's disk line (not master-01's, which also has one).
    let text = with_disks("master-01", &disk("/dev/sdb", "etcd", None));
    let text = with_disks_in(&text, "worker-02", &disk("/dev/sdb", "etcd", None));
    let l = line_of(&text, "purpose = \"etcd\"", "hostname = \"worker-02\"");
    check_fails(
        &text,
        &[
            &format!("cluster.toml:{l}: node[7].disk[0].purpose"),
            "an etcd disk belongs on a master",
        ],
    );
    for (disks, needles) in [
        (
            disk("/dev/sda", "system", None) + &disk("/dev/sdb", "system", None),
            &["node[3].disk[1].purpose", "exactly one system disk"][..],
        ),
        (
            disk("/dev/sdb", "data", None) + &disk("/dev/sdc", "data", None),
            &["node[3].disk[1].purpose", "already the data disk"],
        ),
        (
            disk("/dev/sdb", "keep", Some("xfs")),
            &["node[3].disk[0].fs", "never touched"],
        ),
        (
            disk("/dev/sdb", "data", Some("btrfs")),
            &["node[3].disk[0].fs", "must be xfs or ext4"],
        ),
        (
            disk("/dev/sda", "data", None),
            &["node[3].disk[0].device", "declare the node's system disk"],
        ),
        (
            disk("/dev/sdb", "data", None) + &disk("/dev/sdb", "keep", None),
            &["node[3].disk[1].device", "also node[3].disk[0]"],
        ),
        (
            disk("sdb", "data", None),
            &["node[3].disk[0].device", "must be a /dev path"],
        ),
        (
            disk("/dev/sdb", "scratch", None),
            &[
                "unknown variant `scratch`",
                "`system`, `etcd`, `data`, `keep`",
            ],
        ),
    ] {
        check_fails(&with_disks("master-01", &disks), needles);
    }
}

/// `with_disks` on a text that already has disks elsewhere.
fn with_disks_in(text: &str, host: &str, disks: &str) -> String {
    let anchor = format!("hostname = \"{host}\"\n");
    let at = text.find(&anchor).expect("node");
    let end = text[at..].find("\n\n").map_or(text.len(), |e| at + e);
    format!("{}\n{disks}{}", &text[..end], &text[end..])
}

#[test]
fn yum_mirror_is_a_url_and_a_known_layout() {
    let text = default_cluster().replace("yum_mirror = \"\"", "yum_mirror = \"mirror.local\"");
    check_fails(
        &text,
        &["cluster.toml:", "yum_mirror", "not a mirror root URL"],
    );
    let text = default_cluster().replace(
        "yum_mirror_layout = \"vault\"",
        "yum_mirror_layout = \"tuna\"",
    );
    let line = text
        .lines()
        .position(|l| l.contains("\"tuna\""))
        .expect("the edited line")
        + 1;
    check_fails(
        &text,
        &[
            &format!("cluster.toml:{line}:"),
            "unknown variant `tuna`",
            "`vault` or `aliyun`",
        ],
    );
}
