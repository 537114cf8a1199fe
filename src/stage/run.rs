//! Running a stage: key, cache lookup, unpack, patch, edit, configure, make, install, pack, and
//! the ELF check for the target before the output enters the cache.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::cache::{self, FIXED_MTIME};
use super::spec::{PatchFrom, Rule, Stage, expand};
use super::target::{self as stage_target, Target};
use super::{
    BuildOptions, EditRecord, FORMAT, Input, Manifest, Outcome, OutputRecord, PatchRecord,
};
use crate::digest::sha256_hex;
use crate::keyed_cache::{self, Built};

/// Lines of a failing step's log quoted in the error.
pub const TAIL_LINES: usize = 30;

/// Where the configure, build and install commands run (unpack, patches and edits are plain
/// file work and always happen on the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Builder {
    /// Directly on this machine (Debian 12), with a cleaned environment: fast, but the host's
    /// headers and libraries decide what the output links.
    Host,
    /// In a VM of the target booted from its base image with only the stage's `[build_deps]`
    /// installed and no network: hermetic, and the way to build for another OS.
    Vm,
}

impl Builder {
    /// `host: <os-release PRETTY_NAME>, <first line of cc --version>`; part of the cache key.
    fn host_identity() -> Result<String> {
        let os = fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim().trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| "unknown OS".to_string());
        let out = crate::process::run_stdout(
            Command::new("cc").arg("--version"),
            "running `cc --version` (no C compiler on the host? install build-essential)",
        )?;
        let cc = out.lines().next().unwrap_or("").trim().to_string();
        Ok(format!("host: {os}, {cc}"))
    }
}

#[derive(Serialize)]
struct KeyMaterial<'a> {
    format: &'a str,
    ezimg: &'a str,
    stage: &'a str,
    vars: &'a BTreeMap<String, String>,
    jobs_excluded: bool,
    inputs: &'a [Input],
    builder: &'a str,
}

struct Keyed {
    key: String,
    inputs: Vec<Input>,
    vars: BTreeMap<String, String>,
    builder: String,
    sources: BTreeMap<String, PathBuf>,
    /// The VM builder's base image (built or found when the key is computed: its digest is
    /// part of the key).
    vm_base: Option<super::vm::BuilderBase>,
}

fn source_digest(path: &Path) -> Result<String> {
    if path.is_dir() {
        cache::sha256_tree(path).with_context(|| format!("hashing directory {}", path.display()))
    } else {
        crate::digest::sha256_file(path)
    }
}

/// A build's inputs by digest (stage file, local patches, sources), its variables and the
/// sources' canonical paths: everything of the key but the builder.
struct Inputs {
    inputs: Vec<Input>,
    vars: BTreeMap<String, String>,
    used: BTreeMap<String, PathBuf>,
}

