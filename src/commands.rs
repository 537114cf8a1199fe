//! One function per subcommand: load inputs, call the modules, print.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};

use crate::artifact::mirror::Mirror;
use crate::artifact::{Cache, FetchOptions, Lock};
use crate::bundle::{self, ArtifactPin, Bundle};
use crate::cli::{
    BuildArgs, CompletionsArgs, Format, Global, InitArgs, PlanArgs, RotateWhat, SecretsArgs,
    SecretsCommand,
};
use crate::cluster::Os;
use crate::cluster::{self, Loaded, Severity};
use crate::data::DataTree;
use crate::outdir::Staging;
use crate::output::{BundleRef, NodeInput, cloudinit, kickstart, seed_fat, seed_iso};
use crate::pins;
use crate::plan::{self, Catalog, NodePlan};
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
        Ok(Inputs {
            tree: DataTree::load(g.data.as_deref())?,
            loaded: cluster::load(g.cluster.as_deref())?,
            data_dir: g.data.clone(),
        })
    }
}

/// Validate; print warnings to stderr; fail on errors.
fn validated<'a>(inputs: &'a Inputs, quiet_warnings: bool) -> Result<Catalog<'a>> {
    let catalog = Catalog::load(&inputs.tree)?;
    let diags = cluster::validate(&inputs.loaded, &catalog.role_names());
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

pub fn init(a: &InitArgs) -> Result<()> {
    if a.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(cluster::DEFAULT_TOML.as_bytes())
            .context("writing to standard output")?;
        return Ok(());
    }
    if a.out.exists() && !a.force {
        anyhow::bail!(
            "{} already exists (use --force to overwrite)",
            a.out.display()
        );
    }
    bundle::write_file(&a.out, cluster::DEFAULT_TOML.as_bytes())?;
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

pub fn check(g: &Global) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, false)?;
    let c = &inputs.loaded.cluster;
    // Planning every node proves every template renders and every layer resolves.
    let mut skipped = 0usize;
    let mut applied_layers = std::collections::BTreeSet::new();
    for node in &c.nodes {
        let p = plan::plan_node(&catalog, &inputs.loaded, node)?;
        skipped += p.layers.iter().filter(|l| l.skipped.is_some()).count();
        applied_layers.extend(p.applied().map(|l| l.name.clone()));
    }
    println!("{}: ok", inputs.loaded.origin());
    println!(
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
    );
    println!(
        "  networks: nodes {} via {}, services {}, pods {} (disjoint)",
        c.network.cidr, c.network.gateway, c.network.service_cidr, c.network.pod_cidr
    );
    for role in c.roles_in_use() {
        let r = catalog.role(&role)?;
        let hosts: Vec<&str> = c.nodes_of(&role).map(|n| n.hostname.as_str()).collect();
        println!(
            "  role {role}: {} ({} layers) on {}",
            r.description,
            r.layers.len(),
            hosts.join(", ")
        );
    }
    println!(
        "  data: {} ({} layers); {skipped} layer/node pairs skipped (see `ezimg plan`)",
        inputs.tree.origin,
        catalog.layers.len()
    );
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
            println!(
                "  seed flag left out by layer {name}: {} {}{seed}: {}",
                d.component, d.flag, d.reason
            );
        }
    }
    Ok(())
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
    let plans = nodes
        .iter()
        .map(|n| plan::plan_node(&catalog, &inputs.loaded, n))
        .collect::<Result<Vec<_>>>()?;
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

/// What every role of one `ezimg build` shares.
struct BuildCtx<'a> {
    inputs: &'a Inputs,
    catalog: &'a Catalog<'a>,
    lock: &'a Lock,
    args: &'a BuildArgs,
    staging: &'a Staging,
    store: &'a Store,
}

/// Render the requested outputs for the selected nodes into the staging folder.
/// A qcow2 bake `build_role` leaves for later: bakes of several roles run side by side.
struct PendingBake {
    role: String,
    bundle: Vec<u8>,
    plans: Vec<NodePlan>,
    dest: std::path::PathBuf,
}

