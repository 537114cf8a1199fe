//! Disk images: the debian12 base ([`base`]), the per-role qcow2 bake on top of it ([`bake`],
//! run side by side by the bake queue), and the byte-reproducible root disk both write
//! ([`rootdisk`]). Their recipe files (config files, scripts, seeds) are files beside the code,
//! filled by [`recipe::fill`], so they read as what lands on the disk.

pub mod bake;
pub mod base;
mod queue;
pub mod recipe;
pub mod rootdisk;

pub use bake::{BakeManifest, BakeOptions, Baked, bake, bake_role, packages_of};
pub use queue::{PendingBake, run_bakes};
