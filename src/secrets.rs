//! The cluster's secret store: every secret a node needs, generated once, kept beside the
//! cluster file, and read by every build.
//!
//! Why a store and not generation per build: a cluster's CA must never change under a running
//! cluster (nodes built later would not join, or would split it), and outputs must stay
//! byte-reproducible for the same inputs. So secrets are inputs like the cluster file: made once
//! (`ezimg secrets init`, or the first `build`), rotated only on request, and a store that is
//! damaged or incomplete is an error — never silently regenerated.
//!
//! Layout (directory 0700, files 0600), kubeadm's own file names under `pki/` so an operator
//! recognises them:
//!
//! ```text
//! store.toml                 format, cluster name, creation date (no secret)
//! pki/ca.crt pki/ca.key      cluster CA            (kubeadm: "kubernetes")
//! pki/front-proxy-ca.*       front-proxy CA
//! pki/etcd/ca.*              etcd CA
//! pki/sa.key pki/sa.pub      service-account signing key pair
//! bootstrap-token            [a-z0-9]{6}.[a-z0-9]{16}
//! vrrp-auth-pass             keepalived PASS authentication (at most 8 characters)
//! ```
//!
//! Keys are ECDSA P-256 made by rcgen from the OS CSPRNG (kubeadm and the API server accept
//! ECDSA CAs and service-account keys). Templates name secrets with `secret("name")`; the
//! values reach a node only through its own seed or kickstart (see `render` and `bundle`).

use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};

use crate::cluster::Loaded;
use crate::digest::sha256_hex;

/// What a secret is and where its value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A file of the store, relative to it.
    File(&'static str),
    /// `sha256:<hex>` of the cluster CA's SubjectPublicKeyInfo (kubeadm's `caCertHashes`).
    /// Not secret, but delivered like one so that bundles and role images do not depend on
    /// the store: re-keying a cluster needs new seeds, not new images.
    CaCertHash,
    /// A certificate (or its key) issued from the cluster CA for the site's registry on the ops
    /// node: kept in the store like the rest, issued by the first build that finds it missing
    /// (stores made before it existed) and again when the names it must cover change.
    Registry(&'static str),
}

// Secret names, as templates write them (`secret("kube_ca_crt")`). Code names a secret by
// these constants; its file in the store is in `SECRETS` only.
pub const VRRP_AUTH_PASS: &str = "vrrp_auth_pass";
pub const BOOTSTRAP_TOKEN: &str = "kube_bootstrap_token";
pub const CA_CERT_HASH: &str = "kube_ca_cert_hash";
pub const CA_CRT: &str = "kube_ca_crt";
pub const CA_KEY: &str = "kube_ca_key";
pub const SA_KEY: &str = "kube_sa_key";
pub const SA_PUB: &str = "kube_sa_pub";
pub const FRONT_PROXY_CA_CRT: &str = "kube_front_proxy_ca_crt";
pub const FRONT_PROXY_CA_KEY: &str = "kube_front_proxy_ca_key";
pub const ETCD_CA_CRT: &str = "kube_etcd_ca_crt";
pub const ETCD_CA_KEY: &str = "kube_etcd_ca_key";
pub const REGISTRY_TLS_CRT: &str = "registry_tls_crt";
pub const REGISTRY_TLS_KEY: &str = "registry_tls_key";

/// Every secret name templates may use (`secret("name")`), with its source.
pub const SECRETS: [(&str, Source); 13] = [
    (VRRP_AUTH_PASS, Source::File("vrrp-auth-pass")),
    (BOOTSTRAP_TOKEN, Source::File("bootstrap-token")),
    (CA_CERT_HASH, Source::CaCertHash),
    (CA_CRT, Source::File("pki/ca.crt")),
    (CA_KEY, Source::File("pki/ca.key")),
    (SA_KEY, Source::File("pki/sa.key")),
    (SA_PUB, Source::File("pki/sa.pub")),
    (FRONT_PROXY_CA_CRT, Source::File("pki/front-proxy-ca.crt")),
    (FRONT_PROXY_CA_KEY, Source::File("pki/front-proxy-ca.key")),
    (ETCD_CA_CRT, Source::File("pki/etcd/ca.crt")),
    (ETCD_CA_KEY, Source::File("pki/etcd/ca.key")),
    (REGISTRY_TLS_CRT, Source::Registry("pki/registry.crt")),
    (REGISTRY_TLS_KEY, Source::Registry("pki/registry.key")),
];

/// The names the registry's certificate covers, one a line, next to it in the store.
const REGISTRY_NAMES: &str = "pki/registry.names";

/// The store's CAs: certificate, key, and the common name `create` gives them (kubeadm's).
const CAS: [(&str, &str, &str); 3] = [
    (CA_CRT, CA_KEY, "kubernetes"),
    (FRONT_PROXY_CA_CRT, FRONT_PROXY_CA_KEY, "front-proxy-ca"),
    (ETCD_CA_CRT, ETCD_CA_KEY, "etcd-ca"),
];

/// Where secret `name` is kept in the store at `dir` (for a secret derived from another, such
/// as [`CA_CERT_HASH`], the store itself).
pub fn path(dir: &Path, name: &str) -> PathBuf {
    match file_of(name) {
        Some(f) => dir.join(f),
        None => dir.to_path_buf(),
    }
}

/// Names of every secret templates may use.
pub fn names() -> impl Iterator<Item = &'static str> {
    SECRETS.iter().map(|(n, _)| *n)
}

