//! One function per subcommand: load inputs, call the modules, print.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};

use crate::artifact::mirror::Mirror;
use crate::artifact::{Cache, FetchOptions, Lock};
use crate::bundle::{self, ArtifactPin};
use crate::cli::{
    BuildArgs, CheckArgs, CompletionsArgs, Format, Global, InitArgs, LockArg, PlanArgs, RotateWhat,
    SecretsArgs, SecretsCommand, ServeArgs,
};
use crate::cluster::Os;
use crate::cluster::{self, Loaded, Severity};
use crate::data::DataTree;
use crate::lint::BashSyntax;
use crate::outdir::{Current, Kind, Staging};
use crate::pins;
use crate::plan::{self, Catalog, NodePlan};
use crate::produce::{self, Job, Piece};
use crate::secrets::{self, Store};

/// Everything a command works from, loaded and validated once.
pub struct Inputs {
    pub tree: DataTree,
    pub loaded: Loaded,
    /// `--data`, where stages and the lock may also live.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Inputs {
    pub fn load(g: &Global) -> Result<Self> {
        let tree = DataTree::load(g.data.as_deref())?;
        if g.data.is_some() && !tree.embedded_tops.is_empty() {
            eprintln!(
                "note: {} has no {}: the embedded one(s) are used",
                tree.origin,
                tree.embedded_tops
                    .iter()
                    .map(|t| format!("{t}/"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Inputs {
            tree,
            loaded: cluster::load(g.cluster.as_deref())?,
            data_dir: g.data.clone(),
        })
    }
}

/// Validate; print warnings to stderr; fail on errors.
fn validated<'a>(inputs: &'a Inputs, quiet_warnings: bool) -> Result<Catalog<'a>> {
    let catalog = Catalog::load(&inputs.tree)?;
    let diags = cluster::validate(&inputs.loaded, &catalog.role_params());
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    for d in &diags {
        if d.severity == Severity::Error || !quiet_warnings {
            eprintln!("{d}");
        }
    }
    if errors > 0 {
        anyhow::bail!(
            "{}: {errors} error(s) in the cluster file",
            inputs.loaded.origin()
        );
    }
    Ok(catalog)
}

/// The lock by the one rule (`Lock::resolve`), said on stderr.
fn resolve_lock(g: &Global, a: &LockArg) -> Result<Lock> {
    let (lock, why) = Lock::resolve(a.lock.as_deref(), g.data.as_deref(), g.cluster.as_deref())?;
    eprintln!("lock: {} ({why})", lock.describe());
    Ok(lock)
}

/// The cluster file `init` writes: the default without its one secret (the seed's VRRP
/// password), since a cluster file is meant to be committed; the secret store makes a random one.
pub fn init_text() -> String {
    let lines: Vec<&str> = cluster::DEFAULT_TOML.lines().collect();
    let Some(at) = lines.iter().position(|l| l.starts_with("auth_pass = ")) else {
        return cluster::DEFAULT_TOML.to_string();
    };
    // The comment above the line goes with it.
    let mut from = at;
    while from > 0 && lines[from - 1].starts_with('#') {
        from -= 1;
    }
    let mut out: Vec<&str> = lines[..from].to_vec();
    out.extend([
        "# VRRP PASS authentication is a secret, so it is not in this file: the secret store",
        "# (`ezimg secrets`) makes a random one when the first build creates it, and",
        "# `ezimg secrets rotate vrrp-password --value V` sets your own (at most 8 characters).",
    ]);
    out.extend(&lines[at + 1..]);
    let mut text = out.join("\n");
    text.push('\n');
    text
}

pub fn init(a: &InitArgs) -> Result<()> {
    let text = init_text();
    if a.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing to standard output")?;
        return Ok(());
    }
    // Only the file: a mistyped folder is an error, not a new tree of folders.
    if let Some(parent) = a.out.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        anyhow::bail!(
            "{}: folder {} does not exist (init creates no folders)",
            a.out.display(),
            parent.display()
        );
    }
    if a.out.exists() && !a.force {
        anyhow::bail!(
            "{} already exists (use --force to overwrite)",
            a.out.display()
        );
    }
    bundle::write_file(&a.out, text.as_bytes())?;
    ignore_store(&a.out)?;
    eprintln!(
        "wrote {}: edit it, then run `ezimg check -c {}`",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

/// Keep the secret store that will sit beside `cluster_file` out of git: add its line to the
/// `.gitignore` of that folder unless it is there.
fn ignore_store(cluster_file: &std::path::Path) -> Result<()> {
    let loaded = cluster::Loaded {
        cluster: cluster::parse(cluster::DEFAULT_TOML, "<embedded default cluster>")?,
        path: Some(cluster_file.to_path_buf()),
        text: String::new(),
    };
    let store = secrets::locate(None, &loaded);
    let line = secrets::gitignore_line(&store);
    let gi = cluster_file.with_file_name(".gitignore");
    let old = match std::fs::read_to_string(&gi) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", gi.display())),
    };
    if old.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let mut new = old;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&format!(
        "# the cluster's secret store (ezimg secrets): never commit it\n{line}\n"
    ));
    std::fs::write(&gi, new).with_context(|| format!("writing {}", gi.display()))?;
    eprintln!("added {line} to {}", gi.display());
    Ok(())
}

