//! Build stages: spec parsing, the cache, failures, and real compiles of nginx and keepalived
//! from the upstream tarballs in `/work/shared/fixtures/upstream` (or `$EZIMG_FIXTURES`).
//!
//! The real compiles are skipped, with the reason printed, when the fixtures are absent. They
//! are built once per test run (shared by the tests that inspect them) into a cache under
//! `target/tmp/stage-cache`, so a second `cargo test` reuses them.
//!
//! nginx in the tests is `tests/fixtures/stage/nginx-test.toml`: the product stage with the
//! fixture versions (nginx 1.22.1, pcre 8.39, zlib 1.2.13 dfsg). OpenSSL: the fixtures have no
//! OpenSSL source, so `--with-http_ssl_module` links the system OpenSSL (libssl-dev) and there is
//! no `--with-openssl`. The three GitHub modules are replaced by a small module written for the
//! test (`ngx_http_ezimg_test_module`, directive `ezimg_test_banner`) and their patches by two
//! small patches written for the test. `--with-http_geoip_module` and
//! `--with-http_image_filter_module` are only added when libgeoip-dev and libgd-dev are present.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ezimg::stage::{self, BuildOptions, Outcome, Stage};

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fx(p: &str) -> PathBuf {
    here().join("tests/fixtures/stage").join(p)
}

fn quiet_opts(cache: &Path) -> BuildOptions {
    let mut o = BuildOptions::new(cache);
    o.quiet = true;
    o
}

fn err_text(e: anyhow::Error) -> String {
    format!("{e:#}")
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The product stages

#[test]
fn product_stages_are_the_seeds() {
    assert_eq!(
        stage::names(None).unwrap(),
        vec!["keepalived".to_string(), "nginx".to_string()]
    );
    let n = stage::embedded("nginx").unwrap();
    assert_eq!(n.spec.prefix, "/ezops/service/nginx");
    assert_eq!(n.spec.vars["version"], "1.23.0");
    let names: Vec<&str> = n.spec.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "nginx",
            "openssl",
            "pcre",
            "zlib",
            "ngx_healthcheck_module",
            "ngx_http_proxy_connect_module",
            "ngx_http_status_code_counter"
        ]
    );
    let patches: Vec<(Option<&str>, Option<&str>)> = n
        .spec
        .patches
        .iter()
        .map(|p| (p.source.as_deref(), p.path.as_deref()))
        .collect();
    assert_eq!(
        patches,
        [
            (
                Some("ngx_healthcheck_module"),
                Some("nginx_healthcheck_for_nginx_1.19+.patch")
            ),
            (
                Some("ngx_http_proxy_connect_module"),
                Some("patch/proxy_connect_rewrite_102101.patch")
            ),
        ]
    );
    let vars = n.base_vars(&BTreeMap::new());
    let rules: Vec<String> = (0..n.spec.edits.len())
        .map(|i| {
            format!(
                "{}: {}",
                n.spec.edits[i].file,
                n.edit_rule(i, &vars).unwrap()
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            r#"src/core/nginx.h: replace "\"1.23.0\"" with "\"2.2\"""#,
            r#"src/core/nginx.h: replace "\"nginx/\"" with "\"apache/\"""#,
            r#"src/core/nginx.h: replace "\"NGINX\"" with "\"APACHE\"""#,
            r#"src/http/ngx_http_header_filter_module.c: replace "\"Server: nginx\"" with "\"Server: apache\"""#,
            r#"src/http/ngx_http_special_response.c: delete lines containing "\"<hr><center>\" NGINX_VER \"</center>\" CRLF""#,
            r#"src/http/ngx_http_special_response.c: delete lines containing "\"<hr><center>\" NGINX_VER_BUILD \"</center>\" CRLF""#,
            r#"src/http/ngx_http_special_response.c: delete lines containing "\"<hr><center>nginx</center>\" CRLF""#,
        ]
    );
    let k = stage::embedded("keepalived").unwrap();
    assert_eq!(k.spec.prefix, "/ezops/service/keepalived");
    assert_eq!(k.spec.configure.args, ["--prefix={{ prefix }}"]);
    assert_eq!(
        k.spec.sources[0].dir.as_deref(),
        Some("keepalived-{{ version }}")
    );
}

/// The nginx stage's flags are the seed's `./configure` list, in order, with the
/// /ezops/package/nginx/<dir> paths turned into `{{ src.<name> }}`.
#[test]
fn nginx_flags_match_the_seed_text() {
    let Some(seeds) = support::seeds("stage::nginx_flags_match_the_seed_text") else {
        return;
    };
    let seed = seeds.join("000_f191a21ffc34009a.txt");
    let text = std::fs::read_to_string(&seed).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
    let start = text
        .find("./configure --prefix=/ezops/service/nginx")
        .unwrap();
    let block = &text[start..text[start..].find("\n\n").unwrap() + start];
    let seed_flags: Vec<String> = block
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| {
            w.replace("/ezops/package/nginx/pcre-8.45", "{{ src.pcre }}")
                .replace("/ezops/package/nginx/openssl-1.1.1q", "{{ src.openssl }}")
                .replace("/ezops/package/nginx/zlib-1.2.13", "{{ src.zlib }}")
                .replace("/ezops/package/nginx/", "{{ src.")
                .replace("-master", " }}")
                .replace("=/ezops/service/nginx", "={{ prefix }}")
        })
        .collect();
    let n = stage::embedded("nginx").unwrap();
    assert_eq!(n.spec.configure.args, seed_flags);
    assert_eq!(seed_flags.len(), 21);
}

