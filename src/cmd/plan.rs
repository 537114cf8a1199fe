//! `ezimg plan`: print each node's resolved plan, as text or JSON.

use std::io::Write;

use anyhow::{Context, Result};

use super::{Inputs, resolve_lock, validated};
use crate::cli::{Global, PlanArgs};
use crate::plan::{self, NodePlan};

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

pub fn run(g: &Global, a: &PlanArgs) -> Result<()> {
    let inputs = Inputs::load(g)?;
    let catalog = validated(&inputs, true)?;
    let nodes = plan::select_nodes(&inputs.loaded.cluster, a.role.as_deref(), a.node.as_deref())?;
    let lock = resolve_lock(g, &a.lock)?;
    let mut plans = nodes
        .iter()
        .map(|n| plan::plan_node(&catalog, &inputs.loaded, n))
        .collect::<Result<Vec<_>>>()?;
    let supplies = crate::supplied::Supplies::new(&inputs.loaded, &lock, g.data.as_deref());
    for p in &mut plans {
        p.lock = Some(lock.describe());
        crate::supplied::fill(p, &supplies)?;
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
