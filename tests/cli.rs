//! The command line as a user meets it: init, check, plan, build, bad input, reproducibility.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use support::{default_cluster, with_os};

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
    // No secret in a file meant to be committed (so its usual 0644 is fine).
    assert!(
        !text.contains("auth_pass =") && !text.contains("k8spass"),
        "{text}"
    );
    assert!(text.contains("ezimg secrets rotate vrrp-password --value"));
    // Refuses to overwrite without --force.
    let o = run(ezimg().arg("init").arg("--out").arg(&f));
    assert!(!o.ok && o.stderr.contains("already exists"));
    let o = run(ezimg().arg("check").arg("-c").arg(&f));
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("9 nodes") && o.stdout.contains("role slb"));
    assert!(!o.stderr.contains("warning"), "{}", o.stderr);
    // The first build makes the store, with a random VRRP password.
    let o = run(ezimg()
        .args(["build", "--role", "slb", "--format", "bundle", "-c"])
        .arg(&f)
        .arg("--out")
        .arg(d.path().join("out")));
    assert!(o.ok, "{}", o.stderr);
    let pass = std::fs::read_to_string(d.path().join("cluster.secrets/vrrp-auth-pass"))
        .expect("store made");
    assert!(
        pass.trim_end().len() == 8 && pass.trim_end() != "k8spass",
        "{pass:?}"
    );
}

/// A cluster file that still sets vrrp.auth_pass works as before (it seeds the store once),
/// and check says where the secret belongs, without printing it.
#[test]
fn a_password_in_the_cluster_file_is_a_warning() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = write(d.path(), "cluster.toml", &default_cluster());
    let line = default_cluster()
        .lines()
        .position(|l| l.starts_with("auth_pass = "))
        .expect("the default sets auth_pass")
        + 1;
    let o = run(ezimg().arg("check").arg("-c").arg(&f));
    assert!(o.ok, "{}", o.stderr);
    let want = format!(
        "warning: {}:{line}:13: vrrp.auth_pass: a secret in the cluster file",
        f.display()
    );
    assert!(o.stderr.contains(&want), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("`ezimg secrets rotate vrrp-password --value …`")
    );
    assert!(!o.stderr.contains("k8spass"), "{}", o.stderr);
    let o = run(ezimg()
        .args(["build", "--role", "slb", "--format", "bundle", "-c"])
        .arg(&f)
        .arg("--out")
        .arg(d.path().join("out")));
    assert!(o.ok, "{}", o.stderr);
    let pass = std::fs::read_to_string(d.path().join("cluster.secrets/vrrp-auth-pass"))
        .expect("store made");
    assert_eq!(pass.trim_end(), "k8spass");
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

/// One bad cluster file: the default with `from` replaced by `to`, where `«…»` in `to` marks
/// the text the diagnostic must point at (its first character gives the expected line and
/// column) and quote.
struct Bad {
    from: &'static str,
    to: &'static str,
    /// The field as the message names it.
    field: &'static str,
    /// Part of the reason; `{TEXT}` stands for the line of the first TEXT in the file.
    why: &'static str,
    /// The marked text is a secret: it must appear nowhere in the output.
    secret: bool,
    /// The marked text is a key or a table header, not a value: located, not quoted.
    key: bool,
}

const fn bad(from: &'static str, to: &'static str, field: &'static str, why: &'static str) -> Bad {
    Bad {
        from,
        to,
        field,
        why,
        secret: false,
        key: false,
    }
}

const W3: &str = "hostname = \"worker-03\"\nrole = \"worker\"\nip = \"192.168.2.233\"";

