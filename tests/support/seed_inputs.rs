//! Inputs of the per-node outputs for every node of the default cluster, built the way
//! `ezimg build` builds them (plan, role bundle, node secrets).

#![allow(dead_code)]

use std::collections::BTreeMap;

use ezimg::bundle;
use ezimg::cluster::{self, Loaded, Os};
use ezimg::data::DataTree;
use ezimg::output::{BundleRef, NodeInput};
use ezimg::pins::artifact_pins;
use ezimg::plan::{self, Catalog, NodePlan};
use ezimg::secrets::node_secrets;

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
                    in_image: false,
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
