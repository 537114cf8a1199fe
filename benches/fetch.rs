//! 20 files from a loopback HTTP server: ezimg's parallel fetch vs `curl` one by one.
//!
//! The server (in this process, 127.0.0.1 only) throttles each connection, like a remote
//! origin does, and waits before the first byte (EZIMG_BENCH_RATE_MIB per connection, default
//! 32; EZIMG_BENCH_LATENCY_MS, default 50). The goal: all 20 in parallel take at most 1.2x the
//! time of the largest file alone.
//!
//!     cargo bench --bench fetch

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ezimg::artifact::{self, Cache, FetchOptions, Lock, Progress};
use sha2::{Digest, Sha256};

struct Files {
    bodies: Vec<Vec<u8>>,
    rate: f64,
    latency: Duration,
}

fn serve(mut conn: TcpStream, files: &Files) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let i: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.trim_start_matches("/f").parse().ok())
        .unwrap_or(usize::MAX);
    let Some(body) = files.bodies.get(i) else {
        return conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    };
    std::thread::sleep(files.latency);
    conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    let start = Instant::now();
    let mut sent = 0usize;
    for chunk in body.chunks(64 * 1024) {
        conn.write_all(chunk)?;
        sent += chunk.len();
        let due = Duration::from_secs_f64(sent as f64 / files.rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

fn start(files: Arc<Files>) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1")?;
    let addr = l.local_addr().context("local address")?;
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let f = files.clone();
            std::thread::spawn(move || {
                let _ = serve(c, &f);
            });
        }
    });
    Ok(addr)
}

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ezimg_fetch(lock: &Lock, names: &[String], jobs: usize) -> Result<Duration> {
    let cache = tempfile::tempdir().context("temp dir")?;
    let mut o = FetchOptions::new(Cache::new(cache.path()));
    o.jobs = jobs;
    o.progress = Progress::Quiet;
    let t = Instant::now();
    let got = artifact::ensure(lock, names, &o)?;
    let took = t.elapsed();
    if got.len() != names.len() {
        bail!("fetched {} of {}", got.len(), names.len());
    }
    Ok(took)
}

fn curl_one_by_one(addr: SocketAddr, n: usize) -> Result<Duration> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let t = Instant::now();
    for i in 0..n {
        let st = Command::new("curl")
            .args(["-sSf", "-o"])
            .arg(dir.path().join(format!("f{i}")))
            .arg(format!("http://{addr}/f{i}"))
            .status()
            .context("running curl")?;
        if !st.success() {
            bail!("curl failed for f{i}");
        }
    }
    Ok(t.elapsed())
}

fn main() -> Result<()> {
    let rate = env_num("EZIMG_BENCH_RATE_MIB", 32.0) * 1024.0 * 1024.0;
    let latency = Duration::from_millis(env_num("EZIMG_BENCH_LATENCY_MS", 50.0) as u64);
    // 1..=20 MiB, the largest last.
    let sizes: Vec<usize> = (1..=20).map(|i| i << 20).collect();
    let bodies: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            (0..s)
                .map(|j| {
                    (j as u32)
                        .wrapping_mul(2_654_435_761)
                        .wrapping_add(i as u32) as u8
                })
                .collect()
        })
        .collect();
    let mut text = String::from("lock_version = 1\n");
    let files = Arc::new(Files {
        bodies,
        rate,
        latency,
    });
    let addr = start(files.clone())?;
    for (i, b) in files.bodies.iter().enumerate() {
        text.push_str(&format!(
            "[[artifact]]\nname = \"f{i}\"\nversion = \"1\"\nkind = \"source\"\nfile = \"f{i}\"\nurls = [\"http://{addr}/f{i}\"]\nsha256 = \"{}\"\nsize = {}\n",
            hex::encode(Sha256::digest(b)),
            b.len()
        ));
    }
    let lock = Lock::parse(&text, "bench.lock")?;
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let total: usize = sizes.iter().sum();
    println!(
        "20 files, {:.0} MiB in all, largest {} MiB; server: {:.0} MiB/s per connection, {} ms to first byte",
        total as f64 / 1048576.0,
        sizes[19] >> 20,
        rate / 1048576.0,
        latency.as_millis()
    );
    let largest = ezimg_fetch(&lock, &names[19..], 1)?;
    let par20 = ezimg_fetch(&lock, &names, 20)?;
    let par4 = ezimg_fetch(&lock, &names, 4)?;
    let curl = curl_one_by_one(addr, 20)?;
    println!("{:<34} {:>9} {:>18}", "run", "seconds", "vs largest alone");
    for (name, t) in [
        ("ezimg: largest file alone", largest),
        ("ezimg: all 20, --jobs 20", par20),
        ("ezimg: all 20, --jobs 4 (default)", par4),
        ("curl: all 20 one by one", curl),
    ] {
        println!(
            "{name:<34} {:>9.3} {:>17.2}x",
            t.as_secs_f64(),
            t.as_secs_f64() / largest.as_secs_f64()
        );
    }
    let ratio = par20.as_secs_f64() / largest.as_secs_f64();
    println!(
        "parallel/largest: {ratio:.2}x (goal <= 1.2x): {}; speed-up over curl one by one: {:.1}x",
        if ratio <= 1.2 { "met" } else { "NOT met" },
        curl.as_secs_f64() / par20.as_secs_f64()
    );
    Ok(())
}
