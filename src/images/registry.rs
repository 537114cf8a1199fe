//! A client of the distribution HTTP API (`/v2/`), over the reqwest client the artifact
//! fetcher uses: manifests by digest or tag, blobs streamed into a partial file and verified as
//! they arrive (resumed with `Range` after a cut), blob upload and manifest push. Anonymous
//! bearer tokens are fetched when a registry asks for one (public registries do).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::manifest::{self, Descriptor};
use crate::artifact::fetch::{Partial, parse_content_range};
use crate::digest::{Hashes, Sha256Digest, sha256_hex};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// Trust this CA (PEM) in addition to the system's (the cluster CA for the ops registry).
    pub ca_file: Option<PathBuf>,
    /// Speak plain HTTP (a registry on a loopback address or a trusted wire).
    pub plain_http: bool,
}

/// Network behaviour of pulls and pushes.
#[derive(Debug, Clone)]
pub struct Net {
    pub tls: Tls,
    /// Retries of a blob after a cut, a timeout or a 5xx.
    pub retries: u32,
    /// Longest wait for a response or the next bytes of a body.
    pub timeout: Duration,
}

impl Default for Net {
    fn default() -> Self {
        Net {
            tls: Tls::default(),
            retries: 5,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One registry endpoint.
pub struct Registry {
    base: Url,
    client: reqwest::Client,
    net: Net,
    /// The last bearer token a challenge gave (per scope).
    token: Mutex<Option<(String, String)>>,
}

/// A blob download cut short or failed in a way worth retrying.
#[derive(Debug)]
enum BlobErr {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

impl Registry {
    /// `endpoint` is `host[:port]` (scheme from `net.tls`) or a full `http(s)://` URL.
    pub fn new(endpoint: &str, net: &Net) -> Result<Registry> {
        let text = if endpoint.contains("://") {
            endpoint.to_string()
        } else if net.tls.plain_http {
            format!("http://{endpoint}/")
        } else {
            format!("https://{endpoint}/")
        };
        let base = Url::parse(&text).with_context(|| format!("registry {endpoint:?}"))?;
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(net.timeout)
            .user_agent(concat!("ezimg/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &net.tls.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{}: not a PEM certificate", ca.display()))?;
            if certs.is_empty() {
                bail!("{}: no certificate in it", ca.display());
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(Registry {
            base,
            client: b.build().context("creating the HTTP client")?,
            net: net.clone(),
            token: Mutex::new(None),
        })
    }

    /// The registry's base URL, for messages.
    pub fn url(&self) -> &Url {
        &self.base
    }

    fn url_for(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("{}: bad path {path:?}", self.base))
    }

    /// Send a request built by `build`, answering one bearer challenge for `scope`.
    async fn send(
        &self,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        let token = self
            .token
            .lock()
            .map_err(|_| anyhow!("token lock poisoned"))?
            .as_ref()
            .filter(|(s, _)| s == scope)
            .map(|(_, t)| t.clone());
        let with_token = |t: &Option<String>| {
            let r = build(&self.client);
            match t {
                Some(t) => r.header(AUTHORIZATION, format!("Bearer {t}")),
                None => r,
            }
        };
        let resp = with_token(&token)
            .send()
            .await
            .with_context(|| format!("{}: request failed", self.base))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let t = self.bearer_token(&challenge, scope).await?;
        *self
            .token
            .lock()
            .map_err(|_| anyhow!("token lock poisoned"))? = Some((scope.to_string(), t.clone()));
        with_token(&Some(t))
            .send()
            .await
            .with_context(|| format!("{}: request failed", self.base))
    }

    /// An anonymous token from the realm a `Bearer` challenge names.
    async fn bearer_token(&self, challenge: &str, scope: &str) -> Result<String> {
        let params = challenge.strip_prefix("Bearer ").with_context(|| {
            format!(
                "{}: 401 with challenge {challenge:?}; only anonymous bearer tokens are \
                     supported",
                self.base
            )
        })?;
        let mut realm = None;
        let mut service = None;
        for part in split_params(params) {
            if let Some((k, v)) = part.split_once('=') {
                let v = v.trim().trim_matches('"').to_string();
                match k.trim() {
                    "realm" => realm = Some(v),
                    "service" => service = Some(v),
                    _ => {}
                }
            }
        }
        let mut url = Url::parse(&realm.context("bearer challenge without realm")?)
            .context("bearer realm is not a URL")?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", &s);
            }
            q.append_pair("scope", scope);
        }
        #[derive(serde::Deserialize)]
        struct Tok {
            token: Option<String>,
            access_token: Option<String>,
        }
        let resp = self
            .client
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("getting a token from {url}"))?;
        if !resp.status().is_success() {
            bail!("token from {url}: HTTP {}", resp.status());
        }
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("token from {url}: reading"))?;
        let t: Tok =
            serde_json::from_slice(&body).with_context(|| format!("token from {url}: not JSON"))?;
        t.token
            .or(t.access_token)
            .with_context(|| format!("token from {url}: no token in the answer"))
    }

