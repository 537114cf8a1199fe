//! The bake queue: `build --all --format qcow2` renders every role first, then bakes them
//! `jobs` at a time. A TCG guest keeps about one core busy, so two bakes side by side nearly
//! halve the wall time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;

use super::{BakeOptions, bake_role};
use crate::artifact::Lock;
use crate::plan::NodePlan;

/// A qcow2 bake `build` leaves for after rendering: bakes of several roles run side by side.
pub struct PendingBake {
    pub role: String,
    pub bundle: Vec<u8>,
    pub plans: Vec<NodePlan>,
    /// The image's path relative to the output folder.
    pub rel: String,
    pub dest: PathBuf,
}

/// Run the pending bakes, `opts.jobs` at a time; the first error stops the queue.
pub fn run_bakes(bakes: &[PendingBake], lock: &Lock, opts: &BakeOptions) -> Result<()> {
    let jobs = opts.jobs;
    // A queue, not fixed pairs: a cache hit (no VM) frees its slot at once.
    let next = AtomicUsize::new(0);
    let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.min(bakes.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut errs = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(b) = bakes.get(i) else { break };
                        if let Err(e) = bake_role(&b.role, &b.bundle, &b.plans, &b.dest, lock, opts)
                        {
                            errs.push(e.context(format!("building role {}", b.role)));
                            // Fail fast: start no further bake.
                            next.store(bakes.len(), Ordering::SeqCst);
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