/// Every defect of a cluster file ezimg refuses: the exit code, the exact file:line:column,
/// the field (nodes by hostname), the quoted value, and an --out left as it was.
#[test]
fn bad_cluster_files_are_located_exactly_and_leave_out_untouched() {
    let cases = [
        // Issue 13's wrong lines: a VIP equal to the gateway, a node at the network address,
        // an empty hostname, a duplicate IP named node[8].
        bad(
            "vip = \"192.168.2.100\"",
            "vip = «\"192.168.2.2\"»",
            "vrrp.vip",
            "is the gateway's address (network.gateway, line {gateway = })",
        ),
        bad(
            W3,
            "hostname = \"worker-03\"\nrole = \"worker\"\nip = «\"192.168.2.0\"»",
            "node \"worker-03\".ip",
            "is the network address of 192.168.2.0/24",
        ),
        bad(
            "hostname = \"ops\"",
            "hostname = «\"\"»",
            "node #1.hostname",
            "is not a valid hostname",
        ),
        bad(
            W3,
            "hostname = \"worker-03\"\nrole = \"worker\"\nip = «\"192.168.2.211\"»",
            "node \"worker-03\".ip",
            "is also the address of node \"slb-01\" (line {ip = \"192.168.2.211\"})",
        ),
        bad(
            "hostname = \"slb-02\"",
            "hostname = «\"slb-01\"»",
            "node \"slb-01\".hostname",
            "is also the hostname of node #2 (line {hostname = \"slb-01\"})",
        ),
        bad(
            W3,
            "hostname = \"worker-03\"\nrole = \"worker\"\nip = «\"192.168.2.255\"»",
            "node \"worker-03\".ip",
            "is the broadcast address",
        ),
        bad(
            W3,
            "hostname = \"worker-03\"\nrole = \"worker\"\nip = «\"192.168.2.2\"»",
            "node \"worker-03\".ip",
            "is the gateway's address",
        ),
        bad(
            W3,
            "hostname = \"worker-03\"\nrole = \"worker\"\nip = «\"192.168.3.9\"»",
            "node \"worker-03\".ip",
            "is outside the node network 192.168.2.0/24",
        ),
        bad(
            "ip = \"192.168.2.211\"",
            "ip = «\"192.168.2.100\"»",
            "node \"slb-01\".ip",
            "is the VIP (vrrp.vip, line {vip = })",
        ),
        bad(
            "vip = \"192.168.2.100\"",
            "vip = «\"192.168.3.100\"»",
            "vrrp.vip",
            "is outside the node network",
        ),
        bad(
            "pod_cidr = \"10.244.0.0/16\"",
            "pod_cidr = «\"10.96.128.0/17\"»",
            "network.pod_cidr",
            "overlaps network.service_cidr 10.96.0.0/16",
        ),
        bad(
            "service_cidr = \"10.96.0.0/16\"",
            "service_cidr = «\"192.168.0.0/16\"»",
            "network.service_cidr",
            "overlaps network.cidr 192.168.2.0/24",
        ),
        bad(
            "gateway = \"192.168.2.2\"",
            "gateway = «\"192.168.9.1\"»",
            "network.gateway",
            "is outside the node network",
        ),
        // Issue 13 (2): what build or the node would reject.
        bad(
            "interface = \"ens33\"",
            "interface = «\"ens 33; reboot\"»",
            "network.interface",
            "must be a Linux interface name",
        ),
        bad(
            "interface = \"ens33\"",
            "interface = «\"enp0s31f6-too-long\"»",
            "network.interface",
            "1-15",
        ),
        bad(
            "name = \"ezk8s\"",
            "name = «\"ezk8s/..\"»",
            "name",
            "it names files and folders",
        ),
        bad(
            "timezone = \"Asia/Shanghai\"",
            "timezone = «\"Mars/Olympus\"»",
            "timezone",
            "is not a time zone",
        ),
        bad(
            "router_id = 100",
            "router_id = «0»",
            "vrrp.router_id",
            "must be 1-255",
        ),
        bad(
            "advert_int = 1",
            "advert_int = «0»",
            "vrrp.advert_int",
            "must be 1-255 seconds",
        ),
        Bad {
            secret: true,
            ..bad(
                "auth_pass = \"k8spass\"",
                "auth_pass = «\"k8spassword\"»",
                "vrrp.auth_pass",
                "more than 8 characters",
            )
        },
        bad(
            "hostname = \"worker-01\"\nrole = \"worker\"",
            "hostname = \"worker-01\"\nrole = «\"wrker\"»",
            "node \"worker-01\".role",
            "is not a role (known: master, ops, slb, worker)",
        ),
        bad(
            "ip = \"192.168.2.211\"",
            "ip = \"192.168.2.211\"\nmac = «\"52:54:00:00:00\"»",
            "node \"slb-01\".mac",
            "is not a MAC address",
        ),
        bad(
            "ip = \"192.168.2.212\"",
            "ip = \"192.168.2.212\"\nmac = \"52:54:00:00:00:01\"\n\n[[node.disk]]\ndevice = «\"sdb\"»\npurpose = \"keep\"",
            "node \"slb-02\".disk[0].device",
            "must be a /dev path",
        ),
        bad(
            "# [roles.slb]\n# lb = \"haproxy\"",
            "[roles.slb]\nlbb = «\"haproxy\"»",
            "roles.slb.lbb",
            "unknown parameter of role slb",
        ),
        bad(
            "# [roles.slb]\n# lb = \"haproxy\"",
            "[roles.slb]\nlb = «3»",
            "roles.slb.lb",
            "must be a string, not a integer",
        ),
        Bad {
            key: true,
            ..bad(
                "# [roles.slb]\n# lb = \"haproxy\"",
                "«[roles.lb]»\nlb = \"haproxy\"",
                "roles.lb",
                "parameters for unknown role \"lb\"",
            )
        },
        bad(
            "version = \"v1.29.3\"",
            "version = «\"1.29\"»",
            "kubernetes.version",
            "must look like v1.29.3",
        ),
        bad(
            "dns_domain = \"cluster.local\"",
            "dns_domain = «\"Cluster.Local\"»",
            "kubernetes.dns_domain",
            "must be a DNS domain",
        ),
        bad(
            "ssh_authorized_keys = []",
            "ssh_authorized_keys = [«\"ssh-foo AAAA\"»]",
            "access.ssh_authorized_keys[0]",
            "is not an OpenSSH public key type",
        ),
        Bad {
            secret: true,
            ..bad(
                "# root_password_hash = \"$6$...\"",
                "root_password_hash = «\"hunter2\"»",
                "access.root_password_hash",
                "never a plain password",
            )
        },
        // The role counts: no master is pointed at the first node's role, no slb at the VIP.
        bad(
            "hostname = \"ops\"\nrole = \"ops\"",
            "hostname = \"ops\"\nrole = «\"ops\"»",
            "node \"ops\".role",
            "at least one node must have role \"master\"",
        ),
        bad(
            "vip = \"192.168.2.100\"",
            "vip = «\"192.168.2.100\"»",
            "vrrp.vip",
            "no slb node holds the VIP",
        ),
        // Refused while parsing: the field found from the error's span.
        bad(
            "ip = \"192.168.2.233\"",
            "ip = «\"192.168.2.300\"»",
            "node \"worker-03\".ip",
            "invalid IPv4 address syntax",
        ),
        bad(
            "router_id = 100",
            "router_id = «\"x\"»",
            "vrrp.router_id",
            "expected u32",
        ),
        bad(
            "os = \"el7\"",
            "os = «\"el8\"»",
            "os",
            "unknown variant `el8`",
        ),
        Bad {
            key: true,
            ..bad(
                "advert_int = 1",
                "advert_int = 1\n«advert_intervall» = 2",
                "vrrp.advert_intervall",
                "unknown field `advert_intervall`",
            )
        },
        bad(
            "name = \"ezk8s\"",
            "name = «»",
            "",
            "string values must be quoted",
        ),
    ];
    let d = tempfile::tempdir().expect("tempdir");
    let out = d.path().join("out");
    std::fs::create_dir_all(out.join("slb")).expect("mkdir");
    std::fs::write(out.join("slb/sentinel"), "old").expect("write");
    let before = snapshot(&out);
    for (n, case) in cases.iter().enumerate() {
        let base = default_cluster();
        assert!(
            base.contains(case.from),
            "case {n}: {:?} not in the default",
            case.from
        );
        let mut text = base.replacen(case.from, case.to, 1);
        // The no-master case turns every master into a worker; the no-slb case every slb.
        if case.why.contains("must have role \"master\"") {
            text = text.replace("role = \"master\"", "role = \"worker\"");
        }
        if case.why.contains("no slb node") {
            text = text.replace("role = \"slb\"", "role = \"worker\"");
        }
        let start = text.find('«').expect("marked");
        let end = text.find('»').expect("marked");
        let marked = text[start + '«'.len_utf8()..end].to_string();
        let before_mark = &text[..start];
        let line = before_mark.matches('\n').count() + 1;
        let col = before_mark
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            + 1;
        let text = text.replace(['«', '»'], "");
        let mut why = case.why.to_string();
        while let (Some(a), Some(b)) = (why.find('{'), why.find('}')) {
            let needle = &why[a + 1..b];
            let at = text.find(needle).expect("referenced text in the file");
            let line = text[..at].matches('\n').count() + 1;
            why.replace_range(a..=b, &line.to_string());
        }
        let f = write(d.path(), "cluster.toml", &text);
        let place = format!("{}:{line}:{col}: ", f.display());
        let heading = match (
            case.field.is_empty(),
            case.secret || case.key || marked.is_empty(),
        ) {
            (true, _) => place.clone(),
            (false, true) => format!("{place}{}: ", case.field),
            (false, false) => format!("{place}{} = {marked}: ", case.field),
        };
        for cmd in ["check", "build"] {
            let mut c = ezimg();
            c.arg(cmd).arg("-c").arg(&f);
            if cmd == "build" {
                c.args(["--all", "--out"]).arg(&out);
            }
            let o = c.output().expect("ezimg runs");
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "case {n} ({cmd}): {stderr}");
            let hit = stderr
                .lines()
                .find(|l| l.contains(&heading))
                .unwrap_or_else(|| panic!("case {n} ({cmd}): no line with {heading:?}:\n{stderr}"));
            assert!(
                hit.contains(&why),
                "case {n} ({cmd}): {hit:?} lacks {why:?}"
            );
            if case.secret {
                assert!(
                    !stderr.contains(&marked[1..marked.len() - 1]),
                    "case {n} ({cmd}): the secret is in the message: {stderr}"
                );
            }
            assert_eq!(snapshot(&out), before, "case {n} ({cmd}): --out changed");
        }
    }
}