    /// The manifest `reference` (a tag or `sha256:…`) of `repo`: its bytes and content type.
    /// A digest reference is checked against the bytes.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, Option<String>)> {
        let url = self.url_for(&format!("v2/{repo}/manifests/{reference}"))?;
        let scope = format!("repository:{repo}:pull");
        let resp = self
            .send(&scope, |c| {
                c.get(url.clone()).header(ACCEPT, manifest::ACCEPT)
            })
            .await?;
        let status = resp.status();
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}");
        }
        if resp
            .content_length()
            .is_some_and(|l| l > manifest::MAX_MANIFEST)
        {
            bail!(
                "GET {url}: manifest larger than {} bytes",
                manifest::MAX_MANIFEST
            );
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("GET {url}: reading"))?;
            body.extend_from_slice(&chunk);
            if body.len() as u64 > manifest::MAX_MANIFEST {
                bail!(
                    "GET {url}: manifest larger than {} bytes",
                    manifest::MAX_MANIFEST
                );
            }
        }
        if let Some(hex) = reference.strip_prefix("sha256:") {
            let got = sha256_hex(&body);
            if got != hex {
                bail!("GET {url}: the registry sent a manifest whose sha256 is {got}: refused");
            }
        }
        Ok((body, ct))
    }

    /// Download blob `desc` of `repo` into the partial file `part`, continuing after what it
    /// holds (HTTP Range), hashing as it streams. Returns the hashes once the whole blob is
    /// there and matches; a wrong blob's partial file is removed. Cuts, timeouts and 5xx are
    /// retried `net.retries` times, each time from where the file ends.
    pub async fn blob(&self, repo: &str, desc: &Descriptor, part: &Path) -> Result<Hashes> {
        let want = desc.sha256()?;
        let url = self.url_for(&format!("v2/{repo}/blobs/{}", desc.digest))?;
        let mut attempt = 0;
        loop {
            match self.blob_attempt(repo, &url, desc, &want, part).await {
                Ok(h) => return Ok(h),
                Err(BlobErr::Fatal(e)) => return Err(e),
                Err(BlobErr::Retry(e)) if attempt >= self.net.retries => {
                    return Err(e.context(format!(
                        "gave up after {} attempt(s); the partial download {} is kept and the \
                         next pull resumes it",
                        attempt + 1,
                        part.display()
                    )));
                }
                Err(BlobErr::Retry(e)) => {
                    attempt += 1;
                    eprintln!("ezimg: {}: {e:#}; retrying ({attempt})", desc.digest);
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
    }

    async fn blob_attempt(
        &self,
        repo: &str,
        url: &Url,
        desc: &Descriptor,
        want: &Sha256Digest,
        part_path: &Path,
    ) -> Result<Hashes, BlobErr> {
        let fatal = |e: anyhow::Error| BlobErr::Fatal(e);
        let mut part = Partial::open(part_path.to_path_buf(), false)
            .await
            .map_err(fatal)?;
        if part.len() > desc.size {
            part.reset().map_err(fatal)?;
        }
        if part.len() < desc.size {
            let from = part.len();
            let scope = format!("repository:{repo}:pull");
            let resp = self
                .send(&scope, |c| {
                    let r = c.get(url.clone());
                    if from > 0 {
                        r.header(RANGE, format!("bytes={from}-"))
                    } else {
                        r
                    }
                })
                .await
                .map_err(BlobErr::Retry)?;
            let status = resp.status();
            match status {
                StatusCode::PARTIAL_CONTENT => {
                    let start = resp
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_content_range)
                        .and_then(|(s, _)| s);
                    if start != Some(from) {
                        part.reset().map_err(fatal)?;
                        return Err(BlobErr::Retry(anyhow!(
                            "GET {url}: asked for bytes from {from}, got another range"
                        )));
                    }
                }
                StatusCode::OK => {
                    if from > 0 {
                        part.reset().map_err(fatal)?;
                    }
                }
                s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                    return Err(BlobErr::Retry(anyhow!("GET {url}: HTTP {s}")));
                }
                s => return Err(fatal(anyhow!("GET {url}: HTTP {s}"))),
            }
            let mut stream = resp.bytes_stream();
            let mut cut = None;
            loop {
                match tokio::time::timeout(self.net.timeout, stream.next()).await {
                    Err(_) => {
                        cut = Some(anyhow!("GET {url}: no data for {:?}", self.net.timeout));
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        cut = Some(anyhow::Error::new(e).context(format!("GET {url}: reading")));
                        break;
                    }
                    Ok(Some(Ok(chunk))) => {
                        if part.len() + chunk.len() as u64 > desc.size {
                            drop(part);
                            let _ = std::fs::remove_file(part_path);
                            return Err(fatal(anyhow!(
                                "GET {url}: more than the {} bytes the manifest gives: refused",
                                desc.size
                            )));
                        }
                        part.write(&chunk).map_err(fatal)?;
                    }
                }
            }
            part.flush().map_err(fatal)?;
            if part.len() < desc.size {
                let why = cut.unwrap_or_else(|| anyhow!("GET {url}: the body ended early"));
                return Err(BlobErr::Retry(why.context(format!(
                    "cut at {} of {} bytes",
                    part.len(),
                    desc.size
                ))));
            }
        }
        part.flush().map_err(fatal)?;
        let h = part.finish();
        if h.sha256 != *want {
            let _ = std::fs::remove_file(part_path);
            return Err(fatal(anyhow!(
                "blob {} from {url}: content is {}: refused (the registry's copy is damaged or \
                 was tampered with)",
                desc.digest,
                h.sha256
            )));
        }
        Ok(h)
    }

    /// Whether `repo` already has blob `digest`.
    pub async fn has_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = self.url_for(&format!("v2/{repo}/blobs/{digest}"))?;
        let scope = format!("repository:{repo}:pull,push");
        let resp = self.send(&scope, |c| c.head(url.clone())).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => bail!("HEAD {url}: HTTP {s}"),
        }
    }

    /// Upload the file `path` as blob `digest` of `repo` (one monolithic PUT, streamed).
    pub async fn upload_blob(&self, repo: &str, digest: &str, path: &Path) -> Result<()> {
        let scope = format!("repository:{repo}:pull,push");
        let start = self.url_for(&format!("v2/{repo}/blobs/uploads/"))?;
        let resp = self
            .send(&scope, |c| c.request(Method::POST, start.clone()))
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            bail!("POST {start}: HTTP {}", resp.status());
        }
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("POST {start}: no Location"))?;
        let mut url = start
            .join(loc)
            .with_context(|| format!("POST {start}: bad Location {loc:?}"))?;
        url.query_pairs_mut().append_pair("digest", digest);
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let p = path.to_path_buf();
        let resp = self
            .send(&scope, |c| {
                let body = file_body(p.clone());
                c.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(body)
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            bail!("PUT {url}: HTTP {}", resp.status());
        }
        Ok(())
    }

    /// Put `bytes` as manifest `tag` of `repo`; checks the digest the registry computed.
    pub async fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let scope = format!("repository:{repo}:pull,push");
        let url = self.url_for(&format!("v2/{repo}/manifests/{tag}"))?;
        let resp = self
            .send(&scope, |c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            })
            .await?;
        let status = resp.status();
        if status != StatusCode::CREATED {
            let text = resp.text().await.unwrap_or_default();
            bail!("PUT {url}: HTTP {status}: {}", text.trim());
        }
        let want = format!("sha256:{}", sha256_hex(bytes));
        if let Some(got) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && got != want
        {
            bail!("PUT {url}: the registry stored digest {got}, not {want}");
        }
        Ok(())
    }
}

/// Split `a="x,y",b=c` at the commas outside quotes.
fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A request body streaming `path` in 1 MiB chunks.
fn file_body(path: PathBuf) -> reqwest::Body {
    use tokio::io::AsyncReadExt;
    let stream = futures_util::stream::unfold(Some((path, None)), |state| async move {
        let (path, file) = state?;
        let mut file: tokio::fs::File = match file {
            Some(f) => f,
            None => match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) => return Some((Err(e), None)),
            },
        };
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some((path, Some(file)))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    reqwest::Body::wrap_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_params_split_outside_quotes() {
        let p =
            split_params(r#"realm="https://a/token",service="reg",scope="repository:x:pull,push""#);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].ends_with("pull,push\""));
    }
}
