//! The bundle's line formats, owned here: Rust writes them (`bundle::build`), bash reads them on
//! the node (`apply`, `lib/ezimg.sh`, the bake's guest script) and Rust reads them back (the bake,
//! the tests). Bash stays the node's reader because a node runs bash 4.2 with no ezimg binary;
//! a test runs the bundle's own `apply --list-steps` / `--list-artifacts` against this module's
//! reader so the two cannot drift.
//!
//! Grammar (one record a line, fields separated by one space, no field holds whitespace; bash
//! reads them with `read -r`, so empty lines and lines starting with `#` are skipped):
//!
//! ```text
//! nodes/<node>/steps       layer <name>                   start of a layer's steps
//!                          file <mode> <sha256> <dest>    install blobs/<sha256> as <dest> (octal mode)
//!                          unit <name> <0|1>              a unit file installed above; 1 = enable it
//!                          script <sha256> <layer>/<src>  run blobs/<sha256> with bash
//! artifacts.list           <name> <sha256|-> <file>       a pinned artifact (`-`: no digest pinned)
//! signatures.list          <name> <fingerprint>           the key a signed RPM artifact needs
//! bundle.env               <key>=<value>                  cluster, role, os, ezimg
//! MANIFEST                 <sha256>  <path>               `sha256sum -c` of every other member
//! ```
//!
//! Secrets never enter a bundle: a file that needs one holds the placeholder
//! `@@EZIMG_SECRET_<name>@@` (`<name>` in `[a-z0-9_]`), which `apply` fills from the node's
//! secrets folder.

use std::fmt::Write as _;

use anyhow::{Context, Result};

/// The secret placeholder's parts: `@@EZIMG_SECRET_<name>@@`.
pub const SECRET_PREFIX: &str = "@@EZIMG_SECRET_";
pub const SECRET_SUFFIX: &str = "@@";

/// The placeholder of secret `name` as a `&'static str` constant (for names known at compile
/// time; `secret_placeholder` otherwise). A test checks it against `SECRET_PREFIX`/`SUFFIX`.
#[macro_export]
macro_rules! secret_placeholder {
    ($name:literal) => {
        concat!("@@EZIMG_SECRET_", $name, "@@")
    };
}

/// The placeholder `apply` replaces with the value of secret `name`.
pub fn secret_placeholder(name: &str) -> String {
    format!("{SECRET_PREFIX}{name}{SECRET_SUFFIX}")
}

/// The secret name inside a placeholder, if `text` is exactly one.
pub fn secret_name(text: &str) -> Option<&str> {
    let name = text
        .strip_prefix(SECRET_PREFIX)?
        .strip_suffix(SECRET_SUFFIX)?;
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some(name)
}

/// The names of the placeholders in `text`, sorted and unique (what the step library's
/// `ez_secret_names` prints for a file).
pub fn secret_names(text: &[u8]) -> Vec<String> {
    let name_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_';
    let (prefix, suffix) = (SECRET_PREFIX.as_bytes(), SECRET_SUFFIX.as_bytes());
    let mut names = std::collections::BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].windows(prefix.len()).position(|w| w == prefix) {
        let start = i + at + prefix.len();
        let len = text[start..].iter().take_while(|b| name_char(b)).count();
        if len > 0 && text[start + len..].starts_with(suffix) {
            names.insert(String::from_utf8_lossy(&text[start..start + len]).into_owned());
            i = start + len + suffix.len();
        } else {
            i = i + at + 1;
        }
    }
    names.into_iter().collect()
}

/// One line of `nodes/<node>/steps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Layer {
        name: String,
    },
    File {
        mode: String,
        sha256: String,
        dest: String,
    },
    Unit {
        name: String,
        enable: bool,
    },
    Script {
        sha256: String,
        /// `<layer>/<src>`, for messages.
        src: String,
    },
}

/// One line of `artifacts.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactLine {
    pub name: String,
    /// `None` when the lock pins no digest (written as `-`; `apply` refuses it).
    pub sha256: Option<String>,
    pub file: String,
}

/// A field must be one non-empty word: bash splits the line on whitespace.
fn field<'a>(what: &str, v: &'a str) -> Result<&'a str> {
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        anyhow::bail!("{what} {v:?} cannot go into the bundle: it must be one word, no whitespace");
    }
    Ok(v)
}

