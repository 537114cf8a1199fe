//! OpenPGP signatures of RPM packages, checked against one pinned key (rpgp does the crypto).
//!
//! Vendors publish no per-file digest for their RPMs, but they sign every package. An RPM is a
//! lead, a signature header, the package header and the (compressed) payload. The signature
//! header carries OpenPGP signatures of two scopes:
//!
//! - header only (`RSA` 268, `DSA` 267): the payload is covered through the payload digest in
//!   the signed header (`PAYLOADDIGEST` 5092, rpm ≥ 4.14);
//! - header and payload (`PGP` 1002, `GPG` 1005): what rpm 4.11 (CentOS 7, ELRepo's el7
//!   packages) writes, and where there is no payload digest.
//!
//! A package is accepted when it has at least one signature, every signature it has verifies
//! with the pinned key, and the payload is covered (a header+payload signature, or a header
//! signature over a header whose payload digest matches). So an unsigned package, one signed by
//! another key, and one whose header or payload changed are all refused.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;
use sha2::Digest as _;

const LEAD_LEN: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// Sanity limits for untrusted headers (the largest real headers are a few MiB).
const MAX_ENTRIES: u32 = 1 << 16;
const MAX_STORE: u32 = 64 << 20;

const SIGTAG_DSA: u32 = 267;
const SIGTAG_RSA: u32 = 268;
const SIGTAG_PGP: u32 = 1002;
const SIGTAG_GPG: u32 = 1005;
const TAG_PAYLOADDIGEST: u32 = 5092;
const TAG_PAYLOADDIGESTALGO: u32 = 5093;

const TYPE_INT32: u32 = 4;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_BIN: u32 = 7;

/// A parsed header structure: index entries and the data store, plus its exact bytes.
struct Header {
    bytes: Vec<u8>,
    entries: Vec<(u32, u32, u32, u32)>,
    store_at: usize,
}

