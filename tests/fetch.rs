//! The fetcher against real HTTP servers on 127.0.0.1 with injected faults. After every test the
//! cache is rehashed: no file in it may differ from its name.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use ezimg::artifact::{self, Cache, FetchOptions, Lock, Mirror, Progress};
use sha2::{Digest, Sha256, Sha512};

// ---------------------------------------------------------------- a loopback server with faults

/// What the server does for one request.
#[derive(Clone)]
enum Reply {
    /// 200 with Content-Length, or 206 for `Range: bytes=N-`.
    Full(Vec<u8>),
    /// Like Full but without Content-Length (body ends at close); ignores Range.
    NoLength(Vec<u8>),
    Status(u16),
    Redirect(String),
    /// Headers for the whole (remaining) body, `send` bytes of it, then a clean close.
    Truncate(Vec<u8>, usize),
    /// Same, then a TCP reset.
    Reset(Vec<u8>, usize),
    /// Same, then silence for a long time.
    Stall(Vec<u8>, usize),
    /// No response at all for a long time.
    Hang,
}

type Handler = dyn Fn(&str, usize) -> Reply + Send + Sync;
/// (path, Range header) of every request, in order.
type ReqLog = Mutex<Vec<(String, Option<String>)>>;

struct Server {
    addr: SocketAddr,
    /// (path, Range header) of every request, in order.
    log: Arc<ReqLog>,
    max_active: Arc<AtomicUsize>,
}

