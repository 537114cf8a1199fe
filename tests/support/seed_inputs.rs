//! Inputs of the per-node outputs for every node of the default cluster, built the way
//! `ezimg build` builds them (plan, role bundle, node secrets), plus the external-tool rule:
//! a missing tool skips with a reason, except under CI where it fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ezimg::bundle;
use ezimg::cluster::{self, Loaded, Os};
use ezimg::commands::{artifact_pins, node_secrets};
use ezimg::data::DataTree;
use ezimg::output::{BundleRef, NodeInput};
use ezimg::plan::{self, Catalog, NodePlan};

pub struct Fixture {
    pub loaded: Loaded,
    /// The cluster's secret store, made for this fixture (kept alive with it).
    pub store: ezimg::secrets::Store,
    pub store_dir: tempfile::TempDir,
    pub plans: Vec<NodePlan>,
    pub secrets: Vec<BTreeMap<String, String>>,
    pub bundles: BTreeMap<String, BundleRef>,
}

impl Fixture {
    /// The default cluster retargeted to `os`; bundles fetched from `url` when given.
    pub fn new(os: Os, url: Option<&str>) -> Fixture {
        let tree = DataTree::embedded();
        let mut loaded = cluster::load(None).expect("default cluster");
        loaded.cluster.os = os;
        let catalog = Catalog::load(&tree).expect("catalog");
        let plans: Vec<NodePlan> = loaded
            .cluster
            .nodes
            .iter()
            .map(|n| plan::plan_node(&catalog, &loaded, n).expect("plan"))
            .collect();
        let lock = ezimg::artifact::Lock::embedded().expect("embedded lock");
        let pins = artifact_pins(&catalog, &lock).expect("artifact pins");
        let mut bundles = BTreeMap::new();
        for role in loaded.cluster.roles_in_use() {
            let of_role: Vec<NodePlan> = plans.iter().filter(|p| p.role == role).cloned().collect();
            let b = bundle::build(&role, &of_role, &pins).expect("bundle");
            let url = url.map(|u| format!("{u}/{}", b.file_name));
            bundles.insert(
                role,
                BundleRef {
                    file_name: b.file_name,
                    sha256: b.sha256,
                    bytes: b.bytes,
                    url,
                },
            );
        }
        let store_dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = ezimg::secrets::open(
            &store_dir.path().join("cluster.secrets"),
            &loaded,
            ezimg::secrets::IfMissing::Create,
        )
        .expect("secret store");
        let secrets = plans
            .iter()
            .map(|p| node_secrets(&store, p).expect("node secrets"))
            .collect();
        Fixture {
            loaded,
            store,
            store_dir,
            plans,
            secrets,
            bundles,
        }
    }

    pub fn inputs(&self) -> Vec<NodeInput<'_>> {
        self.loaded
            .cluster
            .nodes
            .iter()
            .zip(&self.plans)
            .zip(&self.secrets)
            .map(|((node, plan), secrets)| NodeInput {
                cluster: &self.loaded.cluster,
                node,
                plan,
                bundle: &self.bundles[&node.role],
                secrets: secrets.clone(),
                artifacts_from: None,
            })
            .collect()
    }
}

/// The project root (where `.venv` is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `path` if it exists; otherwise skip (print why) or, under CI, fail.
pub fn tool(path: &Path, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    let why = format!(
        "{} is missing ({what}); run scripts/test-deps.sh",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// A host command found on PATH (or /usr/sbin, /sbin), under the same rule.
pub fn host_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]);
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    tool(Path::new(name), "a host tool")
}

/// Run a command; panic with its stderr when it fails.
pub fn run(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
