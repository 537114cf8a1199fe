//! Stage files (`stages/<name>.toml`): parsing, validation (errors name the file and the field)
//! and `{{ var }}` expansion.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// A stage file as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Must equal the file stem.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Where in the seeds the steps come from.
    #[serde(default)]
    pub seed: String,
    /// Install prefix on the node (absolute): `{{ prefix }}`.
    pub prefix: String,
    /// The source the build runs in (configure, make): a `[[source]]` name.
    pub work: String,
    /// Build commands (argv lists) run in the work source after configure.
    pub build: Vec<Vec<String>>,
    /// Install commands; `{{ destdir }}` is the staging directory that gets packed.
    pub install: Vec<Vec<String>>,
    /// Variables for `{{ name }}`; `ezimg stage build --var k=v` overrides them.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub configure: Configure,
    #[serde(default)]
    pub output: Output,
    #[serde(rename = "source")]
    pub sources: Vec<SourceSpec>,
    #[serde(rename = "patch", default)]
    pub patches: Vec<PatchSpec>,
    #[serde(rename = "edit", default)]
    pub edits: Vec<EditSpec>,
    /// Per target (`el7`, `el9`, `debian12`): the packages the node installs for the output's
    /// shared libraries. The ELF check allows the sonames they provide on that target
    /// (`stages/targets/<target>.toml`), besides the target's base install.
    #[serde(default)]
    pub runtime: BTreeMap<String, Vec<String>>,
    /// Per target: the packages the VM builder installs in the target's base before the build
    /// (compiler, headers). Only these are there, so nothing else leaks into the output.
    #[serde(default)]
    pub build_deps: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Configure {
    /// The configure program, relative to the work source.
    #[serde(default = "default_configure_command")]
    pub command: Vec<String>,
    /// Its arguments: the flags. `{{ src.NAME }}` is the path of an unpacked source relative to
    /// the work source (`../pcre-8.45`), so flags (and `nginx -V`) never show temp paths.
    #[serde(default)]
    pub args: Vec<String>,
}

impl Default for Configure {
    fn default() -> Self {
        Configure {
            command: default_configure_command(),
            args: vec![],
        }
    }
}

fn default_configure_command() -> Vec<String> {
    vec!["./configure".to_string()]
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Absolute paths inside the staging tree that go into the stage tarball; the rest of what
    /// `make install` wrote is listed in the manifest as dropped.
    #[serde(default = "default_output_paths")]
    pub paths: Vec<String>,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            paths: default_output_paths(),
        }
    }
}

fn default_output_paths() -> Vec<String> {
    vec!["{{ prefix }}".to_string()]
}

/// A source: an artifact name (from `artifacts.lock`) and the directory its archive unpacks to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    /// The archive's single top-level directory, checked after unpacking. Without it any single
    /// top-level directory is accepted (GitHub archives pinned by commit: `<repo>-<commit>`).
    #[serde(default)]
    pub dir: Option<String>,
}

/// A patch applied with `patch -p<strip>` in the target source (the work source by default).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSpec {
    /// Take the patch from inside this source ...
    #[serde(default)]
    pub source: Option<String>,
    /// ... at this path in it.
    #[serde(default)]
    pub path: Option<String>,
    /// Or a patch file shipped next to the stage file (`patches/foo.patch`).
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default = "default_strip")]
    pub strip: u32,
    /// Source to patch (default: the work source).
    #[serde(default)]
    pub target: Option<String>,
}

fn default_strip() -> u32 {
    1
}

/// A literal in-tree edit. Exactly one of `replace` (with `with`) or `delete_line`. Matching
/// nothing is an error.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EditSpec {
    /// File relative to the target source.
    pub file: String,
    /// Replace every occurrence of this literal ...
    #[serde(default)]
    pub replace: Option<String>,
    /// ... with this.
    #[serde(default)]
    pub with: Option<String>,
    /// Delete every line containing this literal.
    #[serde(default)]
    pub delete_line: Option<String>,
    /// Source to edit (default: the work source).
    #[serde(default)]
    pub target: Option<String>,
}