impl Server {
    fn start(handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Server {
        Self::start_slow(handler, Duration::ZERO)
    }

    /// `delay`: sleep before answering (makes parallelism observable).
    fn start_slow(
        handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
        delay: Duration,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let handler: Arc<Handler> = Arc::new(handler);
        let log = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let max_active = Arc::new(AtomicUsize::new(0));
        let (log2, max2) = (log.clone(), max_active.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (handler, log, hits, active, max_active) = (
                    handler.clone(),
                    log2.clone(),
                    hits.clone(),
                    active.clone(),
                    max2.clone(),
                );
                std::thread::spawn(move || {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    max_active.fetch_max(now, Ordering::SeqCst);
                    serve(conn, &*handler, &log, &hits, delay);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Server {
            addr,
            log,
            max_active,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.log.lock().expect("log").clone()
    }

    fn hits(&self, path: &str) -> usize {
        self.requests().iter().filter(|(p, _)| p == path).count()
    }
}

fn serve(
    conn: TcpStream,
    handler: &Handler,
    log: &ReqLog,
    hits: &Mutex<HashMap<String, usize>>,
    delay: Duration,
) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().expect("log").push((path.clone(), range.clone()));
    let n = {
        let mut hits = hits.lock().expect("hits");
        let c = hits.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    std::thread::sleep(delay);
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let mut conn = conn;
    let head = |total: usize, start: usize| -> String {
        if start > 0 {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\nConnection: close\r\n\r\n",
                total - start,
                total - 1
            )
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n")
        }
    };
    match handler(&path, n) {
        Reply::Full(body) => {
            if start >= body.len() && start > 0 {
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                return;
            }
            let _ = conn.write_all(head(body.len(), start).as_bytes());
            let _ = conn.write_all(&body[start..]);
        }
        Reply::NoLength(body) => {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(&body);
        }
        Reply::Status(code) => {
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 {code} Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops"
                )
                .as_bytes(),
            );
        }
        Reply::Redirect(to) => {
            let _ = conn.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
        Reply::Truncate(body, send) | Reply::Reset(body, send) | Reply::Stall(body, send)
            if start >= body.len() =>
        {
            let _ = (body, send);
            let _ = conn.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        r @ (Reply::Truncate(..) | Reply::Reset(..) | Reply::Stall(..)) => {
            let (body, send) = match &r {
                Reply::Truncate(b, s) | Reply::Reset(b, s) | Reply::Stall(b, s) => (b, *s),
                _ => unreachable!(),
            };
            let end = (start + send).min(body.len());
            let _ = conn.write_all(head(body.len(), start).as_bytes());
            let _ = conn.write_all(&body[start..end]);
            let _ = conn.flush();
            match r {
                Reply::Reset(..) => {
                    std::thread::sleep(Duration::from_millis(50));
                    let sock = socket2::SockRef::from(&conn);
                    let _ = sock.set_linger(Some(Duration::ZERO));
                    drop(conn); // RST
                }
                Reply::Stall(..) => std::thread::sleep(Duration::from_secs(20)),
                _ => {
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        Reply::Hang => std::thread::sleep(Duration::from_secs(20)),
    }
}

// ---------------------------------------------------------------- helpers

fn body(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(u32::from(seed)) as u8
                ^ seed
        })
        .collect()
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn sha512(b: &[u8]) -> String {
    hex::encode(Sha512::digest(b))
}

/// One `[[artifact]]` table.
fn pin(name: &str, urls: &[String], digest_line: &str, extra: &str) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[artifact]]\nname = {name:?}\nversion = \"1\"\nkind = \"source\"\nfile = \"{name}.tar.gz\"\nurls = [{urls}]\n{digest_line}\n{extra}\n"
    )
}

fn lock_of(pins: &[String]) -> Lock {
    let text = format!("lock_version = 1\n\n{}", pins.join("\n"));
    match Lock::parse(&text, "test.lock") {
        Ok(l) => l,
        Err(e) => panic!("test lock does not parse: {e:#}\n{text}"),
    }
}

fn opts(cache_dir: &Path) -> FetchOptions {
    let mut o = FetchOptions::new(Cache::new(cache_dir));
    o.progress = Progress::Plain;
    o.retries = 3;
    o.backoff = Duration::from_millis(10);
    o.timeout = Duration::from_millis(800);
    o.connect_timeout = Duration::from_secs(2);
    o
}

/// Rehash every cache entry and check that nothing outside `tmp/` looks like a finished file.
fn assert_cache_clean(root: &Path) {
    let dir = root.join("sha256");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd {
            let p = e.expect("entry").path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let content = std::fs::read(&p).expect("read entry");
            assert_eq!(
                sha256(&content),
                name,
                "cache entry {} differs from its name",
                p.display()
            );
        }
    }
    if let Ok(rd) = std::fs::read_dir(root.join("sha512")) {
        for e in rd {
            let p = e.expect("entry").path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let target = std::fs::read_to_string(&p).expect("alias");
            let data = std::fs::read(dir.join(target.trim())).expect("alias target");
            assert_eq!(sha512(&data), name, "alias {} is wrong", p.display());
        }
    }
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd {
            let n = e.expect("entry").file_name();
            assert!(
                ["sha256", "sha512", "tmp"].contains(&n.to_str().unwrap_or("?")),
                "unexpected {n:?} in the cache root"
            );
        }
    }
    if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
        for e in rd {
            let p = e.expect("entry").path();
            let n = p.to_string_lossy().into_owned();
            assert!(n.ends_with(".part") || n.ends_with(".lock"), "stray {n}");
        }
    }
}

fn entries(root: &Path) -> usize {
    std::fs::read_dir(root.join("sha256")).map_or(0, |rd| rd.count())
}

async fn run(lock: &Lock, names: &[&str], o: &FetchOptions) -> Result<Vec<(String, PathBuf)>> {
    artifact::ensure_async(lock, names, o).await
}

fn err_text(r: Result<Vec<(String, PathBuf)>>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => format!("{e:#}"),
    }
}

