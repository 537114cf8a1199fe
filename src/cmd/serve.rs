//! `ezimg serve`: resolve the inputs, then [`crate::serve::run`].

use anyhow::Result;

use super::resolve_lock;
use crate::artifact::Cache;
use crate::cli::{Global, ServeArgs};
use crate::cluster;

pub fn run(g: &Global, a: &ServeArgs) -> Result<()> {
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
            append: a.append.clone(),
            dhcp: a.dhcp,
        },
    })
}
