//! Image references as the lock writes them (`registry/path/name:tag`), split the way the
//! distribution API and containerd's `hosts.toml` need them: the registry host and the
//! repository path within it.

use anyhow::{Result, bail};

/// A parsed `[registry/]repository:tag` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as written (`docker.io` when the reference names none).
    pub registry: String,
    /// The repository path inside the registry (`library/` added for docker.io's one-part names).
    pub repository: String,
    pub tag: String,
}

impl Reference {
    /// Parse a reference; the first path component is a registry when it has a `.` or `:` or
    /// is `localhost` (the rule docker and containerd use).
    pub fn parse(s: &str) -> Result<Reference> {
        let (name, tag) = match s.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') && !n.is_empty() => (n, t),
            _ => bail!("{s:?}: expected [registry/]repository:tag"),
        };
        if tag.is_empty()
            || tag.len() > 128
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            bail!("{s:?}: tag {tag:?} is not a valid tag");
        }
        let (registry, mut repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if registry == "docker.io" && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        let ok_component = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.chars()
                    .next()
                    .is_some_and(|ch| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(ok_component) {
            bail!("{s:?}: repository {repository:?} is not a valid repository path");
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.to_string(),
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_registry_repository_and_tag() -> Result<()> {
        let r = Reference::parse("registry.example/coredns/coredns:v1.11.1")?;
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("registry.example", "coredns/coredns", "v1.11.1")
        );
        let r = Reference::parse("127.0.0.1:5000/a/b:1")?;
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
        let r = Reference::parse("busybox:1")?;
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        for bad in ["noTag", "a/B:1", "x:", "a:b/c", "a//b:1"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
