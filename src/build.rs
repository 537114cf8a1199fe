//! `ezimg build`'s library half: render each role into an output set staged inside `--out`,
//! bake the qcow2 images asked for, then commit. The output set ([`Outputs`]) names the paths
//! it writes (ks.cfg and seeds per node; per role the bundle, `artifacts/`, the image with its
//! manifest and `.sha256` line) and records each with its owner, so the command only asks and
//! prints, and `--out` changes all at once or not at all. The cluster-wide outputs (the PXE
//! tree, the images' OCI layout) are folders of their own beside the roles'.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::artifact::Cache;
use crate::cli::Format;
use crate::cluster::Cluster;
use crate::image::{self, BakeOptions, PendingBake};
use crate::images::offline;
use crate::lint::BashSyntax;
use crate::outdir::{Current, Kind, Staging};
use crate::pins;
use crate::produce::{self, Job, Piece, node_owner, role_owner};
use crate::serve::pxe;

/// Whether `f` is made per role (rendering the roles), not once for the cluster.
pub fn per_role(f: Format) -> bool {
    !matches!(f, Format::Pxe | Format::Images)
}

/// The owner of a cluster-wide output (no role).
fn cluster_owner(kind: Kind) -> crate::outdir::Owner {
    crate::outdir::Owner {
        role: String::new(),
        node: None,
        kind,
    }
}

/// What to build beyond the job's inputs and formats.
pub struct Request<'a> {
    /// The roles rendered.
    pub roles: &'a [String],
    /// Only this node of them (`--node`).
    pub only: Option<&'a str>,
    /// Write outputs whose nodes would stop for a missing artifact (`--allow-incomplete`).
    pub allow_incomplete: bool,
    pub bake: BakeOptions,
}

/// A build's outputs, staged in `--out` and not yet visible there until [`Outputs::commit`].
pub struct Outputs {
    staging: Staging,
    /// Hostname -> role of every node now: recorded outputs of others are stale.
    nodes: BTreeMap<String, String>,
    /// "built <role>/<bundle> (sha256 …)" per bundle.
    built: Vec<String>,
}

/// What [`Outputs::commit`] did.
pub struct Committed {
    /// "built <role>/<bundle> (sha256 …)" per bundle.
    pub built: Vec<String>,
    /// One line per stale output removed (nodes and roles that left the cluster).
    pub removed: Vec<String>,
}

impl Outputs {
    /// Stage into `out` for cluster `c`. Refuses an `out` that holds another cluster's outputs
    /// (before anything else is made: call it first).
    pub fn open(out: &Path, c: &Cluster) -> Result<Outputs> {
        Ok(Outputs {
            staging: Staging::new(out, &c.name)?,
            nodes: c
                .nodes
                .iter()
                .map(|n| (n.hostname.clone(), n.role.clone()))
                .collect(),
            built: Vec::new(),
        })
    }

    /// A role's qcow2 image, relative to `--out` (its manifest and `.sha256` line beside it).
    pub fn qcow2_rel(role: &str) -> String {
        format!("{role}/ezimg-{role}.qcow2")
    }

    /// Tell the staging which outputs this build answers for (the formats asked for, for the
    /// nodes it renders), so what it no longer makes there (a kickstart once the OS is
    /// debian12) goes.
    fn claim(&mut self, c: &Cluster, role: &str, only: Option<&str>, formats: &[Format]) {
        for n in c
            .nodes_of(role)
            .filter(|n| only.is_none_or(|o| o == n.hostname))
        {
            for f in formats {
                if let Some(owner) = node_owner(role, &n.hostname, *f) {
                    self.staging.responsible_for(owner);
                }
            }
        }
        for (f, kind) in [(Format::Bundle, Kind::Bundle), (Format::Qcow2, Kind::Qcow2)] {
            if formats.contains(&f) {
                self.staging.responsible_for(role_owner(role, kind));
            }
        }
    }

