//! `ezimg serve`: the install server of an air-gapped site (the ops node, or an operator's
//! laptop). One place serves everything a PXE/kickstart install needs: the PXE boot configs, each
//! node's kickstart and NoCloud seed (to that node only: they carry its secrets), the role
//! bundles and the verified cache's artifacts (to anyone: nodes check their sha256 anyway).
//!
//! HTTP is axum on hyper (HTTP/1.1: what installers, iPXE and curl speak); files go through
//! tower-http's `ServeFile` (HEAD, single byte ranges with 206/416, conditional requests) once
//! [`site`] has decided which file a path names. At most `max_requests` requests are answered at
//! once, counted until their body is fully sent; a connection that sends nothing holds no slot,
//! and is closed after the header timeout. SIGINT/SIGTERM stop accepting and let the requests in
//! flight finish (for at most 30 s).

pub mod access;
pub mod dnsmasq;
mod notify;
pub mod pxe;
pub mod site;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::artifact::{Cache, Lock};
use crate::cluster::Cluster;

use self::site::{Site, Target};

/// The default listen address: every interface (nodes reach the ops node on the install
/// network), an unprivileged port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// The default bound on requests answered at once: enough to feed a rack of installing nodes,
/// small enough that a burst cannot exhaust file descriptors.
pub const DEFAULT_MAX_REQUESTS: usize = 64;
/// How long a stopping server waits for the requests in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// The default time a connection has to send a complete request head.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 30;

/// Everything `serve` needs, resolved by the command handler.
pub struct Options {
    pub out: PathBuf,
    pub cluster: Cluster,
    pub cache: Cache,
    pub lock: Lock,
    pub listen: SocketAddr,
    /// The base URL nodes use; None: from the bound address, else the ops node's address.
    pub url: Option<String>,
    pub max_requests: usize,
    /// A connection that sends no complete request head within this is closed.
    pub header_timeout: Duration,
    pub pxe: PxeChoices,
}

/// The PXE options besides the server URL (known only once bound).
pub struct PxeChoices {
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub repo: Option<String>,
    pub append: Option<String>,
    pub dhcp: dnsmasq::DhcpMode,
}

struct App {
    site: Site,
    slots: Arc<Semaphore>,
}

/// Bind, write the PXE tree, serve until SIGINT/SIGTERM. Prints `listening on http://ADDR` on
/// stdout once bound (tests and scripts read the port from it when listening on port 0).
pub fn run(o: Options) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(o))
}

async fn serve(o: Options) -> Result<()> {
    let site = Site::new(
        &o.out,
        &o.cluster.name,
        o.cache.clone(),
        o.lock,
        access::nodes(&o.cluster),
    )?;
    let listener = tokio::net::TcpListener::bind(o.listen)
        .await
        .with_context(|| format!("listening on {}", o.listen))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let base = match o.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => default_url(&o.cluster, bound, "--url")?,
    };
    let popts = pxe::PxeOptions {
        base_url: base.clone(),
        kernel: o.pxe.kernel,
        initrd: o.pxe.initrd,
        repo: o.pxe.repo,
        append: o.pxe.append,
        dhcp: o.pxe.dhcp,
    };
    for note in pxe::write(site.out(), &o.cluster, &popts)? {
        eprintln!("pxe: {note}");
    }
    eprintln!(
        "serving {} and the verified cache {} as {base} (PXE tree and dnsmasq.conf in {}/pxe; \
         at most {} requests at once)",
        site.out().display(),
        o.cache.root().display(),
        site.out().display(),
        o.max_requests
    );
    println!("listening on http://{bound}");
    if let Err(e) = notify::ready() {
        // Under Type=notify systemd then times the start out and says so.
        eprintln!("warning: {e:#}");
    }
    let app = Arc::new(App {
        site,
        slots: Arc::new(Semaphore::new(o.max_requests.max(1))),
    });
    let router = axum::Router::new().fallback(handle).with_state(app);
    accept_loop(listener, router, o.header_timeout).await;
    Ok(())
}

/// Accept connections until SIGINT/SIGTERM, then let the requests in flight finish (at most
/// [`DRAIN_LIMIT`]). hyper directly rather than `axum::serve`, for the header read timeout: a
/// connection that sends no complete request head within it is closed.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off, go on.
                    eprintln!("error: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        // Answers are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let svc = router
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = http.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(svc),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client going away mid-answer is its business, not an error of the server.
            let _ = conn.await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => eprintln!("stopped: requests in flight finished"),
        _ = tokio::time::sleep(DRAIN_LIMIT) => eprintln!(
            "stopped: requests still in flight after {}s were cut",
            DRAIN_LIMIT.as_secs()
        ),
    }
}