/// The store `build` would use, to render with: the real one when it exists (so its problems
/// show now), else a throwaway one made the same way (the first build makes the real one).
fn check_store(g: &Global, loaded: &Loaded) -> Result<(Store, Option<tempfile::TempDir>)> {
    let dir = secrets::locate(g.secrets.as_deref(), loaded);
    if dir.exists() {
        return Ok((secrets::load(&dir, loaded)?, None));
    }
    eprintln!(
        "note: no secret store at {} yet: the first `ezimg build` creates it (checked with a \
         throwaway one)",
        dir.display()
    );
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let (store, _) = secrets::open(
        &tmp.path().join("store"),
        loaded,
        secrets::IfMissing::Create,
    )?;
    Ok((store, Some(tmp)))
}

pub fn check(g: &Global, a: &CheckArgs) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, false)?;
    let c = &inputs.loaded.cluster;
    let lock = resolve_lock(g, &a.lock)?;
    let (store, _tmp) = check_store(g, &inputs.loaded)?;
    let cache = Cache::resolve(None)?;
    let formats = [Format::Bundle, Format::Kickstart, Format::CloudInit];
    let job = Job {
        loaded: &inputs.loaded,
        tree: &inputs.tree,
        catalog: &catalog,
        store: &store,
        lock: &lock,
        cache: &cache,
        data_dir: g.data.as_deref(),
        formats: &formats,
        bundle_base: None,
        artifacts_from: None,
        fetch: None,
    };
    // Render every output of every node as `build --all` does, and look at nothing but errors.
    let mut lint = BashSyntax::default();
    let mut skipped = 0usize;
    let mut applied_layers = std::collections::BTreeSet::new();
    let mut files = 0usize;
    let mut missing = BTreeMap::new();
    for role in c.roles_in_use() {
        let r = produce::role(&job, &role, None, &mut lint, &mut |_p: Piece| {
            files += 1;
            Ok(())
        })
        .with_context(|| format!("role {role}"))?;
        for p in &r.plans {
            skipped += p.layers.iter().filter(|l| l.skipped.is_some()).count();
            applied_layers.extend(p.applied().map(|l| l.name.clone()));
        }
        for key in r.missing {
            missing
                .entry(key)
                .or_insert_with(Vec::new)
                .push(role.clone());
        }
    }
    lint.finish()?;
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| writeln!(out, "{line}").context("writing to standard output");
    say(format!("{}: ok", inputs.loaded.origin()))?;
    say(format!(
        "  cluster {} for {}: {} nodes, VIP {} ({} VRRP, router id {})",
        c.name,
        c.os,
        c.nodes.len(),
        c.vrrp.vip,
        match c.vrrp.mode {
            cluster::VrrpMode::Multicast => "multicast",
            cluster::VrrpMode::Unicast => "unicast",
        },
        c.vrrp.router_id
    ))?;
    say(format!(
        "  networks: nodes {} via {}, services {}, pods {} (disjoint)",
        c.network.cidr, c.network.gateway, c.network.service_cidr, c.network.pod_cidr
    ))?;
    for role in c.roles_in_use() {
        let r = catalog.role(&role)?;
        let hosts: Vec<&str> = c.nodes_of(&role).map(|n| n.hostname.as_str()).collect();
        say(format!(
            "  role {role}: {} ({} layers), {} node(s): {}",
            r.description,
            r.layers.len(),
            hosts.len(),
            abbreviate(&hosts)
        ))?;
    }
    say(format!(
        "  data: {} ({} layers); {skipped} layer/node pairs skipped (see `ezimg plan`)",
        inputs.tree.origin,
        catalog.layers.len()
    ))?;
    say(format!(
        "  rendered {files} output files (bundles, kickstart, cloud-init seeds) of every node; \
         step and bootstrap scripts pass bash -n"
    ))?;
    say(format!("  lock: {}", lock.describe()))?;
    if !missing.is_empty() {
        let names: Vec<&str> = missing.keys().map(|(n, _)| n.as_str()).collect();
        say(format!(
            "  {} artifact(s) not at hand: {} (`build` lists why and refuses without --fetch \
             or --allow-incomplete)",
            names.len(),
            names.join(", ")
        ))?;
    }
    // Seed flags a layer leaves out on purpose: said here so no departure is silent.
    for name in &applied_layers {
        let Some(layer) = catalog.layers.get(name) else {
            continue;
        };
        for d in &layer.manifest.dropped_flags {
            let seed = if d.seed.is_empty() {
                String::new()
            } else {
                format!(" (seed {})", d.seed)
            };
            say(format!(
                "  seed flag left out by layer {name}: {} {}{seed}: {}",
                d.component, d.flag, d.reason
            ))?;
        }
    }
    Ok(())
}