    /// Copy a role's resolved artifact files into `<role>/artifacts`.
    fn write_artifacts(&mut self, role: &str, resolved: &pins::Resolved) -> Result<()> {
        if resolved.files.is_empty() {
            return Ok(());
        }
        let rel = format!("{role}/artifacts");
        pins::export_files(resolved, &self.staging.path(&rel))
            .with_context(|| format!("building role {role}"))?;
        self.staging
            .produced(&rel, role_owner(role, Kind::Artifacts));
        Ok(())
    }

    /// Record a finished bake's image, manifest and `.sha256` line as outputs.
    fn record_bake(&mut self, b: &PendingBake) -> Result<()> {
        let owner = || role_owner(&b.role, Kind::Qcow2);
        // The image's digest is in the `.sha256` line bake_role wrote from the manifest.
        let line_path = self.staging.path(&format!("{}.sha256", b.rel));
        let line = std::fs::read_to_string(&line_path)
            .with_context(|| format!("reading {}", line_path.display()))?;
        match line.split_whitespace().next() {
            Some(sha) if sha.len() == 64 => {
                self.staging
                    .produced_with_sha256(&b.rel, owner(), sha.to_string())
            }
            _ => self.staging.produced(&b.rel, owner()),
        }
        for rel in [format!("{}.json", b.rel), format!("{}.sha256", b.rel)] {
            self.staging.produced(&rel, owner());
        }
        Ok(())
    }

    /// Remaster a node's installer ISO (after the build was found complete enough).
    fn write_iso(
        &mut self,
        iso: &produce::PendingIso,
        bundle: &crate::bundle::Bundle,
    ) -> Result<()> {
        use crate::output::installer_iso::{self, Content};
        let mut files = vec![(
            format!("{}/{}", installer_iso::MEDIA_DIR, bundle.file_name),
            Content::Bytes(&bundle.bytes),
        )];
        files.extend(
            iso.artifacts
                .iter()
                .map(|(dest, path)| (dest.clone(), Content::File(path))),
        );
        eprintln!(
            "iso {}: remastering {}…",
            iso.node,
            iso.source
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        );
        installer_iso::remaster(
            &iso.source,
            iso.ks.as_bytes(),
            &files,
            &self.staging.path(&iso.rel),
        )?;
        let owner = node_owner(&iso.role, &iso.node, Format::Iso).context("the ISO is per node")?;
        self.staging.produced(&iso.rel, owner);
        self.built.push(format!("built {}", iso.rel));
        Ok(())
    }