/// The test variant differs from the product stage only where its header says.
#[test]
fn test_variant_differs_only_as_documented() {
    let product = stage::embedded("nginx").unwrap();
    let test = Stage::load_file(&fx("nginx-test.toml")).unwrap();
    assert_eq!(
        test.spec.edits, product.spec.edits,
        "same version-hiding edits"
    );
    assert_eq!(test.spec.prefix, product.spec.prefix);
    assert_eq!(test.spec.build, product.spec.build);
    assert_eq!(test.spec.install, product.spec.install);
    assert_eq!(
        test.spec.runtime["debian12"],
        product.spec.runtime["debian12"]
    );
    let removed = [
        "--with-http_geoip_module",
        "--with-http_image_filter_module",
        "--with-openssl={{ src.openssl }}",
        "--add-module={{ src.ngx_healthcheck_module }}",
        "--add-module={{ src.ngx_http_proxy_connect_module }}",
        "--add-module={{ src.ngx_http_status_code_counter }}",
    ];
    let mut expected: Vec<String> = product
        .spec
        .configure
        .args
        .iter()
        .filter(|a| !removed.contains(&a.as_str()))
        .cloned()
        .collect();
    expected.push("--add-module={{ src.ngx_http_ezimg_test_module }}".into());
    assert_eq!(test.spec.configure.args, expected);
}

// ---------------------------------------------------------------------------------------------
// Spec errors name the file and the field

fn parse(text: &str) -> anyhow::Result<Stage> {
    Stage::parse(text, "stages/t.toml", &|f| {
        anyhow::bail!("no local file {f}")
    })
}

const MINIMAL: &str = r#"
name = "t"
prefix = "/ezops/service/t"
work = "a"
build = [["make"]]
install = [["make", "install", "DESTDIR={{ destdir }}"]]
[[source]]
name = "a"
"#;

