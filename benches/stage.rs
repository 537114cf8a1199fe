//! Stage builds, side by side: the cold build (empty cache: unpack, patch, configure, make,
//! install, pack) vs a rebuild with nothing changed (goal: under 1 s, nothing compiled).
//!
//!     cargo bench --bench stage                    # nginx-test and keepalived
//!     EZIMG_BENCH_STAGES=keepalived cargo bench --bench stage
//!
//! Uses the upstream tarballs of the stage tests (`$EZIMG_FIXTURES`, default
//! /work/shared/fixtures/upstream) and a fresh cache in the system temp dir, removed at the end.
//! The cold build's tarball is compared with the one the tests cached (target/tmp/stage-cache),
//! when there is one for the same key: equal digests mean the build is reproducible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ezimg::stage::{self, BuildOptions, Stage};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fx(p: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/stage").join(p)
}

fn have_header(h: &str) -> bool {
    [
        "/usr/include",
        "/usr/local/include",
        "/usr/include/x86_64-linux-gnu",
    ]
    .iter()
    .any(|d| Path::new(d).join(h).exists())
}

fn nginx_test_stage() -> Result<Stage> {
    let optional = if have_header("GeoIP.h") && have_header("gd.h") {
        "\"--with-http_geoip_module\",\n    \"--with-http_image_filter_module\","
    } else {
        "# geoip/image_filter left out: libgeoip-dev/libgd-dev not installed"
    };
    let path = fx("nginx-test.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        // The same text as tests/stage.rs builds, so the keys match.
        .replace("# OPTIONAL-FLAGS", optional);
    Stage::parse(&text, "tests/fixtures/stage/nginx-test.toml", &|f| {
        let p = fx(f);
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    })
}

struct Row {
    stage: String,
    cold: Duration,
    warm_best: Duration,
    warm_median: Duration,
    reproducible: Option<bool>,
}

fn bench_one(
    st: &Stage,
    sources: &BTreeMap<String, PathBuf>,
    cache: &Path,
    jobs: usize,
) -> Result<Row> {
    let mut opts = BuildOptions::new(cache);
    opts.jobs = jobs;
    eprintln!("== {}: cold build", st.spec.name);
    let t = Instant::now();
    let cold = stage::build(st, sources, &opts)?;
    let cold_time = t.elapsed();
    anyhow::ensure!(!cold.cached, "the fresh cache had the stage already");
    opts.quiet = true;
    let mut warm = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let o = stage::build(st, sources, &opts)?;
        warm.push(t.elapsed());
        anyhow::ensure!(
            o.cached,
            "a rebuild with nothing changed was not a cache hit"
        );
    }
    warm.sort();
    let tests_cache = manifest_dir().join("target/tmp/stage-cache");
    let reproducible = stage::lookup(&tests_cache, &cold.key)
        .ok()
        .flatten()
        .map(|(_, m)| m.output.sha256 == cold.manifest.output.sha256);
    Ok(Row {
        stage: st.spec.name.clone(),
        cold: cold_time,
        warm_best: warm[0],
        warm_median: warm[warm.len() / 2],
        reproducible,
    })
}

fn main() -> Result<()> {
    // `cargo bench` passes --bench. `cargo test --all-targets` runs bench mains without it:
    // then only say how to run this, instead of compiling nginx in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("stage bench: run with `cargo bench --bench stage` (cold builds take minutes)");
        return Ok(());
    }
    let up = std::env::var_os("EZIMG_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/fixtures/upstream"));
    if !up.join("nginx_1.22.1.orig.tar.gz").is_file() {
        println!(
            "stage bench skipped: no upstream fixtures in {} (set EZIMG_FIXTURES)",
            up.display()
        );
        return Ok(());
    }
    let which = std::env::var("EZIMG_BENCH_STAGES").unwrap_or_else(|_| "nginx,keepalived".into());
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cache = tempfile::Builder::new()
        .prefix("ezimg-stage-bench-")
        .tempdir()
        .context("creating a temporary cache")?;
    let mut rows = Vec::new();
    for name in which.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (st, sources) = match name {
            "nginx" | "nginx-test" => (
                nginx_test_stage()?,
                BTreeMap::from([
                    ("nginx".to_string(), up.join("nginx_1.22.1.orig.tar.gz")),
                    ("pcre".to_string(), up.join("pcre3_8.39.orig.tar.bz2")),
                    ("zlib".to_string(), up.join("zlib_1.2.13.dfsg.orig.tar.bz2")),
                    (
                        "ngx_http_ezimg_test_module".to_string(),
                        fx("ngx_http_ezimg_test_module"),
                    ),
                ]),
            ),
            "keepalived" => (
                stage::embedded("keepalived")?,
                BTreeMap::from([(
                    "keepalived".to_string(),
                    up.join("keepalived_2.2.7.orig.tar.gz"),
                )]),
            ),
            other => anyhow::bail!("EZIMG_BENCH_STAGES: unknown stage {other:?}"),
        };
        rows.push(bench_one(&st, &sources, cache.path(), jobs)?);
    }
    println!();
    println!(
        "{:<12} {:>12} {:>22} {:>10}  reproducible (same sha256 as the tests' build)",
        "stage", "cold build", "rebuild, no change", "speedup"
    );
    for r in &rows {
        println!(
            "{:<12} {:>10.1} s {:>11.3} s (med {:.3}) {:>9.0}x  {}",
            r.stage,
            r.cold.as_secs_f64(),
            r.warm_best.as_secs_f64(),
            r.warm_median.as_secs_f64(),
            r.cold.as_secs_f64() / r.warm_best.as_secs_f64().max(1e-6),
            match r.reproducible {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "(no earlier build to compare)",
            }
        );
    }
    println!("({jobs} make jobs; host builder)");
    Ok(())
}
