//! `ezimg serve`: the install server of an air-gapped site (the ops node, or an operator's
//! laptop). One place serves everything a PXE/kickstart install needs: the PXE boot configs, each
//! node's kickstart and NoCloud seed (to that node only: they carry its secrets), the role
//! bundles and the verified cache's artifacts (to anyone: nodes check their sha256 anyway).
//!
//! HTTP is axum/hyper; files go through tower-http's `ServeFile` (HEAD, single byte ranges with
//! 206/416, conditional requests) once [`site`] has decided which file a path names. At most
//! `max_requests` requests are answered at once, counted until their body is fully sent; a
//! connection that sends nothing holds no slot. SIGINT/SIGTERM stop accepting and let the
//! requests in flight finish (for at most 30 s).

pub mod access;
pub mod dnsmasq;
pub mod pxe;
pub mod site;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

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
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

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
    pub pxe: PxeChoices,
}

/// The PXE options besides the server URL (known only once bound).
pub struct PxeChoices {
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub repo: Option<String>,
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
        None => default_url(&o.cluster, bound)?,
    };
    let popts = pxe::PxeOptions {
        base_url: base.clone(),
        kernel: o.pxe.kernel,
        initrd: o.pxe.initrd,
        repo: o.pxe.repo,
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
    let app = Arc::new(App {
        site,
        slots: Arc::new(Semaphore::new(o.max_requests.max(1))),
    });
    let router = axum::Router::new().fallback(handle).with_state(app);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    // A client downloading very slowly must not keep a stopping server up forever.
    let drain_limit = async move {
        let _ = stop_rx.changed().await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    tokio::select! {
        r = server => {
            r.context("serving")?;
            eprintln!("stopped: requests in flight finished");
        }
        _ = drain_limit => {
            eprintln!(
                "stopped: requests still in flight after {}s were cut",
                DRAIN_LIMIT.as_secs()
            );
        }
    }
    Ok(())
}

/// The URL nodes reach this server by, when not given: the bound address unless it is a
/// wildcard, else the ops node's planned address (the ops node is the install server).
fn default_url(c: &Cluster, bound: SocketAddr) -> Result<String> {
    if !bound.ip().is_unspecified() {
        return Ok(format!("http://{bound}"));
    }
    let ops = c.nodes.iter().find(|n| n.role == "ops").with_context(|| {
        format!(
            "listening on {bound} and the cluster has no ops node: pass --url http://ADDR:{} \
             (the address nodes reach this server by; it goes into the boot configs)",
            bound.port()
        )
    })?;
    Ok(format!("http://{}:{}", ops.ip, bound.port()))
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