/// `a, b, c` for a few names; `a, b, … (N more), z` for many, so 300 nodes stay one short line.
fn abbreviate(names: &[&str]) -> String {
    const SHOWN: usize = 6;
    if names.len() <= SHOWN {
        return names.join(", ");
    }
    format!(
        "{}, … ({} more), {}",
        names[..SHOWN - 1].join(", "),
        names.len() - SHOWN,
        names[names.len() - 1]
    )
}

fn print_plan_text(p: &NodePlan, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "node {} (role {}, {}, {})",
        p.hostname, p.role, p.os, p.ip
    )?;
    if p.params.as_object().is_some_and(|m| !m.is_empty()) {
        writeln!(out, "  params: {}", p.params)?;
    }
    for l in &p.layers {
        match &l.skipped {
            Some(why) => writeln!(out, "  - {}: SKIPPED, {why}", l.name)?,
            None => {
                let seed = if l.seed.is_empty() {
                    String::new()
                } else {
                    format!(" [seed {}]", l.seed)
                };
                writeln!(out, "  + {}: {}{seed}", l.name, l.description)?;
                for f in &l.files {
                    let secrets = if f.secrets.is_empty() {
                        String::new()
                    } else {
                        format!(" (secrets filled on the node: {})", f.secrets.join(", "))
                    };
                    writeln!(
                        out,
                        "      file   {} {} sha256:{}{secrets}",
                        f.dest, f.mode, f.sha256
                    )?;
                }
                for u in &l.units {
                    let en = if u.enable { "enabled" } else { "installed" };
                    writeln!(out, "      unit   {} ({en})", u.name)?;
                }
                for s in &l.scripts {
                    writeln!(out, "      script {} sha256:{}", s.src, s.sha256)?;
                }
                for a in &l.artifacts {
                    writeln!(out, "      needs  {a}")?;
                }
            }
        }
    }
    Ok(())
}

pub fn plan(g: &Global, a: &PlanArgs) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, true)?;
    let nodes = plan::select_nodes(&inputs.loaded.cluster, a.role.as_deref(), a.node.as_deref())?;
    let lock = resolve_lock(g, &a.lock)?;
    let mut plans = nodes
        .iter()
        .map(|n| plan::plan_node(&catalog, &inputs.loaded, n))
        .collect::<Result<Vec<_>>>()?;
    for p in &mut plans {
        p.lock = Some(lock.describe());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &plans).context("writing the plan")?;
        writeln!(out).context("writing the plan")?;
    } else {
        for p in &plans {
            print_plan_text(p, &mut out).context("writing the plan")?;
        }
    }
    Ok(())
}

