//! Seed benchmarks, in one run:
//! - one node's FAT seed image written by ezimg vs `cloud-localds -f vfat` on the same three
//!   files, with the ratio printed (goal: ezimg at least 5x faster);
//! - every format this module owns (kickstart, cloud-init seed, FAT and ISO images) rendered
//!   for all nodes of the default cluster (goal: well under 100 ms).
//!
//! `cargo bench --bench seed`; under `cargo test --benches` each part runs once as a smoke test.

#[path = "../tests/support/seed_inputs.rs"]
mod seed_inputs;

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ezimg::cluster::Os;
use ezimg::data::DataTree;
use ezimg::output::{cloudinit, kickstart, seed_fat, seed_iso};
use seed_inputs::Fixture;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_n(n: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn cloud_localds(dir: &Path, out: &Path) {
    let st = Command::new("cloud-localds")
        .args(["-f", "vfat", "-N"])
        .arg(dir.join("network-config"))
        .arg(out)
        .arg(dir.join("user-data"))
        .arg(dir.join("meta-data"))
        .output()
        .expect("running cloud-localds");
    assert!(
        st.status.success(),
        "cloud-localds: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let tree = DataTree::embedded();
    let fx = Fixture::new(Os::El7, None);
    let inputs = fx.inputs();
    let seed = cloudinit::render(&inputs[1]).expect("render");
    let files = seed.files();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write");
    }

    // ezimg vs cloud-localds, same files, same run, wall time including the file write.
    let (n_ez, n_cl) = if full { (200, 20) } else { (1, 1) };
    let ez = time_n(n_ez, || {
        seed_fat::write(&files, &dir.path().join("ezimg.img")).expect("ezimg seed")
    });
    let have_cl = Command::new("cloud-localds").arg("--help").output().is_ok();
    if have_cl {
        let cl = time_n(n_cl, || {
            cloud_localds(dir.path(), &dir.path().join("cl.img"))
        });
        println!(
            "seed FAT image, one node ({} bytes of seed): ezimg {:.3} ms, cloud-localds {:.3} ms: \
             ezimg {:.1}x faster",
            files.iter().map(|(_, c)| c.len()).sum::<usize>(),
            ez.as_secs_f64() * 1e3,
            cl.as_secs_f64() * 1e3,
            cl.as_secs_f64() / ez.as_secs_f64()
        );
    } else {
        println!(
            "seed FAT image: ezimg {:.3} ms; cloud-localds not found (scripts/test-deps.sh)",
            ez.as_secs_f64() * 1e3
        );
    }

    // Everything this module renders, for every node.
    let all = || {
        for input in &inputs {
            let ks = kickstart::render(&tree, input).expect("kickstart");
            let seed = cloudinit::render(input).expect("seed");
            let fat = seed_fat::image(&seed.files()).expect("fat");
            let iso = seed_iso::image(&seed.files()).expect("iso");
            black_box((ks, fat, iso));
        }
    };
    let whole = time_n(if full { 30 } else { 1 }, all);
    println!(
        "kickstart + cloud-init + FAT + ISO for all {} nodes: {:.2} ms",
        inputs.len(),
        whole.as_secs_f64() * 1e3
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    c.bench_function("seed_fat::image (one node)", |b| {
        b.iter(|| seed_fat::image(black_box(&files)).expect("fat"))
    });
    c.bench_function("seed_iso::image (one node)", |b| {
        b.iter(|| seed_iso::image(black_box(&files)).expect("iso"))
    });
    c.bench_function("all formats, all nodes", |b| b.iter(all));
    if have_cl {
        c.bench_function("cloud-localds -f vfat (one node)", |b| {
            b.iter(|| cloud_localds(dir.path(), &dir.path().join("cl.img")))
        });
    }
    c.final_summary();
}