/// What a node of `role` could not get: artifacts with no digest, stage outputs not built, files
/// neither in the cache nor fetched. Files found in the cache join `resolved.files`, so the
/// build exports them beside the bundle.
fn missing_artifacts(
    role: &str,
    lock: &Lock,
    cache: &Cache,
    a: &BuildArgs,
    resolved: &mut pins::Resolved,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, pin) in &resolved.pins {
        if resolved.files.contains_key(name) {
            continue;
        }
        let stage = name.ends_with(pins::STAGE_SUFFIX);
        let Some(_) = &pin.sha256 else {
            out.push((
                name.clone(),
                if stage {
                    format!(
                        "the build stage's output is not built (`ezimg build --role {role} \
                         --fetch` compiles it)"
                    )
                } else {
                    format!(
                        "no digest pinned, upstream publishes none (`ezimg lock {name}` on a \
                         machine that reaches it, or `--mirror`)"
                    )
                },
            ));
            continue;
        };
        if let Some(p) = lock.find(name).and_then(|art| cache.lookup(art)) {
            resolved.files.insert(name.clone(), p);
            continue;
        }
        // The operator serves artifacts from elsewhere: the node fetches and verifies them.
        if a.artifacts_from
            .as_deref()
            .is_some_and(|f| f.starts_with("http"))
        {
            continue;
        }
        out.push((
            name.clone(),
            format!(
                "{} is not in the verified cache (`ezimg fetch {name}`, or `build --fetch \
                 [--mirror URL|DIR]`)",
                pin.file
            ),
        ));
    }
    out
}

fn build_role(
    cx: &BuildCtx,
    role: &str,
    only: Option<&str>,
    commit: &mut Vec<String>,
    bakes: &mut Vec<PendingBake>,
    incomplete: &mut BTreeMap<(String, String), Vec<String>>,
    built: &mut Vec<String>,
) -> Result<()> {
    let BuildCtx {
        inputs,
        catalog,
        lock,
        args: a,
        staging,
        store,
    } = *cx;
    let c = &inputs.loaded.cluster;
    let role_nodes: Vec<_> = c.nodes_of(role).collect();
    let plans = role_nodes
        .iter()
        .map(|n| plan::plan_node(catalog, &inputs.loaded, n))
        .collect::<Result<Vec<_>>>()?;
    let mut needed: Vec<String> = plans.iter().flat_map(NodePlan::artifacts).collect();
    needed.sort();
    needed.dedup();
    let cache = Cache::resolve(None)?;
    let fetch = a.fetch.then(|| -> Result<FetchOptions> {
        let mut o = FetchOptions::new(cache.clone());
        o.allow_unverified = a.allow_unverified;
        o.mirrors = a
            .mirror
            .iter()
            .map(|m| m.parse())
            .collect::<Result<Vec<Mirror>>>()?;
        Ok(o)
    });
    let fetch = fetch.transpose()?;
    let getter = fetch.as_ref().map(|f| pins::Getter { fetch: f });
    let resolved = pins::resolve(
        lock,
        &cache,
        inputs.data_dir.as_deref(),
        c.os,
        &needed,
        getter.as_ref(),
    )?;
    let mut resolved = resolved;
    for key in missing_artifacts(role, lock, &cache, a, &mut resolved) {
        incomplete.entry(key).or_default().push(role.to_string());
    }
    if !resolved.files.is_empty() {
        let rel = format!("{role}/artifacts");
        pins::export_files(&resolved, &staging.path(&rel))?;
        if only.is_some() {
            commit.push(rel);
        }
    }
    let pins = resolved.pins;
    let b: Bundle = bundle::build(role, &plans, &pins)?;
    if a.format.contains(&Format::Bundle) {
        let rel = format!("{role}/{}", b.file_name);
        bundle::write_file(&staging.path(&rel), &b.bytes)?;
        bundle::write_file(
            &staging.path(&format!("{rel}.sha256")),
            bundle::sha256_line(&b.sha256, &b.file_name).as_bytes(),
        )?;
        if only.is_some() {
            commit.push(rel.clone());
            commit.push(format!("{rel}.sha256"));
        }
        built.push(format!("built {rel} (sha256 {})", b.sha256));
    }
    if a.format.contains(&Format::Qcow2) {
        let rel = format!("{role}/ezimg-{role}.qcow2");
        bakes.push(PendingBake {
            role: role.to_string(),
            bundle: b.bytes.clone(),
            plans: plans.clone(),
            dest: staging.path(&rel),
        });
        if only.is_some() {
            commit.extend([rel.clone(), format!("{rel}.json"), format!("{rel}.sha256")]);
        }
    }
    let bref = BundleRef {
        file_name: b.file_name.clone(),
        sha256: b.sha256.clone(),
        bytes: b.bytes.clone(),
        url: a.bundle_url.clone(),
    };
    for (node, p) in role_nodes.iter().zip(&plans) {
        if only.is_some_and(|o| o != node.hostname) {
            continue;
        }
        let input = NodeInput {
            cluster: c,
            node,
            plan: p,
            bundle: &bref,
            secrets: node_secrets(store, p)?,
            artifacts_from: a.artifacts_from.clone(),
        };
        let dir = format!("{role}/{}", node.hostname);
        if a.format.contains(&Format::Kickstart) {
            if c.os == Os::Debian12 {
                if node.hostname == role_nodes[0].hostname {
                    eprintln!(
                        "note: no kickstart for debian12 (kickstart is for el7/el9); use the cloud-init seed"
                    );
                }
            } else {
                let ks = kickstart::render(&inputs.tree, &input)
                    .with_context(|| format!("kickstart for {}", node.hostname))?;
                bundle::write_private(&staging.path(&format!("{dir}/ks.cfg")), ks.as_bytes())?;
            }
        }
        if a.format.contains(&Format::CloudInit) {
            let seed = cloudinit::render(&input)
                .with_context(|| format!("cloud-init seed for {}", node.hostname))?;
            for (name, bytes) in seed.files() {
                bundle::write_private(&staging.path(&format!("{dir}/seed/{name}")), bytes)?;
            }
            seed_fat::write(&seed.files(), &staging.path(&format!("{dir}/seed.img")))?;
            seed_iso::write(&seed.files(), &staging.path(&format!("{dir}/seed.iso")))?;
        }
        if only.is_some() {
            commit.push(dir);
        }
    }
    if only.is_none() {
        commit.push(role.to_string());
    }
    Ok(())
}