pub fn is_known(name: &str) -> bool {
    names().any(|n| n == name)
}

const STORE_TOML: &str = "store.toml";
const FORMAT: u32 = 1;
/// CA lifetime, as kubeadm's own CAs: ten years.
const CA_DAYS: i64 = 3650;

/// Which store a command uses: `--secrets DIR`, else beside the cluster file
/// (`cluster.toml` → `cluster.secrets/`), else (the embedded default cluster) `./<name>.secrets/`.
pub fn locate(flag: Option<&Path>, loaded: &Loaded) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match &loaded.path {
        Some(p) => {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "cluster".into());
            p.with_file_name(format!("{stem}.secrets"))
        }
        None => PathBuf::from(format!("{}.secrets", loaded.cluster.name)),
    }
}

/// A loaded, checked store.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
    files: BTreeMap<&'static str, String>,
    ca_cert_hash: String,
    /// A registry certificate issued by this load and not written yet: `load` never writes
    /// (`check` and `secrets show` read only); `open` (build) and `secrets init` save it.
    unsaved_registry_names: Option<String>,
}

/// How `open` treats a store that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Create,
    Fail,
}

/// Open the store at `dir`; with `IfMissing::Create`, make it when the directory does not exist
/// at all (never when it exists but is incomplete). Returns the store and whether it was created.
pub fn open(dir: &Path, loaded: &Loaded, if_missing: IfMissing) -> Result<(Store, bool)> {
    if !dir.exists() {
        if if_missing == IfMissing::Fail {
            anyhow::bail!(
                "no secret store at {} (create it with `ezimg secrets init`; if this cluster \
                 already runs, restore the store from its backup instead: a new CA would split it)",
                dir.display()
            );
        }
        let created = create(dir, loaded)?;
        let store = load(dir, loaded)?;
        store.save_issued()?;
        return Ok((store, created));
    }
    let store = load(dir, loaded)?;
    store.save_issued()?;
    Ok((store, false))
}