impl Step {
    /// The line (with its newline); refuses fields the node's `read -r` would split differently.
    pub fn line(&self) -> Result<String> {
        Ok(match self {
            Step::Layer { name } => format!("layer {}\n", field("layer name", name)?),
            Step::File { mode, sha256, dest } => format!(
                "file {} {} {}\n",
                field("file mode", mode)?,
                field("blob digest", sha256)?,
                field("file destination", dest)?
            ),
            Step::Unit { name, enable } => {
                format!("unit {} {}\n", field("unit name", name)?, u8::from(*enable))
            }
            Step::Script { sha256, src } => format!(
                "script {} {}\n",
                field("blob digest", sha256)?,
                field("script", src)?
            ),
        })
    }
}

impl ArtifactLine {
    pub fn line(&self) -> Result<String> {
        Ok(format!(
            "{} {} {}\n",
            field("artifact name", &self.name)?,
            field("artifact digest", self.sha256.as_deref().unwrap_or("-"))?,
            field("artifact file", &self.file)?
        ))
    }
}

/// The text of `nodes/<node>/steps`.
pub fn write_steps(steps: &[Step]) -> Result<String> {
    steps.iter().map(Step::line).collect()
}

/// The text of `artifacts.list`.
pub fn write_artifacts_list(lines: &[ArtifactLine]) -> Result<String> {
    lines.iter().map(ArtifactLine::line).collect()
}

/// One line of `signatures.list`.
pub fn signature_line(name: &str, fingerprint: &str) -> Result<String> {
    Ok(format!(
        "{} {}\n",
        field("artifact name", name)?,
        field("key fingerprint", fingerprint)?
    ))
}

/// The text of `bundle.env` (`apply` reads it with `sed -n 's/^<key>=//p'`).
pub fn write_bundle_env(pairs: &[(&str, &str)]) -> Result<String> {
    let mut s = String::new();
    for (k, v) in pairs {
        if v.contains('\n') {
            anyhow::bail!("bundle.env: {k} {v:?} must be one line");
        }
        let _ = writeln!(s, "{}={v}", field("bundle.env key", k)?);
    }
    Ok(s)
}

/// One `MANIFEST` line, the format `sha256sum -c` reads.
pub fn manifest_line(sha256: &str, path: &str) -> String {
    format!("{sha256}  {path}\n")
}

/// The words of the lines that carry a record: `(line number, words)`, as bash's `read -r`
/// sees them (blank and `#` lines skipped).
fn records(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split_whitespace().collect::<Vec<_>>()))
        .filter(|(_, w)| w.first().is_some_and(|k| !k.starts_with('#')))
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Read `nodes/<node>/steps`; `origin` names the file in errors (`<origin>:<line>: …`).
pub fn parse_steps(text: &str, origin: &str) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    for (n, w) in records(text) {
        let bad = |why: &str| anyhow::anyhow!("{origin}:{n}: {why}: {:?}", w.join(" "));
        let digest = |s: &str| -> Result<String> {
            if is_sha256(s) {
                Ok(s.to_string())
            } else {
                Err(bad("the blob digest is not a sha256 in lower-case hex"))
            }
        };
        let step = match (w[0], &w[1..]) {
            ("layer", [name]) => Step::Layer {
                name: name.to_string(),
            },
            ("file", [mode, sha, dest]) => {
                if u32::from_str_radix(mode, 8).is_err() {
                    return Err(bad("the file mode is not octal"));
                }
                Step::File {
                    mode: mode.to_string(),
                    sha256: digest(sha)?,
                    dest: dest.to_string(),
                }
            }
            ("unit", [name, enable]) => Step::Unit {
                name: name.to_string(),
                enable: match *enable {
                    "1" => true,
                    "0" => false,
                    _ => return Err(bad("a unit's enable flag is 0 or 1")),
                },
            },
            ("script", [sha, src]) => Step::Script {
                sha256: digest(sha)?,
                src: src.to_string(),
            },
            ("layer" | "file" | "unit" | "script", _) => {
                return Err(bad(&format!(
                    "wrong number of fields for a `{}` step",
                    w[0]
                )));
            }
            (kind, _) => {
                return Err(bad(&format!(
                    "unknown step `{kind}` (layer, file, unit or script)"
                )));
            }
        };
        out.push(step);
    }
    Ok(out)
}

/// Read `artifacts.list`; `origin` names the file in errors.
pub fn parse_artifacts_list(text: &str, origin: &str) -> Result<Vec<ArtifactLine>> {
    let mut out = Vec::new();
    for (n, w) in records(text) {
        let [name, sha, file] = w[..] else {
            anyhow::bail!(
                "{origin}:{n}: expected `<name> <sha256|-> <file>`: {:?}",
                w.join(" ")
            );
        };
        let sha256 = match sha {
            "-" => None,
            s if is_sha256(s) => Some(s.to_string()),
            s => anyhow::bail!("{origin}:{n}: artifact {name}: {s:?} is not a sha256 or `-`"),
        };
        out.push(ArtifactLine {
            name: name.to_string(),
            sha256,
            file: file.to_string(),
        });
    }
    Ok(out)
}