/// Pins of every artifact any layer names, without fetching or compiling anything: what a
/// bundle built now would list.
pub fn artifact_pins(catalog: &Catalog, lock: &Lock) -> Result<BTreeMap<String, ArtifactPin>> {
    let mut names: Vec<String> = catalog
        .layers
        .values()
        .flat_map(|l| l.manifest.artifacts.iter().map(|a| a.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    let cache = Cache::resolve(None)?;
    Ok(pins::resolve(lock, &cache, None, Os::Debian12, &names, None)?.pins)
}

/// Secrets a node's files use, with their values from the store: a node gets exactly the
/// secrets its own files name (a worker never receives a CA key).
pub fn node_secrets(store: &Store, p: &NodePlan) -> Result<BTreeMap<String, String>> {
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

/// Open the cluster's store for a build, creating it on the first build (said loudly).
pub fn build_store(g: &Global, loaded: &Loaded) -> Result<Store> {
    let dir = secrets::locate(g.secrets.as_deref(), loaded);
    let (store, created) = secrets::open(&dir, loaded, secrets::IfMissing::Create)?;
    if created {
        eprintln!(
            "created secret store {} (cluster CA, front-proxy and etcd CAs, service-account key, \
             bootstrap token, VRRP password): back it up and keep it out of version control; \
             every later build of this cluster needs it",
            dir.display()
        );
    }
    Ok(store)
}

pub fn secrets(g: &Global, a: &SecretsArgs) -> Result<()> {
    let loaded = cluster::load(g.cluster.as_deref())?;
    let dir = secrets::locate(g.secrets.as_deref(), &loaded);
    match &a.command {
        SecretsCommand::Init => {
            if dir.exists() {
                anyhow::bail!(
                    "{} already exists: a cluster's CA is made once (`ezimg secrets rotate` \
                     replaces the token or the VRRP password)",
                    dir.display()
                );
            }
            secrets::create(&dir, &loaded)?;
            secrets::load(&dir, &loaded)?;
            println!("created secret store {}", dir.display());
            println!(
                "  back it up; keep it out of version control ({})",
                secrets::gitignore_line(&dir)
            );
        }
        SecretsCommand::Show => {
            let store = secrets::load(&dir, &loaded)?;
            println!(
                "secret store {} (cluster {})",
                dir.display(),
                loaded.cluster.name
            );
            println!("  cluster CA public key: {}", store.ca_cert_hash());
            for (name, src) in secrets::SECRETS {
                let where_ = match src {
                    secrets::Source::File(f) => dir.join(f).display().to_string(),
                    secrets::Source::CaCertHash => "derived from pki/ca.key".into(),
                };
                println!("  {name:<24} {where_}");
            }
        }
        SecretsCommand::Rotate(r) => {
            let store = secrets::load(&dir, &loaded)?;
            let what = match r.what {
                RotateWhat::Token => secrets::Rotate::Token,
                RotateWhat::VrrpPassword => secrets::Rotate::VrrpPassword,
            };
            secrets::rotate(&store, what, r.value.as_deref())?;
            secrets::load(&dir, &loaded)?;
            match what {
                secrets::Rotate::Token => println!(
                    "new bootstrap token in {}: rebuild the seeds/kickstarts of nodes that have \
                     not joined yet; a running cluster learns it with \
                     `kubeadm token create \"$(cat {})\" --ttl 0` on a master (joined nodes are \
                     unaffected)",
                    dir.join("bootstrap-token").display(),
                    dir.join("bootstrap-token").display()
                ),
                secrets::Rotate::VrrpPassword => println!(
                    "new VRRP password in {}: rebuild the slb seeds/kickstarts and re-apply them \
                     on every slb node together (peers with different passwords ignore each other)",
                    dir.join("vrrp-auth-pass").display()
                ),
            }
        }
    }
    Ok(())
}

/// A qcow2 bake `build` leaves for after rendering: bakes of several roles run side by side.
struct PendingBake {
    role: String,
    bundle: Vec<u8>,
    plans: Vec<NodePlan>,
    rel: String,
    dest: std::path::PathBuf,
}

/// What `build` was asked for: the roles, and one node of them or all.
fn targets<'a>(
    c: &'a cluster::Cluster,
    catalog: &Catalog,
    a: &'a BuildArgs,
) -> Result<(Vec<String>, Option<&'a str>)> {
    if a.all {
        return Ok((c.roles_in_use(), None));
    }
    if let Some(n) = &a.node {
        let node = plan::select_nodes(c, a.role.as_deref(), Some(n))?[0];
        return Ok((vec![node.role.clone()], Some(n.as_str())));
    }
    let r = a.role.as_deref().context(
        "say what to build: --role ROLE (its nodes), --node HOSTNAME (one node) or --all",
    )?;
    catalog.role(r)?;
    plan::select_nodes(c, Some(r), None)?;
    Ok((vec![r.to_string()], None))
}

pub fn build(g: &Global, a: &BuildArgs) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, true)?;
    let c = &inputs.loaded.cluster;
    let (roles, only) = targets(c, &catalog, a)?;
    let lock = resolve_lock(g, &a.lock)?;
    // --out first: a build it refuses creates no secret store.
    let mut staging = Staging::new(&a.out, &c.name)?;
    let store = build_store(g, &inputs.loaded)?;
    let cache = Cache::resolve(None)?;
    let fetch = if a.fetch {
        let mut o = FetchOptions::new(cache.clone());
        o.mirrors = a
            .mirror
            .iter()
            .map(|m| m.parse())
            .collect::<Result<Vec<Mirror>>>()?;
        Some(o)
    } else {
        None
    };
    let job = Job {
        loaded: &inputs.loaded,
        tree: &inputs.tree,
        catalog: &catalog,
        store: &store,
        lock: &lock,
        cache: &cache,
        data_dir: g.data.as_deref(),
        formats: &a.format,
        bundle_base: a
            .bundle_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string()),
        artifacts_from: a.artifacts_from.clone(),
        fetch: fetch.as_ref(),
    };
    let mut lint = BashSyntax::default();
    let mut bakes = Vec::new();
    let mut incomplete = BTreeMap::new();
    let mut built = Vec::new();
    if c.os == Os::Debian12 && a.format.contains(&Format::Kickstart) {
        eprintln!(
            "note: no kickstart for debian12 (kickstart is for el7/el9); use the cloud-init seed"
        );
    }
    for role in &roles {
        // This build answers for the formats it was asked for, for the nodes it renders: what
        // it no longer makes there (a kickstart once the OS is debian12) goes.
        for n in c
            .nodes_of(role)
            .filter(|n| only.is_none_or(|o| o == n.hostname))
        {
            for f in &a.format {
                if let Some(owner) = produce::node_owner(role, &n.hostname, *f) {
                    staging.responsible_for(owner);
                }
            }
        }
        for (f, kind) in [(Format::Bundle, Kind::Bundle), (Format::Qcow2, Kind::Qcow2)] {
            if a.format.contains(&f) {
                staging.responsible_for(produce::role_owner(role, kind));
            }
        }
        let mut sink = |p: Piece| staging.write(&p.rel, p.bytes, p.private, p.owner);
        let r = produce::role(&job, role, only, &mut lint, &mut sink)
            .with_context(|| format!("building role {role}"))?;
        for key in r.missing {
            incomplete
                .entry(key)
                .or_insert_with(Vec::new)
                .push(role.clone());
        }
        if !r.resolved.files.is_empty() {
            let rel = format!("{role}/artifacts");
            pins::export_files(&r.resolved, &staging.path(&rel))
                .with_context(|| format!("building role {role}"))?;
            staging.produced(&rel, produce::role_owner(role, Kind::Artifacts));
        }
        if a.format.contains(&Format::Bundle) {
            built.push(format!(
                "built {role}/{} (sha256 {})",
                r.bundle.file_name, r.bundle.sha256
            ));
        }
        if a.format.contains(&Format::Qcow2) {
            let rel = format!("{role}/ezimg-{role}.qcow2");
            bakes.push(PendingBake {
                role: role.to_string(),
                bundle: r.bundle.bytes,
                plans: r.plans,
                dest: staging.path(&rel),
                rel,
            });
        }
    }
    lint.finish()?;
    // Outputs that would fail on the node are not written unless asked for (and then said).
    if !incomplete.is_empty() {
        let list = produce::missing_lines(&incomplete);
        if !a.allow_incomplete {
            anyhow::bail!(
                "{} artifact(s) the nodes need are missing; nothing was written:\n  {list}\n\
                 (--allow-incomplete writes the outputs anyway: each node then stops before \
                 changing anything, naming what is missing)",
                incomplete.len()
            );
        }
        eprintln!(
            "INCOMPLETE (--allow-incomplete): these nodes will refuse to install, before \
             changing anything, until:\n  {list}"
        );
    }
    let bake_opts = crate::image::BakeOptions {
        jobs: a
            .bake_jobs
            .unwrap_or_else(crate::image::BakeOptions::default_jobs),
        timeout: std::time::Duration::from_secs(a.bake_timeout),
    };
    run_bakes(&bakes, &lock, &bake_opts)?;
    for b in &bakes {
        let owner = || produce::role_owner(&b.role, Kind::Qcow2);
        // The image's digest is in the `.sha256` line bake_role wrote from the manifest.
        let line_path = staging.path(&format!("{}.sha256", b.rel));
        let line = std::fs::read_to_string(&line_path)
            .with_context(|| format!("reading {}", line_path.display()))?;
        match line.split_whitespace().next() {
            Some(sha) if sha.len() == 64 => {
                staging.produced_with_sha256(&b.rel, owner(), sha.to_string())
            }
            _ => staging.produced(&b.rel, owner()),
        }
        for rel in [format!("{}.json", b.rel), format!("{}.sha256", b.rel)] {
            staging.produced(&rel, owner());
        }
    }
    let current = Current {
        nodes: c
            .nodes
            .iter()
            .map(|n| (n.hostname.as_str(), n.role.as_str()))
            .collect(),
    };
    let removed = staging.commit(&current)?;
    for b in built {
        eprintln!("{b}");
    }
    for r in removed {
        eprintln!("{r}");
    }
    eprintln!("outputs in {}", a.out.display());
    Ok(())
}

