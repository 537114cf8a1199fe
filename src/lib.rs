//! ezimg: build preconfigured HA Kubernetes appliance nodes.

pub mod artifact;
pub mod base;
pub mod bundle;
pub mod cachedir;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod data;
pub mod digest;
pub mod fsutil;
pub mod image;
pub mod kubeadm;
pub mod layer;
pub mod outdir;
pub mod output;
pub mod pins;
pub mod plan;
pub mod process;
pub mod render;
pub mod role;
pub mod secrets;
pub mod stage;
pub mod tomlfile;
pub mod vm;