#[test]
fn spec_errors_name_file_and_field() {
    parse(MINIMAL).unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("bogus = 1\n", &["stages/t.toml", "bogus"]),
        (
            "[[patch]]\nsource = \"zz\"\npath = \"x.patch\"\n",
            &[
                "stages/t.toml",
                "[[patch]] #1: source",
                "unknown source \"zz\"",
                "sources: a",
            ],
        ),
        (
            "[[patch]]\nsource = \"a\"\n",
            &["[[patch]] #1", "either `source` and `path`"],
        ),
        (
            "[[edit]]\nfile = \"x.c\"\nreplace = \"a\"\nwith = \"b\"\ndelete_line = \"c\"\n",
            &["[[edit]] #1 (x.c)", "either `replace` and `with`"],
        ),
        (
            "[[edit]]\nfile = \"x.c\"\nreplace = \"{{ versoin }}\"\nwith = \"b\"\n",
            &["[[edit]] #1 (x.c): replace", "unknown variable `versoin`"],
        ),
        (
            "[[edit]]\nfile = \"../x.c\"\ndelete_line = \"c\"\n",
            &["[[edit]] #1: file", "relative"],
        ),
        (
            "[configure]\nargs = [\"--with-pcre={{ src.pcre }}\"]\n",
            &["configure #2", "unknown variable `src.pcre`"],
        ),
    ];
    for (extra, wants) in cases {
        let e = err_text(parse(&format!("{MINIMAL}{extra}")).unwrap_err());
        for w in *wants {
            assert!(e.contains(w), "error for {extra:?} lacks {w:?}: {e}");
        }
    }
    let e = err_text(parse(&MINIMAL.replace("work = \"a\"", "work = \"b\"")).unwrap_err());
    assert!(
        e.contains("stages/t.toml: work: unknown source \"b\""),
        "{e}"
    );
    let e = err_text(parse(&MINIMAL.replace("DESTDIR={{ destdir }}", "DESTDIR=/")).unwrap_err());
    assert!(e.contains("install: no command uses {{ destdir }}"), "{e}");
    let e = err_text(parse(&MINIMAL.replace("/ezops/service/t", "ezops")).unwrap_err());
    assert!(e.contains("prefix"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The builder on a tiny stage (builds in a blink): cache, key, formats, failures

fn hello_sources() -> BTreeMap<String, PathBuf> {
    BTreeMap::from([("hello".to_string(), fx("hello"))])
}

fn hello_stage(text_edit: impl Fn(String) -> String) -> Stage {
    let text = std::fs::read_to_string(fx("hello.toml")).unwrap();
    Stage::parse(&text_edit(text), "tests/fixtures/stage/hello.toml", &|f| {
        anyhow::bail!("no local file {f}")
    })
    .unwrap()
}

#[test]
fn hello_cache_hit_miss_and_reproducible() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut opts = quiet_opts(cache.path());
    opts.work_root = Some(work.path().to_path_buf());
    let st = hello_stage(|t| t);
    let first = stage::build(&st, &hello_sources(), &opts).unwrap();
    assert!(!first.cached);
    assert!(first.tarball.starts_with(cache.path().join("stages")));
    assert_eq!(
        first.manifest.dropped,
        ["etc"],
        "/etc/hello.conf is outside the prefix"
    );
    assert!(first.manifest.builder.starts_with("host: "));
    assert_eq!(count_entries(work.path()), 0, "work dir removed");

    let t = Instant::now();
    let again = stage::build(&st, &hello_sources(), &opts).unwrap();
    assert!(again.cached, "second build is a cache hit");
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(again.key, first.key);
    assert_eq!(again.manifest, first.manifest);

    // Forced rebuild of the same inputs: the same bytes.
    opts.rebuild = true;
    let re = stage::build(&st, &hello_sources(), &opts).unwrap();
    assert!(!re.cached);
    assert_eq!(re.manifest.output.sha256, first.manifest.output.sha256);
    opts.rebuild = false;

    // One flag changed (through a variable override): another key, a real build.
    opts.vars.insert("greeting".into(), "bonjour".into());
    let other = stage::build(&st, &hello_sources(), &opts).unwrap();
    assert!(!other.cached);
    assert_ne!(other.key, first.key);
    assert!(
        other
            .manifest
            .configure
            .contains(&"--greeting=bonjour".to_string())
    );
    opts.vars.clear();

    // One flag changed in the stage file: a miss too.
    let st2 = hello_stage(|t| t.replace("--greeting={{ greeting }}", "--greeting=hi"));
    let key2 = stage::cache_key(&st2, &hello_sources(), &opts).unwrap();
    assert_ne!(key2, first.key);
    assert!(stage::lookup(cache.path(), &key2).unwrap().is_none());

    // The output extracts to a runnable program at the prefix.
    let root = tempfile::tempdir().unwrap();
    stage::unpack_output(&first.tarball, root.path()).unwrap();
    let out = Command::new(root.path().join("ezops/service/hello/bin/hello"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");

    // A damaged cache entry is detected and rebuilt.
    std::fs::write(&first.tarball, b"garbage").unwrap();
    let fixed = stage::build(&st, &hello_sources(), &opts).unwrap();
    assert!(!fixed.cached);
    assert_eq!(fixed.manifest.output.sha256, first.manifest.output.sha256);
}

#[test]
fn hello_archive_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("hello");
    let status = Command::new("cp")
        .args(["-R"])
        .arg(fx("hello"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let mut archives = vec![];
    for (ext, flag) in [("tar.gz", "-czf"), ("tar.bz2", "-cjf"), ("tar.xz", "-cJf")] {
        let a = tmp.path().join(format!("hello.{ext}"));
        let ok = Command::new("tar")
            .arg(flag)
            .arg(&a)
            .arg("-C")
            .arg(tmp.path())
            .arg("hello")
            .status()
            .unwrap();
        assert!(ok.success());
        archives.push(a);
    }
    let zip = tmp.path().join("hello.zip");
    match Command::new("zip")
        .arg("-qr")
        .arg(&zip)
        .arg("hello")
        .current_dir(tmp.path())
        .status()
    {
        Ok(s) if s.success() => archives.push(zip),
        _ => eprintln!("no `zip` program: .zip not tested"),
    }
    let cache = tempfile::tempdir().unwrap();
    let opts = quiet_opts(cache.path());
    let st = hello_stage(|t| t);
    let mut shas = vec![];
    for a in &archives {
        // A content-addressed cache file has no extension: the format comes from magic bytes.
        let bare = tmp.path().join(format!("blob-{}", shas.len()));
        std::fs::copy(a, &bare).unwrap();
        let o = stage::build(&st, &BTreeMap::from([("hello".to_string(), bare)]), &opts)
            .unwrap_or_else(|e| panic!("{}: {e:#}", a.display()));
        shas.push(o.manifest.output.sha256);
    }
    shas.dedup();
    assert_eq!(shas.len(), 1, "same output whatever the archive format");

    // An archive whose top-level directory is not the expected one.
    let st = hello_stage(|t| t.replace("dir = \"hello\"", "dir = \"hello-2.0\""));
    let e = err_text(
        stage::build(
            &st,
            &BTreeMap::from([("hello".to_string(), archives[0].clone())]),
            &opts,
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("step `unpack hello`")
            && e.contains("unpacks to hello/, the stage expects hello-2.0/"),
        "{e}"
    );
}

#[test]
fn hello_failures_name_the_step_and_cache_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut opts = quiet_opts(cache.path());
    opts.work_root = Some(work.path().to_path_buf());

    // An edit that matches nothing names the stage file, the rule and the file.
    let st = hello_stage(|t| t.replace("replace = \"return 0;\"", "replace = \"return 1;\""));
    let e = err_text(stage::build(&st, &hello_sources(), &opts).unwrap_err());
    for w in [
        "step `edit #1`",
        "tests/fixtures/stage/hello.toml: [[edit]] #1",
        "hello.c",
        "replace \"return 1;\"",
        "matched nothing",
    ] {
        assert!(e.contains(w), "lacks {w:?}: {e}");
    }

    // A bad configure flag.
    let st = hello_stage(|t| {
        t.replace(
            "\"--greeting={{ greeting }}\"",
            "\"--greeting=x\", \"--bogus\"",
        )
    });
    let e = err_text(stage::build(&st, &hello_sources(), &opts).unwrap_err());
    assert!(e.contains("step `configure` failed"), "{e}");
    assert!(
        e.contains("configure: error: invalid option \"--bogus\""),
        "log tail: {e}"
    );

    // A missing source.
    let e = err_text(stage::build(&st, &BTreeMap::new(), &opts).unwrap_err());
    assert!(e.contains("needs source(s) hello"), "{e}");

    assert_eq!(
        count_entries(&cache.path().join("stages")),
        0,
        "nothing cached"
    );
    assert_eq!(count_entries(work.path()), 0, "work dirs removed");
}

// ---------------------------------------------------------------------------------------------
// Real compiles

/// Serializes the big compiles: the machine is shared.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stage-cache")
}

/// The test nginx stage, with the geoip/image_filter flags when their libraries are installed.
fn nginx_test_stage() -> Stage {
    let text = std::fs::read_to_string(fx("nginx-test.toml")).unwrap();
    let optional = if support::have_header("GeoIP.h") && support::have_header("gd.h") {
        "\"--with-http_geoip_module\",\n    \"--with-http_image_filter_module\","
    } else {
        eprintln!(
            "nginx test build without --with-http_geoip_module and --with-http_image_filter_module: \
             libgeoip-dev/libgd-dev are not installed"
        );
        "# geoip/image_filter left out: libgeoip-dev/libgd-dev not installed"
    };
    let text = text.replace("# OPTIONAL-FLAGS", optional);
    let dir = fx("");
    Stage::parse(&text, "tests/fixtures/stage/nginx-test.toml", &|f| {
        Ok(std::fs::read(dir.join(f))?)
    })
    .unwrap()
}

fn nginx_sources(up: &Path) -> BTreeMap<String, PathBuf> {
    BTreeMap::from([
        ("nginx".to_string(), up.join("nginx_1.22.1.orig.tar.gz")),
        ("pcre".to_string(), up.join("pcre3_8.39.orig.tar.bz2")),
        ("zlib".to_string(), up.join("zlib_1.2.13.dfsg.orig.tar.bz2")),
        (
            "ngx_http_ezimg_test_module".to_string(),
            fx("ngx_http_ezimg_test_module"),
        ),
    ])
}

type Built = Result<(Outcome, PathBuf), String>;

/// Build (or take from the cache) a stage once per test run, and extract it.
fn build_once(
    cell: &'static OnceLock<Built>,
    st: impl FnOnce() -> Stage,
    sources: BTreeMap<String, PathBuf>,
) -> &'static Built {
    cell.get_or_init(|| {
        let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
        let st = st();
        let mut opts = BuildOptions::new(heavy_cache());
        opts.quiet = false;
        let o = stage::build(&st, &sources, &opts).map_err(err_text)?;
        eprintln!(
            "stage {}: {} in {:.1}s",
            st.spec.name,
            if o.cached { "cache hit" } else { "built" },
            o.elapsed.as_secs_f64()
        );
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("stage-roots")
            .join(&o.key[..16]);
        let _ = std::fs::remove_dir_all(&root);
        stage::unpack_output(&o.tarball, &root).map_err(err_text)?;
        Ok((o, root))
    })
}

static NGINX: OnceLock<Built> = OnceLock::new();
static KEEPALIVED: OnceLock<Built> = OnceLock::new();

fn nginx(up: &Path) -> &'static (Outcome, PathBuf) {
    match build_once(&NGINX, nginx_test_stage, nginx_sources(up)) {
        Ok(b) => b,
        Err(e) => panic!("nginx stage build failed: {e}"),
    }
}

fn keepalived(up: &Path) -> &'static (Outcome, PathBuf) {
    let sources = BTreeMap::from([(
        "keepalived".to_string(),
        up.join("keepalived_2.2.7.orig.tar.gz"),
    )]);
    match build_once(
        &KEEPALIVED,
        || stage::embedded("keepalived").unwrap(),
        sources,
    ) {
        Ok(b) => b,
        Err(e) => panic!("keepalived stage build failed: {e}"),
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn nginx_version_is_hidden_and_flags_are_compiled_in() {
    let Some(up) = support::fixtures("stage::nginx_version_is_hidden_and_flags_are_compiled_in")
    else {
        return;
    };
    let (o, root) = nginx(&up);
    let prefix = root.join("ezops/service/nginx");
    let (ok, v) = run(Command::new(prefix.join("sbin/nginx")).arg("-V"));
    assert!(ok, "{v}");
    assert!(v.contains("nginx version: apache/2.2\n"), "{v}");
    assert!(
        v.contains("patched by the ezimg stage test\n"),
        "local patch applied: {v}"
    );
    assert!(!v.contains("1.22.1"), "real version leaks: {v}");
    let args_line = v
        .lines()
        .find_map(|l| l.strip_prefix("configure arguments: "))
        .unwrap_or_else(|| panic!("no configure arguments in {v}"));
    let args: Vec<&str> = args_line.split_whitespace().collect();
    assert_eq!(
        args,
        o.manifest.configure[1..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    for want in [
        "--prefix=/ezops/service/nginx",
        "--user=root",
        "--with-http_ssl_module",
        "--with-stream",
        "--with-http_v2_module",
        "--with-pcre=../pcre-8.39",
        "--with-zlib=../zlib-1.2.13.dfsg",
        "--add-module=../ngx_http_ezimg_test_module",
    ] {
        assert!(args.contains(&want), "{want} not in {args_line}");
    }
    assert!(
        !args_line.contains("/tmp"),
        "a temp path leaked into the flags: {args_line}"
    );
    // The edits happened and each matched.
    assert_eq!(o.manifest.edits.len(), 7);
    assert!(o.manifest.edits.iter().all(|e| e.matches >= 1));
    assert_eq!(o.manifest.patches.len(), 2);
    // The installed tree is what the seed's make install gives.
    for f in [
        "sbin/nginx",
        "conf/nginx.conf",
        "conf/mime.types",
        "html/index.html",
    ] {
        assert!(prefix.join(f).exists(), "{f} missing");
    }
    assert!(prefix.join("logs").is_dir(), "empty logs/ directory packed");
}

/// nginx.conf, tcp/apiserver.conf and vhost/status.conf for an slb node: rendered by the
/// library's plan when the embedded layers provide them, else the seed's text (fixture copies).
fn slb_conf() -> (String, BTreeMap<String, String>) {
    let wanted = ["nginx.conf", "tcp/apiserver.conf", "vhost/status.conf"];
    let from_plan = || -> anyhow::Result<BTreeMap<String, String>> {
        let tree = ezimg::data::DataTree::embedded();
        let catalog = ezimg::plan::Catalog::load(&tree)?;
        let loaded = ezimg::cluster::load(None)?;
        let node = loaded
            .cluster
            .nodes_of("slb")
            .next()
            .ok_or_else(|| anyhow::anyhow!("no slb node"))?
            .clone();
        let plan = ezimg::plan::plan_node(&catalog, &loaded, &node)?;
        let mut out = BTreeMap::new();
        for f in plan.applied().flat_map(|l| l.files.iter()) {
            for w in wanted {
                if f.dest == format!("/ezops/service/nginx/conf/{w}") {
                    out.insert(w.to_string(), String::from_utf8(f.content.clone())?);
                }
            }
        }
        Ok(out)
    };
    match from_plan() {
        Ok(m) if wanted.iter().all(|w| m.contains_key(*w)) => ("rendered by ezimg::plan".into(), m),
        _ => (
            "the seed's text (tests/fixtures/stage/slb)".into(),
            wanted
                .iter()
                .map(|w| {
                    (
                        w.to_string(),
                        std::fs::read_to_string(fx(&format!("slb/{w}"))).unwrap(),
                    )
                })
                .collect(),
        ),
    }
}

/// Drop the directives of the modules the test build does not have.
fn strip_absent_modules(conf: &str) -> String {
    const ABSENT: [&str; 8] = [
        "check",
        "check_http_send",
        "check_http_expect_alive",
        "check_keepalive_requests",
        "check_shm_size",
        "healthcheck_status",
        "show_status_code_count",
        "proxy_connect",
    ];
    conf.lines()
        .filter(|l| {
            let first = l.trim_start().split([' ', ';', '\t']).next().unwrap_or("");
            !ABSENT.contains(&first)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn nginx_accepts_the_slb_config() {
    let Some(up) = support::fixtures("stage::nginx_accepts_the_slb_config") else {
        return;
    };
    let (_, root) = nginx(&up);
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("nginx");
    let ok = Command::new("cp")
        .arg("-R")
        .arg(root.join("ezops/service/nginx"))
        .arg(&prefix)
        .status()
        .unwrap();
    assert!(ok.success());
    let (origin, files) = slb_conf();
    eprintln!("slb config from {origin}");
    for d in ["vhost", "tcp", "cert"] {
        std::fs::create_dir_all(prefix.join("conf").join(d)).unwrap();
    }
    for (rel, text) in &files {
        let stripped = strip_absent_modules(text);
        std::fs::write(prefix.join("conf").join(rel), stripped).unwrap();
    }
    let api = std::fs::read_to_string(prefix.join("conf/tcp/apiserver.conf")).unwrap();
    assert!(api.contains("hash $remote_addr consistent;"));
    for ip in [
        "192.168.2.221:6443",
        "192.168.2.222:6443",
        "192.168.2.223:6443",
    ] {
        assert!(api.contains(ip), "{ip} missing in apiserver.conf");
    }
    assert!(!api.contains("check interval"));
    let (ok, out) = run(Command::new(prefix.join("sbin/nginx"))
        .arg("-t")
        .arg("-p")
        .arg(format!("{}/", prefix.display()))
        .arg("-c")
        .arg("conf/nginx.conf"));
    assert!(ok, "nginx -t failed on the slb config ({origin}):\n{out}");
    assert!(out.contains("test is successful"), "{out}");
}

fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
                let mut buf = String::new();
                s.read_to_string(&mut buf).unwrap();
                return buf;
            }
            Err(e) if Instant::now() > deadline => panic!("connecting to nginx: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The built nginx serves: the test module answers, and the Server header and the error pages
/// show what the edits promise.
#[test]
fn nginx_serves_with_hidden_version() {
    let Some(up) = support::fixtures("stage::nginx_serves_with_hidden_version") else {
        return;
    };
    let (_, root) = nginx(&up);
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    std::fs::create_dir_all(p.join("logs")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {p}/logs/error.log;\npid {p}/logs/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/tmp;\n  proxy_temp_path {p}/tmp;\n  \
         fastcgi_temp_path {p}/tmp;\n  uwsgi_temp_path {p}/tmp;\n  scgi_temp_path {p}/tmp;\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location = /banner {{ ezimg_test_banner \"hello from the stage test\"; }}\n    \
         location / {{ return 404; }}\n  }}\n}}\n",
        p = p.display()
    );
    std::fs::write(p.join("test.conf"), conf).unwrap();
    let mut child = Command::new(root.join("ezops/service/nginx/sbin/nginx"))
        .arg("-p")
        .arg(format!("{}/", p.display()))
        .arg("-c")
        .arg(p.join("test.conf"))
        .spawn()
        .unwrap();
    let banner = http_get(port, "/banner");
    let missing = http_get(port, "/nope");
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.starts_with("HTTP/1.1 200"), "{banner}");
    assert!(banner.ends_with("hello from the stage test"), "{banner}");
    assert!(banner.contains("\r\nServer: apache/2.2\r\n"), "{banner}");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(
        !missing.contains("<hr><center>"),
        "error page tail not removed: {missing}"
    );
    assert!(!missing.to_lowercase().contains("nginx"), "{missing}");
}

#[test]
fn nginx_rebuild_with_nothing_changed_is_a_cache_hit() {
    let Some(up) = support::fixtures("stage::nginx_rebuild_with_nothing_changed_is_a_cache_hit")
    else {
        return;
    };
    let (first, _) = nginx(&up);
    let st = nginx_test_stage();
    let opts = quiet_opts(&heavy_cache());
    let t = Instant::now();
    let o = stage::build(&st, &nginx_sources(&up), &opts).unwrap();
    let took = t.elapsed();
    eprintln!("nginx rebuild with nothing changed: cache hit in {took:?}");
    assert!(o.cached, "no compile on the second build");
    assert_eq!(o.key, first.key);
    // A hit compiles nothing (a build takes minutes); it hashes the tarball and re-checks its
    // ELF files for the target.
    assert!(took < Duration::from_secs(5), "cache hit took {took:?}");
    // One flag more: another key, not in the cache.
    let st2 = Stage::parse(
        &st.text.replace(
            "\"--with-stream\",",
            "\"--with-stream\", \"--with-stream_ssl_module\",",
        ),
        &st.origin,
        &|f| Ok(std::fs::read(fx(f))?),
    )
    .unwrap();
    let k2 = stage::cache_key(&st2, &nginx_sources(&up), &opts).unwrap();
    assert_ne!(k2, first.key);
    assert!(
        stage::lookup(&heavy_cache(), &k2).unwrap().is_none(),
        "a changed flag misses"
    );
}

#[test]
fn nginx_bad_configure_flag_fails_and_caches_nothing() {
    let Some(up) = support::fixtures("stage::nginx_bad_configure_flag_fails_and_caches_nothing")
    else {
        return;
    };
    let st = nginx_test_stage();
    let bad = Stage::parse(
        &st.text.replace(
            "\"--with-stream\",",
            "\"--with-stream\", \"--with-bogus_module\",",
        ),
        &st.origin,
        &|f| Ok(std::fs::read(fx(f))?),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut opts = quiet_opts(cache.path());
    opts.work_root = Some(work.path().to_path_buf());
    let e = err_text(stage::build(&bad, &nginx_sources(&up), &opts).unwrap_err());
    assert!(
        e.contains("stage nginx-test: step `configure` failed"),
        "{e}"
    );
    assert!(e.contains("--- last 30 lines of configure log ---"), "{e}");
    assert!(
        e.contains("invalid option \"--with-bogus_module\""),
        "log tail: {e}"
    );
    assert_eq!(
        count_entries(&cache.path().join("stages")),
        0,
        "nothing cached"
    );
    assert_eq!(count_entries(work.path()), 0, "work dir removed");
}

/// The primary network interface, for the VRRP instance (`lo` when there is none).
fn some_interface() -> String {
    std::fs::read_dir("/sys/class/net")
        .ok()
        .and_then(|r| {
            let mut v: Vec<String> = r
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n != "lo")
                .collect();
            v.sort();
            v.into_iter().next()
        })
        .unwrap_or_else(|| "lo".into())
}

#[test]
fn keepalived_builds_and_checks_a_vrrp_config() {
    let Some(up) = support::fixtures("stage::keepalived_builds_and_checks_a_vrrp_config") else {
        return;
    };
    let (o, root) = keepalived(&up);
    let prefix = root.join("ezops/service/keepalived");
    let bin = prefix.join("sbin/keepalived");
    let (ok, v) = run(Command::new(&bin).arg("-v"));
    assert!(ok, "{v}");
    assert!(v.contains("Keepalived v2.2.7"), "{v}");
    assert!(
        o.manifest
            .configure
            .contains(&"--prefix=/ezops/service/keepalived".to_string())
    );
    let t = tempfile::tempdir().unwrap();
    let conf = t.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n   router_id slb-01\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface {}\n    virtual_router_id 100\n    \
             priority 100\n    advert_int 1\n    authentication {{\n        auth_type PASS\n        \
             auth_pass k8spass\n    }}\n    virtual_ipaddress {{\n        192.168.2.100\n    }}\n}}\n",
            some_interface()
        ),
    )
    .unwrap();
    let (ok, out) = run(Command::new(&bin).arg("-t").arg("-f").arg(&conf));
    assert!(ok, "keepalived -t failed:\n{out}");

    // A broken config is refused by the same check.
    std::fs::write(
        &conf,
        "vrrp_instance VI_1 {\n    virtual_router_id 999\n}\n",
    )
    .unwrap();
    let (ok, out) = run(Command::new(&bin).arg("-t").arg("-f").arg(&conf));
    assert!(!ok, "keepalived -t accepted a broken config:\n{out}");

    // Rebuild with nothing changed: a cache hit.
    let t0 = Instant::now();
    let again = stage::build(
        &stage::embedded("keepalived").unwrap(),
        &BTreeMap::from([(
            "keepalived".to_string(),
            up.join("keepalived_2.2.7.orig.tar.gz"),
        )]),
        &quiet_opts(&heavy_cache()),
    )
    .unwrap();
    // A hit compiles nothing; it hashes the tarball and re-checks its ELF files for the target.
    assert!(again.cached && t0.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// The ELF check: each stage output runs on the target it is for

fn target(name: &str) -> stage::Target {
    stage::Target::load(name, None).unwrap()
}

#[test]
fn keepalived_output_runs_on_debian12_and_not_on_el7() {
    let Some(up) = support::fixtures("stage::keepalived_output_runs_on_debian12_and_not_on_el7")
    else {
        return;
    };
    let (o, _) = keepalived(&up);
    let st = stage::embedded("keepalived").unwrap();
    stage::target::check(&o.tarball, &target("debian12"), Some(&st)).unwrap();

    let e = err_text(stage::target::check(&o.tarball, &target("el7"), Some(&st)).unwrap_err());
    assert!(
        e.contains("stage keepalived: the output does not run on el7"),
        "{e}"
    );
    assert!(
        e.contains("ezops/service/keepalived/sbin/keepalived: requires GLIBC_2.3"),
        "the glibc 2.36 build needs GLIBC_2.34 or later: {e}"
    );
    assert!(e.contains("el7 has glibc 2.17"), "{e}");
    // Debian 12's OpenSSL 3 is not el7's 1.0.2 (libssl.so.10).
    assert!(
        e.contains("sbin/keepalived: needs libssl.so.3, which <embedded>/stages/targets/el7.toml"),
        "{e}"
    );

    // `ezimg stage check` finds the stage in the manifest next to the cached tarball.
    let cli = |t: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ezimg"))
            .args(["stage", "check", "--target", t])
            .arg(&o.tarball)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = cli("debian12");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("(stage keepalived) runs on debian12"), "{out}");
    let (code, out) = cli("el7");
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("sbin/keepalived: requires GLIBC_") && out.contains("needs libssl.so.3"),
        "{out}"
    );

    // A build for el7 that finds this output in the cache is refused too.
    let mut opts = quiet_opts(&heavy_cache());
    opts.target = "el7".into();
    let sources = BTreeMap::from([(
        "keepalived".to_string(),
        up.join("keepalived_2.2.7.orig.tar.gz"),
    )]);
    let e = err_text(stage::build(&st, &sources, &opts).unwrap_err());
    assert!(
        e.contains("cached output") && e.contains("requires GLIBC_"),
        "{e}"
    );
}

#[test]
fn hello_for_el7_is_refused_and_nothing_is_cached() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut opts = quiet_opts(cache.path());
    opts.work_root = Some(work.path().to_path_buf());
    opts.target = "el7".into();
    let st = hello_stage(|t| t);
    let e = err_text(stage::build(&st, &hello_sources(), &opts).unwrap_err());
    assert!(e.contains("step `check`; nothing cached"), "{e}");
    assert!(
        e.contains("ezops/service/hello/bin/hello: requires GLIBC_")
            && e.contains("el7 has glibc 2.17"),
        "{e}"
    );
    assert_eq!(
        count_entries(&cache.path().join("stages")),
        0,
        "nothing cached"
    );
    assert_eq!(count_entries(work.path()), 0, "work dirs removed");

    // The same build for the host's target is accepted and cached.
    opts.target = "debian12".into();
    let o = stage::build(&st, &hello_sources(), &opts).unwrap();
    assert!(!o.cached && o.tarball.is_file());

    // `ezimg stage check` on it (--stage: the hello stage is a test fixture, not embedded).
    let ezimg = |t: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ezimg"))
            .args(["stage", "check", "--target", t, "--stage"])
            .arg(fx("hello.toml"))
            .arg(&o.tarball)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = ezimg("debian12");
    assert!(
        ok && out.contains("ok: ") && out.contains("runs on debian12"),
        "{out}"
    );
    let (ok, out) = ezimg("el7");
    assert!(!ok, "{out}");
    assert!(
        out.contains("stage hello: the output does not run on el7")
            && out.contains("ezops/service/hello/bin/hello: requires GLIBC_"),
        "{out}"
    );

    // An unknown target fails before any compile.
    opts.target = "el8".into();
    let e = err_text(stage::build(&st, &hello_sources(), &opts).unwrap_err());
    assert!(e.contains("no target list named \"el8\""), "{e}");
}

fn gcc(args: &[&str], cwd: &Path) {
    let (ok, out) = run(Command::new("gcc").args(args).current_dir(cwd));
    assert!(ok, "gcc {args:?}: {out}");
}

/// A tarball of `root` (as a stage packs it).
fn pack_dir(root: &Path, to: &Path) {
    let f = std::fs::File::create(to).unwrap();
    stage::cache::pack(root, &["/opt".to_string()], std::io::BufWriter::new(f)).unwrap();
}

#[test]
fn elf_check_names_a_soname_the_target_lacks_and_ignores_static_and_non_elf() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("lib.c"), "int ezimg_answer(void) { return 42; }\n").unwrap();
    std::fs::write(
        src.join("main.c"),
        "int ezimg_answer(void);\nint main(void) { return ezimg_answer() == 42 ? 0 : 1; }\n",
    )
    .unwrap();
    gcc(
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libezimgtest.so.1",
            "-o",
            "libezimgtest.so.1",
            "lib.c",
        ],
        &src,
    );
    gcc(
        &["-o", "uses-lib", "main.c", "-L.", "-l:libezimgtest.so.1"],
        &src,
    );
    std::fs::write(src.join("static.c"), "int main(void) { return 0; }\n").unwrap();
    gcc(&["-static", "-o", "static-bin", "static.c"], &src);

    // A program linking a library no target list has: refused, the soname named.
    let staging = t.path().join("staging");
    let bin = staging.join("opt/x/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(src.join("uses-lib"), bin.join("uses-lib")).unwrap();
    let tar1 = t.path().join("one.tar.gz");
    pack_dir(&staging, &tar1);
    let e = err_text(stage::target::check(&tar1, &target("debian12"), None).unwrap_err());
    assert!(
        e.contains("opt/x/bin/uses-lib: needs libezimgtest.so.1, which <embedded>/stages/targets/debian12.toml does not list for debian12"),
        "{e}"
    );
    // Its libc is on the list: only the one soname is a problem.
    let p = stage::target::problems(&tar1, &target("debian12"), None).unwrap();
    assert_eq!(p.len(), 1, "{p:?}");

    // The library shipped in the output itself satisfies it.
    let lib = staging.join("opt/x/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(src.join("libezimgtest.so.1"), lib.join("libezimgtest.so.1")).unwrap();
    let tar2 = t.path().join("two.tar.gz");
    pack_dir(&staging, &tar2);
    stage::target::check(&tar2, &target("debian12"), None).unwrap();

    // A static binary and non-ELF files need nothing: accepted even for el7.
    let staging = t.path().join("staging-static");
    let bin = staging.join("opt/y/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(src.join("static-bin"), bin.join("static-bin")).unwrap();
    std::fs::write(bin.join("run.sh"), "#!/bin/sh\nexec static-bin\n").unwrap();
    std::fs::write(bin.join("short"), "\x7fE").unwrap();
    let tar3 = t.path().join("three.tar.gz");
    pack_dir(&staging, &tar3);
    stage::target::check(&tar3, &target("el7"), None).unwrap();
}

#[test]
fn host_built_nginx_runs_on_debian12_and_not_on_el7() {
    let Some(up) = support::fixtures("stage::host_built_nginx_runs_on_debian12_and_not_on_el7")
    else {
        return;
    };
    let (o, _) = nginx(&up);
    let st = nginx_test_stage();
    stage::target::check(&o.tarball, &target("debian12"), Some(&st)).unwrap();
    let e = err_text(stage::target::check(&o.tarball, &target("el7"), Some(&st)).unwrap_err());
    assert!(
        e.contains("stage nginx-test: the output does not run on el7")
            && e.contains("ezops/service/nginx/sbin/nginx: requires GLIBC_")
            && e.contains("el7 has glibc 2.17"),
        "{e}"
    );
    // The test build links the host's OpenSSL 3 (el7 has 1.0.2).
    assert!(
        e.contains("sbin/nginx: needs libssl.so.3")
            || e.contains("sbin/nginx: needs libcrypto.so.3"),
        "{e}"
    );
}
