//! `ezimg secrets init|show|rotate`: the cluster's secret store.

use anyhow::Result;

use crate::cli::{Global, RotateWhat, SecretsArgs, SecretsCommand};
use crate::cluster;
use crate::secrets;

pub fn run(g: &Global, a: &SecretsArgs) -> Result<()> {
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
            secrets::load(&dir, &loaded)?.save_issued()?;
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
                    secrets::Source::CaCertHash => format!(
                        "derived from {}",
                        secrets::file_of(secrets::CA_KEY).unwrap_or(secrets::CA_KEY)
                    ),
                    secrets::Source::Registry(f) => format!(
                        "{} (issued from the cluster CA for the registry)",
                        dir.join(f).display()
                    ),
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
            let file = secrets::path(&dir, what.secret());
            match what {
                secrets::Rotate::Token => println!(
                    "new bootstrap token in {}: rebuild the seeds/kickstarts of nodes that have \
                     not joined yet; a running cluster learns it with \
                     `kubeadm token create \"$(cat {})\" --ttl 0` on a master (joined nodes are \
                     unaffected)",
                    file.display(),
                    file.display()
                ),
                secrets::Rotate::VrrpPassword => println!(
                    "new VRRP password in {}: rebuild the slb seeds/kickstarts and re-apply them \
                     on every slb node together (peers with different passwords ignore each other)",
                    file.display()
                ),
            }
        }
    }
    Ok(())
}