/// Create a new store at `dir`: written in a temporary folder beside it and renamed into place,
/// so a killed run leaves nothing that looks like a store, and two builds racing to create it
/// end with one store (the loser loads the winner's). Returns false when another process won.
pub fn create(dir: &Path, loaded: &Loaded) -> Result<bool> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".ezimg-secrets.")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary folder in {}", parent.display()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", tmp.path().display()))?;
    let c = &loaded.cluster;
    let now = time::OffsetDateTime::now_utc();
    let at = |name| path(tmp.path(), name);
    for (crt_name, key_name, cn) in CAS {
        let (crt, key) = new_ca(cn, now)?;
        write_secret(&at(crt_name), &crt)?;
        write_secret(&at(key_name), &key)?;
    }
    let sa = KeyPair::generate().context("generating the service-account key")?;
    write_secret(&at(SA_KEY), &sa.serialize_pem())?;
    write_secret(&at(SA_PUB), &sa.public_key_pem())?;
    write_secret(&at(BOOTSTRAP_TOKEN), &new_token()?)?;
    // A password the cluster file still sets seeds the store once; otherwise a random one.
    let pass = match &c.vrrp.auth_pass {
        Some(p) => p.clone(),
        None => random_string(8)?,
    };
    write_secret(&at(VRRP_AUTH_PASS), &pass)?;
    let meta = format!(
        "# ezimg secret store: back this folder up; never commit it.\nformat = {FORMAT}\n\
         cluster = {:?}\ncreated = {:?}\n",
        c.name,
        now.date().to_string()
    );
    write_secret(&tmp.path().join(STORE_TOML), &meta)?;
    let staged = tmp.keep();
    match std::fs::rename(&staged, dir) {
        Ok(()) => Ok(true),
        Err(_) if dir.join(STORE_TOML).exists() => {
            // Another build created it first: use theirs, drop ours.
            let _ = std::fs::remove_dir_all(&staged);
            Ok(false)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            Err(e).with_context(|| format!("moving the new secret store to {}", dir.display()))
        }
    }
}