pub fn build(g: &Global, a: &BuildArgs) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, true)?;
    let c = &inputs.loaded.cluster;
    let (roles, only): (Vec<String>, Option<&str>) = if a.all {
        (c.roles_in_use(), None)
    } else if let Some(n) = &a.node {
        let node = plan::select_nodes(c, a.role.as_deref(), Some(n))?[0];
        (vec![node.role.clone()], Some(n.as_str()))
    } else {
        let r = a
            .role
            .as_deref()
            .context("--role, --node or --all is required")?;
        catalog.role(r)?;
        plan::select_nodes(c, Some(r), None)?;
        (vec![r.to_string()], None)
    };
    let lock = Lock::discover(None, g.data.as_deref())?;
    let store = build_store(g, &inputs.loaded)?;
    let staging = Staging::new(&a.out)?;
    let mut commit = Vec::new();
    let cx = BuildCtx {
        inputs: &inputs,
        catalog: &catalog,
        lock: &lock,
        args: a,
        staging: &staging,
        store: &store,
    };
    let mut bakes = Vec::new();
    let mut incomplete = BTreeMap::new();
    let mut built = Vec::new();
    for role in &roles {
        build_role(
            &cx,
            role,
            only,
            &mut commit,
            &mut bakes,
            &mut incomplete,
            &mut built,
        )
        .with_context(|| format!("building role {role}"))?;
    }
    // Outputs that would fail on the node are not written unless asked for (and then said).
    if !incomplete.is_empty() {
        let list = incomplete
            .iter()
            .map(|((name, why), roles)| format!("{name} (roles {}): {why}", roles.join(", ")))
            .collect::<Vec<_>>()
            .join("\n  ");
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
    run_bakes(&bakes, &bake_opts)?;
    commit.retain(|rel| staging.path(rel).exists());
    staging.commit(&commit)?;
    for b in built {
        eprintln!("{b}");
    }
    eprintln!("outputs in {}", a.out.display());
    Ok(())
}

/// Run the pending bakes, `opts.jobs` at a time. A TCG guest installing packages keeps about
/// one core busy, so two bakes side by side nearly halve `build --all --format qcow2`.
fn run_bakes(bakes: &[PendingBake], opts: &crate::image::BakeOptions) -> Result<()> {
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
                        if let Err(e) =
                            crate::image::bake_role(&b.role, &b.bundle, &b.plans, &b.dest, opts)
                        {
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

/// `ezimg stage build|list`.
pub fn stage(g: &Global, a: &crate::cli::StageArgs) -> Result<()> {
    use crate::cli::StageCommand;
    use crate::stage;
    match &a.command {
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