/// Read `artifacts.list` from bundle bytes (a member read out of the tar.gz).
pub fn parse_artifacts_list_bytes(bytes: &[u8], origin: &str) -> Result<Vec<ArtifactLine>> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{origin} is not UTF-8"))?;
    parse_artifacts_list(text, origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn steps_round_trip() {
        let steps = vec![
            Step::Layer {
                name: "chrony".into(),
            },
            Step::File {
                mode: "0644".into(),
                sha256: SHA.into(),
                dest: "/etc/chrony.conf".into(),
            },
            Step::Unit {
                name: "kubelet.service".into(),
                enable: false,
            },
            Step::Script {
                sha256: SHA.into(),
                src: "chrony/apply.sh".into(),
            },
        ];
        let text = write_steps(&steps).expect("write");
        assert_eq!(
            text,
            format!(
                "layer chrony\nfile 0644 {SHA} /etc/chrony.conf\nunit kubelet.service 0\n\
                 script {SHA} chrony/apply.sh\n"
            )
        );
        assert_eq!(parse_steps(&text, "steps").expect("parse"), steps);
    }

    #[test]
    fn artifacts_list_round_trips_with_unpinned_entries() {
        let lines = vec![
            ArtifactLine {
                name: "kubeadm".into(),
                sha256: Some(SHA.into()),
                file: "kubeadm-v1.29.0".into(),
            },
            ArtifactLine {
                name: "crictl".into(),
                sha256: None,
                file: "crictl.tar.gz".into(),
            },
        ];
        let text = write_artifacts_list(&lines).expect("write");
        assert_eq!(
            text,
            format!("kubeadm {SHA} kubeadm-v1.29.0\ncrictl - crictl.tar.gz\n")
        );
        assert_eq!(parse_artifacts_list(&text, "a").expect("parse"), lines);
    }

    #[test]
    fn writers_refuse_what_bash_would_split() {
        let e = Step::File {
            mode: "0644".into(),
            sha256: SHA.into(),
            dest: "/etc/a b".into(),
        }
        .line()
        .expect_err("space");
        assert!(e.to_string().contains("file destination"), "{e}");
        let e = ArtifactLine {
            name: "x\ny".into(),
            sha256: None,
            file: "f".into(),
        }
        .line()
        .expect_err("newline");
        assert!(e.to_string().contains("artifact name"), "{e}");
        assert!(write_bundle_env(&[("os", "el7\nx=1")]).is_err());
    }

    #[test]
    fn readers_name_the_line() {
        let text = format!("# comment\n\nlayer a\nfile 0644 {SHA}\n");
        let e = parse_steps(&text, "nodes/n/steps").expect_err("short");
        assert!(
            e.to_string().starts_with("nodes/n/steps:4: wrong number"),
            "{e}"
        );
        let e = parse_steps("layer a\nrun x\n", "s").expect_err("kind");
        assert!(e.to_string().starts_with("s:2: unknown step `run`"), "{e}");
        let e = parse_steps("unit a.service yes\n", "s").expect_err("flag");
        assert!(
            e.to_string().starts_with("s:1: a unit's enable flag"),
            "{e}"
        );
        let e = parse_steps("file 0999 x /a\n", "s").expect_err("mode");
        assert!(e.to_string().contains("not octal"), "{e}");
        let e = parse_artifacts_list("a - f\nb XYZ f\n", "artifacts.list").expect_err("sha");
        assert!(
            e.to_string().starts_with("artifacts.list:2: artifact b"),
            "{e}"
        );
        let e = parse_artifacts_list("a -\n", "artifacts.list").expect_err("fields");
        assert!(
            e.to_string().starts_with("artifacts.list:1: expected"),
            "{e}"
        );
    }

    #[test]
    fn placeholder_macro_matches_the_syntax() {
        let p = secret_placeholder!("kube_bootstrap_token");
        assert_eq!(p, secret_placeholder("kube_bootstrap_token"));
        assert_eq!(secret_name(p), Some("kube_bootstrap_token"));
        assert_eq!(secret_name("@@EZIMG_SECRET_A@@"), None);
        assert_eq!(secret_name("@@EZIMG_SECRET_@@"), None);
        let text = b"a @@EZIMG_SECRET_b_2@@ @@EZIMG_SECRET_@@ @@EZIMG_SECRET_X@@\n\
                     @@EZIMG_SECRET_a@@EZIMG_SECRET_c@@ @@EZIMG_SECRET_b_2@@";
        assert_eq!(secret_names(text), ["a", "b_2"]);
    }
}