/// Every file under `root` with its bytes.
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(root)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(root.join(&p)).expect("read");
            (p, bytes)
        })
        .collect()
}

#[test]
fn master_count_rules() {
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
    let f = write(d.path(), "c.toml", &with_os(&default_cluster(), "debian12"));
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
    let data = data_copy(dir);
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
    assert!(
        o.stderr.contains("undefined value: `no_such_variable`"),
        "{}",
        o.stderr
    );
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

/// `[packages]` and the scripts' `ez_pkg_install` cannot drift: either side alone is refused,
/// naming the layer file, the OS and the packages.
#[test]
fn packages_declared_in_layer_toml_must_match_the_scripts() {
    let d = tempfile::tempdir().expect("tempdir");
    let data = data_copy(d.path());
    let toml = data.join("layers/chrony/layer.toml");
    let text = std::fs::read_to_string(&toml).expect("chrony layer.toml");
    let check = |layer_toml: &str, needles: &[&str]| {
        std::fs::write(&toml, layer_toml).expect("write");
        let o = run(ezimg().arg("--data").arg(&data).arg("check"));
        assert!(!o.ok, "check accepted:\n{layer_toml}");
        for n in needles {
            assert!(o.stderr.contains(n), "stderr lacks {n:?}:\n{}", o.stderr);
        }
    };
    let undeclared = text.replace("all = [\"chrony\"]", "debian12 = [\"chrony\"]");
    assert_ne!(
        undeclared, text,
        "the chrony layer declares `all = [\"chrony\"]`"
    );
    check(
        &undeclared,
        &[
            "layers/chrony/layer.toml",
            "on el7",
            "`ez_pkg_install chrony`",
        ],
    );
    check(
        &text.replace("all = [\"chrony\"]", "all = [\"chrony\", \"ntp\"]"),
        &["layers/chrony/layer.toml", "declares ntp for el7"],
    );
    check(
        &text.replace(
            "all = [\"chrony\"]",
            "all = [\"chrony\"]\nsuse = [\"chrony\"]",
        ),
        &["layers/chrony/layer.toml", "unknown field `suse`"],
    );
    std::fs::write(&toml, &text).expect("write");
    let o = run(ezimg().arg("--data").arg(&data).arg("check"));
    assert!(o.ok, "{}", o.stderr);
}

#[test]
fn completions_and_version() {
    let o = run(ezimg().args(["completions", "bash"]));
    assert!(o.ok && o.stdout.contains("_ezimg"));
    let o = run(ezimg().arg("--version"));
    assert!(o.ok && o.stdout.starts_with("ezimg "));
}

/// The bundle's line formats have two readers, bash on the node (`apply`) and Rust
/// (`bundle::format`, used by the bake): on every node's real bundle they must read the same
/// records (`apply --list-steps` / `--list-artifacts` print what apply's loops read).
#[test]
fn bash_and_rust_read_the_bundle_formats_alike() {
    use ezimg::bundle::format::{Step, parse_artifacts_list, parse_steps};
    for os in ["el7", "el9", "debian12"] {
        let d = tempfile::tempdir().expect("tempdir");
        let f = write(d.path(), "cluster.toml", &with_os(&default_cluster(), os));
        let out = d.path().join("out");
        let o = run(ezimg()
            .args(["build", "--all", "--format", "bundle", "-c"])
            .arg(&f)
            .arg("--out")
            .arg(&out));
        assert!(o.ok, "{os}: {}", o.stderr);
        let (mut nodes, mut pins, mut secret_files) = (0, 0, 0);
        for role in ["ops", "slb", "master", "worker"] {
            let x = d.path().join(format!("x-{role}"));
            std::fs::create_dir_all(&x).expect("mkdir");
            let st = Command::new("tar")
                .arg("-xzf")
                .arg(out.join(format!("{role}/ezimg-{role}-bundle.tar.gz")))
                .arg("-C")
                .arg(&x)
                .status()
                .expect("tar");
            assert!(st.success(), "{os} {role}: unpacking the bundle");
            let bash = |args: &[&str]| {
                let o = Command::new("bash")
                    .arg(x.join("apply"))
                    .args(args)
                    .output()
                    .expect("bash runs");
                assert!(
                    o.status.success(),
                    "{os} {role}: apply {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                String::from_utf8(o.stdout).expect("UTF-8")
            };
            let text = std::fs::read_to_string(x.join("artifacts.list")).expect("artifacts.list");
            let want: String = parse_artifacts_list(&text, "artifacts.list")
                .expect("Rust reads artifacts.list")
                .iter()
                .map(|a| {
                    let sha = a.sha256.as_deref().unwrap_or("-");
                    format!("{}\t{sha}\t{}\n", a.name, a.file)
                })
                .collect();
            assert_eq!(
                bash(&["--list-artifacts"]),
                want,
                "{os} {role}: artifacts.list"
            );
            // The step library's lookup, which layer scripts use, reads the same pins.
            for a in parse_artifacts_list(&text, "artifacts.list").expect("parsed") {
                let o = Command::new("bash")
                    .args([
                        "-c",
                        ". \"$EZ_BUNDLE/lib/ezimg.sh\"; ez_pin \"$1\"; ez_pinned_sha \"$1\"",
                    ])
                    .arg("ez_pin")
                    .arg(&a.name)
                    .env("EZ_BUNDLE", &x)
                    .output()
                    .expect("bash runs");
                let sha = a.sha256.as_deref().unwrap_or("-");
                assert_eq!(
                    String::from_utf8_lossy(&o.stdout),
                    format!("{sha} {}\n{sha}\n", a.file),
                    "{os} {role}: ez_pin {}",
                    a.name
                );
                pins += 1;
            }
            for node in bash(&["--list-nodes"]).lines() {
                let path = x.join(format!("nodes/{node}/steps"));
                let text = std::fs::read_to_string(&path).expect("steps");
                let steps = parse_steps(&text, "steps").expect("Rust reads the steps");
                assert!(
                    steps.iter().any(|s| matches!(s, Step::Script { .. })),
                    "{os} {node}: no script step"
                );
                // The placeholders of each file, as the step library finds them.
                for s in &steps {
                    let Step::File { sha256, dest, .. } = s else {
                        continue;
                    };
                    let blob = x.join("blobs").join(sha256);
                    let o = Command::new("bash")
                        .args(["-c", ". \"$1/lib/ezimg.sh\"; ez_secret_names \"$2\""])
                        .arg("ez_secret_names")
                        .arg(&x)
                        .arg(&blob)
                        .output()
                        .expect("bash runs");
                    assert!(o.status.success(), "{os} {node}: ez_secret_names {dest}");
                    let rust =
                        ezimg::bundle::format::secret_names(&std::fs::read(&blob).expect("blob"));
                    let bash: Vec<String> = String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(String::from)
                        .collect();
                    assert_eq!(bash, rust, "{os} {node}: secrets of {dest}");
                    secret_files += usize::from(!rust.is_empty());
                }
                let want: String = steps
                    .iter()
                    .map(|s| match s {
                        Step::Layer { name } => format!("layer\t{name}\t\t\n"),
                        Step::File { mode, sha256, dest } => {
                            format!("file\t{mode}\t{sha256}\t{dest}\n")
                        }
                        Step::Unit { name, enable } => {
                            format!("unit\t{name}\t{}\t\n", u8::from(*enable))
                        }
                        Step::Script { sha256, src } => format!("script\t{sha256}\t{src}\t\n"),
                    })
                    .collect();
                assert_eq!(
                    bash(&["--node", node, "--list-steps"]),
                    want,
                    "{os} {node}: steps"
                );
                nodes += 1;
            }
        }
        assert!(
            nodes >= 4 && pins >= 4 && secret_files >= 4,
            "{os}: only {nodes} nodes, {pins} pins, {secret_files} files with secrets"
        );
    }
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
        in_image: false,
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
        if support::host_tool("shellcheck").is_some() {
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
    let debian = write(d.path(), "debian.toml", &with_os(&text, "debian12"));
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
        "kernel-ml (roles ops, slb, master, worker): not in the verified cache",
        "`ezimg fetch kernel-ml`",
        "verified by its OpenPGP signature by key \"elrepo\"",
        "calico-tigera-operator (roles master): no digest pinned",
        "`ezimg lock calico-tigera-operator`",
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

/// A cluster file in a folder of its own (its secret store lands beside it), an --out and an
/// artifact cache there too.
struct Site {
    dir: tempfile::TempDir,
    cluster: PathBuf,
    out: PathBuf,
    cache: PathBuf,
}

impl Site {
    fn new(text: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = write(dir.path(), "cluster.toml", text);
        let out = dir.path().join("out");
        let cache = dir.path().join("cache");
        Site {
            dir,
            cluster,
            out,
            cache,
        }
    }
    fn set_cluster(&self, text: &str) {
        std::fs::write(&self.cluster, text).expect("write cluster file");
    }
    fn ezimg(&self, args: &[&str]) -> Command {
        // The subcommand, then the cluster file, then the rest (the caller may add a value).
        let mut c = ezimg();
        c.env("EZIMG_CACHE_DIR", &self.cache)
            .args(&args[..1])
            .arg("-c")
            .arg(&self.cluster)
            .args(&args[1..]);
        c
    }
    fn build(&self, args: &[&str]) -> Out {
        let o = run(self
            .ezimg(&[&["build"], args].concat())
            .arg("--out")
            .arg(&self.out));
        assert!(o.ok, "build {args:?}: {}", o.stderr);
        o
    }
    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
    fn tamper(&self, rel: &str) {
        std::fs::write(self.out.join(rel), "tampered").expect("tamper");
    }
}

/// The manifest lists exactly the files ezimg wrote: all that is in --out but the manifest
/// itself and `extra` (the operator's).
fn assert_manifest_matches(out: &Path, extra: &[&str]) {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ezimg-outputs.json")).expect("manifest"))
            .expect("manifest is JSON");
    let listed: Vec<String> = m["files"]
        .as_object()
        .expect("files")
        .keys()
        .cloned()
        .collect();
    let mut on_disk: Vec<String> = files_under(out)
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p != "ezimg-outputs.json" && !extra.contains(&p.as_str()))
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk, "manifest and --out differ");
}

/// Each format alone replaces that format's files of the nodes it builds, and nothing else.
#[test]
fn partial_rebuilds_replace_exactly_what_they_produce() {
    let s = Site::new(&default_cluster());
    s.build(&["--all"]);
    let full = snapshot(&s.out);
    std::fs::write(s.out.join("slb/NOTES"), "the operator's").expect("write");
    let ks = "worker/worker-02/ks.cfg";
    let seed = [
        "worker/worker-02/seed/user-data",
        "worker/worker-02/seed.img",
    ];
    let original = |rel: &str| {
        full.iter()
            .find(|(p, _)| p == Path::new(rel))
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("{rel} not built"))
    };

    // cloud-init alone: the seed is written again, the ks.cfg is left as it is.
    s.tamper(ks);
    for f in seed {
        s.tamper(f);
    }
    s.build(&["--node", "worker-02", "--format", "cloud-init"]);
    assert_eq!(s.read(ks), b"tampered", "cloud-init build touched ks.cfg");
    for f in seed {
        assert_eq!(s.read(f), original(f), "{f} not rebuilt");
    }
    // kickstart alone: the other way round.
    for f in seed {
        s.tamper(f);
    }
    s.build(&["--node", "worker-02", "--format", "kickstart"]);
    assert_eq!(s.read(ks), original(ks));
    for f in seed {
        assert_eq!(s.read(f), b"tampered", "kickstart build touched {f}");
    }
    // The bundle alone: the role's bundle, no node file.
    let bundle = "slb/ezimg-slb-bundle.tar.gz";
    s.tamper(bundle);
    s.tamper("slb/slb-01/ks.cfg");
    s.build(&["--role", "slb", "--format", "bundle"]);
    assert_eq!(s.read(bundle), original(bundle));
    assert_eq!(s.read("slb/slb-01/ks.cfg"), b"tampered");
    // A full build again gives the first build's bytes; the operator's file stays.
    s.build(&["--all"]);
    let mut again = snapshot(&s.out);
    again.retain(|(p, _)| p != Path::new("slb/NOTES"));
    assert_eq!(again, full);
    assert_eq!(s.read("slb/NOTES"), b"the operator's");
    assert_manifest_matches(&s.out, &["slb/NOTES"]);
    assert!(
        !files_under(&s.out)
            .iter()
            .any(|p| p.to_string_lossy().contains(".ezimg-staging"))
    );
}

/// Nodes and roles that left the cluster lose their outputs (they hold secrets), on any build,
/// and the build says so; a node that changed role loses its old folder.
#[test]
fn outputs_of_removed_nodes_and_roles_are_removed_and_said() {
    let s = Site::new(&default_cluster());
    s.build(&["--all"]);
    assert!(s.out.join("worker/worker-03/ks.cfg").exists());
    let without_w3 = default_cluster().replace(
        "[[node]]\nhostname = \"worker-03\"\nrole = \"worker\"\nip = \"192.168.2.233\"\n",
        "",
    );
    assert_ne!(without_w3, default_cluster());
    s.set_cluster(&without_w3);
    // A build of another role still removes them.
    let o = s.build(&["--role", "slb"]);
    assert!(
        o.stderr
            .contains("node worker-03 is no longer in the cluster")
            && o.stderr.contains("worker/worker-03/ks.cfg"),
        "{}",
        o.stderr
    );
    assert!(!s.out.join("worker/worker-03").exists());
    assert!(s.out.join("worker/worker-01/ks.cfg").exists());
    assert_manifest_matches(&s.out, &[]);

    // A node that changes role: its old folder goes, even when only its new role is built.
    let moved = without_w3.replacen(
        "hostname = \"worker-02\"\nrole = \"worker\"",
        "hostname = \"worker-02\"\nrole = \"master\"",
        1,
    );
    assert_ne!(moved, without_w3);
    s.set_cluster(&moved);
    let o = s.build(&["--role", "master"]);
    assert!(
        o.stderr
            .contains("node worker-02 now has role master, not worker"),
        "{}",
        o.stderr
    );
    assert!(!s.out.join("worker/worker-02").exists());
    assert!(s.out.join("master/worker-02/ks.cfg").exists());

    // A role with no node left: its whole folder goes.
    let no_ops = moved.replace(
        "[[node]]\nhostname = \"ops\"\nrole = \"ops\"\nip = \"192.168.2.201\"\n",
        "",
    );
    assert_ne!(no_ops, moved);
    s.set_cluster(&no_ops);
    let o = s.build(&["--node", "slb-01", "--format", "kickstart"]);
    assert!(
        o.stderr.contains("role ops has no node in the cluster"),
        "{}",
        o.stderr
    );
    assert!(!s.out.join("ops").exists(), "ops/ is left");
    assert_manifest_matches(&s.out, &[]);
}

/// `build --all` without the artifacts at hand keeps the artifacts/ an earlier build exported
/// (fetched through a local mirror, verified against a lock beside the cluster file).
#[test]
fn a_build_without_artifacts_keeps_the_earlier_ones() {
    let s = Site::new(&default_cluster());
    let crictl = b"a stand-in crictl tarball: only its digest matters here\n";
    let digest = ezimg::digest::sha256_hex(crictl);
    let lock = ezimg::artifact::Lock::embedded()
        .expect("embedded lock")
        .text;
    let real = "sha256 = \"d16a1ffb3938f5a19d5c8f45d363bd091ef89c0bc4d44ad16b933eede32fdcbb\"";
    assert!(lock.contains(real), "crictl's pin changed");
    write(
        s.dir.path(),
        "artifacts.lock",
        &lock.replace(real, &format!("sha256 = \"{digest}\"")),
    );
    let mirror = s.dir.path().join("mirror");
    std::fs::create_dir_all(&mirror).expect("mkdir");
    std::fs::write(mirror.join("crictl-v1.29.0-linux-amd64.tar.gz"), crictl).expect("write");
    let o = run(s
        .ezimg(&["fetch", "crictl", "--progress", "quiet", "--mirror"])
        .arg(&mirror));
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr.contains("(beside the cluster file)"),
        "{}",
        o.stderr
    );
    s.build(&["--all"]);
    let art = "worker/artifacts/crictl-v1.29.0-linux-amd64.tar.gz";
    assert_eq!(s.read(art), crictl);
    // The cache is gone (another machine, a cleaned cache): the next build keeps artifacts/.
    std::fs::remove_dir_all(&s.cache).expect("rm cache");
    s.build(&["--all"]);
    assert_eq!(s.read(art), crictl, "artifacts/ was dropped");
    assert_manifest_matches(&s.out, &[]);
}