/// One resolved edit rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Replace { from: String, to: String },
    DeleteLine { containing: String },
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Replace { from, to } => write!(f, "replace {from:?} with {to:?}"),
            Rule::DeleteLine { containing } => write!(f, "delete lines containing {containing:?}"),
        }
    }
}

/// Where a patch comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchFrom {
    /// `path` inside the unpacked source `source`.
    Source { source: String, path: String },
    /// A file next to the stage file, with its bytes.
    Local { file: String, bytes: Vec<u8> },
}

/// A stage file, parsed and validated, with the local patch files it names.
#[derive(Debug, Clone)]
pub struct Stage {
    pub spec: StageSpec,
    /// The exact file text (hashed into the cache key).
    pub text: String,
    /// Where it came from, for messages: a path or `<embedded>/stages/nginx.toml`.
    pub origin: String,
    /// Local patch files by their `file =` path.
    pub local_files: BTreeMap<String, Vec<u8>>,
}

/// Expand `{{ name }}` in `s`; an unknown name or an unclosed `{{` is an error.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err(format!("unclosed `{{{{` in {s:?}"));
        };
        let name = after[..j].trim();
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => {
                let known: Vec<&str> = vars.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown variable `{name}` in {s:?} (known here: {})",
                    known.join(", ")
                ));
            }
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn relative_ok(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && std::path::Path::new(p)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

impl Stage {
    /// Parse and validate a stage file. `load_local` reads a file named relative to the stage
    /// file (local patches).
    pub fn parse(
        text: &str,
        origin: &str,
        load_local: &dyn Fn(&str) -> Result<Vec<u8>>,
    ) -> Result<Stage> {
        let spec: StageSpec = crate::tomlfile::parse(text, origin)?;
        let mut local_files = BTreeMap::new();
        for (i, p) in spec.patches.iter().enumerate() {
            if let Some(f) = &p.file {
                if !relative_ok(f) {
                    bail!(
                        "{origin}: [[patch]] #{}: file: {f:?} must be a relative path without `..`",
                        i + 1
                    );
                }
                let bytes = load_local(f)
                    .with_context(|| format!("{origin}: [[patch]] #{}: file", i + 1))?;
                local_files.insert(f.clone(), bytes);
            }
        }
        let stage = Stage {
            spec,
            text: text.to_string(),
            origin: origin.to_string(),
            local_files,
        };
        stage.validate()?;
        Ok(stage)
    }

    /// Read a stage file from disk; local patches are read relative to its directory.
    pub fn load_file(path: &std::path::Path) -> Result<Stage> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading stage file {}", path.display()))?;
        let dir = path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let stage = Stage::parse(&text, &path.display().to_string(), &|f| {
            let p = dir.join(f);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
        })?;
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            && stem != stage.spec.name
        {
            bail!(
                "{}: name: {:?} differs from the file name {stem:?}",
                stage.origin,
                stage.spec.name
            );
        }
        Ok(stage)
    }

    fn err(&self, field: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{}: {field}: {msg}", self.origin)
    }

    fn source_names(&self) -> String {
        self.spec
            .sources
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn has_source(&self, name: &str) -> bool {
        self.spec.sources.iter().any(|s| s.name == name)
    }

    /// Variables of a context: the stage's vars (with overrides) and `prefix`.
    pub fn base_vars(&self, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut v = self.spec.vars.clone();
        for (k, val) in overrides {
            v.insert(k.clone(), val.clone());
        }
        v.insert("prefix".to_string(), self.spec.prefix.clone());
        v
    }

    /// Variables with placeholder values for every name a field may use, to check names early.
    fn check_vars(&self, with_src: bool, with_build: bool) -> BTreeMap<String, String> {
        let mut v = self.base_vars(&BTreeMap::new());
        if with_src {
            for s in &self.spec.sources {
                v.insert(format!("src.{}", s.name), format!("../{}", s.name));
            }
        }
        if with_build {
            v.insert("jobs".into(), "1".into());
            v.insert("destdir".into(), "/destdir".into());
        }
        v
    }

    fn validate(&self) -> Result<()> {
        let s = &self.spec;
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.err(
                "name",
                format!("{:?}: use letters, digits, - and _", s.name),
            ));
        }
        if !s.prefix.starts_with('/') || s.prefix.contains("..") || s.prefix.len() < 2 {
            return Err(self.err(
                "prefix",
                format!("{:?} must be an absolute path without `..`", s.prefix),
            ));
        }
        for k in s.vars.keys() {
            if k == "prefix" || k == "jobs" || k == "destdir" || k.starts_with("src.") {
                return Err(self.err(&format!("vars.{k}"), "reserved name"));
            }
        }
        if s.sources.is_empty() {
            return Err(self.err("[[source]]", "at least one source is needed"));
        }
        let plain = self.check_vars(false, false);
        let mut seen = BTreeMap::new();
        for (i, src) in s.sources.iter().enumerate() {
            let at = format!("[[source]] #{} ({})", i + 1, src.name);
            if src.name.is_empty() {
                return Err(self.err(&format!("[[source]] #{}", i + 1), "name is empty"));
            }
            if seen.insert(src.name.clone(), i).is_some() {
                return Err(self.err(&at, "name listed twice"));
            }
            if let Some(d) = &src.dir {
                let d = expand(d, &plain).map_err(|e| self.err(&format!("{at}: dir"), e))?;
                if !relative_ok(&d) || d.contains('/') {
                    return Err(self.err(
                        &format!("{at}: dir"),
                        format!("{d:?} must be a single directory name"),
                    ));
                }
            }
        }
        if !self.has_source(&s.work) {
            return Err(self.err(
                "work",
                format!(
                    "unknown source {:?} (sources: {})",
                    s.work,
                    self.source_names()
                ),
            ));
        }
        for (i, p) in s.patches.iter().enumerate() {
            let at = format!("[[patch]] #{}", i + 1);
            match (&p.source, &p.path, &p.file) {
                (Some(src), Some(path), None) => {
                    if !self.has_source(src) {
                        return Err(self.err(
                            &format!("{at}: source"),
                            format!("unknown source {src:?} (sources: {})", self.source_names()),
                        ));
                    }
                    if !relative_ok(path) {
                        return Err(self.err(
                            &format!("{at}: path"),
                            format!("{path:?} must be relative, without `..`"),
                        ));
                    }
                }
                (None, None, Some(_)) => {}
                _ => {
                    return Err(self.err(
                        &at,
                        "give either `source` and `path` (a patch inside a source) or `file` (next to the stage file)",
                    ));
                }
            }
            if let Some(t) = &p.target
                && !self.has_source(t)
            {
                return Err(self.err(
                    &format!("{at}: target"),
                    format!("unknown source {t:?} (sources: {})", self.source_names()),
                ));
            }
        }
        for (i, e) in s.edits.iter().enumerate() {
            let at = format!("[[edit]] #{}", i + 1);
            if !relative_ok(&e.file) {
                return Err(self.err(
                    &format!("{at}: file"),
                    format!("{:?} must be relative, without `..`", e.file),
                ));
            }
            if let Some(t) = &e.target
                && !self.has_source(t)
            {
                return Err(self.err(
                    &format!("{at}: target"),
                    format!("unknown source {t:?} (sources: {})", self.source_names()),
                ));
            }
            self.edit_rule(i, &plain)?;
        }
        let with_src = self.check_vars(true, false);
        for (i, a) in s
            .configure
            .command
            .iter()
            .chain(&s.configure.args)
            .enumerate()
        {
            expand(a, &with_src).map_err(|e| self.err(&format!("configure #{}", i + 1), e))?;
        }
        if s.configure.command.is_empty() {
            return Err(self.err("configure.command", "empty (omit it for ./configure)"));
        }
        let all = self.check_vars(true, true);
        for (field, cmds) in [("build", &s.build), ("install", &s.install)] {
            if cmds.is_empty() {
                return Err(self.err(field, "at least one command is needed"));
            }
            for (i, c) in cmds.iter().enumerate() {
                if c.is_empty() {
                    return Err(self.err(&format!("{field} #{}", i + 1), "empty command"));
                }
                for a in c {
                    expand(a, &all).map_err(|e| self.err(&format!("{field} #{}", i + 1), e))?;
                }
            }
        }
        if !s.install.iter().flatten().any(|a| a.contains("destdir")) {
            return Err(self.err(
                "install",
                "no command uses {{ destdir }}: the install would write to the host",
            ));
        }
        if s.output.paths.is_empty() {
            return Err(self.err("output.paths", "empty"));
        }
        for (i, p) in s.output.paths.iter().enumerate() {
            let p =
                expand(p, &plain).map_err(|e| self.err(&format!("output.paths #{}", i + 1), e))?;
            if !p.starts_with('/') || p.contains("..") {
                return Err(self.err(
                    &format!("output.paths #{}", i + 1),
                    format!("{p:?} must be absolute without `..`"),
                ));
            }
        }
        Ok(())
    }

    /// The rule of edit `i` with variables expanded.
    pub fn edit_rule(&self, i: usize, vars: &BTreeMap<String, String>) -> Result<Rule> {
        let e = &self.spec.edits[i];
        let at = format!("[[edit]] #{} ({})", i + 1, e.file);
        let x = |field: &str, s: &str| -> Result<String> {
            expand(s, vars).map_err(|m| self.err(&format!("{at}: {field}"), m))
        };
        match (&e.replace, &e.with, &e.delete_line) {
            (Some(from), Some(to), None) => {
                let from = x("replace", from)?;
                if from.is_empty() {
                    return Err(self.err(&format!("{at}: replace"), "empty"));
                }
                Ok(Rule::Replace {
                    from,
                    to: x("with", to)?,
                })
            }
            (None, None, Some(c)) => {
                let containing = x("delete_line", c)?;
                if containing.is_empty() || containing.contains('\n') {
                    return Err(self.err(
                        &format!("{at}: delete_line"),
                        "must be non-empty and on one line",
                    ));
                }
                Ok(Rule::DeleteLine { containing })
            }
            _ => Err(self.err(&at, "give either `replace` and `with`, or `delete_line`")),
        }
    }

    /// Resolved patches: where each comes from and which source it applies to.
    pub fn patches(&self) -> Vec<(String, PatchFrom, u32, String)> {
        self.spec
            .patches
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let target = p.target.clone().unwrap_or_else(|| self.spec.work.clone());
                let from = match (&p.source, &p.path, &p.file) {
                    (Some(s), Some(path), _) => PatchFrom::Source {
                        source: s.clone(),
                        path: path.clone(),
                    },
                    (_, _, Some(f)) => PatchFrom::Local {
                        file: f.clone(),
                        bytes: self.local_files.get(f).cloned().unwrap_or_default(),
                    },
                    // validate() allows nothing else
                    _ => PatchFrom::Local {
                        file: String::new(),
                        bytes: vec![],
                    },
                };
                let label = match &from {
                    PatchFrom::Source { source, path } => format!("#{} {source}/{path}", i + 1),
                    PatchFrom::Local { file, .. } => format!("#{} {file}", i + 1),
                };
                (label, from, p.strip, target)
            })
            .collect()
    }

    /// A one-line summary for `ezimg stage list`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{}: {} (prefix {}; sources: {}",
            self.spec.name,
            self.spec.description,
            self.spec.prefix,
            self.source_names()
        );
        if !self.spec.patches.is_empty() {
            let _ = write!(s, "; {} patches", self.spec.patches.len());
        }
        if !self.spec.edits.is_empty() {
            let _ = write!(s, "; {} edits", self.spec.edits.len());
        }
        s.push(')');
        s
    }
}