fn ok_content(r: Result<Vec<(String, PathBuf)>>) -> Vec<Vec<u8>> {
    match r {
        Ok(v) => v
            .iter()
            .map(|(_, p)| std::fs::read(p).expect("read fetched"))
            .collect(),
        Err(e) => panic!("fetch failed: {e:#}"),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_is_refused_and_nothing_is_cached() {
    let good = body(1, 100_000);
    let bad = body(2, 100_000);
    let srv = Server::start(move |_, _| Reply::Full(bad.clone()));
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(&good)),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let e = err_text(run(&lock, &["a"], &opts(tmp.path())).await);
    assert!(
        e.contains("digest mismatch") && e.contains(&sha256(&good)),
        "{e}"
    );
    assert_eq!(entries(tmp.path()), 0);
    assert_eq!(
        srv.hits("a"),
        1,
        "a mismatch on a fresh download is not retried"
    );
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_always_gives_a_clear_error() {
    let data = body(3, 200_000);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::Truncate(d.clone(), 10_000));
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(&data)),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut o = opts(tmp.path());
    o.retries = 2;
    let e = err_text(run(&lock, &["a"], &o).await);
    assert!(e.contains("giving up after 3 attempts"), "{e}");
    assert_eq!(entries(tmp.path()), 0);
    // Each retry resumed where the last stopped.
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].1.as_deref(), Some("bytes=10000-"));
    assert_eq!(reqs[2].1.as_deref(), Some("bytes=20000-"));
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_without_length_is_caught_by_the_pinned_size() {
    let data = body(4, 50_000);
    let short = data[..20_000].to_vec();
    let srv = Server::start(move |_, _| Reply::NoLength(short.clone()));
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(&data)),
        "size = 50000",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut o = opts(tmp.path());
    o.retries = 1;
    let e = err_text(run(&lock, &["a"], &o).await);
    assert!(e.contains("ended early"), "{e}");
    assert_eq!(entries(tmp.path()), 0);
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_then_success() {
    let data = body(5, 300_000);
    let d = data.clone();
    let srv = Server::start(move |_, n| {
        if n == 1 {
            Reply::Status(500)
        } else {
            Reply::Full(d.clone())
        }
    });
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(&data)),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let got = ok_content(run(&lock, &["a"], &opts(tmp.path())).await);
    assert_eq!(got, vec![data]);
    assert_eq!(srv.hits("a"), 2);
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_not_retried() {
    let srv = Server::start(|_, _| Reply::Status(404));
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(b"x")),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let e = err_text(run(&lock, &["a"], &opts(tmp.path())).await);
    assert!(e.contains("404") && e.contains(&srv.url("a")), "{e}");
    assert_eq!(srv.hits("a"), 1);
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_resumes_with_range() {
    let data = body(6, 2_000_000);
    let d = data.clone();
    let srv = Server::start(move |_, n| {
        if n == 1 {
            Reply::Reset(d.clone(), 700_000)
        } else {
            Reply::Full(d.clone())
        }
    });
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(&data)),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let got = ok_content(run(&lock, &["a"], &opts(tmp.path())).await);
    assert_eq!(got, vec![data]);
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let range = reqs[1].1.clone().unwrap_or_default();
    let from: usize = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap_or(0);
    assert!(
        from > 0 && from <= 700_000,
        "second request resumed with {range:?}"
    );
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_times_out_and_resumes() {
    let data = body(7, 500_000);
    let d = data.clone();
    let srv = Server::start(move |_, n| {
        if n == 1 {
            Reply::Stall(d.clone(), 100_000)
        } else {
            Reply::Full(d.clone())
        }
    });
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(&data)),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut o = opts(tmp.path());
    o.timeout = Duration::from_millis(300);
    let t0 = std::time::Instant::now();
    let got = ok_content(run(&lock, &["a"], &o).await);
    assert_eq!(got, vec![data]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(srv.requests()[1].1.as_deref(), Some("bytes=100000-"));
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_never_answers_gives_a_timeout_error() {
    let srv = Server::start(|_, _| Reply::Hang);
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(b"x")),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut o = opts(tmp.path());
    o.timeout = Duration::from_millis(200);
    o.retries = 1;
    let e = err_text(run(&lock, &["a"], &o).await);
    assert!(
        e.contains("no response within") && e.contains("giving up after 2"),
        "{e}"
    );
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_is_followed() {
    let data = body(8, 64_000);
    let d = data.clone();
    let srv = Server::start(move |p, _| {
        if p == "old" {
            Reply::Redirect("/new".into())
        } else {
            Reply::Full(d.clone())
        }
    });
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("old")],
        &format!("sha256 = {:?}", sha256(&data)),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let got = ok_content(run(&lock, &["a"], &opts(tmp.path())).await);
    assert_eq!(got, vec![data]);
    assert_eq!((srv.hits("old"), srv.hits("new")), (1, 1));
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_files_in_parallel() {
    let files: Vec<Vec<u8>> = (0..20)
        .map(|i| body(i, 150_000 + usize::from(i) * 1000))
        .collect();
    let f2 = files.clone();
    let srv = Server::start_slow(
        move |p, _| {
            let i: usize = p.trim_start_matches('f').parse().unwrap_or(0);
            Reply::Full(f2[i].clone())
        },
        Duration::from_millis(100),
    );
    let pins: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(i, b)| {
            pin(
                &format!("f{i}"),
                &[srv.url(&format!("f{i}"))],
                &format!("sha256 = {:?}", sha256(b)),
                "",
            )
        })
        .collect();
    let lock = lock_of(&pins);
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut o = opts(tmp.path());
    o.jobs = 8;
    let got = artifact::ensure_async(&lock, &names, &o)
        .await
        .expect("fetch 20");
    assert_eq!(got.len(), 20);
    for (i, (name, p)) in got.iter().enumerate() {
        assert_eq!(name, &format!("f{i}"));
        assert_eq!(std::fs::read(p).expect("read"), files[i]);
    }
    let max = srv.max_active.load(Ordering::SeqCst);
    assert!((2..=8).contains(&max), "concurrency was {max}");
    // A second run is served from the cache.
    let again = artifact::ensure_async(&lock, &names, &o)
        .await
        .expect("cached");
    assert_eq!(again, got);
    assert_eq!(srv.requests().len(), 20);
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_names_every_missing_artifact() {
    let data: Vec<Vec<u8>> = (0..3).map(|i| body(10 + i, 10_000)).collect();
    let d2 = data.clone();
    let srv = Server::start(move |p, _| {
        Reply::Full(d2[usize::from(p == "b") + 2 * usize::from(p == "c")].clone())
    });
    let lock = lock_of(&[
        pin(
            "a",
            &[srv.url("a")],
            &format!("sha256 = {:?}", sha256(&data[0])),
            "",
        ),
        pin(
            "b",
            &[srv.url("b")],
            &format!("sha256 = {:?}", sha256(&data[1])),
            "",
        ),
        pin(
            "c",
            &[srv.url("c")],
            &format!("sha256 = {:?}", sha256(&data[2])),
            "",
        ),
    ]);
    let tmp = tempfile::tempdir().expect("tmp");
    ok_content(run(&lock, &["a"], &opts(tmp.path())).await);
    let mut o = opts(tmp.path());
    o.offline = true;
    let before = srv.requests().len();
    let e = err_text(run(&lock, &["a", "b", "c"], &o).await);
    assert!(
        e.contains("offline") && e.contains("b (b.tar.gz") && e.contains("c (c.tar.gz"),
        "{e}"
    );
    assert!(!e.contains("a (a.tar.gz"), "{e}");
    assert_eq!(srv.requests().len(), before, "offline made a request");
    let got = ok_content(run(&lock, &["a"], &o).await);
    assert_eq!(got, vec![data[0].clone()]);
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_dir_replaces_the_origins() {
    let data = body(20, 80_000);
    let srv = Server::start(|_, _| Reply::Status(500));
    let mirror = tempfile::tempdir().expect("mirror");
    std::fs::write(mirror.path().join("a.tar.gz"), &data).expect("write");
    std::fs::write(mirror.path().join("b.tar.gz"), b"not b").expect("write");
    let lock = lock_of(&[
        pin(
            "a",
            &[srv.url("a")],
            &format!("sha256 = {:?}", sha256(&data)),
            "",
        ),
        pin(
            "b",
            &[srv.url("b")],
            &format!("sha256 = {:?}", sha256(b"the real b")),
            "",
        ),
    ]);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut o = opts(tmp.path());
    o.mirrors = vec![Mirror::Dir(mirror.path().to_path_buf())];
    let got = ok_content(run(&lock, &["a"], &o).await);
    assert_eq!(got, vec![data]);
    let e = err_text(run(&lock, &["b"], &o).await);
    assert!(
        e.contains("digest mismatch") && e.contains("b.tar.gz"),
        "{e}"
    );
    assert_eq!(srv.requests().len(), 0, "the origin was contacted");
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_url_and_sha512_only_pin() {
    let data = body(21, 120_000);
    let d = data.clone();
    let srv = Server::start(move |p, _| {
        if p == "base/images/deb.qcow2" {
            Reply::Full(d.clone())
        } else {
            Reply::Status(404)
        }
    });
    // No URL at all: only the mirror knows where it is (like the Debian image pin).
    let text = format!(
        "lock_version = 1\n[[artifact]]\nname = \"deb\"\nversion = \"1\"\nkind = \"image\"\nfile = \"deb.qcow2\"\nmirror_path = \"images/deb.qcow2\"\nsha512 = {:?}\n",
        sha512(&data)
    );
    let lock = Lock::parse(&text, "test.lock").expect("lock");
    let tmp = tempfile::tempdir().expect("tmp");
    let e = err_text(run(&lock, &["deb"], &opts(tmp.path())).await);
    assert!(e.contains("--mirror"), "{e}");
    let mut o = opts(tmp.path());
    o.mirrors = vec![srv.url("base").parse::<Mirror>().expect("mirror")];
    let got = artifact::ensure_async(&lock, &["deb"], &o)
        .await
        .expect("fetch");
    assert_eq!(std::fs::read(&got[0].1).expect("read"), data);
    assert!(got[0].1.ends_with(sha256(&data)), "keyed by sha256");
    // Found offline through the sha512 alias.
    let mut off = opts(tmp.path());
    off.offline = true;
    assert_eq!(
        artifact::ensure_async(&lock, &["deb"], &off)
            .await
            .expect("offline"),
        got
    );
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip_into_an_empty_cache() {
    let data: Vec<Vec<u8>> = (0..3)
        .map(|i| body(30 + i, 40_000 + usize::from(i)))
        .collect();
    let d2 = data.clone();
    let srv = Server::start(move |p, _| {
        let i: usize = p.trim_start_matches('f').parse().unwrap_or(0);
        Reply::Full(d2[i].clone())
    });
    let pins: Vec<String> = data
        .iter()
        .enumerate()
        .map(|(i, b)| {
            pin(
                &format!("f{i}"),
                &[srv.url(&format!("f{i}"))],
                &format!("sha256 = {:?}", sha256(b)),
                "",
            )
        })
        .collect();
    let lock = lock_of(&pins);
    let names: Vec<String> = (0..3).map(|i| format!("f{i}")).collect();
    let a = tempfile::tempdir().expect("a");
    let b = tempfile::tempdir().expect("b");
    let got = artifact::ensure_async(&lock, &names, &opts(a.path()))
        .await
        .expect("fetch");
    let tar = a.path().join("export.tar");
    let sum = artifact::archive::export(&lock, &Cache::new(a.path()), &names, &tar, false)
        .expect("export");
    assert_eq!(sum.exported.len(), 3);
    let imp = artifact::archive::import(&Cache::new(b.path()), &tar).expect("import");
    assert_eq!(imp.added.len(), 3);
    assert_eq!(imp.lock_text.as_deref(), Some(lock.text.as_str()));
    let mut off = opts(b.path());
    off.offline = true;
    let again = artifact::ensure_async(&lock, &names, &off)
        .await
        .expect("offline after import");
    for ((_, p1), (_, p2)) in got.iter().zip(&again) {
        assert_eq!(std::fs::read(p1).expect("a"), std::fs::read(p2).expect("b"));
    }
    assert_cache_clean(b.path());

    // A tampered archive: the entry is refused, the cache keeps nothing wrong.
    let evil = a.path().join("evil.tar");
    {
        let f = std::fs::File::create(&evil).expect("create");
        let mut tb = tar::Builder::new(f);
        let content = b"not what the name says";
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o444);
        h.set_cksum();
        tb.append_data(
            &mut h,
            format!("sha256/{}", sha256(b"something else")),
            &content[..],
        )
        .expect("append");
        tb.finish().expect("finish");
    }
    let c = tempfile::tempdir().expect("c");
    let e = artifact::archive::import(&Cache::new(c.path()), &evil).expect_err("tampered");
    assert!(format!("{e:#}").contains("content is sha256:"), "{e:#}");
    assert_eq!(entries(c.path()), 0);
    assert_cache_clean(c.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_without_digest_needs_lock_first() {
    let data = body(40, 30_000);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::Full(d.clone()));
    let lock = lock_of(&[pin("u", &[srv.url("u")], "verified = false", "")]);
    let tmp = tempfile::tempdir().expect("tmp");
    let e = err_text(run(&lock, &["u"], &opts(tmp.path())).await);
    assert!(
        e.contains("no digest recorded")
            && e.contains("u (u.tar.gz")
            && e.contains("`ezimg lock u`"),
        "{e}"
    );
    assert_eq!(srv.requests().len(), 0);
    let mut o = opts(tmp.path());
    o.allow_unverified = true;
    // What `ezimg lock` does: learn the digest, then the pin is checked against it.
    let learnt = artifact::learn_digests(&lock, &["u"], &o)
        .await
        .expect("learn");
    assert_eq!(learnt[0].record.sha256.hex(), sha256(&data));
    assert!(learnt[0].tofu);
    let locked = lock_of(&[pin(
        "u",
        &[srv.url("u")],
        &format!("verified = false\nsha256 = {:?}", sha256(&data)),
        "",
    )]);
    // Once recorded, the pin is checked against it: no flag needed.
    let got = ok_content(run(&locked, &["u"], &opts(tmp.path())).await);
    assert_eq!(got, vec![data]);
    assert_cache_clean(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_leftover_partial_is_discarded() {
    let data = body(50, 400_000);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::Full(d.clone()));
    let lock = lock_of(&[pin(
        "a",
        &[srv.url("a")],
        &format!("sha256 = {:?}", sha256(&data)),
        "",
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    // A killed earlier run left a partial file, with wrong bytes in it.
    std::fs::create_dir_all(tmp.path().join("tmp")).expect("mkdir");
    std::fs::write(
        tmp.path().join(format!("tmp/{}.part", sha256(&data))),
        vec![0u8; 1000],
    )
    .expect("write");
    let got = ok_content(run(&lock, &["a"], &opts(tmp.path())).await);
    assert_eq!(got, vec![data]);
    let reqs = srv.requests();
    assert_eq!(reqs[0].1.as_deref(), Some("bytes=1000-"), "resumed first");
    assert_eq!(
        reqs.last().map(|r| r.1.clone()),
        Some(None),
        "then started over"
    );
    assert_cache_clean(tmp.path());
}

#[test]
fn cli_fetch_prints_paths_and_refuses_unverified() {
    use assert_cmd::Command;
    let data = body(60, 20_000);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::Full(d.clone()));
    let dir = tempfile::tempdir().expect("tmp");
    let lock_path = dir.path().join("artifacts.lock");
    let text = format!(
        "lock_version = 1\n{}\n{}",
        pin(
            "a",
            &[srv.url("a")],
            &format!("sha256 = {:?}", sha256(&data)),
            ""
        ),
        pin("u", &[srv.url("u")], "verified = false", "")
    );
    std::fs::write(&lock_path, text).expect("write lock");
    let cache = dir.path().join("cache");
    let out = Command::cargo_bin("ezimg")
        .expect("binary")
        .args(["fetch", "--progress", "plain", "a"])
        .arg("--lock")
        .arg(&lock_path)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("a\t") && stdout.trim_end().ends_with(&sha256(&data)),
        "{stdout}"
    );
    let out = Command::cargo_bin("ezimg")
        .expect("binary")
        .args(["fetch", "u", "--lock"])
        .arg(&lock_path)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`ezimg lock u`"));
    // `ezimg lock` records the digest, loudly.
    let out = Command::cargo_bin("ezimg")
        .expect("binary")
        .args(["lock", "--progress", "quiet", "--lock"])
        .arg(&lock_path)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("TRUST ON FIRST USE"),
        "{stderr}"
    );
    let relocked = Lock::load(&lock_path).expect("relock parses");
    let u = relocked.get("u").expect("u");
    assert_eq!(u.sha256.map(|d| d.hex()), Some(sha256(&data)));
    assert!(!u.verified);
    assert_cache_clean(&cache);
}