/// An --out holding another cluster's outputs is refused, and left as it was.
#[test]
fn another_clusters_out_is_refused() {
    let s = Site::new(&default_cluster());
    s.build(&["--role", "slb"]);
    let before = snapshot(&s.out);
    s.set_cluster(&default_cluster().replace("name = \"ezk8s\"", "name = \"other\""));
    let store = s.dir.path().join("other.secrets");
    let o = run(s
        .ezimg(&["build", "--all", "--secrets"])
        .arg(&store)
        .arg("--out")
        .arg(&s.out));
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains("holds the outputs of cluster \"ezk8s\", not \"other\""),
        "{}",
        o.stderr
    );
    assert_eq!(snapshot(&s.out), before);
    assert!(!store.exists(), "a refused build made a secret store");
}

/// The lock is an input given by one rule, never the current directory's: the same command from
/// two directories (one with a different artifacts.lock in it) writes the same bytes, and says
/// which lock it used; `plan` records it.
#[test]
fn the_lock_does_not_depend_on_the_working_directory() {
    let s = Site::new(&default_cluster());
    let here = tempfile::tempdir().expect("tempdir");
    let there = tempfile::tempdir().expect("tempdir");
    let lock = ezimg::artifact::Lock::embedded()
        .expect("embedded lock")
        .text;
    let real = "sha256 = \"d16a1ffb3938f5a19d5c8f45d363bd091ef89c0bc4d44ad16b933eede32fdcbb\"";
    let other = lock.replace(real, &format!("sha256 = \"{}\"", "0".repeat(64)));
    assert_ne!(other, lock);
    let stray = write(there.path(), "artifacts.lock", &other);
    let mut outs = Vec::new();
    for cwd in [here.path(), there.path()] {
        let out = cwd.join("out");
        let o = run(s
            .ezimg(&["build", "--all", "--out"])
            .arg(&out)
            .current_dir(cwd));
        assert!(o.ok, "{}", o.stderr);
        assert!(
            o.stderr
                .contains("lock: <embedded>/artifacts.lock (sha256 ")
                && o.stderr.contains("(embedded in ezimg)"),
            "{}",
            o.stderr
        );
        outs.push(snapshot(&out));
    }
    assert_eq!(
        outs[0], outs[1],
        "the working directory changed the outputs"
    );
    // Given explicitly, the other lock is used, said, and changes the bundles.
    let out = here.path().join("explicit");
    let o = run(s
        .ezimg(&["build", "--role", "worker", "--format", "bundle", "--out"])
        .arg(&out)
        .arg("--lock")
        .arg(&stray));
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("lock: {} (sha256 ", stray.display()))
            && o.stderr.contains("(--lock / EZIMG_LOCK)"),
        "{}",
        o.stderr
    );
    let b = "worker/ezimg-worker-bundle.tar.gz";
    let first = outs[0]
        .iter()
        .find(|(p, _)| p == Path::new(b))
        .expect("bundle");
    assert_ne!(std::fs::read(out.join(b)).expect("bundle"), first.1);
    // plan records the lock it used.
    let o = run(s
        .ezimg(&["plan", "--node", "worker-01", "--json"])
        .current_dir(there.path()));
    assert!(o.ok, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    let recorded = v[0]["lock"].as_str().expect("plan records the lock");
    assert!(
        recorded.starts_with("<embedded>/artifacts.lock (sha256 "),
        "{recorded}"
    );
}