impl Header {
    fn read(r: &mut impl Read, what: &str) -> Result<Header> {
        let mut intro = [0u8; 16];
        r.read_exact(&mut intro)
            .with_context(|| format!("reading the {what} header"))?;
        if intro[..4] != HEADER_MAGIC {
            bail!("the {what} header has no header magic: not an RPM package");
        }
        let n = u32::from_be_bytes([intro[8], intro[9], intro[10], intro[11]]);
        let store = u32::from_be_bytes([intro[12], intro[13], intro[14], intro[15]]);
        if n > MAX_ENTRIES || store > MAX_STORE {
            bail!("the {what} header is implausibly large ({n} entries, {store} bytes)");
        }
        let rest = 16 * n as usize + store as usize;
        let mut bytes = intro.to_vec();
        bytes.resize(16 + rest, 0);
        r.read_exact(&mut bytes[16..])
            .with_context(|| format!("reading the {what} header ({rest} bytes)"))?;
        let mut entries = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            let at = 16 + 16 * i;
            let w = |k: usize| {
                u32::from_be_bytes([
                    bytes[at + 4 * k],
                    bytes[at + 4 * k + 1],
                    bytes[at + 4 * k + 2],
                    bytes[at + 4 * k + 3],
                ])
            };
            entries.push((w(0), w(1), w(2), w(3)));
        }
        Ok(Header {
            store_at: 16 + 16 * n as usize,
            bytes,
            entries,
        })
    }

    fn store(&self) -> &[u8] {
        &self.bytes[self.store_at..]
    }

    fn find(&self, tag: u32) -> Option<(u32, u32, u32)> {
        self.entries
            .iter()
            .find(|e| e.0 == tag)
            .map(|&(_, t, o, c)| (t, o, c))
    }

    /// A BIN entry's bytes.
    fn bin(&self, tag: u32) -> Result<Option<&[u8]>> {
        let Some((ty, off, count)) = self.find(tag) else {
            return Ok(None);
        };
        if ty != TYPE_BIN {
            bail!("tag {tag} has type {ty}, expected binary");
        }
        let (off, count) = (off as usize, count as usize);
        self.store()
            .get(off..off.saturating_add(count))
            .map(Some)
            .with_context(|| format!("tag {tag} points outside its header"))
    }

    fn int32(&self, tag: u32) -> Result<Option<u32>> {
        let Some((ty, off, _)) = self.find(tag) else {
            return Ok(None);
        };
        if ty != TYPE_INT32 {
            bail!("tag {tag} has type {ty}, expected int32");
        }
        let off = off as usize;
        let b = self
            .store()
            .get(off..off + 4)
            .with_context(|| format!("tag {tag} points outside its header"))?;
        Ok(Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// The first string of a STRING_ARRAY entry.
    fn first_string(&self, tag: u32) -> Result<Option<String>> {
        let Some((ty, off, _)) = self.find(tag) else {
            return Ok(None);
        };
        if ty != TYPE_STRING_ARRAY {
            bail!("tag {tag} has type {ty}, expected a string array");
        }
        let s = self
            .store()
            .get(off as usize..)
            .with_context(|| format!("tag {tag} points outside its header"))?;
        let end = s
            .iter()
            .position(|&b| b == 0)
            .with_context(|| format!("tag {tag}: unterminated string"))?;
        Ok(Some(String::from_utf8_lossy(&s[..end]).into_owned()))
    }
}

/// Parse and check a pinned key: the file must hold the certificate whose primary key has
/// `fingerprint` (40 hex), with valid self-signatures.
pub fn load_key(armored: &str, fingerprint: &str) -> Result<SignedPublicKey> {
    let (key, _) = SignedPublicKey::from_string(armored)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("not an ASCII-armored OpenPGP public key")?;
    let got = hex::encode_upper(key.fingerprint().as_bytes());
    if !got.eq_ignore_ascii_case(fingerprint) {
        bail!("the key's fingerprint is {got}, the lock pins {fingerprint}");
    }
    key.verify_bindings()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the key's self-signatures do not verify")?;
    Ok(key)
}

/// How a package was found to be signed.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Short key id of the signatures (16 hex), as rpm prints its last 8.
    pub key_id: String,
    /// Names of the signatures that verified (`header`, `header+payload`).
    pub signatures: Vec<&'static str>,
}

fn parse_signature(bytes: &[u8]) -> Result<pgp::packet::Signature> {
    pgp::packet::PacketParser::new(bytes)
        .find_map(|p| match p {
            Ok(pgp::packet::Packet::Signature(s)) => Some(s),
            _ => None,
        })
        .context("no OpenPGP signature packet in it")
}

fn key_ids(key: &SignedPublicKey) -> Vec<Vec<u8>> {
    let mut v = vec![key.legacy_key_id().as_ref().to_vec()];
    v.extend(
        key.public_subkeys
            .iter()
            .map(|s| s.legacy_key_id().as_ref().to_vec()),
    );
    v
}

fn payload_digest(algo: u32, r: &mut impl Read) -> Result<String> {
    fn run<D: sha2::Digest>(mut d: D, r: &mut impl Read) -> Result<String> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).context("reading the payload")?;
            if n == 0 {
                return Ok(hex::encode(d.finalize()));
            }
            d.update(&buf[..n]);
        }
    }
    match algo {
        8 => run(sha2::Sha256::new(), r),
        9 => run(sha2::Sha384::new(), r),
        10 => run(sha2::Sha512::new(), r),
        11 => run(sha2::Sha224::new(), r),
        a => bail!("payload digest algorithm {a} is not supported (SHA-2 only)"),
    }
}