fn inputs_of(
    stage: &Stage,
    sources: &BTreeMap<String, PathBuf>,
    opts: &BuildOptions,
) -> Result<Inputs> {
    let name = &stage.spec.name;
    for k in opts.vars.keys() {
        if !stage.spec.vars.contains_key(k) {
            bail!(
                "stage {name}: --var {k}: the stage has no such variable (vars: {})",
                stage
                    .spec
                    .vars
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let vars = stage.base_vars(&opts.vars);
    let mut inputs = vec![Input {
        kind: "stage-file".into(),
        name: stage.origin.clone(),
        sha256: sha256_hex(stage.text.as_bytes()),
    }];
    for (f, bytes) in &stage.local_files {
        inputs.push(Input {
            kind: "local-patch".into(),
            name: f.clone(),
            sha256: sha256_hex(bytes),
        });
    }
    let mut used = BTreeMap::new();
    let missing: Vec<&str> = stage
        .spec
        .sources
        .iter()
        .filter(|s| !sources.contains_key(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "stage {name} needs source(s) {} with no local path given",
            missing.join(", ")
        );
    }
    for s in &stage.spec.sources {
        let p = &sources[&s.name];
        let p = &fs::canonicalize(p)
            .with_context(|| format!("stage {name}: source {}: {}", s.name, p.display()))?;
        let sha = source_digest(p).with_context(|| format!("stage {name}: source {}", s.name))?;
        inputs.push(Input {
            kind: "source".into(),
            name: s.name.clone(),
            sha256: sha,
        });
        used.insert(s.name.clone(), p.clone());
    }
    Ok(Inputs { inputs, vars, used })
}

fn keyed(stage: &Stage, sources: &BTreeMap<String, PathBuf>, opts: &BuildOptions) -> Result<Keyed> {
    let name = &stage.spec.name;
    let Inputs { inputs, vars, used } = inputs_of(stage, sources, opts)?;
    let (builder, vm_base) = match opts.builder {
        Builder::Host => (Builder::host_identity()?, None),
        Builder::Vm => {
            let base = super::vm::base(stage, opts)?;
            (super::vm::identity(&base), Some(base))
        }
    };
    // The stage file's origin is a label, not content: the key must not change when the same
    // file is read from another place.
    let mut key_inputs = inputs.clone();
    key_inputs[0].name = "stage-file".into();
    let material = KeyMaterial {
        format: FORMAT,
        ezimg: env!("CARGO_PKG_VERSION"),
        stage: name,
        vars: &vars,
        jobs_excluded: true,
        inputs: &key_inputs,
        builder: &builder,
    };
    let json = serde_json::to_vec(&material).context("serializing the cache key material")?;
    Ok(Keyed {
        key: sha256_hex(&json),
        inputs,
        vars,
        builder,
        sources: used,
        vm_base,
    })
}

/// An output in the cache of `stage` built from exactly these inputs by a VM builder for
/// `opts.target` (`ezimg stage build NAME --target T`), found without the builder's image at
/// hand (its key names the image; `build` only knows the target), and checked for the target.
pub fn find_for_target(
    stage: &Stage,
    sources: &BTreeMap<String, PathBuf>,
    opts: &BuildOptions,
) -> Result<Option<(PathBuf, Manifest)>> {
    let want = inputs_of(stage, sources, opts)?;
    let label = |v: &[Input]| -> Vec<Input> {
        let mut v = v.to_vec();
        if let Some(first) = v.first_mut() {
            first.name = "stage-file".into();
        }
        v
    };
    let want_inputs = label(&want.inputs);
    let prefix = format!("vm: {} ", opts.target);
    let dir = cache::stages_dir(&opts.cache_root);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut keys: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    keys.sort();
    let target = Target::load(&opts.target, opts.data.as_deref())?;
    for key in keys {
        let Some((tarball, m)) = cache::lookup(&opts.cache_root, &key)? else {
            continue;
        };
        if m.stage == stage.spec.name
            && m.builder.starts_with(&prefix)
            && m.vars == want.vars
            && label(&m.inputs) == want_inputs
        {
            stage_target::check(&tarball, &target, Some(stage))
                .with_context(|| format!("cached output {}", tarball.display()))?;
            return Ok(Some((tarball, m)));
        }
    }
    Ok(None)
}

/// The cache key of a build without running it: the sha256 of every input (stage file text,
/// local patches, source digests, variables, builder identity).
pub fn cache_key(
    stage: &Stage,
    sources: &BTreeMap<String, PathBuf>,
    opts: &BuildOptions,
) -> Result<String> {
    Ok(keyed(stage, sources, opts)?.key)
}

/// Build `stage` from `sources` (artifact name → archive file or directory), or return the
/// cached output. The entry follows [`crate::keyed_cache`]: a lookup, a lock per key, the build
/// in a work directory whose path is a function of the key (`<work root>/ezimg-stage-<name>-
/// <key16>`, so compiled-in paths repeat), the tarball moved into place and the manifest last.
/// On failure nothing is cached, the work directory is removed (unless `keep_work`), and the
/// error names the step and quotes the tail of its log.
pub fn build(
    stage: &Stage,
    sources: &BTreeMap<String, PathBuf>,
    opts: &BuildOptions,
) -> Result<Outcome> {
    let t0 = Instant::now();
    let name = &stage.spec.name;
    // The target's list is read first: an unknown target or runtime package fails before any
    // compile.
    let target = Target::load(&opts.target, opts.data.as_deref())?;
    target.allowed_for(Some(stage))?;
    let k = keyed(stage, sources, opts)?;
    let work_root = match &opts.work_root {
        Some(p) => p.clone(),
        None => std::env::temp_dir(),
    };
    fs::create_dir_all(&work_root).with_context(|| format!("creating {}", work_root.display()))?;
    let tag = format!("ezimg-stage-{name}-{}", &k.key[..16]);
    let sdir = cache::stages_dir(&opts.cache_root);
    let what = format!("build of stage {name} with the same inputs");
    let slot = keyed_cache::Slot {
        dir: &sdir,
        name: &tag,
        what: &what,
        rebuild: opts.rebuild,
        quiet: opts.quiet,
        work: keyed_cache::Work::Fixed {
            path: work_root.join(&tag),
            keep: opts.keep_work,
        },
    };
    // The key does not name the target: a cached output is checked for this one.
    let lookup = || -> Result<Option<(PathBuf, Manifest)>> {
        let Some((tarball, manifest)) = cache::lookup(&opts.cache_root, &k.key)? else {
            return Ok(None);
        };
        stage_target::check(&tarball, &target, Some(stage))
            .with_context(|| format!("cached output {}", tarball.display()))?;
        Ok(Some((tarball, manifest)))
    };
    let got = keyed_cache::get_or_build(&slot, lookup, |dir| {
        if !opts.quiet {
            eprintln!(
                "stage {name}: cache miss {}; building on {}",
                k.key, k.builder
            );
        }
        Run {
            stage,
            opts,
            k: &k,
            target: &target,
            dir,
            t0,
        }
        .run()
    })?;
    if got.cached && !opts.quiet {
        eprintln!("stage {name}: cache hit {}", k.key);
    }
    let (tarball, manifest) = got.value;
    Ok(Outcome {
        cached: got.cached,
        key: k.key.clone(),
        tarball,
        manifest_path: cache::manifest_path(&opts.cache_root, &k.key),
        manifest,
        elapsed: t0.elapsed(),
    })
}

/// The sources as the build sees them: where each unpacked, what was patched and edited.
struct Prepared {
    dirs: BTreeMap<String, String>,
    /// The stage's variables plus `src.<name>`.
    vars: BTreeMap<String, String>,
    patches: Vec<PatchRecord>,
    edits: Vec<EditRecord>,
}

/// One command of configure, build or install.
pub struct Step {
    /// `configure`, `build`, `install #2`, ...: names the log and the error.
    pub name: String,
    pub argv: Vec<String>,
    /// Relative to the work directory.
    pub cwd: PathBuf,
}

impl Step {
    /// The log file's name: the step's name with anything but ASCII alphanumerics as `_`.
    pub fn slug(name: &str) -> String {
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    fn label(&self) -> String {
        if self.name == "configure" {
            "configure".into()
        } else {
            format!("{}: {}", self.name, self.argv.join(" "))
        }
    }
}

struct Run<'a> {
    stage: &'a Stage,
    opts: &'a BuildOptions,
    k: &'a Keyed,
    target: &'a Target,
    dir: &'a Path,
    t0: Instant,
}

impl Run<'_> {
    fn say(&self, msg: &str) {
        if !self.opts.quiet {
            eprintln!(
                "stage {}: [{:>6.1}s] {msg}",
                self.stage.spec.name,
                self.t0.elapsed().as_secs_f64()
            );
        }
    }

    fn src_root(&self) -> PathBuf {
        self.dir.join("src")
    }

    /// Where the work directory is for the commands: compiled-in paths (debug info, `nginx -V`)
    /// name it, so it is a function of the key on every builder.
    fn exec_root(&self) -> PathBuf {
        match self.opts.builder {
            Builder::Host => self.dir.to_path_buf(),
            Builder::Vm => super::vm::guest_root(self.dir),
        }
    }

    fn run(&self) -> Result<Built<(PathBuf, Manifest)>> {
        for d in ["src", "unpack", "staging", "logs", "tmp", "home"] {
            let p = self.dir.join(d);
            fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        let prepared = self.prepare()?;
        let steps = self.steps(&prepared)?;
        match (self.opts.builder, &self.k.vm_base) {
            (Builder::Vm, Some(base)) => super::vm::compile(
                &super::vm::Job {
                    stage: &self.stage.spec.name,
                    base,
                    dir: self.dir,
                    steps: &steps,
                    jobs: self.opts.jobs,
                    timeout: self.opts.vm_timeout,
                    quiet: self.opts.quiet,
                },
                TAIL_LINES,
            )?,
            _ => {
                for st in &steps {
                    self.say(&st.label());
                    self.exec(&st.name, &st.argv, &self.dir.join(&st.cwd))?;
                }
            }
        }
        self.store(prepared, steps)
    }

    /// Unpack the sources, apply the patches and edits (on the host: file work, the same for
    /// every builder).
    fn prepare(&self) -> Result<Prepared> {
        let s = &self.stage.spec;
        let name = &s.name;
        let mut dirs: BTreeMap<String, String> = BTreeMap::new();
        for src in &s.sources {
            let path = &self.k.sources[&src.name];
            let want = src
                .dir
                .as_ref()
                .map(|d| expand(d, &self.k.vars))
                .transpose()
                .map_err(|e| {
                    anyhow::anyhow!("{}: [[source]] {}: dir: {e}", self.stage.origin, src.name)
                })?;
            self.say(&format!("unpack {} ({})", src.name, path.display()));
            let d = self.unpack(&src.name, path, want.as_deref())?;
            if let Some((other, _)) = dirs.iter().find(|(_, v)| **v == d) {
                bail!(
                    "stage {name}: sources {other} and {} both unpack to {d}/",
                    src.name
                );
            }
            dirs.insert(src.name.clone(), d);
        }
        let mut vars = self.k.vars.clone();
        for (n, d) in &dirs {
            let rel = if *n == s.work {
                ".".to_string()
            } else {
                format!("../{d}")
            };
            vars.insert(format!("src.{n}"), rel);
        }
        let patches = self.patch(&dirs)?;
        let edits = self.edit(&dirs)?;
        Ok(Prepared {
            dirs,
            vars,
            patches,
            edits,
        })
    }

    fn patch(&self, dirs: &BTreeMap<String, String>) -> Result<Vec<PatchRecord>> {
        let name = &self.stage.spec.name;
        let mut patches = Vec::new();
        for (label, from, strip, target) in self.stage.patches() {
            let step = format!("patch {label}");
            self.say(&step);
            let file = match &from {
                PatchFrom::Source { source, path } => {
                    let p = self.src_root().join(&dirs[source]).join(path);
                    if !p.is_file() {
                        bail!(
                            "stage {name}: step `{step}`: {path} not found in source {source} ({}/)",
                            dirs[source]
                        );
                    }
                    p
                }
                PatchFrom::Local { bytes, .. } => {
                    let p = self
                        .dir
                        .join("tmp")
                        .join(format!("local-{}.patch", patches.len() + 1));
                    fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
                    p
                }
            };
            let bytes = fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let argv: Vec<String> = vec![
                "patch".into(),
                format!("-p{strip}"),
                "--batch".into(),
                "--forward".into(),
                "--no-backup-if-mismatch".into(),
                "-i".into(),
                file.display().to_string(),
            ];
            self.exec(&step, &argv, &self.src_root().join(&dirs[&target]))?;
            patches.push(PatchRecord {
                patch: label.clone(),
                sha256: sha256_hex(&bytes),
                target: target.clone(),
            });
        }
        Ok(patches)
    }

    fn edit(&self, dirs: &BTreeMap<String, String>) -> Result<Vec<EditRecord>> {
        let s = &self.stage.spec;
        let mut edits = Vec::new();
        for (i, e) in s.edits.iter().enumerate() {
            let rule = self.stage.edit_rule(i, &self.k.vars)?;
            let target = e.target.as_deref().unwrap_or(&s.work);
            let file = self.src_root().join(&dirs[target]).join(&e.file);
            let n = apply_edit(&file, &rule).with_context(|| {
                format!(
                    "stage {}: step `edit #{}` ({}: [[edit]] #{}): {}: {rule}",
                    s.name,
                    i + 1,
                    self.stage.origin,
                    i + 1,
                    e.file
                )
            })?;
            edits.push(EditRecord {
                file: e.file.clone(),
                rule,
                matches: n,
            });
        }
        if !edits.is_empty() {
            self.say(&format!("edit: {} rules applied", edits.len()));
        }
        Ok(edits)
    }

    /// configure, build, install: the commands with their variables filled in, for the
    /// builder's work directory.
    fn steps(&self, p: &Prepared) -> Result<Vec<Step>> {
        let s = &self.stage.spec;
        let x = |a: &String, v: &BTreeMap<String, String>| {
            expand(a, v).map_err(|e| anyhow::anyhow!("{}: {e}", self.stage.origin))
        };
        let cwd = PathBuf::from("src").join(&p.dirs[&s.work]);
        let configure: Vec<String> = s
            .configure
            .command
            .iter()
            .chain(&s.configure.args)
            .map(|a| x(a, &p.vars))
            .collect::<Result<_>>()?;
        let mut steps = vec![Step {
            name: "configure".into(),
            argv: configure,
            cwd: cwd.clone(),
        }];
        let mut bvars = p.vars.clone();
        bvars.insert("jobs".into(), self.opts.jobs.max(1).to_string());
        bvars.insert(
            "destdir".into(),
            self.exec_root().join("staging").display().to_string(),
        );
        for (field, cmds) in [("build", &s.build), ("install", &s.install)] {
            for (i, c) in cmds.iter().enumerate() {
                let argv: Vec<String> = c.iter().map(|a| x(a, &bvars)).collect::<Result<_>>()?;
                let name = if cmds.len() > 1 {
                    format!("{field} #{}", i + 1)
                } else {
                    field.to_string()
                };
                steps.push(Step {
                    name,
                    argv,
                    cwd: cwd.clone(),
                });
            }
        }
        Ok(steps)
    }

    /// Pack what the install wrote, check it for the target, and store it in the cache
    /// (tarball first, manifest last).
    fn store(&self, p: Prepared, steps: Vec<Step>) -> Result<Built<(PathBuf, Manifest)>> {
        let s = &self.stage.spec;
        let name = &s.name;
        let staging = self.dir.join("staging");
        let out_paths: Vec<String> = s
            .output
            .paths
            .iter()
            .map(|a| {
                expand(a, &self.k.vars).map_err(|e| anyhow::anyhow!("{}: {e}", self.stage.origin))
            })
            .collect::<Result<_>>()?;
        self.say("pack");
        let packed_path = self.dir.join("output.tar.gz");
        let file = fs::File::create(&packed_path)
            .with_context(|| format!("creating {}", packed_path.display()))?;
        let packed = cache::pack(&staging, &out_paths, std::io::BufWriter::new(&file))
            .with_context(|| format!("stage {name}: step `pack`"))?;
        file.sync_all().context("syncing the stage tarball")?;
        // Only an output that runs on its target enters the cache.
        self.say(&format!("check ELF files for {}", self.target.name));
        stage_target::check(&packed_path, self.target, Some(self.stage))
            .with_context(|| format!("stage {name}: step `check`; nothing cached"))?;
        let key = &self.k.key;
        let configure = steps
            .into_iter()
            .next()
            .map(|st| st.argv)
            .unwrap_or_default();
        let manifest = Manifest {
            format: FORMAT.into(),
            stage: name.clone(),
            description: s.description.clone(),
            key: key.clone(),
            builder: self.k.builder.clone(),
            prefix: s.prefix.clone(),
            vars: self.k.vars.clone(),
            inputs: self.k.inputs.clone(),
            sources: p.dirs,
            configure,
            build: s.build.clone(),
            install: s.install.clone(),
            patches: p.patches,
            edits: p.edits,
            output: OutputRecord {
                file: format!("{key}.tar.gz"),
                sha256: packed.sha256,
                size: packed.size,
                entries: packed.entries,
                paths: out_paths,
            },
            dropped: packed.dropped,
            build_seconds: (self.t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        };
        let tpath = cache::tarball_path(&self.opts.cache_root, key);
        let mpath = cache::manifest_path(&self.opts.cache_root, key);
        self.say(&format!(
            "built {} ({} entries, {} bytes)",
            tpath.display(),
            manifest.output.entries,
            manifest.output.size
        ));
        Ok(Built {
            files: vec![(packed_path, tpath.clone())],
            manifest: mpath,
            manifest_bytes: serde_json::to_vec_pretty(&manifest)
                .context("serializing the manifest")?,
            value: (tpath, manifest),
        })
    }

    /// Unpack one source into `src/`, returning the directory name it got there.
    fn unpack(&self, name: &str, path: &Path, want: Option<&str>) -> Result<String> {
        let at = format!("stage {}: step `unpack {name}`", self.stage.spec.name);
        if path.is_dir() {
            let d = match want {
                Some(d) => d.to_string(),
                None => path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{at}: source directory has no usable name"))?
                    .to_string(),
            };
            let argv = vec![
                "cp".to_string(),
                "-R".into(),
                "--preserve=mode".into(),
                format!("{}/.", path.display()),
                self.src_root().join(&d).display().to_string(),
            ];
            self.exec(&format!("unpack {name}"), &argv, self.dir)?;
            return Ok(d);
        }
        let scratch = self.dir.join("unpack").join(name);
        fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let fmt = sniff(path).with_context(|| at.clone())?;
        let p = path.display().to_string();
        let argv: Vec<String> = match fmt {
            "zip" => vec!["unzip".into(), "-q".into(), p, "-d".into(), ".".into()],
            flag => {
                let mut v = vec!["tar".to_string(), "-x".into(), "--no-same-owner".into()];
                if !flag.is_empty() {
                    v.push(flag.into());
                }
                v.extend(["-f".into(), p]);
                v
            }
        };
        self.exec(&format!("unpack {name}"), &argv, &scratch)?;
        let mut top: Vec<String> = fs::read_dir(&scratch)
            .with_context(|| format!("reading {}", scratch.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", scratch.display()))?;
        top.sort();
        let found = match top.as_slice() {
            [one] if scratch.join(one).is_dir() => one.clone(),
            _ => bail!(
                "{at}: {} does not unpack to a single directory (found: {})",
                path.display(),
                if top.is_empty() {
                    "nothing".into()
                } else {
                    top.join(", ")
                }
            ),
        };
        if let Some(w) = want
            && w != found
        {
            bail!(
                "{at}: {} unpacks to {found}/, the stage expects {w}/ (wrong version? check [vars] and [[source]] dir)",
                path.display()
            );
        }
        let to = self.src_root().join(&found);
        fs::rename(scratch.join(&found), &to)
            .with_context(|| format!("moving {found} into {}", to.display()))?;
        Ok(found)
    }

    /// Run one command of a step, output to `logs/<step>.log`; on failure the error names the
    /// step and quotes the log's tail.
    fn exec(&self, step: &str, argv: &[String], cwd: &Path) -> Result<()> {
        let name = &self.stage.spec.name;
        let slug = Step::slug(step);
        let log_path = self.dir.join("logs").join(format!("{slug}.log"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .with_context(|| format!("opening {}", log_path.display()))?;
        let (prog, args) = argv
            .split_first()
            .with_context(|| format!("stage {name}: step `{step}`: empty command"))?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH")
                    .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()),
            )
            .env("HOME", self.dir.join("home"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .env("TZ", "UTC")
            .env("SOURCE_DATE_EPOCH", FIXED_MTIME.to_string());
        let status = cmd.status().with_context(|| {
            format!(
                "stage {name}: step `{step}`: running {prog} (in {})",
                cwd.display()
            )
        })?;
        if !status.success() {
            bail!(
                "stage {name}: step `{step}` failed ({status}): {}\n--- last {TAIL_LINES} lines of {step} log ---\n{}",
                argv.join(" "),
                crate::process::tail_file(&log_path, TAIL_LINES)
            );
        }
        Ok(())
    }
}

/// The archive format by magic bytes (artifact cache files have no extension): a tar flag, or
/// `zip`.
fn sniff(path: &Path) -> Result<&'static str> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let r = f
            .read(&mut head[n..])
            .with_context(|| format!("reading {}", path.display()))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let h = &head[..n];
    Ok(if h.starts_with(&[0x1f, 0x8b]) {
        "-z"
    } else if h.starts_with(b"BZh") {
        "-j"
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "-J"
    } else if h.starts_with(b"PK\x03\x04") {
        "zip"
    } else if n >= 262 && &h[257..262] == b"ustar" {
        ""
    } else {
        bail!(
            "{}: not a .tar.gz, .tar.bz2, .tar.xz, .tar or .zip archive",
            path.display()
        )
    })
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    if needle.is_empty() || hay.len() < needle.len() {
        return v;
    }
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if &hay[i..i + needle.len()] == needle {
            v.push(i);
            i += needle.len();
        } else {
            i += 1;
        }
    }
    v
}

/// Apply one literal edit to `file`; returns the number of matches (0 is an error).
pub fn apply_edit(file: &Path, rule: &Rule) -> Result<usize> {
    let data = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (out, n) = match rule {
        Rule::Replace { from, to } => {
            let hits = find_all(&data, from.as_bytes());
            let mut out = Vec::with_capacity(data.len());
            let mut last = 0;
            for &h in &hits {
                out.extend_from_slice(&data[last..h]);
                out.extend_from_slice(to.as_bytes());
                last = h + from.len();
            }
            out.extend_from_slice(&data[last..]);
            (out, hits.len())
        }
        Rule::DeleteLine { containing } => {
            let mut out = Vec::with_capacity(data.len());
            let mut n = 0;
            for line in data.split_inclusive(|b| *b == b'\n') {
                if find_all(line, containing.as_bytes()).is_empty() {
                    out.extend_from_slice(line);
                } else {
                    n += 1;
                }
            }
            (out, n)
        }
    };
    if n == 0 {
        bail!("matched nothing in {}", file.display());
    }
    fs::write(file, out).with_context(|| format!("writing {}", file.display()))?;
    Ok(n)
}