/// Run the pending bakes, `opts.jobs` at a time. A TCG guest keeps about
/// one core busy, so two bakes side by side nearly halve `build --all --format qcow2`.
fn run_bakes(bakes: &[PendingBake], lock: &Lock, opts: &crate::image::BakeOptions) -> Result<()> {
    let jobs = opts.jobs;
    // A queue, not fixed pairs: a cache hit (no VM) frees its slot at once.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.min(bakes.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut errs = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(b) = bakes.get(i) else { break };
                        if let Err(e) = crate::image::bake_role(
                            &b.role, &b.bundle, &b.plans, &b.dest, lock, opts,
                        ) {
                            errs.push(e.context(format!("building role {}", b.role)));
                            // Fail fast: start no further bake.
                            next.store(bakes.len(), std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    errs
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec![anyhow::anyhow!("a bake thread panicked")])
            })
            .collect()
    });
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn completions(a: &CompletionsArgs) -> Result<()> {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "ezimg", &mut std::io::stdout());
    Ok(())
}

pub fn fetch(g: &Global, a: &crate::cli::FetchArgs) -> Result<()> {
    crate::artifact::commands::fetch(g, a)
}
pub fn lock(g: &Global, a: &crate::cli::LockArgs) -> Result<()> {
    crate::artifact::commands::lock(g, a)
}
pub fn export(g: &Global, a: &crate::cli::ExportArgs) -> Result<()> {
    crate::artifact::commands::export(g, a)
}
pub fn import(a: &crate::cli::ImportArgs) -> Result<()> {
    crate::artifact::commands::import(a)
}