/// Verify the RPM at `path` against `key`; `key_name` names it in messages.
pub fn verify_rpm(path: &Path, key: &SignedPublicKey, key_name: &str) -> Result<Verified> {
    let open = || File::open(path).with_context(|| format!("opening {}", path.display()));
    let mut r = BufReader::new(open()?);
    let mut lead = [0u8; LEAD_LEN];
    r.read_exact(&mut lead)
        .context("reading the RPM lead: not an RPM package")?;
    if lead[..4] != LEAD_MAGIC {
        bail!("no RPM lead magic: not an RPM package");
    }
    let sig = Header::read(&mut r, "signature")?;
    let pad = (8 - sig.bytes.len() % 8) % 8;
    let mut skip = [0u8; 8];
    r.read_exact(&mut skip[..pad])
        .context("reading the signature header padding")?;
    let header = Header::read(&mut r, "package")?;
    let header_at = (LEAD_LEN + sig.bytes.len() + pad) as u64;
    let payload_at = header_at + header.bytes.len() as u64;

    let mut sigs: Vec<(&'static str, bool, &[u8])> = Vec::new();
    for (tag, scope, with_payload) in [
        (SIGTAG_RSA, "header", false),
        (SIGTAG_DSA, "header", false),
        (SIGTAG_PGP, "header+payload", true),
        (SIGTAG_GPG, "header+payload", true),
    ] {
        if let Some(b) = sig.bin(tag).context("signature header")? {
            sigs.push((scope, with_payload, b));
        }
    }
    if sigs.is_empty() {
        bail!("the package is not signed (no OpenPGP signature in its signature header)");
    }
    let ours = key_ids(key);
    let fpr = hex::encode_upper(key.fingerprint().as_bytes());
    let mut verified = Verified {
        key_id: hex::encode_upper(key.legacy_key_id().as_ref()),
        signatures: Vec::new(),
    };
    for (scope, with_payload, bytes) in sigs {
        let s = parse_signature(bytes).with_context(|| format!("the {scope} signature"))?;
        let issuers: Vec<Vec<u8>> = s
            .issuer_key_id()
            .iter()
            .map(|k| k.as_ref().to_vec())
            .chain(
                s.issuer_fingerprint()
                    .iter()
                    .filter_map(|f| f.as_bytes().get(f.as_bytes().len().saturating_sub(8)..))
                    .map(<[u8]>::to_vec),
            )
            .collect();
        if !issuers.is_empty() && !issuers.iter().any(|i| ours.contains(i)) {
            bail!(
                "the {scope} signature is by key ID {}, not by the pinned key {key_name:?} ({fpr})",
                issuers
                    .iter()
                    .map(hex::encode_upper)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let result = if with_payload {
            let mut f = BufReader::new(open()?);
            std::io::copy(&mut (&mut f).take(header_at), &mut std::io::sink())
                .context("seeking to the package header")?;
            s.verify(key, f)
        } else {
            s.verify(key, header.bytes.as_slice())
        };
        let ok = result.is_ok()
            || key.public_subkeys.iter().any(|sub| {
                if with_payload {
                    let Ok(f) = open() else { return false };
                    let mut f = BufReader::new(f);
                    std::io::copy(&mut (&mut f).take(header_at), &mut std::io::sink()).is_ok()
                        && s.verify(sub, f).is_ok()
                } else {
                    s.verify(sub, header.bytes.as_slice()).is_ok()
                }
            });
        if !ok {
            bail!(
                "BAD {scope} signature: it does not verify with the pinned key {key_name:?} \
                 ({fpr}); the package was modified"
            );
        }
        verified.signatures.push(scope);
    }
    let covered_by_sig = verified.signatures.contains(&"header+payload");
    match header.first_string(TAG_PAYLOADDIGEST)? {
        Some(want) => {
            let algo = header.int32(TAG_PAYLOADDIGESTALGO)?.unwrap_or(8);
            let mut f = BufReader::new(open()?);
            std::io::copy(&mut (&mut f).take(payload_at), &mut std::io::sink())
                .context("seeking to the payload")?;
            let got = payload_digest(algo, &mut f)?;
            if !got.eq_ignore_ascii_case(&want) {
                bail!(
                    "payload digest mismatch: the signed header says {want}, the payload hashes \
                     to {got}; the package was modified"
                );
            }
        }
        None if covered_by_sig => {}
        None => bail!(
            "no signature covers the payload: the header is signed but carries no payload digest \
             and there is no header+payload signature"
        ),
    }
    Ok(verified)
}
