//! What an ELF file asks of the system it runs on: the sonames it links (DT_NEEDED) and the
//! glibc symbol versions it requires (`.gnu.version_r`). A stage output built on one
//! distribution runs on another only if that one has both, so the stage check reads these.

use std::cmp::Ordering;
use std::fmt;

use anyhow::{Context, Result, bail};
use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::FileHeader;
use object::{Endianness, FileKind};

/// A glibc symbol version (`GLIBC_2.17`), compared numerically: 2.9 < 2.17 < 2.34.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GlibcVersion(Vec<u32>);

impl GlibcVersion {
    /// `2.17` or `GLIBC_2.17`; `GLIBC_PRIVATE` and other non-numeric names are not versions.
    pub fn parse(s: &str) -> Option<GlibcVersion> {
        let v = s.strip_prefix("GLIBC_").unwrap_or(s);
        let parts: Option<Vec<u32>> = v.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(GlibcVersion)
    }
}

impl Ord for GlibcVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        // 2.17 == 2.17.0: compare with missing parts as 0.
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| {
                let a = self.0.get(i).copied().unwrap_or(0);
                let b = other.0.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for GlibcVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self.0.iter().map(u32::to_string).collect();
        write!(f, "{}", s.join("."))
    }
}

/// What one ELF file needs at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// DT_NEEDED sonames, in file order.
    pub needed: Vec<String>,
    /// Its own DT_SONAME (a shared library the stage ships).
    pub soname: Option<String>,
    /// The highest `GLIBC_x.y` it requires, if any.
    pub glibc: Option<GlibcVersion>,
}

/// True when `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

/// The run-time needs of an ELF file; `None` for data that is not ELF. A static binary has no
/// dynamic section and needs nothing.
pub fn needs(data: &[u8]) -> Result<Option<Needs>> {
    if !is_elf(data) {
        return Ok(None);
    }
    match FileKind::parse(data).context("reading the ELF header")? {
        FileKind::Elf32 => read::<FileHeader32<Endianness>>(data).map(Some),
        FileKind::Elf64 => read::<FileHeader64<Endianness>>(data).map(Some),
        k => bail!("ELF magic but not a 32- or 64-bit ELF file ({k:?})"),
    }
}

fn utf8(b: &[u8], what: &str) -> Result<String> {
    String::from_utf8(b.to_vec()).with_context(|| format!("{what} is not UTF-8"))
}

fn read<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<Needs> {
    let h = Elf::parse(data).context("reading the ELF header")?;
    let endian = h.endian().context("reading the ELF header")?;
    let sections = h
        .sections(endian, data)
        .context("reading the ELF section headers")?;
    let mut out = Needs::default();
    let dynamic = sections
        .dynamic_table(endian, data)
        .context("reading the ELF dynamic section")?;
    for d in &dynamic {
        if d.tag == elf::DT_NEEDED || d.tag == elf::DT_SONAME {
            let s = dynamic
                .string(d)
                .context("reading a string of the ELF dynamic section")?;
            let s = utf8(s, "a DT_NEEDED/DT_SONAME name")?;
            if d.tag == elf::DT_NEEDED {
                out.needed.push(s);
            } else {
                out.soname = Some(s);
            }
        }
    }
    if let Some((mut it, link)) = sections
        .gnu_verneed(endian, data)
        .context("reading .gnu.version_r")?
    {
        let strings = sections
            .strings(endian, data, link)
            .context("reading the string table of .gnu.version_r")?;
        while let Some((_, mut aux)) = it.next().context("reading .gnu.version_r")? {
            while let Some(a) = aux.next().context("reading .gnu.version_r")? {
                let name = a
                    .name(endian, strings)
                    .context("reading a version name of .gnu.version_r")?;
                let name = utf8(name, "a version name")?;
                if name.starts_with("GLIBC_")
                    && let Some(v) = GlibcVersion::parse(&name)
                    && out.glibc.as_ref().is_none_or(|m| v > *m)
                {
                    out.glibc = Some(v);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(s: &str) -> GlibcVersion {
        GlibcVersion::parse(s).unwrap()
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(v("GLIBC_2.9") < v("GLIBC_2.17"));
        assert!(v("GLIBC_2.17") < v("GLIBC_2.34"));
        assert!(v("GLIBC_2.9") < v("2.34"));
        assert!(v("GLIBC_2.3.4") < v("GLIBC_2.17"));
        assert!(v("GLIBC_2.3.4") > v("GLIBC_2.3"));
        assert_eq!(v("2.17").cmp(&v("GLIBC_2.17.0")), Ordering::Equal);
        assert_eq!(v("GLIBC_2.2.5").to_string(), "2.2.5");
        assert!(GlibcVersion::parse("GLIBC_PRIVATE").is_none());
        assert!(GlibcVersion::parse("GLIBC_").is_none());
        assert!(GlibcVersion::parse("2.x").is_none());
    }

    #[test]
    fn non_elf_is_ignored_and_the_test_binary_is_read() {
        assert_eq!(needs(b"#!/bin/sh\necho hi\n").unwrap(), None);
        assert_eq!(needs(b"").unwrap(), None);
        // This test binary itself: dynamically linked against glibc on Linux.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let n = needs(&exe).unwrap().unwrap();
        assert!(n.needed.iter().any(|s| s == "libc.so.6"), "{n:?}");
        assert!(n.glibc.unwrap() >= v("2.2.5"));
        // A truncated ELF is an error, not "no needs".
        assert!(needs(&exe[..100]).is_err());
    }
}