/// `ezimg stage check`: the stage named, else the one the manifest next to the tarball names.
fn stage_check(g: &Global, c: &crate::cli::StageCheckArgs) -> Result<()> {
    use crate::stage;
    let name = match &c.stage {
        Some(n) => n.clone(),
        None => {
            let t = c.tarball.display().to_string();
            let candidates = [
                format!("{t}.json"),
                format!("{}.json", t.strip_suffix(".tar.gz").unwrap_or(&t)),
            ];
            let m = candidates
                .iter()
                .find(|p| std::path::Path::new(p).is_file())
                .with_context(|| {
                    format!(
                        "{t}: no manifest next to it ({}); pass --stage NAME",
                        candidates.join(" or ")
                    )
                })?;
            let text = std::fs::read_to_string(m).with_context(|| format!("reading {m}"))?;
            let m: stage::Manifest = serde_json::from_str(&text)
                .with_context(|| format!("{m}: not a stage manifest"))?;
            m.stage
        }
    };
    let st = stage::load(&name, g.data.as_deref())?;
    let target = stage::Target::load(&c.target, g.data.as_deref())?;
    stage::target::check(&c.tarball, &target, Some(&st))?;
    println!(
        "ok: {} (stage {}) runs on {}: glibc <= {}, every NEEDED soname in {}",
        c.tarball.display(),
        st.spec.name,
        target.name,
        target.glibc,
        target.origin
    );
    Ok(())
}