/// Deterministic pseudo-random numbers (an LCG): the same variations on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Edits of the default cluster file, good and bad: (what it is, from, to).
const EDITS: &[(&str, &str, &str)] = &[
    ("el9", "os = \"el7\"", "os = \"el9\""),
    ("debian12", "os = \"el7\"", "os = \"debian12\""),
    (
        "vlan interface",
        "interface = \"ens33\"",
        "interface = \"eth0.100\"",
    ),
    (
        "interface with a space",
        "interface = \"ens33\"",
        "interface = \"ens 33; reboot\"",
    ),
    (
        "interface with a slash",
        "interface = \"ens33\"",
        "interface = \"a/b\"",
    ),
    (
        "long interface",
        "interface = \"ens33\"",
        "interface = \"enp0s31f6-toolong\"",
    ),
    ("UTC", "timezone = \"Asia/Shanghai\"", "timezone = \"UTC\""),
    (
        "no such zone",
        "timezone = \"Asia/Shanghai\"",
        "timezone = \"Mars/Olympus\"",
    ),
    (
        "zone path",
        "timezone = \"Asia/Shanghai\"",
        "timezone = \"../../etc/passwd\"",
    ),
    ("other name", "name = \"ezk8s\"", "name = \"prod-1\""),
    (
        "name leaving its folder",
        "name = \"ezk8s\"",
        "name = \"ezk8s/..\"",
    ),
    (
        "VIP is the gateway",
        "vip = \"192.168.2.100\"",
        "vip = \"192.168.2.2\"",
    ),
    (
        "VIP outside",
        "vip = \"192.168.2.100\"",
        "vip = \"192.168.3.1\"",
    ),
    ("unicast", "mode = \"multicast\"", "mode = \"unicast\""),
    (
        "haproxy",
        "# [roles.slb]\n# lb = \"haproxy\"",
        "[roles.slb]\nlb = \"haproxy\"",
    ),
    (
        "unknown role param",
        "# [roles.slb]\n# lb = \"haproxy\"",
        "[roles.slb]\nlbb = \"haproxy\"",
    ),
    (
        "no registry",
        "registry_mirror = \"192.168.2.201\"",
        "registry_mirror = \"\"",
    ),
    (
        "registry with port",
        "registry_mirror = \"192.168.2.201\"",
        "registry_mirror = \"192.168.2.201:5000\"",
    ),
    (
        "yum mirror",
        "yum_mirror = \"\"",
        "yum_mirror = \"http://192.168.2.201/centos\"",
    ),
    (
        "no ntp",
        "ntp_servers = [\"ntp1.aliyun.com\", \"time1.aliyun.com\"]",
        "ntp_servers = []",
    ),
    ("no dns", "dns = [\"192.168.2.2\"]", "dns = []"),
    (
        "mac",
        "ip = \"192.168.2.231\"",
        "ip = \"192.168.2.231\"\nmac = \"52:54:00:AB:cd:01\"",
    ),
    (
        "bad mac",
        "ip = \"192.168.2.231\"",
        "ip = \"192.168.2.231\"\nmac = \"52:54:00\"",
    ),
    (
        "disk",
        "ip = \"192.168.2.232\"",
        "ip = \"192.168.2.232\"\n\n[[node.disk]]\ndevice = \"/dev/vdb\"\nmount = \"/data\"",
    ),
    (
        "disk not in /dev",
        "ip = \"192.168.2.232\"",
        "ip = \"192.168.2.232\"\n\n[[node.disk]]\ndevice = \"vdb\"\nmount = \"/data\"",
    ),
    (
        "uppercase hostname",
        "hostname = \"worker-01\"",
        "hostname = \"Worker-01\"",
    ),
    (
        "two masters",
        "hostname = \"master-03\"\nrole = \"master\"",
        "hostname = \"master-03\"\nrole = \"worker\"",
    ),
    (
        "one slb",
        "hostname = \"slb-02\"\nrole = \"slb\"",
        "hostname = \"slb-02\"\nrole = \"worker\"",
    ),
    ("no slb", "role = \"slb\"", "role = \"ops\""),
    (
        "newer kubernetes",
        "version = \"v1.29.3\"",
        "version = \"v1.30.0\"",
    ),
    (
        "ssh key",
        "ssh_authorized_keys = []",
        "ssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDsYb5da/VWG4JHE4zn8ilpal+KhvFBIvwX83O3R/i5f ops@x\"]",
    ),
    (
        "dns domain",
        "dns_domain = \"cluster.local\"",
        "dns_domain = \"k8s.example\"",
    ),
];