fn new_ca(cn: &str, now: time::OffsetDateTime) -> Result<(String, String)> {
    let key = KeyPair::generate().with_context(|| format!("generating the {cn} key"))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // kubeadm's CA usages: digitalSignature, keyEncipherment, keyCertSign.
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    // A little slack for nodes whose clock is behind at first boot.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(CA_DAYS);
    let cert = p
        .self_signed(&key)
        .with_context(|| format!("signing the {cn} certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Random bytes from the OS CSPRNG mapped onto `[a-z0-9]` without modulo bias.
fn random_string(n: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("OS random source: {e}"))?;
        for b in buf {
            // 252 = 7 * 36: bytes above it would favour the first letters.
            if b < 252 && out.len() < n {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A kubeadm bootstrap token: `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn new_token() -> Result<String> {
    Ok(format!("{}.{}", random_string(6)?, random_string(16)?))
}

pub fn is_token(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(s.split_once('.'), Some((a, b)) if ok(a, 6) && ok(b, 16))
}

/// Write `content` to `path` with mode 0600 from the first byte (parents 0700).
fn write_secret(path: &Path, content: &str) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", p.display()))?;
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

/// Replace the file of secret `name` in an existing store atomically (temporary file, then
/// rename).
fn replace_secret(dir: &Path, name: &str, content: &str) -> Result<()> {
    let file = file_of(name).with_context(|| format!("secret {name} is not kept in a file"))?;
    replace_file(dir, file, content)
}

/// Replace `file` (relative to the store) atomically, as a secret (mode 0600).
fn replace_file(dir: &Path, file: &str, content: &str) -> Result<()> {
    let dest = dir.join(file);
    let tmp = dir.join(format!(".{file}.new"));
    write_secret(&tmp, content)?;
    std::fs::rename(&tmp, &dest).with_context(|| format!("replacing {}", dest.display()))
}

fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let b64: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The store file that holds secret `name`, relative to the store.
pub fn file_of(name: &str) -> Option<&'static str> {
    SECRETS.iter().find_map(|(s, src)| match src {
        Source::File(f) | Source::Registry(f) if *s == name => Some(*f),
        _ => None,
    })
}

/// Load and check the store at `dir` for the cluster `loaded`.
pub fn load(dir: &Path, loaded: &Loaded) -> Result<Store> {
    let at = dir.display();
    let meta = std::fs::metadata(dir).with_context(|| format!("secret store {at}"))?;
    if !meta.is_dir() {
        anyhow::bail!("secret store {at} is not a directory");
    }
    if meta.permissions().mode() & 0o077 != 0 {
        anyhow::bail!(
            "secret store {at} is accessible to other users (mode {:o}): `chmod -R go= {at}`",
            meta.permissions().mode() & 0o777
        );
    }
    let meta_path = dir.join(STORE_TOML);
    let meta_text = std::fs::read_to_string(&meta_path).with_context(|| {
        format!(
            "secret store {at} is incomplete: cannot read {STORE_TOML} (restore the store from \
             its backup; it is never regenerated, a new CA would split the cluster)"
        )
    })?;
    #[derive(serde::Deserialize)]
    struct Meta {
        format: u32,
        cluster: String,
    }
    let m: Meta = crate::tomlfile::parse(&meta_text, &meta_path.display().to_string())?;
    if m.format != FORMAT {
        anyhow::bail!(
            "{}: format {} is not {FORMAT} (made by another ezimg version)",
            meta_path.display(),
            m.format
        );
    }
    if m.cluster != loaded.cluster.name {
        anyhow::bail!(
            "secret store {at} belongs to cluster {:?}, not {:?} (use --secrets to name the \
             right store)",
            m.cluster,
            loaded.cluster.name
        );
    }
    let mut files = BTreeMap::new();
    for (name, src) in SECRETS {
        let Source::File(file) = src else { continue };
        let path = dir.join(file);
        let v = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "secret store {at} is incomplete: cannot read {file} (restore it from the \
                 store's backup; ezimg never regenerates part of a store)"
            )
        })?;
        files.insert(name, v);
    }
    let token = files[BOOTSTRAP_TOKEN].trim_end().to_string();
    if !is_token(&token) {
        anyhow::bail!(
            "{}: not a bootstrap token of the form [a-z0-9]{{6}}.[a-z0-9]{{16}} \
             (`ezimg secrets rotate token` makes a new one)",
            path(dir, BOOTSTRAP_TOKEN).display()
        );
    }
    files.insert(BOOTSTRAP_TOKEN, token);
    let pass = files[VRRP_AUTH_PASS].trim_end_matches('\n').to_string();
    if pass.is_empty() || pass.chars().count() > 8 || pass.contains(['\n', '\r']) {
        anyhow::bail!(
            "{}: the VRRP password must be 1 to 8 characters on one line (keepalived truncates \
             longer ones silently)",
            path(dir, VRRP_AUTH_PASS).display()
        );
    }
    if let Some(p) = &loaded.cluster.vrrp.auth_pass
        && *p != pass
    {
        anyhow::bail!(
            "{}: vrrp.auth_pass differs from the secret store's ({}): the store is the source; \
             remove the line, or `ezimg secrets rotate vrrp-password --value …` to change it",
            crate::cluster::locate::Spans::new(&loaded.text).place(
                &loaded.origin(),
                &crate::cluster::locate::path("vrrp.auth_pass")
            ),
            path(dir, VRRP_AUTH_PASS).display()
        );
    }
    files.insert(VRRP_AUTH_PASS, pass);
    // Each CA key must belong to its certificate: the cert embeds the key's SPKI verbatim.
    let mut ca_cert_hash = String::new();
    for (crt, key, _) in CAS {
        let kp = KeyPair::from_pem(&files[key])
            .map_err(|e| anyhow::anyhow!("{}: not a private key: {e}", path(dir, key).display()))?;
        let spki = kp.subject_public_key_info();
        let der = pem_body(&files[crt], "CERTIFICATE")
            .with_context(|| format!("{}: not a PEM certificate", path(dir, crt).display()))?;
        if !der.windows(spki.len()).any(|w| w == spki.as_slice()) {
            anyhow::bail!(
                "{} does not belong to {}: restore both from the store's backup",
                path(dir, key).display(),
                path(dir, crt).display()
            );
        }
        if crt == CA_CRT {
            ca_cert_hash = format!("sha256:{}", sha256_hex(&spki));
        }
    }
    KeyPair::from_pem(&files[SA_KEY])
        .map_err(|e| anyhow::anyhow!("{}: not a private key: {e}", path(dir, SA_KEY).display()))?;
    let mut unsaved_registry_names = None;
    if let Some((crt, key, issued)) = registry_cert(dir, loaded, &files)? {
        files.insert(REGISTRY_TLS_CRT, crt);
        files.insert(REGISTRY_TLS_KEY, key);
        unsaved_registry_names = issued;
    }
    Ok(Store {
        dir: dir.to_path_buf(),
        files,
        ca_cert_hash,
        unsaved_registry_names,
    })
}

/// The names the site registry answers to: the host of `registry_mirror` and every ops node's
/// address and hostname. Empty when there is no registry.
pub fn registry_names(loaded: &Loaded) -> Vec<String> {
    let c = &loaded.cluster;
    if c.registry_mirror.is_empty() {
        return Vec::new();
    }
    let host = match c.registry_mirror.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => c.registry_mirror.as_str(),
    };
    let mut names = vec![host.trim_matches(['[', ']']).to_string()];
    for n in c.nodes_of("ops") {
        for v in [n.ip.to_string(), n.hostname.clone()] {
            if !names.contains(&v) {
                names.push(v);
            }
        }
    }
    names
}

/// The registry's certificate and key from the store, or newly issued (with the names file's
/// text to write; in memory only) when missing, when the key does not match, or when the names it covers changed.
fn registry_cert(
    dir: &Path,
    loaded: &Loaded,
    files: &BTreeMap<&'static str, String>,
) -> Result<Option<(String, String, Option<String>)>> {
    let names = registry_names(loaded);
    if names.is_empty() {
        return Ok(None);
    }
    let want = names.join("\n") + "\n";
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let (crt_file, key_file) = ("pki/registry.crt", "pki/registry.key");
    if let (Some(crt), Some(key), Some(had)) =
        (read(crt_file), read(key_file), read(REGISTRY_NAMES))
        && had == want
        && let Ok(kp) = KeyPair::from_pem(&key)
        && pem_body(&crt, "CERTIFICATE").is_some_and(|der| {
            let spki = kp.subject_public_key_info();
            der.windows(spki.len()).any(|w| w == spki.as_slice())
        })
    {
        return Ok(Some((crt, key, None)));
    }
    let ca_key = KeyPair::from_pem(&files[CA_KEY])
        .map_err(|e| anyhow::anyhow!("{}: not a private key: {e}", path(dir, CA_KEY).display()))?;
    // The CA as ezimg made it (`new_ca`): the issuer name and key identifier follow from these.
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kubernetes");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().context("generating the registry's key")?;
    let mut p = CertificateParams::new(names.clone())
        .with_context(|| format!("registry certificate names {names:?}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].as_str());
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    // As long as the CA: an air-gapped registry should not stop serving on its own.
    p.not_after = now + time::Duration::days(CA_DAYS);
    let crt = p
        .signed_by(&key, &issuer)
        .context("signing the registry certificate")?
        .pem();
    Ok(Some((crt, key.serialize_pem(), Some(want))))
}

impl Store {
    /// Whether this load issued a registry certificate that is not in the store yet.
    pub fn registry_cert_unsaved(&self) -> bool {
        self.unsaved_registry_names.is_some()
    }

    /// Write a registry certificate this load issued into the store (build and `secrets init`).
    pub fn save_issued(&self) -> Result<()> {
        let Some(names) = &self.unsaved_registry_names else {
            return Ok(());
        };
        let (crt_file, key_file) = ("pki/registry.crt", "pki/registry.key");
        replace_file(&self.dir, key_file, &self.files[REGISTRY_TLS_KEY])?;
        replace_file(&self.dir, crt_file, &self.files[REGISTRY_TLS_CRT])?;
        // The names last: a store killed half-way re-issues at the next build.
        replace_file(&self.dir, REGISTRY_NAMES, names)?;
        eprintln!(
            "ezimg: issued the registry's certificate for {} from the cluster CA into {}",
            names.lines().collect::<Vec<_>>().join(", "),
            self.dir.join(crt_file).display()
        );
        Ok(())
    }

    /// The value of secret `name`, if the store has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        match SECRETS.iter().find(|(n, _)| *n == name)?.1 {
            Source::CaCertHash => Some(&self.ca_cert_hash),
            Source::File(_) | Source::Registry(_) => self.files.get(name).map(String::as_str),
        }
    }

    /// `sha256:<hex>` of the cluster CA's public key, as `kubeadm join` pins it.
    pub fn ca_cert_hash(&self) -> &str {
        &self.ca_cert_hash
    }

    /// The cluster CA certificate (public).
    pub fn ca_cert_pem(&self) -> &str {
        &self.files[CA_CRT]
    }
}

/// What `rotate` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotate {
    Token,
    VrrpPassword,
}

impl Rotate {
    /// The secret it replaces.
    pub fn secret(self) -> &'static str {
        match self {
            Rotate::Token => BOOTSTRAP_TOKEN,
            Rotate::VrrpPassword => VRRP_AUTH_PASS,
        }
    }
}

/// Replace the bootstrap token or the VRRP password (with `value`, or a random one). The CAs
/// and the service-account key are never rotated here: that is a cluster-wide operation
/// (`kubeadm certs`), not a build input change.
pub fn rotate(store: &Store, what: Rotate, value: Option<&str>) -> Result<()> {
    match what {
        Rotate::Token => {
            let v = match value {
                Some(v) if is_token(v) => v.to_string(),
                Some(_) => anyhow::bail!(
                    "--value: not a bootstrap token of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}"
                ),
                None => new_token()?,
            };
            replace_secret(&store.dir, BOOTSTRAP_TOKEN, &v)
        }
        Rotate::VrrpPassword => {
            let v = match value {
                Some(v) if !v.is_empty() && v.chars().count() <= 8 && !v.contains(['\n', '\r']) => {
                    v.to_string()
                }
                Some(_) => anyhow::bail!(
                    "--value: the VRRP password must be 1 to 8 characters on one line \
                     (keepalived truncates longer ones silently)"
                ),
                None => random_string(8)?,
            };
            replace_secret(&store.dir, VRRP_AUTH_PASS, &v)
        }
    }
}

/// A line for `.gitignore` beside the cluster file that keeps the store out of commits.
pub fn gitignore_line(store_dir: &Path) -> String {
    let name = store_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cluster.secrets".into());
    format!("/{name}/")
}

/// Keep the secret store that will sit beside `cluster_file` out of git: add its line to the
/// `.gitignore` of that folder unless it is there. Returns the line and the file when added.
pub fn ignore_store(cluster_file: &Path) -> Result<Option<(String, PathBuf)>> {
    let loaded = Loaded {
        cluster: crate::cluster::parse(crate::cluster::DEFAULT_TOML, "<embedded default cluster>")?,
        path: Some(cluster_file.to_path_buf()),
        text: String::new(),
    };
    let store = locate(None, &loaded);
    let line = gitignore_line(&store);
    let gi = cluster_file.with_file_name(".gitignore");
    let old = match std::fs::read_to_string(&gi) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", gi.display())),
    };
    if old.lines().any(|l| l.trim() == line) {
        return Ok(None);
    }
    let mut new = old;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&format!(
        "# the cluster's secret store (ezimg secrets): never commit it\n{line}\n"
    ));
    std::fs::write(&gi, new).with_context(|| format!("writing {}", gi.display()))?;
    Ok(Some((line, gi)))
}

/// A throwaway store made the way the first build makes the real one, in a temporary folder
/// that lives as long as the returned guard (`check` renders with it before any build).
pub fn throwaway(loaded: &Loaded) -> Result<(Store, tempfile::TempDir)> {
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let (store, _) = open(&tmp.path().join("store"), loaded, IfMissing::Create)?;
    Ok((store, tmp))
}

/// Secrets a node's files use, with their values from the store: a node gets exactly the
/// secrets its own files name (a worker never receives a CA key).
pub fn node_secrets(store: &Store, p: &crate::plan::NodePlan) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in p.applied().flat_map(|l| l.files.iter()) {
        for s in &f.secrets {
            let value = store.get(s).with_context(|| {
                format!("secret {s:?} of {} is not in the secret store", f.dest)
            })?;
            out.insert(s.clone(), value.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_named_in_code_are_known_secrets() {
        use crate::render::secret_placeholder;
        assert_eq!(
            crate::kubeadm::TOKEN_PLACEHOLDER,
            secret_placeholder(BOOTSTRAP_TOKEN)
        );
        assert_eq!(
            crate::kubeadm::CA_CERT_HASH_PLACEHOLDER,
            secret_placeholder(CA_CERT_HASH)
        );
        for (crt, key, _) in CAS {
            assert!(file_of(crt).is_some() && file_of(key).is_some());
        }
        for r in [Rotate::Token, Rotate::VrrpPassword] {
            assert!(file_of(r.secret()).is_some(), "{r:?}");
        }
        assert_eq!(file_of(CA_CERT_HASH), None);
        assert_eq!(
            path(Path::new("/s"), BOOTSTRAP_TOKEN),
            Path::new("/s/bootstrap-token")
        );
    }
}