/// `ezimg stage build|list|check`.
pub fn stage(g: &Global, a: &crate::cli::StageArgs) -> Result<()> {
    use crate::cli::StageCommand;
    use crate::stage;
    match &a.command {
        StageCommand::Check(c) => stage_check(g, c),
        StageCommand::List => {
            for name in stage::names(g.data.as_deref())? {
                println!("{}", stage::load(&name, g.data.as_deref())?.summary());
            }
            Ok(())
        }
        StageCommand::Build(b) => {
            let st = stage::load(&b.name, g.data.as_deref())?;
            let pairs = |list: &[String], what: &str| -> Result<BTreeMap<String, String>> {
                list.iter()
                    .map(|kv| {
                        kv.split_once('=')
                            .filter(|(k, _)| !k.is_empty())
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .with_context(|| format!("--{what} {kv:?}: expected NAME=VALUE"))
                    })
                    .collect()
            };
            let sources: BTreeMap<String, std::path::PathBuf> = pairs(&b.sources, "source")?
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            // Sources not given on the command line would come from the artifact cache
            // (artifacts.lock); until `ezimg build` wires the fetch, say which are missing.
            let missing: Vec<&str> = st
                .spec
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .filter(|n| !sources.contains_key(*n))
                .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "stage {}: no local path for source(s) {}: pass --source NAME=PATH (archive or directory) for each",
                    st.spec.name,
                    missing.join(", ")
                );
            }
            let root = match &b.cache_dir {
                Some(d) => d.clone(),
                None => stage::default_cache_root()?,
            };
            let mut opts = stage::BuildOptions::new(root);
            opts.data = g.data.clone();
            opts.vars = pairs(&b.vars, "var")?;
            if let Some(j) = b.jobs {
                opts.jobs = j.max(1);
            }
            opts.rebuild = b.rebuild;
            opts.keep_work = b.keep_work;
            let o = stage::build(&st, &sources, &opts)?;
            if o.cached {
                println!(
                    "cache hit: stage {} ({:.2}s)",
                    st.spec.name,
                    o.elapsed.as_secs_f64()
                );
            } else {
                println!(
                    "built: stage {} ({:.1}s)",
                    st.spec.name,
                    o.elapsed.as_secs_f64()
                );
            }
            println!(
                "  tarball  {} (sha256 {})",
                o.tarball.display(),
                o.manifest.output.sha256
            );
            println!("  manifest {}", o.manifest_path.display());
            if let Some(out) = &b.out {
                std::fs::copy(&o.tarball, out)
                    .with_context(|| format!("copying the stage tarball to {}", out.display()))?;
                let mut mj = out.as_os_str().to_owned();
                mj.push(".json");
                std::fs::copy(&o.manifest_path, &mj).with_context(|| {
                    format!(
                        "copying the manifest to {}",
                        std::path::Path::new(&mj).display()
                    )
                })?;
                println!("  copied to {}", out.display());
            }
            Ok(())
        }
    }
}

/// `ezimg serve`: resolve the inputs, then [`crate::serve::run`].
pub fn serve(g: &Global, a: &ServeArgs) -> Result<()> {
    let loaded = cluster::load(g.cluster.as_deref())?;
    let lock = resolve_lock(g, &a.lock)?;
    crate::serve::run(crate::serve::Options {
        out: a.from.clone(),
        cluster: loaded.cluster,
        cache: Cache::resolve(a.cache_dir.as_deref())?,
        lock,
        listen: a.listen,
        url: a.url.as_ref().map(|u| u.as_str().to_string()),
        max_requests: a.max_requests,
        header_timeout: std::time::Duration::from_secs(a.header_timeout),
        pxe: crate::serve::PxeChoices {
            kernel: a.kernel.clone(),
            initrd: a.initrd.clone(),
            repo: a.inst_repo.clone(),
            dhcp: a.dhcp,
        },
    })
}