/// Whatever `check` passes, `build` builds, and what it refuses, `build` refuses: over single
/// edits of the default cluster file and pseudo-random combinations of two or three.
#[test]
fn check_passes_exactly_when_build_succeeds() {
    let mut variations: Vec<Vec<usize>> = (0..EDITS.len()).map(|i| vec![i]).collect();
    let mut rng = Lcg(13);
    for _ in 0..14 {
        let mut v: Vec<usize> = (0..2 + rng.below(2))
            .map(|_| rng.below(EDITS.len()))
            .collect();
        v.sort();
        v.dedup();
        variations.push(v);
    }
    let (mut passed, mut refused) = (0, 0);
    for v in &variations {
        let mut text = default_cluster();
        let mut what = Vec::new();
        for &i in v {
            let (name, from, to) = EDITS[i];
            if text.contains(from) {
                text = text.replace(from, to);
                what.push(name);
            }
        }
        let d = tempfile::tempdir().expect("tempdir");
        let f = write(d.path(), "cluster.toml", &text);
        let check = run(ezimg().arg("check").arg("-c").arg(&f));
        let out = d.path().join("out");
        let build = run(ezimg()
            .args(["build", "--all", "-c"])
            .arg(&f)
            .arg("--out")
            .arg(&out));
        assert_eq!(
            check.ok,
            build.ok,
            "{what:?}: check {} but build {}:\ncheck: {}\nbuild: {}",
            if check.ok { "passed" } else { "failed" },
            if build.ok { "succeeded" } else { "failed" },
            check.stderr,
            build.stderr
        );
        if build.ok {
            passed += 1;
            assert!(out.join("ezimg-outputs.json").exists());
        } else {
            refused += 1;
            assert!(
                !out.exists(),
                "{what:?}: a refused build wrote {}",
                out.display()
            );
        }
    }
    assert!(
        passed >= 10 && refused >= 10,
        "{passed} passed, {refused} refused"
    );
}