    /// `--format pxe`: the cluster's PXE tree into `pxe/`, pointing at `opts.base_url`, with
    /// `serve`'s own writer. dnsmasq's TFTP root is where the tree ends up, not the staging
    /// folder. Every generated file already there goes (a tree `serve` wrote included); the
    /// operator's (installer/, boot loaders) stay, unless `installer` (the verified vendor ISO)
    /// is given: its `images/pxeboot/vmlinuz` and `initrd.img` then go to `installer/<os>/`.
    /// Returns the notes (nodes left out).
    pub fn write_pxe(
        &mut self,
        c: &Cluster,
        opts: &pxe::PxeOptions,
        installer: Option<&Path>,
    ) -> Result<Vec<String>> {
        let out = self.staging.out().to_path_buf();
        let root = std::fs::canonicalize(&out)
            .with_context(|| format!("resolving {}", out.display()))?
            .join("pxe");
        let staged = self.staging.path("pxe");
        let notes = pxe::write_at(&staged, &root, c, opts)?;
        let owner = cluster_owner(Kind::Pxe);
        self.staging.responsible_for(owner.clone());
        for rel in pxe::generated_files(&out.join("pxe"))? {
            self.staging.supersede(format!("pxe/{rel}"));
        }
        for rel in pxe::generated_files(&staged)? {
            self.staging.produced(&format!("pxe/{rel}"), owner.clone());
        }
        if let Some(iso) = installer {
            let rel_dir = format!("installer/{}", pxe::installer_dir(c.os));
            let dir = staged.join(&rel_dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for f in ["vmlinuz", "initrd.img"] {
                let to = dir.join(f);
                crate::output::installer_iso::extract(
                    iso.as_os_str(),
                    &format!("images/pxeboot/{f}"),
                    &to,
                )?;
                // Public boot files: dnsmasq's TFTP and serve read them.
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644))
                    .with_context(|| format!("chmod {}", to.display()))?;
                self.staging
                    .produced(&format!("pxe/{rel_dir}/{f}"), owner.clone());
            }
            self.built.push(format!(
                "built pxe/{rel_dir}/ (vmlinuz and initrd.img from {})",
                iso.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
        self.built
            .push(format!("built pxe/ (boot configs for {})", opts.base_url));
        Ok(notes)
    }

    /// `--format images`: the lock's images from the cache as an OCI layout in `images/`.
    pub fn write_images(&mut self, lock: &crate::artifact::Lock, cache: &Cache) -> Result<()> {
        let epoch = crate::bundle::source_date_epoch()?;
        let w = offline::write(lock, cache, &self.staging.path("images"), epoch)?;
        let owner = cluster_owner(Kind::Images);
        self.staging.responsible_for(owner.clone());
        for (rel, sha) in w.files {
            self.staging
                .produced_with_sha256(&format!("images/{rel}"), owner.clone(), sha);
        }
        self.built.push(format!(
            "built images/ (OCI layout, {} image(s) of {})",
            w.images, lock.origin
        ));
        Ok(())
    }

    /// Swap every touched role folder into `--out` and record what it holds.
    pub fn commit(self) -> Result<Committed> {
        let current = Current {
            nodes: self
                .nodes
                .iter()
                .map(|(h, r)| (h.as_str(), r.as_str()))
                .collect(),
        };
        let removed = self.staging.commit(&current)?;
        Ok(Committed {
            built: self.built,
            removed,
        })
    }
}

/// Render every role of `req` into `outputs` (all roles first, so a bad template fails before
/// minutes of baking), check the scripts, refuse missing artifacts unless allowed, then bake the
/// qcow2 images `req.bake.jobs` at a time. Nothing is visible in `--out` until `commit`.
pub fn build(job: &Job, outputs: &mut Outputs, req: &Request) -> Result<()> {
    let c = &job.loaded.cluster;
    let formats = job.formats;
    let mut lint = BashSyntax::default();
    let mut bakes = Vec::new();
    let mut incomplete = BTreeMap::new();
    let mut isos = Vec::new();
    for role in req.roles {
        outputs.claim(c, role, req.only, formats);
        let staging = &mut outputs.staging;
        let mut sink = |p: Piece| staging.write(&p.rel, p.bytes, p.private, p.owner);
        let r = produce::role(job, role, req.only, &mut lint, &mut sink)
            .with_context(|| format!("building role {role}"))?;
        for key in r.missing {
            incomplete
                .entry(key)
                .or_insert_with(Vec::new)
                .push(role.clone());
        }
        outputs.write_artifacts(role, &r.resolved)?;
        isos.extend(r.isos.into_iter().map(|i| (i, r.bundle.clone())));
        if formats.contains(&Format::Bundle) {
            outputs.built.push(format!(
                "built {role}/{} (sha256 {})",
                r.bundle.file_name, r.bundle.sha256
            ));
        }
        if formats.contains(&Format::Qcow2) {
            let rel = Outputs::qcow2_rel(role);
            bakes.push(PendingBake {
                role: role.to_string(),
                bundle: r.bundle.bytes,
                plans: r.plans,
                dest: outputs.staging.path(&rel),
                rel,
            });
        }
    }
    lint.finish()?;
    // Outputs that would fail on the node are not written unless asked for (and then said).
    if !incomplete.is_empty() {
        let list = produce::missing_lines(&incomplete);
        if !req.allow_incomplete {
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
    for (iso, bundle) in &isos {
        outputs
            .write_iso(iso, bundle)
            .with_context(|| format!("the installer ISO of node {}", iso.node))?;
    }
    image::run_bakes(&bakes, job.lock, &req.bake)?;
    for b in &bakes {
        outputs.record_bake(b)?;
    }
    Ok(())
}
