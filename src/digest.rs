//! Content digests: typed digests (`sha256:<hex>`, `sha512:<hex>`) and the one way ezimg hashes
//! files and streams. A leaf module, so the artifact cache, stages, bases and bakes all hash
//! through the same benchmarked path (`cargo bench --bench hash`).
//!
//! sha2 picks its SHA-NI / AVX2 backend at run time through `cpufeatures`; [`sha_ni_available`]
//! says whether the fast path is in use on this machine.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256, Sha512};

/// A SHA-256 digest; parses from 64 lowercase or uppercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

/// A SHA-512 digest; parses from 128 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha512Digest(pub [u8; 64]);

fn parse_hex<const N: usize>(s: &str, algo: &str) -> Result<[u8; N]> {
    if s.len() != N * 2 {
        bail!(
            "{algo} digest must be {} hex characters, got {} in {s:?}",
            N * 2,
            s.len()
        );
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .with_context(|| format!("{algo} digest {s:?} is not hexadecimal"))?;
    Ok(out)
}

impl Sha256Digest {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}
impl Sha512Digest {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Sha256Digest {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        Ok(Self(parse_hex::<32>(s, "sha256")?))
    }
}
impl FromStr for Sha512Digest {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.strip_prefix("sha512:").unwrap_or(s);
        Ok(Self(parse_hex::<64>(s, "sha512")?))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}
impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for Sha512Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha512:{}", self.hex())
    }
}
impl fmt::Debug for Sha512Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A digest of either algorithm, written `sha256:<hex>` or `sha512:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Digest {
    Sha256(Sha256Digest),
    Sha512(Sha512Digest),
}

impl FromStr for Digest {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some(("sha256", h)) => Ok(Digest::Sha256(h.parse()?)),
            Some(("sha512", h)) => Ok(Digest::Sha512(h.parse()?)),
            Some((algo, _)) => bail!("unknown digest algorithm {algo:?} in {s:?} (sha256, sha512)"),
            None => bail!("digest {s:?} must be written `sha256:<hex>` or `sha512:<hex>`"),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha256(d) => d.fmt(f),
            Digest::Sha512(d) => d.fmt(f),
        }
    }
}

/// Hashes a stream with sha256 and, when asked, sha512 in the same pass.
#[derive(Clone)]
pub struct Hasher {
    sha256: Sha256,
    sha512: Option<Sha512>,
    len: u64,
}

/// What a [`Hasher`] computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hashes {
    pub sha256: Sha256Digest,
    pub sha512: Option<Sha512Digest>,
    pub size: u64,
}

impl Hasher {
    pub fn new(with_sha512: bool) -> Self {
        Hasher {
            sha256: Sha256::new(),
            sha512: with_sha512.then(Sha512::new),
            len: 0,
        }
    }
    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
        self.len += data.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Hashes {
        Hashes {
            sha256: Sha256Digest(self.sha256.finalize().into()),
            sha512: self.sha512.map(|h| Sha512Digest(h.finalize().into())),
            size: self.len,
        }
    }
    /// Feed everything `r` yields; large reads keep the SHA-NI path busy.
    pub fn read_all(&mut self, r: &mut impl Read) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Hash a file (sha256, plus sha512 when asked).
pub fn hash_file(path: &Path, with_sha512: bool) -> Result<Hashes> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Hasher::new(with_sha512);
    h.read_all(&mut f)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(h.finish())
}

/// sha256 (lowercase hex) of a file, streamed through [`Hasher`].
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(hash_file(path, false)?.sha256.hex())
}

/// sha256 (lowercase hex) of bytes in memory.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether the CPU has the SHA extensions sha2 uses for its fast sha256 path.
pub fn sha_ni_available() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("sha") && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() -> Result<()> {
        let d: Digest =
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".parse()?;
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        for bad in ["", "sha256", "sha256:", "sha256:00", "md5:00", "sha512:zz"] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        let mut h = Hasher::new(true);
        h.update(b"abc");
        let out = h.finish();
        assert_eq!(out.sha256, d_256(&d));
        assert_eq!(
            out.sha512.map(|d| d.hex()).as_deref(),
            Some(
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
            )
        );
        Ok(())
    }

    fn d_256(d: &Digest) -> Sha256Digest {
        match d {
            Digest::Sha256(d) => *d,
            Digest::Sha512(_) => Sha256Digest([0; 32]),
        }
    }
}