/// A copy of the embedded data tree in `dir/data`.
fn data_copy(dir: &Path) -> PathBuf {
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
    data
}

/// What only the node (or only a later format) would have refused: a kickstart template that
/// does not render, a step script bash cannot parse. check and build both refuse, naming it.
#[test]
fn check_renders_every_format_and_parses_every_script() {
    let d = tempfile::tempdir().expect("tempdir");
    let data = data_copy(d.path());
    let ks = data.join("kickstart/el7.ks.j2");
    let good = std::fs::read_to_string(&ks).expect("el7 template");
    std::fs::write(&ks, format!("{good}\n{{{{ network.no_such_field }}}}\n")).expect("write");
    for args in [
        &["check"][..],
        &["build", "--role", "ops", "--format", "kickstart", "--out"][..],
    ] {
        let mut c = ezimg();
        c.arg("--data").arg(&data).args(args);
        if args.len() > 1 {
            c.arg(d.path().join("out"));
        }
        let o = run(&mut c);
        assert!(!o.ok, "{args:?} passed a broken kickstart template");
        assert!(
            o.stderr.contains("kickstart/el7.ks.j2:") && o.stderr.contains("network.no_such_field"),
            "{args:?}: {}",
            o.stderr
        );
    }
    std::fs::write(&ks, good).expect("restore");
    let step = data.join("layers/sysctl/apply.sh");
    let good = std::fs::read_to_string(&step).expect("sysctl step");
    std::fs::write(
        &step,
        format!("{good}\nif true; then\n  echo unterminated\n"),
    )
    .expect("write");
    for args in [
        &["check"][..],
        &[
            "build",
            "--node",
            "worker-01",
            "--format",
            "cloud-init",
            "--out",
        ][..],
    ] {
        let mut c = ezimg();
        c.arg("--data").arg(&data).args(args);
        if args.len() > 1 {
            c.arg(d.path().join("out"));
        }
        let o = run(&mut c);
        assert!(!o.ok, "{args:?} passed a step script with a syntax error");
        assert!(
            o.stderr.contains("layers/sysctl/apply.sh (rendered for ")
                && o.stderr.contains("bash syntax error"),
            "{args:?}: {}",
            o.stderr
        );
    }
    assert!(!d.path().join("out").exists());
}

/// Flags go where they mean something, values are checked at the command line, and what
/// falls back is said.
#[test]
fn flags_are_refused_where_they_mean_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    // init reads no cluster file, before or after the subcommand.
    for args in [
        &["init", "-c", "mine.toml", "--out", "-"][..],
        &["-c", "mine.toml", "init", "--out", "-"][..],
        &["--data", ".", "completions", "bash"][..],
    ] {
        let o = ezimg()
            .args(args)
            .current_dir(d.path())
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(2), "{args:?} accepted");
        assert!(o.stdout.is_empty(), "{args:?} printed something");
    }
    let o = run(ezimg().args(["-c", "mine.toml", "init", "--out", "-"]));
    assert!(
        o.stderr
            .contains("`ezimg init` does not read a cluster file (-c)"),
        "{}",
        o.stderr
    );
    // Both sides of the subcommand work where it reads them.
    let f = write(d.path(), "c.toml", &default_cluster());
    for args in [&["check", "-c"][..], &["-c"][..]] {
        let mut c = ezimg();
        c.args(args).arg(&f);
        if args.len() == 1 {
            c.arg("check");
        }
        let o = run(&mut c);
        assert!(
            o.ok && o.stdout.contains(&format!("{}: ok", f.display())),
            "{}",
            o.stderr
        );
    }
    // init makes no folders.
    let o = run(ezimg()
        .arg("init")
        .arg("--out")
        .arg(d.path().join("no/such/dir/c.toml")));
    assert!(
        !o.ok
            && o.stderr
                .contains("does not exist (init creates no folders)"),
        "{}",
        o.stderr
    );
    assert!(!d.path().join("no").exists());
    // URLs and node paths are parsed at the command line.
    for (flag, value, why) in [
        ("--bundle-url", "not a url", "not a URL"),
        ("--bundle-url", "ftp://h/x", "not an http(s) URL"),
        (
            "--artifacts-from",
            "relative/dir",
            "must be an absolute directory on the node",
        ),
        ("--artifacts-from", "http://", "not a URL"),
    ] {
        let o = ezimg()
            .args(["build", "--all", flag, value, "--out"])
            .arg(d.path().join("out"))
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value:?}: {err}");
        assert!(err.contains(why), "{flag} {value:?}: {err}");
    }
    assert!(!d.path().join("out").exists());
    // A --data folder without the data is refused; one with part of it says what is embedded.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let o = run(ezimg().arg("check").arg("--data").arg(&empty));
    assert!(
        !o.ok && o.stderr.contains("has none of layers/, roles/, kickstart/"),
        "{}",
        o.stderr
    );
    std::fs::create_dir_all(empty.join("kickstart")).expect("mkdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("kickstart/el7.ks.j2"),
        empty.join("kickstart/el7.ks.j2"),
    )
    .expect("copy");
    let o = run(ezimg()
        .arg("plan")
        .arg("--data")
        .arg(&empty)
        .args(["--node", "ops"]));
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "note: {} has no layers/, roles/: the embedded one(s) are used",
            empty.display()
        )),
        "{}",
        o.stderr
    );
}