/// The URL nodes reach this server by, when not given: the bound address unless it is a
/// wildcard, else the ops node's planned address (the ops node is the install server). `flag`
/// is the option that gives it instead (`serve --url`, `build --serve-url`).
pub fn default_url(c: &Cluster, bound: SocketAddr, flag: &str) -> Result<String> {
    if !bound.ip().is_unspecified() {
        return Ok(format!("http://{bound}"));
    }
    let ops = c.nodes.iter().find(|n| n.role == "ops").with_context(|| {
        format!(
            "the install server listens on every interface ({bound}) and the cluster has no \
             ops node whose address nodes would use: pass {flag} http://ADDR:{} (the address \
             nodes reach it by; it goes into the boot configs)",
            bound.port()
        )
    })?;
    Ok(format!("http://{}:{}", ops.ip, bound.port()))
}

/// The URL `ezimg serve` with its default (wildcard) listen address puts in the boot configs:
/// what `build --format pxe` writes when given no `--serve-url`.
pub fn default_serve_url(c: &Cluster) -> Result<String> {
    let listen: SocketAddr = DEFAULT_LISTEN
        .parse()
        .context("the default listen address")?;
    default_url(c, listen, "--serve-url")
}

async fn shutdown_signal() {
    let int = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = int => {},
        _ = term => {},
    }
    eprintln!("shutting down: no new connections");
}

/// Every request: wait for a slot, resolve, apply the secrets rule, send, log one line.
async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let permit = match app.slots.clone().acquire_owned().await {
        Ok(p) => p,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let resp = answer(&app, peer, req).await;
    let status = resp.status();
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            http_body::Body::size_hint(resp.body())
                .exact()
                .map(|n| n.to_string())
        })
        .unwrap_or_else(|| "-".to_string());
    eprintln!(
        "{} \"{method} {}\" {} {bytes} {}ms",
        access::canonical(peer.ip()),
        path.escape_debug(),
        status.as_u16(),
        start.elapsed().as_millis()
    );
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            body,
            _permit: permit,
        }),
    )
}

async fn answer(app: &App, peer: SocketAddr, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "GET or HEAD only\n",
        )
            .into_response();
    }
    match app.site.resolve(req.uri().path()) {
        Target::Bad(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
        Target::NotFound => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        Target::Index => (StatusCode::OK, INDEX).into_response(),
        Target::File { path, node } => {
            if let Some(n) = &node {
                let macs = access::sent_macs(req.headers());
                let ok = app
                    .site
                    .nodes
                    .get(n)
                    .is_some_and(|id| access::allowed(id, peer.ip(), &macs));
                if !ok {
                    eprintln!(
                        "denied: {} holds the secrets of node {n}; asked by {}",
                        req.uri().path().escape_debug(),
                        access::asker(peer.ip(), &macs)
                    );
                    return (
                        StatusCode::FORBIDDEN,
                        format!("only node {n} may fetch this (by its MAC or address)\n"),
                    )
                        .into_response();
                }
            }
            if let Some(r) = small_file(&req, &path) {
                return r;
            }
            match ServeFile::new(&path).oneshot(req).await {
                Ok(r) => r.map(Body::new),
                Err(e) => {
                    eprintln!("error: reading {}: {e}", path.display());
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }
    }
}

/// Whole small files (sha256 lines, iPXE scripts, kickstarts, bundles) for a plain GET, read in
/// one call on this thread: tokio's file I/O hops to a blocking thread for every call (open,
/// metadata, each read), and those thread switches were most of the CPU time of a small answer.
/// Ranges, conditional requests, HEAD and big files go to `ServeFile`; the headers are the ones
/// it sends.
fn small_file(req: &Request, path: &std::path::Path) -> Option<Response> {
    const SMALL: u64 = 256 * 1024;
    let conditional = [
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ];
    if req.method() != Method::GET || conditional.iter().any(|h| req.headers().contains_key(h)) {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > SMALL {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let mime = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, mime)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Ok(m) = meta.modified() {
        b = b.header(header::LAST_MODIFIED, httpdate::fmt_http_date(m));
    }
    b.body(Body::from(bytes)).ok()
}

const INDEX: &str = "ezimg serve\n\
/boot.ipxe            iPXE entry point (chains to /pxe/ipxe/<mac>.ipxe)\n\
/pxe/<path>           PXE tree: ipxe/, pxelinux.cfg/, grub.cfg-01-<mac>, dnsmasq.conf, installer/\n\
/ks/<node>            the node's kickstart (that node only)\n\
/seed/<node>/<file>   the node's NoCloud seed (that node only)\n\
/out/<path>           the build output: bundles, artifacts (a node's files: that node only)\n\
/artifacts/<file>     verified cache entry by pinned file name\n\
/sha256/<hex>         verified cache entry by sha256\n";

/// A response body that holds its request slot until it is sent (or the client goes away).
struct Held {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