/// `--bundle-url` is where --out is served: each role's nodes fetch their own role's bundle.
#[test]
fn bundle_url_is_the_served_out_folder() {
    let d = tempfile::tempdir().expect("tempdir");
    let out = d.path().join("out");
    let o = run(ezimg()
        .args([
            "build",
            "--all",
            "--format",
            "bundle,kickstart",
            "--bundle-url",
            "http://127.0.0.1:8080/ezk8s/",
        ])
        .arg("--out")
        .arg(&out));
    assert!(o.ok, "{}", o.stderr);
    for (role, node) in [("slb", "slb-01"), ("master", "master-02")] {
        let ks = std::fs::read_to_string(out.join(format!("{role}/{node}/ks.cfg"))).expect("ks");
        let url = format!("http://127.0.0.1:8080/ezk8s/{role}/ezimg-{role}-bundle.tar.gz");
        assert!(ks.contains(&url), "{node}'s ks.cfg does not fetch {url}");
        assert!(
            out.join(format!("{role}/ezimg-{role}-bundle.tar.gz"))
                .exists()
        );
    }
}

/// Trust on first use, one story: a pin with no digest is refused by `fetch` (even from a
/// mirror), which names `ezimg lock`; `lock` fetches it once, says loudly that nothing checked
/// it, records its sha256 in a lock file the lock rule reads next (beside the cluster file, or
/// `--lock FILE`, started from the embedded lock), and caches it; from then on `fetch` (also
/// offline) checks against the recorded digest, with no flag.
#[test]
fn trust_on_first_use_is_one_step_then_checked() {
    let s = Site::new(&default_cluster());
    let mirror = s.dir.path().join("mirror");
    std::fs::create_dir_all(&mirror).expect("mkdir");
    let rpm = b"# a stand-in for Calico's operator manifest: upstream publishes no digest for it\n";
    std::fs::write(mirror.join("calico-v3.27.0-tigera-operator.yaml"), rpm).expect("write");
    let digest = ezimg::digest::sha256_hex(rpm);
    let fetch = |extra: &[&str]| {
        run(s
            .ezimg(
                &[
                    &["fetch", "calico-tigera-operator", "--progress", "plain"],
                    extra,
                ]
                .concat(),
            )
            .arg("--mirror")
            .arg(&mirror))
    };
    let o = fetch(&[]);
    assert!(!o.ok, "fetched a pin with no digest");
    assert!(
        o.stderr.contains("`ezimg lock calico-tigera-operator`"),
        "{}",
        o.stderr
    );
    let o = run(&mut s.ezimg(&["fetch", "calico-tigera-operator", "--allow-unverified"]));
    assert!(!o.ok, "--allow-unverified is gone: lock is the one way in");
    // Without a lock file and without -c there is nowhere to record: said how to get one.
    let o = run(ezimg()
        .env("EZIMG_CACHE_DIR", &s.cache)
        .args([
            "lock",
            "calico-tigera-operator",
            "--progress",
            "plain",
            "--mirror",
        ])
        .arg(&mirror));
    assert!(
        !o.ok && o.stderr.contains("`ezimg lock --lock FILE`"),
        "{}",
        o.stderr
    );
    // --lock FILE that does not exist yet: started from the embedded lock.
    let site_lock = s.dir.path().join("site.lock");
    let o = run(ezimg()
        .env("EZIMG_CACHE_DIR", &s.cache)
        .args([
            "lock",
            "calico-tigera-operator",
            "--progress",
            "plain",
            "--mirror",
        ])
        .arg(&mirror)
        .arg("--lock")
        .arg(&site_lock));
    assert!(o.ok, "{}", o.stderr);
    let text = std::fs::read_to_string(&site_lock).expect("site.lock written");
    assert!(text.contains(&format!("sha256 = \"{digest}\"")), "{text}");
    // With -c: beside the cluster file, where build and fetch look.
    let o = run(s
        .ezimg(&[
            "lock",
            "calico-tigera-operator",
            "--progress",
            "plain",
            "--mirror",
        ])
        .arg(&mirror));
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr.contains("TRUST ON FIRST USE")
            && o.stderr.contains("no digest to check it against")
            && !o.stderr.contains("digest verified"),
        "{}",
        o.stderr
    );
    let beside = s.dir.path().join("artifacts.lock");
    let text = std::fs::read_to_string(&beside).expect("lock beside the cluster file");
    assert!(text.contains(&format!("sha256 = \"{digest}\"")), "{text}");
    // Now checked against the recorded digest: offline from the cache, and with no flag.
    for extra in [&["--offline"][..], &[][..]] {
        let o = run(&mut s.ezimg(
            &[
                &["fetch", "calico-tigera-operator", "--progress", "plain"],
                extra,
            ]
            .concat(),
        ));
        assert!(o.ok, "fetch {extra:?}: {}", o.stderr);
        assert!(
            o.stdout.starts_with("calico-tigera-operator\t")
                && o.stdout.trim_end().ends_with(&digest)
        );
        assert!(o.stderr.contains("recorded on first use"), "{}", o.stderr);
    }
    // A mirror that serves other bytes now is caught.
    std::fs::write(
        mirror.join("calico-v3.27.0-tigera-operator.yaml"),
        b"changed",
    )
    .expect("write");
    std::fs::remove_dir_all(&s.cache).expect("rm cache");
    let o = fetch(&[]);
    assert!(!o.ok && o.stderr.contains("mismatch"), "{}", o.stderr);
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
            &format!("cluster.toml:{l}:11: node \"worker-02\".disk[0].purpose = \"etcd\""),
            "an etcd disk belongs on a master",
        ],
    );
    for (disks, needles) in [
        (
            disk("/dev/sda", "system", None) + &disk("/dev/sdb", "system", None),
            &[
                "node \"master-01\".disk[1].purpose",
                "exactly one system disk",
            ][..],
        ),
        (
            disk("/dev/sdb", "data", None) + &disk("/dev/sdc", "data", None),
            &[
                "node \"master-01\".disk[1].purpose",
                "already the data disk",
            ],
        ),
        (
            disk("/dev/sdb", "keep", Some("xfs")),
            &["node \"master-01\".disk[0].fs", "never touched"],
        ),
        (
            disk("/dev/sdb", "data", Some("btrfs")),
            &["node \"master-01\".disk[0].fs", "must be xfs or ext4"],
        ),
        (
            disk("/dev/sda", "data", None),
            &[
                "node \"master-01\".disk[0].device",
                "declare the node's system disk",
            ],
        ),
        (
            disk("/dev/sdb", "data", None) + &disk("/dev/sdb", "keep", None),
            &[
                "node \"master-01\".disk[1].device",
                "is also disk[0] of this node",
            ],
        ),
        (
            disk("sdb", "data", None),
            &["node \"master-01\".disk[0].device", "must be a /dev path"],
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
